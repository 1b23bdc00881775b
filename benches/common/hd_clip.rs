//! The 720p test clip both camera benches stream: ffmpeg's moving test
//! pattern, encoded once as H.264 at about 2 Mbit/s with a keyframe every
//! second and its parameter sets repeated, so GStreamer can serve it from
//! any point.

use std::path::Path;
use std::process::Command;

/// Writes the clip to `out` (raw H.264), or says why ffmpeg could not.
pub fn encode_hd_clip(out: &Path) -> Result<(), String> {
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
        .arg("testsrc2=size=1280x720:rate=15:duration=8")
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
            "2M",
            "-maxrate",
            "2M",
            "-bufsize",
            "2M",
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
