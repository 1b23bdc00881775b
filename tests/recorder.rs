//! What Home Assistant's recorder receives from one camera: the messages a
//! subscriber of `doorwarden/camera/<camera>/state` sees over a simulated
//! hour of a healthy 15 fps camera (variable frame sizes, a keyframe every
//! two seconds), and that what an owner cares about still goes out at once.
//!
//! The core runs on a fake clock, its actions go through the same
//! [`Mirror`] the runtime publishes with, and every message counted is one
//! the broker would carry.

use std::time::{Duration, Instant};

use doorwarden::config::Config;
use doorwarden::core::{Core, Event, EventKind, FrameSummary, PersistedState, Stamp};
use doorwarden::ha::{Message, Mirror};
use serde_json::Value;

const CONFIG: &str = r#"
mqtt: { url: "mqtt://127.0.0.1:1883" }
cameras:
  # Frame summaries only, no decoded picture: the state topic's traffic is
  # what is counted here, not the picture check.
  porch: { url: "rtsp://127.0.0.1/porch", picture_check: off }
locks:
  front:
    zigbee2mqtt: { topic: zigbee2mqtt/front }
    cameras: [porch]
"#;

const STATE_TOPIC: &str = "doorwarden/camera/porch/state";

struct Camera {
    core: Core,
    mirror: Mirror,
    now: Stamp,
    t0: Instant,
    seq: u64,
    /// A small deterministic generator for frame sizes and arrival jitter.
    rng: u64,
    /// Every message on the camera's state topic, in order.
    seen: Vec<Message>,
}

impl Camera {
    fn new() -> Camera {
        let config: Config = match doorwarden::config::load_str(CONFIG, "recorder.yaml") {
            Ok(c) => c,
            Err(e) => panic!("test config: {e}"),
        };
        let t0 = Instant::now();
        let wall =
            jiff::Timestamp::from_second(1_790_000_000).unwrap_or(jiff::Timestamp::UNIX_EPOCH);
        let now = Stamp { mono: t0, wall };
        let core = match Core::new(&config, PersistedState::default(), [7; 32], now) {
            Ok(c) => c,
            Err(e) => panic!("core: {e}"),
        };
        let mut cam = Camera {
            core,
            mirror: Mirror::new(&config),
            now,
            t0,
            seq: 0,
            rng: 0x2545_f491_4f6c_dd1d,
            seen: Vec::new(),
        };
        let started = cam.core.start(now);
        cam.observe(started);
        cam
    }

    fn next_random(&mut self) -> u64 {
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        self.rng
    }

    fn observe(&mut self, actions: Vec<doorwarden::core::Action>) {
        for action in &actions {
            for m in self.mirror.from_action(action) {
                if m.topic == STATE_TOPIC {
                    self.seen.push(m);
                }
            }
        }
    }

    fn send(&mut self, kind: EventKind) {
        let actions = self.core.handle(Event { at: self.now, kind });
        self.observe(actions);
    }

    fn up(&mut self) {
        self.send(EventKind::CameraUp {
            camera: "porch".into(),
        });
    }

    /// `seconds` of video at `fps`, each frame arriving up to 15 ms late
    /// (network jitter), P-frames of 4–8 KB (`scale` times that) and a
    /// 60 KB keyframe every `2 * fps` frames.
    fn play(&mut self, seconds: u64, fps: u64, scale: u32) {
        let interval = Duration::from_micros(1_000_000 / fps);
        for _ in 0..seconds * fps {
            self.seq += 1;
            let keyframe = self.seq % (2 * fps) == 1;
            let r = self.next_random();
            let size = if keyframe {
                60_000
            } else {
                4_000 + u32::try_from(r % 4_000).unwrap_or(0)
            } * scale;
            let jitter = Duration::from_millis(self.next_random() % 15);
            let on_time = self.now.mono - self.t0;
            let rtp = i64::try_from(on_time.as_micros() * 9 / 100).unwrap_or(0);
            let at = self.now;
            self.now = self.now.after(jitter);
            self.send(EventKind::CameraFrame {
                camera: "porch".into(),
                frame: FrameSummary {
                    rtp_ts: rtp,
                    clock_rate: 90_000,
                    size,
                    keyframe,
                    hash: self.seq.wrapping_mul(0x9e37_79b9_7f4a_7c15),
                    lost: 0,
                },
            });
            self.now = at.after(interval);
        }
    }

    /// Recorder rows Home Assistant would write for `messages`: one per
    /// camera entity whose state or attributes differ from the previous
    /// message's, read from the discovery configs' templates.
    fn recorder_rows(&self, messages: &[Message]) -> usize {
        let fields = camera_entity_fields(&self.mirror);
        let parsed: Vec<Value> = messages
            .iter()
            .map(|m| serde_json::from_str(&m.payload).unwrap_or(Value::Null))
            .collect();
        parsed
            .windows(2)
            .map(|pair| {
                fields
                    .iter()
                    .filter(|entity| entity.iter().any(|f| pair[0][f] != pair[1][f]))
                    .count()
            })
            .sum()
    }

    fn last_state(&self) -> Value {
        let Some(m) = self.seen.last() else {
            panic!("nothing was published on {STATE_TOPIC}");
        };
        serde_json::from_str(&m.payload).unwrap_or_else(|e| panic!("{}: {e}", m.payload))
    }
}

/// For each entity reading the camera's state topic, the JSON fields its
/// state and attribute templates read.
fn camera_entity_fields(mirror: &Mirror) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    for m in mirror.discovery() {
        let Ok(config) = serde_json::from_str::<Value>(&m.payload) else {
            continue;
        };
        if config["state_topic"] != STATE_TOPIC {
            continue;
        }
        let mut fields = Vec::new();
        for key in ["value_template", "json_attributes_template"] {
            let template = config[key].as_str().unwrap_or_default();
            for piece in template.split("value_json.").skip(1) {
                let name: String = piece
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                fields.push(name);
            }
        }
        out.push(fields);
    }
    out
}

/// A camera that is up and live, with its first minute behind it.
fn live_camera() -> Camera {
    let mut cam = Camera::new();
    cam.up();
    cam.play(60, 15, 1);
    assert_eq!(cam.last_state()["state"], "live", "{:?}", cam.seen.last());
    cam
}

#[test]
fn a_healthy_camera_sends_a_handful_of_states_an_hour() {
    let mut cam = live_camera();
    let before = cam.seen.len();
    cam.play(3600, 15, 1);
    let per_hour = cam.seen.len() - before;
    let rows = cam.recorder_rows(&cam.seen[before.saturating_sub(1)..]);
    eprintln!(
        "one steady hour of one camera: {per_hour} state messages, {rows} recorder rows \
         ({} entities read the state topic)",
        camera_entity_fields(&cam.mirror).len()
    );
    assert!(
        per_hour <= 6,
        "{per_hour} state messages in one hour of a steady camera; the last: {:?}",
        cam.seen.last()
    );
}

#[test]
fn a_camera_going_down_and_a_halved_frame_rate_go_out_at_once() {
    let mut cam = live_camera();
    let before = cam.seen.len();
    cam.send(EventKind::CameraDown {
        camera: "porch".into(),
        reason: "connection refused".into(),
    });
    assert_eq!(cam.seen.len(), before + 1, "a camera going down is news");
    let down = cam.last_state();
    assert_ne!(down["state"], "live");
    assert_eq!(down["reason"], "connection refused");
    // The last good frame stays known while the camera is down.
    assert!(down["last_frame"].is_string(), "{down}");

    cam.up();
    cam.play(60, 15, 1);
    assert_eq!(cam.last_state()["state"], "live");

    // Half the frames: Home Assistant's frame rate follows within seconds.
    cam.play(10, 7, 1);
    let fps = cam.last_state()["fps"].as_f64().unwrap_or(0.0);
    assert!((6.0..8.0).contains(&fps), "fps shown {fps}");

    // Four times the bitrate (a busy scene): shown too.
    let before = cam.last_state()["bitrate_kbps"].as_f64().unwrap_or(0.0);
    cam.play(10, 7, 4);
    let after = cam.last_state()["bitrate_kbps"].as_f64().unwrap_or(0.0);
    assert!(after > 2.0 * before, "bitrate shown {before} -> {after}");
}
