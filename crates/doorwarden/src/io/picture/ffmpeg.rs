//! Decoding through an `ffmpeg` child process: H.265 always, and H.264
//! that OpenH264 cannot decode (B-frames).
//!
//! Owns: the child's life (started for a chain of frames, stdin closed
//! after it, killed and reaped when the session ends or the child stops
//! keeping up, started again with a backoff after it dies), the frames in
//! flight between its stdin and stdout, and reading its pictures back.
//!
//! Why a child process and not a library: no H.265 decoder builds here
//! without a `-dev` package or a download at build time, and a decoder
//! crash on a hostile camera's bitstream then ends only the child, never
//! the bridge that must relock doors.
//!
//! How frames go through it. The session's decoder thread (the sampler's
//! bounded queue in front, so the camera task never waits) writes each
//! frame in Annex B framing to the child's stdin; the child decodes it,
//! scales it to [`OUT_W`] x [`OUT_H`] (area averaging) and writes it as raw
//! YUV 4:2:0 to stdout, where a reader thread per child takes each picture
//! for the checks (the thumbnail cells are computed here, from the luma
//! plane, so the fractions of a level that tell faint sensor noise from
//! none survive) and now and then for a snapshot. Raw frames carry no
//! label, so the reader pairs each picture with the oldest frame written
//! and not yet answered: ffmpeg answers every frame once, in order (no
//! frame-rate conversion, `-fps_mode passthrough`).
//!
//! A raw Annex B stream has no end-of-frame mark, so ffmpeg's parser only
//! hands a frame to the decoder when the next one starts; an access unit
//! delimiter written after each frame of a close look is that start. Outside
//! a close look each decoded keyframe gets a child of its own whose stdin
//! is closed after the keyframe, which flushes it: measured, a child kept
//! between keyframes 10 s apart holds about 60 MiB, while starting one
//! costs about 90 ms of CPU (docs/performance.md, "H.265").
//!
//! The child sees only frames: not the URL, not credentials, not the
//! environment (cleared).

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::snapshot::Planes;
use super::{DECODE_FAILURES, Job, PictureCodec, Sink};
use crate::core::picture::Undecodable;

/// Size of the pictures the child writes: big enough for the owner's
/// snapshot (at most 640 wide) and for 10x10 pixels a thumbnail cell.
pub const OUT_W: usize = 640;
pub const OUT_H: usize = 360;
const FRAME_BYTES: usize = OUT_W * OUT_H * 3 / 2;
/// Frames written and not yet answered before the child counts as stuck
/// and is killed: ffmpeg holds back one frame (see above); a child that
/// holds many is not decoding.
const IN_FLIGHT: usize = 8;
const BACKOFF_MIN: Duration = Duration::from_secs(1);
const BACKOFF_MAX: Duration = Duration::from_secs(30);
/// A child given no frame for this long is let go (a close look sends
/// 15 a second; outside one a child lives for one keyframe).
const LINGER: Duration = Duration::from_secs(1);
/// How long a child whose stdin was closed may take to finish.
const EXIT_WAIT: Duration = Duration::from_secs(2);
/// stderr lines logged per child; the rest are counted.
const STDERR_LINES: usize = 20;
const STDERR_LINE_MAX: usize = 300;

/// The session's running child, shared with the sampler so that ending the
/// session kills it even while the decoder thread is blocked writing to it.
#[derive(Clone, Default)]
pub(crate) struct ChildSlot(Arc<Mutex<Option<Child>>>);

impl ChildSlot {
    fn lock(&self) -> MutexGuard<'_, Option<Child>> {
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Kills the running child, if any; the decoder thread reaps it.
    pub(crate) fn kill(&self) {
        if let Some(child) = self.lock().as_mut() {
            let _ = child.kill();
        }
    }
}

/// One session's use of ffmpeg.
pub(super) struct Ffmpeg {
    program: PathBuf,
    codec: PictureCodec,
    slot: ChildSlot,
    backoff: Duration,
    /// No child is started before this (after one died or was killed).
    not_before: Option<Instant>,
    /// Children in a row that gave no picture.
    failures: u32,
    /// The stream's latest parameter sets (Annex B). Cameras send them
    /// with the first keyframe, not necessarily with every one, and every
    /// new child needs them.
    parameter_sets: Vec<u8>,
}

/// A child that is running, and its threads.
struct Running {
    stdin: ChildStdin,
    /// Frames written and not yet answered: when each was received, and
    /// whether it was a keyframe.
    pending: Arc<Mutex<VecDeque<(Instant, bool)>>>,
    reader: JoinHandle<u64>,
    stderr: Option<JoinHandle<()>>,
}

fn locked<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Ffmpeg {
    pub(super) fn new(program: PathBuf, codec: PictureCodec, slot: ChildSlot) -> Ffmpeg {
        Ffmpeg {
            program,
            codec,
            slot,
            backoff: BACKOFF_MIN,
            not_before: None,
            failures: 0,
            parameter_sets: Vec::new(),
        }
    }

    /// Decodes the session's jobs until the sampler is dropped or the core
    /// is gone; no child outlives it.
    pub(super) fn run(mut self, jobs: Receiver<Job>, sink: Sink) {
        let sink = Arc::new(Mutex::new(sink));
        let closed = Arc::new(AtomicBool::new(false));
        let mut running: Option<Running> = None;
        loop {
            let job = if running.is_some() {
                match jobs.recv_timeout(LINGER) {
                    Ok(job) => job,
                    Err(RecvTimeoutError::Timeout) => {
                        // The close look ended between keyframes: the
                        // child is let go now, not at the next job.
                        self.finish(running.take(), false, &sink);
                        continue;
                    }
                    Err(RecvTimeoutError::Disconnected) => break,
                }
            } else {
                match jobs.recv() {
                    Ok(job) => job,
                    Err(_) => break,
                }
            };
            if closed.load(Ordering::Relaxed) {
                break;
            }
            let sets = parameter_sets(self.codec, &job.data);
            if !sets.is_empty() {
                self.parameter_sets = sets;
            }
            let fresh = running.is_none();
            if running.is_none() {
                // A new child starts with a keyframe: nothing else decodes
                // without the pictures before it.
                if !job.keyframe || self.not_before.is_some_and(|t| Instant::now() < t) {
                    continue;
                }
                match self.start(&sink, &closed) {
                    Ok(r) => running = Some(r),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                        // Uninstalled while running: say so, as at a
                        // session start without it.
                        tracing::warn!(camera = %locked(&sink).camera(), "ffmpeg is gone: {e}");
                        let why = match self.codec {
                            PictureCodec::H265 => Undecodable::H265,
                            PictureCodec::H264 => Undecodable::H264BFrames,
                        };
                        let _ = locked(&sink).undecodable(job.received, why);
                        break;
                    }
                    Err(e) => {
                        tracing::warn!(camera = %locked(&sink).camera(), "cannot start ffmpeg: {e}");
                        self.back_off();
                        continue;
                    }
                }
            }
            let Some(r) = running.as_mut() else { continue };
            if locked(&r.pending).len() >= IN_FLIGHT {
                tracing::warn!(
                    camera = %locked(&sink).camera(),
                    "ffmpeg is not answering frames; restarting it"
                );
                self.finish(running.take(), true, &sink);
                self.back_off();
                continue;
            }
            locked(&r.pending).push_back((job.received, job.keyframe));
            let mut data = if fresh && !self.parameter_sets.is_empty() {
                // Repeated sets are harmless; missing ones leave the child
                // unable to decode anything.
                let mut d = self.parameter_sets.clone();
                d.extend_from_slice(&job.data);
                d
            } else {
                job.data
            };
            if job.more {
                data.extend_from_slice(self.delimiter());
            }
            if let Err(e) = r.stdin.write_all(&data) {
                tracing::debug!(camera = %locked(&sink).camera(), "ffmpeg stopped reading: {e}");
                locked(&r.pending).pop_back();
                self.finish(running.take(), true, &sink);
                self.back_off();
                continue;
            }
            if !job.more {
                // Outside a close look: closing stdin makes the child
                // decode what it has and exit.
                self.finish(running.take(), false, &sink);
            }
        }
        self.finish(running.take(), true, &sink);
    }

    /// An access unit delimiter: tells ffmpeg's parser the frame before it
    /// is complete.
    fn delimiter(&self) -> &'static [u8] {
        match self.codec {
            // NAL type 35, pic_type 2 (any slice type).
            PictureCodec::H265 => &[0, 0, 0, 1, 0x46, 0x01, 0x50],
            // NAL type 9, primary_pic_type 7 (any).
            PictureCodec::H264 => &[0, 0, 0, 1, 0x09, 0xF0],
        }
    }

    fn back_off(&mut self) {
        self.not_before = Some(Instant::now() + self.backoff);
        self.backoff = (self.backoff * 2).min(BACKOFF_MAX);
    }

    fn start(&self, sink: &Arc<Mutex<Sink>>, closed: &Arc<AtomicBool>) -> std::io::Result<Running> {
        let input = match self.codec {
            PictureCodec::H265 => "hevc",
            PictureCodec::H264 => "h264",
        };
        let scale = format!("scale={OUT_W}:{OUT_H}:flags=area");
        let mut child = Command::new(&self.program)
            .args(["-hide_banner", "-nostdin", "-nostats", "-loglevel", "error"])
            // One decoding thread: a camera's frames are small, and 16
            // cameras must not each take every core.
            .args(["-threads", "1", "-filter_threads", "1"])
            // Start decoding at the first frame instead of probing ahead
            // (not `-flags low_delay`: it makes H.264 with B-frames come
            // out in decoding order).
            .args(["-probesize", "32", "-analyzeduration", "0"])
            .args(["-f", input, "-i", "pipe:0", "-an", "-sn", "-dn"])
            .args([
                "-vf",
                &scale,
                "-pix_fmt",
                "yuv420p",
                "-fps_mode",
                "passthrough",
            ])
            .args(["-flush_packets", "1", "-f", "rawvideo", "pipe:1"])
            .env_clear()
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()?;
        let (Some(stdin), Some(stdout), stderr) =
            (child.stdin.take(), child.stdout.take(), child.stderr.take())
        else {
            let _ = child.kill();
            let _ = child.wait();
            return Err(std::io::Error::other("ffmpeg's pipes are missing"));
        };
        let camera = locked(sink).camera().to_string();
        self.slot.lock().replace(child);
        let pending = Arc::new(Mutex::new(VecDeque::new()));
        let reader = {
            let (pending, sink, closed) = (pending.clone(), sink.clone(), closed.clone());
            std::thread::Builder::new()
                .name(format!("ffmpeg-out-{camera}"))
                .spawn(move || read_pictures(stdout, &pending, &sink, &closed))
        };
        let reader = match reader {
            Ok(r) => r,
            Err(e) => {
                self.reap(Duration::ZERO);
                return Err(e);
            }
        };
        let stderr = stderr.and_then(|err| {
            let camera = camera.clone();
            std::thread::Builder::new()
                .name(format!("ffmpeg-err-{camera}"))
                .spawn(move || log_stderr(err, &camera))
                .ok()
        });
        Ok(Running {
            stdin,
            pending,
            reader,
            stderr,
        })
    }

    /// Ends a child: closes its stdin, lets it finish (or kills it at once
    /// with `kill`), reaps it and joins its threads.
    fn finish(&mut self, running: Option<Running>, kill: bool, sink: &Arc<Mutex<Sink>>) {
        let Some(r) = running else { return };
        drop(r.stdin);
        self.reap(if kill { Duration::ZERO } else { EXIT_WAIT });
        let pictures = r.reader.join().unwrap_or(0);
        if let Some(err) = r.stderr {
            let _ = err.join();
        }
        if pictures > 0 {
            self.failures = 0;
            self.backoff = BACKOFF_MIN;
            return;
        }
        self.failures += 1;
        if self.failures == DECODE_FAILURES {
            let s = locked(sink);
            tracing::warn!(camera = %s.camera(), "ffmpeg gives no picture for this camera");
            let _ = s.undecodable(Instant::now(), Undecodable::Corrupt);
        }
    }

    /// Waits up to `grace` for the child to exit, then kills it; always
    /// reaps it, so no zombie is left.
    fn reap(&self, grace: Duration) {
        let Some(mut child) = self.slot.lock().take() else {
            return;
        };
        let until = Instant::now() + grace;
        loop {
            match child.try_wait() {
                Ok(Some(_)) => return,
                Ok(None) if Instant::now() < until => {
                    std::thread::sleep(Duration::from_millis(10));
                }
                _ => break,
            }
        }
        let _ = child.kill();
        let _ = child.wait();
    }
}

/// The parameter set NAL units of a frame in Annex B framing as the sampler
/// makes it (a 4-byte start code before each unit), with their start
/// codes; empty if it has none. A start code cannot occur inside a unit
/// (emulation prevention), so splitting at them is exact.
fn parameter_sets(codec: PictureCodec, frame: &[u8]) -> Vec<u8> {
    const START: [u8; 4] = [0, 0, 0, 1];
    let starts: Vec<usize> = frame
        .windows(4)
        .enumerate()
        .filter(|(_, w)| *w == START)
        .map(|(i, _)| i)
        .collect();
    let mut out = Vec::new();
    for (k, &at) in starts.iter().enumerate() {
        let end = starts.get(k + 1).copied().unwrap_or(frame.len());
        let Some(&header) = frame.get(at + 4) else {
            continue;
        };
        let is_set = match codec {
            // VPS, SPS, PPS.
            PictureCodec::H265 => matches!((header >> 1) & 0x3F, 32..=34),
            // SPS, PPS.
            PictureCodec::H264 => matches!(header & 0x1F, 7 | 8),
        };
        if is_set && at < end {
            out.extend_from_slice(&frame[at..end]);
        }
    }
    out
}

/// Reads the child's pictures until its stdout ends; how many there were.
fn read_pictures(
    mut out: impl Read,
    pending: &Mutex<VecDeque<(Instant, bool)>>,
    sink: &Mutex<Sink>,
    closed: &AtomicBool,
) -> u64 {
    let mut frame = vec![0u8; FRAME_BYTES];
    let mut pictures = 0;
    while out.read_exact(&mut frame).is_ok() {
        // A picture nobody asked for cannot be placed in time: skipped.
        let Some((received, keyframe)) = locked(pending).pop_front() else {
            continue;
        };
        pictures += 1;
        let (y, chroma) = frame.split_at(OUT_W * OUT_H);
        let (u, v) = chroma.split_at(OUT_W * OUT_H / 4);
        let planes = Planes {
            y,
            u,
            v,
            width: OUT_W,
            height: OUT_H,
            y_stride: OUT_W,
            uv_stride: OUT_W / 2,
        };
        if locked(sink).picture(&planes, keyframe, received).is_err() {
            closed.store(true, Ordering::Relaxed);
            break;
        }
    }
    pictures
}

/// Drains the child's stderr (a full pipe would stop it) into the log,
/// bounded: ffmpeg's complaints about a hostile bitstream are the
/// camera's words, so lines are cut short and only the first few kept.
fn log_stderr(err: impl Read, camera: &str) {
    let mut reader = BufReader::new(err);
    let mut line = Vec::new();
    let mut seen = 0usize;
    loop {
        line.clear();
        match (&mut reader)
            .take(STDERR_LINE_MAX as u64)
            .read_until(b'\n', &mut line)
        {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
        // A line cut at the limit: skip the rest of it.
        if !line.ends_with(b"\n") && line.len() == STDERR_LINE_MAX {
            let mut rest = Vec::new();
            while matches!(
                (&mut reader).take(4096).read_until(b'\n', &mut rest),
                Ok(n) if n > 0 && !rest.ends_with(b"\n")
            ) {
                rest.clear();
            }
        }
        seen += 1;
        if seen <= STDERR_LINES {
            let text = String::from_utf8_lossy(&line);
            tracing::debug!(camera = %camera, "ffmpeg: {}", text.trim_end());
        }
    }
    if seen > STDERR_LINES {
        tracing::debug!(camera = %camera, "ffmpeg: {} more lines not logged", seen - STDERR_LINES);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameter_sets_are_picked_out_of_a_frame_with_their_start_codes() {
        // H.265: VPS (type 32: 0x40), SPS (0x42), PPS (0x44), an IDR slice
        // (type 19: 0x26).
        let frame = [
            0, 0, 0, 1, 0x40, 1, 0xAA, 0, 0, 0, 1, 0x42, 1, 0, 0, 0, 1, 0x44, 1, 0xBB, 0, 0, 0, 1,
            0x26, 1, 0xCC,
        ];
        assert_eq!(
            parameter_sets(PictureCodec::H265, &frame),
            [
                0, 0, 0, 1, 0x40, 1, 0xAA, 0, 0, 0, 1, 0x42, 1, 0, 0, 0, 1, 0x44, 1, 0xBB
            ]
        );
        // A CRA slice alone (type 21: 0x2A) carries none.
        assert!(parameter_sets(PictureCodec::H265, &[0, 0, 0, 1, 0x2A, 1, 9]).is_empty());
        // H.264: SPS (0x67), PPS (0x68), IDR (0x65).
        let frame = [
            0, 0, 0, 1, 0x67, 7, 0, 0, 0, 1, 0x68, 8, 0, 0, 0, 1, 0x65, 5,
        ];
        assert_eq!(
            parameter_sets(PictureCodec::H264, &frame),
            [0, 0, 0, 1, 0x67, 7, 0, 0, 0, 1, 0x68, 8]
        );
        assert!(parameter_sets(PictureCodec::H264, &[0, 0, 0, 1]).is_empty());
    }
}
