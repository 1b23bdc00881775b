//! Delivery sessions, one per door: grant, watch, trip, relock.
//!
//! A [`Door`] holds everything one door decides with: its delivery windows
//! ([`Schedule`]), its lock ([`LockTracker`]), the contact sensor, the entry
//! count of the open window, the one-time code, and the delivery session in
//! progress. It reads no clock and owns no camera: the caller passes the
//! current time and the door's cameras as [`CameraSnapshot`]s in a [`Ctx`],
//! and collects the [`Action`]s pushed into it.
//!
//! # Layout
//!
//! Each part owns its own state; this file holds the door's inputs
//! (`handle_*`, restore) and its next deadline, and moves the delivery on.
//!
//! - `entries.rs`: the windows, the entries made in them, the persisted
//!   [`DoorRecord`].
//! - `session.rs`: the delivery (idle, in progress, or a relock owed).
//! - `code.rs`: the one-time code's hash and the wrong-code lockout.
//! - `keypad.rs`: the keypad slot, and setting or restoring the code.
//! - `bolt.rs`: what the lock says, and the auto-relock backstop.
//! - `refusal.rs`: the [`Rules`] and why a request is refused.
//! - `words.rs`: what the door says to Home Assistant and the audit log.
//!
//! # The session
//!
//! ```text
//!   request granted ──> Unlocking ──lock confirms──> Unlocked
//!                          │                           │ door opens, shuts
//!                          │                           v
//!                          │                        Closing ──relock_after_close──┐
//!   max_unlocked, camera lost, window closed,       (door reopens: back to        │
//!   owner lock ─────────────────────────────────>    Unlocked)                    v
//!        door open? ──yes──> RelockOnShut ──door shuts──────────────────────> Relocking
//!                  └─no────────────────────────────────────────────────────> Relocking
//!   Relocking ──lock confirms / jams / stays silent──> session ends (summary audit, Persist);
//!                                   a relock not confirmed stays owed (and persisted)
//! ```
//!
//! # Rules
//!
//! - A delivery unlock is granted only when storage works, a window is open,
//!   its entries are not spent, no other delivery is in progress, the lock is
//!   reachable and confirmed locked with nothing in flight, every camera tied
//!   to the door is Live (which already includes its warmup), and the
//!   one-time code, when one is set, matches. Anything else is refused with
//!   the first reason in that order.
//! - Before the unlock: [`Action::Persist`] with the session, then the lock's
//!   own auto-relock set to `max_unlocked` (when the lock reported it has
//!   one), then `Unlock`. The backstop counts as armed once the lock reads
//!   the value back. The owner's value is restored when the session ends.
//! - A session whose relock the lock never confirmed (unresponsive, jammed)
//!   has to end, but the relock stays owed: it is sent again as soon as the
//!   lock answers and is free, until the bolt is reported locked or the
//!   owner unlocks.
//! - A relock waiting for the door to shut goes out at once if the contact
//!   sensor becomes unreachable.
//! - A camera leaving Live during a session: `interlock_tripped` at once; with
//!   `on_camera_loss: relock` the door relocks now, or as soon as it shuts.
//! - The lock moved by someone else is recorded and not fought; the door
//!   opening while the lock reports locked (and no unlock is on its way) is
//!   `door_forced`.
//! - Wrong codes: five per door within a minute lock out further requests
//!   until that minute is over. Codes are kept as salted SHA-256 hashes; the
//!   plain code is kept only for a door with a keypad `code_slot` (the lock
//!   needs the PIN itself) and only until its window ends, and it leaves the
//!   core only inside [`LockCommand::SetCode`].
//! - A code survives a restart: its salt and hash (never the code), its
//!   window occurrence, the entries made and the keypad slot holding it are
//!   in every [`Action::Persist`], which goes out whenever any of that
//!   changes. Restored, a code for the occurrence still open (or for the
//!   next one, not yet come) is in force again; one whose window closed
//!   meanwhile is dropped. The keypad slot is cleared on a restart and stays
//!   empty (doorwarden has no PIN to put back). A restored code that cannot
//!   be read back refuses requests over MQTT until the owner sets a new code
//!   or its window ends.
//! - A restart hands no limit back: the window the owner ended, the entries
//!   made in the open window, the wrong codes of the current minute (their
//!   times only) and a granted window are persisted when they change, and
//!   restored while they still apply. A granted window comes back with the
//!   edges it was granted with, so it can never grow.

use std::time::{Duration, Instant};

use jiff::Timestamp;
use jiff::tz::TimeZone;
use serde_json::json;

use self::bolt::{Backstop, ReportedMoves};
use self::code::Codes;
use self::entries::Entries;
use self::keypad::Keypad;
use self::refusal::all_live;
use self::session::{Delivery, Phase, Session};
use self::words::{via_str, window_json};
use super::liveness::{LivenessKind, Transition};
use super::lock::{LockTracker, Want};
use super::schedule::{OpenWindow, Schedule};
use super::timer::{TimerKey, Timers};
use super::{
    Action, CodeRecord, Command, Decision, DeliveryEventKind, DeliveryState, DoorRecord,
    DoorReport, Evidence, LockCommand, LockState, PersistedState, RequestChannel, SessionRecord,
    Stamp, Wake,
};
use crate::config::{self, OnCameraLoss};

mod bolt;
mod code;
mod entries;
mod keypad;
mod refusal;
mod session;
mod words;

pub use code::{CODE_FAILURES_ALLOWED, CODE_LOCKOUT};
pub use refusal::Rules;

/// One camera as the interlock sees it at the moment of a decision.
#[derive(Debug, Clone, PartialEq)]
pub struct CameraSnapshot {
    pub name: String,
    pub kind: LivenessKind,
    /// When the camera entered `kind`.
    pub since: Timestamp,
    /// Why it is not live (`None` when live).
    pub reason: Option<String>,
}

impl CameraSnapshot {
    /// The camera as `change` left it: the new state begins when the
    /// change was detected.
    fn after(name: &str, change: &Transition) -> CameraSnapshot {
        CameraSnapshot {
            name: name.to_string(),
            kind: change.to,
            since: change.at.wall,
            reason: change.reason.clone(),
        }
    }
}

/// What a door method needs from the rest of the core, and where its
/// actions go.
pub struct Ctx<'a> {
    pub now: Stamp,
    /// The door's cameras, in config order.
    pub cameras: &'a [CameraSnapshot],
    /// `Some(reason)` while storage is failing: no delivery may start.
    pub storage_problem: Option<&'a str>,
    /// A [`Action::Persist`] pushed here holds this door's records only;
    /// the core adds every other door's before the actions leave it.
    pub out: &'a mut Vec<Action>,
}

/// The door's deadlines, one slot each in its [`Timers`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Timer {
    /// The latest moment the session may stay unlocked.
    MaxUnlocked,
    /// `relock_after_close` after the door shut.
    RelockAfterClose,
}

impl TimerKey<2> for Timer {
    const ALL: [Timer; 2] = [Timer::MaxUnlocked, Timer::RelockAfterClose];
    fn index(self) -> usize {
        self as usize
    }
}

/// One door's interlock.
#[derive(Debug, Clone)]
pub struct Door {
    name: String,
    rules: Rules,
    tz: TimeZone,
    lock: LockTracker,
    door_open: Option<bool>,
    entries: Entries,
    delivery: Delivery,
    codes: Codes,
    keypad: Keypad,
    backstop: Backstop,
    moves: ReportedMoves,
    /// What the last finished delivery or refused request came to, shown
    /// until the window changes.
    last_outcome: Option<DeliveryState>,
    timers: Timers<Timer, 2>,
}

impl Door {
    pub fn new(
        name: &str,
        rules: Rules,
        tz: TimeZone,
        windows: &[config::Window],
        confirm_timeout: Duration,
        seed: [u8; 32],
    ) -> Door {
        Door {
            name: name.to_string(),
            entries: Entries::new(Schedule::new(tz.clone(), windows), rules.grant_duration),
            rules,
            tz,
            lock: LockTracker::new(confirm_timeout),
            door_open: None,
            delivery: Delivery::Idle,
            codes: Codes::new(seed),
            keypad: Keypad::default(),
            backstop: Backstop::default(),
            moves: ReportedMoves::default(),
            last_outcome: None,
            timers: Timers::default(),
        }
    }

    // ---- getters -------------------------------------------------------

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn lock(&self) -> &LockTracker {
        &self.lock
    }

    pub fn schedule(&self) -> &Schedule {
        self.entries.schedule()
    }

    pub fn rules(&self) -> &Rules {
        &self.rules
    }

    /// The window open at the last refresh.
    pub fn window(&self) -> Option<OpenWindow> {
        self.entries.window
    }

    /// The record to persist: the delivery in progress, or one whose relock
    /// is still owed (so that a restart relocks the door too).
    pub fn session_record(&self) -> Option<SessionRecord> {
        self.delivery.record()
    }

    /// The door's one-time code as it may be written down (salt and hash,
    /// never the code), if one is in force.
    pub fn code_record(&self) -> Option<CodeRecord> {
        self.codes.record(
            &self.name,
            self.entries.counts_for(),
            self.entries.used,
            self.keypad.holding(self.rules.code_slot),
        )
    }

    /// What a restart must not hand back at this door (a window the owner
    /// ended, entries made, wrong codes in the current minute, a granted
    /// window); `None` when there is nothing to remember. Records that
    /// have gone stale since (a window since closed, a minute since over)
    /// are harmless: a restore looks at each against the time it runs.
    pub fn door_record(&self) -> Option<DoorRecord> {
        self.entries.record(&self.name, self.codes.failures.walls())
    }

    /// Add this door's session, code and limits to `state`: the one place
    /// a [`PersistedState`] is filled in.
    pub fn add_to(&self, state: &mut PersistedState) {
        state.sessions.extend(self.session_record());
        state.codes.extend(self.code_record());
        state.doors.extend(self.door_record());
    }

    /// Whether a delivery is in progress (from the unlock until the relock
    /// is confirmed or given up).
    pub fn in_session(&self) -> bool {
        matches!(self.delivery, Delivery::InProgress(_))
    }

    /// The earliest instant this door has work to do, and why. A window
    /// edge (wall clock) is placed on the monotonic clock from `last`.
    pub fn poll_timeout(&self, last: Stamp) -> Option<(Instant, Wake)> {
        let edge = self
            .entries
            .next_edge(last)
            .map(|t| (wall_to_mono(last, t), Wake::WindowEdge));
        [
            self.lock
                .poll_timeout()
                .map(|t| (t, Wake::LockConfirmation)),
            self.timers.next().map(|t| (t, Wake::Delivery)),
            self.moves.refresh_at().map(|t| (t, Wake::LockRefresh)),
            edge,
        ]
        .into_iter()
        .flatten()
        .min_by_key(|(t, _)| *t)
    }

    // ---- inputs --------------------------------------------------------

    /// Once, before any event: ask the lock where it is, and clear the
    /// delivery slot (a crash may have left a code in it). The broker link
    /// is usually not up yet; the clear is asked again on every connect
    /// until the lock confirms the slot is empty ([`Door::handle_link_up`]).
    pub fn start(&mut self, ctx: &mut Ctx) {
        ctx.out.push(self.lock_action(LockCommand::Refresh));
        self.clear_slot_on_start(ctx);
    }

    /// A delivery that was in progress when doorwarden stopped: relock it
    /// now and say so.
    pub fn restore(&mut self, ctx: &mut Ctx, record: SessionRecord) {
        let when = self.local_time(record.unlocked_at);
        let reason = format!(
            "doorwarden restarted during a delivery that began at {when}; relocking the door"
        );
        if record.restore_auto_relock.is_some() {
            self.backstop.owner = record.restore_auto_relock;
        }
        self.entries.restore_interrupted(record.unlocked_at);
        let cmd = self.lock.command(ctx.now.mono, Want::Locked);
        ctx.out.push(self.lock_action(cmd));
        let phase = Phase::Relocking {
            why: "restarted during delivery".into(),
            sent_at: ctx.now.wall,
        };
        self.evidence_start(ctx, record.unlocked_at);
        let mut s = Session::new(record, phase, ctx.now.wall, ctx.cameras);
        s.unlocked_at = Some(s.record.unlocked_at);
        // Nobody watched the door while doorwarden was down.
        s.compromised = true;
        s.restarted = true;
        self.delivery = Delivery::InProgress(s);
        self.event(
            ctx,
            DeliveryEventKind::RestartedDuringDelivery,
            &reason,
            None,
            None,
        );
        self.audit(ctx, Decision::RestartedDuringDelivery, &reason, json!({}));
    }

    /// The windows as the owner left them before the restart: a window
    /// ended from Home Assistant stays ended, and a granted window still
    /// open is open again with the edges it had (never wider). Call after
    /// [`Door::start`] and before [`Door::restore`] and
    /// [`Door::restore_code`], which look at the windows.
    pub fn restore_windows(&mut self, ctx: &mut Ctx, record: &DoorRecord) {
        if let Some(g) = self.entries.restore_windows(ctx.now.wall, record) {
            let reason = format!(
                "the window granted before the restart is open again until {}",
                self.local_time(g.ends)
            );
            let w = OpenWindow {
                starts: g.starts,
                ends: g.ends,
                granted: true,
            };
            self.audit(ctx, Decision::GrantRestored, &reason, window_json(&w));
        }
    }

    /// The entries made and wrong codes given before the restart (call
    /// last, after [`Door::restore`] and [`Door::restore_code`]): entries
    /// count again while their window occurrence is still open, wrong codes
    /// while their minute is not over.
    pub fn restore_limits(&mut self, ctx: &mut Ctx, record: &DoorRecord) {
        // From here the store's record is what `forget_restored` compares
        // with.
        self.entries.restore_entries(ctx.now.wall, record);
        self.codes.failures.restore(ctx.now, &record.wrong_codes);
        if let Some(wait) = self.codes.failures.locked_out(ctx.now.mono) {
            let reason = format!(
                "too many wrong codes before the restart; requests refused for another {wait} s"
            );
            self.audit(ctx, Decision::WrongCodesRestored, &reason, json!({}));
        }
    }

    /// Once every door is restored: write out what the restore let go as
    /// over (a grant ended, a minute gone), so that should the wall clock
    /// be stepped back into it, a later restart does not bring it back.
    /// Not from [`Door::restore_limits`]: a `Persist` carries every door,
    /// and the doors restored after this one would be missing from it.
    pub fn forget_restored(&mut self, ctx: &mut Ctx) {
        self.persist_if_changed(ctx);
    }

    /// Re-read the window at the event's wall time (clocks jump), then keep
    /// the keypad slot in step. Call before and after every input.
    pub fn refresh(&mut self, ctx: &mut Ctx) {
        let open = self.entries.open_window(ctx.now.wall);
        let before = self.entries.window;
        let same_occurrence = matches!((before, open), (Some(a), Some(b)) if a.starts == b.starts);
        if !same_occurrence {
            if let Some(old) = before {
                self.entries.window = None;
                self.window_closed(ctx, old, open);
            }
            if let Some(new) = open {
                self.entries.window = Some(new);
                self.window_opened(ctx, new);
            }
        }
        self.entries.window = open;
        self.entries.refresh_clock_warning(ctx.now.wall);
        self.sync_code_slot(ctx);
        // Catches every other change to the code (its window opened,
        // moved or closed).
        self.persist_code_if_changed(ctx);
    }

    fn window_opened(&mut self, ctx: &mut Ctx, w: OpenWindow) {
        self.entries.count_for(w.starts);
        self.last_outcome = None;
        if let Some(code) = &mut self.codes.current
            && code.window.is_none()
        {
            code.window = Some(w.starts);
        }
        let reason = format!(
            "delivery window open until {}{}",
            self.local_time_once(w.ends),
            if w.granted { " (granted now)" } else { "" }
        );
        ctx.out.push(Action::Evidence(Evidence::Watch {
            door: self.name.clone(),
            cameras: ctx.cameras.iter().map(|c| c.name.clone()).collect(),
        }));
        self.event(ctx, DeliveryEventKind::WindowOpened, &reason, None, None);
        self.audit(ctx, Decision::WindowOpened, &reason, window_json(&w));
    }

    /// `next`: the occurrence that takes over at once (a grant absorbing a
    /// weekly window, overlapping windows). Then the code moves over to it
    /// and a delivery in progress carries on.
    fn window_closed(&mut self, ctx: &mut Ctx, w: OpenWindow, next: Option<OpenWindow>) {
        self.last_outcome = None;
        if let Some(code) = &mut self.codes.current
            && code.window == Some(w.starts)
        {
            match next {
                Some(n) => code.window = Some(n.starts),
                None => self.codes.current = None,
            }
        }
        let reason = "delivery window closed".to_string();
        if next.is_none() {
            ctx.out.push(Action::Evidence(Evidence::Unwatch {
                door: self.name.clone(),
            }));
        }
        self.event(ctx, DeliveryEventKind::WindowClosed, &reason, None, None);
        self.audit(ctx, Decision::WindowClosed, &reason, window_json(&w));
        if self.in_session() && next.is_none() {
            self.relock_when_shut(ctx, "the delivery window closed");
        }
    }

    /// Camera `camera` of this door changed kind, as its liveness machine
    /// reported it (`ctx.cameras` already holds the new state).
    pub fn handle_camera(&mut self, ctx: &mut Ctx, camera: &str, change: &Transition) {
        let Some(s) = self.delivery.session_mut() else {
            return;
        };
        let cam = &CameraSnapshot::after(camera, change);
        s.note_camera(ctx.now.wall, cam);
        if change.from != LivenessKind::Live || change.to == LivenessKind::Live {
            return;
        }
        s.compromised = true;
        let relocking = s.phase.relock_due();
        let reason = format!("{} during a delivery", self.describe_camera(cam));
        let mut ev = self.delivery_event(DeliveryEventKind::InterlockTripped, &reason);
        ev.camera = Some(cam.name.clone());
        ev.compromised = Some(true);
        ctx.out.push(Action::DeliveryEvent(ev));
        self.audit(
            ctx,
            Decision::Tripped,
            &reason,
            json!({ "camera": cam.name }),
        );
        if self.rules.on_camera_loss == OnCameraLoss::Relock && !relocking {
            self.relock_when_shut(ctx, &format!("camera {} stopped being live", cam.name));
        }
    }

    /// Storage failed: the unlock of a session still waiting for its
    /// confirmation may not have been sent (the shell must not send an
    /// unlock after a failed Persist); take it back.
    pub fn handle_storage_failed(&mut self, ctx: &mut Ctx) {
        if self
            .delivery
            .session()
            .is_some_and(|s| s.phase == Phase::Unlocking)
        {
            self.relock(ctx, "storage failed before the unlock");
        }
    }

    /// Deadlines due by `ctx.now`. Early or spurious calls do nothing.
    pub fn handle_timeout(&mut self, ctx: &mut Ctx) {
        if self.moves.refresh_due(ctx.now.mono) {
            ctx.out.push(self.lock_action(LockCommand::Refresh));
        }
        if let Some(note) = self.lock.handle_timeout(ctx.now.mono) {
            self.on_lock_note(ctx, note, None);
        }
        for timer in Timer::ALL {
            if !self.timers.fire(timer, ctx.now.mono) {
                continue;
            }
            match timer {
                Timer::MaxUnlocked => self.max_unlocked_reached(ctx),
                Timer::RelockAfterClose => {
                    if self
                        .delivery
                        .session()
                        .is_some_and(|s| s.phase == Phase::Closing)
                    {
                        self.relock(ctx, "the door was shut after the delivery");
                    }
                }
            }
        }
    }

    fn max_unlocked_reached(&mut self, ctx: &mut Ctx) {
        let Some(s) = self.delivery.session_mut() else {
            return;
        };
        if matches!(s.phase, Phase::Relocking { .. }) {
            return;
        }
        if self.door_open != Some(true) {
            self.relock(
                ctx,
                "the longest time a delivery may stay unlocked has passed",
            );
            return;
        }
        // A relock already waiting for the door to shut (window closed,
        // camera lost) keeps its reason; the owner still hears that the
        // door is being held open.
        if !matches!(s.phase, Phase::RelockOnShut { .. }) {
            s.phase = Phase::RelockOnShut {
                why: "door held open past the time allowed".into(),
            };
        }
        let reason = format!(
            "door still open {} s after the unlock; relocking as soon as it shuts",
            self.rules.max_unlocked.as_secs()
        );
        self.event(ctx, DeliveryEventKind::DoorHeldOpen, &reason, None, None);
        self.audit(ctx, Decision::DoorHeldOpen, &reason, json!({}));
    }

    /// A report from the door's lock or contact sensor.
    pub fn handle_report(&mut self, ctx: &mut Ctx, report: &DoorReport) {
        match report {
            DoorReport::Contact { open } => self.contact(ctx, *open),
            DoorReport::AutoRelock(secs) => self.auto_relock_read(*secs),
            DoorReport::CodeSlot { slot, set } => self.code_slot_reported(ctx, *slot, *set),
            DoorReport::ContactAvailable(false) => self.contact_lost(ctx),
            DoorReport::ContactAvailable(true) => {}
            other => {
                let source = match other {
                    DoorReport::Lock { source, .. } => *source,
                    _ => None,
                };
                if let Some(note) = self.lock.handle_report(ctx.now.mono, other) {
                    self.on_lock_note(ctx, note, source);
                }
                self.settle_owed_relock(ctx);
            }
        }
    }

    /// The contact sensor is unreachable: its last word is no longer the
    /// door's state, and a relock waiting for the door to shut would wait
    /// for news that cannot come, so it goes out now.
    fn contact_lost(&mut self, ctx: &mut Ctx) {
        if self.door_open.take().is_none() {
            return;
        }
        self.audit(
            ctx,
            Decision::ContactUnavailable,
            "contact sensor unreachable",
            json!({}),
        );
        let Some(s) = self.delivery.session_mut() else {
            return;
        };
        if let Some(t) = s.opened_at.take() {
            s.open_total += ctx.now.mono.saturating_duration_since(t);
        }
        if let Phase::RelockOnShut { why } = &s.phase {
            let why = why.clone();
            self.relock(ctx, &format!("{why}; the contact sensor is unreachable"));
        }
    }

    fn contact(&mut self, ctx: &mut Ctx, open: bool) {
        let was = self.door_open;
        self.door_open = Some(open);
        if was == Some(open) {
            return;
        }
        if open {
            self.door_opened(ctx);
        } else {
            self.door_shut(ctx);
        }
    }

    fn door_opened(&mut self, ctx: &mut Ctx) {
        let unlock_on_its_way = self
            .lock
            .pending()
            .is_some_and(|p| p.want == Want::Unlocked);
        if self.lock.state() == LockState::Locked && !unlock_on_its_way {
            let reason = "door opened while the lock reports it locked".to_string();
            self.event(ctx, DeliveryEventKind::DoorForced, &reason, None, None);
            self.audit(ctx, Decision::DoorForced, &reason, json!({}));
        }
        let Some(s) = self.delivery.session_mut() else {
            return;
        };
        s.opened_at = Some(ctx.now.mono);
        s.opened_ever = true;
        if s.phase == Phase::Closing {
            // Reopened before the relock: wait for the next shut.
            s.phase = Phase::Unlocked;
            self.timers.stop(Timer::RelockAfterClose);
        }
        self.event(
            ctx,
            DeliveryEventKind::DoorOpened,
            "door opened during the delivery",
            None,
            None,
        );
    }

    fn door_shut(&mut self, ctx: &mut Ctx) {
        let now = ctx.now.mono;
        let Some(s) = self.delivery.session_mut() else {
            return self.settle_owed_relock(ctx);
        };
        if let Some(t) = s.opened_at.take() {
            s.open_total += now.saturating_duration_since(t);
        }
        let secs = s.open_seconds(now);
        let (phase, opened_ever) = (s.phase.clone(), s.opened_ever);
        self.event(
            ctx,
            DeliveryEventKind::DoorClosed,
            "door shut",
            None,
            Some(secs),
        );
        match phase {
            // Shut after being opened: the courier is done.
            Phase::Unlocking | Phase::Unlocked if opened_ever => {
                if let Some(s) = self.delivery.session_mut() {
                    s.phase = Phase::Closing;
                }
                self.timers
                    .set(Timer::RelockAfterClose, now + self.rules.relock_after_close);
            }
            Phase::RelockOnShut { why } => {
                self.relock(ctx, &format!("{why}; the door has shut"));
            }
            _ => {}
        }
    }

    /// A request from the owner, Home Assistant or a courier.
    pub fn handle_command(&mut self, ctx: &mut Ctx, command: Command) {
        match command {
            Command::Grant { duration, code } => {
                let w = self.entries.grant(ctx.now.wall, duration);
                let reason = format!("window granted until {}", self.local_time(w.ends));
                self.audit(ctx, Decision::WindowGranted, &reason, window_json(&w));
                self.refresh(ctx);
                if let Some(code) = code {
                    self.set_code(ctx, code);
                }
                // The owner asked for it: a restart keeps it open.
                self.persist_if_changed(ctx);
            }
            Command::EndDelivery => {
                self.entries.cancel(ctx.now.wall);
                self.audit(
                    ctx,
                    Decision::WindowEnded,
                    "ended from Home Assistant",
                    json!({}),
                );
                // Before the refresh, so the relock names the owner rather
                // than the window it closes (a weekly window may stay open).
                self.relock_when_shut(ctx, "the owner ended the delivery");
                self.refresh(ctx);
                // A restart must not reopen the window the owner ended.
                self.persist_if_changed(ctx);
            }
            Command::CourierUnlock { code, carrier, via } => {
                self.courier_request(ctx, code, carrier, via)
            }
            Command::OwnerLock => {
                self.audit(
                    ctx,
                    Decision::OwnerLock,
                    "owner locked from Home Assistant",
                    json!({}),
                );
                if self.in_session() {
                    self.relock(ctx, "the owner locked the door");
                } else {
                    let cmd = self.lock.command(ctx.now.mono, Want::Locked);
                    ctx.out.push(self.lock_action(cmd));
                }
            }
            Command::OwnerUnlock => self.owner_unlock(ctx),
            Command::SetGrantDuration(d) => {
                self.entries.grant_duration = d;
                let reason = format!("grant duration set to {} min", d.as_secs() / 60);
                self.audit(
                    ctx,
                    Decision::GrantDuration,
                    &reason,
                    json!({ "seconds": d.as_secs() }),
                );
            }
            Command::SetCode(code) => self.set_code(ctx, code),
        }
    }

    fn owner_unlock(&mut self, ctx: &mut Ctx) {
        if self.rules.owner_unlock_requires_cameras
            && let Some(not_live) = self.cameras_not_live(ctx.cameras)
        {
            let reason = format!("owner unlock refused: {not_live}");
            self.event(ctx, DeliveryEventKind::Denied, &reason, None, None);
            self.audit(ctx, Decision::OwnerUnlockRefused, &reason, json!({}));
            return;
        }
        if self.in_session() {
            // The owner takes the door over; the delivery is over and must
            // not be left waiting for a relock.
            self.finish(ctx, "the owner unlocked the door during the delivery");
        }
        // The owner's unlock also overrides a relock a delivery still owed.
        self.forget_owed_relock(ctx);
        self.audit(
            ctx,
            Decision::OwnerUnlock,
            "owner unlocked from Home Assistant",
            json!({}),
        );
        let cmd = self.lock.command(ctx.now.mono, Want::Unlocked);
        ctx.out.push(self.lock_action(cmd));
    }

    /// Start a delivery. `already_unlocked`: the keypad opened the lock.
    fn begin(
        &mut self,
        ctx: &mut Ctx,
        carrier: Option<String>,
        via: RequestChannel,
        already_unlocked: bool,
        code_used: bool,
    ) {
        // The new session takes over the relock from here (a keypad entry
        // can start one while an earlier relock was still owed).
        self.entries.used += 1;
        if self.entries.spent(self.rules.entries_per_window) {
            // The code is good for this window's entries and no more.
            self.codes.current = None;
        }
        let record = SessionRecord {
            door: self.name.clone(),
            unlocked_at: ctx.now.wall,
            carrier: carrier.clone(),
            restore_auto_relock: self.backstop.owner,
        };
        let phase = if already_unlocked {
            Phase::Unlocked
        } else {
            Phase::Unlocking
        };
        self.evidence_start(ctx, record.unlocked_at);
        let mut s = Session::new(record, phase, ctx.now.wall, ctx.cameras);
        s.via = Some(via);
        s.window = self.entries.window;
        s.unlocked_at = already_unlocked.then_some(ctx.now.wall);
        s.code_used = code_used;
        self.delivery = Delivery::InProgress(s);
        // The session and the entry it used are on disk before the unlock.
        self.persist(ctx);
        if self.backstop.owner.is_some() {
            let secs = u32::try_from(self.rules.max_unlocked.as_secs()).unwrap_or(u32::MAX);
            self.set_auto_relock(ctx, secs);
        }
        if !already_unlocked {
            let cmd = self.lock.command(ctx.now.mono, Want::Unlocked);
            ctx.out.push(self.lock_action(cmd));
        }
        self.timers
            .set(Timer::MaxUnlocked, ctx.now.mono + self.rules.max_unlocked);
        self.announce_grant(ctx, carrier, via, code_used);
    }

    fn announce_grant(
        &mut self,
        ctx: &mut Ctx,
        carrier: Option<String>,
        via: RequestChannel,
        code_used: bool,
    ) {
        let who = carrier.as_deref().unwrap_or("a courier");
        let reason = format!("delivery granted to {who} via {}", via_str(via));
        let mut ev = self.delivery_event(DeliveryEventKind::Granted, &reason);
        ev.entries = Some(
            self.rules
                .entries_per_window
                .saturating_sub(self.entries.used),
        );
        ctx.out.push(Action::DeliveryEvent(ev));
        if via == RequestChannel::Mqtt {
            ctx.out.push(Action::DeliveryResponse {
                door: self.name.clone(),
                granted: true,
                reason: reason.clone(),
                carrier: carrier.clone(),
            });
        }
        self.audit(
            ctx,
            Decision::Granted,
            &reason,
            json!({
                "carrier": carrier,
                "via": via_str(via),
                "code_used": code_used,
                "entries_used": self.entries.used,
            }),
        );
    }

    /// Relock now, or as soon as the door shuts if it is open. A relock
    /// already due keeps its first reason.
    fn relock_when_shut(&mut self, ctx: &mut Ctx, why: &str) {
        if self.door_open == Some(true) {
            let Some(s) = self.delivery.session_mut() else {
                return;
            };
            if s.phase.relock_due() {
                return;
            }
            s.phase = Phase::RelockOnShut {
                why: why.to_string(),
            };
            // max_unlocked keeps counting, to tell the owner if the door
            // is then held open.
            self.timers.stop(Timer::RelockAfterClose);
            let reason = format!("{why}; relocking as soon as the door shuts");
            self.audit(ctx, Decision::RelockOnShut, &reason, json!({}));
        } else {
            self.relock(ctx, why);
        }
    }

    fn relock(&mut self, ctx: &mut Ctx, why: &str) {
        let Some(s) = self.delivery.session_mut() else {
            return;
        };
        if matches!(s.phase, Phase::Relocking { .. }) {
            return;
        }
        s.phase = Phase::Relocking {
            why: why.to_string(),
            sent_at: ctx.now.wall,
        };
        self.timers.stop_all();
        let cmd = self.lock.command(ctx.now.mono, Want::Locked);
        ctx.out.push(self.lock_action(cmd));
        self.audit(ctx, Decision::Relocking, why, json!({}));
    }

    /// The session is over (relocked, or given up on): restore the owner's
    /// auto-relock, persist, and write the summary.
    fn finish(&mut self, ctx: &mut Ctx, outcome: &str) {
        let Some(s) = self.delivery.take_session() else {
            return;
        };
        self.wrap_up(ctx, s, outcome);
    }

    /// What ending session `s` takes, once it has left `self.delivery`
    /// (with a relock still owed, or with nothing).
    fn wrap_up(&mut self, ctx: &mut Ctx, s: Session, outcome: &str) {
        self.timers.stop_all();
        if let Some(secs) = s.record.restore_auto_relock {
            self.set_auto_relock(ctx, secs);
        }
        // Without the session, but with a relock still owed.
        self.persist(ctx);
        let open_s = s.open_seconds(ctx.now.mono);
        self.last_outcome = Some(if s.compromised {
            DeliveryState::Tripped
        } else {
            DeliveryState::Completed
        });
        // `completed` only when nobody owes this door a relock any more;
        // a relock the lock never confirmed ends it as a failure.
        let kind = if self.delivery.owed().is_some() {
            DeliveryEventKind::RelockFailed
        } else {
            DeliveryEventKind::Completed
        };
        ctx.out.push(Action::Evidence(Evidence::Stop {
            door: self.name.clone(),
            delivery: s.record.unlocked_at,
            compromised: s.compromised,
        }));
        let mut ev = self.delivery_event(kind, outcome);
        ev.duration_s = Some(open_s);
        ev.compromised = Some(s.compromised);
        ctx.out.push(Action::DeliveryEvent(ev));
        let details = json!({
            "carrier": s.record.carrier,
            "via": s.via.map(via_str),
            "code_used": s.code_used,
            "window": s.window.as_ref().map(window_json),
            "cameras": s.timeline,
            "unlocked_at": s.unlocked_at.map(|t| t.to_string()),
            "relock_sent_at": s.phase.relock_sent_at().map(|t| t.to_string()),
            "relocked_at": (self.lock.state() == LockState::Locked).then(|| ctx.now.wall.to_string()),
            "relock_reason": s.phase.relock_reason(),
            "door_open_s": open_s,
            "compromised": s.compromised,
            "restarted": s.restarted,
            "outcome": outcome,
        });
        self.audit(ctx, Decision::DeliverySummary, outcome, details);
    }

    // ---- output helpers -------------------------------------------------

    /// Ask the shell to record this door's cameras for the delivery that
    /// began at `delivery`.
    fn evidence_start(&self, ctx: &mut Ctx, delivery: jiff::Timestamp) {
        ctx.out.push(Action::Evidence(Evidence::Start {
            door: self.name.clone(),
            delivery,
            cameras: ctx.cameras.iter().map(|c| c.name.clone()).collect(),
        }));
    }

    /// Ask the shell to write everything that must survive a restart: this
    /// door's session, code and limits here, the other doors' added by the
    /// core.
    fn persist(&mut self, ctx: &mut Ctx) {
        let mut own = PersistedState::default();
        self.add_to(&mut own);
        ctx.out.push(Action::Persist(own));
        self.codes.saved = self.code_record();
        self.entries.set_saved(self.door_record());
    }

    /// Persist when this door's code differs from what the store holds.
    fn persist_code_if_changed(&mut self, ctx: &mut Ctx) {
        let same = self.codes.record_is(
            self.codes.saved.as_ref(),
            &self.name,
            self.entries.counts_for(),
            self.entries.used,
            self.keypad.holding(self.rules.code_slot),
        );
        if !same {
            self.persist(ctx);
        }
    }

    /// Persist when this door's code or limits differ from what it last
    /// asked the store to hold. Not called on every refresh: a window edge
    /// changes the limits only in ways a restore ignores anyway.
    fn persist_if_changed(&mut self, ctx: &mut Ctx) {
        if self.door_record() != *self.entries.saved() {
            self.persist(ctx);
        } else {
            self.persist_code_if_changed(ctx);
        }
    }

    fn lock_action(&self, command: LockCommand) -> Action {
        Action::Lock {
            door: self.name.clone(),
            command,
        }
    }
}

/// A wall-clock instant placed on the monotonic clock, using the latest
/// stamp as the bridge between the two. Past instants map to `last.mono`.
pub fn wall_to_mono(last: Stamp, t: Timestamp) -> Instant {
    let ahead = t.duration_since(last.wall);
    match Duration::try_from(ahead) {
        Ok(d) => last
            .mono
            .checked_add(d)
            .unwrap_or(last.mono + Duration::from_secs(365 * 86_400)),
        // Negative: already due.
        Err(_) => last.mono,
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
    fn wall_deadlines_map_onto_the_monotonic_clock() {
        let mono = Instant::now();
        let last = Stamp {
            mono,
            wall: at("2026-11-28T10:00:00Z"),
        };
        assert_eq!(
            wall_to_mono(last, at("2026-11-28T10:00:30Z")),
            mono + Duration::from_secs(30)
        );
        // Already passed (the wall clock jumped ahead): due now.
        assert_eq!(wall_to_mono(last, at("2026-11-28T09:00:00Z")), mono);
    }

    #[test]
    fn every_timer_has_its_own_slot() {
        crate::core::timer::assert_keys_fill_slots::<Timer, 2>();
    }
}
