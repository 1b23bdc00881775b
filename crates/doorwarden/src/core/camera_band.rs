//! When a camera's rates are worth a new retained state for Home Assistant.
//!
//! Every retained state becomes a recorder row for each entity that reads
//! it, so a camera's state goes out again only when something an owner could
//! act on moved: its liveness or reason (decided elsewhere), or its frame
//! rate or bitrate leaving a band around the values last shown. Ordinary
//! jitter of a healthy stream (a keyframe landing in or out of the
//! averaging window, a frame arriving late) stays inside the band.
//!
//! `last_frame` is deliberately not a trigger: it moves with every frame,
//! and while the camera is live it says nothing the `live` flag does not.

use super::CameraStatus;

/// A frame rate change of at least this many frames per second…
pub const FPS_BAND_ABS: f64 = 1.0;
/// …and of at least this share of the rate last shown.
pub const FPS_BAND_REL: f64 = 0.10;
/// A bitrate change of at least this many kbit/s…
pub const BITRATE_BAND_ABS: f64 = 64.0;
/// …and of at least this share of the bitrate last shown.
pub const BITRATE_BAND_REL: f64 = 0.25;

/// True when the frame rate `fps` or the bitrate `bitrate_kbps` left the
/// band around `shown`'s. Asked on every frame, so it takes the rates, not
/// a built status.
pub fn rates_moved(shown: &CameraStatus, fps: f64, bitrate_kbps: f64) -> bool {
    outside(shown.fps, fps, FPS_BAND_ABS, FPS_BAND_REL)
        || outside(
            shown.bitrate_kbps,
            bitrate_kbps,
            BITRATE_BAND_ABS,
            BITRATE_BAND_REL,
        )
}

fn outside(shown: f64, now: f64, abs: f64, rel: f64) -> bool {
    if !shown.is_finite() || !now.is_finite() {
        // A rate that is not a number (a bug upstream) is shown as 0 by the
        // state payload; only a change between number and not-a-number
        // counts, never the same NaN again and again.
        return shown.is_finite() != now.is_finite();
    }
    let delta = (now - shown).abs();
    // Reaching zero (or leaving it) is always news: the stream stopped or
    // started carrying video.
    if (shown == 0.0) != (now == 0.0) {
        return true;
    }
    delta >= abs && delta >= rel * shown.abs()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::liveness::LivenessKind;

    fn status(fps: f64, bitrate_kbps: f64) -> CameraStatus {
        CameraStatus {
            camera: "porch".into(),
            state: LivenessKind::Live,
            reason: None,
            since: jiff::Timestamp::UNIX_EPOCH,
            fps,
            bitrate_kbps,
            last_frame: None,
        }
    }

    #[test]
    fn jitter_stays_inside_and_real_changes_leave_the_band() {
        let shown = status(15.0, 2000.0);
        assert!(!rates_moved(&shown, 14.2, 2000.0));
        assert!(!rates_moved(&shown, 15.0, 2400.0));
        assert!(rates_moved(&shown, 7.5, 2000.0));
        assert!(rates_moved(&shown, 15.0, 2600.0));
        assert!(rates_moved(&shown, 15.0, 1400.0));
        assert!(rates_moved(&shown, 0.0, 0.0));
        // A small absolute change on a tiny rate is still jitter.
        assert!(!rates_moved(&status(2.0, 40.0), 2.5, 60.0));
        assert!(rates_moved(&status(0.0, 0.0), 0.5, 0.0));
    }

    #[test]
    fn a_rate_that_is_not_a_number_counts_once() {
        let shown = status(f64::NAN, 100.0);
        assert!(!rates_moved(&shown, f64::NAN, 100.0));
        assert!(rates_moved(&shown, 15.0, 100.0));
    }
}
