//! Deadlines as data: one table of `Option<Instant>` per owner, indexed by
//! the owner's own small timer enum.
//!
//! Owns: the slots and the verbs on them (`set`, `stop`, `stop_all`,
//! `next`, `fire`, `is_set`, `deadline`). Nothing else.
//!
//! May not touch: any clock (every `now` is handed in by the owner), the
//! owner's state, or the meaning of a timer. What a fired timer does is
//! decided by the owner, which loops over its enum's `ALL`, calls
//! [`Timers::fire`] for each key and matches on the ones that fired. No
//! callbacks, no timer objects.
//!
//! Used by doors (`interlock`), cameras (`liveness`) and locks (`lock`).

use std::marker::PhantomData;
use std::time::Instant;

/// An owner's timer enum: a few `Copy` variants, each naming one deadline.
///
/// `N` is the number of variants. `ALL` lists them in the order the owner
/// handles them when several are due at once, and `index` maps each one to
/// a distinct slot in `0..N` (for a field-less enum, `self as usize`).
pub trait TimerKey<const N: usize>: Copy {
    /// Every key, in the order expiry is handled.
    const ALL: [Self; N];
    /// This key's slot, below `N`.
    fn index(self) -> usize;
}

/// One optional deadline per key of `T`. The next wake-up is the earliest
/// deadline set.
#[derive(Debug, Clone)]
pub struct Timers<T: TimerKey<N>, const N: usize> {
    slots: [Option<Instant>; N],
    key: PhantomData<T>,
}

impl<T: TimerKey<N>, const N: usize> Default for Timers<T, N> {
    fn default() -> Self {
        Timers {
            slots: [None; N],
            key: PhantomData,
        }
    }
}

impl<T: TimerKey<N>, const N: usize> Timers<T, N> {
    /// Arms `timer` for `at`, replacing any deadline it had (earlier or
    /// later).
    pub fn set(&mut self, timer: T, at: Instant) {
        self.slots[timer.index()] = Some(at);
    }

    /// Disarms `timer`. Harmless if it was not set.
    pub fn stop(&mut self, timer: T) {
        self.slots[timer.index()] = None;
    }

    /// Disarms every timer.
    pub fn stop_all(&mut self) {
        self.slots = [None; N];
    }

    /// The earliest deadline set, if any.
    #[must_use]
    pub fn next(&self) -> Option<Instant> {
        self.slots.iter().flatten().min().copied()
    }

    /// Whether `timer` is due at `now` (its deadline is at or before `now`);
    /// if so it is disarmed, so it fires once per `set`. A `now` earlier than
    /// the deadline, including one earlier than a previous call, fires
    /// nothing and keeps the deadline.
    #[must_use]
    pub fn fire(&mut self, timer: T, now: Instant) -> bool {
        let slot = &mut self.slots[timer.index()];
        match *slot {
            Some(at) if at <= now => {
                *slot = None;
                true
            }
            _ => false,
        }
    }

    /// Whether `timer` is armed, due or not.
    #[must_use]
    pub fn is_set(&self, timer: T) -> bool {
        self.slots[timer.index()].is_some()
    }

    /// When `timer` is due, if it is armed.
    #[must_use]
    pub fn deadline(&self, timer: T) -> Option<Instant> {
        self.slots[timer.index()]
    }
}

/// Checks that `T::ALL` names every slot in `0..N` exactly once, so no
/// key is left out of expiry and none shares a slot. Owners call it from
/// their own tests.
#[cfg(test)]
pub(crate) fn assert_keys_fill_slots<T, const N: usize>()
where
    T: TimerKey<N> + std::fmt::Debug,
{
    let mut seen = [false; N];
    for key in T::ALL {
        let i = key.index();
        assert!(i < N, "{key:?} has slot {i}, beyond {N}");
        assert!(!seen[i], "{key:?} shares slot {i}");
        seen[i] = true;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    enum Key {
        A,
        B,
        C,
    }

    impl TimerKey<3> for Key {
        const ALL: [Key; 3] = [Key::A, Key::B, Key::C];
        fn index(self) -> usize {
            self as usize
        }
    }

    fn at(base: Instant, ms: u64) -> Instant {
        base + Duration::from_millis(ms)
    }

    /// Every key that fires at `now`, in `ALL` order, the way owners loop.
    fn fired(timers: &mut Timers<Key, 3>, now: Instant) -> Vec<Key> {
        Key::ALL
            .into_iter()
            .filter(|&k| timers.fire(k, now))
            .collect()
    }

    #[test]
    fn keys_fill_their_slots() {
        assert_keys_fill_slots::<Key, 3>();
    }

    #[test]
    fn an_empty_table_has_no_wake_up_and_fires_nothing() {
        let t0 = Instant::now();
        let mut timers = Timers::<Key, 3>::default();
        assert_eq!(timers.next(), None);
        assert!(fired(&mut timers, at(t0, 1_000_000)).is_empty());
    }

    #[test]
    fn next_is_the_earliest_deadline_set() {
        let t0 = Instant::now();
        let mut timers = Timers::<Key, 3>::default();
        timers.set(Key::C, at(t0, 300));
        timers.set(Key::A, at(t0, 500));
        assert_eq!(timers.next(), Some(at(t0, 300)));
        timers.stop(Key::C);
        assert_eq!(timers.next(), Some(at(t0, 500)));
    }

    #[test]
    fn set_replaces_the_deadline_even_with_a_later_one() {
        let t0 = Instant::now();
        let mut timers = Timers::<Key, 3>::default();
        timers.set(Key::B, at(t0, 100));
        timers.set(Key::B, at(t0, 900));
        assert_eq!(timers.deadline(Key::B), Some(at(t0, 900)));
        assert!(fired(&mut timers, at(t0, 100)).is_empty());
    }

    #[test]
    fn fire_at_the_deadline_clears_only_the_due_slots_once() {
        let t0 = Instant::now();
        let mut timers = Timers::<Key, 3>::default();
        timers.set(Key::A, at(t0, 200));
        timers.set(Key::B, at(t0, 100));
        timers.set(Key::C, at(t0, 300));
        // Exactly at a deadline counts as due.
        assert_eq!(fired(&mut timers, at(t0, 200)), [Key::A, Key::B]);
        assert!(!timers.is_set(Key::A) && !timers.is_set(Key::B));
        assert_eq!(timers.deadline(Key::C), Some(at(t0, 300)));
        // A second call at the same instant is a no-op.
        assert!(fired(&mut timers, at(t0, 200)).is_empty());
        assert_eq!(timers.next(), Some(at(t0, 300)));
    }

    #[test]
    fn an_earlier_now_fires_nothing_and_keeps_the_deadline() {
        let t0 = Instant::now();
        let mut timers = Timers::<Key, 3>::default();
        timers.set(Key::A, at(t0, 500));
        assert_eq!(fired(&mut timers, at(t0, 600)), [Key::A]);
        timers.set(Key::A, at(t0, 1_000));
        // Time goes backwards: before both the deadline and the last call.
        assert!(fired(&mut timers, at(t0, 400)).is_empty());
        assert!(fired(&mut timers, t0).is_empty());
        assert_eq!(timers.deadline(Key::A), Some(at(t0, 1_000)));
        assert_eq!(fired(&mut timers, at(t0, 1_000)), [Key::A]);
    }

    #[test]
    fn stop_and_stop_all_disarm() {
        let t0 = Instant::now();
        let mut timers = Timers::<Key, 3>::default();
        timers.set(Key::A, at(t0, 10));
        timers.set(Key::B, at(t0, 20));
        timers.stop(Key::A);
        timers.stop(Key::C); // not set: harmless
        assert_eq!(timers.deadline(Key::A), None);
        assert!(timers.is_set(Key::B));
        timers.stop_all();
        assert_eq!(timers.next(), None);
        assert!(fired(&mut timers, at(t0, 1_000)).is_empty());
    }
}
