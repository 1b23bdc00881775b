//! Decoded pictures for the picture checks: a per-session sampler that picks
//! which frames to decode, and a decoder thread that turns them into small
//! grayscale thumbnails for the core (`crate::core::picture` judges them).
//!
//! Owns: which frames are decoded (every frame while the camera task is
//! told to look closely, and for the first seconds of each session; a
//! keyframe every few seconds otherwise), the bounded hand-off to the decoder thread (a frame that does not
//! fit is dropped, never waited for: the camera task must not be slowed by a
//! decoder), which decoder a session uses, and the reduction of a decoded
//! picture to a [`Thumbnail`] (and, now and then, a snapshot candidate).
//!
//! Two decoders ([`openh264`], [`ffmpeg`]):
//! - H.264 is decoded in-process by OpenH264 (the `openh264` crate builds
//!   its bundled C++ source with the system C++ compiler, so no system
//!   library is needed). OpenH264 cannot decode B-frames; a session whose
//!   frames keep failing moves to ffmpeg when it is installed.
//! - H.265 is decoded by an `ffmpeg` child process per session, when the
//!   `ffmpeg` program is installed ([`FfmpegProgram`]). Without it the
//!   sampler tells the core once per session ("cannot decode H.265 here:
//!   ffmpeg is not installed"), and the camera's `picture_check` setting
//!   decides whether it may still count as live.
//!
//! Every keyframe handed to a decoder carries the stream's parameter sets
//! ([`params`]): a fresh decoder cannot decode without them.
//!
//! Why decoding P-frames needs every frame: a P-frame only decodes on top of
//! the pictures before it, so a close look feeds the decoder every frame
//! since the last keyframe; once a frame has been dropped the sampler waits
//! for the next keyframe before it decodes anything but keyframes again.

pub mod ffmpeg;
pub mod openh264;
pub mod params;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{SyncSender, TrySendError, sync_channel};
use std::time::{Duration, Instant};

use tokio::sync::mpsc;

use super::snapshot::{self, Candidate, Pacer, Planes, SnapshotRequest, SnapshotTap};
use crate::core::picture::{PictureSample, Thumbnail, Undecodable};
use crate::core::{Event, EventKind};

/// Thumbnail size: 16:9, and small enough that a comparison costs nothing;
/// each cell of a 720p picture averages 20x20 pixels, which also averages
/// sensor noise down to where exact equality means a frozen picture.
pub const THUMB_W: usize = 64;
pub const THUMB_H: usize = 36;
/// Cell values are mean luma times this, so averaging keeps the fractions
/// that tell faint sensor noise from none.
pub const THUMB_SCALE: u32 = 16;
/// Frames waiting for the decoder; more are dropped.
const QUEUE: usize = 4;
/// Each session starts with a close look this long from its first
/// keyframe, so a camera is judged from its picture before it can first
/// become live (the picture checks need 1.5 s; the warmup is 3 s).
const CLOSE_LOOK_AT_START: Duration = Duration::from_secs(5);
/// Outside a close look, a keyframe is decoded at most this often: a 720p
/// keyframe costs OpenH264 about 15 ms, and cameras send one every 1 to 4 s
/// (docs/performance.md has the figures).
const IDLE_KEYFRAME_EVERY: Duration = Duration::from_secs(10);
/// Keyframes that fail to decode in a row before the core is told.
const DECODE_FAILURES: u32 = 3;

/// Which codec a session carries, as far as decoding goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PictureCodec {
    H264,
    H265,
}

/// Whether the core wants a close look (a window open or a delivery
/// running). Shared between the runtime and every camera task; a camera
/// task without one looks closely only at the start of each session.
#[derive(Debug, Clone, Default)]
pub struct CloseLook(Arc<AtomicBool>);

impl CloseLook {
    pub fn set(&self, on: bool) {
        self.0.store(on, Ordering::Relaxed);
    }
    pub fn get(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
}

/// Where the `ffmpeg` program is. By default it is looked up on `PATH`;
/// the environment variable `DOORWARDEN_FFMPEG` names another program, or
/// with `off` (or an empty value) turns ffmpeg decoding off.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FfmpegProgram {
    /// `ffmpeg` on `PATH`.
    OnPath,
    /// This program.
    At(PathBuf),
    /// Never use ffmpeg.
    Off,
}

impl Default for FfmpegProgram {
    fn default() -> Self {
        FfmpegProgram::from_env()
    }
}

impl FfmpegProgram {
    pub const ENV: &'static str = "DOORWARDEN_FFMPEG";

    /// From `DOORWARDEN_FFMPEG` (unset: on `PATH`).
    pub fn from_env() -> FfmpegProgram {
        match std::env::var_os(Self::ENV) {
            None => FfmpegProgram::OnPath,
            Some(v) if v.is_empty() || v == "off" => FfmpegProgram::Off,
            Some(v) => FfmpegProgram::At(PathBuf::from(v)),
        }
    }

    /// The program to run, if it is installed. Looked up at every session
    /// start, so installing ffmpeg needs no restart.
    pub fn find(&self) -> Option<PathBuf> {
        match self {
            FfmpegProgram::Off => None,
            FfmpegProgram::At(p) => is_program(p).then(|| p.clone()),
            FfmpegProgram::OnPath => std::env::var_os("PATH").and_then(|paths| {
                std::env::split_paths(&paths)
                    .map(|dir| dir.join("ffmpeg"))
                    .find(|p| is_program(p))
            }),
        }
    }
}

fn is_program(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

struct Job {
    /// The frame in Annex B framing (start codes), as decoders want it.
    data: Vec<u8>,
    keyframe: bool,
    received: Instant,
    /// More frames of this chain follow (a close look); otherwise the
    /// decoder is let go after this frame.
    more: bool,
}

/// One session's sampler. Lives in the camera task; its decoder thread ends
/// when the sampler is dropped (an ffmpeg child is killed then).
pub struct Sampler {
    codec: PictureCodec,
    jobs: Option<SyncSender<Job>>,
    close_look: CloseLook,
    /// Every frame since the last keyframe reached the decoder.
    chain_whole: bool,
    /// The session's first keyframe handed to the decoder.
    first_keyframe: Option<Instant>,
    /// The last keyframe handed to the decoder.
    last_keyframe: Option<Instant>,
    dropped: u64,
    /// A delivery event's picture still to be made: outside a close look
    /// the next keyframe is decoded for it rather than up to
    /// [`IDLE_KEYFRAME_EVERY`] later.
    snapshot_asked: Option<SnapshotRequest>,
    /// The session's ffmpeg child, if one runs, to kill when the session
    /// ends.
    child: ffmpeg::ChildSlot,
    /// The stream's parameter sets in Annex B (empty: none known), put in
    /// front of a keyframe that lacks them.
    parameter_sets: Vec<u8>,
}

impl Drop for Sampler {
    fn drop(&mut self) {
        self.child.kill();
    }
}

impl Sampler {
    /// Starts the decoder thread: OpenH264 for H.264, ffmpeg for H.265 (if
    /// it is installed; otherwise nothing is started and
    /// [`Sampler::unavailable`] says why).
    pub fn start(
        camera: String,
        codec: PictureCodec,
        events: mpsc::Sender<Event>,
        close_look: CloseLook,
        snapshots: Option<(SnapshotTap, SnapshotRequest)>,
        ffmpeg_program: &FfmpegProgram,
    ) -> Sampler {
        let snapshot_asked = snapshots.as_ref().map(|(_, request)| request.clone());
        let child = ffmpeg::ChildSlot::default();
        let ffmpeg = ffmpeg_program.find();
        let sink = Sink::new(camera.clone(), events, snapshots);
        let (tx, rx) = sync_channel::<Job>(QUEUE);
        let slot = child.clone();
        let spawned = match (codec, ffmpeg) {
            (PictureCodec::H264, fallback) => std::thread::Builder::new()
                .name(format!("decode-{camera}"))
                .spawn(move || openh264::run(rx, sink, fallback, slot)),
            (PictureCodec::H265, Some(program)) => std::thread::Builder::new()
                .name(format!("decode-{camera}"))
                .spawn(move || {
                    ffmpeg::Ffmpeg::new(program, PictureCodec::H265, slot).run(rx, sink)
                }),
            (PictureCodec::H265, None) => Err(std::io::Error::other("ffmpeg is not installed")),
        };
        let jobs = match spawned {
            Ok(_) => Some(tx),
            Err(e) => {
                if codec == PictureCodec::H264 {
                    tracing::warn!("cannot start a picture decoder thread: {e}");
                }
                None
            }
        };
        Sampler {
            codec,
            jobs,
            close_look,
            chain_whole: false,
            first_keyframe: None,
            last_keyframe: None,
            dropped: 0,
            snapshot_asked,
            child,
            parameter_sets: Vec::new(),
        }
    }

    /// The stream's parameters, at the session's start (from the SDP) and
    /// whenever retina reports new ones; kept in Annex B until the next.
    pub fn parameters(&mut self, params: Option<&retina::codec::VideoParameters>) {
        match params.and_then(params::from_retina) {
            Some(sets) => self.parameter_sets = sets,
            None => {
                if params.is_some() {
                    tracing::warn!(
                        "the stream's parameter sets are unusable; keyframes are decoded without them"
                    );
                }
                self.parameter_sets.clear();
            }
        }
    }

    /// What to tell the core at the start of a session whose pictures
    /// cannot be decoded here.
    pub fn unavailable(&self) -> Option<PictureSample> {
        if self.jobs.is_some() {
            return None;
        }
        Some(PictureSample::Undecodable(match self.codec {
            PictureCodec::H265 => Undecodable::H265,
            PictureCodec::H264 => Undecodable::NoDecoder,
        }))
    }

    /// Frames dropped because the decoder was behind.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    /// Hands one frame (retina's length-prefixed framing) to the decoder if
    /// it is sampled. Never blocks.
    pub fn offer(&mut self, data: &[u8], keyframe: bool, received: Instant) {
        let Some(jobs) = &self.jobs else { return };
        let close = self.close_look.get()
            || self
                .first_keyframe
                .is_none_or(|t| received.saturating_duration_since(t) < CLOSE_LOOK_AT_START);
        let key_due = close
            || self
                .snapshot_asked
                .as_ref()
                .is_some_and(SnapshotRequest::pending)
            || self
                .last_keyframe
                .is_none_or(|t| received.saturating_duration_since(t) >= IDLE_KEYFRAME_EVERY);
        let decodes = (keyframe && key_due) || (!keyframe && close && self.chain_whole);
        if !decodes {
            // Outside a close look only keyframes are decoded; the chain of
            // P-frames since the keyframe is then broken.
            self.chain_whole = false;
            return;
        }
        let mut annex_b = Vec::with_capacity(data.len() + 16 + self.parameter_sets.len());
        if keyframe && !params::has_sps(data, self.codec) {
            // A keyframe retina did not put the sets in front of (an H.265
            // CRA): the decoder may be fresh and know none.
            annex_b.extend_from_slice(&self.parameter_sets);
        }
        if !to_annex_b(data, &mut annex_b) {
            self.chain_whole = false;
            return;
        }
        let job = Job {
            data: annex_b,
            keyframe,
            received,
            more: close,
        };
        match jobs.try_send(job) {
            Ok(()) => {
                if keyframe {
                    // Outside a close look the decoder lets go of the
                    // picture, so P-frames cannot follow on it.
                    self.chain_whole = close;
                    self.last_keyframe = Some(received);
                    self.first_keyframe.get_or_insert(received);
                }
            }
            Err(TrySendError::Full(_)) => {
                self.dropped += 1;
                self.chain_whole = false;
            }
            Err(TrySendError::Disconnected(_)) => {
                self.chain_whole = false;
                self.jobs = None;
            }
        }
    }
}

/// Rewrites retina's framing (each NAL unit preceded by its length as 4
/// big-endian bytes) to Annex B (each preceded by 00 00 00 01). False if a
/// length runs past the end: the frame is not trusted.
pub fn to_annex_b(data: &[u8], out: &mut Vec<u8>) -> bool {
    let mut rest = data;
    while !rest.is_empty() {
        let Some((len, tail)) = rest.split_first_chunk::<4>() else {
            return false;
        };
        let len = u32::from_be_bytes(*len) as usize;
        let Some(nal) = tail.get(..len) else {
            return false;
        };
        out.extend_from_slice(&[0, 0, 0, 1]);
        out.extend_from_slice(nal);
        rest = &tail[len..];
    }
    true
}

/// Averages the luma plane into [`THUMB_W`] x [`THUMB_H`] cells. `stride`
/// is the distance between rows in `y`. A picture smaller than the
/// thumbnail, or a plane shorter than it claims, gives `None`.
pub fn thumbnail(y: &[u8], width: usize, height: usize, stride: usize) -> Option<Thumbnail> {
    if width < THUMB_W || height < THUMB_H || stride < width {
        return None;
    }
    if y.len() < stride * (height - 1) + width {
        return None;
    }
    let mut cells = Vec::with_capacity(THUMB_W * THUMB_H);
    for cy in 0..THUMB_H {
        let (y0, y1) = (cy * height / THUMB_H, (cy + 1) * height / THUMB_H);
        for cx in 0..THUMB_W {
            let (x0, x1) = (cx * width / THUMB_W, (cx + 1) * width / THUMB_W);
            let mut sum: u64 = 0;
            for row in y0..y1 {
                let line = &y[row * stride + x0..row * stride + x1];
                sum += line.iter().map(|&p| u64::from(p)).sum::<u64>();
            }
            let n = ((y1 - y0) * (x1 - x0)) as u64;
            let mean = (sum * u64::from(THUMB_SCALE) + n / 2) / n;
            cells.push(u16::try_from(mean).unwrap_or(u16::MAX));
        }
    }
    Some(Thumbnail {
        width: THUMB_W as u16,
        height: THUMB_H as u16,
        cells,
    })
}

/// The core is gone: the decoder thread ends.
#[derive(Debug)]
pub(crate) struct Closed;

/// Where a decoder thread's pictures go, whichever decoder made them:
/// thumbnails to the core, and now and then a snapshot candidate.
pub(crate) struct Sink {
    camera: String,
    events: mpsc::Sender<Event>,
    snapshots: Option<(SnapshotTap, SnapshotRequest)>,
    pacer: Pacer,
}

impl Sink {
    fn new(
        camera: String,
        events: mpsc::Sender<Event>,
        snapshots: Option<(SnapshotTap, SnapshotRequest)>,
    ) -> Sink {
        Sink {
            camera,
            events,
            snapshots,
            pacer: Pacer::default(),
        }
    }

    pub(crate) fn camera(&self) -> &str {
        &self.camera
    }

    /// One decoded picture. Whether it was judged: `Ok(false)` when the
    /// planes are too small for a thumbnail.
    pub(crate) fn picture(
        &mut self,
        planes: &Planes<'_>,
        keyframe: bool,
        received: Instant,
    ) -> Result<bool, Closed> {
        if let Some((tap, request)) = &self.snapshots
            && self.pacer.due(received, request.take_for(received))
        {
            // The owner's picture comes from the same decoded frame the
            // checks judge; whether it may be shown is the runtime's call,
            // once the core has judged it.
            if let Some(jpeg) = snapshot::jpeg(planes) {
                tap.offer(Candidate {
                    camera: self.camera.clone(),
                    taken_at: super::rtsp::stamp_at(received).wall,
                    jpeg,
                });
            }
        }
        // Every decoded frame is compared with the one before: a still
        // picture shows as frames without change, which a sample every few
        // frames would blur with the encoder's refinements.
        let Some(picture) = thumbnail(planes.y, planes.width, planes.height, planes.y_stride)
        else {
            return Ok(false);
        };
        let sample = PictureSample::Picture { picture, keyframe };
        self.send(received, sample)?;
        Ok(true)
    }

    /// The pictures cannot be judged, and why.
    pub(crate) fn undecodable(&self, at: Instant, why: Undecodable) -> Result<(), Closed> {
        self.send(at, PictureSample::Undecodable(why))
    }

    fn send(&self, at: Instant, sample: PictureSample) -> Result<(), Closed> {
        self.events
            .blocking_send(picture_event(&self.camera, at, sample))
            .map_err(|_| Closed)
    }
}

fn picture_event(camera: &str, received: Instant, sample: PictureSample) -> Event {
    Event {
        at: super::rtsp::stamp_at(received),
        kind: EventKind::CameraPicture {
            camera: camera.to_string(),
            sample,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn length_prefixed_frames_become_annex_b_and_bad_lengths_are_refused() {
        let mut out = Vec::new();
        assert!(to_annex_b(
            &[0, 0, 0, 2, 0x65, 0xAA, 0, 0, 0, 1, 0x41],
            &mut out
        ));
        assert_eq!(out, [0, 0, 0, 1, 0x65, 0xAA, 0, 0, 0, 1, 0x41]);
        assert!(!to_annex_b(&[0, 0, 0, 9, 0x65], &mut Vec::new()));
        assert!(!to_annex_b(&[0, 0, 1], &mut Vec::new()));
    }

    #[test]
    fn ffmpeg_is_found_only_where_an_executable_file_is() {
        let dir = tempfile::tempdir().expect("temp dir");
        let program = dir.path().join("ffmpeg");
        assert_eq!(FfmpegProgram::At(program.clone()).find(), None);
        std::fs::write(&program, "#!/bin/sh\n").expect("write");
        // A file that cannot be run is not a program.
        assert_eq!(FfmpegProgram::At(program.clone()).find(), None);
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&program, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        assert_eq!(
            FfmpegProgram::At(program.clone()).find(),
            Some(program.clone())
        );
        assert_eq!(FfmpegProgram::Off.find(), None);
    }

    #[test]
    fn thumbnail_cells_are_scaled_means_of_their_block() {
        // 128x72 picture: each cell averages a 2x2 block.
        let (w, h, stride) = (128, 72, 130);
        let mut y = vec![0u8; stride * h];
        for row in 0..h {
            for col in 0..w {
                y[row * stride + col] = if col < 2 && row < 2 && (row + col) % 2 == 0 {
                    11
                } else {
                    100
                };
            }
        }
        let t = thumbnail(&y, w, h, stride).expect("big enough");
        assert_eq!((t.width, t.height, t.cells.len()), (64, 36, 64 * 36));
        // (11 + 100 + 100 + 11) / 4 = 55.5, kept as 888 sixteenths.
        assert_eq!(t.cells[0], 888);
        assert_eq!(t.cells[1], 1600);
        assert!(thumbnail(&y, 32, 18, 32).is_none());
        assert!(thumbnail(&y[..100], w, h, stride).is_none());
    }
}
