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
//! And one cap: **a window never lasts longer in real time than the owner
//! wrote** (`to` minus `from` on the clock). It ends at its `to` edge or
//! after its written length from its start, whichever comes first. Only a
//! night whose clocks go back can make the cap bite: New York's Sunday
//! 01:00-02:00 on 2026-11-01 opens at 01:00 EDT and closes one real hour
//! later, when the clocks show 01:00 again (EST), instead of staying open
//! through the repeated hour until 02:00 EST; Berlin's 22:00-06:00 that
//! night closes at 05:00 CET, after its 8 hours. Why this rule: the owner
//! sized the window as a length of exposure, and doorwarden fails closed, so
//! a clock change may shorten a window (spring: 22:00-06:00 lasts 7 real
//! hours) but never lengthen it. Nobody is left to find out on the night:
//! [`Schedule::clock_change_warnings`] names every occurrence a clock change
//! touches, what will happen, and when, for `check-config`, the start-up log
//! and the door's state.
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

use jiff::civil::{Date, DateTime, Time, Weekday};
use jiff::tz::{AmbiguousOffset, Offset, TimeZone};
use jiff::{SignedDuration, Timestamp};

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

impl Weekly {
    /// The wall times this window runs between when it starts on `date`
    /// (`to` on the next day for a window across midnight).
    fn on(&self, date: Date) -> Option<(DateTime, DateTime)> {
        let end_date = if self.to < self.from {
            date.tomorrow().ok()?
        } else {
            date
        };
        Some((
            DateTime::from_parts(date, self.from),
            DateTime::from_parts(end_date, self.to),
        ))
    }
}

/// One weekly occurrence that a clock change touches, as the owner should
/// hear about it ahead of time: `check-config` and the start-up log print
/// it (after the door's name), the door's state carries the next one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClockChangeWarning {
    /// When the occurrence opens, or the change itself when it does not.
    pub starts: Timestamp,
    /// Until when the warning concerns the future: the occurrence's end,
    /// or the change itself when it does not open.
    pub until: Timestamp,
    /// e.g. `window Sun 02:00-03:00 on 2027-03-28 falls in the hour
    /// Europe/Berlin skips (clocks go 02:00 -> 03:00): it will not open that day`
    pub text: String,
}

impl std::fmt::Display for ClockChangeWarning {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text)
    }
}

/// A moment the zone's offset changes.
struct ClockChange {
    at: Timestamp,
    before: Offset,
    after: Offset,
}

impl ClockChange {
    /// The wall times that are skipped (clocks forward) or show twice
    /// (clocks back), half-open: `[02:00, 03:00)` in Berlin both ways.
    fn affected(&self) -> (DateTime, DateTime) {
        let old = self.before.to_datetime(self.at);
        let new = self.after.to_datetime(self.at);
        (old.min(new), old.max(new))
    }
}

/// `1h`, `30m`, `1h 30m`.
fn length(d: SignedDuration) -> String {
    let minutes = d.as_secs().max(0) / 60;
    match (minutes / 60, minutes % 60) {
        (0, m) => format!("{m}m"),
        (h, 0) => format!("{h}h"),
        (h, m) => format!("{h}h {m}m"),
    }
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

/// How far ahead the owner is warned about windows a clock change touches:
/// a year covers each change of the zone at least once.
pub const WARNING_HORIZON: SignedDuration = SignedDuration::from_hours(24 * 365);

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

    /// The last grant, whether or not it has ended since (a cancel clears it).
    pub fn granted(&self) -> Option<OpenWindow> {
        self.grant
    }

    /// The instant of the last [`Schedule::cancel`], if any.
    pub fn cancelled_at(&self) -> Option<Timestamp> {
        self.cancelled_at
    }

    /// A cancel made before a restart: the occurrences open at `at` stay
    /// shut, as they did then. Unlike [`Schedule::cancel`] it leaves the
    /// grant alone (a grant stored beside it was made after it).
    pub fn restore_cancelled(&mut self, at: Timestamp) {
        self.cancelled_at = Some(at);
    }

    /// A grant made before a restart, with the edges it had then (not
    /// recomputed, so it can neither grow nor absorb anything new). Only
    /// one still open at `now` comes back; `false` when it does not.
    pub fn restore_grant(&mut self, now: Timestamp, starts: Timestamp, ends: Timestamp) -> bool {
        let grant = OpenWindow {
            starts,
            ends,
            granted: true,
        };
        if !grant.contains(now) {
            return false;
        }
        self.grant = Some(grant);
        true
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
            .filter_map(|w| self.occurrence_on(date, w))
            .collect()
    }

    /// The occurrence of `w` starting on `date`, with both DST rules and
    /// the length cap of the module doc applied; `None` when it does not
    /// happen (wholly inside a gap, or at the calendar's edges).
    fn occurrence_on(&self, date: Date, w: &Weekly) -> Option<OpenWindow> {
        let (from, to) = w.on(date)?;
        let starts = self.edge(from)?;
        let by_clock = self.edge(to)?;
        let by_length = starts
            .checked_add(from.duration_until(to))
            .unwrap_or(by_clock);
        let ends = by_clock.min(by_length);
        (starts < ends).then_some(OpenWindow {
            starts,
            ends,
            granted: false,
        })
    }

    /// Every weekly occurrence that meets a clock change of this zone and
    /// has not ended by `now`, for changes up to `horizon` after `now`,
    /// soonest first. Each says what will happen (see the module doc).
    /// An occurrence meets a change when any wall time it names is skipped
    /// or shows twice; a window merely ending as the skipped hour begins, or
    /// starting as it ends, does not.
    pub fn clock_change_warnings(
        &self,
        now: Timestamp,
        horizon: SignedDuration,
    ) -> Vec<ClockChangeWarning> {
        let end = now.checked_add(horizon).unwrap_or(Timestamp::MAX);
        // A change shortly before `now` may still be inside an occurrence
        // that is open now (a window lasts under a day).
        let look_from = now
            .checked_sub(SignedDuration::from_hours(48))
            .unwrap_or(Timestamp::MIN);
        let mut warnings = Vec::new();
        for t in self.tz.following(look_from) {
            let at = t.timestamp();
            if at > end {
                break;
            }
            let Ok(just_before) = at.checked_sub(SignedDuration::from_nanos(1)) else {
                continue;
            };
            let change = ClockChange {
                at,
                before: self.tz.to_offset(just_before),
                after: t.offset(),
            };
            if change.before == change.after {
                // Only the name or the DST flag changed; every clock reading
                // still shows exactly once.
                continue;
            }
            let (a, b) = change.affected();
            // Occurrences starting the day before may run into the change.
            let Ok(first) = a.date().yesterday() else {
                continue;
            };
            let last = b.date();
            for w in self.weekly.iter().filter(|w| w.from != w.to) {
                for date in first.series(jiff::Span::new().days(1)) {
                    if date > last {
                        break;
                    }
                    if !w.days.contains(&date.weekday()) {
                        continue;
                    }
                    let Some((from, to)) = w.on(date) else {
                        continue;
                    };
                    if !(from < b && a < to) {
                        continue;
                    }
                    let outcome = self.occurrence_on(date, w);
                    let until = outcome.map_or(at, |o| o.ends);
                    if until <= now {
                        continue;
                    }
                    warnings.push(ClockChangeWarning {
                        starts: outcome.map_or(at, |o| o.starts),
                        until,
                        text: self.warning_text(date, w, &change, outcome),
                    });
                }
            }
        }
        warnings.sort_by(|x, y| (x.starts, &x.text).cmp(&(y.starts, &y.text)));
        warnings.dedup();
        warnings
    }

    /// What the owner reads about one occurrence meeting one change.
    fn warning_text(
        &self,
        date: Date,
        w: &Weekly,
        change: &ClockChange,
        outcome: Option<OpenWindow>,
    ) -> String {
        let zone = self.tz.iana_name().unwrap_or("the system time zone");
        let (a, b) = change.affected();
        let wholly = w.on(date).is_some_and(|(from, to)| a <= from && to <= b);
        let shift = change.after.duration_since(change.before);
        let span = if shift.abs() == SignedDuration::from_hours(1) {
            "the hour".to_string()
        } else {
            format!("the {} minutes", shift.abs().as_secs() / 60)
        };
        let what = if shift.is_positive() {
            "skips"
        } else {
            "repeats"
        };
        let next_day = if w.to < w.from { " next day" } else { "" };
        let clock = |t: Timestamp| {
            t.to_zoned_datetime(self.tz.clone())
                .strftime("%H:%M %Z")
                .to_string()
        };
        let outcome = match outcome {
            None => "it will not open that day".to_string(),
            Some(o) => {
                let real = o.starts.duration_until(o.ends);
                let written = w
                    .on(date)
                    .map_or(real, |(from, to)| from.duration_until(to));
                let shorter = if real < written {
                    format!(", {} less than written", length(written - real))
                } else {
                    String::new()
                };
                let how = if shift.is_positive() {
                    "be open"
                } else {
                    "open once,"
                };
                format!(
                    "it will {how} from {} to {} ({}{shorter})",
                    clock(o.starts),
                    clock(o.ends),
                    length(real)
                )
            }
        };
        format!(
            "window {} {}-{}{next_day} on {date} {} {span} {zone} {what} (clocks go {} -> {}): {outcome}",
            day_name(date.weekday()),
            config::LocalTime(w.from),
            config::LocalTime(w.to),
            if wholly { "falls in" } else { "overlaps" },
            config::LocalTime(change.before.to_datetime(change.at).time()),
            config::LocalTime(change.after.to_datetime(change.at).time()),
        )
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
    let name = day_name;
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

fn day_name(d: Weekday) -> &'static str {
    match d {
        Weekday::Monday => "Mon",
        Weekday::Tuesday => "Tue",
        Weekday::Wednesday => "Wed",
        Weekday::Thursday => "Thu",
        Weekday::Friday => "Fri",
        Weekday::Saturday => "Sat",
        Weekday::Sunday => "Sun",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{LocalTime, Weekday as Day};
    use proptest::prelude::*;

    fn ts(s: &str) -> Timestamp {
        s.parse().expect("test timestamps are valid RFC 3339")
    }

    fn at(h: i8, m: i8) -> LocalTime {
        LocalTime(jiff::civil::time(h, m, 0, 0))
    }

    fn window(days: &[Day], from: (i8, i8), to: (i8, i8)) -> config::Window {
        config::Window {
            days: days.to_vec(),
            from: at(from.0, from.1),
            to: at(to.0, to.1),
        }
    }

    fn schedule(zone: &str, windows: &[config::Window]) -> Schedule {
        Schedule::new(TimeZone::get(zone).expect("test zones exist"), windows)
    }

    /// The open window at `now` as (starts, ends) in UTC text, for tables.
    fn open(s: &Schedule, now: &str) -> Option<(String, String)> {
        s.open_window(ts(now))
            .map(|w| (w.starts.to_string(), w.ends.to_string()))
    }

    /// (zone, window, probe instant, expected open occurrence in UTC)
    type Case = (
        &'static str,
        config::Window,
        &'static str,
        Option<(&'static str, &'static str)>,
    );

    #[test]
    fn windows_on_ordinary_and_dst_days() {
        use Day::*;
        const B: &str = "Europe/Berlin";
        const NY: &str = "America/New_York";
        #[rustfmt::skip]
        let cases: &[Case] = &[
            // Exactly at the start is open (10:00 CET = 09:00Z) ...
            (B, window(&[Mon, Tue, Wed, Thu, Fri], (10, 0), (12, 30)), "2026-01-05T09:00:00Z",
                Some(("2026-01-05T09:00:00Z", "2026-01-05T11:30:00Z"))),
            // ... one nanosecond earlier is not ...
            (B, window(&[Mon], (10, 0), (12, 30)), "2026-01-05T08:59:59.999999999Z", None),
            // ... and exactly at the end is closed.
            (B, window(&[Mon], (10, 0), (12, 30)), "2026-01-05T11:30:00Z", None),
            // A day not listed stays shut (2026-01-06 is a Tuesday).
            (B, window(&[Mon], (10, 0), (12, 30)), "2026-01-06T09:30:00Z", None),
            // Friday 22:00-06:00 covers Saturday 03:00.
            (B, window(&[Fri], (22, 0), (6, 0)), "2026-01-10T02:00:00Z",
                Some(("2026-01-09T21:00:00Z", "2026-01-10T05:00:00Z"))),
            // ... but not Friday 03:00 (that would be Thursday's night).
            (B, window(&[Fri], (22, 0), (6, 0)), "2026-01-09T02:00:00Z", None),
            // A window ending at midnight ends at the next day's 00:00.
            (B, window(&[Fri], (20, 0), (0, 0)), "2026-01-09T22:59:00Z",
                Some(("2026-01-09T19:00:00Z", "2026-01-09T23:00:00Z"))),

            // Berlin spring forward, Sun 2026-03-29 02:00 CET -> 03:00 CEST (01:00Z).
            // 02:30-04:00 opens when the clocks jump, at 03:00 CEST.
            (B, window(&[Sun], (2, 30), (4, 0)), "2026-03-29T01:00:00Z",
                Some(("2026-03-29T01:00:00Z", "2026-03-29T02:00:00Z"))),
            // ... and is shut just before the jump (01:59:59 CET).
            (B, window(&[Sun], (2, 30), (4, 0)), "2026-03-29T00:59:59Z", None),
            // A window wholly inside the skipped hour does not happen that day.
            (B, window(&[Sun], (2, 10), (2, 50)), "2026-03-29T01:00:00Z", None),
            // Saturday 22:00-06:00 across the jump: 22:00 CET to 06:00 CEST, 7 real hours.
            (B, window(&[Sat], (22, 0), (6, 0)), "2026-03-29T03:59:59Z",
                Some(("2026-03-28T21:00:00Z", "2026-03-29T04:00:00Z"))),
            // Saturday 23:00-02:30: the end falls in the skipped hour, so it closes at 03:00 CEST.
            (B, window(&[Sat], (23, 0), (2, 30)), "2026-03-29T00:59:59Z",
                Some(("2026-03-28T22:00:00Z", "2026-03-29T01:00:00Z"))),
            (B, window(&[Sat], (23, 0), (2, 30)), "2026-03-29T01:00:00Z", None),

            // Berlin fall back, Sun 2026-10-25 03:00 CEST -> 02:00 CET (01:00Z).
            // 02:15-02:45 happens in the first pass (CEST) ...
            (B, window(&[Sun], (2, 15), (2, 45)), "2026-10-25T00:15:00Z",
                Some(("2026-10-25T00:15:00Z", "2026-10-25T00:45:00Z"))),
            // ... and not again when the clock shows 02:15 CET.
            (B, window(&[Sun], (2, 15), (2, 45)), "2026-10-25T01:15:00Z", None),
            // 01:00-02:30 closes at the first 02:30.
            (B, window(&[Sun], (1, 0), (2, 30)), "2026-10-25T00:29:59Z",
                Some(("2026-10-24T23:00:00Z", "2026-10-25T00:30:00Z"))),
            (B, window(&[Sun], (1, 0), (2, 30)), "2026-10-25T01:10:00Z", None),
            // 02:30-04:00 opens at the first 02:30 and lasts the 1.5 hours
            // written, closing at 03:00 CET rather than 2.5 real hours later.
            (B, window(&[Sun], (2, 30), (4, 0)), "2026-10-25T01:45:00Z",
                Some(("2026-10-25T00:30:00Z", "2026-10-25T02:00:00Z"))),
            (B, window(&[Sun], (2, 30), (4, 0)), "2026-10-25T02:00:00Z", None),
            // Saturday 22:00-06:00 across the change: 22:00 CEST for the 8
            // hours written, to 05:00 CET (not 9 real hours to 06:00 CET).
            (B, window(&[Sat], (22, 0), (6, 0)), "2026-10-25T03:59:59Z",
                Some(("2026-10-24T20:00:00Z", "2026-10-25T04:00:00Z"))),
            (B, window(&[Sat], (22, 0), (6, 0)), "2026-10-25T04:00:00Z", None),
            // Saturday 23:00-02:30 closes at the first 02:30 (CEST), not the second.
            (B, window(&[Sat], (23, 0), (2, 30)), "2026-10-25T00:45:00Z", None),
            (B, window(&[Sat], (23, 0), (2, 30)), "2026-10-25T01:15:00Z", None),

            // New York spring forward, Sun 2026-03-08 02:00 EST -> 03:00 EDT (07:00Z).
            (NY, window(&[Sun], (2, 30), (4, 0)), "2026-03-08T07:00:00Z",
                Some(("2026-03-08T07:00:00Z", "2026-03-08T08:00:00Z"))),
            (NY, window(&[Sun], (2, 30), (4, 0)), "2026-03-08T06:59:59Z", None),
            // Saturday 23:00-02:30: 23:00 EST until the jump to 03:00 EDT.
            (NY, window(&[Sat], (23, 0), (2, 30)), "2026-03-08T06:00:00Z",
                Some(("2026-03-08T04:00:00Z", "2026-03-08T07:00:00Z"))),
            // Saturday 22:00-06:00: 22:00 EST to 06:00 EDT.
            (NY, window(&[Sat], (22, 0), (6, 0)), "2026-03-08T09:59:59Z",
                Some(("2026-03-08T03:00:00Z", "2026-03-08T10:00:00Z"))),

            // New York fall back, Sun 2026-11-01 02:00 EDT -> 01:00 EST (06:00Z).
            // 01:15-01:45 happens in the first pass (EDT) ...
            (NY, window(&[Sun], (1, 15), (1, 45)), "2026-11-01T05:15:00Z",
                Some(("2026-11-01T05:15:00Z", "2026-11-01T05:45:00Z"))),
            // ... and not again at 01:15 EST.
            (NY, window(&[Sun], (1, 15), (1, 45)), "2026-11-01T06:15:00Z", None),
            // Saturday 23:00-01:30 closes at the first 01:30 (EDT).
            (NY, window(&[Sat], (23, 0), (1, 30)), "2026-11-01T05:29:59Z",
                Some(("2026-11-01T03:00:00Z", "2026-11-01T05:30:00Z"))),
            (NY, window(&[Sat], (23, 0), (1, 30)), "2026-11-01T06:30:00Z", None),
            // Saturday 22:00-06:00: 22:00 EDT for 8 hours, to 05:00 EST.
            (NY, window(&[Sat], (22, 0), (6, 0)), "2026-11-01T09:59:59Z",
                Some(("2026-11-01T02:00:00Z", "2026-11-01T10:00:00Z"))),
            // Sunday 01:00-02:00 opens at 01:00 EDT and closes one real hour
            // later, as the clocks go back: 01:30 EST stays shut.
            (NY, window(&[Sun], (1, 0), (2, 0)), "2026-11-01T05:59:59Z",
                Some(("2026-11-01T05:00:00Z", "2026-11-01T06:00:00Z"))),
            (NY, window(&[Sun], (1, 0), (2, 0)), "2026-11-01T06:30:00Z", None),
        ];
        for (zone, w, now, want) in cases {
            let s = schedule(zone, std::slice::from_ref(w));
            let want = want.map(|(a, b)| (ts(a).to_string(), ts(b).to_string()));
            assert_eq!(open(&s, now), want, "{zone} {} at {now}", s.describe()[0]);
        }
    }

    /// (zone, window, now, every warning for the year after `now`)
    type WarningCase = (
        &'static str,
        config::Window,
        &'static str,
        &'static [&'static str],
    );

    #[test]
    fn clock_changes_in_the_coming_year_are_announced_with_what_will_happen() {
        use Day::*;
        const B: &str = "Europe/Berlin";
        const NY: &str = "America/New_York";
        #[rustfmt::skip]
        let cases: &[WarningCase] = &[
            // Wholly in the skipped hour: fails closed, and says so; in autumn
            // it opens once and lasts the hour written.
            (B, window(&[Sun], (2, 0), (3, 0)), "2026-03-01T00:00:00Z", &[
                "window Sun 02:00-03:00 on 2026-03-29 falls in the hour Europe/Berlin skips (clocks go 02:00 -> 03:00): it will not open that day",
                "window Sun 02:00-03:00 on 2026-10-25 falls in the hour Europe/Berlin repeats (clocks go 03:00 -> 02:00): it will open once, from 02:00 CEST to 02:00 CET (1h)",
            ]),
            // Partly in the skipped hour: opens at the jump, shorter.
            (B, window(&[Sun], (2, 30), (4, 0)), "2026-03-01T00:00:00Z", &[
                "window Sun 02:30-04:00 on 2026-03-29 overlaps the hour Europe/Berlin skips (clocks go 02:00 -> 03:00): it will be open from 03:00 CEST to 04:00 CEST (1h, 30m less than written)",
                "window Sun 02:30-04:00 on 2026-10-25 overlaps the hour Europe/Berlin repeats (clocks go 03:00 -> 02:00): it will open once, from 02:30 CEST to 03:00 CET (1h 30m)",
            ]),
            // A night across both changes, soonest first.
            (B, window(&[Sat], (22, 0), (6, 0)), "2026-06-01T00:00:00Z", &[
                "window Sat 22:00-06:00 next day on 2026-10-24 overlaps the hour Europe/Berlin repeats (clocks go 03:00 -> 02:00): it will open once, from 22:00 CEST to 05:00 CET (8h)",
                "window Sat 22:00-06:00 next day on 2027-03-27 overlaps the hour Europe/Berlin skips (clocks go 02:00 -> 03:00): it will be open from 22:00 CET to 06:00 CEST (7h, 1h less than written)",
            ]),
            // The New York window of issue 12.
            (NY, window(&[Sun], (1, 0), (2, 0)), "2026-10-01T00:00:00Z", &[
                "window Sun 01:00-02:00 on 2026-11-01 falls in the hour America/New_York repeats (clocks go 02:00 -> 01:00): it will open once, from 01:00 EDT to 01:00 EST (1h)",
            ]),
            // An occurrence open now is still ahead of the owner ...
            (NY, window(&[Sun], (1, 0), (2, 0)), "2026-11-01T05:30:00Z", &[
                "window Sun 01:00-02:00 on 2026-11-01 falls in the hour America/New_York repeats (clocks go 02:00 -> 01:00): it will open once, from 01:00 EDT to 01:00 EST (1h)",
            ]),
            // ... one that has ended is not.
            (NY, window(&[Sun], (1, 0), (2, 0)), "2026-11-01T06:00:00Z", &[]),
            // Edges touching the changed hour do not meet it.
            (B, window(&[Sun], (0, 0), (2, 0)), "2026-03-01T00:00:00Z", &[]),
            (B, window(&[Sun], (3, 0), (5, 0)), "2026-03-01T00:00:00Z", &[]),
            // Weekday mornings, and zones that never change, stay quiet.
            (B, window(&[Mon, Tue, Wed, Thu, Fri], (9, 0), (12, 0)), "2026-01-01T00:00:00Z", &[]),
            ("UTC", window(&[Sun], (2, 0), (3, 0)), "2026-01-01T00:00:00Z", &[]),
            // Lord Howe moves its clocks by half an hour.
            ("Australia/Lord_Howe", window(&[Sun], (1, 45), (2, 15)), "2026-09-01T00:00:00Z", &[
                "window Sun 01:45-02:15 on 2026-10-04 overlaps the 30 minutes Australia/Lord_Howe skips (clocks go 02:00 -> 02:30): it will be open from 01:45 +1030 to 02:30 +11 (15m, 15m less than written)",
                "window Sun 01:45-02:15 on 2027-04-04 overlaps the 30 minutes Australia/Lord_Howe repeats (clocks go 02:00 -> 01:30): it will open once, from 01:45 +11 to 01:45 +1030 (30m)",
            ]),
        ];
        let year = SignedDuration::from_hours(24 * 365);
        for (zone, w, now, want) in cases {
            let s = schedule(zone, std::slice::from_ref(w));
            let got: Vec<String> = s
                .clock_change_warnings(ts(now), year)
                .into_iter()
                .map(|w| w.to_string())
                .collect();
            assert_eq!(got, *want, "{zone} {} from {now}", s.describe()[0]);
        }
    }

    #[test]
    fn overlapping_weekly_windows_first_wins_then_the_other_takes_over() {
        use Day::*;
        let s = schedule(
            "UTC",
            &[
                window(&[Mon], (11, 0), (14, 0)),
                window(&[Mon], (9, 0), (12, 0)),
            ],
        );
        // 2026-01-05 is a Monday.
        let first = s.open_window(ts("2026-01-05T11:30:00Z")).expect("open");
        assert_eq!(
            (first.starts, first.ends),
            (ts("2026-01-05T09:00:00Z"), ts("2026-01-05T12:00:00Z"))
        );
        let second = s.open_window(ts("2026-01-05T12:00:00Z")).expect("open");
        assert_eq!(
            (second.starts, second.ends),
            (ts("2026-01-05T11:00:00Z"), ts("2026-01-05T14:00:00Z"))
        );
        assert_eq!(
            s.next_change(ts("2026-01-05T11:30:00Z")),
            Some(ts("2026-01-05T12:00:00Z"))
        );
    }

    #[test]
    fn a_grant_opens_now_and_absorbs_an_open_weekly_window() {
        use Day::*;
        let mut s = schedule("UTC", &[window(&[Mon], (9, 0), (12, 0))]);
        // Outside any weekly window: open for exactly the duration.
        let now = ts("2026-01-05T07:00:00Z");
        let g = s.grant(now, Duration::from_secs(30 * 60));
        assert_eq!(
            g,
            OpenWindow {
                starts: now,
                ends: ts("2026-01-05T07:30:00Z"),
                granted: true
            }
        );
        assert_eq!(s.open_window(ts("2026-01-05T07:29:59Z")), Some(g));
        assert_eq!(s.open_window(ts("2026-01-05T07:30:00Z")), None);
        assert_eq!(s.next_change(now), Some(ts("2026-01-05T07:30:00Z")));

        // Inside the weekly window, a short grant lasts until the weekly end.
        let now = ts("2026-01-05T10:00:00Z");
        let g = s.grant(now, Duration::from_secs(60));
        assert_eq!((g.starts, g.ends), (now, ts("2026-01-05T12:00:00Z")));
        assert_eq!(s.open_window(ts("2026-01-05T11:00:00Z")), Some(g));
        assert_eq!(s.open_window(ts("2026-01-05T12:00:00Z")), None);

        // A long grant outlasts the weekly window.
        let g = s.grant(now, Duration::from_secs(4 * 3600));
        assert_eq!(g.ends, ts("2026-01-05T14:00:00Z"));
        assert_eq!(s.open_window(ts("2026-01-05T13:00:00Z")), Some(g));
    }

    #[test]
    fn a_weekly_window_starting_during_a_grant_carries_on_after_it() {
        use Day::*;
        let mut s = schedule("UTC", &[window(&[Mon], (9, 0), (12, 0))]);
        let g = s.grant(ts("2026-01-05T08:30:00Z"), Duration::from_secs(3600));
        assert_eq!(s.open_window(ts("2026-01-05T09:15:00Z")), Some(g));
        let weekly = s
            .open_window(ts("2026-01-05T09:30:00Z"))
            .expect("weekly window open");
        assert!(!weekly.granted);
        assert_eq!(weekly.starts, ts("2026-01-05T09:00:00Z"));
    }

    #[test]
    fn cancel_closes_the_grant_and_the_weekly_occurrence_but_not_the_next() {
        use Day::*;
        let mut s = schedule("UTC", &[window(&[Mon, Tue], (9, 0), (12, 0))]);
        s.grant(ts("2026-01-05T10:00:00Z"), Duration::from_secs(3 * 3600));
        s.cancel(ts("2026-01-05T10:30:00Z"));
        assert_eq!(s.open_window(ts("2026-01-05T10:30:00Z")), None);
        assert_eq!(s.open_window(ts("2026-01-05T11:59:00Z")), None);
        assert_eq!(s.granted(), None);
        let tuesday = s
            .open_window(ts("2026-01-06T09:00:00Z"))
            .expect("next occurrence opens");
        assert_eq!(tuesday.starts, ts("2026-01-06T09:00:00Z"));
        // Cancelling exactly at a start cancels that occurrence.
        s.cancel(ts("2026-01-06T09:00:00Z"));
        assert_eq!(s.open_window(ts("2026-01-06T09:00:00Z")), None);
    }

    #[test]
    fn a_restored_cancel_and_grant_answer_as_before_the_restart() {
        use Day::*;
        let days = [window(&[Mon, Tue], (9, 0), (12, 0))];
        let mut before = schedule("UTC", &days);
        before.cancel(ts("2026-01-05T10:30:00Z"));
        let granted = before.grant(ts("2026-01-05T11:00:00Z"), Duration::from_secs(600));

        let mut after = schedule("UTC", &days);
        let cancelled = before.cancelled_at().expect("a cancel is remembered");
        after.restore_cancelled(cancelled);
        assert!(after.restore_grant(ts("2026-01-05T11:05:00Z"), granted.starts, granted.ends));
        for probe in [
            "2026-01-05T11:05:00Z",
            "2026-01-05T11:10:00Z",
            "2026-01-05T11:30:00Z",
            "2026-01-06T09:00:00Z",
        ] {
            assert_eq!(open(&after, probe), open(&before, probe), "at {probe}");
        }
        // The weekly occurrence ended from Home Assistant stays shut.
        assert_eq!(open(&after, "2026-01-05T11:30:00Z"), None);
        // A grant over by the time of the restart does not come back.
        let mut late = schedule("UTC", &days);
        assert!(!late.restore_grant(ts("2026-01-05T11:10:00Z"), granted.starts, granted.ends));
        assert_eq!(late.granted(), None);
    }

    #[test]
    fn time_going_backwards_just_answers_for_the_earlier_instant() {
        use Day::*;
        let mut s = schedule("Europe/Berlin", &[window(&[Mon], (9, 0), (12, 0))]);
        let g = s.grant(ts("2026-01-05T20:00:00Z"), Duration::from_secs(600));
        // Before the grant started: not open, and the grant's start is a change.
        assert_eq!(s.open_window(ts("2026-01-05T19:00:00Z")), None);
        assert_eq!(s.next_change(ts("2026-01-05T19:00:00Z")), Some(g.starts));
        // Far outside jiff's calendar edges nothing panics.
        for t in [Timestamp::MIN, Timestamp::MAX] {
            let _ = s.open_window(t);
            let _ = s.next_change(t);
            s.cancel(t);
            let _ = s.grant(t, Duration::from_secs(u64::MAX));
        }
    }

    #[test]
    fn next_change_walks_the_edges() {
        use Day::*;
        let s = schedule("Europe/Berlin", &[window(&[Sun], (2, 30), (4, 0))]);
        // Through the spring-forward night, the edges are 03:00 and 04:00 CEST.
        assert_eq!(
            s.next_change(ts("2026-03-28T12:00:00Z")),
            Some(ts("2026-03-29T01:00:00Z"))
        );
        assert_eq!(
            s.next_change(ts("2026-03-29T01:00:00Z")),
            Some(ts("2026-03-29T02:00:00Z"))
        );
        // No windows and no grant: nothing will ever change.
        assert_eq!(
            schedule("UTC", &[]).next_change(ts("2026-03-29T01:00:00Z")),
            None
        );
    }

    #[test]
    fn describe_speaks_the_owners_words() {
        use Day::*;
        let s = schedule(
            "Europe/Berlin",
            &[
                window(&[Fri, Mon, Tue, Wed, Thu], (9, 0), (12, 30)),
                window(&[Sat, Sun], (22, 0), (6, 0)),
                window(&[Mon, Wed, Thu, Fri], (7, 5), (7, 45)),
            ],
        );
        assert_eq!(
            s.describe(),
            [
                "Mon-Fri 09:00-12:30 (Europe/Berlin)",
                "Sat, Sun 22:00-06:00 next day (Europe/Berlin)",
                "Mon, Wed-Fri 07:05-07:45 (Europe/Berlin)",
            ]
        );
    }

    fn any_window() -> impl Strategy<Value = config::Window> {
        use Day::*;
        let day = prop::sample::select(vec![Mon, Tue, Wed, Thu, Fri, Sat, Sun]);
        // Minutes on a 15-minute grid so edges land inside DST hours often.
        let time = (0i8..24, prop::sample::select(vec![0i8, 15, 30, 45]));
        (prop::collection::vec(day, 0..4), time.clone(), time)
            .prop_filter("from == to is refused by config validation", |(_, f, t)| {
                f != t
            })
            .prop_map(|(days, f, t)| config::Window {
                days,
                from: at(f.0, f.1),
                to: at(t.0, t.1),
            })
    }

    /// DST changes in 2026 (Unix seconds) in the zones the proptest uses:
    /// Berlin spring and autumn, New York spring and autumn, Lord Howe
    /// (a half-hour shift) autumn and spring.
    const DST_CHANGES: [i64; 6] = [
        1_774_746_000,
        1_792_890_000,
        1_772_953_200,
        1_793_512_800,
        1_775_314_800,
        1_791_041_400,
    ];

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(1000))]

        /// However the clocks move, no weekly occurrence lasts longer in
        /// real time than its wall-clock length as written.
        #[test]
        fn no_occurrence_outlasts_its_written_length(
            zone in prop::sample::select(vec!["Europe/Berlin", "America/New_York", "Australia/Lord_Howe"]),
            w in any_window(),
            now_s in (prop::sample::select(DST_CHANGES.to_vec()), -86_400i64..86_400)
                .prop_map(|(change, offset)| change + offset),
        ) {
            let s = schedule(zone, std::slice::from_ref(&w));
            let secs = |t: LocalTime| i64::from(t.0.hour()) * 3600 + i64::from(t.0.minute()) * 60;
            let written = SignedDuration::from_secs((secs(w.to) - secs(w.from)).rem_euclid(86_400));
            if let Some(o) = s.open_window(Timestamp::from_second(now_s).expect("in range")) {
                prop_assert!(o.starts.duration_until(o.ends) <= written, "{o:?} longer than {written}");
            }
        }

        /// Nothing changes strictly between `now` and `next_change(now)`,
        /// and an open window always contains `now`.
        #[test]
        fn next_change_is_never_late(
            zone in prop::sample::select(vec!["Europe/Berlin", "America/New_York", "UTC", "Australia/Lord_Howe"]),
            windows in prop::collection::vec(any_window(), 0..4),
            // Any time in 2026, or the two days before a DST change.
            start_s in prop_oneof![
                1_767_225_600i64..1_798_761_600,
                (prop::sample::select(DST_CHANGES.to_vec()), -172_800i64..3_600)
                    .prop_map(|(change, offset)| change + offset),
            ],
            grant in prop::option::of((0i64..86_400 * 3, 0u64..86_400 * 2)),
            cancel in prop::option::of(0i64..86_400 * 3),
            probes in prop::collection::vec(0.0f64..1.0, 1..8),
        ) {
            let mut s = schedule(zone, &windows);
            let base = Timestamp::from_second(start_s).expect("in range");
            if let Some((offset, len)) = grant {
                s.grant(base + jiff::SignedDuration::from_secs(offset), Duration::from_secs(len));
            }
            if let Some(offset) = cancel {
                s.cancel(base + jiff::SignedDuration::from_secs(offset));
            }
            let mut now = base;
            for _ in 0..6 {
                let here = s.open_window(now);
                if let Some(w) = here {
                    prop_assert!(w.contains(now), "{w:?} does not contain {now}");
                }
                let Some(next) = s.next_change(now) else {
                    // Then nothing changes in the next three weeks either.
                    for p in &probes {
                        let later = now + jiff::SignedDuration::from_secs_f64(p * 21.0 * 86_400.0);
                        prop_assert_eq!(s.open_window(later), here);
                    }
                    break;
                };
                prop_assert!(next > now);
                let gap = next.duration_since(now);
                for p in &probes {
                    let t = now + gap.mul_f64(*p);
                    prop_assert_eq!(s.open_window(t), here, "changed at {} before {}", t, next);
                }
                let just_before = next - jiff::SignedDuration::from_nanos(1);
                prop_assert_eq!(s.open_window(just_before), here);
                now = next;
            }
        }
    }
}
