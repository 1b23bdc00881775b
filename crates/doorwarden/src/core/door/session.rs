//! The door's delivery: idle, one in progress, or a relock a finished one
//! is still owed ([`Delivery`]).
//!
//! Owns: where the delivery stands ([`Phase`], each step holding what only
//! it knows: why a relock is due, when it was sent), what the delivery has
//! seen (door open time, camera timeline, whether it was compromised), the
//! relock it may leave owed, and the [`SessionRecord`] persisted for either.
//! May not touch: the lock, the timers, the code or the windows; it pushes
//! no actions. The door moves it from step to step and says so.

use std::time::{Duration, Instant};

use jiff::Timestamp;
use serde_json::{Value, json};

use super::CameraSnapshot;
use crate::core::schedule::OpenWindow;
use crate::core::{RequestChannel, SessionRecord};

/// Where a delivery stands.
///
/// ```text
///   Unlocking ──lock confirms──> Unlocked ──door opens, shuts──> Closing
///       │                           ^                               │
///       │                           └────── door reopens ───────────┤
///       │  relock due, door open: RelockOnShut ──door shuts──┐      │ relock_after_close
///       └──────────── relock due, door shut ─────────────────┴──> Relocking
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Phase {
    /// Unlock sent, not yet confirmed.
    Unlocking,
    /// Unlocked, waiting for the door to open and shut.
    Unlocked,
    /// The door opened and shut; relock at `relock_after_close`.
    Closing,
    /// A relock is due but the door is open: relock as soon as it shuts.
    RelockOnShut {
        /// Why the relock is due (kept for the summary and the relock).
        why: String,
    },
    /// Lock sent, not yet confirmed. A session never leaves this step
    /// except by ending.
    Relocking {
        /// Why the session relocked (for the summary).
        why: String,
        /// When the relock was sent.
        sent_at: Timestamp,
    },
}

impl Phase {
    /// A relock is already on its way or waiting for the door to shut.
    pub(super) fn relock_due(&self) -> bool {
        matches!(self, Phase::RelockOnShut { .. } | Phase::Relocking { .. })
    }

    /// Why the session relocks, once a relock is due.
    pub(super) fn relock_reason(&self) -> Option<&str> {
        match self {
            Phase::RelockOnShut { why } | Phase::Relocking { why, .. } => Some(why),
            _ => None,
        }
    }

    /// When the relock was sent, once it was.
    pub(super) fn relock_sent_at(&self) -> Option<Timestamp> {
        match self {
            Phase::Relocking { sent_at, .. } => Some(*sent_at),
            _ => None,
        }
    }
}

/// A delivery from its unlock until its relock is confirmed or given up.
#[derive(Debug, Clone)]
pub(super) struct Session {
    pub(super) record: SessionRecord,
    pub(super) via: Option<RequestChannel>,
    pub(super) phase: Phase,
    pub(super) window: Option<OpenWindow>,
    /// When the lock confirmed the unlock.
    pub(super) unlocked_at: Option<Timestamp>,
    pub(super) opened_at: Option<Instant>,
    pub(super) open_total: Duration,
    pub(super) opened_ever: bool,
    pub(super) compromised: bool,
    pub(super) restarted: bool,
    pub(super) code_used: bool,
    /// Camera health over the session: one entry at the start per camera,
    /// then one per change.
    pub(super) timeline: Vec<Value>,
}

impl Session {
    /// A session in `phase`, nothing counted yet, with the cameras as they
    /// are at `now` as the start of its health timeline.
    pub(super) fn new(
        record: SessionRecord,
        phase: Phase,
        now: Timestamp,
        cameras: &[CameraSnapshot],
    ) -> Session {
        Session {
            record,
            via: None,
            phase,
            window: None,
            unlocked_at: None,
            opened_at: None,
            open_total: Duration::ZERO,
            opened_ever: false,
            compromised: false,
            restarted: false,
            code_used: false,
            timeline: cameras.iter().map(|c| timeline_entry(now, c)).collect(),
        }
    }

    /// A camera changed during the delivery: one more timeline entry.
    pub(super) fn note_camera(&mut self, at: Timestamp, cam: &CameraSnapshot) {
        self.timeline.push(timeline_entry(at, cam));
    }

    pub(super) fn open_seconds(&self, now: Instant) -> u64 {
        let running = self
            .opened_at
            .map(|t| now.saturating_duration_since(t))
            .unwrap_or_default();
        (self.open_total + running).as_secs()
    }
}

/// The door's delivery. One at a time: a new delivery takes over the
/// relock an earlier one still owed.
#[derive(Debug, Clone)]
pub(super) enum Delivery {
    /// Nothing in progress, nothing owed.
    Idle,
    /// From the unlock until the relock is confirmed or given up.
    InProgress(Session),
    /// A delivery whose session had to end without the lock confirming the
    /// relock (unresponsive, jammed): the door may be unlocked. The relock
    /// is sent again once the lock talks; it is owed until the bolt is
    /// reported locked or the owner takes the door over.
    RelockOwed(OwedRelock),
}

impl Delivery {
    /// The delivery in progress.
    pub(super) fn session(&self) -> Option<&Session> {
        match self {
            Delivery::InProgress(s) => Some(s),
            _ => None,
        }
    }

    pub(super) fn session_mut(&mut self) -> Option<&mut Session> {
        match self {
            Delivery::InProgress(s) => Some(s),
            _ => None,
        }
    }

    /// The relock a finished delivery is still owed.
    pub(super) fn owed(&self) -> Option<&OwedRelock> {
        match self {
            Delivery::RelockOwed(owed) => Some(owed),
            _ => None,
        }
    }

    /// The record to persist: the delivery in progress, or one whose
    /// relock is still owed (so that a restart relocks the door too).
    pub(super) fn record(&self) -> Option<SessionRecord> {
        match self {
            Delivery::Idle => None,
            Delivery::InProgress(s) => Some(s.record.clone()),
            Delivery::RelockOwed(owed) => Some(owed.record.clone()),
        }
    }

    /// End the delivery in progress, leaving nothing owed.
    pub(super) fn take_session(&mut self) -> Option<Session> {
        match std::mem::replace(self, Delivery::Idle) {
            Delivery::InProgress(s) => Some(s),
            other => {
                *self = other;
                None
            }
        }
    }
}

/// A relock a finished delivery is still owed.
#[derive(Debug, Clone)]
pub(super) struct OwedRelock {
    pub(super) why: String,
    /// Kept persisted, so that a restart relocks the door too.
    pub(super) record: SessionRecord,
}

fn timeline_entry(at: Timestamp, c: &CameraSnapshot) -> Value {
    json!({
        "at": at.to_string(),
        "camera": c.name,
        "state": c.kind.as_str(),
        "reason": c.reason,
    })
}
