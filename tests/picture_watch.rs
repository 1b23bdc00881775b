//! The picture checks end to end: the real camera task decoding real x264
//! (and x265) output from GStreamer's RTSP server (tests/rtsp_server.py,
//! the `/cam-*` mounts encode live), feeding the real liveness machine with
//! `picture_check` on. Each fault the stream rules cannot see is caught with
//! its reason; live scenes, a quiet one included, stay live.
//!
//! Timing margins are generous (shared, noisy machines): the tests assert
//! which state a camera reaches and why; how fast is for the bench.

#[path = "common/camera_watch.rs"]
mod camera_watch;
#[path = "common/gst.rs"]
mod gst;
#[path = "common/picture_faults.rs"]
mod picture_faults;

use std::time::{Duration, Instant};

use camera_watch::{CameraWatch, camera, quick};
use doorwarden::core::liveness::LivenessKind;
use doorwarden::io::picture::CloseLook;
use gst::RtspTestServer;
use picture_faults::{ever_live, frozen_reason, hangs_and_recovers};

/// Connect, a close look, warmup and a clock measurement on a busy machine.
const LONG: Duration = Duration::from_secs(30);

/// Watches `path` with `picture_check` and the runtime's close look on (a
/// window open), as the door's cameras are during a delivery.
fn watch(server: &RtspTestServer, path: &str, policy: &str) -> CameraWatch {
    let cfg = camera(&format!(
        "url: {}\npicture_check: {policy}\n",
        server.url(path)
    ));
    let look = CloseLook::default();
    look.set(true);
    CameraWatch::start_looking(&cfg, quick(&cfg), look)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_scenes_with_a_clock_stay_live_the_quiet_one_included() {
    let server = RtspTestServer::start();
    for path in ["/cam-live", "/cam-quiet"] {
        let w = watch(&server, path, "required");
        w.until_state(LivenessKind::Live, LONG).await;
        let live_at = Instant::now();
        // Well past every picture rule's span, and several keyframes.
        tokio::time::sleep(Duration::from_secs(8)).await;
        let lost: Vec<_> = w
            .changes()
            .into_iter()
            .filter(|t| t.from == LivenessKind::Live)
            .collect();
        assert!(lost.is_empty(), "{path} left live: {lost:?}");
        assert!(
            w.pictures() >= 60,
            "{path}: {} pictures decoded in {:?}",
            w.pictures(),
            live_at.elapsed()
        );
        w.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_picture_frozen_before_doorwarden_connects_is_never_live() {
    let server = RtspTestServer::start();
    let w = watch(&server, "/cam-still", "required");
    assert_eq!(
        frozen_reason(&w, LONG).await,
        "picture frozen: not even sensor noise changes"
    );
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert!(!ever_live(&w), "{:#?}", w.summary());
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_picture_behind_a_ticking_clock_is_caught() {
    let server = RtspTestServer::start();
    let w = watch(&server, "/cam-still-clock", "required");
    assert_eq!(
        frozen_reason(&w, LONG).await,
        "picture frozen; only the on-screen clock changes"
    );
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert!(!ever_live(&w), "{:#?}", w.summary());
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_black_picture_is_no_picture() {
    let server = RtspTestServer::start();
    let w = watch(&server, "/cam-black", "required");
    assert_eq!(
        frozen_reason(&w, LONG).await,
        "no picture: the lens may be covered"
    );
    assert!(!ever_live(&w), "{:#?}", w.summary());
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_looped_recording_is_caught_as_a_replay_at_its_first_repeat() {
    // /live pushes a pre-encoded 4 s clip (60 frames at 15 fps) in a loop:
    // every stream rule passes it, and until now it was live for good.
    let server = RtspTestServer::start();
    let w = watch(&server, "/live", "required");
    let reason = frozen_reason(&w, LONG).await;
    let every: f64 = reason
        .strip_prefix("the picture repeats every ")
        .and_then(|r| r.strip_suffix(" s: a replayed recording"))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("reason: {reason}"));
    assert!((3.5..=4.5).contains(&every), "{reason}");
    // It stays caught: the loop goes on, and the camera stays out of live.
    tokio::time::sleep(Duration::from_secs(6)).await;
    assert_eq!(w.state().0, LivenessKind::Frozen, "{:#?}", w.summary());
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outside_a_close_look_a_keyframe_is_decoded_only_every_ten_seconds() {
    let server = RtspTestServer::start();
    let cfg = camera(&format!(
        "url: {}\npicture_check: required\n",
        server.url("/cam-live")
    ));
    // No window open: the runtime never asks for a close look.
    let w = CameraWatch::start(&cfg, quick(&cfg));
    w.until_state(LivenessKind::Live, LONG).await;
    // The session's first 5 s from its first keyframe are a close look:
    // every frame decoded.
    w.until("the session's close look", LONG, |w| w.pictures() >= 50)
        .await;
    tokio::time::sleep(Duration::from_secs(12)).await;
    let before = w.pictures();
    tokio::time::sleep(Duration::from_secs(12)).await;
    let idle = w.pictures() - before;
    // 12 s with one keyframe a second: one or two decoded, not 12 or 180.
    assert!((1..=2).contains(&idle), "{idle} pictures in 12 s");
    assert_eq!(w.state().0, LivenessKind::Live);
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_live_camera_whose_sensor_hangs_is_frozen_and_comes_back_when_it_recovers() {
    let mut server = RtspTestServer::start();
    let w = watch(&server, "/cam-switch", "required");
    hangs_and_recovers(&mut server, &w, "cam-switch", LONG).await;
    w.stop().await;
}

/// A hung sensor behind an on-screen clock and an encoder with a bitrate
/// target: x264 keeps refining the still picture after every keyframe, so
/// P-frames are never empty and the decoded picture keeps changing, by ever
/// smaller amounts, in the same places; the clock makes every keyframe new.
/// That is not sensor noise, which does not die down.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_still_picture_the_encoder_keeps_refining_is_caught() {
    let server = RtspTestServer::start();
    let w = watch(&server, "/cam-still-clock-cbr", "required");
    assert_eq!(
        frozen_reason(&w, LONG).await,
        "picture frozen: only the encoder refines a still picture"
    );
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert!(!ever_live(&w), "{:#?}", w.summary());
    w.stop().await;
}

/// The same encoder on a live quiet scene (faint sensor noise, a clock):
/// after each keyframe it refines the picture too, but the noise goes on,
/// so the camera stays live.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_quiet_scene_behind_a_bitrate_target_stays_live() {
    let server = RtspTestServer::start();
    let w = watch(&server, "/cam-quiet-cbr", "required");
    w.until_state(LivenessKind::Live, LONG).await;
    // Many keyframes (one a second), each followed by its refinement.
    tokio::time::sleep(Duration::from_secs(12)).await;
    let lost: Vec<_> = w
        .changes()
        .into_iter()
        .filter(|t| t.from == LivenessKind::Live)
        .collect();
    assert!(lost.is_empty(), "left live: {lost:?}");
    w.stop().await;
}
