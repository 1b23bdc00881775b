//! The whole core (`doorwarden::core::Core`) fed arbitrary event sequences,
//! checking the one promise the product exists for: a delivery `Unlock` is
//! only ever sent while a delivery window is open and every camera tied to
//! the door is live.
//!
//! The home: door `front` (two cameras, relock on camera loss, a keypad
//! slot) and door `back` (one camera, alert only), with no weekly windows,
//! so the only windows are those granted by the ops. An unknown door and an
//! unknown camera are in the name tables too: events naming them must be
//! ignored.
//!
//! The observer keeps its own view: the windows granted (from the commands
//! it sent, the duration they asked for or the door's grant duration as last
//! set, cleared by `EndDelivery`) and the camera states the core published.
//! An `Unlock` in the batch of an `OwnerUnlock` (or the retry of one) is the
//! owner's and passes through by config; any other is a delivery unlock and
//! is checked. Also checked: no panic, and `next_deadline()` is never
//! earlier than the last instant handed in.

#![no_main]

use std::collections::BTreeMap;
use std::sync::LazyLock;
use std::time::{Duration, Instant};

use arbitrary::Arbitrary;
use doorwarden::config::{Config, Secret};
use doorwarden::core::liveness::LivenessKind;
use doorwarden::core::{
    Action, Command, Core, DoorReport, Event, EventKind, FrameSummary, LockCommand, LockState,
    MoveSource, PersistedState, RequestChannel, Stamp,
};
use libfuzzer_sys::fuzz_target;

const CONFIG: &str = r#"
mqtt: { url: "mqtt://127.0.0.1:1883" }
# The fake cameras send frame summaries only: with a door camera's default
# picture check (`required`) none would ever be live, and no delivery run.
cameras:
  porch: { url: "rtsp://127.0.0.1/porch", warmup: 300ms, stall_after: 500ms, freeze_after: 200ms, picture_check: off }
  yard: { url: "rtsp://127.0.0.1/yard", warmup: 300ms, stall_after: 500ms, freeze_after: 200ms, picture_check: off }
locks:
  front:
    zigbee2mqtt: { topic: zigbee2mqtt/front }
    contact: { zigbee2mqtt: { topic: zigbee2mqtt/front_contact } }
    cameras: [porch, yard]
    confirm_timeout: 2s
  back:
    zwave_js: { node: 4 }
    cameras: [yard]
    confirm_timeout: 2s
deliveries:
  front:
    time_zone: UTC
    max_unlocked: 20s
    relock_after_close: 2s
    entries_per_window: 2
    code_slot: 3
    grant_duration: 10m
  back:
    time_zone: UTC
    max_unlocked: 30s
    on_camera_loss: alert_only
    grant_duration: 30m
"#;

const DOORS: [&str; 3] = ["front", "back", "attic"];
const CAMERAS: [&str; 3] = ["porch", "yard", "garden"];
const CODE: &str = "482913";
const FRAME_GAP: Duration = Duration::from_millis(100);

fn door_name(i: u8) -> &'static str {
    DOORS[usize::from(i) % DOORS.len()]
}

fn camera_name(i: u8) -> &'static str {
    CAMERAS[usize::from(i) % CAMERAS.len()]
}

/// What a fake camera sends on each tick of a `Run`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Arbitrary)]
enum Feed {
    Live,
    /// The same frame again and again.
    Replay,
    /// Nothing at all, session up.
    Silent,
}

#[derive(Debug, Arbitrary)]
enum Op {
    /// `ticks` x 100 ms, every camera sending what its feed says.
    Run {
        ticks: u8,
    },
    Feed {
        camera: u8,
        feed: Feed,
    },
    CameraUp {
        camera: u8,
    },
    CameraDown {
        camera: u8,
        reason: String,
    },
    /// One frame with arbitrary fields.
    Frame {
        camera: u8,
        rtp_ts: i64,
        clock_rate: u32,
        size: u32,
        keyframe: bool,
        hash: u8,
    },
    /// Time passes with no frames; deadlines are served on the way.
    Wait {
        ms: u16,
    },
    Contact {
        door: u8,
        open: bool,
    },
    /// The lock does what it was last told.
    LockObeys {
        door: u8,
    },
    LockReport {
        door: u8,
        state: u8,
        source: u8,
        slot: Option<u16>,
    },
    Report {
        door: u8,
        report: Report,
    },
    Grant {
        door: u8,
        minutes: Option<u16>,
        code: bool,
    },
    End {
        door: u8,
    },
    Courier {
        door: u8,
        code: Code,
        carrier: Option<String>,
        via: u8,
    },
    OwnerUnlock {
        door: u8,
    },
    OwnerLock {
        door: u8,
    },
    SetGrantDuration {
        door: u8,
        secs: u32,
    },
    SetCode {
        door: u8,
    },
    /// The wall clock steps (NTP, a DST-confused host).
    WallJump {
        secs: i16,
    },
    /// A tick stamped earlier than the last event.
    Stale {
        ms: u16,
    },
    StorageFailed,
}

#[derive(Debug, Arbitrary)]
enum Report {
    Jammed,
    LockAvailable(bool),
    Battery(u8),
    ContactAvailable(bool),
    CodeSlot { slot: u16, set: bool },
    AutoRelock(u32),
}

#[derive(Debug, Arbitrary)]
enum Code {
    None,
    Right,
    Wrong,
}

#[derive(Debug, Clone)]
struct FakeCamera {
    feed: Feed,
    up: bool,
    seq: u64,
    last: Option<FrameSummary>,
}

/// The observer's own view of the home.
#[derive(Debug, Clone, Default)]
struct Observer {
    /// Windows granted per door, as [start, end) in wall time.
    windows: BTreeMap<&'static str, Vec<(jiff::Timestamp, jiff::Timestamp)>>,
    grant_duration: BTreeMap<&'static str, Duration>,
    /// Last state the core published per camera.
    cameras: BTreeMap<String, LivenessKind>,
    /// Whether the last unlock sent to each door was the owner's.
    owner_unlock: BTreeMap<String, bool>,
    /// What each lock was last told, for `LockObeys`.
    told: BTreeMap<String, LockState>,
}

impl Observer {
    fn window_open(&self, door: &str, at: jiff::Timestamp) -> bool {
        self.windows
            .get(door)
            .is_some_and(|ws| ws.iter().any(|(s, e)| *s <= at && at < *e))
    }

    fn cameras_live(&self, door: &str) -> bool {
        let tied: &[&str] = match door {
            "front" => &["porch", "yard"],
            "back" => &["yard"],
            _ => return false,
        };
        tied.iter()
            .all(|c| self.cameras.get(*c) == Some(&LivenessKind::Live))
    }

    /// Updates the windows from a command about to be sent.
    fn before(&mut self, event: &EventKind, at: jiff::Timestamp) {
        let EventKind::Command { door, command } = event else {
            return;
        };
        let Some(door) = DOORS.iter().copied().find(|d| d == door) else {
            return;
        };
        match command {
            Command::Grant { duration, .. } => {
                let d = duration
                    .unwrap_or_else(|| self.grant_duration.get(door).copied().unwrap_or_default());
                let end = jiff::SignedDuration::try_from(d)
                    .ok()
                    .and_then(|d| at.checked_add(d).ok())
                    .unwrap_or(jiff::Timestamp::MAX);
                self.windows.entry(door).or_default().push((at, end));
            }
            Command::EndDelivery => {
                self.windows.remove(door);
            }
            Command::SetGrantDuration(d) => {
                self.grant_duration.insert(door, *d);
            }
            _ => {}
        }
    }

    fn check(&mut self, event: &EventKind, at: jiff::Timestamp, actions: &[Action]) {
        let owner_event = |door: &str| matches!(event, EventKind::Command { door: d, command: Command::OwnerUnlock } if d == door);
        let retry = |door: &str| {
            actions.iter().any(|a| {
                matches!(a, Action::Audit(r) if r.decision == "lock_retry" && r.door.as_deref() == Some(door))
            })
        };
        for action in actions {
            match action {
                Action::CameraState(status) => {
                    self.cameras.insert(status.camera.clone(), status.state);
                }
                Action::Lock {
                    door,
                    command: LockCommand::Unlock,
                } => {
                    let owner = owner_event(door)
                        || (retry(door) && self.owner_unlock.get(door).copied().unwrap_or(false));
                    self.owner_unlock.insert(door.clone(), owner);
                    if !owner {
                        assert!(
                            self.window_open(door, at),
                            "delivery unlock of {door} at {at} with no window open ({:?})\nafter {event:?}\nactions: {actions:#?}",
                            self.windows.get(door.as_str())
                        );
                        assert!(
                            self.cameras_live(door),
                            "delivery unlock of {door} while cameras are {:?}\nafter {event:?}\nactions: {actions:#?}",
                            self.cameras
                        );
                    }
                    self.told.insert(door.clone(), LockState::Unlocked);
                }
                Action::Lock {
                    door,
                    command: LockCommand::Lock,
                } => {
                    self.told.insert(door.clone(), LockState::Locked);
                }
                _ => {}
            }
        }
    }
}

#[derive(Clone)]
struct Home {
    core: Core,
    now: Stamp,
    t0: Instant,
    cams: BTreeMap<&'static str, FakeCamera>,
    seen: Observer,
}

impl Home {
    fn new(config: &Config) -> Option<Home> {
        let t0 = Instant::now();
        let wall = jiff::Timestamp::from_second(1_790_000_000).ok()?;
        let now = Stamp { mono: t0, wall };
        // The config is fixed and valid; `None` here is a broken harness.
        let mut core = Core::new(config, PersistedState::default(), [7; 32], now).ok()?;
        let mut seen = Observer::default();
        for (name, d) in &config.deliveries {
            if let Some(door) = DOORS.iter().copied().find(|x| x == name) {
                seen.grant_duration.insert(door, d.grant_duration);
            }
        }
        let actions = core.start(now);
        seen.check(&EventKind::Tick, now.wall, &actions);
        let cams = CAMERAS
            .iter()
            .map(|c| {
                (
                    *c,
                    FakeCamera {
                        feed: Feed::Live,
                        up: false,
                        seq: 0,
                        last: None,
                    },
                )
            })
            .collect();
        Some(Home {
            core,
            now,
            t0,
            cams,
            seen,
        })
    }

    fn send_at(&mut self, at: Stamp, kind: EventKind) {
        self.seen.before(&kind, at.wall);
        let actions = self.core.handle(Event {
            at,
            kind: kind.clone(),
        });
        self.seen.check(&kind, at.wall, &actions);
        if let Some((t, why)) = self.core.next_deadline() {
            assert!(
                t >= self.core.now().mono,
                "next_deadline ({why:?}) is in the past"
            );
        }
    }

    fn send(&mut self, kind: EventKind) {
        self.send_at(self.now, kind);
    }

    /// Lets `d` pass, ticking at every deadline on the way.
    fn wait(&mut self, d: Duration) {
        let until = self.now.mono + d;
        for _ in 0..256 {
            match self.core.next_deadline() {
                Some((t, _)) if t <= until => {
                    if t > self.now.mono {
                        self.now = self.now.after(t - self.now.mono);
                    }
                    self.send(EventKind::Tick);
                }
                _ => break,
            }
        }
        if until > self.now.mono {
            self.now = self.now.after(until - self.now.mono);
        }
    }

    fn tick_camera(&mut self, name: &'static str) {
        let rtp = i64::try_from((self.now.mono - self.t0).as_micros() * 9 / 100).unwrap_or(0);
        let Some(cam) = self.cams.get_mut(name) else {
            return;
        };
        if !cam.up {
            cam.up = true;
            self.send(EventKind::CameraUp {
                camera: name.into(),
            });
            return;
        }
        let frame = match (cam.feed, cam.last) {
            (Feed::Silent, _) => return,
            (Feed::Replay, Some(last)) => FrameSummary {
                rtp_ts: rtp,
                ..last
            },
            _ => {
                cam.seq += 1;
                let keyframe = cam.seq % 10 == 1;
                FrameSummary {
                    rtp_ts: rtp,
                    clock_rate: 90_000,
                    size: if keyframe {
                        30_000
                    } else {
                        4_000 + (cam.seq % 13) as u32 * 50
                    },
                    keyframe,
                    hash: cam.seq.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1 << 8,
                    lost: 0,
                }
            }
        };
        cam.last = Some(frame);
        self.send(EventKind::CameraFrame {
            camera: name.into(),
            frame,
        });
    }

    fn command(&mut self, door: u8, command: Command) {
        self.send(EventKind::Command {
            door: door_name(door).into(),
            command,
        });
    }

    fn report(&mut self, door: u8, report: DoorReport) {
        self.send(EventKind::Door {
            door: door_name(door).into(),
            report,
        });
    }

    fn apply(&mut self, op: Op) {
        match op {
            Op::Run { ticks } => {
                for _ in 0..ticks.min(100) {
                    self.wait(FRAME_GAP);
                    for name in CAMERAS {
                        self.tick_camera(name);
                    }
                }
            }
            Op::Feed { camera, feed } => {
                if let Some(cam) = self.cams.get_mut(camera_name(camera)) {
                    cam.feed = feed;
                }
            }
            Op::CameraUp { camera } => {
                let name = camera_name(camera);
                if let Some(cam) = self.cams.get_mut(name) {
                    cam.up = true;
                }
                self.send(EventKind::CameraUp {
                    camera: name.into(),
                });
            }
            Op::CameraDown { camera, reason } => {
                let name = camera_name(camera);
                if let Some(cam) = self.cams.get_mut(name) {
                    cam.up = false;
                }
                self.send(EventKind::CameraDown {
                    camera: name.into(),
                    reason,
                });
            }
            Op::Frame {
                camera,
                rtp_ts,
                clock_rate,
                size,
                keyframe,
                hash,
            } => {
                let frame = FrameSummary {
                    rtp_ts,
                    clock_rate,
                    size,
                    keyframe,
                    hash: u64::from(hash),
                    lost: 0,
                };
                self.send(EventKind::CameraFrame {
                    camera: camera_name(camera).into(),
                    frame,
                });
            }
            Op::Wait { ms } => self.wait(Duration::from_millis(u64::from(ms) * 4)),
            Op::Contact { door, open } => self.report(door, DoorReport::Contact { open }),
            Op::LockObeys { door } => {
                let state = self.seen.told.get(door_name(door)).copied();
                if let Some(state) = state {
                    self.report(
                        door,
                        DoorReport::Lock {
                            state,
                            source: Some(MoveSource::Rf),
                        },
                    );
                }
            }
            Op::LockReport {
                door,
                state,
                source,
                slot,
            } => {
                let state = match state % 3 {
                    0 => LockState::Locked,
                    1 => LockState::Unlocked,
                    _ => LockState::Unknown,
                };
                let source = match source % 6 {
                    0 => None,
                    1 => Some(MoveSource::Keypad { slot }),
                    2 => Some(MoveSource::Manual),
                    3 => Some(MoveSource::Rf),
                    4 => Some(MoveSource::Auto),
                    _ => Some(MoveSource::Other),
                };
                self.report(door, DoorReport::Lock { state, source });
            }
            Op::Report { door, report } => {
                let report = match report {
                    Report::Jammed => DoorReport::Jammed,
                    Report::LockAvailable(up) => DoorReport::LockAvailable(up),
                    Report::Battery(b) => DoorReport::Battery(b),
                    Report::ContactAvailable(up) => DoorReport::ContactAvailable(up),
                    Report::CodeSlot { slot, set } => DoorReport::CodeSlot { slot, set },
                    Report::AutoRelock(s) => DoorReport::AutoRelock(s),
                };
                self.report(door, report);
            }
            Op::Grant {
                door,
                minutes,
                code,
            } => self.command(
                door,
                Command::Grant {
                    duration: minutes.map(|m| Duration::from_secs(u64::from(m) * 60)),
                    code: code.then(|| Secret::new(CODE)),
                },
            ),
            Op::End { door } => self.command(door, Command::EndDelivery),
            Op::Courier {
                door,
                code,
                carrier,
                via,
            } => {
                let code = match code {
                    Code::None => None,
                    Code::Right => Some(Secret::new(CODE)),
                    Code::Wrong => Some(Secret::new("000000")),
                };
                let via = match via % 3 {
                    0 => RequestChannel::Mqtt,
                    1 => RequestChannel::Button,
                    _ => RequestChannel::Keypad,
                };
                self.command(door, Command::CourierUnlock { code, carrier, via });
            }
            Op::OwnerUnlock { door } => self.command(door, Command::OwnerUnlock),
            Op::OwnerLock { door } => self.command(door, Command::OwnerLock),
            Op::SetGrantDuration { door, secs } => self.command(
                door,
                Command::SetGrantDuration(Duration::from_secs(u64::from(secs))),
            ),
            Op::SetCode { door } => self.command(door, Command::SetCode(Secret::new(CODE))),
            Op::WallJump { secs } => {
                let step = jiff::SignedDuration::from_secs(i64::from(secs));
                if let Ok(wall) = self.now.wall.checked_add(step) {
                    self.now.wall = wall;
                }
                self.send(EventKind::Tick);
            }
            Op::Stale { ms } => {
                let back = Duration::from_millis(u64::from(ms));
                let at = Stamp {
                    mono: self
                        .now
                        .mono
                        .checked_sub(back)
                        .unwrap_or(self.now.mono)
                        .max(self.t0),
                    wall: self.now.wall,
                };
                self.send_at(at, EventKind::Tick);
            }
            Op::StorageFailed => self.send(EventKind::StorageFailed {
                reason: "disk full".into(),
            }),
        }
    }
}

/// The home after start, both locks reporting locked and 4 s of live
/// pictures from every camera, so every camera is Live and a delivery is
/// two ops away (a grant, a courier); each input runs on its own copy and
/// can still take cameras down, freeze them or let them fall silent.
static START: LazyLock<Home> = LazyLock::new(|| {
    // The YAML above is fixed and valid; failing here is a broken harness,
    // not a finding.
    let config = match doorwarden::config::load_str(CONFIG, "fuzz.yaml") {
        Ok(c) => c,
        Err(e) => panic!("fuzz harness config: {e}"),
    };
    let Some(mut home) = Home::new(&config) else {
        panic!("fuzz harness: the core refused the config");
    };
    for d in 0..2 {
        home.report(
            d,
            DoorReport::Lock {
                state: LockState::Locked,
                source: None,
            },
        );
    }
    home.apply(Op::Run { ticks: 40 });
    home
});

fuzz_target!(|ops: Vec<Op>| {
    let mut home = START.clone();
    for op in ops.into_iter().take(256) {
        home.apply(op);
    }
});
