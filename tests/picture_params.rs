//! Cameras that send their parameter sets (H.264 SPS/PPS, H.265
//! VPS/SPS/PPS) only in the SDP (`sprop-parameter-sets`), or only with the
//! first keyframe, watched end to end with `picture_check: required` and no
//! close look: outside the session's first seconds a keyframe is decoded
//! every 10 s by a fresh decoder (OpenH264) or ffmpeg child, which knows
//! nothing of the stream but what it is handed. The sources are GStreamer's
//! (tests/rtsp_server.py, `/cam-live-sdp*`), whose frames carry no
//! parameter sets (checked on the RTP packets when the mounts were made).
//!
//! H.264 keyframes (IDR pictures) get the stream's parameter sets from
//! retina, which puts them in front of every IDR frame. H.265 keyframes do
//! not: retina 0.4.21 strips in-band VPS/SPS/PPS from every frame and puts
//! its copy back only in front of IDR pictures, while an open-GOP encoder
//! (x265's default, and many cameras') sends one IDR when it starts and CRA
//! keyframes after it. A session that joins such a camera mid-stream (any
//! session but one started with the encoder) never sees a parameter set in
//! a frame, whether the camera sends them in-band or only in the SDP.
//!
//! The H.264 tests pass on retina's insertion alone; they are here for the
//! day it is not there (with retina's `ParameterSetInsertion::Never` and
//! the sampler's sets left out they end "the picture does not decode";
//! with the sampler's sets alone they pass).
//!
//! Timing margins are generous (shared, noisy machines): the tests assert
//! which state a camera reaches and that its pictures keep decoding.

#[path = "common/camera_watch.rs"]
mod camera_watch;
#[path = "common/gst.rs"]
mod gst;

use std::time::Duration;

use camera_watch::{CameraWatch, camera, quick};
use doorwarden::core::liveness::LivenessKind;
use gst::RtspTestServer;

/// Connect, the session's close look and warmup on a busy machine.
const LONG: Duration = Duration::from_secs(40);
/// Idle sampling decodes a keyframe every 10 s, and the core is told the
/// picture does not decode after 3 failed keyframes: this sees at least 3.
const IDLE: Duration = Duration::from_secs(36);

/// Watches `path` as a door's camera is between deliveries: pictures
/// required, no close look asked for. It must become live and stay live on
/// decoded pictures through several idle keyframes.
async fn live_on_idle_keyframes(server: &RtspTestServer, path: &str) {
    let cfg = camera(&format!(
        "url: {}\npicture_check: required\n",
        server.url(path)
    ));
    let w = CameraWatch::start(&cfg, quick(&cfg));
    stays_live_on_idle_keyframes(&w, path).await;
    w.stop().await;
}

async fn stays_live_on_idle_keyframes(w: &CameraWatch, path: &str) {
    w.until_state(LivenessKind::Live, LONG).await;
    let before = w.pictures();
    tokio::time::sleep(IDLE).await;
    let lost: Vec<_> = w
        .changes()
        .into_iter()
        .filter(|t| t.from == LivenessKind::Live)
        .collect();
    assert!(lost.is_empty(), "{path} left live: {lost:?}");
    let idle = w.pictures() - before;
    // A keyframe every 10 s (one a second is sent): 3 or 4 in 36 s.
    assert!(
        idle >= 3,
        "{path}: {idle} idle keyframes decoded in {IDLE:?}: {:#?}",
        w.summary()
    );
}

/// Watches `path` as [`live_on_idle_keyframes`] does, but joining the
/// camera mid-stream: another client (its stream rules only) is already
/// watching when the judged session starts, so the encoder's first
/// keyframe is long gone, as it is for a camera that has run for days.
async fn joined_mid_stream(server: &RtspTestServer, path: &str) {
    let url = server.url(path);
    let other_cfg = camera(&format!("url: {url}\npicture_check: off\n"));
    let other = CameraWatch::start(&other_cfg, quick(&other_cfg));
    other.until_state(LivenessKind::Live, LONG).await;
    // Past several keyframes (one a second).
    tokio::time::sleep(Duration::from_secs(3)).await;
    let cfg = camera(&format!("url: {url}\npicture_check: required\n"));
    let w = CameraWatch::start(&cfg, quick(&cfg));
    stays_live_on_idle_keyframes(&w, path).await;
    w.stop().await;
    other.stop().await;
}

// The five cases run side by side in one test: each waits through idle
// keyframes 10 s apart, and as separate tests the harness would run them two
// at a time (one per core) for two minutes of waiting.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parameter_sets_reach_the_decoder_on_every_idle_keyframe() {
    tokio::join!(
        // H.264, parameter sets only in the SDP.
        async {
            let server = RtspTestServer::start();
            live_on_idle_keyframes(&server, "/cam-live-sdp").await;
        },
        // H.264, parameter sets only with the first keyframe.
        async {
            let server = RtspTestServer::start();
            live_on_idle_keyframes(&server, "/cam-live-sdp-first").await;
        },
        // H.265 through ffmpeg, parameter sets only in the SDP.
        async {
            let server = RtspTestServer::start();
            live_on_idle_keyframes(&server, "/cam-live265-sdp").await;
        },
        // H.265 joined mid-stream, parameter sets only in the SDP.
        async {
            let server = RtspTestServer::start();
            joined_mid_stream(&server, "/cam-live265-sdp").await;
        },
        // H.265 joined mid-stream, parameter sets in band (retina drops them
        // from the CRA keyframes it does not count as keyframes).
        async {
            let server = RtspTestServer::start();
            joined_mid_stream(&server, "/cam-live265").await;
        },
    );
}
