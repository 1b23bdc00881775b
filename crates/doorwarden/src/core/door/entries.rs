//! The door's delivery windows and what has been spent of them.
//!
//! Owns: the schedule (weekly windows, a grant, the owner's "End delivery")
//! and its cached answers (the open window and next edge, the next
//! clock-change warning), the occurrence open at the last refresh, the
//! entries made in it, the grant length the owner chose, and the door's
//! persisted limits ([`DoorRecord`]) as the store last held them. May not
//! touch: the lock, the session or the code; it pushes no actions and
//! writes no audit. The door asks it what is open, tells it when an entry
//! is made, and says what a window edge means.

use std::time::Duration;

use jiff::Timestamp;

use crate::core::schedule::{ClockChangeWarning, OpenWindow, Schedule, WARNING_HORIZON};
use crate::core::{DoorRecord, GrantRecord, Stamp};

/// One door's windows and entries.
#[derive(Debug, Clone)]
pub(super) struct Entries {
    schedule: Schedule,
    /// The window occurrence open at the last refresh.
    pub(super) window: Option<OpenWindow>,
    /// The occurrence `used` counts for.
    counts_for: Option<Timestamp>,
    pub(super) used: u32,
    /// How long a grant from Home Assistant opens a window for, unless the
    /// request says otherwise.
    pub(super) grant_duration: Duration,
    /// The door's limits as this door last asked the store to hold them.
    saved: Option<DoorRecord>,
    /// The schedule's answer at the last refresh: the wall time asked
    /// about, the window open then, and the next edge. Valid until the wall
    /// clock reaches that edge or goes back before the time asked about;
    /// cleared when a grant or cancel changes the schedule.
    window_cache: Option<(Timestamp, Option<OpenWindow>, Option<Timestamp>)>,
    /// The next clock-change warning as of the wall time asked about, and
    /// until when that answer holds (see [`Entries::refresh_clock_warning`]).
    clock_warning: Option<(Timestamp, Option<ClockChangeWarning>, Timestamp)>,
}

impl Entries {
    pub(super) fn new(schedule: Schedule, grant_duration: Duration) -> Entries {
        Entries {
            schedule,
            window: None,
            counts_for: None,
            used: 0,
            grant_duration,
            saved: None,
            window_cache: None,
            clock_warning: None,
        }
    }

    pub(super) fn schedule(&self) -> &Schedule {
        &self.schedule
    }

    /// The occurrence (its start) the entry count is for.
    pub(super) fn counts_for(&self) -> Option<Timestamp> {
        self.counts_for
    }

    /// Every entry of the window is used.
    pub(super) fn spent(&self, allowed: u32) -> bool {
        self.used >= allowed
    }

    /// The clock-change warning to show now, if any.
    pub(super) fn clock_warning(&self) -> Option<&ClockChangeWarning> {
        self.clock_warning.as_ref().and_then(|(_, w, _)| w.as_ref())
    }

    /// What a restart must not hand back at door `door` (a window the
    /// owner ended, entries made, the `wrong_codes` of the current minute,
    /// a granted window); `None` when there is nothing to remember.
    pub(super) fn record(&self, door: &str, wrong_codes: Vec<Timestamp>) -> Option<DoorRecord> {
        let entries_window = self.counts_for.filter(|_| self.used > 0);
        let record = DoorRecord {
            door: door.to_string(),
            cancelled_at: self.schedule.cancelled_at(),
            entries_window,
            entries_used: if entries_window.is_some() {
                self.used
            } else {
                0
            },
            wrong_codes,
            grant: self.schedule.granted().map(|g| GrantRecord {
                starts: g.starts,
                ends: g.ends,
            }),
        };
        let empty = record.cancelled_at.is_none()
            && record.entries_window.is_none()
            && record.wrong_codes.is_empty()
            && record.grant.is_none();
        (!empty).then_some(record)
    }

    /// What the store was last asked to hold of the door's limits.
    pub(super) fn saved(&self) -> &Option<DoorRecord> {
        &self.saved
    }

    /// The store now holds `record`.
    pub(super) fn set_saved(&mut self, record: Option<DoorRecord>) {
        self.saved = record;
    }

    /// The next window edge after `last.wall`.
    pub(super) fn next_edge(&self, last: Stamp) -> Option<Timestamp> {
        match self.window_cache {
            Some((asked, _, next)) if asked == last.wall => next,
            _ => self.schedule.next_change(last.wall),
        }
    }

    /// The schedule's open window at `wall`, asking it again only when an
    /// edge may have passed (the schedule walks the calendar to answer).
    pub(super) fn open_window(&mut self, wall: Timestamp) -> Option<OpenWindow> {
        match self.window_cache {
            Some((asked, open, next)) if asked <= wall && next.is_none_or(|n| wall < n) => {
                self.window_cache = Some((wall, open, next));
                open
            }
            _ => {
                let open = self.schedule.open_window(wall);
                self.window_cache = Some((wall, open, self.schedule.next_change(wall)));
                open
            }
        }
    }

    /// Keep the next clock-change warning current. Asking the schedule walks
    /// a year of the zone's transitions, so the answer is kept until the
    /// warned occurrence is over, or for a day when there is none (a new
    /// one may come within the year's horizon); a wall clock stepped back
    /// asks again.
    pub(super) fn refresh_clock_warning(&mut self, wall: Timestamp) {
        if let Some((asked, _, until)) = &self.clock_warning
            && *asked <= wall
            && wall < *until
        {
            return;
        }
        let next = self
            .schedule
            .clock_change_warnings(wall, WARNING_HORIZON)
            .into_iter()
            .next();
        let a_day = wall
            .checked_add(jiff::SignedDuration::from_hours(24))
            .unwrap_or(Timestamp::MAX);
        let until = next.as_ref().map_or(a_day, |w| w.until.min(a_day));
        self.clock_warning = Some((wall, next, until));
    }

    /// Make `used` count for the occurrence starting at `starts`.
    pub(super) fn count_for(&mut self, starts: Timestamp) {
        if self.counts_for != Some(starts) {
            self.counts_for = Some(starts);
            self.used = 0;
        }
    }

    /// At least `used` entries were made in the occurrence starting at
    /// `starts` (read back from the store).
    pub(super) fn at_least(&mut self, starts: Timestamp, used: u32) {
        self.count_for(starts);
        self.used = self.used.max(used);
    }

    /// A delivery interrupted by a restart used its window's entry; a
    /// restart must not hand out another one in the same window.
    pub(super) fn restore_interrupted(&mut self, unlocked_at: Timestamp) {
        if let Some(w) = self.schedule.open_window(unlocked_at) {
            self.count_for(w.starts);
            self.used += 1;
        }
    }

    /// The windows as the owner left them before the restart; the grant
    /// that is open again, if any.
    pub(super) fn restore_windows(
        &mut self,
        now: Timestamp,
        record: &DoorRecord,
    ) -> Option<GrantRecord> {
        if let Some(at) = record.cancelled_at {
            self.schedule.restore_cancelled(at);
        }
        let grant = record
            .grant
            .filter(|g| self.schedule.restore_grant(now, g.starts, g.ends));
        self.window_cache = None;
        grant
    }

    /// The entries made before the restart count again while their window
    /// occurrence is still open. The store holds `record` from now on.
    pub(super) fn restore_entries(&mut self, now: Timestamp, record: &DoorRecord) {
        if let Some(starts) = record.entries_window
            && self.open_window(now).is_some_and(|w| w.starts == starts)
        {
            // An interrupted delivery restored just before is already among
            // the stored entries (they were persisted before its unlock).
            self.at_least(starts, record.entries_used);
        }
        self.saved = Some(record.clone());
    }

    /// Open a window from `now` for `duration` (the owner's grant length
    /// when `None`).
    pub(super) fn grant(&mut self, now: Timestamp, duration: Option<Duration>) -> OpenWindow {
        let d = duration.unwrap_or(self.grant_duration);
        let w = self.schedule.grant(now, d);
        self.window_cache = None;
        w
    }

    /// The owner ended the delivery: every occurrence open at `now` shuts.
    pub(super) fn cancel(&mut self, now: Timestamp) {
        self.schedule.cancel(now);
        self.window_cache = None;
    }
}
