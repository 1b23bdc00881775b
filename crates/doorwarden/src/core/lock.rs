//! What each lock is doing, and whether its last command was confirmed in time.
//!
//! A [`LockTracker`] holds one door lock's known state (bolt, reachability,
//! jam, who moved it last, battery) and the command doorwarden is waiting
//! for it to carry out. It sends nothing itself: [`LockTracker::command`]
//! records the wish and returns the [`LockCommand`] for the caller to emit.
//!
//! # Confirmation
//!
//! Every `Lock` / `Unlock` gets a deadline (`confirm_timeout`). The report
//! that shows the bolt where it was asked to go completes it. When the
//! deadline passes, the command is sent once more with a fresh deadline; when
//! that one passes too, the lock is *unresponsive*: shown JAMMED, counted as
//! not secured, and the caller raises `lock_unresponsive`. A jam report makes
//! the lock JAMMED at once and ends the wait (the lock has answered, badly).
//! Any later bolt report clears both conditions: the lock is talking again
//! and says where its bolt is.
//!
//! # A command that has not left
//!
//! The deadline measures the lock, so it runs only while the command is on
//! its way. When the shell could not hand a command to the broker link
//! ([`LockTracker::not_sent`]) the wait stops: no retry, no unresponsive,
//! the lock is not JAMMED, and [`LockTracker::blocking_reason`] says the
//! relock is pending and why. [`LockTracker::sent`] starts the countdown
//! when the command finally goes out.
//!
//! # The bolt answering no
//!
//! A lock whose bolt is blocked answers a LOCK by reporting UNLOCKED (and a
//! refused UNLOCK by reporting LOCKED). A report of the old position can
//! also be an echo of the state from before the command (Zigbee2MQTT repeats
//! its cached state with every attribute report), so a contrary report in
//! the first [`CONTRARY_GRACE`] after the send is held back: if nothing
//! better arrives by the end of the grace, or a contrary report arrives
//! after it, the lock has refused ([`LockNote::Refused`]) and is JAMMED at
//! once, instead of waiting out both confirmation deadlines.
//!
//! # Driving it
//!
//! `handle_report` for every report from the door's lock, `handle_timeout`
//! whenever the time in [`LockTracker::poll_timeout`] has come (early or
//! spurious calls do nothing), and the getters to decide. Time may go
//! backwards between calls; deadlines then simply have not passed yet.

use std::fmt;
use std::time::{Duration, Instant};

use super::text;
use super::timer::{TimerKey, Timers};
use super::{DoorReport, LockCommand, LockDisplay, LockState, MoveSource};

/// How long after a command is sent a report of the old bolt position is
/// taken as a possible echo rather than the lock's answer. Echoes of the
/// cached state follow a command within a few hundred milliseconds (the
/// command's own acknowledgement, a battery report in flight); a motor
/// that tried and stalled takes about a second to give up. 1.5 s covers the
/// echoes with room to spare and still alerts a stuck bolt within two
/// seconds, well before the first confirmation deadline.
pub const CONTRARY_GRACE: Duration = Duration::from_millis(1500);

/// Where doorwarden asked the bolt to go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Want {
    Locked,
    Unlocked,
}

impl Want {
    fn command(self) -> LockCommand {
        match self {
            Want::Locked => LockCommand::Lock,
            Want::Unlocked => LockCommand::Unlock,
        }
    }

    fn state(self) -> LockState {
        match self {
            Want::Locked => LockState::Locked,
            Want::Unlocked => LockState::Unlocked,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Want::Locked => "lock",
            Want::Unlocked => "unlock",
        }
    }
}

/// A command sent and not yet confirmed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pending {
    pub want: Want,
    /// 1 for the first send, 2 for the retry.
    pub attempt: u8,
    pub sent: Instant,
}

/// What a report or a timeout meant, for the caller to act on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LockNote {
    /// The pending command was carried out.
    Confirmed(Want),
    /// The bolt moved without doorwarden asking (or against what it asked):
    /// the thumb-turn, the keypad, another controller, the lock's auto-relock.
    Moved {
        state: LockState,
        source: Option<MoveSource>,
    },
    /// The lock reported a jam (or a bolt not fully thrown).
    Jammed { pending: Option<Want> },
    /// No confirmation in time: send this command again.
    Retry(LockCommand),
    /// No confirmation after the retry either.
    Unresponsive(Want),
    /// The lock answered the pending command with the opposite position
    /// (after [`CONTRARY_GRACE`]): its bolt would not move. The lock is
    /// JAMMED from now on.
    Refused(Want),
    /// The backend says the lock became reachable / unreachable.
    Availability(bool),
}

/// The tracker's deadlines, one slot each in its [`Timers`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Timer {
    /// The pending command's confirmation deadline.
    Confirm,
    /// The end of the grace for a contrary report.
    Contrary,
}

impl TimerKey<2> for Timer {
    const ALL: [Timer; 2] = [Timer::Confirm, Timer::Contrary];
    fn index(self) -> usize {
        self as usize
    }
}

/// One door lock as doorwarden knows it.
#[derive(Debug, Clone)]
pub struct LockTracker {
    confirm_timeout: Duration,
    state: LockState,
    /// `None` until the backend says; a lock that never reports availability
    /// counts as reachable once it reports its bolt.
    available: Option<bool>,
    jammed: bool,
    unresponsive: bool,
    source: Option<MoveSource>,
    battery: Option<u8>,
    pending: Option<Pending>,
    /// Why the pending command has not left (the shell could not hand it to
    /// the broker link); `None` once it has, or with nothing pending.
    unsent: Option<String>,
    /// The lock reported the old position within the grace after the
    /// pending command was sent.
    contrary: bool,
    /// Where the bolt stayed when the lock refused a command: reports of
    /// that same position do not clear the jam (the lock keeps repeating
    /// it); a move away from it, or a new command, does.
    refused_at: Option<LockState>,
    timers: Timers<Timer, 2>,
}

impl LockTracker {
    pub fn new(confirm_timeout: Duration) -> LockTracker {
        LockTracker {
            confirm_timeout,
            state: LockState::Unknown,
            available: None,
            jammed: false,
            unresponsive: false,
            source: None,
            battery: None,
            pending: None,
            unsent: None,
            contrary: false,
            refused_at: None,
            timers: Timers::default(),
        }
    }

    // ---- getters -------------------------------------------------------

    /// The bolt as last reported.
    pub fn state(&self) -> LockState {
        self.state
    }

    pub fn available(&self) -> Option<bool> {
        self.available
    }

    pub fn is_jammed(&self) -> bool {
        self.jammed
    }

    pub fn is_unresponsive(&self) -> bool {
        self.unresponsive
    }

    /// Who or what moved the bolt last, when known.
    pub fn source(&self) -> Option<MoveSource> {
        self.source
    }

    pub fn battery(&self) -> Option<u8> {
        self.battery
    }

    pub fn pending(&self) -> Option<Pending> {
        self.pending
    }

    /// Why the pending command could not be sent yet, if it could not.
    pub fn unsent(&self) -> Option<&str> {
        self.unsent.as_deref()
    }

    /// Locked, confirmed by the lock, reachable, not jammed or unresponsive,
    /// and nothing in flight: the door is secured.
    pub fn is_secured(&self) -> bool {
        self.state == LockState::Locked
            && self.available != Some(false)
            && !self.jammed
            && !self.unresponsive
            && self.pending.is_none()
    }

    /// Why the lock cannot take a delivery now, as a phrase for the owner;
    /// `None` when it is secured and ready.
    pub fn blocking_reason(&self) -> Option<String> {
        text::owned(|w| self.write_blocking_reason(w))
    }

    /// [`LockTracker::blocking_reason`], written into `w`; `Ok(false)` when
    /// there is none.
    pub fn write_blocking_reason(&self, w: &mut dyn fmt::Write) -> text::Said {
        if self.available == Some(false) {
            w.write_str("lock unavailable")?;
        } else if self.jammed {
            w.write_str("lock jammed")?;
        } else if self.unresponsive {
            w.write_str("lock unresponsive (did not confirm the last command)")?;
        } else if let (Some(p), Some(why)) = (self.pending, &self.unsent) {
            match p.want {
                Want::Locked => write!(w, "relock pending: {why}")?,
                Want::Unlocked => write!(w, "unlock not sent: {why}")?,
            }
        } else if let Some(p) = self.pending {
            write!(w, "lock busy (waiting for it to {})", p.want.as_str())?;
        } else {
            match self.state {
                LockState::Locked => return Ok(false),
                LockState::Unlocked => w.write_str("lock is not locked")?,
                LockState::Unknown => w.write_str("lock state unknown (no report yet)")?,
            }
        }
        Ok(true)
    }

    /// The lock entity as Home Assistant should show it; `None` while unknown.
    pub fn display(&self) -> Option<LockDisplay> {
        if self.jammed || self.unresponsive {
            return Some(LockDisplay::Jammed);
        }
        if let Some(p) = self.pending {
            return Some(match p.want {
                Want::Locked => LockDisplay::Locking,
                Want::Unlocked => LockDisplay::Unlocking,
            });
        }
        match self.state {
            LockState::Locked => Some(LockDisplay::Locked),
            LockState::Unlocked => Some(LockDisplay::Unlocked),
            LockState::Unknown => None,
        }
    }

    /// The earliest instant `handle_timeout` has work to do.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.timers.next()
    }

    // ---- inputs --------------------------------------------------------

    /// Ask for the bolt to go to `want`: records the pending command with
    /// its deadline and returns what to send. A new command replaces one
    /// still pending (the last wish wins, with a fresh retry budget).
    #[must_use]
    pub fn command(&mut self, now: Instant, want: Want) -> LockCommand {
        self.sent(now, want);
        want.command()
    }

    /// The command for `want` has gone out (now, or only now after it was
    /// held back): wait for the lock from `now`, with a fresh retry budget.
    pub fn sent(&mut self, now: Instant, want: Want) {
        self.clear_pending();
        self.refused_at = None;
        self.pending = Some(Pending {
            want,
            attempt: 1,
            sent: now,
        });
        self.timers.set(Timer::Confirm, now + self.confirm_timeout);
    }

    /// The shell could not hand the pending command for `want` to the
    /// broker link (`why`: "broker unreachable", ...): it has not left, so
    /// the lock is not waited for until [`LockTracker::sent`]. Returns
    /// whether this is news (the first refusal of this command).
    pub fn not_sent(&mut self, want: Want, why: &str) -> bool {
        if self.pending.is_none_or(|p| p.want != want) {
            return false;
        }
        self.timers.stop(Timer::Confirm);
        self.timers.stop(Timer::Contrary);
        self.contrary = false;
        let fresh = self.unsent.is_none();
        self.unsent = Some(why.to_string());
        fresh
    }

    /// Forget a pending command without waiting for it (the shell could not
    /// carry it out, e.g. storage failed before a delivery unlock).
    pub fn abandon(&mut self) {
        self.clear_pending();
    }

    fn clear_pending(&mut self) {
        self.pending = None;
        self.unsent = None;
        self.contrary = false;
        self.timers.stop(Timer::Confirm);
        self.timers.stop(Timer::Contrary);
    }

    /// The lock will not move its bolt: JAMMED, nothing waited for.
    fn refused(&mut self, want: Want) -> LockNote {
        self.clear_pending();
        self.jammed = true;
        self.refused_at = Some(self.state);
        LockNote::Refused(want)
    }

    /// A report from the lock's backend. Reports not about the lock
    /// (contact, code slots, auto-relock) are ignored here.
    pub fn handle_report(&mut self, now: Instant, report: &DoorReport) -> Option<LockNote> {
        match report {
            DoorReport::Lock { state, source } => self.handle_bolt(now, *state, *source),
            DoorReport::Jammed => {
                let pending = self.pending.map(|p| p.want);
                self.clear_pending();
                let fresh = !self.jammed;
                self.jammed = true;
                // A lock repeating its jam state is not news.
                (fresh || pending.is_some()).then_some(LockNote::Jammed { pending })
            }
            DoorReport::LockAvailable(up) => {
                let changed = self.available != Some(*up);
                self.available = Some(*up);
                changed.then_some(LockNote::Availability(*up))
            }
            DoorReport::Battery(level) => {
                self.battery = Some(*level);
                None
            }
            DoorReport::Contact { .. }
            | DoorReport::ContactAvailable(_)
            | DoorReport::CodeSlot { .. }
            | DoorReport::AutoRelock(_) => None,
        }
    }

    fn handle_bolt(
        &mut self,
        now: Instant,
        state: LockState,
        source: Option<MoveSource>,
    ) -> Option<LockNote> {
        let before = self.state;
        self.state = state;
        if state != LockState::Unknown {
            // A bolt report means the lock is talking and not stuck,
            // unless it only repeats the position it refused to leave.
            self.unresponsive = false;
            if self.refused_at != Some(state) {
                self.jammed = false;
                self.refused_at = None;
            }
        }
        // A report of the bolt implies the backend reached the lock.
        if self.available.is_none() {
            self.available = Some(true);
        }
        if let Some(p) = self.pending {
            if p.want.state() == state {
                self.clear_pending();
                // The lock tells its radio commands apart from the keypad
                // and the thumb-turn, not doorwarden's from another
                // controller's; the one pending here is doorwarden's.
                self.source = match source {
                    None | Some(MoveSource::Rf) => Some(MoveSource::Doorwarden),
                    other => other,
                };
                return Some(LockNote::Confirmed(p.want));
            }
            // A command that has not left has no answer yet: this is just
            // where the bolt is.
            if self.unsent.is_some() || state == LockState::Unknown {
                return None;
            }
            // The old position within the grace may be an echo of the
            // state from before the command: decide when the grace ends.
            let grace_ends = p.sent + CONTRARY_GRACE;
            if now < grace_ends {
                self.contrary = true;
                self.timers.set(Timer::Contrary, grace_ends);
                return None;
            }
            return Some(self.refused(p.want));
        }
        if state == before || state == LockState::Unknown {
            return None;
        }
        self.source = source;
        // The very first report is what the lock is, not a move.
        if before == LockState::Unknown {
            return None;
        }
        Some(LockNote::Moved { state, source })
    }

    /// Deadlines that have come by `now`: the retry, then unresponsive.
    pub fn handle_timeout(&mut self, now: Instant) -> Option<LockNote> {
        let mut note = None;
        for timer in Timer::ALL {
            if !self.timers.fire(timer, now) {
                continue;
            }
            match timer {
                Timer::Confirm => {
                    let Some(p) = self.pending else { continue };
                    if p.attempt < 2 {
                        self.pending = Some(Pending {
                            attempt: p.attempt + 1,
                            sent: now,
                            ..p
                        });
                        self.contrary = false;
                        self.timers.stop(Timer::Contrary);
                        self.timers.set(Timer::Confirm, now + self.confirm_timeout);
                        note = Some(LockNote::Retry(p.want.command()));
                    } else {
                        self.clear_pending();
                        self.unresponsive = true;
                        note = Some(LockNote::Unresponsive(p.want));
                    }
                }
                Timer::Contrary => {
                    let Some(p) = self.pending else { continue };
                    // Still showing the old position at the end of the
                    // grace: that was the lock's answer, not an echo.
                    let still_contrary =
                        self.state != p.want.state() && self.state != LockState::Unknown;
                    if self.contrary && still_contrary {
                        return Some(self.refused(p.want));
                    }
                    self.contrary = false;
                }
            }
        }
        note
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn locked() -> DoorReport {
        DoorReport::Lock {
            state: LockState::Locked,
            source: None,
        }
    }
    fn unlocked(source: Option<MoveSource>) -> DoorReport {
        DoorReport::Lock {
            state: LockState::Unlocked,
            source,
        }
    }

    #[test]
    fn every_timer_has_its_own_slot() {
        crate::core::timer::assert_keys_fill_slots::<Timer, 2>();
    }

    #[test]
    fn confirmed_unlock_shows_unlocked_and_clears_the_deadline() {
        let t0 = Instant::now();
        let mut lock = LockTracker::new(Duration::from_secs(10));
        assert_eq!(lock.handle_report(t0, &locked()), None);
        assert!(lock.is_secured());
        assert_eq!(lock.command(t0, Want::Unlocked), LockCommand::Unlock);
        assert_eq!(lock.display(), Some(LockDisplay::Unlocking));
        assert!(!lock.is_secured());
        // The lock echoing its old state is not a confirmation.
        assert_eq!(lock.handle_report(t0, &locked()), None);
        let note = lock.handle_report(t0, &unlocked(None));
        assert_eq!(note, Some(LockNote::Confirmed(Want::Unlocked)));
        assert_eq!(lock.display(), Some(LockDisplay::Unlocked));
        // Home Assistant says doorwarden moved it, not just "a radio command".
        assert_eq!(lock.source(), Some(MoveSource::Doorwarden));
        assert_eq!(lock.poll_timeout(), None);
    }

    #[test]
    fn silent_lock_is_retried_once_then_unresponsive_and_jammed() {
        let t0 = Instant::now();
        let s = Duration::from_secs(1);
        let mut lock = LockTracker::new(10 * s);
        let _ = lock.handle_report(t0, &unlocked(None));
        let _ = lock.command(t0, Want::Locked);
        // Early and spurious wake-ups do nothing.
        assert_eq!(lock.handle_timeout(t0 + 9 * s), None);
        assert_eq!(
            lock.handle_timeout(t0 + 10 * s),
            Some(LockNote::Retry(LockCommand::Lock))
        );
        assert_eq!(lock.poll_timeout(), Some(t0 + 20 * s));
        assert_eq!(
            lock.handle_timeout(t0 + 20 * s),
            Some(LockNote::Unresponsive(Want::Locked))
        );
        assert_eq!(lock.display(), Some(LockDisplay::Jammed));
        assert!(!lock.is_secured());
        assert_eq!(lock.poll_timeout(), None);
        // The lock speaks again: the condition clears.
        assert_eq!(
            lock.handle_report(t0 + 30 * s, &locked()),
            Some(LockNote::Moved {
                state: LockState::Locked,
                source: None
            })
        );
        assert!(lock.is_secured());
    }

    #[test]
    fn jam_report_is_jammed_at_once_and_ends_the_wait() {
        let t0 = Instant::now();
        let mut lock = LockTracker::new(Duration::from_secs(10));
        let _ = lock.handle_report(t0, &unlocked(None));
        let _ = lock.command(t0, Want::Locked);
        assert_eq!(
            lock.handle_report(t0, &DoorReport::Jammed),
            Some(LockNote::Jammed {
                pending: Some(Want::Locked)
            })
        );
        assert_eq!(lock.display(), Some(LockDisplay::Jammed));
        assert_eq!(lock.poll_timeout(), None);
        assert_eq!(lock.handle_report(t0, &DoorReport::Jammed), None);
    }

    #[test]
    fn thumb_turn_is_an_unsolicited_move_with_its_source() {
        let t0 = Instant::now();
        let mut lock = LockTracker::new(Duration::from_secs(10));
        let _ = lock.handle_report(t0, &locked());
        assert_eq!(
            lock.handle_report(t0, &unlocked(Some(MoveSource::Manual))),
            Some(LockNote::Moved {
                state: LockState::Unlocked,
                source: Some(MoveSource::Manual)
            })
        );
        assert_eq!(lock.source(), Some(MoveSource::Manual));
    }

    #[test]
    fn offline_lock_is_not_secured_and_earlier_time_does_not_fire() {
        let t0 = Instant::now() + Duration::from_secs(100);
        let mut lock = LockTracker::new(Duration::from_secs(10));
        let _ = lock.handle_report(t0, &locked());
        assert_eq!(
            lock.handle_report(t0, &DoorReport::LockAvailable(false)),
            Some(LockNote::Availability(false))
        );
        assert_eq!(lock.blocking_reason().as_deref(), Some("lock unavailable"));
        let _ = lock.command(t0, Want::Locked);
        assert_eq!(lock.handle_timeout(t0 - Duration::from_secs(50)), None);
    }

    #[test]
    fn unlocked_answer_to_a_lock_after_the_grace_is_a_jam_at_once() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let mut lock = LockTracker::new(Duration::from_secs(10));
        let _ = lock.handle_report(t0, &unlocked(None));
        let _ = lock.command(t0, Want::Locked);
        // Within the grace: possibly an echo of the old state.
        assert_eq!(lock.handle_report(t0 + ms(200), &unlocked(None)), None);
        assert_eq!(lock.display(), Some(LockDisplay::Locking));
        assert_eq!(lock.poll_timeout(), Some(t0 + CONTRARY_GRACE));
        // Nothing better came by the end of the grace: refused.
        assert_eq!(
            lock.handle_timeout(t0 + CONTRARY_GRACE),
            Some(LockNote::Refused(Want::Locked))
        );
        assert_eq!(lock.display(), Some(LockDisplay::Jammed));
        assert_eq!(lock.poll_timeout(), None);
        // Repeating the same position does not clear it; a move does.
        assert_eq!(lock.handle_report(t0 + ms(3000), &unlocked(None)), None);
        assert!(lock.is_jammed());
        let _ = lock.handle_report(t0 + ms(4000), &locked());
        assert!(lock.is_secured());
    }

    #[test]
    fn an_echo_within_the_grace_then_the_confirmation_is_no_jam() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let mut lock = LockTracker::new(Duration::from_secs(10));
        let _ = lock.handle_report(t0, &unlocked(None));
        let _ = lock.command(t0, Want::Locked);
        assert_eq!(lock.handle_report(t0 + ms(50), &unlocked(None)), None);
        assert_eq!(
            lock.handle_report(t0 + ms(900), &locked()),
            Some(LockNote::Confirmed(Want::Locked))
        );
        assert_eq!(lock.handle_timeout(t0 + CONTRARY_GRACE), None);
        assert!(lock.is_secured());
        // A late contrary answer is refused without waiting.
        let t1 = t0 + ms(5000);
        let _ = lock.command(t1, Want::Unlocked);
        assert_eq!(
            lock.handle_report(t1 + CONTRARY_GRACE, &locked()),
            Some(LockNote::Refused(Want::Unlocked))
        );
    }

    #[test]
    fn a_command_not_sent_runs_no_deadline_until_it_goes_out() {
        let t0 = Instant::now();
        let s = Duration::from_secs(1);
        let mut lock = LockTracker::new(10 * s);
        let _ = lock.handle_report(t0, &unlocked(None));
        let _ = lock.command(t0, Want::Locked);
        assert!(lock.not_sent(Want::Locked, "broker unreachable"));
        assert!(!lock.not_sent(Want::Locked, "broker unreachable"));
        assert_eq!(lock.poll_timeout(), None);
        assert_eq!(lock.handle_timeout(t0 + 60 * s), None);
        assert_eq!(lock.display(), Some(LockDisplay::Locking));
        assert_eq!(
            lock.blocking_reason().as_deref(),
            Some("relock pending: broker unreachable")
        );
        // The old position reported meanwhile is no answer to it.
        assert_eq!(lock.handle_report(t0 + 61 * s, &unlocked(None)), None);
        assert!(!lock.is_jammed());
        // Sent at last: the countdown starts now.
        lock.sent(t0 + 70 * s, Want::Locked);
        assert_eq!(lock.poll_timeout(), Some(t0 + 80 * s));
        assert_eq!(lock.unsent(), None);
    }
}
