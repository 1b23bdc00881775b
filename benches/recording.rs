//! Delivery evidence benchmark: what recording a camera costs beyond
//! watching it. Prints figures, asserts nothing.
//!
//! ```text
//! cargo bench --bench recording
//! DOORWARDEN_BENCH_SECS=10 DOORWARDEN_BENCH_ROUNDS=1 cargo bench --bench recording   # quick
//! ```
//!
//! GStreamer's RTSP server (tests/rtsp_server.py) serves a 720p ~2 Mbit/s
//! 15 fps clip encoded once by ffmpeg. `DOORWARDEN_BENCH_CAMERAS` cameras
//! (default 4) are watched for `DOORWARDEN_BENCH_SECS` (default 30) by a
//! child process running doorwarden's camera tasks, three ways:
//!
//! - **watch**: camera tasks only (the bridge without `recordings:`);
//! - **record**: the same, plus a recorder per camera with a delivery
//!   running the whole time (pre-roll ring, fMP4 writer, an fsync per
//!   fragment);
//! - **ffmpeg**: the alternative, one `ffmpeg -c copy` per camera writing a
//!   fragmented MP4 (`-movflags frag_keyframe+empty_moov`).
//!
//! CPU is every thread's on-CPU time (/proc/<pid>/task/*/schedstat) from a
//! third of the run to its end; memory is VmHWM. Each way runs
//! `DOORWARDEN_BENCH_ROUNDS` times (default 3), interleaved, and the median
//! is printed. "Recording beyond watching" is record minus watch, per camera.
//! Disk bytes per minute come from the clips' sizes over the recorded time.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use doorwarden::config;
use doorwarden::core::{Event, Evidence};
use doorwarden::io::record::{ClipReport, Recorders};
use doorwarden::io::rtsp::CameraTask;

#[path = "../tests/common/gst.rs"]
mod gst;
#[path = "common/hd_clip.rs"]
mod hd_clip;

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
    let secs: u64 = env_or("DOORWARDEN_BENCH_SECS", 30);
    let n: usize = env_or("DOORWARDEN_BENCH_CAMERAS", 4);
    let rounds: usize = env_or("DOORWARDEN_BENCH_ROUNDS", 3).max(1);
    let dir = match tempfile::tempdir() {
        Ok(d) => d,
        Err(e) => return println!("no temp dir: {e}"),
    };
    let clip = dir.path().join("hd.h264");
    println!("== recording: encoding a 720p ~2 Mbit/s 15 fps test clip once (ffmpeg)...");
    if let Err(e) = hd_clip::encode_hd_clip(&clip) {
        return println!("cannot make the 720p clip: {e}");
    }
    let server = gst::RtspTestServer::start_with(&["--mount", &format!("hd={}", clip.display())]);
    let url = server.url("/hd");
    println!("   {n} cameras, {secs} s per run, {rounds} round(s), medians shown");

    let mut watch = Vec::new();
    let mut record = Vec::new();
    let mut ffmpeg = Vec::new();
    for round in 0..rounds {
        let out = dir.path().join(format!("round{round}"));
        let _ = std::fs::create_dir_all(&out);
        watch.extend(run_child("watch", n, secs, &url, &out));
        record.extend(run_child("record", n, secs, &url, &out));
        ffmpeg.extend(run_ffmpeg(n, secs, &url, &out));
    }
    let (Some(w), Some(r), Some(f)) = (median(&watch), median(&record), median(&ffmpeg)) else {
        return println!("a run failed: watch {watch:?} record {record:?} ffmpeg {ffmpeg:?}");
    };
    let steady = steady_secs(secs);
    let per_cam_pct = |cpu: f64| cpu / steady * 100.0 / n as f64;
    println!(
        "{:>8} | {:>16} | {:>12} | {:>16}",
        "", "CPU per camera", "peak RSS", "disk per camera"
    );
    for (name, u) in [("watch", &w), ("record", &r), ("ffmpeg", &f)] {
        println!(
            "{name:>8} | {:>12.3}% core | {:>8.1} MiB | {:>10.1} MiB/min",
            per_cam_pct(u.steady_cpu_s),
            u.hwm_kib as f64 / 1024.0,
            u.bytes_per_min / n as f64 / (1024.0 * 1024.0),
        );
    }
    println!(
        "   recording beyond watching, per camera: {:.3}% core, {:.2} MiB peak memory \
         (goal: <= 0.5% core, 8 MiB); ffmpeg -c copy per camera: {:.3}% core, {:.1} MiB",
        per_cam_pct(r.steady_cpu_s - w.steady_cpu_s),
        (r.hwm_kib as f64 - w.hwm_kib as f64) / 1024.0 / n as f64,
        per_cam_pct(f.steady_cpu_s),
        f.hwm_kib as f64 / 1024.0 / n as f64,
    );
}

#[derive(Debug, Clone, Copy)]
struct Usage {
    steady_cpu_s: f64,
    hwm_kib: u64,
    bytes_per_min: f64,
}

fn median(runs: &[Usage]) -> Option<Usage> {
    if runs.is_empty() {
        return None;
    }
    let pick = |f: fn(&Usage) -> f64| {
        let mut v: Vec<f64> = runs.iter().map(f).collect();
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    Some(Usage {
        steady_cpu_s: pick(|u| u.steady_cpu_s),
        hwm_kib: pick(|u| u.hwm_kib as f64) as u64,
        bytes_per_min: pick(|u| u.bytes_per_min),
    })
}

/// When connecting and the pre-roll are surely over.
fn steady_after(secs: u64) -> Duration {
    Duration::from_secs(secs / 3).min(Duration::from_secs(10))
}

fn steady_secs(secs: u64) -> f64 {
    (secs as f64 - steady_after(secs).as_secs_f64()).max(1e-9)
}

fn run_child(mode: &str, n: usize, secs: u64, url: &str, out: &Path) -> Option<Usage> {
    let exe = std::env::current_exe().ok()?;
    let clips = out.join(mode);
    let output = Command::new(exe)
        .env(
            CHILD_ENV,
            format!("{mode},{n},{secs},{},{url}", clips.display()),
        )
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&output.stdout);
    let line = text.lines().find(|l| l.starts_with("CHILD "))?;
    let field = |name: &str| -> Option<f64> {
        line.split_whitespace()
            .find_map(|kv| kv.strip_prefix(name)?.strip_prefix('=')?.parse().ok())
    };
    Some(Usage {
        steady_cpu_s: field("steady_ns")? / 1e9,
        hwm_kib: field("hwm_kib")? as u64,
        bytes_per_min: field("bytes_per_min").unwrap_or(0.0),
    })
}

fn run_ffmpeg(n: usize, secs: u64, url: &str, out: &Path) -> Option<Usage> {
    let dir = out.join("ffmpeg");
    std::fs::create_dir_all(&dir).ok()?;
    let mut children: Vec<Child> = Vec::new();
    let started = Instant::now();
    for i in 0..n {
        let child = Command::new("ffmpeg")
            .args(["-nostdin", "-hide_banner", "-loglevel", "error"])
            .args(["-rtsp_transport", "tcp", "-i", url, "-an", "-c", "copy"])
            .args(["-movflags", "frag_keyframe+empty_moov", "-f", "mp4", "-y"])
            .arg(dir.join(format!("cam{i}.mp4")))
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
        .filter_map(|c| cpu_secs(&c.id().to_string()))
        .sum();
    std::thread::sleep(Duration::from_secs(secs).saturating_sub(warm));
    let mut cpu = 0.0;
    let mut hwm = 0;
    for c in &children {
        cpu += cpu_secs(&c.id().to_string()).unwrap_or(0.0);
        hwm += proc_hwm_kib(&format!("/proc/{}/status", c.id())).unwrap_or(0);
    }
    let minutes = started.elapsed().as_secs_f64() / 60.0;
    for mut c in children {
        let _ = c.kill();
        let _ = c.wait();
    }
    Some(Usage {
        steady_cpu_s: cpu - warm_cpu,
        hwm_kib: hwm,
        bytes_per_min: dir_bytes(&dir) as f64 / minutes,
    })
}

fn dir_bytes(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.path().extension().is_some_and(|x| x == "mp4"))
        .filter_map(|e| e.metadata().ok().map(|m| m.len()))
        .sum()
}

/// Every thread's on-CPU time so far (nanoseconds in schedstat).
fn cpu_secs(pid: &str) -> Option<f64> {
    let mut total: u64 = 0;
    for task in std::fs::read_dir(format!("/proc/{pid}/task"))
        .ok()?
        .flatten()
    {
        let text = std::fs::read_to_string(task.path().join("schedstat")).ok()?;
        total += text.split_whitespace().next()?.parse::<u64>().ok()?;
    }
    Some(total as f64 / 1e9)
}

fn proc_hwm_kib(status_path: &str) -> Option<u64> {
    let status = std::fs::read_to_string(status_path).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// The child: `n` camera tasks whose events are drained (the core's
/// liveness cost is the same both ways), and in `record` mode a recorder
/// per camera with one delivery running throughout.
fn child(spec: &str) {
    let mut parts = spec.splitn(5, ',');
    let mode = parts.next().unwrap_or("watch").to_string();
    let n: usize = parts.next().and_then(|p| p.parse().ok()).unwrap_or(1);
    let secs: u64 = parts.next().and_then(|p| p.parse().ok()).unwrap_or(30);
    let clips = PathBuf::from(parts.next().unwrap_or("/tmp/doorwarden-bench"));
    let url = parts.next().unwrap_or("").to_string();
    // As `doorwarden run` does: one thread for the tasks; the recorders
    // are threads of their own.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    runtime.block_on(async move {
        // The recorder's cost alone, against ffmpeg's; the picture check
        // has its own figures (benches/cameras.rs).
        let cam: config::Camera =
            serde_yaml::from_str(&format!("url: {url:?}\npicture_check: off"))
                .expect("camera yaml");
        let names: Vec<String> = (0..n).map(|i| format!("cam{i}")).collect();
        let recorders = if mode == "record" {
            let cfg: config::Recordings = serde_yaml::from_str(&format!(
                "path: {:?}\npre_roll: 10s\npost_roll: 1s\n",
                clips.display().to_string()
            ))
            .expect("recordings yaml");
            Some(Recorders::start(&cfg, names.clone()).expect("recorders"))
        } else {
            None
        };
        let (tx, mut rx) = tokio::sync::mpsc::channel::<Event>(1024);
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let mut taps: Vec<_> = recorders.as_ref().map(|r| r.1.clone()).unwrap_or_default();
        let mut tasks = Vec::new();
        for name in &names {
            let mut task = CameraTask::new(name.clone(), &cam);
            if let Some(i) = taps.iter().position(|(c, _)| c == name) {
                task = task.recorder(taps.swap_remove(i).1);
            }
            let mut stopped = stopped.clone();
            tasks.push(task.spawn(tx.clone(), async move {
                let _ = stopped.wait_for(|s| *s).await;
            }));
        }
        drop(tx);
        tokio::spawn(async move { while rx.recv().await.is_some() {} });
        let delivery = jiff::Timestamp::now();
        let started = Instant::now();
        if let Some((r, _, _)) = &recorders {
            r.evidence(&Evidence::Watch {
                door: "front".into(),
                cameras: names.clone(),
            });
            r.evidence(&Evidence::Start {
                door: "front".into(),
                delivery,
                cameras: names.clone(),
            });
        }
        tokio::time::sleep(steady_after(secs)).await;
        let warm = cpu_secs("self").unwrap_or(0.0);
        tokio::time::sleep(Duration::from_secs(secs).saturating_sub(steady_after(secs))).await;
        let cpu = cpu_secs("self").unwrap_or(0.0);
        let hwm = proc_hwm_kib("/proc/self/status").unwrap_or(0);
        let mut bytes = 0u64;
        if let Some((r, _, mut reports)) = recorders {
            r.evidence(&Evidence::Stop {
                door: "front".into(),
                delivery,
                compromised: false,
            });
            for _ in 0..n {
                if let Ok(Some(ClipReport::Done { clips, .. })) =
                    tokio::time::timeout(Duration::from_secs(10), reports.recv()).await
                {
                    bytes += clips.iter().map(|c| c.bytes).sum::<u64>();
                }
            }
            let _ = tokio::task::spawn_blocking(move || r.stop()).await;
        }
        let minutes = started.elapsed().as_secs_f64() / 60.0;
        let _ = stop.send(true);
        for t in tasks {
            let _ = t.await;
        }
        println!(
            "CHILD steady_ns={} hwm_kib={hwm} bytes_per_min={}",
            ((cpu - warm) * 1e9) as u64,
            bytes as f64 / minutes
        );
    });
}
