//! What the picture-check tests ask of a watched camera, whichever decoder
//! judges it (OpenH264 in tests/picture_watch.rs, the ffmpeg child in
//! tests/picture_ffmpeg.rs): the test crate declares `camera_watch` and
//! `gst` at its root, as both do.

use std::time::{Duration, Instant};

use doorwarden::core::liveness::LivenessKind;

use crate::camera_watch::CameraWatch;
use crate::gst::RtspTestServer;

pub fn ever_live(w: &CameraWatch) -> bool {
    w.changes().iter().any(|t| t.to == LivenessKind::Live)
}

/// Waits up to `long` for the camera to be frozen and returns its reason.
pub async fn frozen_reason(w: &CameraWatch, long: Duration) -> String {
    w.until_state(LivenessKind::Frozen, long).await;
    w.state().1.unwrap_or_default()
}

/// A live camera on the switchable mount `feed` (`cam-switch`,
/// `cam-switch265`) hangs its sensor: it must leave Live only after the
/// hang, frozen for that reason, and be Live again once the sensor recovers.
pub async fn hangs_and_recovers(
    server: &mut RtspTestServer,
    w: &CameraWatch,
    feed: &str,
    long: Duration,
) {
    w.until_state(LivenessKind::Live, long).await;
    server.command(&format!("still {feed}"));
    let hung_at = Instant::now();
    assert_eq!(
        frozen_reason(w, long).await,
        "picture frozen: not even sensor noise changes"
    );
    let lost = w
        .changes()
        .into_iter()
        .find(|t| t.from == LivenessKind::Live)
        .expect("left live");
    assert!(
        lost.at.mono >= hung_at,
        "left live before the hang: {lost:?}"
    );
    server.command(&format!("moving {feed}"));
    w.until_state(LivenessKind::Live, long).await;
}
