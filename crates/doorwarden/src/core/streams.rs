//! A camera judged from two RTSP streams: its main stream, and the
//! low-resolution substream whose pictures are decoded for the picture
//! checks (`picture_url:`), as NVRs use a "detect" stream. Decoding every
//! frame of a 720p main stream during a delivery costs several times the
//! budget; a 320x180 substream costs a few per cent of that.
//!
//! Owns: how the two streams' verdicts make the one state the camera shows.
//! Each stream has its own [`CameraLiveness`]: the main stream's runs the
//! stream rules only (as with `picture_check: off`), the substream's runs the
//! stream rules and the picture checks. The camera is live only while both
//! are; when only the substream is at fault its reason says so
//! ("substream: no frame for 2.0 s"). The main stream's keyframe bytes are
//! still remembered for the replay check (hashing a keyframe is cheap, and a
//! replayed main stream behind a live substream must not pass), with the
//! substream's pictures telling that the scene moved in between.
//!
//! A camera without a substream is its main stream's [`CameraLiveness`],
//! unchanged.

use std::fmt;
use std::time::Instant;

use crate::core::liveness::{
    CameraLiveness, CameraSettings, FreezeCause, Liveness, LivenessKind, Transition,
};
use crate::core::picture::{PictureCheck, PictureFault, PicturePolicy, PictureSample};
use crate::core::text;
use crate::core::{CameraStatus, FrameSummary, Stamp};

/// What the camera shows: one stream's state, and whether it is the
/// substream's.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StreamsState<'a> {
    pub liveness: &'a Liveness,
    /// The state is the substream's: its reason is prefixed "substream: ".
    pub substream: bool,
}

impl StreamsState<'_> {
    pub fn kind(&self) -> LivenessKind {
        self.liveness.kind()
    }

    pub fn since(&self) -> Stamp {
        self.liveness.since()
    }

    pub fn reason(&self) -> Option<String> {
        text::owned(|w| self.write_reason(w))
    }

    pub fn write_reason(&self, w: &mut dyn fmt::Write) -> text::Said {
        if self.substream && self.liveness.kind() != LivenessKind::Live {
            w.write_str("substream: ")?;
        }
        self.liveness.write_reason(w)
    }
}

/// The main stream's keyframes, remembered for the replay check while the
/// substream carries the pictures.
#[derive(Debug, Clone)]
struct MainReplay {
    keys: PictureCheck,
    /// The main stream's state while its keyframes repeat.
    replayed: Option<Liveness>,
}

#[derive(Debug, Clone)]
struct Substream {
    liveness: CameraLiveness,
    main_replay: MainReplay,
    /// What the camera shows, settled after every input.
    shown: Liveness,
    shown_is_sub: bool,
}

/// One camera's liveness, from its main stream and, if it has one, its
/// picture substream.
#[derive(Debug, Clone)]
pub struct CameraStreams {
    main: CameraLiveness,
    sub: Option<Box<Substream>>,
}

impl CameraStreams {
    /// `substream`: the camera's pictures come from a substream
    /// (`picture_url:` set). The picture policy then applies to it, and the
    /// main stream is judged by the stream rules alone.
    pub fn new(settings: CameraSettings, substream: bool, now: Stamp) -> Self {
        if !substream || settings.picture == PicturePolicy::Off {
            return CameraStreams {
                main: CameraLiveness::new(settings, now),
                sub: None,
            };
        }
        let main = CameraLiveness::new(
            CameraSettings {
                picture: PicturePolicy::Off,
                ..settings
            },
            now,
        );
        let shown = main.state().clone();
        CameraStreams {
            main,
            sub: Some(Box::new(Substream {
                liveness: CameraLiveness::new(settings, now),
                main_replay: MainReplay {
                    // Optional: only its replay verdict is read; an
                    // undecodable picture is the substream's to judge.
                    keys: PictureCheck::new(PicturePolicy::Optional),
                    replayed: None,
                },
                shown,
                shown_is_sub: false,
            })),
        }
    }

    pub fn has_substream(&self) -> bool {
        self.sub.is_some()
    }

    pub fn state(&self) -> StreamsState<'_> {
        match &self.sub {
            None => StreamsState {
                liveness: self.main.state(),
                substream: false,
            },
            Some(sub) => StreamsState {
                liveness: &sub.shown,
                substream: sub.shown_is_sub,
            },
        }
    }

    pub fn is_live(&self) -> bool {
        self.state().kind() == LivenessKind::Live
    }

    /// The main stream's rates: the substream's are not what the owner
    /// watches.
    pub fn fps(&self) -> f64 {
        self.main.fps()
    }

    pub fn bitrate_kbps(&self) -> f64 {
        self.main.bitrate_kbps()
    }

    pub fn status(&self, camera: &str) -> CameraStatus {
        let mut status = self.main.status(camera);
        if self.sub.is_some() {
            let state = self.state();
            status.state = state.kind();
            status.reason = state.reason();
            status.since = state.since().wall;
        }
        status
    }

    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        let main = self.main.poll_timeout();
        let sub = self.sub.as_ref().and_then(|s| s.liveness.poll_timeout());
        match (main, sub) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    // ----- the main stream -------------------------------------------------

    pub fn handle_up(&mut self, now: Stamp) -> Option<Transition> {
        self.step(now, |s| {
            if let Some(sub) = &mut s.sub {
                // A new session of the main stream: a replay must show
                // again (the keyframes seen stay remembered).
                sub.main_replay.keys.restart();
                sub.main_replay.replayed = None;
            }
            s.main.handle_up(now)
        })
    }

    pub fn handle_down(&mut self, now: Stamp, reason: &str) -> Option<Transition> {
        self.step(now, |s| s.main.handle_down(now, reason))
    }

    pub fn handle_frame(&mut self, now: Stamp, frame: &FrameSummary) -> Option<Transition> {
        self.step(now, |s| {
            let change = s.main.handle_frame(now, frame);
            if let Some(sub) = &mut s.sub
                && frame.keyframe
            {
                let replay = &mut sub.main_replay;
                replay.keys.handle_keyframe(now.mono, frame.hash);
                if let Some(fault @ PictureFault::Replayed { .. }) = replay.keys.fault()
                    && replay.replayed.is_none()
                {
                    replay.replayed = Some(Liveness::Frozen {
                        since: now,
                        cause: FreezeCause::Picture(fault),
                    });
                }
            }
            change
        })
    }

    /// A decoded picture: the substream's when there is one.
    pub fn handle_picture(&mut self, now: Stamp, sample: &PictureSample) -> Option<Transition> {
        self.step(now, |s| match &mut s.sub {
            None => s.main.handle_picture(now, sample),
            Some(sub) => {
                // The main stream's replay check needs to know the scene
                // moved between two equal keyframes; the substream shows it.
                // Pictures only: word that none decode would hide the
                // replay verdict under this check's `optional` policy.
                if matches!(sample, PictureSample::Picture { .. }) {
                    sub.main_replay.keys.handle_sample(now.mono, sample);
                }
                sub.liveness.handle_picture(now, sample)
            }
        })
    }

    pub fn handle_timeout(&mut self, now: Stamp) -> Option<Transition> {
        self.step(now, |s| {
            let main = s.main.handle_timeout(now);
            let sub = s
                .sub
                .as_mut()
                .and_then(|sub| sub.liveness.handle_timeout(now));
            main.or(sub)
        })
    }

    // ----- the substream -----------------------------------------------------

    pub fn handle_sub_up(&mut self, now: Stamp) -> Option<Transition> {
        self.step(now, |s| {
            s.sub.as_mut().and_then(|sub| sub.liveness.handle_up(now))
        })
    }

    pub fn handle_sub_down(&mut self, now: Stamp, reason: &str) -> Option<Transition> {
        self.step(now, |s| {
            s.sub
                .as_mut()
                .and_then(|sub| sub.liveness.handle_down(now, reason))
        })
    }

    pub fn handle_sub_frame(&mut self, now: Stamp, frame: &FrameSummary) -> Option<Transition> {
        self.step(now, |s| {
            s.sub
                .as_mut()
                .and_then(|sub| sub.liveness.handle_frame(now, frame))
        })
    }

    // ----- internals ---------------------------------------------------------

    /// Runs one input; with a substream, settles what the camera shows and
    /// says whether that changed.
    fn step(
        &mut self,
        now: Stamp,
        input: impl FnOnce(&mut Self) -> Option<Transition>,
    ) -> Option<Transition> {
        let Some(before) = self.sub.as_ref().map(|s| (s.shown.clone(), s.shown_is_sub)) else {
            return input(self);
        };
        let _ = input(self);
        let main = self.main.state();
        let Some(sub) = &mut self.sub else {
            return None;
        };
        let sub_state = sub.liveness.state();
        let (shown, is_sub) = if main.kind() != LivenessKind::Live {
            (main.clone(), false)
        } else if let Some(replayed) = &sub.main_replay.replayed {
            (replayed.clone(), false)
        } else if sub_state.kind() != LivenessKind::Live {
            (sub_state.clone(), true)
        } else {
            // Live from when the later of the two became live.
            let since = if main.since().mono >= sub_state.since().mono {
                main.since()
            } else {
                sub_state.since()
            };
            (Liveness::Live { since }, false)
        };
        sub.shown = shown;
        sub.shown_is_sub = is_sub;
        let after = StreamsState {
            liveness: &sub.shown,
            substream: is_sub,
        };
        let was = StreamsState {
            liveness: &before.0,
            substream: before.1,
        };
        (was != after).then(|| Transition {
            from: was.kind(),
            to: after.kind(),
            reason: after.reason(),
            at: now,
        })
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::core::picture::Thumbnail;

    fn settings() -> CameraSettings {
        // The test's own literal YAML; a parse failure is a broken test.
        let cam: crate::config::Camera = serde_yaml::from_str(
            "url: rtsp://127.0.0.1/main\npicture_url: rtsp://127.0.0.1/sub\npicture_check: required\n",
        )
        .unwrap();
        CameraSettings::from(&cam)
    }

    /// A clock for the test: stamps `at` after its start.
    struct Clock(Instant, jiff::Timestamp);

    impl Clock {
        fn new() -> Clock {
            Clock(Instant::now(), jiff::Timestamp::now())
        }
        fn at(&self, t: Duration) -> Stamp {
            Stamp {
                mono: self.0 + t,
                wall: self.1 + jiff::SignedDuration::try_from(t).unwrap(),
            }
        }
    }

    fn frame(index: u64, keyframe: bool, hash: u64) -> FrameSummary {
        FrameSummary {
            rtp_ts: (index * 6000) as i64,
            clock_rate: 90_000,
            size: if keyframe {
                20_000
            } else {
                3_000 + (index % 7) as u32 * 100
            },
            keyframe,
            hash,
            lost: 0,
        }
    }

    /// A moving scene with sensor noise: every picture differs all over.
    fn picture(index: u64) -> PictureSample {
        let mut x = index.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        let cells = (0..64 * 36u64)
            .map(|i| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (800 + (i % 64) * 30 + x % 9) as u16
            })
            .collect();
        PictureSample::Picture {
            picture: Thumbnail {
                width: 64,
                height: 36,
                cells,
            },
            keyframe: index.is_multiple_of(15),
        }
    }

    /// Both streams at 15 fps from `from` to `to` (frame indices), main
    /// keyframes hashed by `main_key`, each substream frame with its
    /// picture; stops feeding a stream when `main` / `sub` say so.
    fn play(
        cam: &mut CameraStreams,
        clock: &Clock,
        frames: std::ops::Range<u64>,
        main: bool,
        sub: bool,
        main_key: impl Fn(u64) -> u64,
    ) {
        for i in frames {
            let t = clock.at(Duration::from_millis(i * 1000 / 15));
            if let Some(due) = cam.poll_timeout()
                && due <= t.mono
            {
                let _ = cam.handle_timeout(Stamp {
                    mono: due,
                    wall: t.wall,
                });
            }
            let key = i.is_multiple_of(15);
            if main {
                let hash = if key { main_key(i) } else { 0x1000_0000 + i };
                let _ = cam.handle_frame(t, &frame(i, key, hash));
            }
            if sub {
                let _ = cam.handle_sub_frame(t, &frame(i, key, 0x2000_0000 + i));
                let _ = cam.handle_picture(t, &picture(i));
            }
        }
    }

    fn shown(cam: &CameraStreams) -> (LivenessKind, Option<String>) {
        (cam.state().kind(), cam.state().reason())
    }

    #[test]
    fn live_only_while_both_streams_are_and_a_substream_fault_says_so() {
        let clock = Clock::new();
        let mut cam = CameraStreams::new(settings(), true, clock.at(Duration::ZERO));
        assert!(cam.has_substream());
        let _ = cam.handle_up(clock.at(Duration::ZERO));
        // The main stream alone, however good, does not make it live.
        play(&mut cam, &clock, 0..120, true, false, |i| i);
        assert_eq!(
            shown(&cam),
            (
                LivenessKind::Connecting,
                Some("substream: connecting to the camera".into())
            )
        );
        let _ = cam.handle_sub_up(clock.at(Duration::from_secs(8)));
        play(&mut cam, &clock, 120..240, true, true, |i| i);
        assert_eq!(shown(&cam), (LivenessKind::Live, None));
        // The substream goes: the camera is out, and says which stream.
        let change = cam
            .handle_sub_down(clock.at(Duration::from_secs(16)), "connection refused")
            .expect("a change");
        assert_eq!(change.to, LivenessKind::Offline);
        assert_eq!(
            change.reason.as_deref(),
            Some("substream: connection refused")
        );
        assert_eq!(
            cam.status("porch").reason.as_deref(),
            Some("substream: connection refused")
        );
    }

    #[test]
    fn a_main_stream_fault_shows_unprefixed_while_the_substream_is_fine() {
        let clock = Clock::new();
        let mut cam = CameraStreams::new(settings(), true, clock.at(Duration::ZERO));
        let _ = cam.handle_up(clock.at(Duration::ZERO));
        let _ = cam.handle_sub_up(clock.at(Duration::ZERO));
        play(&mut cam, &clock, 0..120, true, true, |i| i);
        assert_eq!(shown(&cam), (LivenessKind::Live, None));
        // The main stream stops; the substream's pictures go on.
        play(&mut cam, &clock, 120..180, false, true, |i| i);
        assert_eq!(
            shown(&cam),
            (LivenessKind::Stalled, Some("no frame for 2.0 s".into()))
        );
    }

    #[test]
    fn a_replayed_main_stream_is_caught_behind_a_moving_substream() {
        let clock = Clock::new();
        let mut cam = CameraStreams::new(settings(), true, clock.at(Duration::ZERO));
        let _ = cam.handle_up(clock.at(Duration::ZERO));
        let _ = cam.handle_sub_up(clock.at(Duration::ZERO));
        // The main stream's keyframes repeat every 4 keyframes (4 s); the
        // substream (a live camera, or the attacker's) moves.
        play(&mut cam, &clock, 0..200, true, true, |i| (i / 15) % 4);
        assert_eq!(
            shown(&cam),
            (
                LivenessKind::Frozen,
                Some("the picture repeats every 4.0 s: a replayed recording".into())
            )
        );
        // It stands for the rest of the session.
        play(&mut cam, &clock, 200..300, true, true, |i| 100 + i);
        assert_eq!(shown(&cam).0, LivenessKind::Frozen);
    }

    #[test]
    fn without_a_substream_it_is_the_main_streams_liveness() {
        let clock = Clock::new();
        // Stream rules only, so that frame summaries alone make it live.
        let cam: crate::config::Camera =
            serde_yaml::from_str("url: rtsp://127.0.0.1/main\npicture_check: off\n").unwrap();
        let mut cam =
            CameraStreams::new(CameraSettings::from(&cam), false, clock.at(Duration::ZERO));
        assert!(!cam.has_substream());
        let _ = cam.handle_up(clock.at(Duration::ZERO));
        play(&mut cam, &clock, 0..90, true, false, |i| i);
        assert_eq!(shown(&cam), (LivenessKind::Live, None));
        // Substream input is ignored.
        assert!(
            cam.handle_sub_down(clock.at(Duration::from_secs(7)), "x")
                .is_none()
        );
        assert_eq!(shown(&cam), (LivenessKind::Live, None));
    }
}
