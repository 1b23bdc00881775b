//! The real camera task (`doorwarden::io::rtsp`) against real RTSP servers:
//! GStreamer's (tests/rtsp_server.py) for what a real camera does and how
//! it fails.

#[path = "common/gst.rs"]
mod gst;

use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use doorwarden::config;
use doorwarden::core::{Event, EventKind};
use doorwarden::io::rtsp::{CameraTask, CameraTiming};
use gst::RtspTestServer;
use tokio::sync::{mpsc, watch};

/// Everything logged by the process (ours and retina's, at debug), so a test
/// can check that no secret ever reaches a log line.
fn captured_log() -> &'static Arc<Mutex<Vec<u8>>> {
    static LOG: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    LOG.get_or_init(|| {
        let buffer = Arc::new(Mutex::new(Vec::new()));
        let sink = buffer.clone();
        // Fails only if another test file's subscriber is installed first,
        // which cannot happen inside this test binary.
        let _ = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::DEBUG)
            .with_ansi(false)
            .with_writer(move || LogSink(sink.clone()))
            .try_init();
        buffer
    })
}

struct LogSink(Arc<Mutex<Vec<u8>>>);

impl Write for LogSink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .map_err(|_| std::io::Error::other("log poisoned"))?
            .extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn log_text() -> String {
    String::from_utf8_lossy(&captured_log().lock().expect("log lock")).into_owned()
}

fn camera(yaml: &str) -> config::Camera {
    serde_yaml::from_str(yaml).expect("camera yaml")
}

/// Short reconnect delays so a test sees several attempts.
fn quick(cfg: &config::Camera) -> CameraTiming {
    CameraTiming {
        backoff_min: Duration::from_millis(300),
        backoff_max: Duration::from_secs(1),
        ..CameraTiming::for_camera(cfg)
    }
}

/// A camera task whose events are recorded as they arrive.
struct Watch {
    events: Arc<Mutex<Vec<(Instant, EventKind)>>>,
    stop: watch::Sender<bool>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Watch {
    fn start(cfg: &config::Camera) -> Watch {
        captured_log();
        let (tx, mut rx) = mpsc::channel::<Event>(256);
        let (stop, mut stopped) = watch::channel(false);
        let task = CameraTask::new("porch".into(), cfg)
            .timing(quick(cfg))
            .spawn(tx, async move {
                let _ = stopped.wait_for(|s| *s).await;
            });
        let events = Arc::new(Mutex::new(Vec::new()));
        let sink = events.clone();
        tokio::spawn(async move {
            while let Some(ev) = rx.recv().await {
                sink.lock()
                    .expect("events lock")
                    .push((Instant::now(), ev.kind));
            }
        });
        Watch {
            events,
            stop,
            task: Some(task),
        }
    }

    fn snapshot(&self) -> Vec<(Instant, EventKind)> {
        self.events.lock().expect("events lock").clone()
    }

    fn downs(&self) -> Vec<String> {
        self.snapshot()
            .into_iter()
            .filter_map(|(_, k)| match k {
                EventKind::CameraDown { reason, .. } => Some(reason),
                _ => None,
            })
            .collect()
    }

    fn frames_since(&self, since: Instant) -> usize {
        self.snapshot()
            .iter()
            .filter(|(t, k)| *t >= since && matches!(k, EventKind::CameraFrame { .. }))
            .count()
    }

    /// Waits until `done` holds for the events so far, or fails the test
    /// with `what` after `limit`.
    async fn until(
        &self,
        what: &str,
        limit: Duration,
        done: impl Fn(&[(Instant, EventKind)]) -> bool,
    ) {
        let start = Instant::now();
        loop {
            if done(&self.snapshot()) {
                return;
            }
            if start.elapsed() > limit {
                panic!(
                    "{what}: not within {limit:?}; events: {:?}",
                    summary(&self.snapshot())
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn stop(mut self) {
        let _ = self.stop.send(true);
        if let Some(task) = self.task.take() {
            tokio::time::timeout(Duration::from_secs(10), task)
                .await
                .expect("camera task stops on shutdown")
                .expect("camera task did not panic");
        }
    }
}

fn summary(events: &[(Instant, EventKind)]) -> Vec<String> {
    let mut out = Vec::new();
    let mut frames = 0;
    for (_, k) in events {
        match k {
            EventKind::CameraFrame { .. } => frames += 1,
            other => {
                if frames > 0 {
                    out.push(format!("{frames} frames"));
                    frames = 0;
                }
                out.push(format!("{other:?}"));
            }
        }
    }
    if frames > 0 {
        out.push(format!("{frames} frames"));
    }
    out
}

fn down_with(reason: &'static str) -> impl Fn(&[(Instant, EventKind)]) -> bool {
    move |evs| {
        evs.iter()
            .any(|(_, k)| matches!(k, EventKind::CameraDown { reason: r, .. } if r == reason))
    }
}

fn frames_at_least(n: usize) -> impl Fn(&[(Instant, EventKind)]) -> bool {
    move |evs| {
        evs.iter()
            .filter(|(_, k)| matches!(k, EventKind::CameraFrame { .. }))
            .count()
            >= n
    }
}

const LONG: Duration = Duration::from_secs(20);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gstreamer_stream_gives_one_summary_per_frame_at_the_rtp_clock() {
    let server = RtspTestServer::start();
    let w = Watch::start(&camera(&format!("url: {}", server.url("/live"))));
    w.until("30 frames", LONG, frames_at_least(30)).await;
    let events = w.snapshot();
    assert!(matches!(events[0].1, EventKind::CameraUp { ref camera } if camera == "porch"));
    let frames: Vec<_> = events
        .iter()
        .filter_map(|(_, k)| match k {
            EventKind::CameraFrame { frame, .. } => Some(*frame),
            _ => None,
        })
        .collect();
    assert!(frames.iter().all(|f| f.clock_rate == 90_000 && f.size > 0));
    // 15 fps on a 90 kHz clock: 6000 ticks per frame. The server stamps
    // frames when it sends them, as a camera stamps them at capture, so
    // single steps jitter; the median does not.
    let mut steps: Vec<i64> = frames.windows(2).map(|p| p[1].rtp_ts - p[0].rtp_ts).collect();
    assert!(steps.iter().all(|s| *s > 0), "RTP time went backwards: {steps:?}");
    steps.sort_unstable();
    let median = steps[steps.len() / 2];
    assert!((5700..=6300).contains(&median), "median step {median}: {steps:?}");
    // GOP 15: a keyframe every 15 frames.
    let keys = frames.iter().filter(|f| f.keyframe).count();
    assert!(
        (1..=3).contains(&keys),
        "{keys} keyframes in {} frames",
        frames.len()
    );
    // A moving picture: no two frames share a hash.
    let mut hashes: Vec<u64> = frames.iter().map(|f| f.hash).collect();
    hashes.sort_unstable();
    hashes.dedup();
    assert_eq!(hashes.len(), frames.len());
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_path_is_reported_as_404() {
    let server = RtspTestServer::start();
    let w = Watch::start(&camera(&format!("url: {}", server.url("/no-such-stream"))));
    w.until("404 reported", LONG, down_with("RTSP 404 Not Found"))
        .await;
    assert!(
        !w.snapshot()
            .iter()
            .any(|(_, k)| matches!(k, EventKind::CameraUp { .. }))
    );
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_password_is_401_and_never_printed() {
    let server = RtspTestServer::start();
    let wrong = "hunter2-wrong-Pa55";
    let w = Watch::start(&camera(&format!(
        "url: {}",
        server.auth_url(gst::USER, wrong)
    )));
    w.until("401 reported", LONG, down_with("RTSP 401 Unauthorized"))
        .await;
    // No credentials at all: the camera asks, and we have none to give.
    let anonymous = Watch::start(&camera(&format!(
        "url: rtsp://127.0.0.1:{}/auth",
        server.auth_port
    )));
    anonymous
        .until(
            "401 without credentials",
            LONG,
            down_with("RTSP 401 Unauthorized"),
        )
        .await;
    let events = format!("{:?}", w.snapshot());
    assert!(!events.contains(wrong), "password in an event: {events}");
    let log = log_text();
    assert!(
        log.contains("RTSP 401 Unauthorized"),
        "the failure was logged"
    );
    assert!(!log.contains(wrong), "password in the log");
    w.stop().await;
    anonymous.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn right_password_from_url_or_file_plays() {
    let server = RtspTestServer::start();
    let w = Watch::start(&camera(&format!(
        "url: {}",
        server.auth_url(gst::USER, gst::PASSWORD)
    )));
    w.until("frames with URL credentials", LONG, frames_at_least(10))
        .await;
    w.stop().await;

    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("camera-password");
    std::fs::write(&file, format!("{}\n", gst::PASSWORD)).expect("write password file");
    let cfg = camera(&format!(
        "url: rtsp://127.0.0.1:{}/auth\nusername: {}\npassword_file: {}",
        server.auth_port,
        gst::USER,
        file.display()
    ));
    let w = Watch::start(&cfg);
    w.until("frames with a password file", LONG, frames_at_least(10))
        .await;
    w.stop().await;
    assert!(!log_text().contains(gst::PASSWORD), "password in the log");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_server_is_reported_then_refused_until_it_returns() {
    let mut server = RtspTestServer::start();
    let w = Watch::start(&camera(&format!("url: {}", server.url("/live"))));
    w.until("frames", LONG, frames_at_least(10)).await;
    server.kill();
    w.until(
        "connection refused after the server died",
        LONG,
        down_with("connection refused"),
    )
    .await;
    let downs = w.downs();
    // The first report is about the session that was playing; only the
    // reconnect attempts find nobody listening.
    assert_ne!(downs[0], "connection refused", "{downs:?}");
    assert!(downs.len() >= 2, "{downs:?}");
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paused_source_ends_the_session_and_resumed_source_plays_again() {
    let mut server = RtspTestServer::start();
    let cfg = camera(&format!("url: {}", server.url("/live")));
    let silence = quick(&cfg).silence_timeout;
    let w = Watch::start(&cfg);
    w.until("frames", LONG, frames_at_least(10)).await;
    server.command("pause");
    let paused_at = Instant::now();
    w.until("silence reported", silence + LONG, |evs| {
        evs.iter()
            .any(|(_, k)| matches!(k, EventKind::CameraDown { reason, .. } if reason.starts_with("no video frame for")))
    })
    .await;
    assert!(
        paused_at.elapsed() >= silence,
        "reported before the silence timeout"
    );
    server.command("resume");
    let resumed_at = Instant::now();
    w.until("frames again after resume", LONG, |_| {
        w.frames_since(resumed_at) >= 10
    })
    .await;
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn udp_transport_plays_too() {
    let server = RtspTestServer::start();
    let w = Watch::start(&camera(&format!(
        "url: {}\ntransport: udp",
        server.url("/live")
    )));
    w.until("frames over UDP", LONG, frames_at_least(15)).await;
    w.stop().await;
}
