//! [`Core`]: the cameras and doors of one home, composed into one machine.
//!
//! Each camera has its liveness machine, each door its interlock
//! ([`door::Door`], which owns the door's schedule and lock tracker).
//! `Core` routes every event to the machines it concerns, runs their
//! timeouts, tells the doors when one of their cameras changes, and
//! publishes what Home Assistant shows whenever it changes.
//!
//! # Time
//!
//! The monotonic half of each [`Stamp`] never goes backwards inside the
//! core: an event stamped earlier than the last one is handled as if it
//! came at the last instant (its wall half moved forward by as much). The
//! wall half is otherwise taken as given (wall clocks are stepped), and
//! every window is re-read from it on every event, so a jump opens or
//! closes windows at once. [`Core::next_deadline`] turns the
//! next window edge into an `Instant` from the latest stamp; if the wall
//! clock jumps in between, the tick comes early or late and the next event
//! corrects it. Early and spurious ticks are harmless.
//!
//! # Storage
//!
//! The core cannot see whether a [`Action::Persist`] worked. It assumes
//! success unless [`EventKind::StorageFailed`] is the *next* event the shell
//! hands in (the shell reports a failed write at once, before anything
//! else). After a failure deliveries are refused with "storage unavailable:
//! <reason>", an unlock still waiting for its confirmation is taken back,
//! and every [`STORAGE_RETRY`] the core emits a probe `Persist` of the
//! current sessions; when the event after a probe (or after any other
//! `Persist`) is not another failure, storage counts as working again.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;

use super::door::{self, CameraSnapshot, Ctx, Rules};
use super::liveness::{CameraSettings, Transition};
use super::streams::CameraStreams;
use super::{
    Action, AuditRecord, CameraStatus, CodeRecord, Command, Decision, DeliveryState, DoorRecord,
    DoorReport, DoorStatus, Event, EventKind, LockCommand, PersistedState, SessionRecord, Stamp,
    SubstreamEvent,
};
use crate::config::Config;
use crate::core::text;

/// How far back a wall time may read before the last one's and still be
/// taken as the same moment (see `Core::stamp`): far above a preempted
/// thread's gap between two clock reads, far below a real clock step.
const WALL_JITTER: jiff::SignedDuration = jiff::SignedDuration::from_secs(1);

/// How often a probe `Persist` is sent while storage is failing.
pub const STORAGE_RETRY: Duration = Duration::from_secs(30);
/// Camera rates (fps, bitrate) that left their band are published at most
/// this often.
pub const RATE_INTERVAL: Duration = Duration::from_secs(1);

/// Why the core wants to be woken (str0m's `Reason`): for logs and tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Wake {
    /// A camera's liveness deadline (stall, warmup, freeze).
    Camera,
    /// A lock command's confirmation deadline.
    LockConfirmation,
    /// A delivery session's relock deadline.
    Delivery,
    /// A delivery window opens or closes (wall clock).
    WindowEdge,
    /// Time to probe failing storage again.
    StorageRetry,
    /// A lock's reports have calmed down after flapping: ask it where its
    /// bolt really is.
    LockRefresh,
}

/// The earlier of two deadlines, keeping the reason of the one chosen.
pub fn soonest(a: Option<(Instant, Wake)>, b: Option<(Instant, Wake)>) -> Option<(Instant, Wake)> {
    match (a, b) {
        (Some(x), Some(y)) => Some(if y.0 < x.0 { y } else { x }),
        (x, None) => x,
        (None, y) => y,
    }
}

/// What stops the core from being built; each names the config entry.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CoreError {
    #[error("door `{door}`: {reason}")]
    TimeZone { door: String, reason: String },
    #[error("door `{door}` needs camera `{camera}`, which is not under `cameras`")]
    UnknownCamera { door: String, camera: String },
    #[error("`deliveries.{door}` has no door of that name under `locks`")]
    DeliveriesWithoutDoor { door: String },
}

#[derive(Debug, Clone)]
struct CameraEntry {
    liveness: CameraStreams,
    published: Option<CameraStatus>,
    rates_published_at: Option<Instant>,
}

impl CameraEntry {
    fn snapshot(&self, name: &str) -> CameraSnapshot {
        let state = self.liveness.state();
        CameraSnapshot {
            name: name.to_string(),
            kind: state.kind(),
            since: state.since().wall,
            reason: state.reason(),
        }
    }

    fn status(&self, name: &str) -> CameraStatus {
        self.liveness.status(name)
    }

    /// Whether `snapshot` still shows this camera as it is.
    fn shows(&self, snapshot: &CameraSnapshot) -> bool {
        let state = self.liveness.state();
        snapshot.kind == state.kind()
            && snapshot.since == state.since().wall
            && text::same(snapshot.reason.as_deref(), |w| state.write_reason(w))
    }

    /// Whether `shown` holds this camera's state and reason as they are.
    fn state_shown(&self, shown: &CameraStatus) -> bool {
        let state = self.liveness.state();
        shown.state == state.kind()
            && text::same(shown.reason.as_deref(), |w| state.write_reason(w))
    }
}

/// Each input the core hands a door: one [`door::Door`] call each.
enum DoorInput<'e> {
    Start,
    RestoreWindows(&'e DoorRecord),
    Restore(SessionRecord),
    RestoreCode(CodeRecord),
    RestoreLimits(&'e DoorRecord),
    ForgetRestored,
    Refresh,
    Timeout,
    Camera {
        camera: &'e str,
        change: &'e Transition,
    },
    Report(&'e DoorReport),
    Command(Command),
    StorageFailed,
    Unsent {
        command: &'e LockCommand,
        why: &'e str,
    },
    Sent(&'e LockCommand),
    LinkUp,
}

#[derive(Debug, Clone)]
struct DoorEntry {
    door: door::Door,
    cameras: Vec<String>,
    /// The door's cameras as it sees them, in `cameras` order: kept in step
    /// by [`Core::camera_changed`] so that no event has to build them.
    snapshots: Vec<CameraSnapshot>,
    published: Option<DoorStatus>,
    published_online: Option<bool>,
}

/// The whole home's decisions. See the module docs of `crate::core` for
/// the driver's contract. `Clone` gives an independent copy (tests fork a
/// warmed-up home this way).
#[derive(Debug, Clone)]
pub struct Core {
    cameras: BTreeMap<String, CameraEntry>,
    doors: BTreeMap<String, DoorEntry>,
    /// The keys of `doors`, shared, so that a walk over every door while
    /// telling each one something copies no name.
    door_names: Arc<[String]>,
    restored: Vec<SessionRecord>,
    /// Delivery codes from the store, taken up by `start`.
    restored_codes: Vec<CodeRecord>,
    /// Doors' windows and limits from the store, taken up by `start`.
    restored_doors: Vec<DoorRecord>,
    storage_problem: Option<String>,
    storage_retry: Option<Instant>,
    /// A `Persist` went out while storage was failing; if the next event is
    /// not a failure, it worked.
    persist_probe: bool,
    last: Stamp,
}

impl Core {
    /// Build the core from the validated config and what the store
    /// recovered. `seed` is fresh randomness from the shell (the core reads
    /// none itself); it salts the hashes of delivery codes.
    ///
    /// # Errors
    ///
    /// A door whose time zone could not be found (the config looked it up;
    /// the core reads no file), a door naming a camera that is not
    /// configured, delivery rules for a door that does not exist.
    pub fn new(
        config: &Config,
        restored: PersistedState,
        seed: [u8; 32],
        now: Stamp,
    ) -> Result<Core, CoreError> {
        for name in config.deliveries.keys() {
            if !config.locks.contains_key(name) {
                return Err(CoreError::DeliveriesWithoutDoor { door: name.clone() });
            }
        }
        let cameras = config
            .cameras
            .iter()
            .map(|(name, cam)| {
                let entry = CameraEntry {
                    liveness: CameraStreams::new(
                        CameraSettings::from(cam),
                        cam.picture_url.is_some(),
                        now,
                    ),
                    published: None,
                    rates_published_at: None,
                };
                (name.clone(), entry)
            })
            .collect::<BTreeMap<_, _>>();
        let mut doors = BTreeMap::new();
        for (name, door_cfg) in &config.locks {
            for camera in &door_cfg.cameras {
                if !cameras.contains_key(camera) {
                    return Err(CoreError::UnknownCamera {
                        door: name.clone(),
                        camera: camera.clone(),
                    });
                }
            }
            let deliveries = config.delivery_rules(name);
            let zone = deliveries
                .zone
                .clone()
                .map_err(|reason| CoreError::TimeZone {
                    door: name.clone(),
                    reason,
                })?;
            let mut door_seed = seed;
            // Each door's salts differ even for the same counter.
            for (i, b) in name.bytes().enumerate() {
                door_seed[i % 32] ^= b;
            }
            let door = door::Door::new(
                name,
                Rules::new(door_cfg, deliveries),
                zone,
                &deliveries.windows,
                door_cfg.confirm_timeout,
                door_seed,
            );
            doors.insert(
                name.clone(),
                DoorEntry {
                    door,
                    cameras: door_cfg.cameras.clone(),
                    snapshots: door_cfg
                        .cameras
                        .iter()
                        .filter_map(|n| cameras.get(n).map(|c| c.snapshot(n)))
                        .collect(),
                    published: None,
                    published_online: None,
                },
            );
        }
        Ok(Core {
            door_names: doors.keys().cloned().collect(),
            cameras,
            doors,
            restored: restored.sessions,
            restored_codes: restored.codes,
            restored_doors: restored.doors,
            storage_problem: None,
            storage_retry: None,
            persist_probe: false,
            last: now,
        })
    }

    // ---- getters -------------------------------------------------------

    /// The latest stamp seen (monotonic half never goes backwards).
    pub fn now(&self) -> Stamp {
        self.last
    }

    /// What Home Assistant shows for `door` right now.
    pub fn door_status(&self, door: &str) -> Option<DoorStatus> {
        let entry = self.doors.get(door)?;
        Some(
            entry
                .door
                .status(&entry.snapshots, self.storage_problem.as_deref()),
        )
    }

    /// The cameras of a door whose delivery window is open or whose
    /// delivery is running: the ones whose pictures the shell should look at
    /// closely (`crate::io::picture`), rather than at keyframes only.
    pub fn close_look(&self) -> std::collections::BTreeSet<&str> {
        let mut out = std::collections::BTreeSet::new();
        for name in self.doors.keys() {
            let active = self.door_status(name).is_some_and(|s| {
                s.window_ends.is_some()
                    || matches!(
                        s.delivery,
                        DeliveryState::WindowOpen
                            | DeliveryState::Unlocked
                            | DeliveryState::Watching
                    )
            });
            if active && let Some(entry) = self.doors.get(name) {
                out.extend(entry.cameras.iter().map(String::as_str));
            }
        }
        out
    }

    pub fn camera_status(&self, camera: &str) -> Option<CameraStatus> {
        self.cameras.get(camera).map(|c| c.status(camera))
    }

    /// Everything that would be persisted now: the deliveries in progress
    /// (or owing a relock) and the one-time codes in force.
    pub fn sessions(&self) -> PersistedState {
        self.persisted_except(None)
    }

    /// What every door but `skip` has to persist.
    fn persisted_except(&self, skip: Option<&str>) -> PersistedState {
        let mut state = PersistedState::default();
        for (_, d) in self.doors.iter().filter(|(n, _)| Some(n.as_str()) != skip) {
            d.door.add_to(&mut state);
        }
        state
    }

    pub fn door_names(&self) -> impl Iterator<Item = &str> {
        self.doors.keys().map(String::as_str)
    }

    /// The instant the core next has work to do, and why; `None` when
    /// nothing is scheduled. Never earlier than the last stamp seen. Call
    /// after every [`Core::handle`] / [`Core::start`].
    pub fn next_deadline(&self) -> Option<(Instant, Wake)> {
        let mut next = self.storage_retry.map(|t| (t, Wake::StorageRetry));
        for cam in self.cameras.values() {
            next = soonest(next, cam.liveness.poll_timeout().map(|t| (t, Wake::Camera)));
        }
        for entry in self.doors.values() {
            next = soonest(next, entry.door.poll_timeout(self.last));
        }
        next.map(|(t, why)| (t.max(self.last.mono), why))
    }

    // ---- inputs --------------------------------------------------------

    /// Once, before the first event: publish every camera and door, ask the
    /// locks where they are, and relock any delivery left open by a crash.
    #[must_use]
    pub fn start(&mut self, now: Stamp) -> Vec<Action> {
        let now = self.stamp(now);
        let mut out = Vec::new();
        let names = Arc::clone(&self.door_names);
        for name in names.iter() {
            self.tell_door(name, now, &mut out, DoorInput::Start);
        }
        // A door that is no longer configured has no window or limit left
        // to keep; its record is simply not written again.
        let limits = std::mem::take(&mut self.restored_doors);
        // Windows first: restoring a session or a code asks which window
        // is open.
        for record in &limits {
            self.tell_door(
                &record.door,
                now,
                &mut out,
                DoorInput::RestoreWindows(record),
            );
        }
        let restored = std::mem::take(&mut self.restored);
        for record in restored {
            let name = record.door.clone();
            if self.doors.contains_key(&name) {
                self.tell_door(&name, now, &mut out, DoorInput::Restore(record));
            } else {
                out.push(Action::Audit(AuditRecord {
                    at: now.wall,
                    door: Some(name.clone()),
                    decision: Decision::RestartedDuringDelivery.as_str().into(),
                    reason: format!(
                        "a delivery at door `{name}` was in progress before the restart, \
                         but that door is no longer configured; it cannot be relocked"
                    ),
                    details: json!({ "unlocked_at": record.unlocked_at.to_string() }),
                }));
            }
        }
        let codes = std::mem::take(&mut self.restored_codes);
        for record in codes {
            let name = record.door.clone();
            if self.doors.contains_key(&name) {
                self.tell_door(&name, now, &mut out, DoorInput::RestoreCode(record));
            } else {
                out.push(Action::Audit(AuditRecord {
                    at: now.wall,
                    door: Some(name.clone()),
                    decision: Decision::CodeDropped.as_str().into(),
                    reason: format!(
                        "a delivery code for door `{name}` was stored, but that door is no \
                         longer configured; it was dropped"
                    ),
                    details: json!({}),
                }));
            }
        }
        for record in &limits {
            self.tell_door(
                &record.door,
                now,
                &mut out,
                DoorInput::RestoreLimits(record),
            );
        }
        for name in names.iter() {
            self.tell_door(name, now, &mut out, DoorInput::Refresh);
        }
        for record in &limits {
            self.tell_door(&record.door, now, &mut out, DoorInput::ForgetRestored);
        }
        for (name, cam) in &mut self.cameras {
            let status = cam.status(name);
            cam.published = Some(status.clone());
            cam.rates_published_at = Some(now.mono);
            out.push(Action::CameraState(status));
        }
        self.publish_changes(&mut out);
        out
    }

    /// One stamped input. Carry out the returned actions in order.
    #[must_use]
    pub fn handle(&mut self, event: Event) -> Vec<Action> {
        let now = self.stamp(event.at);
        let mut out = Vec::new();
        if self.persist_probe && !matches!(event.kind, EventKind::StorageFailed { .. }) {
            self.storage_problem = None;
            self.storage_retry = None;
        }
        self.persist_probe = false;

        self.run_timeouts(now, &mut out);
        match event.kind {
            EventKind::Tick => {}
            EventKind::CameraUp { camera } => {
                if let Some(c) = self.cameras.get_mut(&camera) {
                    let change = c.liveness.handle_up(now);
                    self.camera_changed(&camera, change, now, &mut out);
                }
            }
            EventKind::CameraFrame { camera, frame } => {
                if let Some(c) = self.cameras.get_mut(&camera) {
                    let change = c.liveness.handle_frame(now, &frame);
                    self.camera_changed(&camera, change, now, &mut out);
                }
            }
            EventKind::CameraPicture { camera, sample } => {
                if let Some(c) = self.cameras.get_mut(&camera) {
                    let change = c.liveness.handle_picture(now, &sample);
                    self.camera_changed(&camera, change, now, &mut out);
                }
            }
            EventKind::CameraDown { camera, reason } => {
                if let Some(c) = self.cameras.get_mut(&camera) {
                    let change = c.liveness.handle_down(now, &crate::redact::text(&reason));
                    self.camera_changed(&camera, change, now, &mut out);
                }
            }
            EventKind::Substream { camera, event } => {
                if let Some(c) = self.cameras.get_mut(&camera) {
                    let change = match event {
                        SubstreamEvent::Up => c.liveness.handle_sub_up(now),
                        SubstreamEvent::Frame(frame) => c.liveness.handle_sub_frame(now, &frame),
                        SubstreamEvent::Down { reason } => c
                            .liveness
                            .handle_sub_down(now, &crate::redact::text(&reason)),
                    };
                    self.camera_changed(&camera, change, now, &mut out);
                }
            }
            EventKind::Door { door, report } => {
                if self.doors.contains_key(&door) {
                    self.tell_door(&door, now, &mut out, DoorInput::Report(&report));
                }
            }
            EventKind::Command { door, command } => {
                if self.doors.contains_key(&door) {
                    self.tell_door(&door, now, &mut out, DoorInput::Command(command));
                }
            }
            EventKind::StorageFailed { reason } => {
                let reason = crate::redact::text(&reason);
                out.push(Action::Audit(AuditRecord {
                    at: now.wall,
                    door: None,
                    decision: Decision::StorageFailed.as_str().into(),
                    reason: format!("storage unavailable: {reason}"),
                    details: json!({}),
                }));
                self.storage_problem = Some(reason);
                self.storage_retry = Some(now.mono + STORAGE_RETRY);
                let names = Arc::clone(&self.door_names);
                for name in names.iter() {
                    self.tell_door(name, now, &mut out, DoorInput::StorageFailed);
                }
            }
            EventKind::LockCommandUnsent {
                door,
                command,
                reason,
            } => {
                let reason = crate::redact::text(&reason);
                let unsent = DoorInput::Unsent {
                    command: &command,
                    why: &reason,
                };
                self.tell_door(&door, now, &mut out, unsent);
            }
            EventKind::LockCommandSent { door, command } => {
                self.tell_door(&door, now, &mut out, DoorInput::Sent(&command));
            }
            EventKind::LinkUp => {
                let names = Arc::clone(&self.door_names);
                for name in names.iter() {
                    self.tell_door(name, now, &mut out, DoorInput::LinkUp);
                }
            }
        }
        self.refresh_doors(now, &mut out);
        self.publish_changes(&mut out);
        if self.storage_problem.is_some() && out.iter().any(|a| matches!(a, Action::Persist(_))) {
            self.persist_probe = true;
        }
        out
    }

    // ---- internals -----------------------------------------------------

    /// Keep the monotonic clock from going backwards. A late event (a
    /// camera's decoded picture of a frame that came a moment before the
    /// last event) is handled as if it came at the last instant, its wall
    /// half moved forward by the same lateness: read as given, it would
    /// step the wall clock back, and a window granted in between would
    /// close, its code with it, and open again without one. A real step of
    /// the wall clock still shows: the lateness is measured on the
    /// monotonic half only.
    ///
    /// The two halves of a stamp are two clock reads, and a busy machine can
    /// preempt the thread between them: an event stamped a moment after the
    /// last one can carry a wall time a few milliseconds before it. Such a
    /// step back, under [`WALL_JITTER`], is read as no step at all; a real
    /// step of the wall clock is larger and still shows.
    fn stamp(&mut self, at: Stamp) -> Stamp {
        let late = self.last.mono.saturating_duration_since(at.mono);
        let mut wall = jiff::SignedDuration::try_from(late)
            .ok()
            .and_then(|d| at.wall.checked_add(d).ok())
            .unwrap_or(at.wall);
        let back = self.last.wall.duration_since(wall);
        if back.is_positive() && back < WALL_JITTER {
            wall = self.last.wall;
        }
        let now = Stamp {
            mono: at.mono.max(self.last.mono),
            wall,
        };
        self.last = now;
        now
    }

    /// Hand `input` to door `name`, with a context holding its cameras.
    /// A `Persist` the door pushes holds its own records only; the other
    /// doors' are added here, after the call (nothing else changes them
    /// meanwhile), so they are copied only when something is persisted.
    fn tell_door(&mut self, name: &str, now: Stamp, out: &mut Vec<Action>, input: DoorInput) {
        let Some(entry) = self.doors.get_mut(name) else {
            return;
        };
        let door = &mut entry.door;
        let from = out.len();
        let mut ctx = Ctx {
            now,
            cameras: &entry.snapshots,
            storage_problem: self.storage_problem.as_deref(),
            out,
        };
        match input {
            DoorInput::Start => door.start(&mut ctx),
            DoorInput::RestoreWindows(record) => door.restore_windows(&mut ctx, record),
            DoorInput::Restore(record) => door.restore(&mut ctx, record),
            DoorInput::RestoreCode(record) => door.restore_code(&mut ctx, record),
            DoorInput::RestoreLimits(record) => door.restore_limits(&mut ctx, record),
            DoorInput::ForgetRestored => door.forget_restored(&mut ctx),
            DoorInput::Refresh => door.refresh(&mut ctx),
            DoorInput::Timeout => door.handle_timeout(&mut ctx),
            DoorInput::Camera { camera, change } => door.handle_camera(&mut ctx, camera, change),
            DoorInput::Report(report) => door.handle_report(&mut ctx, report),
            DoorInput::Command(command) => door.handle_command(&mut ctx, command),
            DoorInput::StorageFailed => door.handle_storage_failed(&mut ctx),
            DoorInput::Unsent { command, why } => door.handle_unsent(&mut ctx, command, why),
            DoorInput::Sent(command) => door.handle_sent(&mut ctx, command),
            DoorInput::LinkUp => door.handle_link_up(&mut ctx),
        }
        self.add_other_doors(name, &mut out[from..]);
    }

    /// Complete each `Persist` door `name` just pushed: every other door's
    /// records first, then the door's own, as one [`PersistedState`].
    fn add_other_doors(&self, name: &str, pushed: &mut [Action]) {
        let mut others = None;
        for action in pushed {
            let Action::Persist(state) = action else {
                continue;
            };
            let others = others.get_or_insert_with(|| self.persisted_except(Some(name)));
            let own = std::mem::replace(state, others.clone());
            state.sessions.extend(own.sessions);
            state.codes.extend(own.codes);
            state.doors.extend(own.doors);
        }
    }

    fn run_timeouts(&mut self, now: Stamp, out: &mut Vec<Action>) {
        if self.storage_retry.is_some_and(|t| t <= now.mono) {
            self.storage_retry = Some(now.mono + STORAGE_RETRY);
            out.push(Action::Persist(self.sessions()));
            self.persist_probe_audit(now, out);
        }
        let due: Vec<String> = self
            .cameras
            .iter()
            .filter(|(_, c)| c.liveness.poll_timeout().is_some_and(|t| t <= now.mono))
            .map(|(n, _)| n.clone())
            .collect();
        for name in due {
            if let Some(c) = self.cameras.get_mut(&name) {
                let change = c.liveness.handle_timeout(now);
                self.camera_changed(&name, change, now, out);
            }
        }
        // Windows first: a lock retry due at the same instant a window
        // closed must see the window closed and relock instead.
        self.refresh_doors(now, out);
        let names = Arc::clone(&self.door_names);
        for name in names.iter() {
            self.tell_door(name, now, out, DoorInput::Timeout);
        }
    }

    fn persist_probe_audit(&self, now: Stamp, out: &mut Vec<Action>) {
        out.push(Action::Audit(AuditRecord {
            at: now.wall,
            door: None,
            decision: Decision::StorageRetry.as_str().into(),
            reason: "trying to write the delivery state again".into(),
            details: json!({}),
        }));
    }

    fn refresh_doors(&mut self, now: Stamp, out: &mut Vec<Action>) {
        let names = Arc::clone(&self.door_names);
        for name in names.iter() {
            self.tell_door(name, now, out, DoorInput::Refresh);
        }
    }

    /// After any input to a camera: publish a state change at once, rates
    /// that left their band (`camera_band`) at most once a second, and hand
    /// its doors the `change` liveness returned when the camera's kind
    /// changed.
    fn camera_changed(
        &mut self,
        name: &str,
        change: Option<Transition>,
        now: Stamp,
        out: &mut Vec<Action>,
    ) {
        let Some(cam) = self.cameras.get_mut(name) else {
            return;
        };
        let shown = cam.published.as_ref();
        let state_changed = shown.is_none_or(|p| !cam.state_shown(p));
        let rates_due = cam
            .rates_published_at
            .is_none_or(|t| now.mono.saturating_duration_since(t) >= RATE_INTERVAL);
        let rates_moved = shown.is_none_or(|p| {
            super::camera_band::rates_moved(p, cam.liveness.fps(), cam.liveness.bitrate_kbps())
        });
        if state_changed || (rates_due && rates_moved) {
            let status = cam.status(name);
            cam.published = Some(status.clone());
            cam.rates_published_at = Some(now.mono);
            out.push(Action::CameraState(status));
        }
        // The doors see the camera as it is before they hear of the change.
        let cam = &self.cameras[name];
        for entry in self.doors.values_mut() {
            for snapshot in &mut entry.snapshots {
                if snapshot.name == name && !cam.shows(snapshot) {
                    *snapshot = cam.snapshot(name);
                }
            }
        }
        // A new reason or startup step of the same kind is for Home
        // Assistant only.
        let Some(change) = change.filter(|t| t.from != t.to) else {
            return;
        };
        let doors: Vec<String> = self
            .doors
            .iter()
            .filter(|(_, d)| d.cameras.iter().any(|c| c == name))
            .map(|(n, _)| n.clone())
            .collect();
        for door in &doors {
            let input = DoorInput::Camera {
                camera: name,
                change: &change,
            };
            self.tell_door(door, now, out, input);
        }
    }

    /// Publish each door's state and availability when they differ from
    /// what was last published.
    fn publish_changes(&mut self, out: &mut Vec<Action>) {
        let storage = self.storage_problem.as_deref();
        for (name, entry) in &mut self.doors {
            if let Some(up) = entry.door.lock().available()
                && entry.published_online != Some(up)
            {
                entry.published_online = Some(up);
                out.push(Action::DoorAvailability {
                    door: name.clone(),
                    online: up,
                });
            }
            let same = entry
                .published
                .as_ref()
                .is_some_and(|p| entry.door.status_is(p, &entry.snapshots, storage));
            if !same {
                let status = entry.door.status(&entry.snapshots, storage);
                entry.published = Some(status.clone());
                out.push(Action::DoorState(status));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::{Command, DoorReport, LockState, RequestChannel};

    const HOME: &str = r#"
mqtt: { url: "mqtt://127.0.0.1:1883" }
cameras:
  porch: { url: "rtsp://127.0.0.1/porch" }
locks:
  front:
    zigbee2mqtt: { topic: zigbee2mqtt/front }
    cameras: [porch]
deliveries:
  front:
    time_zone: Europe/Berlin
    windows: [{ days: [mon, tue, wed, thu, fri, sat, sun], from: "09:00", to: "17:00" }]
"#;

    fn config(text: &str) -> Config {
        match serde_yaml::from_str(text) {
            Ok(c) => c,
            Err(e) => panic!("test config: {e}"),
        }
    }

    fn stamp(mono: Instant, wall: &str) -> Stamp {
        match wall.parse() {
            Ok(wall) => Stamp { mono, wall },
            Err(e) => panic!("{wall}: {e}"),
        }
    }

    #[test]
    fn soonest_keeps_the_earlier_deadline_and_its_reason() {
        let t = Instant::now();
        let later = Some((t + Duration::from_secs(1), Wake::Camera));
        let sooner = Some((t, Wake::Delivery));
        assert_eq!(soonest(later, sooner), sooner);
        assert_eq!(soonest(sooner, later), sooner);
        assert_eq!(soonest(None, later), later);
        assert_eq!(soonest(None, None), None);
    }

    #[test]
    fn config_errors_name_the_door_and_what_is_wrong() {
        let unknown_camera = HOME.replace("cameras: [porch]", "cameras: [garden]");
        let err = Core::new(
            &config(&unknown_camera),
            PersistedState::default(),
            [0; 32],
            stamp(Instant::now(), "2026-11-28T10:00:00Z"),
        );
        assert_eq!(
            err.err().map(|e| e.to_string()).as_deref(),
            Some("door `front` needs camera `garden`, which is not under `cameras`")
        );
        let bad_zone = HOME.replace("Europe/Berlin", "Mars/Olympus");
        let err = Core::new(
            &config(&bad_zone),
            PersistedState::default(),
            [0; 32],
            stamp(Instant::now(), "2026-11-28T10:00:00Z"),
        );
        let text = err.err().map(|e| e.to_string()).unwrap_or_default();
        assert!(
            text.starts_with("door `front`: unknown time zone `Mars/Olympus`"),
            "{text}"
        );
    }

    #[test]
    fn time_going_backwards_is_harmless() {
        let t0 = Instant::now() + Duration::from_secs(3600);
        let mut core = match Core::new(
            &config(HOME),
            PersistedState::default(),
            [0; 32],
            stamp(t0, "2026-11-28T10:00:00Z"),
        ) {
            Ok(c) => c,
            Err(e) => panic!("{e}"),
        };
        let _ = core.start(stamp(t0, "2026-11-28T10:00:00Z"));
        let report = DoorReport::Lock {
            state: LockState::Locked,
            source: None,
        };
        let _ = core.handle(Event {
            at: stamp(t0 + Duration::from_secs(10), "2026-11-28T10:00:10Z"),
            kind: EventKind::Door {
                door: "front".into(),
                report,
            },
        });
        // Monotonic time half an hour earlier, wall clock a day earlier.
        let earlier = stamp(t0 - Duration::from_secs(1800), "2026-11-27T10:00:00Z");
        let command = Command::CourierUnlock {
            code: None,
            carrier: None,
            via: RequestChannel::Mqtt,
        };
        let actions = core.handle(Event {
            at: earlier,
            kind: EventKind::Command {
                door: "front".into(),
                command,
            },
        });
        // Refused (the camera has never been live), and nothing panicked.
        assert!(
            actions
                .iter()
                .any(|a| matches!(a, Action::DeliveryResponse { granted: false, .. }))
        );
        assert_eq!(core.now().mono, t0 + Duration::from_secs(10));
        let Some((next, _)) = core.next_deadline() else {
            panic!("a window edge is always ahead")
        };
        assert!(next >= t0 + Duration::from_secs(10));
        // A tick for a deadline that has not come yet changes nothing.
        let tick = core.handle(Event {
            at: stamp(t0, "2026-11-27T10:00:01Z"),
            kind: EventKind::Tick,
        });
        assert!(!tick.iter().any(|a| matches!(a, Action::Lock { .. })));
    }

    #[test]
    fn a_delivery_code_never_shows_in_debug_output() {
        let keypad = HOME.replace(
            "time_zone: Europe/Berlin",
            "time_zone: Europe/Berlin\n    code_slot: 3",
        );
        let t0 = Instant::now();
        let at = stamp(t0, "2026-11-28T10:00:00Z");
        let mut core = match Core::new(&config(&keypad), PersistedState::default(), [0; 32], at) {
            Ok(c) => c,
            Err(e) => panic!("{e}"),
        };
        let mut actions = core.start(at);
        let grant = Command::Grant {
            duration: None,
            code: Some(crate::config::Secret::new("918273")),
        };
        let event = Event {
            at,
            kind: EventKind::Command {
                door: "front".into(),
                command: grant,
            },
        };
        // The event itself is what a shell would log first.
        let mut shown = format!("{event:?}");
        actions.extend(core.handle(event));
        // The core keeps the plain PIN for the keypad slot: it must not
        // show in a dump of the core either.
        shown.push_str(&format!("{core:?}{actions:?}"));
        assert!(shown.contains("window_granted"), "the grant was handled");
        assert!(!shown.contains("918273"), "{shown}");
    }

    /// A home with no weekly window, granted one with a code at 10 s (the
    /// grant stamped `grant_wall`), then handed a tick stamped `(mono, wall)`
    /// after it: whether that tick closed the window, and whether it is open.
    fn tick_after_a_grant(
        grant_wall: &str,
        tick_mono: Duration,
        tick_wall: &str,
    ) -> (Vec<Action>, Option<crate::core::DeliveryState>) {
        // No weekly window: only the grant opens one.
        let home = HOME.replace(
            r#"windows: [{ days: [mon, tue, wed, thu, fri, sat, sun], from: "09:00", to: "17:00" }]"#,
            "windows: []",
        );
        let t0 = Instant::now();
        let at = stamp(t0, "2026-11-28T20:00:00Z");
        let mut core = match Core::new(&config(&home), PersistedState::default(), [0; 32], at) {
            Ok(c) => c,
            Err(e) => panic!("{e}"),
        };
        let _ = core.start(at);
        let grant = Command::Grant {
            duration: None,
            code: Some(crate::config::Secret::new("918273")),
        };
        let _ = core.handle(Event {
            at: stamp(t0 + Duration::from_secs(10), grant_wall),
            kind: EventKind::Command {
                door: "front".into(),
                command: grant,
            },
        });
        let after = core.handle(Event {
            at: stamp(t0 + tick_mono, tick_wall),
            kind: EventKind::Tick,
        });
        let closed = after
            .into_iter()
            .filter(|a| format!("{a:?}").contains("WindowClosed"))
            .collect();
        (closed, core.door_status("front").map(|s| s.delivery))
    }

    #[test]
    fn a_late_event_does_not_close_a_window_granted_just_before_it() {
        // A camera's decoded picture of a frame that came 200 ms before the
        // grant, handled after it: both halves of its stamp are that old.
        let (closed, status) = tick_after_a_grant(
            "2026-11-28T20:00:10Z",
            Duration::from_millis(9_800),
            "2026-11-28T20:00:09.800Z",
        );
        assert!(closed.is_empty(), "{closed:?}");
        assert_eq!(status, Some(crate::core::DeliveryState::WindowOpen));
    }

    #[test]
    fn a_wall_time_read_a_moment_early_does_not_close_a_window_granted_just_before_it() {
        // The grant's thread was preempted between its two clock reads: its
        // wall half is 5 ms ahead of its monotonic half. A frame 1 ms later
        // has its two halves read together.
        let (closed, status) = tick_after_a_grant(
            "2026-11-28T20:00:10.005Z",
            Duration::from_millis(10_001),
            "2026-11-28T20:00:10.001Z",
        );
        assert!(closed.is_empty(), "{closed:?}");
        assert_eq!(status, Some(crate::core::DeliveryState::WindowOpen));
    }

    #[test]
    fn a_state_file_from_before_codes_were_persisted_still_loads() {
        // Written by a doorwarden that persisted sessions only.
        let old = r#"{"sessions":[{"door":"front","unlocked_at":"2026-11-28T09:30:00Z","carrier":"DHL","restore_auto_relock":null}]}"#;
        let state: PersistedState = match serde_json::from_str(old) {
            Ok(s) => s,
            Err(e) => panic!("old state file rejected: {e}"),
        };
        assert_eq!(state.sessions.len(), 1);
        assert!(state.codes.is_empty());
        let at = stamp(Instant::now(), "2026-11-28T10:00:00Z");
        let mut core = match Core::new(&config(HOME), state, [0; 32], at) {
            Ok(c) => c,
            Err(e) => panic!("{e}"),
        };
        // The delivery it recorded is relocked, as before.
        let actions = core.start(at);
        assert!(actions.iter().any(|a| matches!(
            a,
            Action::Lock { door, command: crate::core::LockCommand::Lock } if door == "front"
        )));
    }

    #[test]
    fn a_state_file_from_before_door_limits_were_persisted_still_loads() {
        // Written by a doorwarden that persisted sessions and codes only.
        let old = r#"{"sessions":[],"codes":[{"door":"front","salt":"","hash":"","window":null,"set_at":"2026-11-28T09:30:00Z","entries_used":0,"keypad_slot":null}]}"#;
        let state: PersistedState = match serde_json::from_str(old) {
            Ok(s) => s,
            Err(e) => panic!("old state file rejected: {e}"),
        };
        assert_eq!(state.codes.len(), 1);
        assert!(state.doors.is_empty());
        // A door record with only some fields (hand-edited) loads too.
        let partial =
            r#"{"sessions":[],"doors":[{"door":"front","cancelled_at":"2026-11-28T09:45:00Z"}]}"#;
        let state: PersistedState = match serde_json::from_str(partial) {
            Ok(s) => s,
            Err(e) => panic!("partial door record rejected: {e}"),
        };
        let at = stamp(Instant::now(), "2026-11-28T10:00:00Z");
        let mut core = match Core::new(&config(HOME), state, [0; 32], at) {
            Ok(c) => c,
            Err(e) => panic!("{e}"),
        };
        let _ = core.start(at);
        // The window ended at 09:45 stays ended.
        let status = core.door_status("front");
        assert_eq!(status.and_then(|s| s.window_ends), None);
        assert_eq!(
            core.sessions().doors.first().and_then(|d| d.cancelled_at),
            "2026-11-28T09:45:00Z".parse().ok()
        );
    }

    #[test]
    fn a_restart_that_lets_a_record_go_still_writes_every_door() {
        let two_doors = HOME.replace(
            "deliveries:",
            "  back:\n    zigbee2mqtt: { topic: zigbee2mqtt/back }\n    cameras: [porch]\ndeliveries:\n  back:\n    windows: [{ days: [sat], from: \"09:00\", to: \"17:00\" }]",
        );
        // `back` had a grant that has ended since; `front` one entry made
        // in the window still open (2026-11-28, 09:00-17:00 Berlin).
        let stored = r#"{"sessions":[],"doors":[
            {"door":"back","grant":{"starts":"2026-11-28T08:00:00Z","ends":"2026-11-28T08:30:00Z"}},
            {"door":"front","entries_window":"2026-11-28T08:00:00Z","entries_used":1}]}"#;
        let state: PersistedState = match serde_json::from_str(stored) {
            Ok(s) => s,
            Err(e) => panic!("{e}"),
        };
        let at = stamp(Instant::now(), "2026-11-28T10:00:00Z");
        let mut core = match Core::new(&config(&two_doors), state, [0; 32], at) {
            Ok(c) => c,
            Err(e) => panic!("{e}"),
        };
        let actions = core.start(at);
        let Some(Action::Persist(written)) = actions
            .iter()
            .rev()
            .find(|a| matches!(a, Action::Persist(_)))
        else {
            panic!("the ended grant is written out of the store: {actions:?}")
        };
        // The grant is gone; front's entry is not.
        assert!(written.doors.iter().all(|d| d.grant.is_none()));
        let front = written.doors.iter().find(|d| d.door == "front");
        assert_eq!(front.map(|d| d.entries_used), Some(1));
        assert_eq!(core.door_status("front").map(|s| s.entries_left), Some(0));
    }

    #[test]
    fn every_persist_carries_the_codes_of_the_other_doors() {
        let two_doors = HOME.replace(
            "deliveries:",
            "  back:\n    zigbee2mqtt: { topic: zigbee2mqtt/back }\n    cameras: [porch]\ndeliveries:\n  back:\n    windows: [{ days: [sat], from: \"09:00\", to: \"17:00\" }]",
        );
        let at = stamp(Instant::now(), "2026-11-28T10:00:00Z");
        let mut core = match Core::new(&config(&two_doors), PersistedState::default(), [0; 32], at)
        {
            Ok(c) => c,
            Err(e) => panic!("{e}"),
        };
        let _ = core.start(at);
        let set = |door: &str, code: &str| Event {
            at,
            kind: EventKind::Command {
                door: door.into(),
                command: Command::SetCode(crate::config::Secret::new(code)),
            },
        };
        let _ = core.handle(set("back", "1111"));
        let actions = core.handle(set("front", "2222"));
        let Some(Action::Persist(state)) = actions.iter().find(|a| matches!(a, Action::Persist(_)))
        else {
            panic!("setting a code is persisted: {actions:?}")
        };
        let doors: Vec<&str> = state.codes.iter().map(|c| c.door.as_str()).collect();
        assert_eq!(doors, ["back", "front"]);
        assert_eq!(core.sessions(), *state);
    }

    #[test]
    fn storage_failure_refuses_until_a_later_write_goes_through() {
        let t0 = Instant::now();
        let mut core = match Core::new(
            &config(HOME),
            PersistedState::default(),
            [0; 32],
            stamp(t0, "2026-11-28T10:00:00Z"),
        ) {
            Ok(c) => c,
            Err(e) => panic!("{e}"),
        };
        let _ = core.start(stamp(t0, "2026-11-28T10:00:00Z"));
        let failed = EventKind::StorageFailed {
            reason: "disk full".into(),
        };
        let _ = core.handle(Event {
            at: stamp(t0, "2026-11-28T10:00:00Z"),
            kind: failed,
        });
        let shown = core.door_status("front").and_then(|s| s.interlock_blocking);
        assert_eq!(shown.as_deref(), Some("storage unavailable: disk full"));
        assert_eq!(
            core.next_deadline(),
            Some((t0 + STORAGE_RETRY, Wake::StorageRetry))
        );
        let probe = core.handle(Event {
            at: stamp(t0 + STORAGE_RETRY, "2026-11-28T10:00:30Z"),
            kind: EventKind::Tick,
        });
        assert!(probe.iter().any(|a| matches!(a, Action::Persist(_))));
        // The event after the probe is not a failure: the write worked.
        let _ = core.handle(Event {
            at: stamp(t0 + STORAGE_RETRY, "2026-11-28T10:00:30Z"),
            kind: EventKind::Tick,
        });
        let shown = core.door_status("front").and_then(|s| s.interlock_blocking);
        assert!(
            shown.is_some_and(|r| !r.starts_with("storage")),
            "still blocked by storage"
        );
    }
}
