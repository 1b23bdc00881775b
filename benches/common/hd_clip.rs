//! The 720p test clip both camera benches stream: ffmpeg's moving test
//! pattern, encoded once as H.264 at about 2 Mbit/s with a keyframe every
//! second and its parameter sets repeated, so GStreamer can serve it from
//! any point; and the same pattern at a substream's size.

use std::path::Path;
use std::process::Command;

/// Writes the clip to `out` (raw H.264), or says why ffmpeg could not.
pub fn encode_hd_clip(out: &Path) -> Result<(), String> {
    encode_clip(out, "1280x720", "2M")
}

/// The same pattern as a camera's substream would carry it: 320x180 at
/// about 256 kbit/s, same frame rate and keyframe interval.
#[allow(dead_code)] // only the cameras bench watches a substream
pub fn encode_substream_clip(out: &Path) -> Result<(), String> {
    encode_clip(out, "320x180", "256k")
}

fn encode_clip(out: &Path, size: &str, rate: &str) -> Result<(), String> {
    let status = Command::new("ffmpeg")
        .args([
            "-hide_banner",
            "-loglevel",
            "error",
            "-y",
            "-f",
            "lavfi",
            "-i",
        ])
        .arg(format!("testsrc2=size={size}:rate=15:duration=8"))
        .args([
            "-an",
            "-c:v",
            "libx264",
            "-preset",
            "veryfast",
            "-profile:v",
            "main",
            "-pix_fmt",
            "yuv420p",
        ])
        .args([
            "-b:v",
            rate,
            "-maxrate",
            rate,
            "-bufsize",
            rate,
            "-g",
            "15",
            "-keyint_min",
            "15",
            "-bf",
            "0",
        ])
        .args([
            "-sc_threshold",
            "0",
            "-x264-params",
            "repeat-headers=1",
            "-f",
            "h264",
        ])
        .arg(out)
        .status()
        .map_err(|e| format!("ffmpeg: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("ffmpeg exited with {status}"))
    }
}
