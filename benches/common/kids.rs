//! What a bench process's child processes (the ffmpeg decoders of H.265
//! cameras) cost: their CPU time, the children already reaped included,
//! and the peak of the process's memory plus theirs.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

/// This process's live children, from each thread's `children` list
/// (cheap: no walk over every process on the machine).
fn children() -> Vec<u32> {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return Vec::new();
    };
    tasks
        .flatten()
        .filter_map(|t| std::fs::read_to_string(t.path().join("children")).ok())
        .flat_map(|list| {
            list.split_whitespace()
                .filter_map(|p| p.parse().ok())
                .collect::<Vec<u32>>()
        })
        .collect()
}

/// The fields of a stat file after the command name (state first).
fn stat_fields(path: &str) -> Option<Vec<String>> {
    let stat = std::fs::read_to_string(path).ok()?;
    let rest = &stat[stat.rfind(')')? + 2..];
    Some(rest.split_whitespace().map(str::to_string).collect())
}

fn ticks(fields: &[String], at: usize) -> u64 {
    fields.get(at).and_then(|f| f.parse().ok()).unwrap_or(0)
}

/// CPU seconds of every child so far: reaped ones (cutime + cstime of this
/// process) and running ones (their utime + stime).
pub fn cpu_secs(tck: f64) -> f64 {
    let reaped = stat_fields("/proc/self/stat")
        .map(|f| ticks(&f, 13) + ticks(&f, 14))
        .unwrap_or(0);
    let running: u64 = children()
        .into_iter()
        .filter_map(|pid| stat_fields(&format!("/proc/{pid}/stat")))
        .map(|f| ticks(&f, 11) + ticks(&f, 12))
        .sum();
    (reaped + running) as f64 / tck
}

fn rss_kib(pid: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))?
                .split_whitespace()
                .nth(1)?
                .parse()
                .ok()
        })
        .unwrap_or(0)
}

/// Samples this process's RSS plus its children's every 50 ms (a child
/// that decodes one keyframe lives about 100 ms) and keeps the peak.
pub struct PeakRss {
    stop: Arc<AtomicBool>,
    peak: Arc<AtomicU64>,
    /// The sampling thread's id, so its own CPU time can be left out of
    /// the process's.
    tid: Arc<AtomicU64>,
    thread: Option<JoinHandle<()>>,
}

impl PeakRss {
    pub fn start() -> PeakRss {
        let stop = Arc::new(AtomicBool::new(false));
        let peak = Arc::new(AtomicU64::new(0));
        let tid = Arc::new(AtomicU64::new(0));
        let (s, p, t) = (stop.clone(), peak.clone(), tid.clone());
        let thread = std::thread::spawn(move || {
            let me = std::fs::read_link("/proc/thread-self")
                .ok()
                .and_then(|l| l.file_name()?.to_str()?.parse().ok())
                .unwrap_or(0);
            t.store(me, Ordering::Relaxed);
            while !s.load(Ordering::Relaxed) {
                let total = rss_kib("self")
                    + children()
                        .into_iter()
                        .map(|pid| rss_kib(&pid.to_string()))
                        .sum::<u64>();
                p.fetch_max(total, Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(50));
            }
        });
        PeakRss {
            stop,
            peak,
            tid,
            thread: Some(thread),
        }
    }

    /// CPU seconds the sampling thread used so far.
    pub fn own_cpu_secs(&self) -> f64 {
        let tid = self.tid.load(Ordering::Relaxed);
        std::fs::read_to_string(format!("/proc/self/task/{tid}/schedstat"))
            .ok()
            .and_then(|t| t.split_whitespace().next()?.parse::<u64>().ok())
            .map_or(0.0, |ns| ns as f64 / 1e9)
    }

    /// The peak in KiB.
    pub fn stop(mut self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        self.peak.load(Ordering::Relaxed)
    }
}
