//! The camera frame path is the core's hottest input: every camera sends
//! 10-30 frames a second all day, windows open or not. A frame that changes
//! nothing an owner could see must cost the core no heap allocation, so that
//! 32 cameras idle cheaply and a frame never waits on the allocator.
//!
//! Counted, not timed: a counting global allocator (this test binary only)
//! sees every allocation made inside `Core::handle`.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use doorwarden::config::{Config, Secret};
use doorwarden::core::{
    Command, Core, DoorReport, Event, EventKind, FrameSummary, LockState, PersistedState, Stamp,
};

struct Counting;

static COUNTING: AtomicBool = AtomicBool::new(false);
static ALLOCATIONS: AtomicUsize = AtomicUsize::new(0);

// SAFETY: every call is passed straight to the system allocator; the
// counters are atomics that never allocate.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if COUNTING.load(Ordering::Relaxed) {
            ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        }
        // SAFETY: same layout contract as our caller's.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from `System.alloc` with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if COUNTING.load(Ordering::Relaxed) {
            ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        }
        // SAFETY: `ptr` came from `System.alloc` with this layout.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Four doors, eight cameras; two doors have a window open all day (so the
/// window and keypad code paths run on every event; one has a delivery code
/// in its keypad), two have none.
const HOME: &str = r#"
mqtt: { url: "mqtt://127.0.0.1:1883" }
# The cameras send frame summaries only (no decoded picture, which the
# door cameras' default `required` would wait for forever); the picture
# sampler's cost is its own (io::picture, benches/cameras.rs).
cameras:
  c0: { url: "rtsp://127.0.0.1/c0", picture_check: off }
  c1: { url: "rtsp://127.0.0.1/c1", picture_check: off }
  c2: { url: "rtsp://127.0.0.1/c2", picture_check: off }
  c3: { url: "rtsp://127.0.0.1/c3", picture_check: off }
  c4: { url: "rtsp://127.0.0.1/c4", picture_check: off }
  c5: { url: "rtsp://127.0.0.1/c5", picture_check: off }
  c6: { url: "rtsp://127.0.0.1/c6", picture_check: off }
  c7: { url: "rtsp://127.0.0.1/c7", picture_check: off }
locks:
  d0: { zigbee2mqtt: { topic: zigbee2mqtt/d0 }, cameras: [c0, c1] }
  d1: { zigbee2mqtt: { topic: zigbee2mqtt/d1 }, cameras: [c2, c3] }
  d2: { zigbee2mqtt: { topic: zigbee2mqtt/d2 }, cameras: [c4, c5] }
  d3: { zigbee2mqtt: { topic: zigbee2mqtt/d3 }, cameras: [c6, c7, c0] }
deliveries:
  d0:
    time_zone: UTC
    windows: [{ days: [mon, tue, wed, thu, fri, sat, sun], from: "00:00", to: "23:59" }]
    code_slot: 3
  d1:
    time_zone: UTC
    windows: [{ days: [mon, tue, wed, thu, fri, sat, sun], from: "00:00", to: "23:59" }]
"#;

const CAMERAS: usize = 8;
const FROZEN: usize = 3;
const FPS: u64 = 15;

struct Home {
    core: Core,
    now: Stamp,
    t0: Instant,
    seq: u64,
}

impl Home {
    fn new() -> Home {
        let config: Config = match serde_yaml::from_str(HOME) {
            Ok(c) => c,
            Err(e) => panic!("test config: {e}"),
        };
        let t0 = Instant::now();
        // 2026-09-21 12:00 UTC: inside the windows, far from their edges.
        let wall =
            jiff::Timestamp::from_second(1_790_000_000).unwrap_or(jiff::Timestamp::UNIX_EPOCH);
        let now = Stamp { mono: t0, wall };
        let mut core = match Core::new(&config, PersistedState::default(), [7; 32], now) {
            Ok(c) => c,
            Err(e) => panic!("core: {e}"),
        };
        let _ = core.start(now);
        for d in 0..4 {
            let door = format!("d{d}");
            let report = DoorReport::Lock {
                state: LockState::Locked,
                source: None,
            };
            let kind = EventKind::Door { door, report };
            let _ = core.handle(Event { at: now, kind });
        }
        let kind = EventKind::Command {
            door: "d0".into(),
            command: Command::SetCode(Secret::new("7734")),
        };
        let _ = core.handle(Event { at: now, kind });
        for i in 0..CAMERAS {
            let _ = core.handle(Event {
                at: now,
                kind: EventKind::CameraUp {
                    camera: format!("c{i}"),
                },
            });
        }
        Home {
            core,
            now,
            t0,
            seq: 0,
        }
    }

    /// One frame interval: first any deadline due, then one frame from each
    /// camera, each a distinct encoded picture of a plausible size. Returns
    /// (frames that produced no action, allocations made while handling
    /// them).
    fn interval(&mut self) -> (usize, usize) {
        self.now = self.now.after(Duration::from_micros(1_000_000 / FPS));
        if let Some((t, _)) = self.core.next_deadline()
            && t <= self.now.mono
        {
            let _ = self.core.handle(Event {
                at: self.now,
                kind: EventKind::Tick,
            });
        }
        self.seq += 1;
        let rtp = i64::try_from((self.now.mono - self.t0).as_micros() * 9 / 100).unwrap_or(0);
        let mut quiet = 0;
        let mut allocations = 0;
        for i in 0..CAMERAS {
            let keyframe = self.seq % 30 == 1;
            let event = Event {
                at: self.now,
                kind: EventKind::CameraFrame {
                    camera: format!("c{i}"),
                    frame: FrameSummary {
                        rtp_ts: rtp,
                        clock_rate: 90_000,
                        size: if i == FROZEN {
                            6_000
                        } else if keyframe {
                            40_000
                        } else {
                            6_000 + (self.seq % 11) as u32 * 97
                        },
                        keyframe,
                        // One camera sends the same picture over and over:
                        // frozen, so its door's state names it on every event.
                        hash: if i == FROZEN {
                            7
                        } else {
                            self.seq.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ i as u64
                        },
                        lost: 0,
                    },
                },
            };
            ALLOCATIONS.store(0, Ordering::SeqCst);
            COUNTING.store(true, Ordering::SeqCst);
            let actions = self.core.handle(event);
            COUNTING.store(false, Ordering::SeqCst);
            let made = ALLOCATIONS.load(Ordering::SeqCst);
            if actions.is_empty() {
                quiet += 1;
                allocations += made;
            }
            drop(actions);
        }
        (quiet, allocations)
    }
}

#[test]
fn a_frame_that_changes_nothing_costs_the_core_no_allocation() {
    let mut home = Home::new();
    // Warm up: every camera becomes live and its rates settle.
    for _ in 0..(FPS * 20) {
        let _ = home.interval();
    }
    let d0 = home.core.door_status("d0");
    assert_eq!(
        d0.as_ref().and_then(|s| s.interlock_blocking.clone()),
        None,
        "door d0 should be ready for a delivery: {d0:?}"
    );
    let d1 = home.core.door_status("d1");
    let blocking = d1.as_ref().and_then(|s| s.interlock_blocking.clone());
    assert!(
        blocking
            .as_deref()
            .is_some_and(|b| b.contains("camera c3 frozen")),
        "door d1 should name its frozen camera: {d1:?}"
    );
    for i in (0..CAMERAS).filter(|i| *i != FROZEN) {
        let shown = home.core.camera_status(&format!("c{i}")).map(|s| s.state);
        assert_eq!(
            shown,
            Some(doorwarden::core::liveness::LivenessKind::Live),
            "camera c{i} should be live after 20 s of good frames"
        );
    }
    let mut quiet = 0;
    let mut allocations = 0;
    for _ in 0..(FPS * 30) {
        let (q, a) = home.interval();
        quiet += q;
        allocations += a;
    }
    let frames = FPS as usize * 30 * CAMERAS;
    println!(
        "{frames} frames, {quiet} changed nothing, {allocations} allocations among those ({:.2} per frame)",
        allocations as f64 / quiet.max(1) as f64
    );
    // Most frames change nothing (rates go out at most once a second).
    assert!(
        quiet > frames * 8 / 10,
        "only {quiet} of {frames} frames were quiet"
    );
    assert_eq!(
        allocations, 0,
        "frames that changed nothing allocated {allocations} times in the core"
    );
}
