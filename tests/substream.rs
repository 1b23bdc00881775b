//! A camera whose picture checks run on its substream (`picture_url:`), end
//! to end: the real camera task with its two RTSP sessions against
//! GStreamer's server (tests/rtsp_server.py: `/cam-main` and `/cam-sub`, two
//! live x264 pipelines of one scene), feeding the core's per-camera judge
//! (`doorwarden::core::streams`). The camera is live only while both
//! streams are, and a fault of either names its stream.
//!
//! Timing margins are generous (shared, noisy machines): the tests assert
//! which state a camera reaches and why; how fast is for the bench.

#[path = "common/camera_watch.rs"]
mod camera_watch;
mod common;
#[path = "common/gst.rs"]
mod gst;

use std::time::{Duration, Instant};

use camera_watch::{CameraWatch, camera, quick};
use common::mosquitto::{Mosquitto, TestClient};
use doorwarden::core::liveness::LivenessKind;
use doorwarden::core::{EventKind, SubstreamEvent};
use doorwarden::io::picture::CloseLook;
use gst::RtspTestServer;

/// Connect, a close look, warmup and a clock measurement on a busy machine.
const LONG: Duration = Duration::from_secs(30);

/// Watches a camera with main stream `main` and picture substream `sub`,
/// `picture_check: required`, with a close look on (a delivery running).
fn watch(server: &RtspTestServer, main: &str, sub: &str) -> CameraWatch {
    let cfg = camera(&format!(
        "url: {}\npicture_url: {}\npicture_check: required\n",
        server.url(main),
        server.url(sub)
    ));
    let look = CloseLook::default();
    look.set(true);
    CameraWatch::start_looking(&cfg, quick(&cfg), look)
}

fn substream_frames_since(w: &CameraWatch, since: Instant) -> usize {
    w.events()
        .iter()
        .filter(|(t, k)| {
            *t >= since
                && matches!(
                    k,
                    EventKind::Substream {
                        event: SubstreamEvent::Frame(_),
                        ..
                    }
                )
        })
        .count()
}

/// Waits for the camera to leave `Live` and returns the state and reason it
/// went to.
async fn lost(w: &CameraWatch, since: Instant) -> (LivenessKind, String) {
    w.until("the camera leaves live", LONG, |w| {
        w.first_loss_since(since).is_some()
    })
    .await;
    let t = w.first_loss_since(since).expect("checked just above");
    (t.to, t.reason.unwrap_or_default())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_camera_whose_substream_carries_the_pictures_is_live() {
    let server = RtspTestServer::start();
    let w = watch(&server, "/cam-main", "/cam-sub");
    w.until_state(LivenessKind::Live, LONG).await;
    let live_at = Instant::now();
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(w.state(), (LivenessKind::Live, None), "{:#?}", w.summary());
    // Both sessions deliver, and the pictures judged are decoded.
    assert!(w.frames_since(live_at) >= 30, "{:#?}", w.summary());
    assert!(
        substream_frames_since(&w, live_at) >= 30,
        "{:#?}",
        w.summary()
    );
    assert!(w.pictures() >= 60, "{} pictures", w.pictures());
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_substream_takes_the_camera_out_and_says_so() {
    let mut server = RtspTestServer::start();
    let w = watch(&server, "/cam-main", "/cam-sub");
    w.until_state(LivenessKind::Live, LONG).await;
    let hung_at = Instant::now();
    server.command("still cam-sub");
    assert_eq!(
        lost(&w, hung_at).await,
        (
            LivenessKind::Frozen,
            "substream: picture frozen: not even sensor noise changes".to_string()
        ),
        "{:#?}",
        w.summary()
    );
    // The main stream went on the whole time.
    assert!(w.frames_since(hung_at) >= 15, "{:#?}", w.summary());
    server.command("moving cam-sub");
    w.until_state(LivenessKind::Live, LONG).await;
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_substream_takes_the_camera_out_and_says_so() {
    let mut server = RtspTestServer::start();
    let w = watch(&server, "/cam-main", "/cam-sub");
    w.until_state(LivenessKind::Live, LONG).await;
    let paused_at = Instant::now();
    server.command("pause cam-sub");
    let (kind, reason) = lost(&w, paused_at).await;
    assert_eq!(kind, LivenessKind::Stalled, "{:#?}", w.summary());
    assert!(
        reason.starts_with("substream: no frame for "),
        "{reason}: {:#?}",
        w.summary()
    );
    server.command("resume cam-sub");
    w.until_state(LivenessKind::Live, LONG).await;
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_main_stream_takes_the_camera_out_while_the_substream_is_fine() {
    let mut server = RtspTestServer::start();
    let w = watch(&server, "/cam-main", "/cam-sub");
    w.until_state(LivenessKind::Live, LONG).await;
    let paused_at = Instant::now();
    server.command("pause cam-main");
    let (kind, reason) = lost(&w, paused_at).await;
    assert_eq!(kind, LivenessKind::Stalled, "{:#?}", w.summary());
    assert!(
        reason.starts_with("no frame for "),
        "{reason}: {:#?}",
        w.summary()
    );
    // The substream's live pictures do not make up for the main stream.
    let pictures = w.pictures();
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_ne!(w.state().0, LivenessKind::Live, "{:#?}", w.summary());
    assert!(substream_frames_since(&w, paused_at) >= 30);
    assert!(w.pictures() > pictures, "the substream's pictures stopped");
    server.command("resume cam-main");
    w.until_state(LivenessKind::Live, LONG).await;
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replayed_main_stream_is_caught_behind_a_live_substream() {
    // /live loops a pre-encoded 4 s clip: the substream is live, but the
    // main stream's keyframes repeat byte for byte.
    let server = RtspTestServer::start();
    let w = watch(&server, "/live", "/cam-sub");
    w.until("the replay is caught", LONG, |w| {
        w.state()
            .1
            .is_some_and(|r| r.starts_with("the picture repeats every "))
    })
    .await;
    let reason = w.state().1.unwrap_or_default();
    let every: f64 = reason
        .strip_prefix("the picture repeats every ")
        .and_then(|r| r.strip_suffix(" s: a replayed recording"))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("reason: {reason}"));
    assert!((3.5..=4.5).contains(&every), "{reason}");
    assert_eq!(w.state().0, LivenessKind::Frozen);
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(w.state().0, LivenessKind::Frozen, "{:#?}", w.summary());
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_substream_keeps_the_camera_out_with_its_reason() {
    let server = RtspTestServer::start();
    let w = watch(&server, "/cam-main", "/no-such-substream");
    w.until("the substream's refusal is shown", LONG, |w| {
        w.state().1.as_deref() == Some("substream: RTSP 404 Not Found")
    })
    .await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert!(
        !w.changes().iter().any(|t| t.to == LivenessKind::Live),
        "{:#?}",
        w.summary()
    );
    assert_eq!(w.state().0, LivenessKind::Offline);
    w.stop().await;
}

/// What Home Assistant gets: `doorwarden run`'s own code with a camera whose
/// pictures come from its substream, publishing to a real Mosquitto. The
/// camera's state and the door's interlock name the substream when it is
/// the one at fault.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn home_assistant_is_told_when_the_substream_is_the_stream_at_fault() {
    let broker = Mosquitto::start();
    let mut server = RtspTestServer::start();
    let mut ha = TestClient::connect(&broker).await;
    ha.subscribe("doorwarden/camera/porch/state").await;
    ha.subscribe("doorwarden/front/state").await;
    let dir = tempfile::tempdir().expect("tempdir");
    let text = format!(
        "mqtt:\n  url: {}\n  keep_alive: 5s\n\
         locks:\n  front:\n    zigbee2mqtt:\n      topic: zigbee2mqtt/front_lock\n    cameras: [porch]\n\
         cameras:\n  porch:\n    url: {}\n    picture_url: {}\n    picture_check: required\n\
         storage:\n  dir: {:?}\n",
        broker.url(),
        server.url("/cam-main"),
        server.url("/cam-sub"),
        dir.path().display().to_string()
    );
    let config = doorwarden::config::load_str(&text, "substream.yaml")
        .unwrap_or_else(|e| panic!("test config: {e}"));
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let bridge = tokio::spawn(async move {
        let shutdown = async move {
            let _ = stopped.await;
        };
        if let Err(e) = doorwarden::runtime::run(config, shutdown).await {
            panic!("bridge stopped: {e}");
        }
    });
    ha.wait_for(
        |m| m.topic == "doorwarden/camera/porch/state" && m.json()["state"] == "live",
        LONG,
        "the camera live",
    )
    .await;
    // The lock reports locked and a window is open: the interlock now
    // waits only on the camera.
    ha.publish(
        "zigbee2mqtt/front_lock",
        r#"{"state":"LOCK","lock_state":"locked"}"#,
        false,
    )
    .await;
    ha.publish("doorwarden/front/delivery/grant/set", "PRESS", false)
        .await;
    server.command("pause cam-sub");
    // The camera's state and the door's come about together: both are
    // read from one pass over what arrives.
    let mut camera_state = None;
    let mut door_state = None;
    let mut doors = Vec::new();
    ha.try_wait_for(
        |m| {
            if m.topic == "doorwarden/camera/porch/state" && m.json()["state"] == "stalled" {
                camera_state.get_or_insert(m.json());
            }
            if m.topic == "doorwarden/front/state" {
                doors.push(m.text());
                if m.json()["interlock_reason"]
                    .as_str()
                    .is_some_and(|r| r.contains("substream: no frame for "))
                {
                    door_state.get_or_insert(m.json());
                }
            }
            camera_state.is_some() && door_state.is_some()
        },
        LONG,
    )
    .await;
    let state = camera_state.expect("the camera's state went to stalled");
    let reason = state["reason"].as_str().unwrap_or_default().to_string();
    assert!(reason.starts_with("substream: no frame for "), "{state}");
    let door =
        door_state.unwrap_or_else(|| panic!("the door never named the substream: {doors:#?}"));
    assert_eq!(door["interlock"], "blocking", "{door}");
    let _ = stop.send(());
    let _ = tokio::time::timeout(Duration::from_secs(15), bridge).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_substream_uses_its_own_or_the_cameras_credentials_and_never_shows_them() {
    let server = RtspTestServer::start();
    let wrong = "Sub-hunter2-wrong";
    // The substream's own (wrong) credentials, in its URL.
    let own = CameraWatch::start_looking(
        &camera(&format!(
            "url: {}\npicture_url: {}\npicture_check: required\n",
            server.url("/cam-main"),
            server.auth_url(gst::USER, wrong)
        )),
        quick(&camera("url: rtsp://127.0.0.1/x\n")),
        CloseLook::default(),
    );
    own.until("the substream refused", LONG, |w| {
        w.state().1.as_deref() == Some("substream: RTSP 401 Unauthorized")
    })
    .await;
    // The camera's username and password reach the substream too: right
    // ones get it past the camera's challenge (its pictures are then the
    // looped clip /auth serves, a replay).
    let cfg = camera(&format!(
        "url: {}\npicture_url: rtsp://127.0.0.1:{}/auth\nusername: {}\npassword: {}\npicture_check: required\n",
        server.url("/cam-main"),
        server.auth_port,
        gst::USER,
        gst::PASSWORD
    ));
    let given = CameraWatch::start_looking(&cfg, quick(&cfg), CloseLook::default());
    given
        .until("the substream's pictures judged", LONG, |w| {
            w.state()
                .1
                .is_some_and(|r| r.starts_with("substream: the picture repeats every "))
        })
        .await;
    let seen = format!("{:?}", own.seen());
    assert!(!seen.contains(wrong), "password in an event: {seen}");
    own.stop().await;
    given.stop().await;
}
