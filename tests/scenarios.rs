//! Scenario tests: the core driven through scripted timelines.
//!
//! Each `tests/scenarios/<name>.yaml` holds a config snippet and a list of
//! steps. A [`Harness`] owns the [`Core`], a fake clock that jumps from one
//! thing to do to the next (the core's `next_deadline()`, the next frame of
//! a fake camera, the next report of the fake lock), and every action the
//! core emitted, recorded with the instant it came out.
//!
//! The fakes are honest about being fakes: [`FakeCamera`] makes frame
//! summaries (distinct hashes when live, one repeated hash when frozen,
//! nothing when stalled) and [`FakeLock`] answers lock commands after a
//! delay, or never. Nothing here touches a network or a real clock.
//!
//! # Scenario format
//!
//! ```yaml
//! start: 2026-11-28T10:00:00+01:00    # the wall clock at the start
//! config: { cameras: ..., locks: ..., deliveries: ... }   # mqtt may be left out
//! fake_lock: { front: { responds: true, delay: 300ms, auto_relock: 30 } }
//! fps: 15                             # fake camera frame rate
//! picture_check: as_configured        # keep the loaded default; otherwise a camera
//!                                     # that does not say gets `off` (no fake pictures)
//! steps:
//!   - wait: 5s                        # let time pass (frames, timers, lock answers)
//!   - at: 30s                         # ... until 30 s after the start
//!   - until: 2026-11-28T12:00:00+01:00  # ... until this wall-clock time
//!   - camera: { porch: frozen }       # live | frozen | stalled | down
//!   - freeze: porch                   # same as camera: { porch: frozen }
//!   - command: { door: front, courier_unlock: { carrier: DHL, code: "1234", via: mqtt } }
//!   - door: { front: open }           # contact sensor: open | closed | unavailable | available
//!   - lock: { door: front, state: unlocked, source: manual }   # an unsolicited report
//!   - lock: { door: front, state: locked, spoofed: true }   # a report the bolt did not make
//!     # state: locked | unlocked | jammed | offline | online; source: keypad (with slot) | manual | rf | auto
//!   - lock: { door: front, auto_relock: 120 }   # the lock's auto-relock read back
//!   - fake_lock: { front: { responds: false } }
//!   - storage_failed: disk full
//!   - link: down                      # the broker is unreachable: lock commands do not
//!     # reach the fake locks and the core is told (as the shell does); `up`: held
//!     # relocks go out, then the core hears the link is up. `link: down` at the top
//!     # level starts the scenario with the broker unreachable.
//!   - lock: { door: front, code_slot: 3, set: false }   # the lock reports a keypad slot
//!   - expect_at_lock: "front clear_code 3"   # a command that reached the fake lock
//!   - expect_not_at_lock: "front clear_code"
//! fake_lock settings also take `stuck: true` (the bolt will not move: a LOCK is
//! answered UNLOCKED), `echo: true` (the old position is reported at once, before
//! the real answer) and `codes: false` (keypad slot commands go unanswered).
//!   - wall_jump: -1h                  # the wall clock is stepped
//!   - restart: {}                     # a new core from the last Persist
//!   - restart: { down: 5m }           # ... after doorwarden was stopped for 5 min
//!   - mark: {}                        # remember now, for `within`
//!   - expect: "lock front unlock"     # an action since the last input step
//!   - expect: { action: "lock front lock", within: 1s }
//!   - expect_no: "lock front unlock"
//!   - expect_event: interlock_tripped # or { kind: ..., reason: ... }
//!   - expect_denied: "camera porch frozen since 10:00:07 (4 identical frames)"
//!   - expect_state: { door: front, delivery: watching, lock: UNLOCKED, interlock: clear }
//!     # also: entries_left, backstop_armed, compromised, window_open, lock_source,
//!     # schedule_warning (a part of the text, or null)
//!   - expect_camera: { porch: live }
//!   - expect_persist: { has: '"keypad_slot":3', lacks: "73914682" }
//!     # the JSON of the step's last Persist (compact, as serde_json writes it)
//! ```
//!
//! Besides `restart`, a scenario may start from a stored state: `restored:`
//! (a list of session records) or `restored_state:` (a whole state file).
//! Every code a scenario hands the core must stay out of every `Persist`:
//! the harness checks that on each one.
//!
//! `expect*` steps look at the actions recorded since the last step that was
//! not an expectation, so a scenario reads as "do this; then these happen".

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;
use std::time::{Duration, Instant};

use doorwarden::config::{Config, Secret};
use doorwarden::core::{
    Action, Command, Core, DoorReport, Event, EventKind, Evidence, FrameSummary, LockCommand,
    LockDisplay, LockState, MoveSource, PersistedState, RequestChannel, Stamp,
};
use serde_yaml::Value;

// ---------------------------------------------------------------------------
// Fakes

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CameraMode {
    Live,
    Frozen,
    Stalled,
    Down,
}

/// A fake camera feeding frame summaries at a fixed rate. Named as a fake:
/// it fabricates what the RTSP task would report.
struct FakeCamera {
    mode: CameraMode,
    /// The core has been told the session is up.
    up: bool,
    next_frame: Option<Instant>,
    seq: u64,
    rtp: i64,
    last_hash: u64,
    last_size: u32,
}

/// A fake lock: answers Lock / Unlock / Refresh with a report after
/// `delay`, or never when it does not respond.
struct FakeLock {
    responds: bool,
    delay: Duration,
    state: LockState,
    /// `Some` when the lock has its own auto-relock (reported on Refresh).
    auto_relock: Option<u32>,
    /// The bolt will not move: lock / unlock are answered with where it is.
    stuck: bool,
    /// The old position is reported at once after a lock / unlock (a
    /// Zigbee2MQTT-style echo of the cached state), before the answer.
    echo: bool,
    /// Keypad slot commands are answered with the slot's state.
    codes: bool,
}

// ---------------------------------------------------------------------------
// Harness

pub struct Harness {
    config: Config,
    core: Core,
    start: Stamp,
    now: Stamp,
    fps: u32,
    cameras: BTreeMap<String, FakeCamera>,
    locks: BTreeMap<String, FakeLock>,
    /// Reports the fake lock will deliver: (when, door, report).
    queued: Vec<(Instant, String, DoorReport)>,
    recorded: Vec<(Instant, Action)>,
    /// Index in `recorded` where the current step's actions begin.
    step_from: usize,
    mark: Instant,
    /// The last state the core asked to persist: what a restart recovers.
    persisted: PersistedState,
    /// Every code given to the core so far, none of which may be persisted.
    codes_given: Vec<String>,
    /// Whether the (fake) broker link is up; lock commands reach the fake
    /// locks only then.
    link_up: bool,
    /// Doors whose relock could not be sent, as the shell holds them.
    relock_later: Vec<String>,
    /// Commands refused while the link is down, for the core to hear of.
    unsent: Vec<(String, LockCommand)>,
    /// Lock commands that reached a fake lock: (when, "door command").
    at_lock: Vec<(Instant, String)>,
    /// Index in `at_lock` where the current step begins.
    at_lock_from: usize,
}

const SEED: [u8; 32] = [7; 32];

impl Harness {
    pub fn new(config: Config, start_wall: jiff::Timestamp, fps: u32) -> Harness {
        let start = Stamp {
            mono: Instant::now(),
            wall: start_wall,
        };
        let core = match Core::new(&config, PersistedState::default(), SEED, start) {
            Ok(core) => core,
            Err(e) => panic!("scenario config rejected by the core: {e}"),
        };
        let cameras = config
            .cameras
            .keys()
            .map(|name| {
                let cam = FakeCamera {
                    mode: CameraMode::Live,
                    up: false,
                    next_frame: Some(start.mono),
                    seq: 0,
                    rtp: 0,
                    last_hash: 0,
                    last_size: 0,
                };
                (name.clone(), cam)
            })
            .collect();
        let locks = config
            .locks
            .keys()
            .map(|name| {
                let lock = FakeLock {
                    responds: true,
                    delay: Duration::from_millis(300),
                    state: LockState::Locked,
                    auto_relock: None,
                    stuck: false,
                    echo: false,
                    codes: true,
                };
                (name.clone(), lock)
            })
            .collect();
        Harness {
            config,
            core,
            start,
            now: start,
            fps,
            cameras,
            locks,
            queued: Vec::new(),
            recorded: Vec::new(),
            step_from: 0,
            mark: start.mono,
            persisted: PersistedState::default(),
            codes_given: Vec::new(),
            link_up: true,
            relock_later: Vec::new(),
            unsent: Vec::new(),
            at_lock: Vec::new(),
            at_lock_from: 0,
        }
    }

    /// Start the core (after the fakes are configured).
    pub fn start(&mut self) {
        let actions = self.core.start(self.now);
        self.take(actions);
    }

    fn take(&mut self, actions: Vec<Action>) {
        for action in actions {
            self.react(&action);
            self.recorded.push((self.now.mono, action));
        }
        // As the shell does: the core hears of every command that did not
        // leave, after the batch.
        for (door, command) in std::mem::take(&mut self.unsent) {
            self.feed(EventKind::LockCommandUnsent {
                door,
                command,
                reason: "broker unreachable".into(),
            });
        }
    }

    /// The broker goes away or comes back (the shell's side of it).
    fn set_link(&mut self, up: bool) {
        self.link_up = up;
        if !up {
            return;
        }
        for door in std::mem::take(&mut self.relock_later) {
            let lock = Action::Lock {
                door: door.clone(),
                command: LockCommand::Lock,
            };
            self.react(&lock);
            self.feed(EventKind::LockCommandSent {
                door,
                command: LockCommand::Lock,
            });
        }
        self.feed(EventKind::LinkUp);
    }

    /// What the fake devices and the store do with an action.
    fn react(&mut self, action: &Action) {
        match action {
            Action::Persist(state) => {
                let json = persisted_json(state);
                for code in &self.codes_given {
                    // A short PIN can turn up inside a hex hash by chance;
                    // as a value of its own it never may.
                    let leaked = json.contains(&format!("\"{code}\""))
                        || (code.len() >= 6 && json.contains(code.as_str()));
                    assert!(!leaked, "a delivery code was persisted: {json}");
                }
                self.persisted = state.clone();
            }
            Action::Lock { door, command } => {
                if !self.link_up {
                    if *command == LockCommand::Lock && !self.relock_later.contains(door) {
                        self.relock_later.push(door.clone());
                    }
                    self.unsent.push((door.clone(), command.clone()));
                    return;
                }
                self.at_lock
                    .push((self.now.mono, format!("{door} {}", render_command(command))));
                let Some(lock) = self.locks.get_mut(door) else {
                    return;
                };
                if !lock.responds {
                    return;
                }
                let at = self.now.mono + lock.delay;
                let moves = matches!(command, LockCommand::Lock | LockCommand::Unlock);
                if moves && lock.echo {
                    let echo = DoorReport::Lock {
                        state: lock.state,
                        source: None,
                    };
                    let soon = self.now.mono + Duration::from_millis(50).min(lock.delay);
                    self.queued.push((soon, door.clone(), echo));
                }
                let codes = matches!(
                    command,
                    LockCommand::SetCode { .. } | LockCommand::ClearCode { .. }
                );
                if codes && !lock.codes {
                    return;
                }
                let report = match command {
                    LockCommand::Lock | LockCommand::Unlock if lock.stuck => DoorReport::Lock {
                        state: lock.state,
                        source: None,
                    },
                    LockCommand::Lock => {
                        lock.state = LockState::Locked;
                        DoorReport::Lock {
                            state: LockState::Locked,
                            source: Some(MoveSource::Rf),
                        }
                    }
                    LockCommand::Unlock => {
                        lock.state = LockState::Unlocked;
                        DoorReport::Lock {
                            state: LockState::Unlocked,
                            source: Some(MoveSource::Rf),
                        }
                    }
                    LockCommand::Refresh => {
                        if let Some(secs) = lock.auto_relock {
                            self.queued
                                .push((at, door.clone(), DoorReport::AutoRelock(secs)));
                        }
                        DoorReport::Lock {
                            state: lock.state,
                            source: None,
                        }
                    }
                    LockCommand::SetAutoRelock(secs) => DoorReport::AutoRelock(*secs),
                    LockCommand::SetCode { slot, .. } => DoorReport::CodeSlot {
                        slot: *slot,
                        set: true,
                    },
                    LockCommand::ClearCode { slot } => DoorReport::CodeSlot {
                        slot: *slot,
                        set: false,
                    },
                };
                self.queued.push((at, door.clone(), report));
            }
            _ => {}
        }
    }

    fn feed(&mut self, kind: EventKind) {
        let actions = self.core.handle(Event { at: self.now, kind });
        self.take(actions);
    }

    fn set_clock(&mut self, mono: Instant) {
        if mono <= self.now.mono {
            return;
        }
        let d = mono - self.now.mono;
        self.now = self.now.after(d);
    }

    /// Move time forward to `until`, doing everything due on the way in
    /// order: frames, lock reports, core deadlines. Gives up (fails the
    /// test, with `label`) after a bounded number of steps so a livelock
    /// cannot hang the suite.
    pub fn drive_until(&mut self, until: Instant, label: &str) {
        let mut steps = 0u32;
        loop {
            steps += 1;
            assert!(
                steps < 2_000_000,
                "{label}: no progress after {steps} steps"
            );
            let deadline = self.core.next_deadline().map(|(t, _)| t);
            let frame = self.cameras.values().filter_map(|c| c.next_frame).min();
            let report = self.queued.iter().map(|(t, _, _)| *t).min();
            let next = [deadline, frame, report].into_iter().flatten().min();
            let Some(next) = next.filter(|t| *t <= until) else {
                self.set_clock(until);
                return;
            };
            self.set_clock(next);
            if report == Some(next) {
                let i = self
                    .queued
                    .iter()
                    .position(|(t, _, _)| *t == next)
                    .unwrap_or(0);
                let (_, door, report) = self.queued.remove(i);
                self.feed(EventKind::Door { door, report });
            } else if frame == Some(next) {
                let name = self
                    .cameras
                    .iter()
                    .find(|(_, c)| c.next_frame == Some(next))
                    .map(|(n, _)| n.clone())
                    .unwrap_or_default();
                self.camera_frame(&name);
            } else {
                self.feed(EventKind::Tick);
            }
        }
    }

    fn camera_frame(&mut self, name: &str) {
        let interval = Duration::from_secs(1) / self.fps.max(1);
        let fps = i64::from(self.fps.max(1));
        let Some(cam) = self.cameras.get_mut(name) else {
            return;
        };
        cam.next_frame = Some(self.now.mono + interval);
        let kind = match cam.mode {
            CameraMode::Down | CameraMode::Stalled => return,
            _ if !cam.up => {
                cam.up = true;
                EventKind::CameraUp {
                    camera: name.to_string(),
                }
            }
            mode => {
                cam.rtp += 90_000 / fps;
                if mode == CameraMode::Live || cam.seq == 0 {
                    cam.seq += 1;
                    let keyframe = cam.seq % u64::from(self.fps.max(1)) == 1;
                    cam.last_hash = cam.seq.wrapping_mul(0x9e37_79b9_7f4a_7c15);
                    cam.last_size = if keyframe {
                        40_000
                    } else {
                        6_000 + (cam.seq * 37 % 900) as u32
                    };
                }
                let frame = FrameSummary {
                    rtp_ts: cam.rtp,
                    clock_rate: 90_000,
                    size: cam.last_size,
                    keyframe: cam.seq % u64::from(self.fps.max(1)) == 1 && mode == CameraMode::Live,
                    hash: cam.last_hash,
                    lost: 0,
                };
                EventKind::CameraFrame {
                    camera: name.to_string(),
                    frame,
                }
            }
        };
        self.feed(kind);
    }

    fn set_camera(&mut self, name: &str, mode: CameraMode) {
        let now = self.now.mono;
        let Some(cam) = self.cameras.get_mut(name) else {
            panic!("no camera `{name}` in the scenario")
        };
        let was = cam.mode;
        cam.mode = mode;
        match mode {
            CameraMode::Down if was != CameraMode::Down => {
                cam.up = false;
                cam.next_frame = None;
                self.feed(EventKind::CameraDown {
                    camera: name.to_string(),
                    reason: "connection refused".into(),
                });
            }
            CameraMode::Live | CameraMode::Frozen if cam.next_frame.is_none() => {
                cam.next_frame = Some(now);
            }
            CameraMode::Stalled => {
                // Keep the schedule so frames resume on the same beat.
            }
            _ => {}
        }
    }

    /// Actions of the current step, rendered as text.
    fn step_actions(&self) -> Vec<(Instant, String)> {
        self.recorded[self.step_from..]
            .iter()
            .map(|(t, a)| (*t, render(a)))
            .collect()
    }

    /// doorwarden is stopped for `down`: time passes with nobody to see
    /// it; the cameras keep streaming and lock reports on their way are lost.
    fn stopped_for(&mut self, down: Duration) {
        self.now = self.now.after(down);
        let now = self.now.mono;
        for cam in self.cameras.values_mut() {
            if cam.next_frame.is_some() {
                cam.next_frame = Some(now);
            }
        }
        self.queued.clear();
    }

    fn restart(&mut self) {
        let restored = self.persisted.clone();
        self.core = match Core::new(&self.config, restored, SEED, self.now) {
            Ok(core) => core,
            Err(e) => panic!("restart: {e}"),
        };
        for cam in self.cameras.values_mut() {
            // A new process has no RTSP sessions yet.
            cam.up = false;
        }
        self.start();
    }
}

/// An action as one line of text, for matching and for failure output.
fn render(action: &Action) -> String {
    match action {
        Action::Persist(state) => {
            let doors: Vec<&str> = state.sessions.iter().map(|s| s.door.as_str()).collect();
            let codes: Vec<&str> = state.codes.iter().map(|c| c.door.as_str()).collect();
            format!(
                "persist {} [{}] codes [{}]",
                state.sessions.len(),
                doors.join(","),
                codes.join(",")
            )
        }
        Action::Lock { door, command } => format!("lock {door} {}", render_command(command)),
        Action::DoorState(s) => format!(
            "door {} lock={} delivery={} door={} interlock={} entries_left={} backstop={} compromised={}",
            s.door,
            s.lock.map(lock_display).unwrap_or("null"),
            s.delivery.as_str(),
            match s.door_open {
                Some(true) => "open",
                Some(false) => "closed",
                None => "null",
            },
            s.interlock_blocking.as_deref().unwrap_or("clear"),
            s.entries_left,
            s.backstop_armed,
            s.compromised,
        ),
        Action::DoorAvailability { door, online } => {
            format!(
                "availability {door} {}",
                if *online { "online" } else { "offline" }
            )
        }
        Action::CameraState(c) => format!(
            "camera {} {} {}",
            c.camera,
            c.state.as_str(),
            c.reason.as_deref().unwrap_or("")
        ),
        Action::DeliveryEvent(e) => format!("event {} {}: {}", e.door, e.kind.as_str(), e.reason),
        Action::DeliveryResponse {
            door,
            granted,
            reason,
            ..
        } => {
            format!(
                "response {door} {}: {reason}",
                if *granted { "granted" } else { "denied" }
            )
        }
        Action::Audit(a) => format!(
            "audit {} {}: {}",
            a.door.as_deref().unwrap_or("-"),
            a.decision,
            a.reason
        ),
        Action::Evidence(e) => match e {
            Evidence::Watch { door, cameras } => {
                format!("evidence watch {door} [{}]", cameras.join(","))
            }
            Evidence::Unwatch { door } => format!("evidence unwatch {door}"),
            Evidence::Start { door, cameras, .. } => {
                format!("evidence start {door} [{}]", cameras.join(","))
            }
            Evidence::Stop {
                door, compromised, ..
            } => format!("evidence stop {door} compromised={compromised}"),
        },
    }
}

fn render_command(command: &LockCommand) -> String {
    match command {
        LockCommand::Lock => "lock".to_string(),
        LockCommand::Unlock => "unlock".to_string(),
        LockCommand::Refresh => "refresh".to_string(),
        LockCommand::SetAutoRelock(s) => format!("set_auto_relock {s}"),
        LockCommand::SetCode { slot, .. } => format!("set_code {slot}"),
        LockCommand::ClearCode { slot } => format!("clear_code {slot}"),
    }
}

/// The state as the store would write it.
fn persisted_json(state: &PersistedState) -> String {
    serde_json::to_string(state).unwrap_or_else(|e| panic!("state does not serialize: {e}"))
}

fn lock_display(d: LockDisplay) -> &'static str {
    match d {
        LockDisplay::Locked => "LOCKED",
        LockDisplay::Unlocked => "UNLOCKED",
        LockDisplay::Locking => "LOCKING",
        LockDisplay::Unlocking => "UNLOCKING",
        LockDisplay::Jammed => "JAMMED",
    }
}

// ---------------------------------------------------------------------------
// Scenario files

fn parse_duration(text: &str) -> Duration {
    humantime::parse_duration(text.trim()).unwrap_or_else(|e| panic!("bad duration `{text}`: {e}"))
}

fn as_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        Value::Null => String::new(),
        other => panic!("expected a plain value, got {other:?}"),
    }
}

fn field<'a>(v: &'a Value, key: &str) -> Option<&'a Value> {
    v.as_mapping().and_then(|m| m.get(key))
}

fn text_field(v: &Value, key: &str) -> Option<String> {
    field(v, key).map(as_text)
}

fn single_pair(v: &Value) -> (String, Value) {
    let Some(map) = v.as_mapping() else {
        panic!("expected `{{name: value}}`, got {v:?}")
    };
    let Some((k, val)) = map.iter().next() else {
        panic!("empty mapping")
    };
    (as_text(k), val.clone())
}

fn camera_mode(text: &str) -> CameraMode {
    match text {
        "live" => CameraMode::Live,
        "frozen" => CameraMode::Frozen,
        "stalled" => CameraMode::Stalled,
        "down" | "offline" => CameraMode::Down,
        other => panic!("unknown camera mode `{other}`"),
    }
}

fn configure_fake_locks(h: &mut Harness, v: &Value) {
    let Some(map) = v.as_mapping() else {
        panic!("fake_lock: expected a mapping")
    };
    for (door, settings) in map {
        let door = as_text(door);
        let Some(lock) = h.locks.get_mut(&door) else {
            panic!("fake_lock: no door `{door}`")
        };
        if let Some(r) = field(settings, "responds") {
            lock.responds = r.as_bool().unwrap_or(true);
        }
        if let Some(d) = text_field(settings, "delay") {
            lock.delay = parse_duration(&d);
        }
        if let Some(a) = field(settings, "auto_relock") {
            lock.auto_relock = a.as_u64().and_then(|n| u32::try_from(n).ok());
        }
        if let Some(s) = text_field(settings, "state") {
            lock.state = lock_state(&s);
        }
        if let Some(v) = field(settings, "stuck") {
            lock.stuck = v.as_bool().unwrap_or(false);
        }
        if let Some(v) = field(settings, "echo") {
            lock.echo = v.as_bool().unwrap_or(false);
        }
        if let Some(v) = field(settings, "codes") {
            lock.codes = v.as_bool().unwrap_or(true);
        }
    }
}

fn lock_state(text: &str) -> LockState {
    match text {
        "locked" => LockState::Locked,
        "unlocked" => LockState::Unlocked,
        _ => LockState::Unknown,
    }
}

fn command(v: &Value) -> (String, Command) {
    let door = text_field(v, "door").unwrap_or_else(|| panic!("command: needs `door`"));
    let map = v
        .as_mapping()
        .unwrap_or_else(|| panic!("command: expected a mapping"));
    let (name, args) = map
        .iter()
        .find(|(k, _)| as_text(k) != "door")
        .map(|(k, a)| (as_text(k), a.clone()))
        .unwrap_or_else(|| panic!("command: which one?"));
    let cmd = match name.as_str() {
        "courier_unlock" => Command::CourierUnlock {
            code: text_field(&args, "code").map(Secret::new),
            carrier: text_field(&args, "carrier"),
            via: match text_field(&args, "via").as_deref() {
                None | Some("mqtt") => RequestChannel::Mqtt,
                Some("button") => RequestChannel::Button,
                Some("keypad") => RequestChannel::Keypad,
                Some(other) => panic!("unknown channel `{other}`"),
            },
        },
        "grant" => Command::Grant {
            duration: text_field(&args, "for").map(|d| parse_duration(&d)),
            code: text_field(&args, "code").map(Secret::new),
        },
        "end_delivery" => Command::EndDelivery,
        "owner_lock" => Command::OwnerLock,
        "owner_unlock" => Command::OwnerUnlock,
        "set_code" => Command::SetCode(Secret::new(as_text(&args))),
        "grant_duration" => Command::SetGrantDuration(parse_duration(&as_text(&args))),
        other => panic!("unknown command `{other}`"),
    };
    (door, cmd)
}

fn lock_report(v: &Value) -> (String, DoorReport) {
    let door = text_field(v, "door").unwrap_or_else(|| panic!("lock: needs `door`"));
    let state = text_field(v, "state").unwrap_or_default();
    let source = text_field(v, "source").map(|s| match s.as_str() {
        "keypad" => MoveSource::Keypad {
            slot: field(v, "slot")
                .and_then(Value::as_u64)
                .and_then(|n| u16::try_from(n).ok()),
        },
        "manual" => MoveSource::Manual,
        "rf" => MoveSource::Rf,
        "auto" => MoveSource::Auto,
        _ => MoveSource::Other,
    });
    if let Some(slot) = field(v, "code_slot").and_then(Value::as_u64) {
        let slot = u16::try_from(slot).unwrap_or_else(|_| panic!("code_slot: {slot} too big"));
        let set = field(v, "set").and_then(Value::as_bool).unwrap_or(false);
        return (door, DoorReport::CodeSlot { slot, set });
    }
    if let Some(secs) = field(v, "auto_relock").and_then(Value::as_u64) {
        let secs = u32::try_from(secs).unwrap_or_else(|_| panic!("auto_relock: {secs} too big"));
        return (door, DoorReport::AutoRelock(secs));
    }
    let report = match state.as_str() {
        "jammed" => DoorReport::Jammed,
        "offline" => DoorReport::LockAvailable(false),
        "online" => DoorReport::LockAvailable(true),
        other => DoorReport::Lock {
            state: lock_state(other),
            source,
        },
    };
    (door, report)
}

/// Everything a failed expectation prints: what the step saw.
fn dump(h: &Harness, from: usize) -> String {
    let mut text = String::new();
    for (t, a) in &h.recorded[from..] {
        let at = t.saturating_duration_since(h.start.mono);
        let _ = writeln!(text, "  {:>9.3}s  {}", at.as_secs_f64(), render(a));
    }
    text
}

/// Sets `picture_check: off` on every camera of `config` that does not say.
fn picture_check_off_unless_given(config: &mut Value) {
    let Some(cameras) = config.get_mut("cameras").and_then(Value::as_mapping_mut) else {
        return;
    };
    for (_, camera) in cameras.iter_mut() {
        if let Some(camera) = camera.as_mapping_mut()
            && !camera.contains_key("picture_check")
        {
            camera.insert(Value::from("picture_check"), Value::from("off"));
        }
    }
}

fn run_scenario(path: &Path) {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let doc: Value =
        serde_yaml::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let name = text_field(&doc, "name").unwrap_or_else(|| path.display().to_string());
    let start: jiff::Timestamp = text_field(&doc, "start")
        .unwrap_or_else(|| panic!("{name}: needs `start`"))
        .parse()
        .unwrap_or_else(|e| panic!("{name}: bad start: {e}"));
    let mut config_value = field(&doc, "config")
        .cloned()
        .unwrap_or_else(|| panic!("{name}: needs `config`"));
    if let Some(map) = config_value.as_mapping_mut()
        && !map.contains_key("mqtt")
    {
        let mqtt: Value = serde_yaml::from_str("url: mqtt://127.0.0.1:1883").unwrap_or(Value::Null);
        map.insert(Value::from("mqtt"), mqtt);
    }
    // The fake cameras make frame summaries and never a picture, so a
    // camera whose `picture_check` the scenario leaves out is set `off`:
    // those scenarios are about the door. A scenario about the default
    // itself says `picture_check: as_configured` and gets what loading the
    // file gives (`required` for a door's camera).
    if text_field(&doc, "picture_check").as_deref() != Some("as_configured") {
        picture_check_off_unless_given(&mut config_value);
    }
    // Loaded as `doorwarden run` loads a file, with every default and rule.
    let config_text =
        serde_yaml::to_string(&config_value).unwrap_or_else(|e| panic!("{name}: config: {e}"));
    let config: Config = doorwarden::config::load_str(&config_text, &name)
        .unwrap_or_else(|e| panic!("{name}: config:\n{e}"));
    let fps = field(&doc, "fps").and_then(Value::as_u64).unwrap_or(15) as u32;
    let mut h = Harness::new(config, start, fps);
    if let Some(v) = field(&doc, "fake_lock") {
        configure_fake_locks(&mut h, v);
    }
    if text_field(&doc, "link").as_deref() == Some("down") {
        h.link_up = false;
    }
    if let Some(v) = field(&doc, "cameras") {
        for (cam, mode) in v.as_mapping().into_iter().flatten() {
            h.set_camera(&as_text(cam), camera_mode(&as_text(mode)));
        }
    }
    if let Some(v) = field(&doc, "restored") {
        let sessions: Vec<doorwarden::core::SessionRecord> =
            serde_yaml::from_value(v.clone()).unwrap_or_else(|e| panic!("{name}: restored: {e}"));
        h.persisted = PersistedState {
            sessions,
            ..Default::default()
        };
        h.restart();
    } else if let Some(v) = field(&doc, "restored_state") {
        h.persisted = serde_yaml::from_value(v.clone())
            .unwrap_or_else(|e| panic!("{name}: restored_state: {e}"));
        h.restart();
    } else {
        h.start();
    }
    let steps = field(&doc, "steps")
        .and_then(Value::as_sequence)
        .cloned()
        .unwrap_or_default();
    for (i, step) in steps.iter().enumerate() {
        let (kind, arg) = single_pair(step);
        let label = format!("{name}, step {} ({kind})", i + 1);
        let is_expect = kind.starts_with("expect") || kind == "mark";
        if !is_expect {
            h.step_from = h.recorded.len();
            h.at_lock_from = h.at_lock.len();
        }
        let from = h.step_from;
        let fail = |h: &Harness, what: String| -> ! {
            panic!("{label}: {what}\nactions of this step:\n{}", dump(h, from));
        };
        match kind.as_str() {
            "wait" => {
                let until = h.now.mono + parse_duration(&as_text(&arg));
                h.drive_until(until, &label);
            }
            "at" => {
                let until = h.start.mono + parse_duration(&as_text(&arg));
                h.drive_until(until, &label);
            }
            "until" => {
                let wall: jiff::Timestamp = as_text(&arg)
                    .parse()
                    .unwrap_or_else(|e| panic!("{label}: {e}"));
                let ahead = Duration::try_from(wall.duration_since(h.now.wall)).unwrap_or_default();
                let until = h.now.mono + ahead;
                h.drive_until(until, &label);
            }
            "camera" => {
                for (cam, mode) in arg.as_mapping().into_iter().flatten() {
                    h.set_camera(&as_text(cam), camera_mode(&as_text(mode)));
                }
            }
            "freeze" => h.set_camera(&as_text(&arg), CameraMode::Frozen),
            "stall" => h.set_camera(&as_text(&arg), CameraMode::Stalled),
            "command" => {
                let (door, command) = command(&arg);
                let code = match &command {
                    Command::SetCode(code)
                    | Command::Grant {
                        code: Some(code), ..
                    }
                    | Command::CourierUnlock {
                        code: Some(code), ..
                    } => Some(code.expose().to_string()),
                    _ => None,
                };
                h.codes_given.extend(code.filter(|c| !c.is_empty()));
                h.feed(EventKind::Command { door, command });
            }
            "door" => {
                let (door, state) = single_pair(&arg);
                let report = match as_text(&state).as_str() {
                    "open" => DoorReport::Contact { open: true },
                    "closed" | "shut" => DoorReport::Contact { open: false },
                    "unavailable" => DoorReport::ContactAvailable(false),
                    "available" => DoorReport::ContactAvailable(true),
                    other => panic!("{label}: door state `{other}`"),
                };
                h.feed(EventKind::Door { door, report });
            }
            "lock" => {
                let (door, report) = lock_report(&arg);
                // A spoofed report comes from someone else on the broker:
                // the real bolt stays where it is.
                let spoofed = field(&arg, "spoofed").and_then(Value::as_bool) == Some(true);
                if let (Some(lock), DoorReport::Lock { state, .. }, false) =
                    (h.locks.get_mut(&door), &report, spoofed)
                {
                    lock.state = *state;
                }
                h.feed(EventKind::Door { door, report });
            }
            "fake_lock" => configure_fake_locks(&mut h, &arg),
            "link" => match as_text(&arg).as_str() {
                "down" => h.set_link(false),
                "up" => h.set_link(true),
                other => panic!("{label}: link is `up` or `down`, not `{other}`"),
            },
            "expect_at_lock" | "expect_not_at_lock" => {
                let want = as_text(&arg);
                let hit = h.at_lock[h.at_lock_from..]
                    .iter()
                    .any(|(_, c)| c.contains(&want));
                if hit != (kind == "expect_at_lock") {
                    let got: Vec<&str> = h.at_lock[h.at_lock_from..]
                        .iter()
                        .map(|(_, c)| c.as_str())
                        .collect();
                    fail(
                        &h,
                        format!("`{want}` at the lock: {hit}; the lock got {got:?}"),
                    );
                }
            }
            "storage_failed" => h.feed(EventKind::StorageFailed {
                reason: as_text(&arg),
            }),
            "wall_jump" => {
                let text = as_text(&arg);
                let (neg, body) = match text.strip_prefix('-') {
                    Some(rest) => (true, rest),
                    None => (false, text.as_str()),
                };
                let d = jiff::SignedDuration::try_from(parse_duration(body)).unwrap_or_default();
                let d = if neg { -d } else { d };
                h.now.wall = h.now.wall.checked_add(d).unwrap_or(h.now.wall);
                h.feed(EventKind::Tick);
            }
            "restart" => {
                if let Some(down) = text_field(&arg, "down") {
                    h.stopped_for(parse_duration(&down));
                }
                h.restart();
            }
            "mark" => h.mark = h.now.mono,
            "expect" | "expect_no" => {
                let (pattern, within) = match &arg {
                    Value::Mapping(_) => (
                        text_field(&arg, "action").unwrap_or_default(),
                        text_field(&arg, "within").map(|d| parse_duration(&d)),
                    ),
                    other => (as_text(other), None),
                };
                let found = h
                    .step_actions()
                    .into_iter()
                    .find(|(_, a)| a.contains(&pattern));
                match (kind.as_str(), found) {
                    ("expect", None) => fail(&h, format!("no action matching `{pattern}`")),
                    ("expect", Some((t, _))) => {
                        if let Some(limit) = within {
                            let took = t.saturating_duration_since(h.mark);
                            if took > limit {
                                fail(
                                    &h,
                                    format!(
                                        "`{pattern}` came {took:?} after the mark, limit {limit:?}"
                                    ),
                                );
                            }
                        }
                    }
                    (_, Some((_, a))) => fail(&h, format!("unexpected action `{a}`")),
                    (_, None) => {}
                }
            }
            "expect_event" => {
                let (event, reason) = match &arg {
                    Value::Mapping(_) => (
                        text_field(&arg, "kind").unwrap_or_default(),
                        text_field(&arg, "reason"),
                    ),
                    other => (as_text(other), None),
                };
                let hit = h.recorded[from..].iter().any(|(_, a)| match a {
                    Action::DeliveryEvent(e) => {
                        e.kind.as_str() == event
                            && reason
                                .as_ref()
                                .is_none_or(|r| e.reason.contains(r.as_str()))
                    }
                    _ => false,
                });
                if !hit {
                    fail(
                        &h,
                        format!("no delivery event `{event}` (reason {reason:?})"),
                    );
                }
            }
            "expect_denied" => {
                let want = as_text(&arg);
                let hit = h.recorded[from..].iter().any(|(_, a)| match a {
                    Action::DeliveryResponse {
                        granted: false,
                        reason,
                        ..
                    } => reason.contains(&want),
                    Action::DeliveryEvent(e) if e.kind.as_str() == "denied" => {
                        e.reason.contains(&want)
                    }
                    _ => false,
                });
                if !hit {
                    fail(&h, format!("no denial with reason containing `{want}`"));
                }
            }
            "expect_state" => {
                let door =
                    text_field(&arg, "door").unwrap_or_else(|| panic!("{label}: needs door"));
                let Some(status) = h.core.door_status(&door) else {
                    fail(&h, format!("no door {door}"))
                };
                let shown = render(&Action::DoorState(status.clone()));
                for (k, v) in arg.as_mapping().into_iter().flatten() {
                    let (k, v) = (as_text(k), as_text(v));
                    let ok = match k.as_str() {
                        "door" => true,
                        "lock" => status.lock.map(lock_display).unwrap_or("null") == v,
                        "delivery" => status.delivery.as_str() == v,
                        "interlock" => match v.as_str() {
                            "clear" => status.interlock_blocking.is_none(),
                            "blocking" => status.interlock_blocking.is_some(),
                            text => status
                                .interlock_blocking
                                .as_deref()
                                .is_some_and(|r| r.contains(text)),
                        },
                        "entries_left" => status.entries_left.to_string() == v,
                        "backstop_armed" => status.backstop_armed.to_string() == v,
                        "compromised" => status.compromised.to_string() == v,
                        "lock_source" => {
                            status.lock_source.map(|s| s.as_str()).unwrap_or("null") == v
                        }
                        "window_open" => status.window_ends.is_some().to_string() == v,
                        "schedule_warning" => status
                            .schedule_warning
                            .as_deref()
                            .unwrap_or("null")
                            .contains(v.as_str()),
                        other => panic!("{label}: unknown state field `{other}`"),
                    };
                    if !ok {
                        fail(
                            &h,
                            format!(
                                "door state `{k}` is not `{v}`: {shown} schedule_warning={:?}",
                                status.schedule_warning
                            ),
                        );
                    }
                }
            }
            "expect_persist" => {
                let last = h.recorded[from..].iter().rev().find_map(|(_, a)| match a {
                    Action::Persist(state) => Some(persisted_json(state)),
                    _ => None,
                });
                let Some(json) = last else {
                    fail(&h, "no persist in this step".into())
                };
                if let Some(has) = text_field(&arg, "has")
                    && !json.contains(&has)
                {
                    fail(&h, format!("persisted state lacks `{has}`: {json}"));
                }
                if let Some(lacks) = text_field(&arg, "lacks")
                    && json.contains(&lacks)
                {
                    fail(&h, format!("persisted state holds `{lacks}`: {json}"));
                }
            }
            "expect_camera" => {
                for (cam, state) in arg.as_mapping().into_iter().flatten() {
                    let (cam, state) = (as_text(cam), as_text(state));
                    let shown = h
                        .core
                        .camera_status(&cam)
                        .map(|c| c.state.as_str())
                        .unwrap_or("none");
                    if shown != state {
                        fail(&h, format!("camera {cam} is {shown}, expected {state}"));
                    }
                }
            }
            other => panic!("{label}: unknown step `{other}`"),
        }
    }
}

macro_rules! scenarios {
    ($($name:ident),* $(,)?) => {
        $(
            #[test]
            fn $name() {
                run_scenario(&Path::new(env!("CARGO_MANIFEST_DIR"))
                    .join("tests/scenarios")
                    .join(concat!(stringify!($name), ".yaml")));
            }
        )*
        const LISTED: &[&str] = &[$(stringify!($name)),*];
    };
}

scenarios!(
    normal_delivery,
    outside_window,
    camera_frozen_before_request,
    stall_mid_delivery_door_open,
    stall_mid_delivery_door_shut,
    door_held_open,
    lock_never_confirms,
    entry_limit,
    window_across_midnight,
    dst_berlin_spring,
    dst_berlin_autumn,
    dst_new_york_spring,
    dst_new_york_autumn,
    dst_new_york_repeated_hour,
    dst_berlin_skipped_window,
    restart_mid_delivery,
    wrong_code_rate_limit,
    owner_unlock,
    door_forced,
    keypad_code,
    storage_failed,
    wall_clock_jump,
    lock_jammed,
    alert_only,
    grant_during_delivery,
    relock_when_lock_returns,
    contact_sensor_lost,
    restart_keeps_entry_count,
    backstop_readback,
    window_closes_door_open,
    end_delivery,
    restart_with_relock_owed,
    keypad_code_window_end,
    restart_keeps_delivery_code,
    restart_drops_expired_code,
    restored_code_unreadable,
    end_delivery_survives_restart,
    restart_keeps_entries_without_code,
    wrong_code_lockout_survives_restart,
    relock_pending_broker_down,
    stuck_bolt,
    spoofed_lock_flood_mid_delivery,
    spoofed_lock_report,
    keypad_slot_cleared_on_connect,
    evidence_actions,
    door_camera_needs_a_checked_picture,
);

#[test]
fn every_scenario_file_is_listed() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/scenarios");
    let entries = std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    for entry in entries.flatten() {
        let path = entry.path();
        if path.extension().is_some_and(|e| e == "yaml") {
            let stem = path
                .file_stem()
                .and_then(|s| s.to_str())
                .unwrap_or_default()
                .to_string();
            assert!(
                LISTED.contains(&stem.as_str()),
                "{stem}.yaml is not listed in scenarios!()"
            );
        }
    }
}
