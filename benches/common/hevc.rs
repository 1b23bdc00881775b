//! The H.265 part of the camera bench (`DOORWARDEN_BENCH_PARTS=hevc`):
//! doorwarden watching 720p15 ~2 Mbit/s H.265 cameras with the picture
//! checks idle (no window open: a keyframe every 10 s, each through an
//! ffmpeg child of its own) and during a close look (every frame, one
//! ffmpeg child per camera kept), CPU per camera and peak RSS with the
//! ffmpeg children counted, against `ffmpeg -c copy` and `ffmpeg
//! -skip_frame nokey` watchers of the same stream in the same run.
//!
//! `DOORWARDEN_BENCH_CAMERAS` (default `1,16`), `DOORWARDEN_BENCH_SECS`
//! (default 30), `DOORWARDEN_BENCH_PICTURE` (default `idle,close`).

use std::path::Path;
use std::process::Command;

use crate::{clock_ticks, env_or, gst, run_ffmpeg, run_ours, steady_after};

/// An 8 s 720p15 H.265 clip at about 2 Mbit/s, a keyframe every second,
/// parameter sets repeated so the server can start anywhere.
fn encode_hevc_clip(out: &Path) -> Result<(), String> {
    let status = Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-y", "-f", "lavfi"])
        .args(["-i", "testsrc2=size=1280x720:rate=15:duration=8"])
        .args([
            "-an", "-c:v", "libx265", "-preset", "veryfast", "-pix_fmt", "yuv420p",
        ])
        .args(["-b:v", "2M", "-maxrate", "2M", "-bufsize", "2M"])
        .args([
            "-x265-params",
            "keyint=15:min-keyint=15:bframes=0:scenecut=0:repeat-headers=1:log-level=error",
        ])
        .args(["-f", "hevc"])
        .arg(out)
        .status()
        .map_err(|e| format!("ffmpeg: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("ffmpeg exited with {status}"))
    }
}

pub fn hevc() {
    let secs: u64 = env_or("DOORWARDEN_BENCH_SECS", 30);
    let counts: Vec<usize> = std::env::var("DOORWARDEN_BENCH_CAMERAS")
        .unwrap_or_else(|_| "1,16".into())
        .split(',')
        .filter_map(|n| n.trim().parse().ok())
        .collect();
    let modes: Vec<String> = std::env::var("DOORWARDEN_BENCH_PICTURE")
        .unwrap_or_else(|_| "idle,close".into())
        .split(',')
        .map(|m| m.trim().to_string())
        .filter(|m| m != "off")
        .collect();
    let dir = match tempfile::tempdir() {
        Ok(d) => d,
        Err(e) => return println!("hevc: no temp dir: {e}"),
    };
    let clip = dir.path().join("hd.h265");
    println!("\n== H.265: encoding a 720p ~2 Mbit/s 15 fps H.265 clip once (ffmpeg, libx265)...");
    if let Err(e) = encode_hevc_clip(&clip) {
        return println!("hevc: cannot make the clip: {e}");
    }
    let mount = format!("hd265={}", clip.display());
    let server = gst::RtspTestServer::start_with(&["--mount", &mount]);
    let url = server.url("/hd265");
    let tck = clock_ticks();
    println!(
        "   serving {url}; {secs} s per run; per camera, steady state (after the first {:?})",
        steady_after(secs)
    );
    println!(
        "{:>4} {:>6} | {:>12} {:>12} {:>12} {:>14} | {:>16} {:>12} | {:>16} {:>12}",
        "cams",
        "look",
        "ours CPU",
        "of it ffmpeg",
        "frames/s",
        "peak RSS+kids",
        "-c copy CPU",
        "peak RSS",
        "nokey CPU",
        "peak RSS"
    );
    for &n in &counts {
        for mode in &modes {
            let ours = run_ours(n, secs, mode, &url);
            let copy = run_ffmpeg(n, secs, &url, tck, false);
            let nokey = run_ffmpeg(n, secs, &url, tck, true);
            let (Some(o), Some(c), Some(k)) = (ours, copy, nokey) else {
                println!("{n:>4} {mode:>6} | run failed");
                continue;
            };
            let steady = (secs as f64 - steady_after(secs).as_secs_f64()).max(1e-9);
            let pct = |cpu: f64| cpu / steady * 100.0 / n as f64;
            let mib = |kib: u64| kib as f64 / 1024.0 / n as f64;
            println!(
                "{n:>4} {mode:>6} | {:>10.3}% {:>10.3}% {:>12.1} {:>10.1} MiB | {:>14.3}% {:>8.1} MiB | {:>14.3}% {:>8.1} MiB",
                pct(o.steady_cpu_s + o.kids_steady_cpu_s),
                pct(o.kids_steady_cpu_s),
                o.steady_frames as f64 / steady / n as f64,
                mib(o.peak_with_kids_kib),
                pct(c.steady_cpu_s),
                mib(c.hwm_kib),
                pct(k.steady_cpu_s),
                mib(k.hwm_kib),
            );
        }
    }
    println!(
        "   (CPU: % of one core per camera; RSS: MiB per camera, ours = the bridge process plus its ffmpeg children at their sampled peak; ffmpeg watchers: summed VmHWM)"
    );
}
