//! What the bridge lets in from the broker, and what it tells the owner
//! about what it turned away.
//!
//! Anyone on the broker can publish to doorwarden's command topics, and as
//! fast as they like. [`Intake`] gives each source of commands (a door's
//! request topic, its lock topic, Home Assistant's status…) a token bucket,
//! so a flood costs a parse and a map lookup per message and never reaches the core,
//! the audit log or the outgoing queue. Messages turned away — too many,
//! too large, malformed, retained on a command topic — are counted per
//! source and reported in at most one log line a minute per source, and the
//! bridge's problem entity says what happened last.
//!
//! It does no I/O and reads no clock: the runtime passes `now` in, takes
//! the log lines out with [`Intake::take_warnings`] and publishes
//! [`Intake::health`].

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use serde::Serialize;

/// How often one source may speak, on average and at once.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Limit {
    pub per_second: f64,
    pub burst: f64,
}

/// Commands from Home Assistant and couriers: far above what a person or a
/// courier's app sends, far below what a flood does.
pub const COMMANDS: Limit = Limit {
    per_second: 5.0,
    burst: 20.0,
};

/// Home Assistant's birth message: each one republishes every entity, and
/// Home Assistant sends one per start.
pub const HA_STATUS: Limit = Limit {
    per_second: 0.1,
    burst: 2.0,
};

/// At most one log line per source in this long.
pub const WARN_EVERY: Duration = Duration::from_secs(60);
/// The problem entity stays on this long after the last message dropped.
pub const PROBLEM_FOR: Duration = Duration::from_secs(10 * 60);
/// Sources tracked for log lines; beyond this they share one line, so a
/// flood on random topics cannot grow the map.
const MAX_SOURCES: usize = 64;
const OTHER: &str = "other topics";

/// Why a message was turned away.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Why {
    /// Over its source's rate limit.
    TooMany,
    /// Larger than the link accepts; `bytes` of the largest seen.
    TooLarge { bytes: usize },
    /// Not what the topic takes.
    Malformed,
    /// Retained, on a topic whose messages act.
    Retained,
}

impl Why {
    fn words(self) -> String {
        match self {
            Why::TooMany => "too many messages".into(),
            Why::TooLarge { bytes } => format!("message too large ({bytes} bytes)"),
            Why::Malformed => "malformed message".into(),
            Why::Retained => "retained message on a command topic".into(),
        }
    }
}

/// Messages turned away since the bridge started, by reason.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Dropped {
    pub rate_limited: u64,
    pub oversized: u64,
    pub malformed: u64,
    pub retained: u64,
}

/// The bridge's problem entity: on while messages are being turned away.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Health {
    pub problem: bool,
    /// The latest thing turned away, in words; empty when all is well.
    pub reason: String,
    pub dropped: Dropped,
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

/// Drops of one source not yet written to the log.
#[derive(Debug, Clone)]
struct Unreported {
    count: u64,
    why: Why,
    /// What was wrong with the latest one, when there is more to say.
    detail: String,
    last_warned: Option<Instant>,
}

#[derive(Debug, Default)]
pub struct Intake {
    buckets: HashMap<String, Bucket>,
    unreported: BTreeMap<String, Unreported>,
    warnings: Vec<String>,
    dropped: Dropped,
    /// When, from where and why the latest message was turned away.
    last: Option<(Instant, String, Why)>,
}

impl Intake {
    pub fn new() -> Intake {
        Intake::default()
    }

    /// Whether one more message from `source` may pass at `now`. A message
    /// that may not is counted as [`Why::TooMany`]. `source` must come from
    /// a bounded set (the configured doors' topics): each gets a bucket.
    pub fn admit(&mut self, now: Instant, source: &str, limit: Limit) -> bool {
        let bucket = self.buckets.entry(source.to_string()).or_insert(Bucket {
            tokens: limit.burst,
            at: now,
        });
        // Time going backwards refills nothing.
        let elapsed = now.saturating_duration_since(bucket.at).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * limit.per_second).min(limit.burst);
        bucket.at = now.max(bucket.at);
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            return true;
        }
        self.turned_away(now, source, Why::TooMany, "");
        false
    }

    /// Counts a message from `source` that was turned away for `why`;
    /// `detail` (may be empty) says what was wrong with it and must hold no
    /// part of the payload.
    pub fn turned_away(&mut self, now: Instant, source: &str, why: Why, detail: &str) {
        self.counted(now, source, why);
        let key = if self.unreported.len() >= MAX_SOURCES && !self.unreported.contains_key(source) {
            OTHER
        } else {
            source
        };
        let entry = self
            .unreported
            .entry(key.to_string())
            .or_insert(Unreported {
                count: 0,
                why,
                detail: String::new(),
                last_warned: None,
            });
        entry.count += 1;
        entry.why = why;
        detail.clone_into(&mut entry.detail);
    }

    /// Counts a message turned away that the caller logs itself: it shows in
    /// [`Intake::health`], not in [`Intake::take_warnings`].
    pub fn counted(&mut self, now: Instant, source: &str, why: Why) {
        match why {
            Why::TooMany => self.dropped.rate_limited += 1,
            Why::TooLarge { .. } => self.dropped.oversized += 1,
            Why::Malformed => self.dropped.malformed += 1,
            Why::Retained => self.dropped.retained += 1,
        }
        // A flood repeats its source: reuse the string rather than
        // allocate one per message.
        match &mut self.last {
            Some((at, last_source, last_why)) if last_source == source => {
                *at = now;
                *last_why = why;
            }
            last => *last = Some((now, source.to_string(), why)),
        }
    }

    /// Log lines due at `now`: for each source, the first message turned
    /// away at once, then a count at most once per [`WARN_EVERY`]. Call it
    /// after every drop and now and then (a tick), so counts left at the
    /// end of a flood are reported too.
    pub fn take_warnings(&mut self, now: Instant) -> Vec<String> {
        self.collect(now);
        std::mem::take(&mut self.warnings)
    }

    fn collect(&mut self, now: Instant) {
        for (source, u) in &mut self.unreported {
            let due = match u.last_warned {
                None => true,
                Some(at) => now.saturating_duration_since(at) >= WARN_EVERY,
            };
            if u.count == 0 || !due {
                continue;
            }
            let span = match u.last_warned {
                None => String::new(),
                Some(at) => format!(
                    " in the last {}",
                    humantime::format_duration(Duration::from_secs(
                        now.saturating_duration_since(at).as_secs()
                    ))
                ),
            };
            let what = match u.why {
                Why::TooMany => "; lock commands and safety events are not held up by them",
                _ => "",
            };
            let detail = if u.detail.is_empty() {
                String::new()
            } else {
                format!(" (latest: {})", u.detail)
            };
            self.warnings.push(format!(
                "{} on {source}: {} dropped{span}{detail}{what}",
                u.why.words(),
                u.count
            ));
            u.count = 0;
            u.last_warned = Some(now);
        }
    }

    /// What the problem entity shows at `now`.
    pub fn health(&self, now: Instant) -> Health {
        let recent = self
            .last
            .as_ref()
            .filter(|(at, _, _)| now.saturating_duration_since(*at) < PROBLEM_FOR);
        Health {
            problem: recent.is_some(),
            reason: recent
                .map(|(_, source, why)| format!("dropped: {} on {source}", why.words()))
                .unwrap_or_default(),
            dropped: self.dropped,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SRC: &str = "doorwarden/front_door/delivery/request";

    #[test]
    fn a_burst_passes_then_the_rate_holds_and_time_refills() {
        let t0 = Instant::now();
        let mut intake = Intake::new();
        let passed = (0..100).filter(|_| intake.admit(t0, SRC, COMMANDS)).count();
        assert_eq!(passed, 20);
        // One second later, five more.
        let t1 = t0 + Duration::from_secs(1);
        let passed = (0..100).filter(|_| intake.admit(t1, SRC, COMMANDS)).count();
        assert_eq!(passed, 5);
        // Another source has its own bucket.
        assert!(intake.admit(t1, "doorwarden/front_door/lock/set", COMMANDS));
        assert_eq!(intake.health(t1).dropped.rate_limited, 175);
    }

    #[test]
    fn a_flood_gives_one_line_at_once_and_then_one_a_minute() {
        let t0 = Instant::now();
        let mut intake = Intake::new();
        let mut lines = Vec::new();
        for ms in 0..150_000u64 {
            let now = t0 + Duration::from_micros(ms * 800);
            intake.admit(now, SRC, COMMANDS);
            lines.extend(intake.take_warnings(now));
        }
        // 120 s of flood: the first drop, then one a minute.
        assert_eq!(lines.len(), 2, "{lines:#?}");
        assert!(lines[0].starts_with(&format!("too many messages on {SRC}: 1 dropped")));
        assert!(lines[1].contains("in the last 1m"), "{}", lines[1]);
        // What is left is reported by a later tick.
        let later = t0 + Duration::from_secs(240);
        let tail = intake.take_warnings(later);
        assert_eq!(tail.len(), 1, "{tail:#?}");
        assert!(intake.take_warnings(later).is_empty());
    }

    #[test]
    fn the_problem_entity_names_the_last_drop_and_clears_after_ten_quiet_minutes() {
        let t0 = Instant::now();
        let mut intake = Intake::new();
        assert!(!intake.health(t0).problem);
        intake.turned_away(t0, SRC, Why::TooLarge { bytes: 2_097_152 }, "");
        let h = intake.health(t0);
        assert!(h.problem);
        assert_eq!(
            h.reason,
            format!("dropped: message too large (2097152 bytes) on {SRC}")
        );
        assert_eq!(h.dropped.oversized, 1);
        let h = intake.health(t0 + PROBLEM_FOR);
        assert!(!h.problem);
        assert_eq!(h.dropped.oversized, 1, "the count stays");
    }

    #[test]
    fn random_topics_cannot_grow_the_log_map() {
        let t0 = Instant::now();
        let mut intake = Intake::new();
        for n in 0..10_000 {
            intake.turned_away(t0, &format!("random/{n}"), Why::Malformed, "not JSON");
        }
        assert!(intake.unreported.len() <= MAX_SOURCES + 1);
        let lines = intake.take_warnings(t0);
        assert!(lines.len() <= MAX_SOURCES + 1);
    }

    #[test]
    fn time_going_backwards_refills_nothing() {
        let t0 = Instant::now() + Duration::from_secs(10);
        let mut intake = Intake::new();
        while intake.admit(t0, SRC, COMMANDS) {}
        assert!(!intake.admit(t0 - Duration::from_secs(5), SRC, COMMANDS));
    }
}
