//! The simulated camera's live source: one OpenH264 encoder per camera,
//! coding the scene (`super::scene`) in real time on a thread of its own,
//! and each coded frame fanned out to every playing client.
//!
//! Owns the encoder and its settings (Constrained Baseline, no B-frames,
//! constant QP, one IDR a second and one for each client that starts
//! playing), the real-time pacing, the picture faults that happen inside a
//! camera (a still picture, a hung sensor, a covered lens, and a replay of
//! the last seconds it sent), and the hand-off to the connections: a
//! bounded broadcast channel, so a slow client loses frames and never slows
//! the encoder or another client. Faults on the way out (a frozen frame, a
//! stall, the RTP clock) are each connection's, in [`LiveFeed`].
//!
//! The encoder only runs while a client is playing: a camera nobody
//! watches costs nothing, and its replay fault has nothing to replay.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime};

use openh264::OpenH264API;
use openh264::encoder::{
    BitRate, Complexity, Encoder, EncoderConfig, FrameRate, IntraFramePeriod, Profile, QpRange,
    RateControlMode, UsageType,
};
use tokio::sync::{broadcast, watch};

use super::clip::{Frame, ParameterSets, split_frames};
use super::scene::{self, FPS, Scene, Sensor};
use super::{Clock, Faults, Picture};

/// An IDR every this many frames: one a second.
const KEYFRAME_EVERY: u64 = FPS;
/// Frames kept for the replay fault: five seconds.
const HISTORY: usize = 5 * FPS as usize;
/// The replay loops this many whole GOPs (three seconds), so that its
/// keyframes recur after others, as a looped recording's do.
const REPLAY_GOPS: usize = 3;
/// Frames waiting for a client that has not taken them; older ones are
/// lost to it (it then waits for the next keyframe, as after any loss).
const FANOUT: usize = 16;
/// Constant quantizer: fed an unchanging picture, the encoder then codes
/// every macroblock as skipped after one refinement, as a camera's encoder
/// does, instead of refining the picture for seconds the way a bitrate
/// target makes it. Fine enough that the scene's sensor noise survives
/// (measured: at 26 OpenH264 quantized all of it away, and a quiet live
/// scene decoded as frozen behind its clock).
const QP: u8 = 22;

/// One coded frame. `index` is its capture time in frame intervals since
/// the camera started (15 a second), so a connection stamps it on the
/// camera's clock; `seq` counts the frames sent, so a connection can tell a
/// frame it lost (after which nothing decodes until an IDR) from one the
/// camera skipped (its encoder too busy: the next frame still decodes).
#[derive(Debug, Clone)]
pub(crate) struct LiveFrame {
    pub(crate) index: u64,
    pub(crate) seq: u64,
    pub(crate) frame: Arc<Frame>,
}

/// The running source: what connections subscribe to.
#[derive(Debug)]
pub(crate) struct LiveSource {
    frames: broadcast::Sender<LiveFrame>,
    keyframe_wanted: Arc<AtomicBool>,
    params: ParameterSets,
}

impl LiveSource {
    /// Makes the encoder, codes one picture to learn the parameter sets the
    /// SDP announces, and starts the encoding thread. The thread ends when
    /// the camera's fault channel closes (the last handle dropped).
    pub(crate) fn start(faults: watch::Receiver<Faults>, quiet: bool) -> Result<Self, String> {
        let mut encoder = LiveEncoder::new()?;
        let mut scene = Scene::new(super::random_u64());
        scene.draw(
            0,
            &scene::clock_text(SystemTime::now()),
            Sensor::Live { quiet },
        );
        let first = encoder.encode(&scene, true)?;
        let params = ParameterSets::find(&first.nals)
            .ok_or("the encoder's first frame has no SPS and PPS")?;
        let (frames, _) = broadcast::channel(FANOUT);
        let keyframe_wanted = Arc::new(AtomicBool::new(true));
        let mut worker = Worker {
            encoder,
            scene,
            faults,
            frames: frames.clone(),
            keyframe_wanted: keyframe_wanted.clone(),
            quiet,
            since_keyframe: 0,
            history: VecDeque::with_capacity(HISTORY),
            replay: None,
        };
        std::thread::Builder::new()
            .name("sim-camera-encoder".to_owned())
            .spawn(move || worker.run())
            .map_err(|e| format!("cannot start the encoder thread: {e}"))?;
        Ok(LiveSource {
            frames,
            keyframe_wanted,
            params,
        })
    }

    pub(crate) fn params(&self) -> &ParameterSets {
        &self.params
    }

    /// A client starts playing: it gets frames from now on, and the next
    /// frame is an IDR so it can start decoding at once.
    pub(crate) fn subscribe(&self) -> broadcast::Receiver<LiveFrame> {
        let rx = self.frames.subscribe();
        self.request_keyframe();
        rx
    }

    /// The next frame is to be an IDR (a client lost frames and cannot
    /// decode the ones after them).
    pub(crate) fn request_keyframe(&self) {
        self.keyframe_wanted.store(true, Ordering::Relaxed);
    }
}

/// OpenH264 set up as a small IP camera's encoder.
pub(crate) struct LiveEncoder {
    encoder: Encoder,
}

impl LiveEncoder {
    pub(crate) fn new() -> Result<Self, String> {
        let config = EncoderConfig::new()
            .usage_type(UsageType::CameraVideoRealTime)
            .profile(Profile::Baseline)
            .max_frame_rate(FrameRate::from_hz(FPS as f32))
            .rate_control_mode(RateControlMode::Off)
            .bitrate(BitRate::from_bps(400_000))
            .qp(QpRange::new(QP, QP))
            // Every tick gives a frame; keyframes come when this module
            // asks, not when the encoder's heuristics think best.
            .skip_frames(false)
            .scene_change_detect(false)
            .adaptive_quantization(false)
            .background_detection(false)
            .intra_frame_period(IntraFramePeriod::from_num_frames(0))
            .complexity(Complexity::Low)
            .num_threads(1);
        let encoder = Encoder::with_api_config(OpenH264API::from_source(), config)
            .map_err(|e| format!("OpenH264 encoder: {e}"))?;
        Ok(LiveEncoder { encoder })
    }

    /// Codes the scene's current picture; an IDR (with SPS and PPS before
    /// it) when `keyframe`.
    pub(crate) fn encode(&mut self, scene: &Scene, keyframe: bool) -> Result<Frame, String> {
        if keyframe {
            self.encoder.force_intra_frame();
        }
        let coded = self
            .encoder
            .encode(scene)
            .map_err(|e| format!("OpenH264 encode: {e}"))?;
        let bytes = coded.to_vec();
        let mut frames = split_frames(&bytes);
        match (frames.pop(), frames.is_empty()) {
            (Some(frame), true) => Ok(frame),
            _ => Err(format!(
                "the encoder gave {} frames for one picture",
                frames.len() + 1
            )),
        }
    }
}

/// The encoding thread's state.
struct Worker {
    encoder: LiveEncoder,
    scene: Scene,
    faults: watch::Receiver<Faults>,
    frames: broadcast::Sender<LiveFrame>,
    keyframe_wanted: Arc<AtomicBool>,
    quiet: bool,
    since_keyframe: u64,
    /// The last frames sent, oldest first, for the replay fault.
    history: VecDeque<Arc<Frame>>,
    /// While replaying: the loop and the position in it.
    replay: Option<(Vec<Arc<Frame>>, usize)>,
}

impl Worker {
    fn run(&mut self) {
        let period_ns = 1_000_000_000 / FPS;
        let start = Instant::now();
        let mut next: u64 = 1;
        let mut seq: u64 = 0;
        loop {
            let due = start + Duration::from_nanos(period_ns.saturating_mul(next));
            if let Some(wait) = due.checked_duration_since(Instant::now()) {
                std::thread::sleep(wait);
            }
            // The picture is taken now: when the thread was late (a busy
            // machine), the intervals it missed are skipped, as a busy
            // camera drops frames, and the frame's time stays true. Catching
            // up instead would send a burst, and starting the count over
            // would make the camera's clock fall behind real time.
            let elapsed = u64::try_from(start.elapsed().as_nanos()).unwrap_or(u64::MAX);
            let index = (elapsed / period_ns).max(next);
            next = index + 1;
            // Closed: the camera's last handle is gone.
            if self.faults.has_changed().is_err() {
                return;
            }
            let picture = self.faults.borrow().picture;
            if self.frames.receiver_count() == 0 {
                // Nobody watching: time goes on, nothing is coded, and the
                // next client starts on a fresh IDR.
                self.history.clear();
                self.replay = None;
                self.since_keyframe = KEYFRAME_EVERY;
                continue;
            }
            let frame = match self.next_frame(index, picture) {
                Ok(frame) => frame,
                Err(e) => {
                    tracing::warn!(error = %e, "simulated camera: encoding failed");
                    continue;
                }
            };
            // No receiver left in the meantime is not an error.
            let _ = self.frames.send(LiveFrame { index, seq, frame });
            seq += 1;
        }
    }

    fn next_frame(&mut self, index: u64, picture: Picture) -> Result<Arc<Frame>, String> {
        if picture == Picture::Replay {
            // The loop is spliced in where the next IDR would come, as a
            // careful attacker would: the first keyframe replayed then was
            // sent exactly three GOPs ago, and so is every one after it.
            if self.replay.is_none() && self.since_keyframe + 1 >= KEYFRAME_EVERY {
                self.replay = replay_loop(&self.history).map(|frames| (frames, 0));
            }
            if let Some((frames, position)) = &mut self.replay {
                let frame = frames[*position % frames.len()].clone();
                *position = (*position + 1) % frames.len();
                return Ok(frame);
            }
            // Not at a GOP's end yet, or not enough sent: live until then.
        }
        let resumed = self.replay.take().is_some();
        let sensor = match picture {
            Picture::Still => Sensor::Still,
            Picture::HungSensor => Sensor::Hung,
            Picture::Covered => Sensor::Covered,
            Picture::Moving | Picture::Frozen | Picture::Replay => {
                Sensor::Live { quiet: self.quiet }
            }
        };
        self.scene
            .draw(index, &scene::clock_text(SystemTime::now()), sensor);
        let keyframe = resumed
            || self.since_keyframe + 1 >= KEYFRAME_EVERY
            || self.keyframe_wanted.swap(false, Ordering::Relaxed);
        let frame = Arc::new(self.encoder.encode(&self.scene, keyframe)?);
        self.since_keyframe = if frame.is_idr {
            0
        } else {
            self.since_keyframe + 1
        };
        if self.history.len() == HISTORY {
            self.history.pop_front();
        }
        self.history.push_back(frame.clone());
        Ok(frame)
    }
}

/// The last [`REPLAY_GOPS`] GOPs of `history`, which ends with a whole
/// GOP (the caller asks when the next frame would be an IDR): from the
/// third newest IDR to the newest frame. `None` when there is not enough
/// to loop yet.
fn replay_loop(history: &VecDeque<Arc<Frame>>) -> Option<Vec<Arc<Frame>>> {
    let idrs: Vec<usize> = (0..history.len()).filter(|&i| history[i].is_idr).collect();
    let start = *idrs.get(idrs.len().checked_sub(REPLAY_GOPS)?)?;
    Some(history.range(start..).cloned().collect())
}

/// Draws and codes `frames` pictures of the scene as `sensor` says, as
/// fast as it can (no pacing, no clients), and returns how long each
/// drawing and each encoding took: what the live source costs per frame.
pub(crate) fn measure(
    frames: usize,
    sensor: Sensor,
) -> Result<(Vec<Duration>, Vec<Duration>), String> {
    let mut encoder = LiveEncoder::new()?;
    let mut scene = Scene::new(super::random_u64());
    let mut draw = Vec::with_capacity(frames);
    let mut encode = Vec::with_capacity(frames);
    for index in 0..frames as u64 {
        let t = Instant::now();
        // The first picture is live so that a still or hung sensor has
        // something to hold.
        let now = if index == 0 {
            Sensor::Live { quiet: false }
        } else {
            sensor
        };
        scene.draw(index, &scene::clock_text(SystemTime::now()), now);
        draw.push(t.elapsed());
        let t = Instant::now();
        encoder.encode(&scene, index % KEYFRAME_EVERY == 0)?;
        encode.push(t.elapsed());
    }
    Ok((draw, encode))
}

/// One connection's view of the live source: which frames it sends, with
/// which RTP timestamps, given the faults on its way out. Pure.
#[derive(Debug)]
pub(crate) struct LiveFeed {
    /// Timestamp of the next frame.
    timestamp: u32,
    /// Index and sequence number of the last frame taken; `None` until the
    /// first IDR.
    last: Option<(u64, u64)>,
    /// Frames were lost (a client too slow for the broadcast): nothing
    /// after them decodes until the next IDR, so nothing is sent until one.
    resync: bool,
    /// The frame sent last, kept so a freeze can repeat it byte for byte.
    sent: Option<Arc<Frame>>,
    /// The frame a freeze repeats, while frozen.
    held: Option<Arc<Frame>>,
}

impl LiveFeed {
    pub(crate) fn new(first_timestamp: u32) -> Self {
        LiveFeed {
            timestamp: first_timestamp,
            last: None,
            resync: false,
            sent: None,
            held: None,
        }
    }

    /// The RTP timestamp the next frame will carry.
    pub(crate) fn timestamp(&self) -> u32 {
        self.timestamp
    }

    /// Whether the feed waits for an IDR after losing frames: the source
    /// should send one soon.
    pub(crate) fn needs_keyframe(&self) -> bool {
        self.resync
    }

    /// A frame from the source. Returns what to send and its timestamp, or
    /// `None`: before the first IDR and after lost frames until the next
    /// one (nothing could decode what comes between), and while stalled
    /// (the clock runs on, nothing goes on the wire).
    pub(crate) fn take(&mut self, live: &LiveFrame, faults: &Faults) -> Option<(Arc<Frame>, u32)> {
        match self.last {
            None if !live.frame.is_idr => return None,
            None => {}
            Some((last_index, last_seq)) => {
                if live.seq > last_seq + 1 {
                    self.resync = true;
                }
                // Frames lost or skipped still took their time.
                let frames =
                    u32::try_from(live.index.saturating_sub(last_index)).unwrap_or(u32::MAX);
                let step = match faults.clock {
                    Clock::Normal => super::playback::TICKS_PER_FRAME,
                    Clock::HalfSpeed => super::playback::TICKS_PER_FRAME / 2,
                    Clock::Frozen => 0,
                };
                self.timestamp = self.timestamp.wrapping_add(step.wrapping_mul(frames));
            }
        }
        self.last = Some((live.index, live.seq));
        if self.resync {
            if !live.frame.is_idr {
                return None;
            }
            self.resync = false;
        }
        let frame = if faults.picture == Picture::Frozen {
            let held = self
                .held
                .clone()
                .or_else(|| self.sent.clone())
                .unwrap_or_else(|| live.frame.clone());
            self.held = Some(held.clone());
            held
        } else {
            self.held = None;
            live.frame.clone()
        };
        if faults.stalled {
            return None;
        }
        self.sent = Some(frame.clone());
        Some((frame, self.timestamp))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(byte: u8, is_idr: bool) -> Arc<Frame> {
        Arc::new(Frame {
            nals: vec![vec![if is_idr { 0x65 } else { 0x41 }, byte]],
            is_idr,
        })
    }

    /// Frame `index`, sent as number `index` too (none skipped).
    fn live(index: u64, byte: u8, is_idr: bool) -> LiveFrame {
        LiveFrame {
            index,
            seq: index,
            frame: frame(byte, is_idr),
        }
    }

    #[test]
    fn the_encoder_codes_constrained_baseline_with_an_idr_on_demand() {
        let mut encoder = LiveEncoder::new().unwrap();
        let mut scene = Scene::new(3);
        scene.draw(0, "12:00:00", Sensor::Live { quiet: false });
        let first = encoder.encode(&scene, true).unwrap();
        assert!(first.is_idr);
        let params = ParameterSets::find(&first.nals).unwrap();
        // profile_idc 66 with constraint_set1: Constrained Baseline.
        assert!(params.profile_level_id().starts_with("42C0"), "{params:?}");
        scene.draw(1, "12:00:00", Sensor::Live { quiet: false });
        let next = encoder.encode(&scene, false).unwrap();
        assert!(!next.is_idr);
        assert!(next.nals.iter().all(|n| n[0] & 0x1f == 1), "one P slice");
        scene.draw(2, "12:00:00", Sensor::Live { quiet: false });
        assert!(encoder.encode(&scene, true).unwrap().is_idr);
    }

    #[test]
    fn the_replay_loops_the_last_three_whole_gops() {
        let mut history = VecDeque::new();
        for i in 0..75u8 {
            history.push_back(frame(i, i % 15 == 0));
        }
        // IDRs at 0, 15, 30, 45, 60; the next frame would be one: the
        // last three GOPs are 30..75.
        let looped = replay_loop(&history).unwrap();
        assert_eq!(looped.len(), 45);
        assert!(looped[0].is_idr && looped[0].nals[0][1] == 30);
        assert_eq!(looped[44].nals[0][1], 74);
        let short: VecDeque<_> = history.iter().take(30).cloned().collect();
        assert!(replay_loop(&short).is_none(), "two GOPs are not enough");
    }

    #[test]
    fn a_feed_starts_at_an_idr_and_stamps_frames_on_the_camera_clock() {
        let mut feed = LiveFeed::new(u32::MAX - 1000);
        let normal = Faults::default();
        assert!(feed.take(&live(4, 1, false), &normal).is_none());
        let (f, t0) = feed.take(&live(5, 2, true), &normal).unwrap();
        assert!(f.is_idr);
        assert_eq!(t0, u32::MAX - 1000);
        let (_, t1) = feed.take(&live(6, 3, false), &normal).unwrap();
        let (_, t2) = feed.take(&live(7, 4, false), &normal).unwrap();
        assert_eq!(t1.wrapping_sub(t0), 6000);
        assert_eq!(t2.wrapping_sub(t1), 6000);
    }

    #[test]
    fn after_lost_frames_a_feed_waits_for_the_next_idr_on_time() {
        let mut feed = LiveFeed::new(0);
        let normal = Faults::default();
        feed.take(&live(0, 0, true), &normal).unwrap();
        feed.take(&live(1, 1, false), &normal).unwrap();
        // 2 and 3 lost: 4 would decode against a picture the client never
        // got.
        assert!(feed.take(&live(4, 4, false), &normal).is_none());
        assert!(feed.needs_keyframe());
        assert!(feed.take(&live(5, 5, false), &normal).is_none());
        let (f, t) = feed.take(&live(6, 6, true), &normal).unwrap();
        assert!(f.is_idr && !feed.needs_keyframe());
        assert_eq!(t, 6 * 6000, "the clock ran on meanwhile");
    }

    #[test]
    fn frames_the_camera_skipped_take_their_time_and_the_next_one_decodes() {
        let mut feed = LiveFeed::new(0);
        let normal = Faults::default();
        feed.take(&live(0, 0, true), &normal).unwrap();
        // The encoder had no time for intervals 1 to 3: frame 4 is the
        // second frame sent, coded against the first.
        let skipped = LiveFrame {
            index: 4,
            seq: 1,
            frame: frame(4, false),
        };
        let (f, t) = feed.take(&skipped, &normal).unwrap();
        assert_eq!(f.nals[0][1], 4);
        assert_eq!(t, 4 * 6000);
        assert!(!feed.needs_keyframe());
    }

    #[test]
    fn a_feed_freezes_stalls_and_runs_its_clock_slow_on_cue() {
        let mut feed = LiveFeed::new(0);
        let mut faults = Faults::default();
        feed.take(&live(0, 0, true), &faults).unwrap();
        let (before, _) = feed.take(&live(1, 1, false), &faults).unwrap();
        faults.picture = Picture::Frozen;
        for i in 2..6 {
            let (f, _) = feed.take(&live(i, i as u8, false), &faults).unwrap();
            assert!(Arc::ptr_eq(&f, &before));
        }
        faults.picture = Picture::Moving;
        faults.stalled = true;
        assert!(feed.take(&live(6, 6, false), &faults).is_none());
        faults.stalled = false;
        faults.clock = Clock::HalfSpeed;
        let (f, t) = feed.take(&live(7, 7, false), &faults).unwrap();
        assert_eq!(f.nals[0][1], 7);
        assert_eq!(t, 6 * 6000 + 3000);
    }
}
