//! The door's one-time delivery code and the wrong-code lockout.
//!
//! Owns: the code in force (a salted hash, the plain PIN only for a keypad
//! slot), what the store was last asked to hold of it ([`CodeRecord`]),
//! and the wrong codes of the current minute. May not touch: the lock, the
//! session, the windows or the keypad slot (`keypad.rs`); it pushes no
//! actions. The door asks it questions and acts on the answers.

use std::time::{Duration, Instant};

use jiff::Timestamp;
use sha2::{Digest, Sha256};

use super::super::{CodeRecord, Stamp};
use crate::config::Secret;

/// Wrong codes allowed per door within [`CODE_LOCKOUT`].
pub const CODE_FAILURES_ALLOWED: u32 = 5;
/// The span over which wrong codes are counted.
pub const CODE_LOCKOUT: Duration = Duration::from_secs(60);
/// Why a request over MQTT is refused while the door's code could not be
/// read back from the store.
pub const CODE_UNREADABLE: &str = "the delivery code could not be read back after a restart; \
the owner must set a new code or end the window";

/// A one-time delivery code: a salted hash, and the plain PIN only when a
/// keypad slot needs it.
#[derive(Clone)]
pub(super) struct DeliveryCode {
    /// `None`: the store held a code for this door that cannot be read
    /// back; no code matches it.
    pub(super) check: Option<CodeHash>,
    pub(super) plain: Option<Secret>,
    /// The window occurrence (its `starts`) the code belongs to; `None`
    /// until one opens.
    pub(super) window: Option<Timestamp>,
    pub(super) set_at: Timestamp,
}

#[derive(Clone, Copy)]
pub(super) struct CodeHash {
    salt: [u8; 32],
    hash: [u8; 32],
}

impl std::fmt::Debug for DeliveryCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeliveryCode")
            .field("window", &self.window)
            .finish_non_exhaustive()
    }
}

fn digest(salt: &[u8; 32], code: &str) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(salt);
    h.update(code.as_bytes());
    h.finalize().into()
}

impl DeliveryCode {
    /// The entries to write down with the code: those of its own window
    /// only.
    fn entries_used(&self, entries_window: Option<Timestamp>, used: u32) -> u32 {
        if self.window.is_some() && self.window == entries_window {
            used
        } else {
            0
        }
    }

    pub(super) fn matches(&self, code: &Secret) -> bool {
        let Some(check) = &self.check else {
            return false;
        };
        let other = digest(&check.salt, code.expose());
        // Compare every byte so the time taken says nothing about where
        // the first difference is.
        check
            .hash
            .iter()
            .zip(other.iter())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
    }
}

/// Whether `hex` is exactly what [`to_hex`] makes of `bytes`.
fn hex_is(hex: &str, bytes: &[u8; 32]) -> bool {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    hex.len() == 64
        && hex.as_bytes().chunks(2).zip(bytes).all(|(pair, b)| {
            pair[0] == DIGITS[usize::from(b >> 4)] && pair[1] == DIGITS[usize::from(b & 0x0f)]
        })
}

fn to_hex(bytes: &[u8; 32]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut text = String::with_capacity(64);
    for b in bytes {
        text.push(char::from(DIGITS[usize::from(b >> 4)]));
        text.push(char::from(DIGITS[usize::from(b & 0x0f)]));
    }
    text
}

/// 64 hex digits back into 32 bytes; `None` for anything else.
fn from_hex(text: &str) -> Option<[u8; 32]> {
    let digits = text.as_bytes();
    // `from_str_radix` would also take a sign.
    if digits.len() != 64 || !digits.iter().all(u8::is_ascii_hexdigit) {
        return None;
    }
    let mut out = [0u8; 32];
    for (byte, pair) in out.iter_mut().zip(digits.chunks_exact(2)) {
        let pair = std::str::from_utf8(pair).ok()?;
        *byte = u8::from_str_radix(pair, 16).ok()?;
    }
    Some(out)
}

/// Everything the door keeps about its code.
#[derive(Debug, Clone)]
pub(super) struct Codes {
    /// The code in force, if any.
    pub(super) current: Option<DeliveryCode>,
    /// The code as the store was last asked to hold it: a change from this
    /// is persisted.
    pub(super) saved: Option<CodeRecord>,
    counter: u64,
    seed: [u8; 32],
    pub(super) failures: CodeFailures,
}

impl Codes {
    pub(super) fn new(seed: [u8; 32]) -> Codes {
        Codes {
            current: None,
            saved: None,
            counter: 0,
            seed,
            failures: CodeFailures::default(),
        }
    }

    /// A new code for `door`, salted so that no two codes set here share a
    /// salt, even across doors (each door's seed differs).
    pub(super) fn hash_new(&mut self, door: &str, code: &Secret) -> CodeHash {
        self.counter += 1;
        let mut h = Sha256::new();
        h.update(self.seed);
        h.update(door.as_bytes());
        h.update(self.counter.to_be_bytes());
        let salt: [u8; 32] = h.finalize().into();
        let hash = digest(&salt, code.expose());
        CodeHash { salt, hash }
    }

    /// The code as it may be written down (salt and hash, never the code).
    /// `entries_used` counts for the occurrence starting at
    /// `entries_window`; `keypad_slot`: the slot that may hold the PIN.
    pub(super) fn record(
        &self,
        door: &str,
        entries_window: Option<Timestamp>,
        entries_used: u32,
        keypad_slot: Option<u16>,
    ) -> Option<CodeRecord> {
        let code = self.current.as_ref()?;
        let (salt, hash) = match &code.check {
            Some(c) => (to_hex(&c.salt), to_hex(&c.hash)),
            None => (String::new(), String::new()),
        };
        Some(CodeRecord {
            door: door.to_string(),
            salt,
            hash,
            window: code.window,
            set_at: code.set_at,
            entries_used: code.entries_used(entries_window, entries_used),
            keypad_slot,
        })
    }

    /// Whether [`Codes::record`] would return exactly `saved`. Asked on
    /// every event, so nothing is built to answer it.
    pub(super) fn record_is(
        &self,
        saved: Option<&CodeRecord>,
        door: &str,
        entries_window: Option<Timestamp>,
        entries_used: u32,
        keypad_slot: Option<u16>,
    ) -> bool {
        let (Some(code), Some(saved)) = (self.current.as_ref(), saved) else {
            return self.current.is_none() && saved.is_none();
        };
        let check_same = match &code.check {
            Some(c) => hex_is(&saved.salt, &c.salt) && hex_is(&saved.hash, &c.hash),
            None => saved.salt.is_empty() && saved.hash.is_empty(),
        };
        check_same
            && saved.door == door
            && saved.window == code.window
            && saved.set_at == code.set_at
            && saved.entries_used == code.entries_used(entries_window, entries_used)
            && saved.keypad_slot == keypad_slot
    }
}

/// A stored salt and hash read back; `None` when either is not whole.
pub(super) fn read_back(record: &CodeRecord) -> Option<CodeHash> {
    match (from_hex(&record.salt), from_hex(&record.hash)) {
        (Some(salt), Some(hash)) => Some(CodeHash { salt, hash }),
        _ => None,
    }
}

/// Wrong codes counted from the first failure of a one-minute span. Each
/// is kept with its wall time too, so that the span survives a restart.
/// At most [`CODE_FAILURES_ALLOWED`] are held: once that many are in, no
/// request gets as far as a code until the span is over.
#[derive(Debug, Clone, Default)]
pub(super) struct CodeFailures {
    times: Vec<(Instant, Timestamp)>,
}

impl CodeFailures {
    /// Seconds left in the lockout, if requests are refused at `now`.
    pub(super) fn locked_out(&self, now: Instant) -> Option<u64> {
        let (start, _) = self.times.first()?;
        let elapsed = now.saturating_duration_since(*start);
        let count = u32::try_from(self.times.len()).unwrap_or(u32::MAX);
        if count >= CODE_FAILURES_ALLOWED && elapsed < CODE_LOCKOUT {
            Some((CODE_LOCKOUT - elapsed).as_secs().max(1))
        } else {
            None
        }
    }

    pub(super) fn record(&mut self, now: Stamp) -> u32 {
        let span_over = self
            .times
            .first()
            .is_some_and(|(start, _)| now.mono.saturating_duration_since(*start) >= CODE_LOCKOUT);
        if span_over {
            self.times.clear();
        }
        self.times.push((now.mono, now.wall));
        u32::try_from(self.times.len()).unwrap_or(u32::MAX)
    }

    /// The wall times to persist.
    pub(super) fn walls(&self) -> Vec<Timestamp> {
        self.times.iter().map(|(_, wall)| *wall).collect()
    }

    /// Failures stored before a restart, placed on this run's monotonic
    /// clock by their age at `now`. A span whose minute is over is gone, as
    /// it would have been without the restart; a time ahead of `now` (the
    /// wall clock was stepped back) counts as just now, so the lockout
    /// runs its whole minute rather than being cut short.
    pub(super) fn restore(&mut self, now: Stamp, walls: &[Timestamp]) {
        let Some(first) = walls.iter().min() else {
            return;
        };
        let age = |t: &Timestamp| {
            Duration::try_from(now.wall.duration_since(*t)).unwrap_or(Duration::ZERO)
        };
        if age(first) >= CODE_LOCKOUT {
            return;
        }
        let mut sorted = walls.to_vec();
        sorted.sort();
        // A hand-edited file could hold more; the lockout needs no more.
        let keep = usize::try_from(CODE_FAILURES_ALLOWED).unwrap_or(usize::MAX);
        sorted.truncate(keep);
        self.times = sorted
            .into_iter()
            .map(|wall| {
                let mono = now.mono.checked_sub(age(&wall)).unwrap_or(now.mono);
                (mono, wall)
            })
            .collect();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(wall: &str) -> Timestamp {
        match wall.parse() {
            Ok(t) => t,
            Err(e) => panic!("{wall}: {e}"),
        }
    }

    #[test]
    fn codes_are_kept_as_salted_hashes() {
        let salt = [9u8; 32];
        let code = DeliveryCode {
            check: Some(CodeHash {
                salt,
                hash: digest(&salt, "482913"),
            }),
            plain: None,
            window: None,
            set_at: at("2026-11-28T10:00:00Z"),
        };
        assert!(code.matches(&Secret::new("482913")));
        assert!(!code.matches(&Secret::new("482914")));
        assert!(!code.matches(&Secret::new("")));
        // Another salt, another hash for the same code.
        assert_ne!(digest(&[1; 32], "482913"), digest(&salt, "482913"));
        assert!(!format!("{code:?}").contains("482913"));
    }

    #[test]
    fn stored_hashes_read_back_only_when_whole() {
        let bytes: [u8; 32] = std::array::from_fn(|i| (i * 8 + 1) as u8);
        let text = to_hex(&bytes);
        assert_eq!(text.len(), 64);
        assert_eq!(from_hex(&text), Some(bytes));
        assert_eq!(from_hex(&text.to_uppercase()), Some(bytes));
        assert_eq!(from_hex(""), None);
        assert_eq!(from_hex(&text[..62]), None);
        assert_eq!(from_hex(&format!("+{}", &text[1..])), None);
        assert_eq!(from_hex(&"zz".repeat(32)), None);
    }

    #[test]
    fn five_wrong_codes_lock_out_the_rest_of_the_minute() {
        let t0 = Instant::now();
        let wall = at("2026-11-28T10:00:00Z");
        let stamp = |secs: u64| Stamp { mono: t0, wall }.after(Duration::from_secs(secs));
        let mut failures = CodeFailures::default();
        for i in 0..5u64 {
            assert_eq!(failures.locked_out(t0 + Duration::from_secs(i)), None);
            failures.record(stamp(i));
        }
        assert_eq!(failures.locked_out(t0 + Duration::from_secs(10)), Some(50));
        assert_eq!(failures.locked_out(t0 + Duration::from_secs(60)), None);
        // Time going backwards does not lift or extend the lockout wrongly.
        assert_eq!(failures.locked_out(t0), Some(60));
        // A new minute starts a new count.
        assert_eq!(failures.record(stamp(61)), 1);
    }

    #[test]
    fn a_lockout_survives_a_restart_until_its_minute_is_over() {
        let t0 = Instant::now();
        let wall = at("2026-11-28T10:00:00Z");
        let stamp = |secs: u64| Stamp { mono: t0, wall }.after(Duration::from_secs(secs));
        let mut before = CodeFailures::default();
        for i in 0..5u64 {
            before.record(stamp(i));
        }
        let stored = before.walls();
        assert_eq!(stored.len(), 5);

        // Back 20 s after the first wrong code, on a new monotonic clock.
        let later = Stamp {
            mono: Instant::now() + Duration::from_secs(3600),
            wall: wall + jiff::SignedDuration::from_secs(20),
        };
        let mut after = CodeFailures::default();
        after.restore(later, &stored);
        assert_eq!(after.locked_out(later.mono), Some(40));
        assert_eq!(after.locked_out(later.mono + Duration::from_secs(40)), None);

        // Back after the minute: nothing is held against the next courier.
        let late = Stamp {
            mono: later.mono,
            wall: wall + jiff::SignedDuration::from_secs(60),
        };
        let mut after = CodeFailures::default();
        after.restore(late, &stored);
        assert_eq!(after.locked_out(late.mono), None);
        assert_eq!(after.record(late), 1);

        // The wall clock was stepped back meanwhile: the whole minute again.
        let stepped = Stamp {
            mono: later.mono,
            wall: wall - jiff::SignedDuration::from_secs(600),
        };
        let mut after = CodeFailures::default();
        after.restore(stepped, &stored);
        assert_eq!(after.locked_out(stepped.mono), Some(60));
    }
}
