//! One camera's liveness machine driven by arbitrary inputs: frame summaries
//! with any field values, sessions going up and down, timeouts on time and
//! off, and a clock that jumps forwards and back. A `Run` op plays a steady
//! stream, waking the machine at its deadlines as the shell would, so the
//! fuzzer can reach `Live` and then try to break it.
//!
//! Checked after every call, from the module's documented contract:
//! - no panic;
//! - a returned transition names the state the machine is now in, and comes
//!   from the state it was in; no transition, no change of state;
//! - `Live` exactly when there is no reason, and only while a session is up;
//! - `handle_up` leads to `Connecting`, `handle_down` to `Offline`, frames
//!   outside a session change nothing;
//! - an early or repeated `handle_timeout` is a no-op;
//! - after `handle_timeout`, a camera whose last frame (or session start)
//!   is `stall_after` old or older is not `Live`;
//! - `poll_timeout` never asks for an instant already reached (a driver
//!   would spin on it);
//! - frame rate and bitrate are finite and not negative.

#![no_main]

use std::time::{Duration, Instant};

use arbitrary::Arbitrary;
use doorwarden::core::liveness::{CameraLiveness, CameraSettings, LivenessKind, Transition};
use doorwarden::core::{FrameSummary, Stamp};
use doorwarden::core::picture::PicturePolicy;
use libfuzzer_sys::fuzz_target;

#[derive(Debug, Arbitrary)]
struct Input {
    stall_ms: u16,
    freeze_ms: u16,
    warmup_ms: u16,
    /// Hundredths; `None` is NaN (a NaN tolerance must fail cameras).
    tolerance: Option<u8>,
    ops: Vec<Op>,
}

#[derive(Debug, Arbitrary)]
enum Op {
    Up,
    Down(Reason),
    Frame(Frame),
    Timeout,
    Forward {
        ms: u16,
    },
    Back {
        ms: u16,
    },
    /// A steady stream: `frames` frames `gap_ms` apart, a keyframe every
    /// `gop` frames, RTP time at real speed or at `speed` percent of it.
    Run {
        frames: u8,
        gap_ms: u8,
        gop: u8,
        p_size: u16,
        speed: Option<u8>,
    },
}

#[derive(Debug, Arbitrary)]
enum Reason {
    Refused,
    Blank,
    Text(String),
}

#[derive(Debug, Arbitrary)]
struct Frame {
    rtp_ts: i64,
    clock_rate: u32,
    size: u32,
    keyframe: bool,
    /// Few distinct hashes, so repeats are common.
    hash: u8,
    lost: u16,
}

struct Harness {
    cam: CameraLiveness,
    settings: CameraSettings,
    t0: Instant,
    wall0: jiff::Timestamp,
    /// Milliseconds since `t0` on the clock the shell hands in.
    clock: u64,
    /// The latest instant handed in so far: the machine's "now".
    latest: Instant,
    up: bool,
    /// Session start or last frame in the session, as the machine saw it.
    last_activity: Option<Instant>,
    /// State of the steady stream played by `Run`.
    seq: u64,
    rtp: i64,
}

impl Harness {
    fn stamp(&self) -> Stamp {
        let wall = jiff::SignedDuration::from_millis(self.clock as i64);
        Stamp {
            mono: self.t0 + Duration::from_millis(self.clock),
            wall: self.wall0.checked_add(wall).unwrap_or(self.wall0),
        }
    }

    /// Moves `latest` as the machine's own clamp does, and returns the stamp.
    fn now(&mut self) -> Stamp {
        let at = self.stamp();
        self.latest = self.latest.max(at.mono);
        at
    }

    fn check(&self, before: LivenessKind, tr: Option<Transition>) {
        let state = self.cam.state();
        match tr {
            Some(tr) => {
                assert_eq!(tr.from, before, "transition from the wrong state");
                assert_eq!(
                    tr.to,
                    state.kind(),
                    "transition to another state than the machine's"
                );
                assert_eq!(tr.reason, state.reason(), "transition reason differs");
            }
            None => assert_eq!(state.kind(), before, "state changed without a transition"),
        }
        assert_eq!(
            self.cam.is_live(),
            state.reason().is_none(),
            "live iff no reason"
        );
        assert!(!self.cam.is_live() || self.up, "live without a session");
        if let Some(at) = self.cam.poll_timeout() {
            assert!(
                at > self.latest,
                "poll_timeout {:?} is not after now",
                at - self.t0
            );
        }
        let status = self.cam.status("fuzz");
        assert!(
            status.fps.is_finite() && status.fps >= 0.0,
            "fps {}",
            status.fps
        );
        assert!(
            status.bitrate_kbps.is_finite() && status.bitrate_kbps >= 0.0,
            "bitrate {}",
            status.bitrate_kbps
        );
    }

    fn timeout(&mut self) {
        let at = self.now();
        let before = self.cam.state().kind();
        let deadline = self.cam.poll_timeout();
        let tr = self.cam.handle_timeout(at);
        if deadline.is_none_or(|d| d > self.latest) {
            assert_eq!(tr, None, "an early handle_timeout changed the state");
        }
        self.check(before, tr);
        // Once more at the same instant: nothing left to do.
        let deadline = self.cam.poll_timeout();
        assert_eq!(
            self.cam.handle_timeout(at),
            None,
            "a repeated handle_timeout did something"
        );
        assert_eq!(
            self.cam.poll_timeout(),
            deadline,
            "a repeated handle_timeout moved the deadline"
        );
        if self.up
            && let Some(last) = self.last_activity
            && self.latest.saturating_duration_since(last) >= self.settings.stall_after
        {
            assert!(
                !self.cam.is_live(),
                "live after {:?} of silence",
                self.latest - last
            );
        }
    }

    fn frame(&mut self, frame: &FrameSummary) {
        let at = self.now();
        let before = self.cam.state().clone();
        let tr = self.cam.handle_frame(at, frame);
        if self.up {
            self.last_activity = Some(self.latest);
        } else {
            assert_eq!(tr, None, "a frame outside a session made a transition");
            assert_eq!(
                self.cam.state(),
                &before,
                "a frame outside a session changed the state"
            );
        }
        self.check(before.kind(), tr);
    }

    /// Lets time run to `until`, waking the machine at each deadline on the
    /// way, as the shell does.
    fn run_to(&mut self, until: u64) {
        for _ in 0..64 {
            let Some(deadline) = self.cam.poll_timeout() else {
                break;
            };
            let due = deadline.saturating_duration_since(self.t0).as_millis();
            let due = u64::try_from(due).unwrap_or(u64::MAX);
            if due > until {
                break;
            }
            // Deadlines fall between milliseconds; wake at the next one.
            self.clock = self
                .clock
                .max(due + u64::from(deadline > self.t0 + Duration::from_millis(due)));
            self.timeout();
        }
        self.clock = self.clock.max(until);
    }

    fn apply(&mut self, op: &Op) {
        match op {
            Op::Up => {
                let at = self.now();
                let before = self.cam.state().kind();
                let tr = self.cam.handle_up(at);
                self.up = true;
                self.last_activity = Some(self.latest);
                assert_eq!(
                    self.cam.state().kind(),
                    LivenessKind::Connecting,
                    "up, not connecting"
                );
                self.check(before, tr);
            }
            Op::Down(reason) => {
                let text = match reason {
                    Reason::Refused => "connection refused",
                    Reason::Blank => "  ",
                    Reason::Text(t) => t.as_str(),
                };
                let at = self.now();
                let before = self.cam.state().kind();
                let tr = self.cam.handle_down(at, text);
                self.up = false;
                self.last_activity = None;
                assert_eq!(
                    self.cam.state().kind(),
                    LivenessKind::Offline,
                    "down, not offline"
                );
                assert_eq!(
                    self.cam.poll_timeout(),
                    None,
                    "a deadline without a session"
                );
                self.check(before, tr);
            }
            Op::Frame(f) => self.frame(&FrameSummary {
                rtp_ts: f.rtp_ts,
                clock_rate: f.clock_rate,
                size: f.size,
                keyframe: f.keyframe,
                hash: u64::from(f.hash),
                lost: f.lost,
            }),
            Op::Timeout => self.timeout(),
            Op::Forward { ms } => self.clock += u64::from(*ms),
            Op::Back { ms } => self.clock = self.clock.saturating_sub(u64::from(*ms)),
            Op::Run {
                frames,
                gap_ms,
                gop,
                p_size,
                speed,
            } => {
                let gap = u64::from((*gap_ms).max(1));
                let speed = speed.map_or(100, i64::from);
                for _ in 0..*frames {
                    self.run_to(self.clock + gap);
                    self.seq += 1;
                    self.rtp = self.rtp.wrapping_add(gap as i64 * 90 * speed / 100);
                    let keyframe =
                        self.seq == 1 || self.seq.is_multiple_of(u64::from((*gop).max(1)));
                    let noise = (self.seq.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 56) as u32;
                    let frame = FrameSummary {
                        rtp_ts: self.rtp,
                        clock_rate: 90_000,
                        size: if keyframe {
                            40_000
                        } else {
                            u32::from(*p_size) + noise
                        },
                        keyframe,
                        // Never one of the small hashes of `Op::Frame`.
                        hash: self.seq | 1 << 63,
                        lost: 0,
                    };
                    self.frame(&frame);
                }
            }
        }
    }
}

fuzz_target!(|input: Input| {
    let settings = CameraSettings {
        // The config refuses less than 200 ms; 1 ms keeps a stall deadline
        // strictly after the frame that arms it.
        stall_after: Duration::from_millis(u64::from(input.stall_ms.max(1))),
        freeze_after: Duration::from_millis(u64::from(input.freeze_ms)),
        warmup: Duration::from_millis(u64::from(input.warmup_ms)),
        clock_tolerance: input.tolerance.map_or(f64::NAN, |t| f64::from(t) / 100.0),
        // The inputs here are frame summaries; decoded pictures are judged
        // by core::picture, which this target does not drive.
        picture: PicturePolicy::Off,
    };
    let t0 = Instant::now();
    let wall0 = jiff::Timestamp::from_second(1_790_000_000).unwrap_or(jiff::Timestamp::UNIX_EPOCH);
    let start = Stamp {
        mono: t0,
        wall: wall0,
    };
    let mut h = Harness {
        cam: CameraLiveness::new(settings, start),
        settings,
        t0,
        wall0,
        clock: 0,
        latest: t0,
        up: false,
        last_activity: None,
        seq: 0,
        rtp: 0,
    };
    h.check(LivenessKind::Connecting, None);
    for op in input.ops.iter().take(512) {
        h.apply(op);
    }
});
