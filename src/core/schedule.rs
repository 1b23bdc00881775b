//! Weekly delivery windows in the door's time zone, and windows granted now.
//!
//! A [`Schedule`] answers one question for one door: is a delivery window
//! open at this instant, and which one? It reads no clock; every method takes
//! the wall time it should answer for.
//!
//! # What a window means on odd days
//!
//! Each window edge (`from` on the start day, `to` on the same day or, when
//! `to` is earlier than `from`, on the next day) happens at **the first
//! instant the door's wall clock shows that time or later on that date**.
//! One rule covers both daylight-saving changes:
//!
//! - Clocks go forward (Europe/Berlin 2026-03-29, 02:00 -> 03:00): local
//!   times in the skipped hour never show, so an edge inside it happens the
//!   moment the clocks jump. A 02:30-04:00 window opens at 03:00 and lasts one
//!   hour; a window ending at 02:30 closes at 03:00. A window lying wholly
//!   inside the skipped hour (02:10-02:50) does not happen that day.
//! - Clocks go back (Europe/Berlin 2026-10-25, 03:00 -> 02:00): local times
//!   in the repeated hour show twice, and an edge happens the first time. A
//!   02:15-02:45 window happens once, in the first pass (summer time); when
//!   the clock shows 02:15 again it stays closed. A window from 01:00 to 02:30
//!   closes at the first 02:30.
//!
//! A window across midnight simply lasts one hour more or less on those
//! nights (22:00-06:00 is 7 real hours in spring, 9 in autumn), which is what
//! the owner reads on the clock.
//!
//! # Overlaps, grants and cancels
//!
//! - Weekly windows that overlap are not merged: the open occurrence is the
//!   one that started first (the longer one on a tie). When it ends while
//!   another is still running, that one takes over as its own occurrence,
//!   with its own `starts` (and so its own entry count in the interlock).
//! - A granted window (from Home Assistant, for a duration) wins over the
//!   weekly ones while it is open. Granting while a weekly occurrence is open
//!   absorbs it: the grant runs until its own end or the weekly one's,
//!   whichever is later, so the grant never shortens a window the owner
//!   already had. A new grant replaces the previous one (and so starts a new
//!   occurrence). A weekly occurrence that starts during a grant and outlasts
//!   it is open on its own after the grant ends.
//! - [`Schedule::cancel`] ends the grant and every weekly occurrence open at
//!   that instant (it remembers the instant: an occurrence that had started
//!   by then and had not yet ended stays closed). Later occurrences open as
//!   usual. Only the last cancel is remembered.
//!
//! Edges are half-open: a window is open at exactly its start and closed at
//! exactly its end. Time may go backwards between calls (the wall clock is
//! stepped); every answer is a function of the instant asked about, so
//! nothing panics and nothing gets stuck.
//!
//! A window whose `from` equals its `to` is refused by config validation;
//! should one reach this module it is treated as never open.

use std::time::Duration;

use jiff::Timestamp;
use jiff::civil::{Date, DateTime, Time, Weekday};
use jiff::tz::{AmbiguousOffset, TimeZone};

use crate::config;

/// One occurrence of an open delivery window. `starts` identifies it: the
/// interlock counts entries per occurrence.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct OpenWindow {
    pub starts: Timestamp,
    pub ends: Timestamp,
    /// Granted from Home Assistant rather than from the weekly schedule.
    pub granted: bool,
}

impl OpenWindow {
    /// Open at `now` (start included, end excluded).
    pub fn contains(&self, now: Timestamp) -> bool {
        self.starts <= now && now < self.ends
    }
}

/// A weekly window as the owner wrote it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Weekly {
    days: Vec<Weekday>,
    from: Time,
    to: Time,
}

/// The delivery windows of one door.
#[derive(Debug, Clone)]
pub struct Schedule {
    tz: TimeZone,
    weekly: Vec<Weekly>,
    grant: Option<OpenWindow>,
    /// The instant of the last cancel: weekly occurrences open then stay shut.
    cancelled_at: Option<Timestamp>,
}

/// Occurrences starting this many days before the local date of `now` may
/// still be open. One is enough (a window lasts under a day plus a DST hour);
/// two leaves room for a zone that skips a whole date.
const LOOK_BACK_DAYS: i64 = 2;
/// Every weekly window with at least one day has an edge within a week; a
/// little more covers a week whose only occurrence falls in a DST gap.
const LOOK_AHEAD_DAYS: i64 = 15;

impl Schedule {
    pub fn new(tz: TimeZone, windows: &[config::Window]) -> Schedule {
        let weekly = windows
            .iter()
            .map(|w| {
                let mut days: Vec<Weekday> = w.days.iter().map(|d| d.to_jiff()).collect();
                days.sort_by_key(|d| d.to_monday_zero_offset());
                days.dedup();
                Weekly {
                    days,
                    from: w.from.0,
                    to: w.to.0,
                }
            })
            .collect();
        Schedule {
            tz,
            weekly,
            grant: None,
            cancelled_at: None,
        }
    }

    pub fn time_zone(&self) -> &TimeZone {
        &self.tz
    }

    /// The window open at `now`, if any.
    pub fn open_window(&self, now: Timestamp) -> Option<OpenWindow> {
        if let Some(grant) = self.grant.filter(|g| g.contains(now)) {
            return Some(grant);
        }
        self.weekly_open(now)
    }

    /// The next instant after `now` at which [`Schedule::open_window`] may
    /// answer differently (a window edge or the grant's end). `None` when
    /// nothing will ever change: no weekly windows and no grant ahead.
    /// Calling early or with an instant where nothing changes is harmless.
    pub fn next_change(&self, now: Timestamp) -> Option<Timestamp> {
        let mut soonest: Option<Timestamp> = None;
        let mut consider = |t: Timestamp| {
            if t > now && soonest.is_none_or(|s| t < s) {
                soonest = Some(t);
            }
        };
        if let Some(g) = self.grant {
            consider(g.starts);
            consider(g.ends);
        }
        let today = self.local_date(now);
        for offset in -LOOK_BACK_DAYS..=LOOK_AHEAD_DAYS {
            for occ in self.occurrences_starting(today, offset) {
                consider(occ.starts);
                consider(occ.ends);
            }
        }
        soonest
    }

    /// Open a window now for `duration` (replacing any earlier grant) and
    /// return it. If a weekly occurrence is open it is absorbed: the grant
    /// lasts at least until that occurrence would have ended.
    pub fn grant(&mut self, now: Timestamp, duration: Duration) -> OpenWindow {
        let own_end = now.checked_add(duration).unwrap_or(Timestamp::MAX);
        let ends = self
            .weekly_containing(now)
            .map(|occ| occ.ends)
            .fold(own_end, |a, b| a.max(b));
        let grant = OpenWindow {
            starts: now,
            ends,
            granted: true,
        };
        self.grant = Some(grant);
        grant
    }

    /// Close everything open at `now`: the grant, and every weekly
    /// occurrence that has started and not yet ended.
    pub fn cancel(&mut self, now: Timestamp) {
        self.grant = None;
        self.cancelled_at = Some(now);
    }

    /// The current grant, open or not yet expired, whatever the time.
    pub fn granted(&self) -> Option<OpenWindow> {
        self.grant
    }

    /// One line per weekly window in the owner's terms, e.g.
    /// `Mon-Fri 09:00-12:30 (Europe/Berlin)`.
    pub fn describe(&self) -> Vec<String> {
        let zone = self.tz.iana_name().unwrap_or("system time zone");
        self.weekly
            .iter()
            .map(|w| {
                let days = describe_days(&w.days);
                let next_day = if w.to < w.from { " next day" } else { "" };
                let never = if w.to == w.from || w.days.is_empty() {
                    ", never open"
                } else {
                    ""
                };
                format!(
                    "{days} {}-{}{next_day} ({zone}){never}",
                    config::LocalTime(w.from),
                    config::LocalTime(w.to)
                )
            })
            .collect()
    }

    fn weekly_open(&self, now: Timestamp) -> Option<OpenWindow> {
        self.weekly_containing(now)
            .min_by_key(|occ| (occ.starts, std::cmp::Reverse(occ.ends)))
    }

    /// Weekly occurrences open at `now`, less any cancelled.
    fn weekly_containing(&self, now: Timestamp) -> impl Iterator<Item = OpenWindow> + '_ {
        let today = self.local_date(now);
        (-LOOK_BACK_DAYS..=0)
            .flat_map(move |offset| self.occurrences_starting(today, offset))
            .filter(move |occ| occ.contains(now))
            .filter(|occ| !self.cancelled_at.is_some_and(|c| occ.contains(c)))
    }

    fn local_date(&self, now: Timestamp) -> Date {
        self.tz.to_datetime(now).date()
    }

    /// The weekly occurrences that start on the date `offset` days from
    /// `today`. Dates outside jiff's range and empty occurrences (a window
    /// wholly inside a DST gap) yield nothing.
    fn occurrences_starting(&self, today: Date, offset: i64) -> Vec<OpenWindow> {
        let Ok(date) = today.checked_add(jiff::Span::new().days(offset)) else {
            return Vec::new();
        };
        let weekday = date.weekday();
        self.weekly
            .iter()
            .filter(|w| w.days.contains(&weekday) && w.from != w.to)
            .filter_map(|w| {
                let end_date = if w.to < w.from {
                    date.tomorrow().ok()?
                } else {
                    date
                };
                let starts = self.edge(DateTime::from_parts(date, w.from))?;
                let ends = self.edge(DateTime::from_parts(end_date, w.to))?;
                (starts < ends).then_some(OpenWindow {
                    starts,
                    ends,
                    granted: false,
                })
            })
            .collect()
    }

    /// The first instant the local clock shows `local` or later (see the
    /// module doc): the first pass in a fold, the jump itself in a gap.
    fn edge(&self, local: DateTime) -> Option<Timestamp> {
        let ambiguous = self.tz.to_ambiguous_timestamp(local);
        match ambiguous.offset() {
            AmbiguousOffset::Unambiguous { .. } | AmbiguousOffset::Fold { .. } => {
                ambiguous.earlier().ok()
            }
            AmbiguousOffset::Gap { .. } => {
                // The jump lies after `local` read with the later offset and
                // no later than `local` read with the earlier one.
                let before_jump = ambiguous.earlier().ok()?;
                let jump = self.tz.following(before_jump).next()?.timestamp();
                Some(jump)
            }
        }
    }
}

/// `Mon-Fri`, `Sat, Sun`, `Mon, Wed-Fri`: runs of three or more days are
/// written as a range.
fn describe_days(days: &[Weekday]) -> String {
    if days.is_empty() {
        return "no days".into();
    }
    let name = |d: Weekday| match d {
        Weekday::Monday => "Mon",
        Weekday::Tuesday => "Tue",
        Weekday::Wednesday => "Wed",
        Weekday::Thursday => "Thu",
        Weekday::Friday => "Fri",
        Weekday::Saturday => "Sat",
        Weekday::Sunday => "Sun",
    };
    // `days` is sorted Monday first and has no duplicates (see `new`).
    let mut parts: Vec<String> = Vec::new();
    let mut i = 0;
    while i < days.len() {
        let mut j = i;
        while j + 1 < days.len()
            && days[j + 1].to_monday_zero_offset() == days[j].to_monday_zero_offset() + 1
        {
            j += 1;
        }
        if j - i >= 2 {
            parts.push(format!("{}-{}", name(days[i]), name(days[j])));
        } else {
            parts.extend(days[i..=j].iter().map(|d| name(*d).to_string()));
        }
        i = j + 1;
    }
    parts.join(", ")
}

/// The time zone for a door's windows: the IANA name from the config, or the
/// system's zone when `None`. The error is a sentence for the owner.
pub fn time_zone(name: Option<&str>) -> Result<TimeZone, String> {
    match name {
        Some(name) => TimeZone::get(name).map_err(|_| {
            format!(
                "unknown time zone `{name}`: use an IANA name such as \"Europe/Berlin\" \
                 or \"America/New_York\""
            )
        }),
        // Falling back to UTC would move every window by hours without a
        // word; refusing makes the owner say which zone they mean.
        None => TimeZone::try_system().map_err(|e| {
            format!(
                "cannot tell this system's time zone ({e}); set `time_zone` to an IANA \
                 name such as \"Europe/Berlin\""
            )
        }),
    }
}
