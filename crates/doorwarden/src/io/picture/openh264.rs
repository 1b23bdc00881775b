//! H.264 in-process with OpenH264: the decoder thread of an H.264 session.
//!
//! Owns: when the decoder is held (only during a close look: a 720p
//! decoder keeps ~14 MiB of reference pictures, too much to keep per
//! camera for one keyframe every 10 s, and a keyframe needs no earlier
//! picture), counting keyframes that fail, and giving up on OpenH264 for
//! the session when the frames between keyframes keep failing. That is
//! what B-frames look like to it (OpenH264 decodes the Constrained
//! Baseline subset cameras mostly send, not B-slices); the session then
//! moves to ffmpeg if it is installed, or tells the core it cannot decode.

use std::path::PathBuf;
use std::sync::mpsc::Receiver;

use super::ffmpeg::{ChildSlot, Ffmpeg};
use super::snapshot::Planes;
use super::{Closed, DECODE_FAILURES, Job, PictureCodec, Sink};
use crate::core::picture::Undecodable;

/// Frames between keyframes that fail, among the last [`INTER_WINDOW`]
/// decoded, before OpenH264 is given up on. A stream with B-frames fails
/// about a third of its frames, all the time; a lost packet now and then
/// fails a frame or two and then none for a long while.
const INTER_FAILURES: usize = 4;
const INTER_WINDOW: usize = 30;

/// Runs until the sampler is dropped or the core is gone. `ffmpeg`: where
/// to go when OpenH264 cannot decode this camera.
pub(super) fn run(jobs: Receiver<Job>, mut sink: Sink, ffmpeg: Option<PathBuf>, slot: ChildSlot) {
    match decode(&jobs, &mut sink) {
        Ok(()) | Err(Stop::Closed) => {}
        Err(Stop::Unsupported) => match ffmpeg {
            Some(program) => {
                tracing::info!(
                    camera = %sink.camera(),
                    "OpenH264 cannot decode this camera's H.264 (B-frames?); decoding it with ffmpeg"
                );
                Ffmpeg::new(program, PictureCodec::H264, slot).run(jobs, sink);
            }
            None => {
                tracing::warn!(
                    camera = %sink.camera(),
                    "OpenH264 cannot decode this camera's H.264 (B-frames?) and ffmpeg is not installed"
                );
                let _ = sink.undecodable(std::time::Instant::now(), Undecodable::H264BFrames);
            }
        },
    }
}

enum Stop {
    Closed,
    /// OpenH264 cannot decode this stream.
    Unsupported,
}

impl From<Closed> for Stop {
    fn from(_: Closed) -> Self {
        Stop::Closed
    }
}

fn decode(jobs: &Receiver<Job>, sink: &mut Sink) -> Result<(), Stop> {
    let mut held: Option<openh264::decoder::Decoder> = None;
    let mut failures = 0u32;
    // The last INTER_WINDOW frames between keyframes: whether each failed.
    let mut inter: std::collections::VecDeque<bool> = std::collections::VecDeque::new();
    while let Ok(job) = jobs.recv() {
        let decoder = match &mut held {
            Some(d) => d,
            None => match openh264::decoder::Decoder::new() {
                Ok(d) => held.insert(d),
                Err(e) => {
                    tracing::warn!(camera = %sink.camera(), "cannot start the H.264 decoder: {e}");
                    sink.undecodable(std::time::Instant::now(), Undecodable::NoDecoder)?;
                    return Ok(());
                }
            },
        };
        let judged = match decoder.decode(&job.data) {
            Ok(Some(yuv)) => {
                use openh264::formats::YUVSource;
                let (width, height) = yuv.dimensions();
                let (y_stride, uv_stride, _) = yuv.strides();
                let planes = Planes {
                    y: yuv.y(),
                    u: yuv.u(),
                    v: yuv.v(),
                    width,
                    height,
                    y_stride,
                    uv_stride,
                };
                sink.picture(&planes, job.keyframe, job.received)?
            }
            Ok(None) => false,
            Err(e) => {
                if job.keyframe {
                    failures += 1;
                    tracing::debug!(camera = %sink.camera(), "keyframe did not decode: {e}");
                    if failures == DECODE_FAILURES {
                        sink.undecodable(job.received, Undecodable::Corrupt)?;
                    }
                } else {
                    tracing::debug!(camera = %sink.camera(), "frame did not decode: {e}");
                    remember(&mut inter, true);
                    if inter.iter().filter(|&&failed| failed).count() >= INTER_FAILURES {
                        return Err(Stop::Unsupported);
                    }
                }
                false
            }
        };
        if !job.keyframe && judged {
            remember(&mut inter, false);
        }
        if job.keyframe && judged {
            failures = 0;
        }
        if !job.more {
            held = None;
        }
    }
    Ok(())
}

fn remember(window: &mut std::collections::VecDeque<bool>, failed: bool) {
    if window.len() == INTER_WINDOW {
        window.pop_front();
    }
    window.push_back(failed);
}
