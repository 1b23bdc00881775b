//! Camera liveness: one state machine per camera, fed with frame summaries.
//!
//! [`CameraLiveness`] decides whether one camera is *verifiably live*: not
//! merely connected, but sending frames that keep arriving, keep changing and
//! keep pace with real time. It does no I/O and reads no clock: the shell
//! stamps every input with a [`Stamp`] and the machine asks to be woken at
//! [`CameraLiveness::poll_timeout`].
//!
//! # Contract for the driver
//!
//! - Inputs are `handle_*` calls: [`handle_up`](CameraLiveness::handle_up)
//!   when the RTSP session starts playing, [`handle_frame`](CameraLiveness::handle_frame)
//!   per complete frame, [`handle_down`](CameraLiveness::handle_down) when the
//!   session fails or ends, and [`handle_timeout`](CameraLiveness::handle_timeout)
//!   when the instant from `poll_timeout` has come. Each returns the
//!   [`Transition`] it caused, if any. Early or repeated `handle_timeout`
//!   calls are harmless no-ops.
//! - After every `handle_*` call, re-read `poll_timeout`: it can change after
//!   any of them.
//! - A transition is returned whenever the state changes, including a change
//!   of reason within the same kind (`Offline` with a new error,
//!   `Connecting` moving from "waiting for the first keyframe" to "checking
//!   the stream"), so `from` may equal `to`.
//! - Time may go backwards on the stamps handed in (a confused shell, a
//!   replayed log): an earlier monotonic instant is treated as the latest
//!   one seen, never as a reason to panic.
//!
//! # States
//!
//! - `Connecting`: no session yet, or a session that has not proved itself.
//!   Its reason says which step it is on: "connecting to the camera",
//!   "waiting for the first keyframe", "checking the stream", and, where
//!   the picture must be checked, "waiting for a checked picture".
//! - `Live`: every rule below has held continuously for `warmup`, and still
//!   holds.
//! - `Stalled`: frames came in this session, then none for `stall_after`.
//! - `Frozen`: frames come, but their content or their timing shows they are
//!   not a live picture.
//! - `Offline`: the shell reported the session down; the reason is its text,
//!   verbatim ("RTSP 401 Unauthorized", "connection refused").
//!
//! A camera leaves `Stalled` or `Frozen` only by going through the warmup
//! again: it keeps showing the state and reason that took it out of `Live`
//! until `warmup` of good frames has passed, then becomes `Live`. Only a new
//! problem of another kind, or a new problem after at least one good frame,
//! replaces the reason. A new session (`handle_up`) starts over in
//! `Connecting`.
//!
//! # Timers
//!
//! Two deadlines, held as data in a small table (`Timer`, kept in a
//! [`Timers`]):
//! - *stall*: last frame + `stall_after`. A stall is detected when this
//!   fires, not when the next frame finally arrives; a frame arriving after
//!   the deadline also reveals it, if the driver was late. It is armed by
//!   the first frame of a session: before that the camera is `Connecting`
//!   ("waiting for the first keyframe"), since a camera may hold back its
//!   first frame for up to a GOP after PLAY. The shell (`crate::io::rtsp`)
//!   gives up on a session whose first frame never comes and reports it
//!   down.
//! - *warmup*: first good frame + `warmup`, while not yet `Live`.
//!
//! # Rules, and why each threshold is safe
//!
//! Defaults are `stall_after` 2 s, `freeze_after` 200 ms, `warmup` 3 s,
//! `clock_tolerance` 0.25 (see `crate::config::Camera`).
//!
//! 1. **Keyframe first.** Nothing counts toward the warmup until a keyframe
//!    has been seen in this session (a viewer cannot show anything before).
//!    Keyframes are not required after the first: smart codecs stretch the
//!    GOP to ~10 s in quiet scenes.
//! 2. **Stall.** No complete frame for `stall_after` → `Stalled`, reason
//!    "no frame for 2.0 s" (the silence when it was noticed).
//! 3. **Identical frames.** A run of at least 3 frames with the same content
//!    hash that has lasted `freeze_after` → `Frozen`, "4 identical frames".
//!    A live H.264/H.265 encoder never emits two byte-identical consecutive
//!    frames: every slice header carries a changing frame number or picture
//!    order count, so this rule can be fast without false alarms: at 15 fps
//!    the default 200 ms flags a replayed frame on the third repeat, about
//!    200 ms after the last new frame. The 3-frame floor keeps a single
//!    duplicate from a quirky camera at 1 fps from tripping it.
//! 4. **Identical keyframes.** Two consecutive keyframes with the same hash
//!    → `Frozen` at once. H.264 even forbids it (consecutive IDR pictures must
//!    differ in `idr_pic_id`), and sensor noise makes it impossible for a
//!    real scene in H.265. It catches a looped single GOP whose frames all
//!    differ from their neighbours.
//! 5. **RTP time advancing.** At least 4 frames in a row not ahead of the
//!    highest RTP timestamp seen, for `freeze_after` → `Frozen`, "RTP
//!    timestamps stopped advancing". The 4-frame floor lets B-frames (which
//!    step back a frame or three in decode order) through. A step back of
//!    more than 1 s is a jump (a looped recording restarting) → `Frozen`,
//!    "RTP timestamps jumped back 12.0 s", and the RTP timeline restarts
//!    from there. Differences are taken modulo 2^32, so a shell that forgot
//!    to extend the 32-bit timestamp still wraps correctly.
//! 6. **RTP clock keeps pace.** For each frame, its *offset* is arrival time
//!    minus RTP time. Network delay can only add to the offset, so the
//!    smallest offset in a stretch of time is the camera's true latency. Over
//!    the last 4 s (once at least 2 s are available) the window is cut in two
//!    halves and the smallest offset of each is compared: for a live camera
//!    they match whatever the jitter, because each half holds some frame that
//!    came through quickly; a stream running at a rate `r` of real time moves
//!    the lower envelope by `(1 - r)` seconds per second, so
//!    `r = 1 - (min₂ - min₁) / half`. When `|r - 1|` exceeds
//!    `clock_tolerance` for 1 s in a row → `Frozen`, "RTP clock runs at 0.5x
//!    real time". This catches a recording played at the wrong speed and a
//!    buffer drained faster than real time; a burst that only *catches up*
//!    after a short network hiccup does not move the lower envelope and is
//!    ignored. With 100 ms of jitter the error is at most 0.1 / 1 s = 10 %.
//!    Until one measurement has passed, the camera cannot become `Live`.
//!    A camera that stamps every frame with a fixed RTP step whatever its
//!    real frame rate fails this rule when it changes rate; raising its
//!    `clock_tolerance` is the way out for such a camera.
//! 7. **Still picture, encoder running** (a hung sensor or ISP: frames keep
//!    coming, each a little different in its header, so hashes differ).
//!    Caught in the compressed domain: the encoder, fed the same picture
//!    again and again, codes every P-frame as "nothing changed" (all blocks
//!    skipped), which is tiny and the same size every time (checked against
//!    the bundled x264 clips, `assets/clips/`). The rule fires
//!    only when *all* of these hold:
//!    - every P-frame for `max(freeze_after, 3 s)` is at most 256 bytes
//!      (an all-skip 4K frame with many slices and a timing SEI is ~200
//!      bytes; x264 at 640x360 sends 10-17; live frames with sensor noise
//!      are larger);
//!    - each is at most 1/8 of the stream's own learned typical P-frame size;
//!      the baseline is an average learned only from frames that are *not*
//!      candidates, from at least 32 of them, so a hang cannot teach it that
//!      empty is normal, and it is not learned before it can judge;
//!    - their sizes stay within 4 bytes of each other (a hung x264 varies by
//!      at most 1), and at least 8 of them are judged; a live sensor, even
//!      in a static night scene behind heavy noise reduction and a quiet
//!      encoder, leaves noise that makes small frames vary by far more.
//!      When the stream's GOP has at least 12 P-frames, the size is judged
//!      per GOP, and the first 4 P-frames after each keyframe (which an
//!      encoder spends refining the still picture) only need to be empty;
//!      with shorter GOPs nothing is let off, so such a stream is in
//!      practice only caught if its encoder settles at once.
//!
//!    Then `Frozen`, "picture unchanged for 3.0 s (empty P-frames)". While
//!    such a run stands (two frames or more), a camera that is not yet
//!    `Live` does not become `Live`, so a camera that reconnects hung is
//!    never live for a moment before the rule can judge it.
//!
//!    Why it is safe: it needs frames below an absolute floor *and* far
//!    below what this very camera normally sends *and* of a constant size,
//!    for seconds. The last condition is the one a live sensor can never
//!    meet: even a static night scene behind strong noise reduction and a
//!    quiet encoder leaves some blocks coded each frame, so small frames
//!    still vary by tens of bytes. A camera that never sent larger frames
//!    (a night-only scene from the first connection) is never judged.
//!    What it cannot see: a hang upstream of a still-running OSD overlay (the
//!    clock text changes each second, so frames are not empty), an encoder
//!    that pads to a constant bitrate, and a camera already hung the first
//!    time doorwarden connects to it (no baseline; the baseline is kept
//!    across reconnects). A camera whose picture is truly constant
//!    (privacy mode, covered lens, pitch black with IR off) is reported as
//!    frozen, which is the right answer for a courier interlock.
//!
//! Not covered by any stream-level rule: a stream delayed by a constant
//! amount (a relay replaying with a fixed lag) and loops longer than one GOP
//! whose RTP time is rewritten to run on smoothly. Those need the camera's
//! own clock (RTCP sender reports) or decoding.
//!
//! 8. **The picture itself** (`picture_check`, see `crate::core::picture`):
//!    decoded thumbnails judged frozen, frozen behind an on-screen clock,
//!    uniform (no picture), or a keyframe that recurs (a replayed
//!    recording) → `Frozen` with that reason. The verdict stands between
//!    samples, so frames that pass rules 1-7 do not make a frozen picture
//!    good; under `required` a camera does not become `Live` before its
//!    picture was judged live. It only ever adds to the rules above.
//!
//! Lost RTP packets (`FrameSummary::lost`) do not count against a camera: the
//! frames that reach the core are complete, and one missing frame only makes
//! a slightly longer gap.

use std::collections::VecDeque;
use std::fmt;
use std::time::{Duration, Instant};

use crate::core::picture::{PictureCheck, PictureFault, PicturePolicy, PictureSample};
use crate::core::text;
use crate::core::timer::{TimerKey, Timers};
use crate::core::{CameraStatus, FrameSummary, Stamp};

/// The five states a camera can be in, without their data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LivenessKind {
    Connecting,
    Live,
    Stalled,
    Frozen,
    Offline,
}

impl LivenessKind {
    pub fn as_str(self) -> &'static str {
        match self {
            LivenessKind::Connecting => "connecting",
            LivenessKind::Live => "live",
            LivenessKind::Stalled => "stalled",
            LivenessKind::Frozen => "frozen",
            LivenessKind::Offline => "offline",
        }
    }
}

/// Smallest number of identical frames in a row that can count as frozen.
const IDENTICAL_MIN_FRAMES: u32 = 3;
/// Frames in a row not ahead of the highest RTP time that can count as
/// "stopped"; B-frames step back at most about three.
const RTP_STUCK_MIN_FRAMES: u32 = 4;
/// A step back in RTP time larger than this is a jump, not a B-frame.
const RTP_JUMP_BACK: Duration = Duration::from_secs(1);
/// Span of frames over which the RTP clock is compared with arrival time.
const DRIFT_WINDOW: Duration = Duration::from_secs(4);
/// The clock is not judged on less than this.
const DRIFT_MIN_SPAN: Duration = Duration::from_secs(2);
/// How long the clock must stay out of tolerance before it counts.
const DRIFT_CONFIRM: Duration = Duration::from_secs(1);
/// The still-picture rule never fires sooner than this.
const STILL_MIN: Duration = Duration::from_secs(3);
/// Non-key frames at or below this size may be "empty".
const STILL_FLOOR_BYTES: u32 = 256;
/// ...and must be this many times smaller than the learned typical size.
const STILL_DROP: f64 = 8.0;
/// ...and may differ from each other by at most this much.
const STILL_SPREAD_BYTES: u32 = 4;
/// ...with at least this many of them.
const STILL_MIN_FRAMES: u32 = 8;
/// P-frames after each keyframe that may still be settling: fed an
/// unchanging picture, an encoder refines it for a few frames after a
/// keyframe before its P-frames fall to their constant empty size (x264 on
/// `assets/clips/still.h264`: 95, 75, 48, 48, then 17 17 17 …; after later
/// keyframes 30, 11, then 10 10 10 …).
const STILL_SETTLE_FRAMES: u32 = 4;
/// Settling frames are only let off in GOPs with at least this many
/// P-frames, so every GOP still has 8 or more frames to judge.
const STILL_LONG_GOP: u32 = 12;
/// Frames needed before the learned typical P-frame size is trusted.
const BASELINE_MIN_SAMPLES: u32 = 32;
/// Weight of each new frame in the learned typical size (about 4 s at 15 fps).
const BASELINE_WEIGHT: f64 = 1.0 / 64.0;
/// Window for the frame rate and bitrate shown in Home Assistant.
const STATS_WINDOW: Duration = Duration::from_secs(5);

/// The thresholds of one camera, from its config.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CameraSettings {
    /// No frame for this long: stalled.
    pub stall_after: Duration,
    /// Repeated content for this long: frozen.
    pub freeze_after: Duration,
    /// Good frames needed, continuously, before the camera counts as live.
    pub warmup: Duration,
    /// Accepted difference between the RTP clock rate and real time, as a
    /// fraction (0.25: from 0.75x to 1.25x).
    pub clock_tolerance: f64,
    /// Whether the decoded picture is judged, and must be (`core::picture`).
    pub picture: PicturePolicy,
}

impl From<&crate::config::Camera> for CameraSettings {
    fn from(cam: &crate::config::Camera) -> Self {
        CameraSettings {
            stall_after: cam.stall_after,
            freeze_after: cam.freeze_after,
            warmup: cam.warmup,
            clock_tolerance: cam.clock_tolerance,
            picture: cam.picture_policy(),
        }
    }
}

impl CameraSettings {
    /// How long P-frames must stay empty before the picture counts as still.
    pub fn still_after(&self) -> Duration {
        self.freeze_after.max(STILL_MIN)
    }
}

/// Which step a connecting camera is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Startup {
    /// No RTSP session yet.
    Session,
    /// Session up, no keyframe yet.
    Keyframe,
    /// Good frames are coming; the warmup is running.
    Checking,
    /// The stream has passed its warmup; the picture check (`required`)
    /// has not yet seen a live scene.
    Picture,
}

/// Why a camera that sends frames is not showing a live picture.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum FreezeCause {
    /// The same frame, byte for byte, `count` times in a row.
    IdenticalFrames { count: u32 },
    /// Two keyframes in a row were byte-identical.
    IdenticalKeyframes,
    /// RTP timestamps stopped moving forward.
    RtpStopped,
    /// RTP time jumped backwards by this much.
    RtpJumpedBack { by: Duration },
    /// The RTP clock ran at `ratio` times real time.
    ClockDrift { ratio: f64 },
    /// P-frames collapsed to empty, constant-size frames for this long.
    StillPicture { unchanged_for: Duration },
    /// The decoded picture is not a live scene (`core::picture`).
    Picture(PictureFault),
}

impl fmt::Display for FreezeCause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FreezeCause::IdenticalFrames { count } => write!(f, "{count} identical frames"),
            FreezeCause::IdenticalKeyframes => {
                f.write_str("two keyframes in a row are byte-identical")
            }
            FreezeCause::RtpStopped => f.write_str("RTP timestamps stopped advancing"),
            FreezeCause::RtpJumpedBack { by } => {
                write!(f, "RTP timestamps jumped back {:.1} s", by.as_secs_f64())
            }
            FreezeCause::ClockDrift { ratio } => {
                write!(f, "RTP clock runs at {ratio:.1}x real time")
            }
            FreezeCause::StillPicture { unchanged_for } => write!(
                f,
                "picture unchanged for {:.1} s (empty P-frames)",
                unchanged_for.as_secs_f64()
            ),
            FreezeCause::Picture(fault) => write!(f, "{fault}"),
        }
    }
}

/// A camera's liveness, with what the owner needs to know about it.
#[derive(Debug, Clone, PartialEq)]
pub enum Liveness {
    Connecting {
        since: Stamp,
        step: Startup,
    },
    Live {
        since: Stamp,
    },
    /// `silent_for`: how long no frame had come when the stall was noticed.
    Stalled {
        since: Stamp,
        silent_for: Duration,
    },
    Frozen {
        since: Stamp,
        cause: FreezeCause,
    },
    /// `reason`: the shell's text, verbatim (already redacted).
    Offline {
        since: Stamp,
        reason: String,
    },
}

impl Liveness {
    pub fn kind(&self) -> LivenessKind {
        match self {
            Liveness::Connecting { .. } => LivenessKind::Connecting,
            Liveness::Live { .. } => LivenessKind::Live,
            Liveness::Stalled { .. } => LivenessKind::Stalled,
            Liveness::Frozen { .. } => LivenessKind::Frozen,
            Liveness::Offline { .. } => LivenessKind::Offline,
        }
    }

    /// When the camera entered this state.
    pub fn since(&self) -> Stamp {
        match self {
            Liveness::Connecting { since, .. }
            | Liveness::Live { since }
            | Liveness::Stalled { since, .. }
            | Liveness::Frozen { since, .. }
            | Liveness::Offline { since, .. } => *since,
        }
    }

    /// Why the camera is not live, as a sentence for the owner; `None` when
    /// it is live.
    pub fn reason(&self) -> Option<String> {
        text::owned(|w| self.write_reason(w))
    }

    /// [`Liveness::reason`], written into `w`; `Ok(false)` when live.
    pub fn write_reason(&self, w: &mut dyn fmt::Write) -> text::Said {
        match self {
            Liveness::Connecting { step, .. } => w.write_str(match step {
                Startup::Session => "connecting to the camera",
                Startup::Keyframe => "waiting for the first keyframe",
                Startup::Checking => "checking the stream",
                Startup::Picture => "waiting for a checked picture",
            })?,
            Liveness::Live { .. } => return Ok(false),
            Liveness::Stalled { silent_for, .. } => {
                write!(w, "no frame for {:.1} s", silent_for.as_secs_f64())?;
            }
            Liveness::Frozen { cause, .. } => write!(w, "{cause}")?,
            Liveness::Offline { reason, .. } => w.write_str(reason)?,
        }
        Ok(true)
    }
}

/// A change of state, returned by the `handle_*` call that caused it.
#[derive(Debug, Clone, PartialEq)]
pub struct Transition {
    pub from: LivenessKind,
    pub to: LivenessKind,
    /// The new state's reason (`None` when it is `Live`).
    pub reason: Option<String>,
    /// When it was detected.
    pub at: Stamp,
}

/// The machine's deadlines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Timer {
    /// No frame since this instant minus `stall_after`.
    Stall,
    /// The warmup is complete.
    Warmup,
}

impl TimerKey<2> for Timer {
    const ALL: [Timer; 2] = [Timer::Stall, Timer::Warmup];
    fn index(self) -> usize {
        self as usize
    }
}

/// What broke a camera's liveness.
#[derive(Debug, Clone, Copy)]
enum Problem {
    Stall { silent_for: Duration },
    Freeze(FreezeCause),
}

impl Problem {
    fn kind(self) -> LivenessKind {
        match self {
            Problem::Stall { .. } => LivenessKind::Stalled,
            Problem::Freeze(_) => LivenessKind::Frozen,
        }
    }
}

/// RTP time of the current session, extended and checked.
#[derive(Debug, Clone)]
struct RtpTrack {
    clock_rate: u32,
    /// Last timestamp as handed in.
    last_raw: i64,
    /// Our own extension of it, from 0 at the session's first frame.
    ext: i64,
    /// Highest `ext` seen, when it was reached, and frames since.
    high: i64,
    high_at: Instant,
    behind: u32,
}

impl RtpTrack {
    fn new(raw: i64, clock_rate: u32, at: Instant) -> Self {
        RtpTrack {
            clock_rate,
            last_raw: raw,
            ext: 0,
            high: 0,
            high_at: at,
            behind: 0,
        }
    }
}

/// The RTP clock against arrival time (rule 6).
#[derive(Debug, Clone, Default)]
struct Drift {
    /// Arrival instant and media time (s) of the first sample.
    origin: Option<(Instant, f64)>,
    /// Arrival instant and offset (arrival minus media time, s).
    samples: VecDeque<(Instant, f64)>,
    /// One measurement passed since the window last restarted.
    checked: bool,
    /// Out of tolerance since.
    suspect_since: Option<Instant>,
}

impl Drift {
    fn restart(&mut self) {
        *self = Drift::default();
    }

    /// Adds a frame and returns the rate of the RTP clock against real time
    /// over the window, once the window is long enough to judge.
    fn measure(&mut self, at: Instant, media: f64) -> Option<f64> {
        let (origin_at, origin_media) = *self.origin.get_or_insert((at, media));
        let offset = at.saturating_duration_since(origin_at).as_secs_f64() - (media - origin_media);
        self.samples.push_back((at, offset));
        while self
            .samples
            .front()
            .is_some_and(|(a, _)| at.saturating_duration_since(*a) > DRIFT_WINDOW)
        {
            self.samples.pop_front();
        }
        let oldest = self.samples.front()?.0;
        let span = at.saturating_duration_since(oldest);
        if span < DRIFT_MIN_SPAN {
            return None;
        }
        let mid = oldest + span / 2;
        let (mut first, mut second) = (f64::INFINITY, f64::INFINITY);
        for &(a, off) in &self.samples {
            if a < mid {
                first = first.min(off);
            } else {
                second = second.min(off);
            }
        }
        // Never a NaN: it would make the state unequal to itself. An
        // unjudged clock keeps the camera from becoming live, so this fails
        // closed.
        let ratio = 1.0 - (second - first) / (span.as_secs_f64() / 2.0);
        ratio.is_finite().then_some(ratio)
    }
}

/// The learned typical size of non-key frames (rule 7); kept across
/// sessions, since the camera is the same.
#[derive(Debug, Clone, Default)]
struct Baseline {
    size: f64,
    samples: u32,
}

impl Baseline {
    fn learn(&mut self, size: u32) {
        let size = f64::from(size);
        if self.samples == 0 {
            self.size = size;
        } else {
            self.size += (size - self.size) * BASELINE_WEIGHT;
        }
        self.samples = self.samples.saturating_add(1);
    }

    fn judges_as_empty(&self, size: u32) -> bool {
        self.samples >= BASELINE_MIN_SAMPLES
            && size <= STILL_FLOOR_BYTES
            && f64::from(size) * STILL_DROP <= self.size
    }
}

/// A run of empty P-frames (rule 7), constant in size within each GOP once
/// the encoder has settled.
#[derive(Debug, Clone, Copy)]
struct StillRun {
    since: Instant,
    /// Empty P-frames in the run.
    frames: u32,
    /// Those of them past the settling frames of their GOP.
    settled: u32,
    /// Smallest and largest settled size in the current GOP.
    level: Option<(u32, u32)>,
}

impl StillRun {
    fn start(at: Instant, size: u32, settling: bool) -> Self {
        StillRun {
            since: at,
            frames: 1,
            settled: u32::from(!settling),
            level: (!settling).then_some((size, size)),
        }
    }

    /// The run with one more empty P-frame, or `None` if that frame breaks
    /// the constant size of its GOP.
    fn extend(self, size: u32, settling: bool) -> Option<Self> {
        let frames = self.frames.saturating_add(1);
        if settling {
            return Some(StillRun { frames, ..self });
        }
        let (lo, hi) = self
            .level
            .map_or((size, size), |(lo, hi)| (lo.min(size), hi.max(size)));
        (hi - lo <= STILL_SPREAD_BYTES).then_some(StillRun {
            frames,
            settled: self.settled.saturating_add(1),
            level: Some((lo, hi)),
            ..self
        })
    }

    /// Once true, stays true while the run goes on, so a freeze it reports
    /// does not flicker.
    fn verdict(self, now: Instant, still_after: Duration) -> Option<FreezeCause> {
        let unchanged_for = now.saturating_duration_since(self.since);
        (self.settled >= STILL_MIN_FRAMES && unchanged_for >= still_after)
            .then_some(FreezeCause::StillPicture { unchanged_for })
    }
}

/// What is known about the current session's stream.
#[derive(Debug, Clone)]
struct Stream {
    started: Instant,
    last_arrival: Option<Instant>,
    keyframe_seen: bool,
    last_keyframe_hash: Option<u64>,
    last_hash: Option<u64>,
    /// Identical frames in a row (1 = the last frame was new) and since when.
    repeats: u32,
    repeats_since: Instant,
    rtp: Option<RtpTrack>,
    drift: Drift,
    still: Option<StillRun>,
    /// P-frames since the last keyframe (`u32::MAX` before the first).
    p_since_key: u32,
    /// P-frames between the last two keyframes.
    gop_p: Option<u32>,
    /// Arrival and size of recent frames, for the rates.
    recent: VecDeque<(Instant, u32)>,
    first_arrival: Option<Instant>,
}

impl Stream {
    fn long_gop(&self) -> bool {
        self.gop_p.is_some_and(|n| n >= STILL_LONG_GOP)
    }

    fn new(started: Instant) -> Self {
        Stream {
            started,
            last_arrival: None,
            keyframe_seen: false,
            last_keyframe_hash: None,
            last_hash: None,
            repeats: 0,
            repeats_since: started,
            rtp: None,
            drift: Drift::default(),
            still: None,
            p_since_key: u32::MAX,
            gop_p: None,
            recent: VecDeque::new(),
            first_arrival: None,
        }
    }
}

/// The liveness of one camera. See the module documentation for the rules
/// and the driver's contract.
#[derive(Debug, Clone)]
pub struct CameraLiveness {
    settings: CameraSettings,
    state: Liveness,
    timers: Timers<Timer, 2>,
    /// The latest monotonic instant handed in; time never goes back past it.
    latest: Instant,
    session_up: bool,
    stream: Stream,
    /// Start of the current unbroken stretch of good frames.
    good_since: Option<Instant>,
    baseline: Baseline,
    last_good_wall: Option<jiff::Timestamp>,
    picture: PictureCheck,
}

impl CameraLiveness {
    /// A camera with no session yet (`Connecting`).
    pub fn new(settings: CameraSettings, now: Stamp) -> Self {
        CameraLiveness {
            settings,
            state: Liveness::Connecting {
                since: now,
                step: Startup::Session,
            },
            timers: Timers::default(),
            latest: now.mono,
            session_up: false,
            stream: Stream::new(now.mono),
            good_since: None,
            baseline: Baseline::default(),
            last_good_wall: None,
            picture: PictureCheck::new(settings.picture),
        }
    }

    // ----- getters -------------------------------------------------------

    pub fn settings(&self) -> &CameraSettings {
        &self.settings
    }

    pub fn state(&self) -> &Liveness {
        &self.state
    }

    pub fn is_live(&self) -> bool {
        matches!(self.state, Liveness::Live { .. })
    }

    /// When the camera became live, if it is.
    pub fn live_since(&self) -> Option<Instant> {
        match self.state {
            Liveness::Live { since } => Some(since.mono),
            _ => None,
        }
    }

    /// Wall time of the last frame that carried new content (not a repeat,
    /// not one that broke a rule). Kept while the camera is offline.
    pub fn last_frame(&self) -> Option<jiff::Timestamp> {
        self.last_good_wall
    }

    /// Frames per second over the last few seconds (0 without a session).
    pub fn fps(&self) -> f64 {
        self.rate(|_| 1.0)
    }

    /// Video bitrate in kbit/s over the last few seconds.
    pub fn bitrate_kbps(&self) -> f64 {
        self.rate(|size| f64::from(size) * 8.0 / 1000.0)
    }

    /// Everything Home Assistant shows for this camera.
    pub fn status(&self, camera: &str) -> CameraStatus {
        CameraStatus {
            camera: camera.to_string(),
            state: self.state.kind(),
            reason: self.state.reason(),
            since: self.state.since().wall,
            fps: self.fps(),
            bitrate_kbps: self.bitrate_kbps(),
            last_frame: self.last_good_wall,
        }
    }

    /// The next instant at which [`handle_timeout`](Self::handle_timeout)
    /// must run. Can change after any `handle_*` call.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.timers.next()
    }

    // ----- inputs --------------------------------------------------------

    /// The RTSP session is playing. Starts over from `Connecting`, even if a
    /// session was already up (the shell reconnected without saying so).
    pub fn handle_up(&mut self, now: Stamp) -> Option<Transition> {
        let now = self.clamp(now);
        let before = self.state.clone();
        self.session_up = true;
        self.stream = Stream::new(now.mono);
        self.picture.restart();
        self.good_since = None;
        self.timers.stop_all();
        self.state = Liveness::Connecting {
            since: now,
            step: Startup::Keyframe,
        };
        self.transition(before, now)
    }

    /// The session failed or ended; `reason` is shown verbatim.
    pub fn handle_down(&mut self, now: Stamp, reason: &str) -> Option<Transition> {
        let now = self.clamp(now);
        let before = self.state.clone();
        self.session_up = false;
        self.stream = Stream::new(now.mono);
        self.good_since = None;
        self.timers.stop_all();
        let reason = match reason.trim() {
            "" => "the stream ended",
            text => text,
        };
        let same = matches!(&self.state, Liveness::Offline { reason: r, .. } if r == reason);
        if !same {
            self.state = Liveness::Offline {
                since: now,
                reason: reason.to_string(),
            };
        }
        self.transition(before, now)
    }

    /// One complete frame. Frames outside a session are ignored: they belong
    /// to one that has already ended.
    pub fn handle_frame(&mut self, now: Stamp, frame: &FrameSummary) -> Option<Transition> {
        let now = self.clamp(now);
        if !self.session_up {
            return None;
        }
        let before = self.state.clone();
        let t = now.mono;
        // A frame after the stall deadline proves the stall even if the
        // driver did not wake us in time.
        if self.timers.fire(Timer::Stall, t) {
            self.stall(now);
        }
        self.count(t, frame.size);
        let problem = self.check(t, frame);
        self.stream.last_arrival = Some(t);
        match t.checked_add(self.settings.stall_after) {
            Some(at) => self.timers.set(Timer::Stall, at),
            None => self.timers.stop(Timer::Stall),
        }
        match problem {
            Some(problem) => self.fail(now, problem),
            None => self.pass(now),
        }
        self.transition(before, now)
    }

    /// A sampled, decoded picture (or word that none can be decoded).
    /// Samples outside a session are ignored, like frames.
    pub fn handle_picture(&mut self, now: Stamp, sample: &PictureSample) -> Option<Transition> {
        let now = self.clamp(now);
        if !self.session_up {
            return None;
        }
        let before = self.state.clone();
        self.picture.handle_sample(now.mono, sample);
        match self.picture.fault() {
            Some(fault) => self.fail(now, Problem::Freeze(FreezeCause::Picture(fault))),
            // A picture that now allows it may complete a warmup that was
            // only waiting for it.
            None if self.good_since.is_some() => self.promote(now),
            None => {}
        }
        self.transition(before, now)
    }

    /// The instant from [`poll_timeout`](Self::poll_timeout) has come.
    /// Harmless when called early or more than once.
    pub fn handle_timeout(&mut self, now: Stamp) -> Option<Transition> {
        let now = self.clamp(now);
        let before = self.state.clone();
        for timer in Timer::ALL {
            // Fired in order: a stall clears the warmup, so it cannot also
            // promote the camera in the same call.
            if !self.timers.fire(timer, now.mono) {
                continue;
            }
            match timer {
                Timer::Stall => self.stall(now),
                Timer::Warmup => self.promote(now),
            }
        }
        self.prune(now.mono);
        self.transition(before, now)
    }

    // ----- internals -----------------------------------------------------

    /// Never lets monotonic time go backwards.
    fn clamp(&mut self, now: Stamp) -> Stamp {
        if now.mono < self.latest {
            Stamp {
                mono: self.latest,
                wall: now.wall,
            }
        } else {
            self.latest = now.mono;
            now
        }
    }

    fn transition(&self, before: Liveness, at: Stamp) -> Option<Transition> {
        (before != self.state).then(|| Transition {
            from: before.kind(),
            to: self.state.kind(),
            reason: self.state.reason(),
            at,
        })
    }

    fn stall(&mut self, now: Stamp) {
        // The stall timer is only armed by a frame, so there is one.
        let last = self.stream.last_arrival.unwrap_or(self.stream.started);
        let silent_for = now.mono.saturating_duration_since(last);
        // Frames after a silence start a new timeline for the clock check:
        // the ones held up during it would look like a slow clock.
        self.stream.drift.restart();
        self.stream.still = None;
        self.fail(now, Problem::Stall { silent_for });
    }

    /// Runs every content and timing rule on one frame, updating what each
    /// rule tracks, and returns the first problem found.
    fn check(&mut self, t: Instant, frame: &FrameSummary) -> Option<Problem> {
        let freeze_after = self.settings.freeze_after;
        let s = &mut self.stream;
        let mut problems: [Option<FreezeCause>; 5] = [None; 5];

        if frame.keyframe {
            self.picture.handle_keyframe(t, frame.hash);
            if s.last_keyframe_hash == Some(frame.hash) {
                problems[0] = Some(FreezeCause::IdenticalKeyframes);
            }
            s.last_keyframe_hash = Some(frame.hash);
            s.keyframe_seen = true;
        }

        if s.last_hash == Some(frame.hash) {
            s.repeats = s.repeats.saturating_add(1);
        } else {
            s.repeats = 1;
            s.repeats_since = t;
        }
        s.last_hash = Some(frame.hash);
        if s.repeats >= IDENTICAL_MIN_FRAMES
            && t.saturating_duration_since(s.repeats_since) >= freeze_after
        {
            problems[1] = Some(FreezeCause::IdenticalFrames { count: s.repeats });
        }

        // A clock rate of 0 never comes from a real stream; 1 Hz keeps the
        // arithmetic defined, and the clock check then fails the camera.
        let rate = frame.clock_rate.max(1);
        match &mut s.rtp {
            Some(rtp) if rtp.clock_rate == rate => {
                rtp.ext = rtp.ext.saturating_add(rtp_step(frame.rtp_ts, rtp.last_raw));
                rtp.last_raw = frame.rtp_ts;
                let behind = rtp.high - rtp.ext;
                if behind < 0 {
                    rtp.high = rtp.ext;
                    rtp.high_at = t;
                    rtp.behind = 0;
                } else if behind as f64 > RTP_JUMP_BACK.as_secs_f64() * f64::from(rate) {
                    let by = Duration::from_secs_f64(behind as f64 / f64::from(rate));
                    problems[2] = Some(FreezeCause::RtpJumpedBack { by });
                    rtp.high = rtp.ext;
                    rtp.high_at = t;
                    rtp.behind = 0;
                    s.drift.restart();
                } else {
                    rtp.behind = rtp.behind.saturating_add(1);
                    if rtp.behind >= RTP_STUCK_MIN_FRAMES
                        && t.saturating_duration_since(rtp.high_at) >= freeze_after
                    {
                        problems[3] = Some(FreezeCause::RtpStopped);
                    }
                }
            }
            _ => {
                s.rtp = Some(RtpTrack::new(frame.rtp_ts, rate, t));
                s.drift.restart();
            }
        }
        let media = s
            .rtp
            .as_ref()
            .map_or(0.0, |r| r.ext as f64 / f64::from(r.clock_rate));
        if let Some(ratio) = s.drift.measure(t, media) {
            // Written so that a NaN tolerance fails the camera, not passes it.
            if (ratio - 1.0).abs() <= self.settings.clock_tolerance {
                s.drift.checked = true;
                s.drift.suspect_since = None;
            } else {
                let since = *s.drift.suspect_since.get_or_insert(t);
                if t.saturating_duration_since(since) >= DRIFT_CONFIRM {
                    problems[4] = Some(FreezeCause::ClockDrift { ratio });
                }
            }
        }

        let still_after = self.settings.still_after();
        let still = if frame.keyframe {
            // A keyframe says nothing about motion; it neither breaks a run
            // of empty P-frames nor, while the run stands, counts as good.
            if s.p_since_key != u32::MAX {
                s.gop_p = Some(s.p_since_key);
            }
            s.p_since_key = 0;
            // In a long GOP, the next one may settle at another size.
            if s.long_gop()
                && let Some(run) = &mut s.still
            {
                run.level = None;
            }
            s.still.and_then(|run| run.verdict(t, still_after))
        } else if self.baseline.judges_as_empty(frame.size) {
            s.p_since_key = s.p_since_key.saturating_add(1);
            let settling = s.long_gop() && s.p_since_key <= STILL_SETTLE_FRAMES;
            let run = s
                .still
                .and_then(|run| run.extend(frame.size, settling))
                .unwrap_or_else(|| StillRun::start(t, frame.size, settling));
            s.still = Some(run);
            run.verdict(t, still_after)
        } else {
            s.p_since_key = s.p_since_key.saturating_add(1);
            s.still = None;
            self.baseline.learn(frame.size);
            None
        };

        // The picture's verdict stands between samples: frames that pass
        // the stream rules do not make a frozen picture good.
        let picture = self.picture.fault().map(FreezeCause::Picture);
        problems
            .into_iter()
            .flatten()
            .chain(still)
            .chain(picture)
            .next()
            .map(Problem::Freeze)
    }

    fn fail(&mut self, now: Stamp, problem: Problem) {
        // The first reason sticks until the camera has shown a good frame,
        // so one fault does not make the reason flicker between rules.
        let sticky = self.good_since.is_none() && self.state.kind() == problem.kind();
        self.good_since = None;
        self.timers.stop(Timer::Warmup);
        if !sticky {
            self.state = match problem {
                Problem::Stall { silent_for } => Liveness::Stalled {
                    since: now,
                    silent_for,
                },
                Problem::Freeze(cause) => Liveness::Frozen { since: now, cause },
            };
        }
    }

    fn pass(&mut self, now: Stamp) {
        if self.stream.repeats <= 1 {
            self.last_good_wall = Some(now.wall);
        }
        if !self.stream.keyframe_seen {
            return;
        }
        if self.good_since.is_none() {
            self.good_since = Some(now.mono);
            if let Liveness::Connecting {
                since,
                step: Startup::Keyframe,
            } = self.state
            {
                self.state = Liveness::Connecting {
                    since,
                    step: Startup::Checking,
                };
            }
        }
        self.promote(now);
    }

    /// Enters `Live` if the warmup is complete, or sets the timer for it.
    fn promote(&mut self, now: Stamp) {
        let Some(good_since) = self.good_since else {
            return;
        };
        if self.is_live() {
            return;
        }
        // A standing run of empty P-frames may be a hang the still rule has
        // not had time to judge; wait until a frame breaks it.
        let stream_ready = self.stream.keyframe_seen
            && self.stream.drift.checked
            && self.stream.drift.suspect_since.is_none()
            && self.stream.still.is_none_or(|run| run.frames < 2);
        let ready = stream_ready && self.picture.allows_live();
        match good_since.checked_add(self.settings.warmup) {
            Some(end) if end <= now.mono => {
                if ready {
                    self.state = Liveness::Live { since: now };
                } else if stream_ready
                    && self.picture.fault().is_none()
                    && let Liveness::Connecting { since, .. } = self.state
                {
                    // Only the picture is owed: say so, rather than let the
                    // owner think the stream is still being judged.
                    self.state = Liveness::Connecting {
                        since,
                        step: Startup::Picture,
                    };
                }
                // Not ready: the next frame will try again. A timer in the
                // past would spin.
                self.timers.stop(Timer::Warmup);
            }
            Some(end) => self.timers.set(Timer::Warmup, end),
            None => self.timers.stop(Timer::Warmup),
        }
    }

    fn count(&mut self, t: Instant, size: u32) {
        self.stream.first_arrival.get_or_insert(t);
        self.stream.recent.push_back((t, size));
        self.prune(t);
    }

    fn prune(&mut self, now: Instant) {
        let recent = &mut self.stream.recent;
        while recent
            .front()
            .is_some_and(|(a, _)| now.saturating_duration_since(*a) > STATS_WINDOW)
        {
            recent.pop_front();
        }
    }

    /// Sum of `value(size)` per second over the stats window.
    fn rate(&self, value: impl Fn(u32) -> f64) -> f64 {
        let Some(first) = self.stream.first_arrival else {
            return 0.0;
        };
        let now = self.latest;
        // Silent for `stall_after`: the honest rate is zero, even though the
        // window still holds older frames (no later call may come to prune it).
        let silent = self
            .stream
            .last_arrival
            .is_none_or(|last| now.saturating_duration_since(last) >= self.settings.stall_after);
        if silent {
            return 0.0;
        }
        let in_window = self
            .stream
            .recent
            .iter()
            .filter(|(a, _)| now.saturating_duration_since(*a) <= STATS_WINDOW);
        let elapsed = now.saturating_duration_since(first);
        if elapsed >= STATS_WINDOW {
            in_window.map(|(_, size)| value(*size)).sum::<f64>() / STATS_WINDOW.as_secs_f64()
        } else if elapsed.is_zero() {
            0.0
        } else {
            // Younger than the window: count what came after the first frame
            // over the time since it, so a fresh stream is not under-reported.
            in_window.skip(1).map(|(_, size)| value(*size)).sum::<f64>() / elapsed.as_secs_f64()
        }
    }
}

/// Ticks from `prev` to `next`, taken modulo 2^32: right whether or not the
/// shell extended the timestamps, for any real step under 6 hours.
fn rtp_step(next: i64, prev: i64) -> i64 {
    // Truncation to the 32 bits RTP carries is the point here.
    i64::from((next as u32).wrapping_sub(prev as u32) as i32)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn secs(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    /// The settings a camera gets when its config block gives only a URL.
    fn given_only_a_url() -> CameraSettings {
        // The test's own literal YAML; a parse failure is a broken test.
        let cam: crate::config::Camera =
            serde_yaml::from_str("url: rtsp://127.0.0.1/porch").unwrap();
        CameraSettings::from(&cam)
    }

    /// [`given_only_a_url`]'s stream thresholds with the picture check off:
    /// most tests here feed frame summaries only, to judge the stream rules;
    /// the picture rules have tests of their own ("frozen content").
    fn defaults() -> CameraSettings {
        CameraSettings {
            picture: PicturePolicy::Off,
            ..given_only_a_url()
        }
    }

    #[test]
    fn every_timer_has_its_own_slot() {
        crate::core::timer::assert_keys_fill_slots::<Timer, 2>();
    }

    /// A cheap, seeded pseudo-random source, so timelines are repeatable.
    #[derive(Debug, Clone)]
    struct Dice(u64);

    impl Dice {
        fn next(&mut self) -> u64 {
            // splitmix64
            self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^ (z >> 31)
        }

        fn below(&mut self, n: u64) -> u64 {
            if n == 0 { 0 } else { self.next() % n }
        }
    }

    /// A synthetic camera: frames at a steady rate with distinct hashes,
    /// a keyframe every `gop` frames, P-frame sizes around `p_size`, and
    /// arrival jitter up to `jitter`. `speed` is how fast the RTP clock runs
    /// against real time (1.0 for a live camera).
    #[derive(Debug, Clone)]
    struct Feed {
        interval: Duration,
        capture: Duration,
        rtp: i64,
        clock_rate: u32,
        speed: f64,
        index: u64,
        gop: u64,
        p_size: u32,
        jitter: Duration,
        last_arrival: Duration,
        dice: Dice,
        last: Option<FrameSummary>,
    }

    impl Feed {
        fn new(start: Duration, fps: f64) -> Feed {
            Feed {
                interval: Duration::from_secs_f64(1.0 / fps),
                capture: start,
                rtp: 1_234_567,
                clock_rate: 90_000,
                speed: 1.0,
                index: 0,
                gop: 30,
                p_size: 3_000,
                jitter: Duration::ZERO,
                last_arrival: start,
                dice: Dice(7),
                last: None,
            }
        }

        fn fps(mut self, fps: f64) -> Feed {
            self.interval = Duration::from_secs_f64(1.0 / fps);
            self
        }

        /// The next frame as the camera would send it, and when it arrives.
        fn next(&mut self) -> (Duration, FrameSummary) {
            let keyframe = self.index.is_multiple_of(self.gop.max(1));
            let size = if keyframe {
                40_000 + self.dice.below(5_000) as u32
            } else {
                self.p_size + self.dice.below(u64::from(self.p_size / 4 + 1)) as u32
            };
            let frame = FrameSummary {
                rtp_ts: self.rtp,
                clock_rate: self.clock_rate,
                size,
                keyframe,
                hash: self.dice.next(),
                lost: 0,
            };
            let jitter = Duration::from_nanos(self.dice.below(self.jitter.as_nanos() as u64 + 1));
            let arrival = (self.capture + jitter).max(self.last_arrival);
            self.last_arrival = arrival;
            self.index += 1;
            self.capture += self.interval;
            self.rtp += (self.interval.as_secs_f64() * f64::from(self.clock_rate) * self.speed)
                .round() as i64;
            self.last = Some(frame);
            (arrival, frame)
        }

        /// When the next frame would arrive, without jitter.
        fn due(&self) -> Duration {
            self.capture.max(self.last_arrival)
        }
    }

    /// A driver like `crate::runtime`: before each input it fires every
    /// timer that is due, and it records every transition with its time.
    struct Sim {
        cam: CameraLiveness,
        t0: Stamp,
        now: Duration,
        log: Vec<(Duration, Transition)>,
    }

    impl Sim {
        fn new(settings: CameraSettings) -> Sim {
            let t0 = Stamp {
                mono: Instant::now(),
                wall: jiff::Timestamp::from_second(1_795_000_000).unwrap(),
            };
            Sim {
                cam: CameraLiveness::new(settings, t0),
                t0,
                now: Duration::ZERO,
                log: Vec::new(),
            }
        }

        /// A camera whose session came up at time 0.
        fn up(settings: CameraSettings) -> Sim {
            let mut sim = Sim::new(settings);
            let t = sim.stamp(Duration::ZERO);
            let tr = sim.cam.handle_up(t);
            sim.record(Duration::ZERO, tr);
            sim
        }

        fn stamp(&self, at: Duration) -> Stamp {
            self.t0.after(at)
        }

        fn record(&mut self, at: Duration, tr: Option<Transition>) {
            if let Some(tr) = tr {
                assert_eq!(
                    tr.to,
                    self.cam.state().kind(),
                    "a transition names the new state"
                );
                self.log.push((at, tr));
            }
        }

        /// Fires every timer due up to `until`, then stops there.
        fn run_to(&mut self, until: Duration) {
            for _ in 0..1000 {
                let Some(due) = self.cam.poll_timeout() else {
                    break;
                };
                let due = due.saturating_duration_since(self.t0.mono);
                if due > until {
                    break;
                }
                let at = due.max(self.now);
                self.now = at;
                let tr = self.cam.handle_timeout(self.stamp(at));
                self.record(at, tr);
            }
            assert!(
                self.cam
                    .poll_timeout()
                    .is_none_or(|d| d > self.t0.mono + until),
                "timers spin"
            );
            self.now = self.now.max(until);
        }

        fn frame_at(&mut self, at: Duration, frame: FrameSummary) {
            self.run_to(at);
            let tr = self.cam.handle_frame(self.stamp(at), &frame);
            self.record(at, tr);
        }

        fn picture_at(&mut self, at: Duration, sample: &PictureSample) {
            self.run_to(at);
            let tr = self.cam.handle_picture(self.stamp(at), sample);
            self.record(at, tr);
        }

        /// Plays the feed until `until` with a decoded picture after every
        /// frame, made by `picture(frame index)`.
        fn play_with_pictures(
            &mut self,
            feed: &mut Feed,
            until: Duration,
            mut picture: impl FnMut(u64) -> Vec<u16>,
        ) {
            while feed.due() <= until {
                let index = feed.index;
                let (at, frame) = feed.next();
                self.frame_at(at, frame);
                let sample = PictureSample::Picture {
                    picture: crate::core::picture::Thumbnail {
                        width: 64,
                        height: 36,
                        cells: picture(index),
                    },
                    keyframe: frame.keyframe,
                };
                self.picture_at(at, &sample);
            }
            self.run_to(until);
        }

        /// Plays the feed until `until`, then runs the timers to `until`.
        fn play(&mut self, feed: &mut Feed, until: Duration) {
            while feed.due() <= until {
                let (at, frame) = feed.next();
                self.frame_at(at, frame);
            }
            self.run_to(until);
        }

        /// Plays the feed, but every frame is replaced by `edit` of it.
        fn play_edited(
            &mut self,
            feed: &mut Feed,
            until: Duration,
            mut edit: impl FnMut(FrameSummary) -> FrameSummary,
        ) {
            while feed.due() <= until {
                let (at, frame) = feed.next();
                self.frame_at(at, edit(frame));
            }
            self.run_to(until);
        }

        fn kind(&self) -> LivenessKind {
            self.cam.state().kind()
        }

        fn reason(&self) -> Option<String> {
            self.cam.state().reason()
        }

        /// When the camera last entered `kind`, as time since 0.
        fn entered(&self, kind: LivenessKind) -> Option<Duration> {
            self.log
                .iter()
                .rev()
                .find(|(_, tr)| tr.to == kind)
                .map(|(at, _)| *at)
        }

        /// When the camera first left Live after `after`.
        fn left_live_after(&self, after: Duration) -> Option<(Duration, &Transition)> {
            self.log
                .iter()
                .find(|(at, tr)| {
                    *at >= after && tr.from == LivenessKind::Live && tr.to != LivenessKind::Live
                })
                .map(|(at, tr)| (*at, tr))
        }
    }

    /// A camera that has been live for a while, and its feed.
    fn live_camera(settings: CameraSettings, until: Duration) -> (Sim, Feed) {
        live_camera_from(settings, Feed::new(ms(100), 15.0), until)
    }

    fn live_camera_from(settings: CameraSettings, mut feed: Feed, until: Duration) -> (Sim, Feed) {
        let mut sim = Sim::up(settings);
        sim.play(&mut feed, until);
        assert_eq!(
            sim.kind(),
            LivenessKind::Live,
            "healthy feed should be live: {:?}",
            sim.reason()
        );
        (sim, feed)
    }

    // ----- the way to Live ----------------------------------------------

    #[test]
    fn a_healthy_camera_is_live_after_the_warmup_and_not_before() {
        let mut sim = Sim::up(defaults());
        assert_eq!(
            sim.reason().as_deref(),
            Some("waiting for the first keyframe")
        );
        let mut feed = Feed::new(ms(100), 15.0);
        sim.play(&mut feed, ms(3_000));
        assert_eq!(sim.kind(), LivenessKind::Connecting);
        assert_eq!(sim.reason().as_deref(), Some("checking the stream"));
        sim.play(&mut feed, ms(3_200));
        assert!(sim.cam.is_live());
        // The first frame (a keyframe) came at 100 ms, the warmup is 3 s,
        // and the timer fires exactly then.
        assert_eq!(sim.entered(LivenessKind::Live), Some(ms(3_100)));
        assert_eq!(sim.cam.live_since(), Some(sim.t0.mono + ms(3_100)));
        let steps: Vec<_> = sim
            .log
            .iter()
            .map(|(_, t)| (t.to, t.reason.clone()))
            .collect();
        assert_eq!(
            steps,
            [
                (
                    LivenessKind::Connecting,
                    Some("waiting for the first keyframe".to_string())
                ),
                (
                    LivenessKind::Connecting,
                    Some("checking the stream".to_string())
                ),
                (LivenessKind::Live, None),
            ]
        );
    }

    #[test]
    fn a_new_camera_is_connecting_and_has_no_deadline() {
        let sim = Sim::new(defaults());
        assert_eq!(sim.kind(), LivenessKind::Connecting);
        assert_eq!(sim.reason().as_deref(), Some("connecting to the camera"));
        assert_eq!(sim.cam.poll_timeout(), None);
        assert_eq!(sim.cam.fps(), 0.0);
        assert_eq!(sim.cam.last_frame(), None);
    }

    #[test]
    fn frames_without_a_keyframe_never_make_a_camera_live_and_a_late_one_does() {
        let mut sim = Sim::up(defaults());
        let mut feed = Feed::new(ms(100), 15.0);
        feed.gop = u64::MAX; // only the first frame would be a keyframe...
        feed.index = 1; // ...and it is skipped: the camera joined mid-GOP
        sim.play(&mut feed, secs(8));
        assert_eq!(sim.kind(), LivenessKind::Connecting);
        assert_eq!(
            sim.reason().as_deref(),
            Some("waiting for the first keyframe")
        );
        feed.index = 0; // the keyframe comes 8 s late, as with a 10 s smart-codec GOP
        sim.play(&mut feed, secs(12));
        assert!(sim.cam.is_live());
        let went_live = sim.entered(LivenessKind::Live).unwrap();
        assert!(
            went_live >= secs(11) && went_live < ms(11_100),
            "live at {went_live:?}"
        );
    }

    // ----- stall -----------------------------------------------------------

    #[test]
    fn a_stall_is_caught_by_the_timer_at_stall_after() {
        let (mut sim, feed) = live_camera(defaults(), secs(10));
        let last = feed.last_arrival;
        assert_eq!(sim.cam.poll_timeout(), Some(sim.t0.mono + last + secs(2)));
        sim.run_to(secs(20));
        assert_eq!(sim.kind(), LivenessKind::Stalled);
        assert_eq!(sim.reason().as_deref(), Some("no frame for 2.0 s"));
        let (at, tr) = sim.left_live_after(Duration::ZERO).unwrap();
        assert_eq!(at - last, secs(2), "detected exactly at stall_after");
        assert_eq!(tr.to, LivenessKind::Stalled);
    }

    #[test]
    fn a_stall_is_also_seen_when_the_late_frame_comes_first() {
        let (mut sim, mut feed) = live_camera(defaults(), secs(10));
        let last = feed.last_arrival;
        // The driver never woke the machine; the next frame is 2.4 s late.
        let (_, frame) = feed.next();
        let at = last + ms(2_400);
        let tr = sim.cam.handle_frame(sim.stamp(at), &frame).unwrap();
        assert_eq!(
            (tr.from, tr.to),
            (LivenessKind::Live, LivenessKind::Stalled)
        );
        assert_eq!(tr.reason.as_deref(), Some("no frame for 2.4 s"));
        assert_eq!(tr.at.mono, sim.t0.mono + at);
    }

    #[test]
    fn a_session_that_sends_nothing_yet_is_still_connecting() {
        // Cameras may hold back their first frame for a whole GOP after
        // PLAY; the shell decides when that has lasted too long.
        let mut sim = Sim::up(defaults());
        assert_eq!(sim.cam.poll_timeout(), None);
        sim.run_to(secs(8));
        assert_eq!(sim.kind(), LivenessKind::Connecting);
        assert_eq!(
            sim.reason().as_deref(),
            Some("waiting for the first keyframe")
        );
        let tr = sim
            .cam
            .handle_down(sim.stamp(secs(10)), "no video for 10 s")
            .unwrap();
        assert_eq!(
            (tr.from, tr.to),
            (LivenessKind::Connecting, LivenessKind::Offline)
        );
        assert_eq!(tr.reason.as_deref(), Some("no video for 10 s"));
    }

    #[test]
    fn recovery_from_a_stall_goes_through_the_warmup() {
        let (mut sim, mut feed) = live_camera(defaults(), secs(10));
        let resume = feed.last_arrival + secs(5);
        sim.run_to(resume);
        feed.capture = resume;
        feed.last_arrival = resume;
        sim.play(&mut feed, resume + ms(2_900));
        assert_eq!(sim.kind(), LivenessKind::Stalled, "still recovering");
        assert_eq!(sim.reason().as_deref(), Some("no frame for 2.0 s"));
        sim.play(&mut feed, resume + ms(3_500));
        assert!(sim.cam.is_live());
        let back = sim.entered(LivenessKind::Live).unwrap();
        assert!(
            back >= resume + secs(3),
            "live again at {back:?}, resumed at {resume:?}"
        );
    }

    // ----- frozen content --------------------------------------------------

    fn with_pictures(policy: PicturePolicy) -> CameraSettings {
        CameraSettings {
            picture: policy,
            ..defaults()
        }
    }

    /// A scene with structure, and sensor noise that differs every frame.
    fn live_picture(index: u64) -> Vec<u16> {
        let mut dice = Dice(index.wrapping_mul(31).wrapping_add(5));
        (0..64 * 36u64)
            .map(|i| (800 + (i % 64) * 30 + dice.below(9)) as u16)
            .collect()
    }

    #[test]
    fn a_required_picture_check_holds_the_camera_until_its_picture_is_judged() {
        let mut sim = Sim::up(with_pictures(PicturePolicy::Required));
        let mut feed = Feed::new(Duration::ZERO, 15.0);
        // The stream alone would be live after the 3 s warmup; without a
        // single picture the camera is not.
        sim.play(&mut feed, secs(6));
        assert_eq!(sim.kind(), LivenessKind::Connecting);
        assert_eq!(
            sim.reason().as_deref(),
            Some("waiting for a checked picture")
        );
        sim.play_with_pictures(&mut feed, secs(12), live_picture);
        assert_eq!(sim.kind(), LivenessKind::Live);
    }

    #[test]
    fn a_camera_given_only_a_url_is_never_live_from_its_stream_alone() {
        // Outside a loaded config (which picks per camera), the stricter
        // default: a healthy stream for a minute, no picture, not live.
        let settings = given_only_a_url();
        assert_eq!(settings.picture, PicturePolicy::Required);
        let mut sim = Sim::up(settings);
        let mut feed = Feed::new(Duration::ZERO, 15.0);
        sim.play(&mut feed, secs(60));
        assert_eq!(sim.entered(LivenessKind::Live), None);
        assert_eq!(
            sim.reason().as_deref(),
            Some("waiting for a checked picture")
        );
    }

    #[test]
    fn a_picture_that_freezes_takes_a_live_camera_out_within_two_seconds() {
        let mut sim = Sim::up(with_pictures(PicturePolicy::Required));
        let mut feed = Feed::new(Duration::ZERO, 15.0);
        sim.play_with_pictures(&mut feed, secs(10), live_picture);
        assert_eq!(sim.kind(), LivenessKind::Live);
        // The sensor hangs; the encoder goes on, every frame a new hash.
        let frozen = live_picture(0);
        sim.play_with_pictures(&mut feed, secs(14), |_| frozen.clone());
        assert_eq!(sim.kind(), LivenessKind::Frozen);
        assert_eq!(
            sim.reason().as_deref(),
            Some("picture frozen: not even sensor noise changes")
        );
        let (after, _) = sim.left_live_after(secs(10)).unwrap();
        assert!(after - secs(10) <= secs(2), "took {:?}", after - secs(10));
        // Stream frames alone do not bring it back while the picture stands.
        sim.play(&mut feed, secs(20));
        assert_eq!(sim.kind(), LivenessKind::Frozen);
        // A live picture again: live after the warmup.
        sim.play_with_pictures(&mut feed, secs(30), live_picture);
        assert_eq!(sim.kind(), LivenessKind::Live);
    }

    #[test]
    fn pictures_are_ignored_when_the_check_is_off() {
        let mut sim = Sim::up(defaults());
        let mut feed = Feed::new(Duration::ZERO, 15.0);
        let frozen = live_picture(0);
        sim.play_with_pictures(&mut feed, secs(10), |_| frozen.clone());
        assert_eq!(sim.kind(), LivenessKind::Live);
    }

    #[test]
    fn a_byte_identical_freeze_at_15_fps_is_caught_within_300_ms() {
        let (mut sim, mut feed) = live_camera(defaults(), secs(10));
        let fault = feed.last_arrival;
        let frozen = feed.last.unwrap();
        // The camera keeps sending, on time, the last frame again.
        sim.play_edited(&mut feed, secs(12), |f| FrameSummary {
            rtp_ts: f.rtp_ts,
            ..frozen
        });
        assert_eq!(sim.kind(), LivenessKind::Frozen);
        let (at, tr) = sim.left_live_after(Duration::ZERO).unwrap();
        assert!(at - fault <= ms(300), "took {:?}", at - fault);
        assert_eq!(tr.reason.as_deref(), Some("4 identical frames"));
        assert_eq!(
            sim.reason().as_deref(),
            Some("4 identical frames"),
            "the reason does not flicker"
        );
    }

    #[test]
    fn freeze_after_sets_how_long_identical_frames_may_last() {
        let settings = CameraSettings {
            freeze_after: secs(1),
            ..defaults()
        };
        let (mut sim, mut feed) = live_camera(settings, secs(10));
        let fault = feed.last_arrival;
        let frozen = feed.last.unwrap();
        sim.play_edited(&mut feed, secs(12), |f| FrameSummary {
            rtp_ts: f.rtp_ts,
            ..frozen
        });
        let (at, tr) = sim.left_live_after(Duration::ZERO).unwrap();
        assert!(
            at - fault >= secs(1) && at - fault < ms(1_100),
            "took {:?}",
            at - fault
        );
        assert_eq!(tr.reason.as_deref(), Some("16 identical frames"));
    }

    #[test]
    fn two_byte_identical_keyframes_in_a_row_freeze_at_once() {
        let (mut sim, mut feed) = live_camera(defaults(), secs(10));
        // From the next keyframe on, one recorded GOP (2 s) plays in a loop
        // with fresh RTP times: every frame differs from its neighbour, but
        // the keyframe comes round again byte for byte.
        let mut recorded: Vec<u64> = Vec::new();
        let mut n = 0;
        let mut loop_started = None;
        sim.play_edited(&mut feed, secs(16), |f| {
            if f.keyframe && recorded.is_empty() {
                loop_started = Some(f.rtp_ts);
            }
            if loop_started.is_none() {
                return f;
            }
            if recorded.len() < 30 {
                recorded.push(f.hash);
                return f;
            }
            let hash = recorded[n % 30];
            n += 1;
            FrameSummary { hash, ..f }
        });
        assert_eq!(sim.kind(), LivenessKind::Frozen);
        let (at, tr) = sim.left_live_after(Duration::ZERO).unwrap();
        assert_eq!(
            tr.reason.as_deref(),
            Some("two keyframes in a row are byte-identical")
        );
        // The loop began at the keyframe after 10 s (10.1 s); its keyframe
        // came round 2 s later, and that frame was the one flagged.
        assert!(at >= ms(12_100) && at < ms(12_200), "flagged at {at:?}");
    }

    #[test]
    fn rtp_timestamps_that_stop_advancing_freeze_the_camera() {
        let (mut sim, mut feed) = live_camera(defaults(), secs(10));
        let fault = feed.last_arrival;
        let stuck = feed.last.unwrap().rtp_ts;
        sim.play_edited(&mut feed, secs(12), |f| FrameSummary { rtp_ts: stuck, ..f });
        assert_eq!(sim.kind(), LivenessKind::Frozen);
        let (at, tr) = sim.left_live_after(Duration::ZERO).unwrap();
        assert_eq!(
            tr.reason.as_deref(),
            Some("RTP timestamps stopped advancing")
        );
        assert!(at - fault <= ms(300), "took {:?}", at - fault);
    }

    #[test]
    fn rtp_time_jumping_back_is_a_freeze_and_the_camera_recovers_after_warmup() {
        let (mut sim, mut feed) = live_camera(defaults(), secs(10));
        let fault = feed.last_arrival;
        feed.rtp -= 60 * 90_000; // a recording starts over, a minute back
        sim.play(&mut feed, fault + ms(100));
        assert_eq!(sim.kind(), LivenessKind::Frozen);
        assert_eq!(
            sim.reason().as_deref(),
            Some("RTP timestamps jumped back 59.9 s")
        );
        sim.play(&mut feed, fault + secs(5));
        assert!(sim.cam.is_live(), "{:?}", sim.reason());
        assert!(sim.entered(LivenessKind::Live).unwrap() >= fault + secs(3));
    }

    #[test]
    fn a_stream_replayed_at_half_speed_never_becomes_live() {
        let mut sim = Sim::up(defaults());
        let mut feed = Feed::new(ms(100), 15.0);
        feed.speed = 0.5;
        sim.play(&mut feed, secs(20));
        assert_eq!(sim.kind(), LivenessKind::Frozen);
        assert_eq!(
            sim.reason().as_deref(),
            Some("RTP clock runs at 0.5x real time")
        );
        assert!(sim.log.iter().all(|(_, t)| t.to != LivenessKind::Live));
    }

    #[test]
    fn a_live_stream_switched_to_a_half_speed_replay_is_caught() {
        let (mut sim, mut feed) = live_camera(defaults(), secs(10));
        let fault = feed.last_arrival;
        feed.speed = 0.5;
        sim.play(&mut feed, secs(20));
        let (at, tr) = sim.left_live_after(Duration::ZERO).unwrap();
        assert_eq!(tr.to, LivenessKind::Frozen);
        assert!(
            tr.reason
                .as_deref()
                .unwrap()
                .starts_with("RTP clock runs at 0."),
            "{:?}",
            tr.reason
        );
        assert!(at - fault <= secs(5), "took {:?}", at - fault);
        assert_eq!(sim.reason().as_deref(), tr.reason.as_deref());
    }

    #[test]
    fn a_buffer_drained_at_twice_real_time_is_caught() {
        let (mut sim, mut feed) = live_camera(defaults(), secs(10));
        let fault = feed.last_arrival;
        // Frames come twice as often, each still a 15 fps step of RTP time.
        feed.interval = Duration::from_secs_f64(1.0 / 30.0);
        feed.speed = 2.0;
        sim.play(&mut feed, secs(20));
        let (at, tr) = sim.left_live_after(Duration::ZERO).unwrap();
        // Caught before the whole window runs fast, so the rate shown is
        // between the tolerance and the true 2x.
        let reason = tr.reason.as_deref().unwrap();
        let ratio: f64 = reason
            .strip_prefix("RTP clock runs at ")
            .and_then(|r| r.strip_suffix("x real time"))
            .and_then(|r| r.parse().ok())
            .unwrap_or_else(|| panic!("unexpected reason {reason}"));
        assert!((1.5..=2.0).contains(&ratio), "{reason}");
        assert!(at - fault <= secs(2), "took {:?}", at - fault);
    }

    #[test]
    fn a_short_hiccup_and_a_catch_up_burst_stay_live() {
        let (mut sim, mut feed) = live_camera(defaults(), secs(10));
        // Nothing for 1.5 s, then what was held up arrives at once, then on time.
        let hiccup = feed.last_arrival;
        feed.last_arrival = hiccup + ms(1_500);
        sim.play(&mut feed, secs(20));
        assert!(sim.cam.is_live(), "{:?}", sim.reason());
        assert_eq!(sim.left_live_after(Duration::ZERO), None);
    }

    // ----- still picture, encoder running ---------------------------------

    /// A hung sensor: P-frames shrink to all-skip frames of nearly the same
    /// size; keyframes and hashes still differ.
    fn hang(f: FrameSummary) -> FrameSummary {
        if f.keyframe {
            f
        } else {
            FrameSummary {
                size: 41 + (f.hash % 3) as u32,
                ..f
            }
        }
    }

    #[test]
    fn a_hung_sensor_behind_a_running_encoder_is_caught() {
        let (mut sim, mut feed) = live_camera(defaults(), secs(10));
        let fault = feed.last_arrival;
        sim.play_edited(&mut feed, secs(20), hang);
        assert_eq!(sim.kind(), LivenessKind::Frozen);
        let (at, tr) = sim.left_live_after(Duration::ZERO).unwrap();
        let tr = tr.clone();
        assert_eq!(
            tr.reason.as_deref(),
            Some("picture unchanged for 3.0 s (empty P-frames)")
        );
        assert!(at - fault <= ms(3_200), "took {:?}", at - fault);
        // And it stays caught: the learned baseline does not sink with it.
        let transitions = sim.log.len();
        sim.play_edited(&mut feed, secs(300), hang);
        assert_eq!(sim.kind(), LivenessKind::Frozen);
        assert_eq!(
            sim.log.len(),
            transitions,
            "no flicker: {:?}",
            &sim.log[transitions..]
        );
        assert_eq!(sim.reason(), tr.reason);
    }

    #[test]
    fn a_camera_already_hung_at_connect_is_not_judged_by_the_still_rule() {
        // Documented limit: no baseline to compare with.
        let mut sim = Sim::up(defaults());
        let mut feed = Feed::new(ms(100), 15.0);
        sim.play_edited(&mut feed, secs(30), hang);
        assert!(sim.cam.is_live());
    }

    #[test]
    fn quiet_night_scenes_are_never_flagged() {
        // Each case: a day stream, then for ten minutes a night stream of
        // small noisy frames (min size, spread, fps, GOP in seconds).
        let cases: [(&str, u32, u32, f64, f64); 6] = [
            // A quiet encoder with heavy noise reduction, same frame rate.
            ("quiet at 15 fps", 90, 60, 15.0, 10.0),
            // Smart FPS: the camera also drops to 2 fps at night.
            ("quiet at 2 fps", 120, 80, 2.0, 10.0),
            // Tiny frames, but the sensor noise still moves their size.
            ("tiny frames", 30, 20, 10.0, 10.0),
            // The same with a keyframe every second, so each GOP is judged
            // on its own few settled frames.
            ("tiny frames, 1 s GOP", 30, 20, 15.0, 1.0),
            // Just above the spread limit.
            ("barely varying", 60, 10, 15.0, 10.0),
            ("barely varying, 1 s GOP", 60, 10, 15.0, 1.0),
        ];
        for (name, min, spread, fps, gop) in cases {
            let (mut sim, feed) = live_camera(defaults(), secs(10));
            let mut feed = feed.fps(fps);
            feed.gop = (fps * gop) as u64;
            let mut dice = Dice(min.into());
            sim.play_edited(&mut feed, secs(600), |f| {
                if f.keyframe {
                    f
                } else {
                    FrameSummary {
                        size: min + dice.below(u64::from(spread) + 1) as u32,
                        ..f
                    }
                }
            });
            assert!(sim.cam.is_live(), "{name}: {:?}", sim.reason());
            assert_eq!(sim.left_live_after(Duration::ZERO), None, "{name}");
        }
    }

    /// Frame sizes of the bundled clips (`assets/clips/*.h264`: x264,
    /// 640x360, 15 fps, a keyframe every 15 frames), with the 4-byte length
    /// prefix per NAL unit that retina's frames carry.
    const MOVING_CLIP: [u32; 60] = [
        6489, 2433, 2079, 2154, 1990, 2196, 1824, 1928, 1884, 1925, 1996, 2121, 1977, 2014, 1978,
        8093, 2403, 1938, 1844, 1753, 2108, 1913, 1912, 1945, 2171, 2103, 2012, 1929, 2181, 2111,
        8872, 2531, 2161, 2176, 2073, 2221, 2119, 2104, 1952, 2090, 1968, 2207, 2004, 2102, 2183,
        9257, 2618, 2244, 2318, 2055, 2283, 2318, 2516, 2109, 2370, 2391, 2512, 2201, 2204, 1606,
    ];
    const STILL_CLIP: [u32; 60] = [
        9199, 95, 75, 48, 48, 17, 17, 17, 17, 17, 17, 17, 17, 17, 17, //
        10715, 30, 11, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, //
        10818, 35, 19, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, //
        10680, 34, 14, 14, 14, 14, 14, 14, 14, 14, 15, 14, 15, 15, 15,
    ];

    /// Plays a clip's frame sizes in a loop, keyframe every 15 frames.
    fn clip(sizes: &'static [u32; 60]) -> impl FnMut(FrameSummary) -> FrameSummary {
        let mut i = 0;
        move |f| {
            let frame = FrameSummary {
                size: sizes[i % 60],
                keyframe: i % 15 == 0,
                ..f
            };
            i += 1;
            frame
        }
    }

    #[test]
    fn x264_switching_to_a_still_picture_is_caught() {
        let mut sim = Sim::up(defaults());
        let mut feed = Feed::new(ms(100), 15.0);
        sim.play_edited(&mut feed, secs(10), clip(&MOVING_CLIP));
        assert!(sim.cam.is_live(), "{:?}", sim.reason());
        // 150 frames played: the still clip starts on a keyframe.
        let fault = feed.last_arrival;
        sim.play_edited(&mut feed, secs(30), clip(&STILL_CLIP));
        assert_eq!(sim.kind(), LivenessKind::Frozen);
        let (at, tr) = sim.left_live_after(Duration::ZERO).unwrap();
        assert_eq!(
            tr.reason.as_deref(),
            Some("picture unchanged for 3.0 s (empty P-frames)")
        );
        assert!(at - fault <= ms(3_200), "took {:?}", at - fault);
        assert_eq!(
            sim.log.last().map(|(t, _)| *t),
            Some(at),
            "no flicker after: {:#?}",
            sim.log
        );
    }

    #[test]
    fn the_x264_moving_clip_stays_live_for_an_hour() {
        let mut sim = Sim::up(defaults());
        let mut feed = Feed::new(ms(100), 15.0);
        sim.play_edited(&mut feed, secs(3_600), clip(&MOVING_CLIP));
        assert!(sim.cam.is_live());
        assert_eq!(sim.left_live_after(Duration::ZERO), None);
    }

    // ----- real cameras that must stay live --------------------------------

    #[test]
    fn real_camera_quirks_stay_live() {
        type Quirk = fn(&mut Feed, &mut Sim);
        let cases: [(&str, Quirk); 8] = [
            ("variable frame rate", |feed, sim| {
                let mut dice = Dice(3);
                for _ in 0..300 {
                    feed.interval = ms(40 + dice.below(120));
                    let until = feed.due();
                    sim.play(feed, until);
                }
            }),
            ("one lost packet and a lost frame", |feed, sim| {
                let (at, f) = feed.next();
                sim.frame_at(at, f);
                let _ = feed.next(); // never arrives
                let (at, f) = feed.next();
                sim.frame_at(at, FrameSummary { lost: 1, ..f });
                sim.play(feed, secs(40));
            }),
            ("keyframes 10 s apart", |feed, sim| {
                feed.gop = 150;
                sim.play(feed, secs(60));
            }),
            ("RTP timestamps extended past 2^32", |feed, sim| {
                sim.play(feed, secs(40));
                assert!(feed.rtp > 1 << 32);
            }),
            (
                "RTP timestamps wrapping as raw 32-bit values",
                |feed, sim| {
                    sim.play_edited(feed, secs(40), |f| FrameSummary {
                        rtp_ts: f.rtp_ts & 0xFFFF_FFFF,
                        ..f
                    });
                },
            ),
            ("frame rate lowered at night", |feed, sim| {
                feed.interval = ms(500);
                sim.play(feed, secs(60));
            }),
            ("network jitter of 150 ms", |feed, sim| {
                feed.jitter = ms(150);
                sim.play(feed, secs(60));
            }),
            ("B-frames out of order", |feed, sim| {
                // Decode order I P B B P B B: each B steps back in RTP time.
                let mut n = 0;
                sim.play_edited(feed, secs(40), |f| {
                    n += 1;
                    let shift = match n % 3 {
                        1 => 2 * 6_000,
                        _ => -6_000,
                    };
                    FrameSummary {
                        rtp_ts: f.rtp_ts + shift,
                        ..f
                    }
                });
            }),
        ];
        for (name, quirk) in cases {
            // Every case starts 20 s before the RTP timestamp passes 2^32.
            let mut feed = Feed::new(ms(100), 15.0);
            feed.rtp = (1_i64 << 32) - 20 * 90_000;
            let (mut sim, mut feed) = live_camera_from(defaults(), feed, secs(10));
            quirk(&mut feed, &mut sim);
            assert!(sim.cam.is_live(), "{name}: {:?}", sim.reason());
            assert_eq!(sim.left_live_after(Duration::ZERO), None, "{name}");
        }
    }

    #[test]
    fn time_going_backwards_does_not_panic_or_unsettle_a_live_camera() {
        let (mut sim, mut feed) = live_camera(defaults(), secs(10));
        let (at, frame) = feed.next();
        let earlier = sim.stamp(at - secs(5));
        assert_eq!(sim.cam.handle_frame(earlier, &frame), None);
        assert_eq!(sim.cam.handle_timeout(sim.stamp(Duration::ZERO)), None);
        assert!(sim.cam.is_live());
        sim.play(&mut feed, secs(15));
        assert!(sim.cam.is_live());
    }

    // ----- sessions ------------------------------------------------------

    #[test]
    fn the_shells_down_reason_is_shown_verbatim() {
        for reason in ["RTSP 401 Unauthorized", "connection refused"] {
            let (mut sim, _) = live_camera(defaults(), secs(10));
            let tr = sim.cam.handle_down(sim.stamp(secs(11)), reason).unwrap();
            assert_eq!(
                (tr.from, tr.to),
                (LivenessKind::Live, LivenessKind::Offline)
            );
            assert_eq!(tr.reason.as_deref(), Some(reason));
            assert_eq!(sim.cam.poll_timeout(), None);
            // The same failure again changes nothing; a new one does.
            assert_eq!(sim.cam.handle_down(sim.stamp(secs(12)), reason), None);
            let tr = sim
                .cam
                .handle_down(sim.stamp(secs(13)), "connection timed out")
                .unwrap();
            assert_eq!(
                (tr.from, tr.to),
                (LivenessKind::Offline, LivenessKind::Offline)
            );
            assert_eq!(tr.reason.as_deref(), Some("connection timed out"));
        }
    }

    #[test]
    fn frames_after_the_session_ended_are_ignored_and_a_new_session_starts_over() {
        let (mut sim, mut feed) = live_camera(defaults(), secs(10));
        let last_wall = sim.cam.last_frame();
        assert!(last_wall.is_some());
        sim.cam.handle_down(sim.stamp(secs(10)), "connection reset");
        let (at, frame) = feed.next();
        assert_eq!(sim.cam.handle_frame(sim.stamp(at), &frame), None);
        assert_eq!(sim.kind(), LivenessKind::Offline);
        assert_eq!(sim.cam.fps(), 0.0);
        assert_eq!(
            sim.cam.last_frame(),
            last_wall,
            "the last good frame is remembered"
        );
        let tr = sim.cam.handle_up(sim.stamp(secs(11))).unwrap();
        assert_eq!(
            (tr.from, tr.to),
            (LivenessKind::Offline, LivenessKind::Connecting)
        );
        assert_eq!(tr.reason.as_deref(), Some("waiting for the first keyframe"));
        feed.capture = secs(11);
        feed.last_arrival = secs(11);
        feed.index = 0;
        sim.now = secs(11);
        sim.play(&mut feed, secs(13));
        assert_eq!(
            sim.kind(),
            LivenessKind::Connecting,
            "a new session warms up again"
        );
        sim.play(&mut feed, secs(15));
        assert!(sim.cam.is_live());
    }

    #[test]
    fn a_repeated_up_while_live_starts_over() {
        let (mut sim, _) = live_camera(defaults(), secs(10));
        let tr = sim.cam.handle_up(sim.stamp(secs(10))).unwrap();
        assert_eq!(
            (tr.from, tr.to),
            (LivenessKind::Live, LivenessKind::Connecting)
        );
    }

    #[test]
    fn spurious_timeouts_change_nothing() {
        let (mut sim, _) = live_camera(defaults(), secs(10));
        let deadline = sim.cam.poll_timeout();
        for _ in 0..3 {
            assert_eq!(sim.cam.handle_timeout(sim.stamp(secs(10))), None);
        }
        assert_eq!(sim.cam.poll_timeout(), deadline);
        assert!(sim.cam.is_live());
    }

    #[test]
    fn rates_and_last_frame_for_home_assistant() {
        let (sim, feed) = live_camera(defaults(), secs(10));
        let fps = sim.cam.fps();
        assert!((14.5..=15.5).contains(&fps), "fps {fps}");
        // P-frames of 3000-3750 bytes, a 40-45 kB keyframe every 2 s, at 15 fps:
        // about 15 * 3375 * 8 + 0.5 * 42500 * 8 bits per second.
        let kbps = sim.cam.bitrate_kbps();
        assert!((500.0..=650.0).contains(&kbps), "kbps {kbps}");
        let last = sim.t0.after(feed.last_arrival).wall;
        assert_eq!(sim.cam.last_frame(), Some(last));
        let status = sim.cam.status("porch");
        assert_eq!(status.camera, "porch");
        assert_eq!(status.state, LivenessKind::Live);
        assert_eq!(status.reason, None);
        assert_eq!(status.since, sim.t0.after(ms(3_100)).wall);
        assert_eq!(status.last_frame, Some(last));
    }

    #[test]
    fn rates_fall_to_zero_while_stalled() {
        let (mut sim, feed) = live_camera(defaults(), secs(10));
        // Right when the stall timer fires, and with no later call.
        sim.run_to(feed.last_arrival + secs(2));
        assert_eq!(sim.kind(), LivenessKind::Stalled);
        assert_eq!(sim.cam.fps(), 0.0);
        assert_eq!(sim.cam.bitrate_kbps(), 0.0);
    }

    #[test]
    fn a_frozen_camera_that_goes_silent_is_stalled() {
        let (mut sim, mut feed) = live_camera(defaults(), secs(10));
        let frozen = feed.last.unwrap();
        sim.play_edited(&mut feed, secs(11), |f| FrameSummary {
            rtp_ts: f.rtp_ts,
            ..frozen
        });
        assert_eq!(sim.kind(), LivenessKind::Frozen);
        sim.run_to(secs(14));
        assert_eq!(sim.kind(), LivenessKind::Stalled);
        assert_eq!(sim.reason().as_deref(), Some("no frame for 2.0 s"));
    }

    #[test]
    fn recovery_from_a_freeze_goes_through_the_warmup() {
        let (mut sim, mut feed) = live_camera(defaults(), secs(10));
        let frozen = feed.last.unwrap();
        sim.play_edited(&mut feed, secs(12), |f| FrameSummary {
            rtp_ts: f.rtp_ts,
            ..frozen
        });
        let frozen_at = sim.entered(LivenessKind::Frozen).unwrap();
        // New pictures again from 12 s on.
        sim.play(&mut feed, ms(14_900));
        assert_eq!(sim.kind(), LivenessKind::Frozen);
        assert_eq!(sim.reason().as_deref(), Some("4 identical frames"));
        assert_eq!(
            sim.entered(LivenessKind::Frozen),
            Some(frozen_at),
            "no new episode"
        );
        sim.play(&mut feed, secs(16));
        assert!(sim.cam.is_live());
        assert!(sim.entered(LivenessKind::Live).unwrap() >= secs(15));
    }

    #[test]
    fn a_camera_that_reconnects_hung_is_caught_from_what_it_showed_before() {
        let (mut sim, mut feed) = live_camera(defaults(), secs(10));
        sim.cam.handle_down(sim.stamp(secs(10)), "connection reset");
        sim.cam.handle_up(sim.stamp(secs(11)));
        sim.now = secs(11);
        feed.capture = secs(11);
        feed.last_arrival = secs(11);
        feed.index = 0;
        sim.play_edited(&mut feed, secs(30), hang);
        assert_eq!(sim.kind(), LivenessKind::Frozen);
        assert_eq!(
            sim.reason().as_deref(),
            Some("picture unchanged for 3.0 s (empty P-frames)")
        );
        assert!(
            sim.log
                .iter()
                .all(|(at, t)| *at < secs(11) || t.to != LivenessKind::Live)
        );
    }

    #[test]
    fn a_camera_that_reconnects_into_a_quiet_night_becomes_live() {
        // The baseline learned by day is kept, and the night frames are small
        // enough to be judged; their noise is what keeps them live.
        let (mut sim, mut feed) = live_camera(defaults(), secs(10));
        sim.cam.handle_down(sim.stamp(secs(10)), "connection reset");
        sim.cam.handle_up(sim.stamp(secs(11)));
        sim.now = secs(11);
        feed.capture = secs(11);
        feed.last_arrival = secs(11);
        feed.index = 0;
        let mut dice = Dice(11);
        sim.play_edited(&mut feed, secs(120), |f| {
            if f.keyframe {
                f
            } else {
                FrameSummary {
                    size: 30 + dice.below(21) as u32,
                    ..f
                }
            }
        });
        assert!(sim.cam.is_live(), "{:?}", sim.reason());
        let live_at = sim.entered(LivenessKind::Live).unwrap();
        assert!(live_at < secs(15), "live only at {live_at:?}");
    }

    #[test]
    fn the_default_config_meets_the_detection_targets() {
        let d = defaults();
        assert_eq!(d.stall_after, secs(2));
        assert!(
            d.freeze_after <= ms(200),
            "needed for a 300 ms byte-identical freeze at 15 fps"
        );
        assert!(d.freeze_after >= crate::config::MIN_STALL_AFTER);
    }

    // ----- properties ------------------------------------------------------

    fn feed_strategy() -> impl Strategy<Value = Feed> {
        (
            2.0f64..30.0,
            0u64..100,
            1u64..300,
            200u32..20_000,
            any::<u64>(),
            any::<u32>(),
        )
            .prop_map(|(fps, jitter_ms, gop, p_size, seed, rtp)| {
                let mut feed = Feed::new(ms(50), fps);
                feed.jitter = ms(jitter_ms);
                feed.gop = gop;
                feed.p_size = p_size;
                feed.dice = Dice(seed);
                feed.rtp = i64::from(rtp);
                feed
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// A gap longer than `stall_after` is never Live at its end.
        #[test]
        fn a_gap_longer_than_stall_after_is_never_live_at_its_end(
            mut feed in feed_strategy(),
            before_ms in 0u64..12_000,
            stall_ms in 200u64..5_000,
            extra_ms in 1u64..3_000,
            drive_timers in any::<bool>(),
        ) {
            let settings = CameraSettings { stall_after: ms(stall_ms), ..defaults() };
            let mut sim = Sim::up(settings);
            feed.interval = feed.interval.min(ms(stall_ms) / 2);
            let (at, frame) = feed.next();
            sim.frame_at(at, frame);
            if drive_timers {
                sim.play(&mut feed, at + ms(before_ms));
            } else {
                while feed.due() <= at + ms(before_ms) {
                    let (t, f) = feed.next();
                    sim.cam.handle_frame(sim.stamp(t), &f);
                }
            }
            let gap_end = feed.last_arrival + ms(stall_ms) + ms(extra_ms);
            sim.cam.handle_timeout(sim.stamp(gap_end));
            prop_assert!(!sim.cam.is_live());
            prop_assert_eq!(sim.kind(), LivenessKind::Stalled);
        }

        /// A steady stream with jitter well under the thresholds never leaves
        /// Live once it is Live, and does become Live.
        #[test]
        fn a_steady_stream_never_leaves_live(mut feed in feed_strategy(), lost in 0u16..3) {
            let mut sim = Sim::up(defaults());
            let mut n = 0u32;
            while feed.due() <= secs(40) {
                let (at, f) = feed.next();
                n += 1;
                // Now and then a packet lost before a frame.
                let f = if n.is_multiple_of(97) { FrameSummary { lost, ..f } } else { f };
                sim.frame_at(at, f);
            }
            sim.run_to(feed.last_arrival + ms(100));
            prop_assert!(sim.cam.is_live(), "{:?}", sim.reason());
            // Every transition counts, those fired by timers between frames too.
            let left = sim.left_live_after(Duration::ZERO).map(|(at, t)| (at, t.clone()));
            prop_assert_eq!(left, None);
            // Live by warmup after the first keyframe (the first frame), plus
            // a frame or two of slack for the timer or the clock check.
            let live_at = sim.entered(LivenessKind::Live).unwrap_or(Duration::MAX);
            prop_assert!(live_at <= ms(50) + feed.jitter + ms(3_000) + feed.interval * 2);
        }
    }

    #[derive(Debug, Clone)]
    enum Input {
        Up,
        Down(String),
        Frame(FrameSummary),
        Timeout,
    }

    fn input_strategy() -> impl Strategy<Value = (i64, Input)> {
        let frame = (
            any::<i64>(),
            prop_oneof![Just(90_000u32), Just(0), any::<u32>()],
            any::<u32>(),
            any::<bool>(),
            0u64..4,
            any::<u16>(),
        )
            .prop_map(
                |(rtp_ts, clock_rate, size, keyframe, hash, lost)| FrameSummary {
                    rtp_ts,
                    clock_rate,
                    size,
                    keyframe,
                    hash,
                    lost,
                },
            );
        let input = prop_oneof![
            1 => Just(Input::Up),
            1 => ".{0,20}".prop_map(Input::Down),
            8 => frame.prop_map(Input::Frame),
            2 => Just(Input::Timeout),
        ];
        // Time steps, backwards ones included.
        (-2_000i64..5_000, input)
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// Any inputs in any order, with time jumping about: no panic, and
        /// the answers stay consistent with the state.
        #[test]
        fn arbitrary_inputs_never_panic(
            settings in (1u64..5_000, 1u64..5_000, 0u64..10_000, prop_oneof![Just(f64::NAN), 0.0f64..2.0]),
            inputs in proptest::collection::vec(input_strategy(), 0..200),
        ) {
            let settings = CameraSettings {
                stall_after: ms(settings.0),
                freeze_after: ms(settings.1),
                warmup: ms(settings.2),
                clock_tolerance: settings.3,
                picture: PicturePolicy::Off,
            };
            let mut sim = Sim::new(settings);
            let mut clock: i64 = 10_000_000;
            let mut up = false;
            for (step, input) in inputs {
                clock = (clock + step).max(0);
                let at = sim.stamp(Duration::from_millis(clock as u64));
                let tr = match &input {
                    Input::Up => { up = true; sim.cam.handle_up(at) }
                    Input::Down(r) => { up = false; sim.cam.handle_down(at, r) }
                    Input::Frame(f) => sim.cam.handle_frame(at, f),
                    Input::Timeout => sim.cam.handle_timeout(at),
                };
                if let Some(tr) = tr {
                    prop_assert_eq!(tr.to, sim.cam.state().kind());
                    prop_assert_eq!(tr.reason, sim.cam.state().reason());
                }
                prop_assert_eq!(sim.cam.is_live(), sim.cam.state().reason().is_none());
                prop_assert!(!sim.cam.is_live() || up, "live without a session");
                let deadline = sim.cam.poll_timeout();
                prop_assert!(sim.cam.handle_timeout(at).is_none(), "a deadline was already due");
                prop_assert_eq!(sim.cam.poll_timeout(), deadline);
                let status = sim.cam.status("c");
                prop_assert!(status.fps.is_finite() && status.fps >= 0.0);
                prop_assert!(status.bitrate_kbps.is_finite() && status.bitrate_kbps >= 0.0);
            }
        }
    }
}
