//! Property tests of the core's safety rules over random event sequences.
//!
//! Each case starts from a small home (door `front`: two cameras, relock on
//! camera loss, a keypad slot; door `back`: one camera, alert only), mostly
//! from a copy that has already warmed up (cameras live, a window open), and
//! throws a random sequence at it: cameras sending new pictures, replaying
//! one, falling silent, going down and up; the door opening and shutting,
//! its sensor going away;
//! lock reports (confirmations, thumb-turns, keypad, jams); commands from the
//! owner and couriers (with right, wrong or no codes); time passing, the wall
//! clock stepping, events stamped in the past, storage failing, and
//! doorwarden restarting from its last `Persist`.
//!
//! An observer keeps its own view (the windows it granted, the camera states
//! the core published, the door as the test moved it, the sessions the core
//! persisted) and checks after every event that:
//!
//! 1. a delivery `Unlock` is only sent while a window is open and every
//!    camera tied to the door is Live;
//! 2. after a camera of `front` leaves Live during a delivery, a `Lock`
//!    follows at once, or in the batch where the door shuts (or its contact
//!    sensor goes away) if it was open;
//! 3. no delivery code (right or wrong) appears in any action, except the
//!    PIN inside `LockCommand::SetCode`;
//! 4. `next_deadline()` is never earlier than the last stamp handed in;
//! 5. a restart hands nothing back: at the instant it comes up, no door has
//!    a window open that the old core would not have had, more entries left
//!    than the old core would have had, or lets wrong codes be tried that
//!    the old core would have refused as too many.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use doorwarden::config::{Config, Secret};
use doorwarden::core::liveness::LivenessKind;
use doorwarden::core::{
    Action, Command, Core, DoorReport, Event, EventKind, FrameSummary, LockCommand, LockState,
    MoveSource, PersistedState, RequestChannel, Stamp,
};
use proptest::prelude::*;
use proptest::test_runner::TestRunner;

const CONFIG: &str = r#"
mqtt: { url: "mqtt://127.0.0.1:1883" }
# The fake cameras send frame summaries, never a decoded picture: with the
# door cameras' default (`required`) none would ever be live. The picture
# rules have their own tests (core::picture, tests/picture_watch.rs).
cameras:
  porch: { url: "rtsp://127.0.0.1/porch", warmup: 200ms, stall_after: 500ms, freeze_after: 200ms, picture_check: off }
  yard: { url: "rtsp://127.0.0.1/yard", warmup: 200ms, stall_after: 500ms, freeze_after: 200ms, picture_check: off }
locks:
  front:
    zigbee2mqtt: { topic: zigbee2mqtt/front }
    contact: { zigbee2mqtt: { topic: zigbee2mqtt/front_contact } }
    cameras: [porch, yard]
    confirm_timeout: 2s
  back:
    zigbee2mqtt: { topic: zigbee2mqtt/back }
    cameras: [yard]
    confirm_timeout: 2s
deliveries:
  front:
    time_zone: UTC
    max_unlocked: 20s
    relock_after_close: 2s
    entries_per_window: 2
    code_slot: 3
  back:
    time_zone: UTC
    max_unlocked: 20s
    on_camera_loss: alert_only
"#;

const RIGHT_CODE: &str = "RIGHTCODE417";
const WRONG_CODE: &str = "WRONGCODE938";
const CAMERAS: [&str; 2] = ["porch", "yard"];
const DOORS: [&str; 2] = ["front", "back"];
const FRAME_GAP: Duration = Duration::from_millis(100);

/// How many cases reached a delivery unlock, and a relock during one: the
/// test says so at the end, and fails if random sequences stop reaching
/// the states that matter.
static UNLOCKS: AtomicU32 = AtomicU32::new(0);
static TRIPS: AtomicU32 = AtomicU32::new(0);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Feed {
    /// A new picture every frame.
    Live,
    /// The same picture again and again (a replayed frame).
    Frozen,
    /// Session up, no frames (knocked off Wi-Fi).
    Silent,
}

#[derive(Debug, Clone)]
enum Op {
    /// Let `ticks` x `FRAME_GAP` pass, each camera sending what its feed
    /// says on every tick.
    Run {
        ticks: u8,
    },
    Feed {
        camera: usize,
        feed: Feed,
    },
    CameraDown {
        camera: usize,
    },
    CameraUp {
        camera: usize,
    },
    /// Let time pass with no frames at all, waking at every deadline.
    Wait {
        ms: u32,
    },
    Contact {
        door: usize,
        open: bool,
    },
    /// The contact sensor becomes unreachable.
    ContactLost {
        door: usize,
    },
    /// The lock carries out the last command it was sent.
    LockObeys {
        door: usize,
    },
    LockReport {
        door: usize,
        state: u8,
        source: u8,
    },
    Jammed {
        door: usize,
    },
    Grant {
        door: usize,
        secs: u16,
        code: bool,
    },
    End {
        door: usize,
    },
    Courier {
        door: usize,
        code: u8,
        via: u8,
    },
    OwnerUnlock {
        door: usize,
    },
    OwnerLock {
        door: usize,
    },
    SetCode {
        door: usize,
    },
    WallJump {
        secs: i32,
    },
    /// An event stamped earlier than the last one.
    Stale {
        ms: u16,
    },
    StorageFailed,
    /// doorwarden stops and starts again from its last `Persist`, after
    /// `ms` down.
    Restart {
        ms: u32,
    },
}

fn op() -> impl Strategy<Value = Op> {
    let feed = prop_oneof![4 => Just(Feed::Live), 1 => Just(Feed::Frozen), 1 => Just(Feed::Silent)];
    prop_oneof![
        8 => (1..12u8).prop_map(|ticks| Op::Run { ticks }),
        3 => (0..2usize, feed).prop_map(|(camera, feed)| Op::Feed { camera, feed }),
        1 => (0..2usize).prop_map(|camera| Op::CameraDown { camera }),
        1 => (0..2usize).prop_map(|camera| Op::CameraUp { camera }),
        2 => (0..25_000u32).prop_map(|ms| Op::Wait { ms }),
        4 => (0..2usize, any::<bool>()).prop_map(|(door, open)| Op::Contact { door, open }),
        1 => (0..2usize).prop_map(|door| Op::ContactLost { door }),
        4 => (0..2usize).prop_map(|door| Op::LockObeys { door }),
        1 => (0..2usize, 0..3u8, 0..4u8)
            .prop_map(|(door, state, source)| Op::LockReport { door, state, source }),
        1 => (0..2usize).prop_map(|door| Op::Jammed { door }),
        2 => (0..2usize, 5..90u16, prop::bool::weighted(0.3))
            .prop_map(|(door, secs, code)| Op::Grant { door, secs, code }),
        1 => (0..2usize).prop_map(|door| Op::End { door }),
        5 => (0..2usize, 0..3u8, 0..3u8).prop_map(|(door, code, via)| Op::Courier { door, code, via }),
        1 => (0..2usize).prop_map(|door| Op::OwnerUnlock { door }),
        1 => (0..2usize).prop_map(|door| Op::OwnerLock { door }),
        1 => (0..2usize).prop_map(|door| Op::SetCode { door }),
        1 => (-600..600i32).prop_map(|secs| Op::WallJump { secs }),
        1 => (0..3000u16).prop_map(|ms| Op::Stale { ms }),
        1 => Just(Op::StorageFailed),
        1 => (0..90_000u32).prop_map(|ms| Op::Restart { ms }),
    ]
}

/// A fake camera: new pictures while live, RTP time following the fake
/// clock, a keyframe every five frames.
#[derive(Debug, Clone)]
struct FakeCamera {
    feed: Feed,
    up: bool,
    seq: u64,
    hash: u64,
    size: u32,
}

/// The observer's own view of the world, built from what the test did and
/// what the core published.
#[derive(Debug, Clone)]
struct Observer {
    /// Granted window per door: [start, end) in wall time.
    windows: BTreeMap<&'static str, (jiff::Timestamp, jiff::Timestamp)>,
    /// Last state the core published per camera.
    cameras: BTreeMap<String, LivenessKind>,
    door_open: BTreeMap<&'static str, bool>,
    /// Sessions in the last `Persist`.
    /// Sessions in the last `Persist`: door and unlock time (a record can
    /// outlive its session while its relock is owed, so a new session is
    /// told apart by its unlock time).
    persisted: Vec<(String, jiff::Timestamp)>,
    /// `front` owes a relock when its door shuts.
    relock_owed_on_shut: bool,
    /// A relock was sent for `front` since its session began.
    relock_sent: bool,
    /// The last unlock of each door came from the owner.
    owner_unlock: BTreeMap<String, bool>,
    /// Last command sent to each lock, for `LockObeys`.
    last_command: BTreeMap<String, LockState>,
    /// Delivery unlocks seen (for the coverage figures).
    delivery_unlocks: u32,
}

impl Observer {
    fn window_open(&self, door: &str, at: jiff::Timestamp) -> bool {
        self.windows
            .get(door)
            .is_some_and(|(s, e)| *s <= at && at < *e)
    }

    fn all_live(&self, door: &str) -> bool {
        let tied: &[&str] = if door == "front" { &CAMERAS } else { &["yard"] };
        tied.iter()
            .all(|c| self.cameras.get(*c) == Some(&LivenessKind::Live))
    }

    fn in_session(&self, door: &str) -> bool {
        self.persisted.iter().any(|(d, _)| d == door)
    }

    /// Check one batch of actions, produced by `event` (at wall time
    /// `at`), against the rules; update the view.
    fn check(
        &mut self,
        event: &EventKind,
        at: jiff::Timestamp,
        actions: &[Action],
    ) -> Result<(), String> {
        let owner_event = |door: &str| matches!(event, EventKind::Command { door: d, command: Command::OwnerUnlock } if d == door);
        // The door shut, or its sensor went away and can no longer say so:
        // either way a relock waiting for the shut is due now.
        let shut_event = matches!(
            event,
            EventKind::Door {
                door,
                report: DoorReport::Contact { open: false } | DoorReport::ContactAvailable(false),
            } if door == "front"
        );
        let retry_batch = |door: &str| {
            actions.iter().any(|a| matches!(a, Action::Audit(r) if r.decision == "lock_retry" && r.door.as_deref() == Some(door)))
        };
        // Relock owed because a camera left Live in this batch, with the
        // door closed: must be satisfied later in this same batch.
        let mut owed_now = false;
        for action in actions {
            let text = format!("{action:?}");
            if text.contains(RIGHT_CODE) || text.contains(WRONG_CODE) {
                return Err(format!("a code leaked into {text}"));
            }
            match action {
                Action::Lock {
                    command: LockCommand::SetCode { code, .. },
                    ..
                } if code.expose() != RIGHT_CODE => {
                    return Err("the keypad was given something other than the code".into());
                }
                Action::Lock {
                    door,
                    command: LockCommand::Unlock,
                } => {
                    let owner = owner_event(door)
                        || (retry_batch(door)
                            && self.owner_unlock.get(door).copied().unwrap_or(false));
                    if owner {
                        self.owner_unlock.insert(door.clone(), true);
                    } else {
                        self.owner_unlock.insert(door.clone(), false);
                        self.delivery_unlocks += 1;
                        if !self.window_open(door, at) {
                            return Err(format!(
                                "delivery unlock of {door} with no window open at {at}"
                            ));
                        }
                        if !self.all_live(door) {
                            return Err(format!(
                                "delivery unlock of {door} while cameras are {:?}",
                                self.cameras
                            ));
                        }
                    }
                    self.last_command.insert(door.clone(), LockState::Unlocked);
                }
                Action::Lock {
                    door,
                    command: LockCommand::Lock,
                } => {
                    self.last_command.insert(door.clone(), LockState::Locked);
                    if door == "front" && self.in_session("front") {
                        self.relock_sent = true;
                        self.relock_owed_on_shut = false;
                        owed_now = false;
                    }
                }
                Action::Persist(state) => {
                    let front = |p: &[(String, jiff::Timestamp)]| {
                        p.iter().find(|(d, _)| d == "front").map(|(_, t)| *t)
                    };
                    let was = front(&self.persisted);
                    self.persisted = state
                        .sessions
                        .iter()
                        .map(|s| (s.door.clone(), s.unlocked_at))
                        .collect();
                    let now = front(&self.persisted);
                    if now.is_some() && now != was {
                        self.relock_sent = false;
                    }
                    if !self.in_session("front") {
                        // The session is over (relocked, or the owner took
                        // the door over): nothing is owed any more.
                        self.relock_owed_on_shut = false;
                        owed_now = false;
                    }
                }
                Action::CameraState(status) => {
                    let was = self.cameras.insert(status.camera.clone(), status.state);
                    let left_live =
                        was == Some(LivenessKind::Live) && status.state != LivenessKind::Live;
                    if left_live && self.in_session("front") && !self.relock_sent {
                        if self.door_open.get("front").copied().unwrap_or(false) {
                            self.relock_owed_on_shut = true;
                        } else {
                            owed_now = true;
                        }
                    }
                }
                _ => {}
            }
        }
        if owed_now {
            return Err(
                "a camera left Live during a delivery with the door shut, and no relock followed"
                    .into(),
            );
        }
        if shut_event && self.relock_owed_on_shut && self.in_session("front") {
            return Err(
                "the door shut (or its sensor went away) after a camera loss, and no relock followed"
                    .into(),
            );
        }
        Ok(())
    }
}

#[derive(Debug, Clone)]
struct Run {
    core: Core,
    /// The state of the last `Persist`: what a restart recovers.
    stored: PersistedState,
    now: Stamp,
    t0: Instant,
    cams: BTreeMap<&'static str, FakeCamera>,
    seen: Observer,
}

impl Run {
    fn new() -> Run {
        let config: Config = match serde_yaml::from_str(CONFIG) {
            Ok(c) => c,
            Err(e) => panic!("test config: {e}"),
        };
        let t0 = Instant::now();
        let wall =
            jiff::Timestamp::from_second(1_790_000_000).unwrap_or(jiff::Timestamp::UNIX_EPOCH);
        let now = Stamp { mono: t0, wall };
        let mut core = match Core::new(&config, PersistedState::default(), [3; 32], now) {
            Ok(c) => c,
            Err(e) => panic!("core: {e}"),
        };
        let mut seen = Observer {
            windows: BTreeMap::new(),
            cameras: BTreeMap::new(),
            door_open: BTreeMap::new(),
            persisted: Vec::new(),
            relock_owed_on_shut: false,
            relock_sent: false,
            owner_unlock: BTreeMap::new(),
            last_command: BTreeMap::new(),
            delivery_unlocks: 0,
        };
        let actions = core.start(now);
        if let Err(e) = seen.check(&EventKind::Tick, now.wall, &actions) {
            panic!("start: {e}");
        }
        let cams = CAMERAS
            .iter()
            .map(|c| {
                (
                    *c,
                    FakeCamera {
                        feed: Feed::Live,
                        up: false,
                        seq: 0,
                        hash: 0,
                        size: 0,
                    },
                )
            })
            .collect();
        let mut run = Run {
            core,
            stored: PersistedState::default(),
            now,
            t0,
            cams,
            seen,
        };
        // Both locks start locked.
        for door in DOORS {
            let report = DoorReport::Lock {
                state: LockState::Locked,
                source: None,
            };
            if let Err(e) = run.send(EventKind::Door {
                door: door.into(),
                report,
            }) {
                panic!("first lock report: {e}");
            }
        }
        run
    }

    fn advance(&mut self, d: Duration) {
        self.now = self.now.after(d);
    }

    fn send(&mut self, kind: EventKind) -> Result<(), String> {
        self.send_at(self.now, kind)
    }

    fn send_at(&mut self, at: Stamp, kind: EventKind) -> Result<(), String> {
        let actions = self.core.handle(Event {
            at,
            kind: kind.clone(),
        });
        if let Some(state) = actions.iter().rev().find_map(|a| match a {
            Action::Persist(state) => Some(state),
            _ => None,
        }) {
            self.stored = state.clone();
        }
        let unlocks_before = self.seen.delivery_unlocks;
        self.seen
            .check(&kind, at.wall, &actions)
            .map_err(|e| format!("{e}\nafter {kind:?}\nactions: {actions:#?}"))?;
        if self.seen.delivery_unlocks > unlocks_before {
            UNLOCKS.fetch_add(1, Ordering::Relaxed);
        }
        let tripped = actions.iter().any(|a| {
            matches!(a, Action::DeliveryEvent(e) if e.kind.as_str() == "interlock_tripped" && e.door == "front")
        });
        if tripped {
            TRIPS.fetch_add(1, Ordering::Relaxed);
        }
        if let Some((t, why)) = self.core.next_deadline()
            && t < self.now.mono
        {
            return Err(format!("next_deadline {why:?} is in the past"));
        }
        Ok(())
    }

    /// Let `d` pass, waking at every deadline on the way.
    fn wait(&mut self, d: Duration) -> Result<(), String> {
        let until = self.now.mono + d;
        for _ in 0..1000 {
            match self.core.next_deadline() {
                Some((t, _)) if t <= until => {
                    if t > self.now.mono {
                        self.advance(t - self.now.mono);
                    }
                    self.send(EventKind::Tick)?;
                }
                _ => break,
            }
        }
        if until > self.now.mono {
            self.advance(until - self.now.mono);
        }
        Ok(())
    }

    /// One frame (or the session coming up first) from a camera, as its
    /// feed says.
    fn frame(&mut self, index: usize, name: &'static str) -> Result<(), String> {
        let rtp = i64::try_from((self.now.mono - self.t0).as_micros() * 9 / 100).unwrap_or(0);
        let Some(cam) = self.cams.get_mut(name) else {
            return Ok(());
        };
        if !cam.up {
            cam.up = true;
            return self.send(EventKind::CameraUp {
                camera: name.into(),
            });
        }
        match cam.feed {
            Feed::Silent => return Ok(()),
            Feed::Frozen if cam.seq > 0 => {}
            _ => {
                cam.seq += 1;
                cam.hash = cam.seq.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ index as u64;
                cam.size = if cam.seq % 5 == 1 {
                    30_000
                } else {
                    5_000 + (cam.seq % 7) as u32 * 100
                };
            }
        }
        let frame = FrameSummary {
            rtp_ts: rtp,
            clock_rate: 90_000,
            size: cam.size,
            keyframe: cam.seq % 5 == 1 && cam.feed == Feed::Live,
            hash: cam.hash,
            lost: 0,
        };
        self.send(EventKind::CameraFrame {
            camera: name.into(),
            frame,
        })
    }

    fn apply(&mut self, op: &Op) -> Result<(), String> {
        let door_of = |i: usize| DOORS[i].to_string();
        match *op {
            Op::Run { ticks } => {
                for _ in 0..ticks {
                    self.wait(FRAME_GAP)?;
                    for (i, name) in CAMERAS.iter().enumerate() {
                        self.frame(i, name)?;
                    }
                }
                Ok(())
            }
            Op::Feed { camera, feed } => {
                if let Some(cam) = self.cams.get_mut(CAMERAS[camera]) {
                    cam.feed = feed;
                }
                Ok(())
            }
            Op::CameraDown { camera } => {
                if let Some(cam) = self.cams.get_mut(CAMERAS[camera]) {
                    cam.up = false;
                }
                let reason = "connection reset".to_string();
                self.send(EventKind::CameraDown {
                    camera: CAMERAS[camera].into(),
                    reason,
                })
            }
            Op::CameraUp { camera } => {
                if let Some(cam) = self.cams.get_mut(CAMERAS[camera]) {
                    cam.up = true;
                }
                self.send(EventKind::CameraUp {
                    camera: CAMERAS[camera].into(),
                })
            }
            Op::Wait { ms } => {
                self.wait(Duration::from_millis(u64::from(ms)))?;
                self.send(EventKind::Tick)
            }
            Op::Contact { door, open } => {
                self.seen.door_open.insert(DOORS[door], open);
                let report = DoorReport::Contact { open };
                self.send(EventKind::Door {
                    door: door_of(door),
                    report,
                })
            }
            Op::ContactLost { door } => {
                // Unknown from now on; the core treats it as not open.
                self.seen.door_open.insert(DOORS[door], false);
                self.send(EventKind::Door {
                    door: door_of(door),
                    report: DoorReport::ContactAvailable(false),
                })
            }
            Op::LockObeys { door } => {
                let state = self
                    .seen
                    .last_command
                    .get(DOORS[door])
                    .copied()
                    .unwrap_or(LockState::Locked);
                let report = DoorReport::Lock {
                    state,
                    source: Some(MoveSource::Rf),
                };
                self.send(EventKind::Door {
                    door: door_of(door),
                    report,
                })
            }
            Op::LockReport {
                door,
                state,
                source,
            } => {
                let state = [LockState::Locked, LockState::Unlocked, LockState::Unknown]
                    [usize::from(state)];
                let source = match source {
                    0 => MoveSource::Manual,
                    1 => MoveSource::Keypad { slot: Some(3) },
                    2 => MoveSource::Keypad { slot: Some(1) },
                    _ => MoveSource::Auto,
                };
                let report = DoorReport::Lock {
                    state,
                    source: Some(source),
                };
                self.send(EventKind::Door {
                    door: door_of(door),
                    report,
                })
            }
            Op::Jammed { door } => self.send(EventKind::Door {
                door: door_of(door),
                report: DoorReport::Jammed,
            }),
            Op::Grant { door, secs, code } => {
                let d = Duration::from_secs(u64::from(secs));
                let start = self.now.wall;
                let end = start.checked_add(d).unwrap_or(start);
                self.seen.windows.insert(DOORS[door], (start, end));
                let code = code.then(|| Secret::new(RIGHT_CODE));
                let command = Command::Grant {
                    duration: Some(d),
                    code,
                };
                self.send(EventKind::Command {
                    door: door_of(door),
                    command,
                })
            }
            Op::End { door } => {
                self.seen.windows.remove(DOORS[door]);
                self.send(EventKind::Command {
                    door: door_of(door),
                    command: Command::EndDelivery,
                })
            }
            Op::Courier { door, code, via } => {
                let code = match code {
                    0 => None,
                    1 => Some(Secret::new(RIGHT_CODE)),
                    _ => Some(Secret::new(WRONG_CODE)),
                };
                let via = [
                    RequestChannel::Mqtt,
                    RequestChannel::Button,
                    RequestChannel::Keypad,
                ][usize::from(via)];
                let command = Command::CourierUnlock {
                    code,
                    carrier: Some("DHL".into()),
                    via,
                };
                self.send(EventKind::Command {
                    door: door_of(door),
                    command,
                })
            }
            Op::OwnerUnlock { door } => self.send(EventKind::Command {
                door: door_of(door),
                command: Command::OwnerUnlock,
            }),
            Op::OwnerLock { door } => self.send(EventKind::Command {
                door: door_of(door),
                command: Command::OwnerLock,
            }),
            Op::SetCode { door } => {
                let command = Command::SetCode(Secret::new(RIGHT_CODE));
                self.send(EventKind::Command {
                    door: door_of(door),
                    command,
                })
            }
            Op::WallJump { secs } => {
                let d = jiff::SignedDuration::from_secs(i64::from(secs));
                self.now.wall = self.now.wall.checked_add(d).unwrap_or(self.now.wall);
                self.send(EventKind::Tick)
            }
            Op::Stale { ms } => {
                let back = Duration::from_millis(u64::from(ms));
                let mono = self.now.mono.checked_sub(back).unwrap_or(self.now.mono);
                self.send_at(
                    Stamp {
                        mono,
                        wall: self.now.wall,
                    },
                    EventKind::Tick,
                )
            }
            Op::StorageFailed => self.send(EventKind::StorageFailed {
                reason: "disk full".into(),
            }),
            Op::Restart { ms } => self.restart(Duration::from_millis(u64::from(ms))),
        }
    }

    /// A new core from the last `Persist`, `down` later; rule 5 is checked
    /// against the old core carried on to the same instant.
    fn restart(&mut self, down: Duration) -> Result<(), String> {
        self.advance(down);
        let mut old = self.core.clone();
        let _ = old.handle(Event {
            at: self.now,
            kind: EventKind::Tick,
        });
        let config: Config = serde_yaml::from_str(CONFIG).map_err(|e| format!("config: {e}"))?;
        self.core = Core::new(&config, self.stored.clone(), [3; 32], self.now)
            .map_err(|e| format!("restart: {e}"))?;
        let actions = self.core.start(self.now);
        if let Some(state) = actions.iter().rev().find_map(|a| match a {
            Action::Persist(state) => Some(state),
            _ => None,
        }) {
            self.stored = state.clone();
        }
        self.seen
            .check(&EventKind::Tick, self.now.wall, &actions)
            .map_err(|e| format!("{e}\nat restart\nactions: {actions:#?}"))?;
        for door in DOORS {
            let (Some(was), Some(is)) = (old.door_status(door), self.core.door_status(door)) else {
                return Err(format!("door {door} missing"));
            };
            if is.window_ends.is_some() && is.window_ends != was.window_ends {
                return Err(format!(
                    "{door}: the restart opened a window until {:?}; before it: {:?}",
                    is.window_ends, was.window_ends
                ));
            }
            if is.window_ends.is_some() && is.entries_left > was.entries_left {
                return Err(format!(
                    "{door}: the restart gave entries back ({} left, {} before)",
                    is.entries_left, was.entries_left
                ));
            }
            let probe = Event {
                at: self.now,
                kind: EventKind::Command {
                    door: door.into(),
                    command: Command::CourierUnlock {
                        code: Some(Secret::new(WRONG_CODE)),
                        carrier: None,
                        via: RequestChannel::Mqtt,
                    },
                },
            };
            let locked_out = |actions: Vec<Action>| {
                actions.iter().any(|a| {
                    matches!(a, Action::DeliveryResponse { reason, .. }
                        if reason.starts_with("too many wrong codes"))
                })
            };
            let was_locked = locked_out(old.clone().handle(probe.clone()));
            if was_locked && !locked_out(self.core.clone().handle(probe)) {
                return Err(format!("{door}: the restart lifted a wrong-code lockout"));
            }
        }
        // A new process has no RTSP sessions yet; the locks answer the
        // core's Refresh with where they are.
        for cam in self.cams.values_mut() {
            cam.up = false;
        }
        for door in DOORS {
            let state = self
                .seen
                .last_command
                .get(door)
                .copied()
                .unwrap_or(LockState::Locked);
            self.send(EventKind::Door {
                door: door.into(),
                report: DoorReport::Lock {
                    state,
                    source: None,
                },
            })?;
        }
        Ok(())
    }
}

/// A home whose cameras have been live for a while and whose front door
/// has a window open: the interesting states are one op away. Built once
/// and cloned for each case.
fn warmed() -> Run {
    let mut run = Run::new();
    for op in [
        Op::Run { ticks: 35 },
        Op::Grant {
            door: 0,
            secs: 60,
            code: false,
        },
    ] {
        if let Err(e) = run.apply(&op) {
            panic!("warm-up: {e}");
        }
    }
    assert!(
        run.seen.all_live("front"),
        "warm-up did not make the cameras live: {:?}",
        run.seen.cameras
    );
    run
}

#[test]
fn the_core_keeps_its_safety_rules() {
    let base = warmed();
    let mut runner = TestRunner::new(ProptestConfig::with_cases(10_000));
    let strategy = (
        prop::bool::weighted(0.8),
        prop::collection::vec(op(), 1..24),
    );
    let result = runner.run(&strategy, |(warm, ops)| {
        let mut run = if warm { base.clone() } else { Run::new() };
        for (i, op) in ops.iter().enumerate() {
            run.apply(op)
                .map_err(|e| TestCaseError::fail(format!("op {i} {op:?}: {e}")))?;
        }
        Ok(())
    });
    if let Err(e) = result {
        panic!("{e}");
    }
    // The sequences must reach the states the rules are about.
    let (unlocks, trips) = (
        UNLOCKS.load(Ordering::Relaxed),
        TRIPS.load(Ordering::Relaxed),
    );
    eprintln!("{unlocks} delivery unlocks, {trips} trips during a delivery");
    assert!(
        unlocks > 1000,
        "only {unlocks} delivery unlocks in 10 000 cases"
    );
    assert!(
        trips > 200,
        "only {trips} trips during a delivery in 10 000 cases"
    );
}

/// The observer itself must be able to fail: a delivery unlock with a
/// frozen camera is caught.
#[test]
fn the_observer_catches_an_unlock_without_live_cameras() {
    let mut seen = Observer {
        windows: BTreeMap::new(),
        cameras: BTreeMap::from([("porch".to_string(), LivenessKind::Frozen)]),
        door_open: BTreeMap::new(),
        persisted: Vec::new(),
        relock_owed_on_shut: false,
        relock_sent: false,
        owner_unlock: BTreeMap::new(),
        last_command: BTreeMap::new(),
        delivery_unlocks: 0,
    };
    let at = jiff::Timestamp::UNIX_EPOCH;
    let end = at
        .checked_add(jiff::SignedDuration::from_secs(60))
        .unwrap_or(at);
    seen.windows.insert("front", (at, end));
    let unlock = Action::Lock {
        door: "front".into(),
        command: LockCommand::Unlock,
    };
    let courier = EventKind::Command {
        door: "front".into(),
        command: Command::CourierUnlock {
            code: None,
            carrier: None,
            via: RequestChannel::Mqtt,
        },
    };
    assert!(seen.check(&courier, at, &[unlock]).is_err());
}

/// ... and so are a camera loss mid-delivery with no relock after it, and
/// a code copied into an audit record.
#[test]
fn the_observer_catches_a_missing_relock_and_a_leaked_code() {
    let fresh = || Observer {
        windows: BTreeMap::new(),
        cameras: BTreeMap::from([("porch".to_string(), LivenessKind::Live)]),
        door_open: BTreeMap::new(),
        persisted: vec![("front".to_string(), jiff::Timestamp::UNIX_EPOCH)],
        relock_owed_on_shut: false,
        relock_sent: false,
        owner_unlock: BTreeMap::new(),
        last_command: BTreeMap::new(),
        delivery_unlocks: 0,
    };
    let at = jiff::Timestamp::UNIX_EPOCH;
    let frozen = Action::CameraState(doorwarden::core::CameraStatus {
        camera: "porch".into(),
        state: LivenessKind::Frozen,
        reason: Some("4 identical frames".into()),
        since: at,
        fps: 15.0,
        bitrate_kbps: 1000.0,
        last_frame: None,
    });
    let relock = Action::Lock {
        door: "front".into(),
        command: LockCommand::Lock,
    };
    assert!(
        fresh()
            .check(&EventKind::Tick, at, std::slice::from_ref(&frozen))
            .is_err()
    );
    assert!(
        fresh()
            .check(&EventKind::Tick, at, &[frozen, relock])
            .is_ok()
    );
    let leak = Action::Audit(doorwarden::core::AuditRecord {
        at,
        door: Some("front".into()),
        decision: "denied".into(),
        reason: format!("wrong delivery code {WRONG_CODE}"),
        details: serde_json::json!({}),
    });
    assert!(fresh().check(&EventKind::Tick, at, &[leak]).is_err());
}
