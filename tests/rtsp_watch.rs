//! The real camera task (`doorwarden::io::rtsp`) feeding the real liveness
//! machine, against real RTSP servers: GStreamer's (tests/rtsp_server.py)
//! for what a real camera does and how it really fails, and the simulated
//! camera (`doorwarden_sim::camera`, a fake) for faults GStreamer cannot
//! produce on demand (byte-identical frames, a slow or stopped RTP clock,
//! garbage, a stall that keeps RTCP going).
//!
//! Timing margins are generous on purpose (shared, noisy machines): the
//! tests assert which state a camera reaches and why, not how fast.

#[path = "common/camera_watch.rs"]
mod camera_watch;
#[path = "common/gst.rs"]
mod gst;

use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use camera_watch::{CameraWatch, camera, quick};
use doorwarden::core::EventKind;
use doorwarden::core::liveness::LivenessKind;
use doorwarden::io::picture::CloseLook;
use doorwarden_sim::camera::{SimCamera, SimCameraOptions};
use gst::RtspTestServer;

/// Everything logged by the process (ours and retina's, at debug), so a test
/// can check that no secret ever reaches a log line.
fn captured_log() -> &'static Arc<Mutex<Vec<u8>>> {
    static LOG: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    LOG.get_or_init(|| {
        let buffer = Arc::new(Mutex::new(Vec::new()));
        let sink = buffer.clone();
        // Fails only if a subscriber is already installed, which nothing
        // else in this test binary does.
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

/// Watches `url` (plus any extra camera YAML lines) with quick reconnects.
fn watch(url: &str, extra: &str) -> CameraWatch {
    captured_log();
    let cfg = camera(&format!("url: {url}\n{extra}"));
    CameraWatch::start(&cfg, quick(&cfg))
}

/// For the tests of the RTSP session, RTP timing and the stream rules, which
/// the picture does not touch: /live, /auth and the --mount clips loop a
/// pre-encoded clip, which the picture check rightly calls a replay.
const STREAM_ONLY: &str = "picture_check: off\n";

fn ever_live(w: &CameraWatch) -> bool {
    w.changes().iter().any(|t| t.to == LivenessKind::Live)
}

/// Long enough for connect + warmup (3 s) + the first clock measurement on
/// a busy machine.
const LONG: Duration = Duration::from_secs(30);
/// stall_after (2 s) plus a wide margin for a loaded machine.
const STALL_MARGIN: Duration = Duration::from_secs(6);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gstreamer_stream_is_live_with_one_summary_per_frame() {
    let server = RtspTestServer::start();
    // Encoded live, watched with the default of a door's camera: its
    // picture must be checked before it counts as live.
    let w = watch(&server.url("/cam-live"), "");
    w.until_state(LivenessKind::Live, LONG).await;
    let events = w.events();
    assert!(
        matches!(&events[0].1, EventKind::CameraUp { camera } if camera == "porch"),
        "{:?}",
        w.summary()
    );
    let frames: Vec<_> = events
        .iter()
        .filter_map(|(_, k)| match k {
            EventKind::CameraFrame { frame, .. } => Some(*frame),
            _ => None,
        })
        .collect();
    assert!(frames.len() >= 30, "{} frames", frames.len());
    assert!(frames.iter().all(|f| f.clock_rate == 90_000 && f.size > 0));
    // 15 fps on a 90 kHz clock: 6000 ticks per frame. The server stamps
    // frames when it sends them, as a camera stamps them at capture, so
    // single steps jitter; the median does not.
    let mut steps: Vec<i64> = frames
        .windows(2)
        .map(|p| p[1].rtp_ts - p[0].rtp_ts)
        .collect();
    assert!(
        steps.iter().all(|s| *s > 0),
        "RTP time went backwards: {steps:?}"
    );
    steps.sort_unstable();
    let median = steps[steps.len() / 2];
    assert!(
        (5700..=6300).contains(&median),
        "median step {median}: {steps:?}"
    );
    // GOP 15: one keyframe in 15 frames.
    let keys = frames.iter().filter(|f| f.keyframe).count();
    let expected = frames.len() / 15;
    assert!(
        keys.abs_diff(expected) <= 1,
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
async fn paused_camera_is_stalled_then_offline_then_live_again() {
    let mut server = RtspTestServer::start();
    let w = watch(&server.url("/live"), STREAM_ONLY);
    w.until_state(LivenessKind::Live, LONG).await;
    server.command("pause");
    let paused_at = Instant::now();
    w.until_state(LivenessKind::Stalled, STALL_MARGIN).await;
    let loss = w.first_loss_since(paused_at).expect("left Live");
    assert_eq!(loss.to, LivenessKind::Stalled);
    let reason = loss.reason.unwrap_or_default();
    assert!(reason.starts_with("no frame for "), "{reason}");
    // RTSP keeps answering, no video comes: the task gives the session up.
    w.until("session given up", LONG, |w| {
        w.downs()
            .iter()
            .any(|r| r.starts_with("no video frame for "))
    })
    .await;
    assert_eq!(w.state().0, LivenessKind::Offline);
    server.command("resume");
    let resumed_at = Instant::now();
    w.until("live again after resume", LONG, |w| {
        w.state().0 == LivenessKind::Live && w.frames_since(resumed_at) > 0
    })
    .await;
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn still_picture_with_encoder_running_is_frozen() {
    let mut server = RtspTestServer::start();
    let w = watch(&server.url("/live"), STREAM_ONLY);
    w.until_state(LivenessKind::Live, LONG).await;
    // Let the machine learn what this camera's moving picture looks like.
    tokio::time::sleep(Duration::from_secs(3)).await;
    server.command("still");
    let still_at = Instant::now();
    w.until_state(LivenessKind::Frozen, LONG).await;
    let loss = w.first_loss_since(still_at).expect("left Live");
    assert_eq!(loss.to, LivenessKind::Frozen, "{:?}", w.summary());
    let reason = loss.reason.unwrap_or_default();
    assert!(reason.contains("picture unchanged"), "{reason}");
    server.command("moving");
    w.until_state(LivenessKind::Live, LONG).await;
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_server_is_offline_with_connection_refused() {
    let mut server = RtspTestServer::start();
    let w = watch(&server.url("/live"), STREAM_ONLY);
    w.until_state(LivenessKind::Live, LONG).await;
    server.kill();
    w.until("connection refused", LONG, |w| {
        w.state()
            == (
                LivenessKind::Offline,
                Some("connection refused".to_string()),
            )
    })
    .await;
    let downs = w.downs();
    // The first report is about the session that was playing; only the
    // reconnect attempts find nobody listening.
    assert_ne!(downs[0], "connection refused", "{downs:?}");
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_path_is_offline_with_404() {
    let server = RtspTestServer::start();
    let w = watch(&server.url("/no-such-stream"), "");
    w.until("404", LONG, |w| {
        w.state() == (LivenessKind::Offline, Some("RTSP 404 Not Found".into()))
    })
    .await;
    assert!(
        !w.events()
            .iter()
            .any(|(_, k)| matches!(k, EventKind::CameraUp { .. }))
    );
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_password_is_offline_with_401_and_never_printed() {
    let server = RtspTestServer::start();
    let wrong = "hunter2-wrong-Pa55";
    let unauthorized = (
        LivenessKind::Offline,
        Some("RTSP 401 Unauthorized".to_string()),
    );
    let w = watch(&server.auth_url(gst::USER, wrong), "");
    w.until("401", LONG, |w| w.state() == unauthorized).await;
    // No credentials at all: the camera asks, and there are none to give.
    let anonymous = watch(&format!("rtsp://127.0.0.1:{}/auth", server.auth_port), "");
    anonymous
        .until("401 without credentials", LONG, |w| {
            w.state() == unauthorized
        })
        .await;
    // Wrong password from the config fields instead of the URL.
    let w2 = watch(
        &format!("rtsp://127.0.0.1:{}/auth", server.auth_port),
        &format!("username: {}\npassword: {wrong}", gst::USER),
    );
    w2.until("401 with config credentials", LONG, |w| {
        w.state() == unauthorized
    })
    .await;

    for watch in [&w, &anonymous, &w2] {
        let seen = format!("{:?}", watch.seen());
        assert!(!seen.contains(wrong), "password in an event: {seen}");
        assert!(!ever_live(watch));
    }
    let log = log_text();
    assert!(
        log.contains("RTSP 401 Unauthorized"),
        "the failure was logged"
    );
    assert!(!log.contains(wrong), "password in the log");
    w.stop().await;
    anonymous.stop().await;
    w2.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn right_password_from_url_or_file_is_live() {
    let server = RtspTestServer::start();
    let w = watch(&server.auth_url(gst::USER, gst::PASSWORD), STREAM_ONLY);
    w.until_state(LivenessKind::Live, LONG).await;
    w.stop().await;

    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("camera-password");
    std::fs::write(&file, format!("{}\n", gst::PASSWORD)).expect("write password file");
    let w = watch(
        &format!("rtsp://127.0.0.1:{}/auth", server.auth_port),
        &format!(
            "username: {}\npassword_file: {}\n{STREAM_ONLY}",
            gst::USER,
            file.display()
        ),
    );
    w.until_state(LivenessKind::Live, LONG).await;
    w.stop().await;
    assert!(!log_text().contains(gst::PASSWORD), "password in the log");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_watchers_of_one_camera_are_both_live() {
    let server = RtspTestServer::start();
    // A live source, each watcher checking the picture (the default).
    let a = watch(&server.url("/cam-live"), "");
    let b = watch(&server.url("/cam-live"), "");
    a.until_state(LivenessKind::Live, LONG).await;
    b.until_state(LivenessKind::Live, LONG).await;
    a.stop().await;
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn udp_transport_is_live_too() {
    let server = RtspTestServer::start();
    let w = watch(
        &server.url("/live"),
        &format!("transport: udp\n{STREAM_ONLY}"),
    );
    w.until_state(LivenessKind::Live, LONG).await;
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h265_stream_is_live() {
    // No H.265 clip is bundled: encode a short one once (4 s, 640x360).
    // x265's default open GOP makes every keyframe after the first a CRA
    // picture, which retina alone does not flag as a keyframe.
    let dir = tempfile::tempdir().expect("tempdir");
    let clip = dir.path().join("moving.h265");
    let status = std::process::Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-y", "-f", "lavfi"])
        .args([
            "-i",
            "testsrc2=size=640x360:rate=15:duration=4",
            "-an",
            "-c:v",
            "libx265",
        ])
        .args(["-preset", "ultrafast", "-x265-params"])
        .arg("keyint=15:min-keyint=15:bframes=0:repeat-headers=1:log-level=error")
        .args(["-f", "hevc"])
        .arg(&clip)
        .status()
        .expect("run ffmpeg (Debian package ffmpeg)");
    assert!(status.success(), "ffmpeg could not encode the H.265 clip");
    let mount = format!("hevc={}", clip.display());
    let server = RtspTestServer::start_with(&["--mount", &mount]);
    // About retina's H.265 keyframes; the H.265 picture has tests of its
    // own (picture_watch.rs, picture_default.rs).
    let w = watch(&server.url("/hevc"), STREAM_ONLY);
    w.until_state(LivenessKind::Live, LONG).await;
    let keys = w
        .events()
        .iter()
        .filter(|(_, k)| matches!(k, EventKind::CameraFrame { frame, .. } if frame.keyframe))
        .count();
    assert!(keys >= 2, "{keys} keyframes");
    w.stop().await;
}

// --- Faults only the simulated camera (a fake) can produce ---------------

async fn sim() -> SimCamera {
    SimCamera::start(SimCameraOptions::default())
        .await
        .expect("simulated camera starts")
}

/// Watches the simulated camera with its default picture check and the
/// close look the runtime takes while a window is open. Outside one, a
/// single keyframe in ten seconds is decoded, and a picture verdict left
/// by a fault takes minutes to clear after the camera recovers.
fn watch_sim(cam: &SimCamera) -> CameraWatch {
    captured_log();
    let cfg = camera(&format!("url: {}\n", cam.url()));
    let look = CloseLook::default();
    look.set(true);
    CameraWatch::start_looking(&cfg, quick(&cfg), look)
}

/// Starts watching a healthy simulated camera and waits until it is Live.
async fn live_sim() -> (SimCamera, CameraWatch) {
    let cam = sim().await;
    let w = watch_sim(&cam);
    w.until_state(LivenessKind::Live, LONG).await;
    (cam, w)
}

/// Injects `fault` into a live simulated camera and expects `Frozen` with a
/// reason containing one of `wanted`.
async fn fault_freezes(fault: impl FnOnce(&SimCamera), wanted: &[&str]) {
    let (cam, w) = live_sim().await;
    fault(&cam);
    let at = Instant::now();
    w.until_state(LivenessKind::Frozen, LONG).await;
    let loss = w.first_loss_since(at).expect("left Live");
    let reason = loss.reason.clone().unwrap_or_default();
    assert_eq!(loss.to, LivenessKind::Frozen, "{:?}", w.summary());
    assert!(
        wanted.iter().any(|w| reason.contains(w)),
        "reason {reason:?}, wanted {wanted:?}"
    );
    // And it stays out of Live while the fault lasts.
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_ne!(w.state().0, LivenessKind::Live, "{:?}", w.summary());
    cam.restore();
    w.until_state(LivenessKind::Live, LONG).await;
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sim_replayed_identical_frames_are_frozen() {
    // A replay caught on a keyframe shows as identical keyframes, on a
    // P-frame as a run of identical frames: both are the same fault.
    fault_freezes(
        SimCamera::freeze,
        &["identical frames", "keyframes in a row are byte-identical"],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sim_half_speed_rtp_clock_is_frozen() {
    fault_freezes(SimCamera::half_speed_clock, &["RTP clock runs at 0.5x"]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sim_frozen_rtp_timestamps_are_frozen() {
    fault_freezes(
        SimCamera::freeze_timestamps,
        &["RTP timestamps stopped advancing"],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sim_stall_with_rtcp_and_keepalives_still_flowing_is_stalled_then_offline() {
    let (cam, w) = live_sim().await;
    cam.stall();
    let at = Instant::now();
    w.until_state(LivenessKind::Stalled, STALL_MARGIN).await;
    assert_eq!(
        w.first_loss_since(at).map(|t| t.to),
        Some(LivenessKind::Stalled)
    );
    // retina alone would wait forever here: RTCP keeps coming. The task's
    // own timer ends the session.
    w.until("session given up", LONG, |w| {
        w.downs()
            .iter()
            .any(|r| r.starts_with("no video frame for "))
    })
    .await;
    cam.restore();
    w.until_state(LivenessKind::Live, LONG).await;
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sim_dropped_and_refused_is_offline_then_recovers() {
    let (cam, w) = live_sim().await;
    cam.refuse();
    cam.drop_all();
    w.until("connection refused", LONG, |w| {
        w.state()
            == (
                LivenessKind::Offline,
                Some("connection refused".to_string()),
            )
    })
    .await;
    cam.accept();
    w.until_state(LivenessKind::Live, LONG).await;
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sim_garbage_is_never_live() {
    // Garbage from the first byte: nothing to parse, never live.
    let cam = sim().await;
    cam.garbage();
    let w = watch_sim(&cam);
    w.until("reported down", LONG, |w| !w.downs().is_empty())
        .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(!ever_live(&w), "{:?}", w.summary());
    assert_eq!(w.state().0, LivenessKind::Offline, "{:?}", w.summary());
    w.stop().await;

    // Garbage in the middle of a live session: out of Live, and not back.
    let (cam, w) = live_sim().await;
    cam.garbage();
    let at = Instant::now();
    w.until("left Live", LONG, |w| w.first_loss_since(at).is_some())
        .await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_ne!(w.state().0, LivenessKind::Live, "{:?}", w.summary());
    let reasons = w.downs();
    assert!(
        reasons.iter().any(|r| r == "camera sent invalid data"),
        "reasons: {reasons:?}"
    );
    w.stop().await;
}
