//! The simulated camera as doorwarden's picture checks see it: the real
//! camera task decoding the sim camera's live OpenH264 stream, feeding the
//! real liveness machine with `picture_check: required` and the close look
//! a delivery asks for. The live source is judged live and stays so; each
//! fault switched on from live is caught with the reason a user would read;
//! the old looped clip (`SimClip::Recording`) is caught as the replay it is.
//!
//! Timing margins are generous (shared, slow machines): the tests assert
//! which state a camera reaches and why; how fast is for the benches.

#[path = "common/camera_watch.rs"]
mod camera_watch;

use std::time::{Duration, Instant};

use camera_watch::{CameraWatch, camera, quick};
use doorwarden::core::liveness::LivenessKind;
use doorwarden::io::picture::CloseLook;
use doorwarden_sim::camera::{SimCamera, SimCameraOptions, SimClip};

/// Connect, the picture checks, warmup and a clock measurement on a busy
/// machine.
const LONG: Duration = Duration::from_secs(40);

async fn sim(clip: SimClip) -> SimCamera {
    SimCamera::start(SimCameraOptions {
        clip,
        ..SimCameraOptions::default()
    })
    .await
    .expect("simulated camera starts")
}

/// Watches `cam` with `picture_check: required` and a close look (a window
/// open), as the door's cameras are during a delivery.
fn watch(cam: &SimCamera) -> CameraWatch {
    let cfg = camera(&format!("url: {}\npicture_check: required\n", cam.url()));
    let look = CloseLook::default();
    look.set(true);
    CameraWatch::start_looking(&cfg, quick(&cfg), look)
}

/// A live sim camera, watched until it is live.
async fn live(clip: SimClip) -> (SimCamera, CameraWatch) {
    let cam = sim(clip).await;
    let w = watch(&cam);
    w.until_state(LivenessKind::Live, LONG).await;
    (cam, w)
}

/// Switches a fault on and returns the reason the camera then left live
/// with; checks it left live only after the fault.
async fn reason_after(cam: &SimCamera, w: &CameraWatch, fault: impl Fn(&SimCamera)) -> String {
    let at = Instant::now();
    fault(cam);
    w.until("the camera to leave live", LONG, |w| {
        w.first_loss_since(at).is_some()
    })
    .await;
    let lost = w.first_loss_since(at).expect("left live");
    let before: Vec<_> = w
        .changes()
        .into_iter()
        .filter(|t| t.at.mono < at && t.from == LivenessKind::Live)
        .collect();
    assert!(before.is_empty(), "left live before the fault: {before:?}");
    assert_eq!(lost.to, LivenessKind::Frozen, "{:#?}", w.summary());
    lost.reason.unwrap_or_default()
}

/// The period in "the picture repeats every 3.0 s: a replayed recording":
/// the check times keyframes by their arrival, so it is the loop's length
/// give or take a busy machine's jitter.
fn replay_period(reason: &str) -> f64 {
    reason
        .strip_prefix("the picture repeats every ")
        .and_then(|r| r.strip_suffix(" s: a replayed recording"))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("not a replay: {reason}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_live_source_is_judged_live_and_stays_live_for_half_a_minute_quiet_scene_included() {
    let (moving, a) = live(SimClip::Live).await;
    let (quiet, b) = live(SimClip::Quiet).await;
    let since = Instant::now();
    // Past every picture rule's span many times over, and 30 keyframes: no
    // false "replayed" or "frozen" (the 10-minute soak is in the benches).
    tokio::time::sleep(Duration::from_secs(32)).await;
    for (name, w) in [("live", &a), ("quiet", &b)] {
        let lost: Vec<_> = w
            .changes()
            .into_iter()
            .filter(|t| t.from == LivenessKind::Live)
            .collect();
        assert!(lost.is_empty(), "{name} left live: {lost:?}");
        assert_eq!(w.state().0, LivenessKind::Live);
        // Decoded all along (a close look decodes every frame).
        assert!(
            w.pictures() >= 300,
            "{name}: {} pictures in {:?}",
            w.pictures(),
            since.elapsed()
        );
    }
    a.stop().await;
    b.stop().await;
    drop((moving, quiet));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn still_with_the_encoder_running_is_frozen_without_even_noise() {
    let (cam, w) = live(SimClip::Live).await;
    let reason = reason_after(&cam, &w, SimCamera::still).await;
    assert_eq!(reason, "picture frozen: not even sensor noise changes");
    cam.restore();
    w.until_state(LivenessKind::Live, LONG).await;
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_sensor_behind_a_ticking_clock_is_frozen() {
    let (cam, w) = live(SimClip::Live).await;
    let reason = reason_after(&cam, &w, SimCamera::hang_sensor).await;
    assert_eq!(reason, "picture frozen; only the on-screen clock changes");
    cam.restore();
    w.until_state(LivenessKind::Live, LONG).await;
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_covered_lens_is_no_picture() {
    let (cam, w) = live(SimClip::Live).await;
    let reason = reason_after(&cam, &w, SimCamera::cover).await;
    assert_eq!(reason, "no picture: the lens may be covered");
    cam.restore();
    w.until_state(LivenessKind::Live, LONG).await;
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_camera_replaying_its_last_seconds_is_a_replayed_recording() {
    let (cam, w) = live(SimClip::Live).await;
    let reason = reason_after(&cam, &w, SimCamera::replay).await;
    // Three GOPs of 15 frames: 3.0 s.
    let every = replay_period(&reason);
    assert!((2.5..=3.5).contains(&every), "{reason}");
    // The loop goes on and the camera stays caught.
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(w.state().0, LivenessKind::Frozen, "{:#?}", w.summary());
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn byte_identical_frames_are_frozen_by_the_stream_rules() {
    let (cam, w) = live(SimClip::Live).await;
    let reason = reason_after(&cam, &w, SimCamera::freeze).await;
    assert!(
        reason.ends_with(" identical frames")
            || reason == "two keyframes in a row are byte-identical",
        "{reason}"
    );
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bundled_recording_is_caught_as_a_replay() {
    let cam = sim(SimClip::Recording).await;
    let w = watch(&cam);
    w.until_state(LivenessKind::Frozen, LONG).await;
    w.until("the replay verdict", LONG, |w| {
        w.state()
            .1
            .is_some_and(|r| r.ends_with("a replayed recording"))
    })
    .await;
    // The clip is 4 s long.
    let reason = w.state().1.unwrap_or_default();
    assert!((3.5..=4.5).contains(&replay_period(&reason)), "{reason}");
    w.stop().await;
}
