//! Camera watching benchmark: prints figures, asserts nothing.
//!
//! ```text
//! cargo bench --bench cameras
//! DOORWARDEN_BENCH_SECS=5 DOORWARDEN_BENCH_INJECTIONS=3 cargo bench --bench cameras   # quick
//! ```
//!
//! 1. **Detection latency** (simulated camera, in process, 15 fps): for
//!    each fault — stall (no RTP, RTCP and keepalives go on), freeze
//!    (byte-identical frames) and drop (every connection closed and new ones
//!    refused) — inject it `DOORWARDEN_BENCH_INJECTIONS` times (default 20)
//!    into a Live camera and time from the injection to the liveness
//!    machine's state change. The three faults run side by side, one camera
//!    each. Warmup is shortened to 1 s to get through the cycles faster; it
//!    does not enter the figures.
//! 2. **Load** (GStreamer's RTSP server from tests/rtsp_server.py, 720p at
//!    ~2 Mbit/s, 15 fps, encoded once by ffmpeg at start): watch 1, 8 and 32
//!    cameras (`DOORWARDEN_BENCH_CAMERAS`, default `1,8,32`) for
//!    `DOORWARDEN_BENCH_SECS` (default 30) with doorwarden's camera tasks and
//!    liveness machines in a child process, then with as many
//!    `ffmpeg -rtsp_transport tcp -i URL -c copy -f null -` processes. CPU
//!    time is the on-CPU time of every thread (/proc/<pid>/task/*/schedstat,
//!    the same figure as getrusage's user+system, at nanosecond resolution);
//!    peak memory is VmHWM from /proc/<pid>/status (summed over the ffmpeg
//!    processes). Each run prints its whole CPU time (start-up included) and
//!    the steady-state cost per camera, measured from a third of the run
//!    (at most 10 s in) to its end, once connecting and warmup are over.
//!
//! 3. **Picture checks** (GStreamer live x264 sources, `picture_check:
//!    required`, close look on): time from PLAY to `Frozen` for each fault
//!    present from the first frame, time from a live camera's sensor
//!    hanging to `Frozen`, and false trips of live scenes (one moving, one
//!    quiet) over `DOORWARDEN_BENCH_SOAK_SECS` (default 120; 600 for the
//!    10 minutes the figures quote). `DOORWARDEN_BENCH_PICTURE=off,idle,close`
//!    makes the load part also run the picture checks (idle: no window open;
//!    close: a delivery running) against `ffmpeg -skip_frame nokey`;
//!    `sub-idle` and `sub-close` do the same with the pictures taken from a
//!    320x180 ~256 kbit/s substream (`picture_url`, a second RTSP session
//!    per camera) while the 720p main stream gets the stream rules only.
//!
//! `DOORWARDEN_BENCH_PARTS=latency`, `=load` or `=pictures` runs one part only;
//! `DOORWARDEN_BENCH_RUNTIME=current_thread` runs doorwarden's side on
//! tokio's single-thread scheduler instead of two worker threads.

#[path = "../tests/common/camera_watch.rs"]
mod camera_watch;
#[path = "../tests/common/gst.rs"]
mod gst;
#[path = "common/hd_clip.rs"]
mod hd_clip;
#[path = "common/hevc.rs"]
mod hevc_load;
#[path = "common/kids.rs"]
mod kids;

use hevc_load::hevc;

use std::collections::HashMap;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use camera_watch::{CameraWatch, camera, quick};
use doorwarden::config;
use doorwarden::core::liveness::{CameraSettings, LivenessKind};
use doorwarden::core::streams::CameraStreams;
use doorwarden::core::{Event, EventKind, Stamp, SubstreamEvent};
use doorwarden::io::picture::CloseLook;
use doorwarden::io::rtsp::CameraTask;
use doorwarden_sim::camera::{SimCamera, SimCameraOptions};

const CHILD_ENV: &str = "DOORWARDEN_BENCH_CHILD";

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() {
    if let Ok(spec) = std::env::var(CHILD_ENV) {
        child(&spec);
        return;
    }
    let parts = std::env::var("DOORWARDEN_BENCH_PARTS").unwrap_or_else(|_| "latency,load".into());
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    if parts.contains("latency") {
        runtime.block_on(latency());
    }
    if parts.contains("load") {
        load();
    }
    if parts.contains("pictures") {
        runtime.block_on(pictures());
    }
    if parts.contains("hevc") {
        hevc();
    }
}

// --- 3. Picture checks: detection latency and false trips ----------------

/// Watches a GStreamer `/cam-*` mount with `picture_check: required` and a
/// close look (a window open).
fn picture_watch(server: &gst::RtspTestServer, path: &str) -> CameraWatch {
    let cfg = camera(&format!(
        "url: {}\npicture_check: required",
        server.url(path)
    ));
    let look = CloseLook::default();
    look.set(true);
    CameraWatch::start_looking(&cfg, quick(&cfg), look)
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
}

async fn pictures() {
    let runs: usize = env_or("DOORWARDEN_BENCH_PICTURE_RUNS", 5);
    let soak: u64 = env_or("DOORWARDEN_BENCH_SOAK_SECS", 120);
    let mut server = gst::RtspTestServer::start();
    println!(
        "\n== picture checks: GStreamer live x264 320x180 15 fps (tests/rtsp_server.py), {runs} runs"
    );
    println!("   faults present from the first frame: time from PLAY (CameraUp) to Frozen");
    for path in [
        "/cam-still",
        "/cam-still-clock",
        "/cam-still-clock-cbr",
        "/cam-black",
        "/live",
    ] {
        let mut took = Vec::new();
        let mut reasons = Vec::new();
        for _ in 0..runs {
            let w = picture_watch(&server, path);
            if !wait(&w, Duration::from_secs(30), |w| {
                w.state().0 == LivenessKind::Frozen
            })
            .await
            {
                reasons.push(format!("not caught: {:?}", w.state()));
                w.stop().await;
                continue;
            }
            let up = w
                .events()
                .iter()
                .find_map(|(at, k)| matches!(k, EventKind::CameraUp { .. }).then_some(*at));
            let frozen = w
                .changes()
                .into_iter()
                .find(|t| t.to == LivenessKind::Frozen);
            if let (Some(up), Some(t)) = (up, frozen) {
                took.push(t.at.mono.saturating_duration_since(up).as_secs_f64() * 1e3);
                reasons.push(t.reason.unwrap_or_default());
            }
            let live = w.changes().iter().any(|t| t.to == LivenessKind::Live);
            if live {
                reasons.push("WAS LIVE".into());
            }
            w.stop().await;
        }
        reasons.sort();
        reasons.dedup();
        println!(
            "   {path:<17} median {:7.0} ms  max {:7.0} ms  ({} caught) {reasons:?}",
            median(&mut took.clone()),
            took.iter().copied().fold(f64::NAN, f64::max),
            took.len()
        );
    }
    println!("   a live camera whose sensor hangs (/cam-switch): time from the hang to Frozen");
    let mut took = Vec::new();
    for _ in 0..runs {
        let w = picture_watch(&server, "/cam-switch");
        if !wait(&w, Duration::from_secs(30), |w| {
            w.state().0 == LivenessKind::Live
        })
        .await
        {
            println!("   /cam-switch never live: {:?}", w.state());
            w.stop().await;
            continue;
        }
        server.command("still cam-switch");
        let hung = Instant::now();
        if wait(&w, Duration::from_secs(10), |w| {
            w.state().0 == LivenessKind::Frozen
        })
        .await
            && let Some(t) = w
                .changes()
                .into_iter()
                .find(|t| t.from == LivenessKind::Live)
        {
            took.push(t.at.mono.saturating_duration_since(hung).as_secs_f64() * 1e3);
        }
        server.command("moving cam-switch");
        w.stop().await;
    }
    println!(
        "   /cam-switch        median {:7.0} ms  max {:7.0} ms  ({} of {runs} caught)",
        median(&mut took.clone()),
        took.iter().copied().fold(f64::NAN, f64::max),
        took.len()
    );
    println!("   false trips: live sources watched {soak} s each, side by side, close look on");
    let watches: Vec<(&str, CameraWatch)> = ["/cam-live", "/cam-quiet", "/cam-quiet-cbr"]
        .into_iter()
        .map(|p| (p, picture_watch(&server, p)))
        .collect();
    for (p, w) in &watches {
        if !wait(w, Duration::from_secs(30), |w| {
            w.state().0 == LivenessKind::Live
        })
        .await
        {
            println!("   {p} never live: {:?}", w.state());
        }
    }
    tokio::time::sleep(Duration::from_secs(soak)).await;
    for (p, w) in watches {
        let trips: Vec<_> = w
            .changes()
            .into_iter()
            .filter(|t| t.from == LivenessKind::Live)
            .map(|t| t.reason.unwrap_or_default())
            .collect();
        println!(
            "   {p:<17} false trips: {} {trips:?}; {} pictures judged",
            trips.len(),
            w.pictures()
        );
        w.stop().await;
    }
}

// --- 1. Detection latency -------------------------------------------------

#[derive(Clone, Copy, Debug)]
enum Fault {
    Stall,
    Freeze,
    Drop,
}

async fn latency() {
    let injections: usize = env_or("DOORWARDEN_BENCH_INJECTIONS", 20);
    println!("== detection latency: simulated camera, 15 fps, {injections} injections per fault");
    println!("   (config defaults but warmup 1 s; time from the injection to the state change)");
    let runs =
        [Fault::Stall, Fault::Freeze, Fault::Drop].map(|f| tokio::spawn(inject(f, injections)));
    for run in runs {
        match run.await {
            Ok((fault, mut ms, reasons)) => {
                if ms.is_empty() {
                    println!("{fault:?}: no detection measured");
                    continue;
                }
                ms.sort_by(f64::total_cmp);
                let median = ms[ms.len() / 2];
                let max = ms[ms.len() - 1];
                let min = ms[0];
                println!(
                    "{:<7} median {median:7.1} ms   max {max:7.1} ms   min {min:7.1} ms   n={}   reasons: {}",
                    format!("{fault:?}"),
                    ms.len(),
                    reasons.join(" | ")
                );
            }
            Err(e) => println!("a latency run failed: {e}"),
        }
    }
}

async fn inject(fault: Fault, injections: usize) -> (Fault, Vec<f64>, Vec<String>) {
    let cam = match SimCamera::start(SimCameraOptions::default()).await {
        Ok(c) => c,
        Err(e) => {
            println!("{fault:?}: simulated camera failed to start: {e}");
            return (fault, Vec::new(), Vec::new());
        }
    };
    let cfg = camera(&format!("url: {}\nwarmup: 1s", cam.url()));
    let w = CameraWatch::start(&cfg, quick(&cfg));
    let mut ms = Vec::new();
    let mut reasons: Vec<String> = Vec::new();
    for i in 0..injections {
        if !wait(&w, Duration::from_secs(60), |w| {
            w.state().0 == LivenessKind::Live
        })
        .await
        {
            println!(
                "{fault:?}: camera did not become live again: {:?}",
                w.state()
            );
            break;
        }
        // Spread the injections over the 67 ms frame interval.
        let offset = (i as u64 * 29) % 67;
        tokio::time::sleep(Duration::from_millis(500 + offset)).await;
        let at = Instant::now();
        match fault {
            Fault::Stall => cam.stall(),
            Fault::Freeze => cam.freeze(),
            Fault::Drop => {
                cam.refuse();
                cam.drop_all();
            }
        }
        if wait(&w, Duration::from_secs(30), |w| {
            w.first_loss_since(at).is_some()
        })
        .await
        {
            if let Some(t) = w.first_loss_since(at) {
                ms.push(t.at.mono.saturating_duration_since(at).as_secs_f64() * 1000.0);
                let reason = t.reason.unwrap_or_default();
                let short: String = reason.chars().take(40).collect();
                let short = format!("{:?}: {short}", t.to);
                if !reasons.contains(&short) {
                    reasons.push(short);
                }
            }
        } else {
            println!("{fault:?}: not detected within 30 s");
        }
        if let Fault::Drop = fault {
            cam.accept();
        }
        cam.restore();
    }
    w.stop().await;
    (fault, ms, reasons)
}

async fn wait(w: &CameraWatch, limit: Duration, done: impl Fn(&CameraWatch) -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < limit {
        if done(w) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    false
}

// --- 2. Load: doorwarden vs ffmpeg watchers -------------------------------

fn load() {
    let secs: u64 = env_or("DOORWARDEN_BENCH_SECS", 30);
    let counts: Vec<usize> = std::env::var("DOORWARDEN_BENCH_CAMERAS")
        .unwrap_or_else(|_| "1,8,32".into())
        .split(',')
        .filter_map(|n| n.trim().parse().ok())
        .collect();
    let dir = match tempfile::tempdir() {
        Ok(d) => d,
        Err(e) => return println!("load: no temp dir: {e}"),
    };
    let clip = dir.path().join("hd.h264");
    println!("\n== load: encoding a 720p ~2 Mbit/s 15 fps test clip once (ffmpeg)...");
    if let Err(e) = hd_clip::encode_hd_clip(&clip) {
        return println!("load: cannot make the 720p clip: {e}");
    }
    let sub_clip = dir.path().join("hdsub.h264");
    if let Err(e) = hd_clip::encode_substream_clip(&sub_clip) {
        return println!("load: cannot make the substream clip: {e}");
    }
    let mount = format!("hd={}", clip.display());
    let sub_mount = format!("hdsub={}", sub_clip.display());
    let server = gst::RtspTestServer::start_with(&["--mount", &mount, "--mount", &sub_mount]);
    let url = server.url("/hd");
    let sub_url = server.url("/hdsub");
    let tck = clock_ticks();
    println!(
        "   GStreamer RTSP server pid {} serving {url}; watching for {secs} s per run",
        server.pid()
    );
    println!(
        "{:>4} | {:>22} {:>12} {:>8} | {:>22} {:>12} | {:>9}",
        "cams", "doorwarden CPU", "peak RSS", "live", "ffmpeg CPU", "peak RSS", "CPU ratio"
    );
    let mut ours_hwm = Vec::new();
    // DOORWARDEN_BENCH_PICTURE=off,idle,close: which picture-check modes to
    // run against ffmpeg -c copy (off) and ffmpeg -skip_frame nokey (idle,
    // close), each pair in the same run.
    let modes: Vec<String> = std::env::var("DOORWARDEN_BENCH_PICTURE")
        .unwrap_or_else(|_| "off".into())
        .split(',')
        .map(|m| m.trim().to_string())
        .collect();
    for &n in &counts {
        for mode in &modes {
            println!(
                "     | pictures {mode}, against ffmpeg {}",
                if mode == "off" {
                    "-c copy"
                } else {
                    "-skip_frame nokey"
                }
            );
            let ours = match mode.strip_prefix("sub-") {
                Some(pictures) => run_ours(n, secs, pictures, &format!("{url},{sub_url}")),
                None => run_ours(n, secs, mode, &url),
            };
            let theirs = run_ffmpeg(n, secs, &url, tck, mode != "off");
            let pct = |cpu: f64| cpu / secs as f64 * 100.0;
            let fmt_cpu = |cpu: f64| format!("{cpu:6.2} s ({:5.2}% core)", pct(cpu));
            let (Some(o), Some(t)) = (ours, theirs) else {
                println!("{n:>4} | run failed");
                continue;
            };
            if mode == "off" {
                ours_hwm.push((n, o.hwm_kib));
            }
            println!(
                "{n:>4} | {:>22} {:>8.1} MiB {:>5}/{n:<2} | {:>22} {:>8.1} MiB | {:>8.1}x",
                fmt_cpu(o.cpu_s),
                o.hwm_kib as f64 / 1024.0,
                o.live,
                fmt_cpu(t.cpu_s),
                t.hwm_kib as f64 / 1024.0,
                if o.cpu_s > 0.0 {
                    t.cpu_s / o.cpu_s
                } else {
                    f64::INFINITY
                },
            );
            let steady = (secs as f64 - steady_after(secs).as_secs_f64()).max(1e-9);
            let spct = |cpu: f64| cpu / steady * 100.0 / n as f64;
            println!(
                "     | steady state, per camera: doorwarden {:.3}% core at {:.1} frames/s; ffmpeg {:.3}% core",
                spct(o.steady_cpu_s),
                o.steady_frames as f64 / steady / n as f64,
                spct(t.steady_cpu_s),
            );
        }
    }
    if let (Some(&(n0, h0)), Some(&(n1, h1))) = (ours_hwm.first(), ours_hwm.last())
        && n1 > n0
    {
        println!(
            "   doorwarden peak memory per extra camera: {:.0} KiB ((RSS@{n1} - RSS@{n0}) / {})",
            (h1 as f64 - h0 as f64) / (n1 - n0) as f64,
            n1 - n0
        );
    }
}

struct Usage {
    /// Whole run, start-up included.
    cpu_s: f64,
    hwm_kib: u64,
    live: usize,
    /// From `steady_after(secs)` to the end.
    steady_cpu_s: f64,
    steady_frames: u64,
    /// The process's ffmpeg children (H.265 decoding): CPU in the steady
    /// state, and the peak of the process's RSS plus its children's,
    /// sampled.
    kids_steady_cpu_s: f64,
    peak_with_kids_kib: u64,
}

/// When connecting and the warmup are surely over.
fn steady_after(secs: u64) -> Duration {
    Duration::from_secs(secs / 3).min(Duration::from_secs(10))
}

fn run_ours(n: usize, secs: u64, picture: &str, url: &str) -> Option<Usage> {
    let exe = std::env::current_exe().ok()?;
    let out = Command::new(exe)
        .env(CHILD_ENV, format!("{n},{secs},{picture},{url}"))
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text.lines().find(|l| l.starts_with("CHILD "))?;
    let field = |name: &str| -> Option<u64> {
        line.split_whitespace()
            .find_map(|kv| kv.strip_prefix(name)?.strip_prefix('=')?.parse().ok())
    };
    Some(Usage {
        cpu_s: field("cpu_ns")? as f64 / 1e9,
        hwm_kib: field("hwm_kib")?,
        live: field("live")? as usize,
        steady_cpu_s: field("steady_ns")? as f64 / 1e9,
        steady_frames: field("steady_frames")?,
        kids_steady_cpu_s: field("kids_steady_ns").unwrap_or(0) as f64 / 1e9,
        peak_with_kids_kib: field("peak_with_kids_kib").unwrap_or(0),
    })
}

fn run_ffmpeg(n: usize, secs: u64, url: &str, tck: f64, nokey: bool) -> Option<Usage> {
    // Either a copying watcher (no decoding) or one that decodes keyframes
    // only, the cheapest ffmpeg that looks at the picture.
    let watcher: &[&str] = if nokey {
        &["-f", "null", "-"]
    } else {
        &["-c", "copy", "-f", "null", "-"]
    };
    let skip: &[&str] = if nokey {
        &["-threads", "1", "-skip_frame", "nokey"]
    } else {
        &[]
    };
    let mut children: Vec<Child> = Vec::new();
    for _ in 0..n {
        let child = Command::new("ffmpeg")
            .args([
                "-nostdin",
                "-hide_banner",
                "-loglevel",
                "error",
                "-rtsp_transport",
                "tcp",
            ])
            .args(skip)
            .args(["-i", url])
            .args(watcher)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .ok()?;
        children.push(child);
    }
    let warm = steady_after(secs);
    std::thread::sleep(warm);
    let warm_cpu: f64 = children
        .iter()
        .filter_map(|c| cpu_secs(&c.id().to_string(), tck))
        .sum();
    std::thread::sleep(Duration::from_secs(secs).saturating_sub(warm));
    let mut usage = Usage {
        cpu_s: 0.0,
        hwm_kib: 0,
        live: 0,
        steady_cpu_s: 0.0,
        steady_frames: 0,
        kids_steady_cpu_s: 0.0,
        peak_with_kids_kib: 0,
    };
    for c in &children {
        let pid = c.id();
        if let Some(cpu) = cpu_secs(&pid.to_string(), tck) {
            usage.cpu_s += cpu;
            usage.live += 1;
        }
        usage.hwm_kib += proc_hwm_kib(&format!("/proc/{pid}/status")).unwrap_or(0);
    }
    usage.steady_cpu_s = usage.cpu_s - warm_cpu;
    for mut c in children {
        let _ = c.kill();
        let _ = c.wait();
    }
    Some(usage)
}

/// CPU time of a process so far: the sum of its threads' on-CPU time from
/// /proc/<pid>/task/*/schedstat (nanoseconds), or utime + stime from
/// /proc/<pid>/stat (clock ticks) where schedstat is missing.
fn cpu_secs(pid: &str, tck: f64) -> Option<f64> {
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).ok();
    let mut total_ns: u64 = 0;
    let mut any = false;
    for task in tasks.into_iter().flatten().flatten() {
        let path = task.path().join("schedstat");
        if let Some(ns) = std::fs::read_to_string(path).ok().and_then(|t| {
            t.split_whitespace()
                .next()
                .and_then(|v| v.parse::<u64>().ok())
        }) {
            total_ns += ns;
            any = true;
        }
    }
    if any {
        return Some(total_ns as f64 / 1e9);
    }
    proc_ticks(&format!("/proc/{pid}/stat")).map(|t| t as f64 / tck)
}

/// utime + stime of a process, in clock ticks.
fn proc_ticks(stat_path: &str) -> Option<u64> {
    let stat = std::fs::read_to_string(stat_path).ok()?;
    // Fields after the command name, which is in parentheses and may
    // contain spaces: state is field 3, utime 14, stime 15.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

fn proc_hwm_kib(status_path: &str) -> Option<u64> {
    let status = std::fs::read_to_string(status_path).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

fn clock_ticks() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
        .unwrap_or(100.0)
}

/// The child process: `n` camera tasks feeding `n` liveness machines through
/// one channel, the way the bridge's runtime does, for `secs`; then one line
/// with its own CPU ticks and peak memory.
fn child(spec: &str) {
    let mut parts = spec.splitn(5, ',');
    let n: usize = parts.next().and_then(|p| p.parse().ok()).unwrap_or(1);
    let secs: u64 = parts.next().and_then(|p| p.parse().ok()).unwrap_or(30);
    // off: stream rules only; idle: pictures checked, no window open (a
    // keyframe every 10 s after the session's first seconds); close: a
    // window open or a delivery running (every frame decoded).
    let picture = parts.next().unwrap_or("off").to_string();
    let url = parts.next().unwrap_or("").to_string();
    // With a substream URL, the pictures come from it.
    let sub_url = parts.next().map(str::to_string);
    // DOORWARDEN_BENCH_RUNTIME=current_thread compares tokio's single-thread
    // scheduler with the default two workers.
    let runtime = match std::env::var("DOORWARDEN_BENCH_RUNTIME").as_deref() {
        Ok("current_thread") => tokio::runtime::Builder::new_current_thread(),
        _ => {
            let mut b = tokio::runtime::Builder::new_multi_thread();
            b.worker_threads(2);
            b
        }
    }
    .enable_all()
    .build()
    .expect("tokio runtime");
    let tck = clock_ticks();
    let peak_rss = kids::PeakRss::start();
    let peak = &peak_rss;
    let (frames, live, steady_ns, steady_frames, kids_warm) = runtime.block_on(async move {
        let policy = if picture == "off" { "off" } else { "optional" };
        let sub = sub_url
            .map(|u| format!("\npicture_url: {u}"))
            .unwrap_or_default();
        let cfg: config::Camera = camera(&format!("url: {url}\npicture_check: {policy}{sub}"));
        let look = CloseLook::default();
        look.set(picture == "close");
        let (tx, mut rx) = tokio::sync::mpsc::channel::<Event>(1024);
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let now = Stamp {
            mono: Instant::now(),
            wall: jiff::Timestamp::now(),
        };
        let mut machines: HashMap<String, CameraStreams> = HashMap::new();
        let mut tasks = Vec::new();
        for i in 0..n {
            let name = format!("cam{i}");
            machines.insert(
                name.clone(),
                CameraStreams::new(
                    CameraSettings::from(&cfg),
                    cfg.picture_url.is_some(),
                    now,
                ),
            );
            let mut stopped = stopped.clone();
            tasks.push(CameraTask::new(name, &cfg).close_look(look.clone()).spawn(
                tx.clone(),
                async move {
                    let _ = stopped.wait_for(|s| *s).await;
                },
            ));
        }
        drop(tx);
        let start = tokio::time::Instant::now();
        let end = tokio::time::sleep_until(start + Duration::from_secs(secs));
        tokio::pin!(end);
        // Connecting and the warmup are over by then; from there on the
        // figures are the steady cost of watching.
        let warm = tokio::time::sleep_until(start + steady_after(secs));
        tokio::pin!(warm);
        let mut warm_sample: Option<(f64, u64)> = None;
        let mut kids_warm = 0.0;
        let mut sampler_warm = 0.0;
        let mut frames = 0u64;
        loop {
            let next = machines
                .values()
                .filter_map(CameraStreams::poll_timeout)
                .min();
            let wake = async {
                match next {
                    Some(t) => tokio::time::sleep_until(t.into()).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                () = &mut end => break,
                () = &mut warm, if warm_sample.is_none() => {
                    warm_sample = Some((cpu_secs("self", tck).unwrap_or(0.0), frames));
                    kids_warm = kids::cpu_secs(tck);
                    sampler_warm = peak.own_cpu_secs();
                }
                ev = rx.recv() => {
                    let Some(ev) = ev else { break };
                    match ev.kind {
                        EventKind::CameraFrame { camera, frame } => {
                            frames += 1;
                            if let Some(m) = machines.get_mut(&camera) {
                                let _ = m.handle_frame(ev.at, &frame);
                            }
                        }
                        EventKind::CameraUp { camera } => {
                            if let Some(m) = machines.get_mut(&camera) {
                                let _ = m.handle_up(ev.at);
                            }
                        }
                        EventKind::CameraDown { camera, reason } => {
                            if let Some(m) = machines.get_mut(&camera) {
                                let _ = m.handle_down(ev.at, &reason);
                            }
                        }
                        EventKind::CameraPicture { camera, sample } => {
                            if let Some(m) = machines.get_mut(&camera) {
                                let _ = m.handle_picture(ev.at, &sample);
                            }
                        }
                        EventKind::Substream { camera, event } => {
                            if let Some(m) = machines.get_mut(&camera) {
                                let _ = match event {
                                    SubstreamEvent::Up => m.handle_sub_up(ev.at),
                                    SubstreamEvent::Frame(f) => m.handle_sub_frame(ev.at, &f),
                                    SubstreamEvent::Down { reason } => m.handle_sub_down(ev.at, &reason),
                                };
                            }
                        }
                        _ => {}
                    }
                }
                () = wake => {
                    let now = Stamp { mono: Instant::now(), wall: jiff::Timestamp::now() };
                    for m in machines.values_mut() {
                        let _ = m.handle_timeout(now);
                    }
                }
            }
        }
        let live = machines.values().filter(|m| m.is_live()).count();
        let cpu_end = cpu_secs("self", tck).unwrap_or(0.0);
        let (cpu_warm, frames_warm) = warm_sample.unwrap_or((cpu_end, frames));
        // The memory sampler's own CPU is the bench's, not doorwarden's.
        let sampler = peak.own_cpu_secs() - sampler_warm;
        let steady = ((cpu_end - cpu_warm - sampler).max(0.0) * 1e9) as u64;
        let steady_frames = frames - frames_warm;
        let _ = stop.send(true);
        for t in tasks {
            let _ = tokio::time::timeout(Duration::from_secs(5), t).await;
        }
        let kids_end = kids::cpu_secs(tck);
        (frames, live, steady, steady_frames, (kids_warm, kids_end))
    });
    let cpu_ns = (cpu_secs("self", tck).unwrap_or(0.0) * 1e9) as u64;
    let hwm = proc_hwm_kib("/proc/self/status").unwrap_or(0);
    let (kids_warm, kids_end) = kids_warm;
    let kids_ns = (kids_end * 1e9) as u64;
    let kids_steady_ns = ((kids_end - kids_warm).max(0.0) * 1e9) as u64;
    let peak_with_kids = peak_rss.stop();
    println!(
        "CHILD frames={frames} live={live} cpu_ns={cpu_ns} hwm_kib={hwm} steady_ns={steady_ns} steady_frames={steady_frames} kids_ns={kids_ns} kids_steady_ns={kids_steady_ns} peak_with_kids_kib={peak_with_kids}"
    );
}
