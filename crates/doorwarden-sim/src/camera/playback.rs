//! Which frame goes out next, with which RTP timestamp, given the faults
//! currently switched on. Pure: the connection calls [`Playback::tick`] once
//! per frame interval and sends what it returns.

use super::clip::{Clip, Frame};
use super::{Clock, Faults, Picture};

/// 90 kHz RTP clock at 15 frames per second.
pub(crate) const TICKS_PER_FRAME: u32 = 90_000 / 15;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Source {
    Moving,
    Still,
}

/// One client's position in the clips and its RTP clock.
#[derive(Debug)]
pub(crate) struct Playback {
    moving: &'static Clip,
    still: &'static Clip,
    source: Source,
    /// Index of the next frame of `source` to send.
    position: usize,
    /// The frame sent last, kept so a freeze can repeat it byte for byte.
    last: Option<&'static Frame>,
    /// The frame a freeze repeats, while frozen.
    held: Option<&'static Frame>,
    /// Timestamp of the next frame.
    timestamp: u32,
    started: bool,
}

impl Playback {
    pub(crate) fn new(
        moving: &'static Clip,
        still: &'static Clip,
        start_still: bool,
        first_timestamp: u32,
    ) -> Self {
        Playback {
            moving,
            still,
            source: if start_still {
                Source::Still
            } else {
                Source::Moving
            },
            position: 0,
            last: None,
            held: None,
            timestamp: first_timestamp,
            started: false,
        }
    }

    /// The RTP timestamp the next frame will carry (for `RTP-Info` and
    /// sender reports).
    pub(crate) fn timestamp(&self) -> u32 {
        self.timestamp
    }

    /// Advances one frame interval. Returns the frame to send and its RTP
    /// timestamp, or `None` while stalled: the camera's clock and clip keep
    /// running, nothing goes on the wire.
    pub(crate) fn tick(&mut self, faults: &Faults) -> Option<(&'static Frame, u32)> {
        if self.started {
            let step = match faults.clock {
                Clock::Normal => TICKS_PER_FRAME,
                Clock::HalfSpeed => TICKS_PER_FRAME / 2,
                Clock::Frozen => 0,
            };
            self.timestamp = self.timestamp.wrapping_add(step);
        }
        self.started = true;

        let frame = match faults.picture {
            Picture::Frozen => {
                let held = match (self.held, self.last) {
                    (Some(held), _) | (None, Some(held)) => held,
                    (None, None) => self.next_clip_frame(Picture::Frozen),
                };
                self.held = Some(held);
                held
            }
            picture => {
                self.held = None;
                self.next_clip_frame(picture)
            }
        };
        if faults.stalled {
            return None;
        }
        self.last = Some(frame);
        Some((frame, self.timestamp))
    }

    fn next_clip_frame(&mut self, picture: Picture) -> &'static Frame {
        let wanted = match picture {
            Picture::Still => Source::Still,
            // Faults inside a live camera's sensor: a recording has no
            // sensor, it just goes on.
            Picture::Moving | Picture::HungSensor | Picture::Covered | Picture::Replay => {
                Source::Moving
            }
            // Frozen before any frame went out: start from the clip in use.
            Picture::Frozen => self.source,
        };
        if wanted != self.source {
            // Start the other clip at its IDR so the switch decodes cleanly.
            self.source = wanted;
            self.position = 0;
        }
        let clip = match self.source {
            Source::Moving => self.moving,
            Source::Still => self.still,
        };
        // Clip::parse guarantees at least one frame; the modulo keeps the
        // index in range and makes the clip loop.
        let frame = &clip.frames[self.position % clip.frames.len()];
        self.position = (self.position + 1) % clip.frames.len();
        frame
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn playback() -> Playback {
        let moving = Clip::moving().unwrap();
        let still = Clip::still().unwrap();
        Playback::new(moving, still, false, u32::MAX - 7000)
    }

    #[test]
    fn loops_the_clip_with_timestamps_that_keep_rising() {
        let mut p = playback();
        let normal = Faults::default();
        let n = p.moving.frames.len();
        let sent: Vec<(&Frame, u32)> = (0..n + 2).map(|_| p.tick(&normal).unwrap()).collect();
        assert!(sent[0].0.is_idr);
        assert!(
            std::ptr::eq(sent[n].0, sent[0].0),
            "loops back to the start"
        );
        for pair in sent.windows(2) {
            // Wrapping difference: timestamps wrap through u32::MAX here.
            assert_eq!(pair[1].1.wrapping_sub(pair[0].1), TICKS_PER_FRAME);
        }
    }

    #[test]
    fn freeze_repeats_the_last_frame_and_restore_resumes() {
        let mut p = playback();
        let mut faults = Faults::default();
        for _ in 0..5 {
            p.tick(&faults);
        }
        let (before, _) = p.tick(&faults).unwrap();
        faults.picture = Picture::Frozen;
        for _ in 0..20 {
            let (frame, _) = p.tick(&faults).unwrap();
            assert!(std::ptr::eq(frame, before));
        }
        faults.picture = Picture::Moving;
        let (after, _) = p.tick(&faults).unwrap();
        assert!(!std::ptr::eq(after, before));
    }

    #[test]
    fn still_switches_to_the_still_clip_at_its_idr() {
        let mut p = playback();
        let mut faults = Faults::default();
        for _ in 0..5 {
            p.tick(&faults);
        }
        faults.picture = Picture::Still;
        let (first, _) = p.tick(&faults).unwrap();
        assert!(first.is_idr);
        assert!(std::ptr::eq(first, &p.still.frames[0]));
        let (second, _) = p.tick(&faults).unwrap();
        assert!(second.size() < 100);
    }

    #[test]
    fn clock_faults_change_only_the_timestamp_step() {
        let mut p = playback();
        let mut faults = Faults::default();
        let (_, t0) = p.tick(&faults).unwrap();
        faults.clock = Clock::HalfSpeed;
        let (_, t1) = p.tick(&faults).unwrap();
        faults.clock = Clock::Frozen;
        let (_, t2) = p.tick(&faults).unwrap();
        let (f3, t3) = p.tick(&faults).unwrap();
        assert_eq!(t1.wrapping_sub(t0), TICKS_PER_FRAME / 2);
        assert_eq!(t2, t1);
        assert_eq!(t3, t1);
        assert!(
            std::ptr::eq(f3, &p.moving.frames[3]),
            "pictures keep moving"
        );
    }

    #[test]
    fn stall_sends_nothing_while_time_goes_on() {
        let mut p = playback();
        let mut faults = Faults::default();
        let (_, t0) = p.tick(&faults).unwrap();
        faults.stalled = true;
        for _ in 0..10 {
            assert!(p.tick(&faults).is_none());
        }
        faults.stalled = false;
        let (frame, t) = p.tick(&faults).unwrap();
        assert_eq!(t.wrapping_sub(t0), 11 * TICKS_PER_FRAME);
        assert!(std::ptr::eq(frame, &p.moving.frames[11]));
    }
}
