//! Snapshots for the owner: a colour JPEG of a decoded camera picture, made
//! in the camera's decoder thread, handed to the runtime, and published
//! only when the camera was verifiably live when it was taken.
//!
//! Owns: the reduction of a decoded YUV 4:2:0 picture to a JPEG at most
//! [`MAX_WIDTH`] pixels wide, how often a decoder thread makes one
//! ([`SNAPSHOT_EVERY`]), the hand-off to the runtime (a bounded channel that
//! drops rather than waits: a camera task or a relock must never wait for
//! a picture meant for a notification), and the rule by which a candidate
//! counts as verified ([`verified`]).

use std::collections::BTreeMap;
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::mpsc;

use crate::core::CameraStatus;
use crate::core::liveness::LivenessKind;

/// Snapshots are for a person's eyes: a phone notification shows them a
/// few hundred pixels wide, and a smaller JPEG is cheaper to encode,
/// publish and keep retained.
pub const MAX_WIDTH: usize = 640;
/// A decoder thread makes at most one candidate this often; Home
/// Assistant's image entity needs no more, and encoding costs a few
/// milliseconds of a core.
pub const SNAPSHOT_EVERY: Duration = Duration::from_secs(5);
/// Candidates waiting for the runtime, over all cameras; more are dropped.
pub const QUEUE: usize = 8;
/// Good enough to recognise a courier, small enough for an MQTT message.
const QUALITY: u8 = 75;

/// A JPEG of one decoded picture, not yet known to be from a live period.
#[derive(Debug, Clone)]
pub struct Candidate {
    pub camera: String,
    /// When the frame it shows was received.
    pub taken_at: jiff::Timestamp,
    pub jpeg: Vec<u8>,
}

/// The sending side, one clone per decoder thread.
#[derive(Debug, Clone)]
pub struct SnapshotTap(mpsc::Sender<Candidate>);

impl SnapshotTap {
    pub fn channel() -> (SnapshotTap, mpsc::Receiver<Candidate>) {
        let (tx, rx) = mpsc::channel(QUEUE);
        (SnapshotTap(tx), rx)
    }

    /// Never blocks: a candidate the runtime has no room for is dropped
    /// (another follows within [`SNAPSHOT_EVERY`]).
    pub fn offer(&self, candidate: Candidate) {
        let _ = self.0.try_send(candidate);
    }
}

/// The runtime asking one camera's decoder thread for a picture now (at a
/// delivery event), whatever the pacing. The request remembers when it was
/// made: a frame received before it (still queued for the decoder when the
/// event happened) is not the picture of that moment.
#[derive(Debug, Clone, Default)]
pub struct SnapshotRequest(Arc<Mutex<Option<Instant>>>);

impl SnapshotRequest {
    /// Asks for the first frame received at or after `at`. A later ask
    /// before that frame came moves the time on: its picture serves both.
    pub fn ask(&self, at: Instant) {
        if let Ok(mut asked) = self.0.lock() {
            *asked = Some(at);
        }
    }

    /// Whether a picture was asked for and not yet made.
    pub fn pending(&self) -> bool {
        self.0.lock().is_ok_and(|asked| asked.is_some())
    }

    /// Whether the frame received at `received` answers the request; if so
    /// the request is done.
    pub fn take_for(&self, received: Instant) -> bool {
        let Ok(mut asked) = self.0.lock() else {
            return false;
        };
        match *asked {
            Some(at) if at <= received => {
                *asked = None;
                true
            }
            _ => false,
        }
    }
}

/// Per decoder thread: whether the picture just decoded should become a
/// candidate.
#[derive(Debug, Default)]
pub struct Pacer {
    last: Option<Instant>,
}

impl Pacer {
    /// `asked`: the runtime wants a picture now (a delivery event).
    pub fn due(&mut self, received: Instant, asked: bool) -> bool {
        let due = asked
            || self
                .last
                .is_none_or(|t| received.saturating_duration_since(t) >= SNAPSHOT_EVERY);
        if due {
            self.last = Some(received);
        }
        due
    }
}

/// Whether a candidate taken at `taken_at` may be shown as a picture of a
/// live camera: the camera is live now, and has been since before the
/// picture was taken (a picture from before the camera became live, or
/// from a period it was not, is never published as verified).
pub fn verified(status: &CameraStatus, taken_at: jiff::Timestamp) -> bool {
    status.state == LivenessKind::Live && status.since <= taken_at
}

/// A candidate is held this long before it is judged: the picture checks
/// catch a frozen or replayed picture within about 2 s, so a frame taken
/// just before such a fault was caught is not shown as live.
pub const HOLD: Duration = Duration::from_secs(3);

/// Candidates of one camera waiting out their hold. More than one: a
/// delivery event's picture must not be pushed out by the next event's
/// before either is judged (events can come a second apart: unlocked, door
/// opened).
const PENDING_PER_CAMERA: usize = 3;

/// The runtime's side: each camera's candidates waiting out [`HOLD`], and
/// the time of the last verified snapshot published per camera.
#[derive(Debug, Default)]
pub struct Gallery {
    pending: BTreeMap<String, VecDeque<Candidate>>,
    published: BTreeMap<String, jiff::Timestamp>,
}

impl Gallery {
    /// Queued behind the camera's earlier candidates; beyond
    /// [`PENDING_PER_CAMERA`] the oldest is dropped (a newer one shows the
    /// same moment or a later one).
    pub fn offer(&mut self, candidate: Candidate) {
        let queue = self.pending.entry(candidate.camera.clone()).or_default();
        if queue.len() >= PENDING_PER_CAMERA {
            queue.pop_front();
        }
        queue.push_back(candidate);
    }

    /// The candidates whose hold is over at `now` and that are verified by
    /// the camera's status now, oldest first; the others are dropped (the
    /// camera keeps its last verified snapshot and that snapshot's time).
    pub fn due(
        &mut self,
        now: jiff::Timestamp,
        status: impl Fn(&str) -> Option<CameraStatus>,
    ) -> Vec<Candidate> {
        let hold = jiff::SignedDuration::try_from(HOLD).unwrap_or_default();
        let ripe = |c: &Candidate| c.taken_at.checked_add(hold).is_ok_and(|t| t <= now);
        let mut out = Vec::new();
        for (camera, queue) in &mut self.pending {
            if !queue.front().is_some_and(ripe) {
                continue;
            }
            let now_status = status(camera);
            while queue.front().is_some_and(ripe) {
                let Some(c) = queue.pop_front() else { break };
                if now_status.as_ref().is_some_and(|s| verified(s, c.taken_at)) {
                    self.published.insert(camera.clone(), c.taken_at);
                    out.push(c);
                }
            }
        }
        self.pending.retain(|_, q| !q.is_empty());
        out
    }

    /// When the last verified snapshot of `camera` was taken.
    pub fn published(&self, camera: &str) -> Option<jiff::Timestamp> {
        self.published.get(camera).copied()
    }
}

/// The planes of a decoded 4:2:0 picture.
pub struct Planes<'a> {
    pub y: &'a [u8],
    pub u: &'a [u8],
    pub v: &'a [u8],
    pub width: usize,
    pub height: usize,
    pub y_stride: usize,
    pub uv_stride: usize,
}

/// A colour JPEG of the picture, scaled down (by a whole factor, nearest
/// pixel) to at most [`MAX_WIDTH`] wide. `None` when the planes are shorter
/// than their sizes claim or the encoder fails.
pub fn jpeg(p: &Planes<'_>) -> Option<Vec<u8>> {
    let (w, h) = (p.width, p.height);
    if w < 2 || h < 2 || p.y_stride < w || p.uv_stride < w.div_ceil(2) {
        return None;
    }
    if p.y.len() < p.y_stride * (h - 1) + w {
        return None;
    }
    let uv_len = p.uv_stride * (h.div_ceil(2) - 1) + w.div_ceil(2);
    if p.u.len() < uv_len || p.v.len() < uv_len {
        return None;
    }
    let step = w.div_ceil(MAX_WIDTH).max(1);
    let (ow, oh) = (w / step, h / step);
    let (ow16, oh16) = (u16::try_from(ow).ok()?, u16::try_from(oh).ok()?);
    let mut rgb = Vec::with_capacity(ow * oh * 3);
    for oy in 0..oh {
        let row = oy * step;
        for ox in 0..ow {
            let col = ox * step;
            let luma = p.y[row * p.y_stride + col];
            let ci = (row / 2) * p.uv_stride + col / 2;
            rgb.extend_from_slice(&to_rgb(luma, p.u[ci], p.v[ci]));
        }
    }
    let mut out = Vec::with_capacity(rgb.len() / 10);
    jpeg_encoder::Encoder::new(&mut out, QUALITY)
        .encode(&rgb, ow16, oh16, jpeg_encoder::ColorType::Rgb)
        .ok()?;
    Some(out)
}

/// BT.601 limited range (what H.264 cameras send unless they say
/// otherwise) to full-range RGB, in integers scaled by 256.
fn to_rgb(y: u8, u: u8, v: u8) -> [u8; 3] {
    let c = 298 * (i32::from(y) - 16);
    let d = i32::from(u) - 128;
    let e = i32::from(v) - 128;
    let clamp = |x: i32| ((x + 128) >> 8).clamp(0, 255) as u8;
    [
        clamp(c + 409 * e),
        clamp(c - 100 * d - 208 * e),
        clamp(c + 516 * d),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(state: LivenessKind, since: &str) -> CameraStatus {
        CameraStatus {
            camera: "porch".into(),
            state,
            reason: None,
            since: since.parse().expect("test timestamp"),
            fps: 15.0,
            bitrate_kbps: 500.0,
            last_frame: None,
        }
    }

    fn at(s: &str) -> jiff::Timestamp {
        s.parse().expect("test timestamp")
    }

    #[test]
    fn only_a_picture_taken_while_the_camera_was_already_live_is_verified() {
        let live = status(LivenessKind::Live, "2026-12-07T06:00:10Z");
        assert!(verified(&live, at("2026-12-07T06:00:12Z")));
        assert!(verified(&live, at("2026-12-07T06:00:10Z")));
        // Taken before the camera became live (while it was still being
        // judged, or frozen): live now does not make that picture live.
        assert!(!verified(&live, at("2026-12-07T06:00:09Z")));
        for state in [
            LivenessKind::Connecting,
            LivenessKind::Stalled,
            LivenessKind::Frozen,
            LivenessKind::Offline,
        ] {
            let not_live = status(state, "2026-12-07T06:00:00Z");
            assert!(
                !verified(&not_live, at("2026-12-07T06:00:12Z")),
                "{state:?}"
            );
        }
    }

    #[test]
    fn the_gallery_publishes_a_held_candidate_only_if_the_camera_stayed_live() {
        let mut gallery = Gallery::default();
        let candidate = |camera: &str, taken: &str| Candidate {
            camera: camera.into(),
            taken_at: at(taken),
            jpeg: vec![0xFF, 0xD8],
        };
        let live = |_: &str| Some(status(LivenessKind::Live, "2026-12-07T06:00:00Z"));
        gallery.offer(candidate("porch", "2026-12-07T06:00:10Z"));
        // Still within its hold: a fault in it may not be caught yet.
        assert!(gallery.due(at("2026-12-07T06:00:12Z"), live).is_empty());
        let out = gallery.due(at("2026-12-07T06:00:13Z"), live);
        assert_eq!(out.len(), 1);
        assert_eq!(gallery.published("porch"), Some(at("2026-12-07T06:00:10Z")));
        // The next one: the camera froze during its hold. Dropped, and the
        // published time stays that of the last verified picture.
        gallery.offer(candidate("porch", "2026-12-07T06:00:15Z"));
        let frozen = |_: &str| Some(status(LivenessKind::Frozen, "2026-12-07T06:00:16Z"));
        assert!(gallery.due(at("2026-12-07T06:00:19Z"), frozen).is_empty());
        assert_eq!(gallery.published("porch"), Some(at("2026-12-07T06:00:10Z")));
        // Live again since 06:00:20: a picture from 06:00:18 was taken
        // before that and is never shown.
        gallery.offer(candidate("porch", "2026-12-07T06:00:18Z"));
        let again = |_: &str| Some(status(LivenessKind::Live, "2026-12-07T06:00:20Z"));
        assert!(gallery.due(at("2026-12-07T06:00:25Z"), again).is_empty());
        assert_eq!(gallery.published("porch"), Some(at("2026-12-07T06:00:10Z")));
        assert_eq!(gallery.published("garage"), None);
    }

    #[test]
    fn the_pacer_lets_one_picture_through_per_period() {
        let mut pacer = Pacer::default();
        let t0 = Instant::now();
        assert!(pacer.due(t0, false));
        assert!(!pacer.due(t0 + Duration::from_secs(1), false));
        // A delivery event asks for one now.
        assert!(pacer.due(t0 + Duration::from_secs(2), true));
        assert!(!pacer.due(t0 + Duration::from_secs(3), false));
        let t1 = t0 + Duration::from_secs(2);
        assert!(!pacer.due(t1 + SNAPSHOT_EVERY - Duration::from_millis(1), false));
        assert!(pacer.due(t1 + SNAPSHOT_EVERY, false));
    }

    #[test]
    fn a_request_is_answered_by_the_first_frame_received_after_it() {
        let request = SnapshotRequest::default();
        let t0 = Instant::now();
        assert!(!request.pending());
        assert!(!request.take_for(t0));
        let asked = t0 + Duration::from_millis(500);
        request.clone().ask(asked);
        assert!(request.pending());
        // A frame received before the event, decoded after it: not the
        // picture of the moment.
        assert!(!request.take_for(t0 + Duration::from_millis(400)));
        assert!(request.pending());
        assert!(request.take_for(asked + Duration::from_millis(66)));
        assert!(!request.pending());
        assert!(!request.take_for(asked + Duration::from_millis(133)));
    }

    #[test]
    fn a_later_candidate_does_not_push_out_an_events_picture() {
        let mut gallery = Gallery::default();
        let candidate = |taken: &str| Candidate {
            camera: "porch".into(),
            taken_at: at(taken),
            jpeg: vec![0xFF, 0xD8],
        };
        let live = |_: &str| Some(status(LivenessKind::Live, "2026-12-07T06:00:00Z"));
        // Unlocked at :10, door opened at :11: each event's picture is
        // judged after its own hold, in order.
        gallery.offer(candidate("2026-12-07T06:00:10Z"));
        gallery.offer(candidate("2026-12-07T06:00:11Z"));
        let first = gallery.due(at("2026-12-07T06:00:13Z"), live);
        assert_eq!(
            first.iter().map(|c| c.taken_at).collect::<Vec<_>>(),
            [at("2026-12-07T06:00:10Z")]
        );
        let second = gallery.due(at("2026-12-07T06:00:14Z"), live);
        assert_eq!(
            second.iter().map(|c| c.taken_at).collect::<Vec<_>>(),
            [at("2026-12-07T06:00:11Z")]
        );
        assert_eq!(gallery.published("porch"), Some(at("2026-12-07T06:00:11Z")));
        // A burst keeps the newest few, never growing without bound.
        for s in 20..30 {
            gallery.offer(candidate(&format!("2026-12-07T06:00:{s}Z")));
        }
        let burst = gallery.due(at("2026-12-07T06:01:00Z"), live);
        assert_eq!(
            burst.iter().map(|c| c.taken_at).collect::<Vec<_>>(),
            [
                at("2026-12-07T06:00:27Z"),
                at("2026-12-07T06:00:28Z"),
                at("2026-12-07T06:00:29Z")
            ]
        );
    }

    #[test]
    fn a_720p_picture_becomes_a_640_wide_colour_jpeg() {
        let (w, h) = (1280, 720);
        // Red left half, blue right half (BT.601 limited range).
        let y = vec![81u8; w * h];
        let mut u = vec![0u8; w / 2 * h / 2];
        let mut v = vec![0u8; w / 2 * h / 2];
        for row in 0..h / 2 {
            for col in 0..w / 2 {
                let red = col < w / 4;
                u[row * w / 2 + col] = if red { 90 } else { 240 };
                v[row * w / 2 + col] = if red { 240 } else { 110 };
            }
        }
        let planes = Planes {
            y: &y,
            u: &u,
            v: &v,
            width: w,
            height: h,
            y_stride: w,
            uv_stride: w / 2,
        };
        let out = jpeg(&planes).expect("encodes");
        assert_eq!(&out[..2], &[0xFF, 0xD8]);
        assert_eq!(&out[out.len() - 2..], &[0xFF, 0xD9]);
        // The frame header (SOF0) gives height then width.
        let sof = out
            .windows(2)
            .position(|w| w == [0xFF, 0xC0])
            .expect("baseline frame header");
        let height = u16::from_be_bytes([out[sof + 5], out[sof + 6]]);
        let width = u16::from_be_bytes([out[sof + 7], out[sof + 8]]);
        assert_eq!((width, height), (640, 360));
        // Three components: colour, not grayscale.
        assert_eq!(out[sof + 9], 3);
        assert!(to_rgb(81, 90, 240)[0] > 200);
        let short = Planes {
            y: &y[..100],
            ..planes
        };
        assert!(jpeg(&short).is_none());
    }
}
