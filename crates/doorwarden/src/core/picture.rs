//! Picture checks: whether a camera's decoded pictures show a live scene.
//!
//! Pure: the shell (`crate::io::picture`) decodes sampled frames to small
//! grayscale [`Thumbnail`]s; [`PictureCheck`] keeps what it needs of them and
//! of the keyframe hashes, and says what is wrong, if anything. The camera's
//! liveness machine (`crate::core::liveness`) asks it after every input; a
//! fault here only ever takes a camera out of `Live` or keeps it out: the
//! decoded checks add to the stream rules, they never excuse a stream that
//! fails one.
//!
//! # What is judged, and why it is safe
//!
//! Thumbnails are 64x36 cells of mean luma in 1/16 levels. Each cell of a
//! 320x180 picture averages 25 pixels, of a 720p one 400, so a live sensor's
//! noise still moves many cells by a sixteenth of a level or more between
//! two pictures, while a picture the encoder codes as "nothing changed"
//! decodes to exactly the same cells. Pictures are compared only with the
//! previous picture of the same kind (keyframe with keyframe, P-frame with
//! P-frame): a keyframe codes the whole picture anew, so it differs from the
//! P-frame before it even when the scene is frozen.
//!
//! - **No picture** ("no picture: the lens may be covered"): every sample
//!   for [`NO_PICTURE_AFTER`] is almost uniform (spread of the cells around
//!   their mean below [`UNIFORM_SPREAD`] levels). A real scene, even at
//!   night, has edges and light falloff far above that.
//! - **Frozen** ("picture frozen: not even sensor noise changes"): over
//!   at least [`FROZEN_AFTER`], with at least [`FROZEN_MIN_PAIRS`]
//!   comparisons, most ([`FROZEN_SHARE`]) found no cell changed outside a
//!   small box (encoders refine a still picture now and then; see
//!   `judge_still`). Needs no baseline, so a camera hung before
//!   doorwarden started is caught from its first pictures.
//! - **Frozen behind an on-screen clock** ("picture frozen; only the
//!   on-screen clock changes"): the same, except that the changes counted
//!   as quiet have the contrast of drawn text ([`CLOCK_MIN_STEP`]) and all
//!   lie in one small box ([`CLOCK_MAX_AREA`] of the picture at most).
//!   Sensor noise changes cells weakly and all over the picture, never in
//!   one box. Thresholds are from x264 output (docs/performance.md).
//! - **Replayed** ("the picture repeats every 12.0 s: a replayed
//!   recording"): a keyframe whose bytes equal those of a keyframe seen
//!   within [`REPLAY_MEMORY`], with other keyframes in between and a picture
//!   that moved in the meantime (an encoder fed a frozen picture can
//!   alternate between two byte-identical keyframes; that is the frozen rule's
//!   case). A live encoder cannot repeat a keyframe's bytes: sensor noise and
//!   the changing scene make every keyframe new.
//!
//! - **Refined, not live** ("picture frozen: only the encoder refines a
//!   still picture"): an encoder with a bitrate target keeps changing a
//!   still picture after each keyframe, by ever smaller amounts in the same
//!   places; [`crate::core::refinement`] tells that from sensor noise.
//!
//! A replay fault stands until the camera's session restarts; the others
//! clear as soon as the pictures show life again (the liveness machine then
//! runs its warmup before the camera is live).
//!
//! Cameras whose pictures cannot be decoded here (H.265 or H.264 with
//! B-frames without ffmpeg, a stream the decoder refuses) report [`PictureSample::Undecodable`]; whether that keeps
//! the camera from being live is the camera's [`PicturePolicy`].

use std::collections::VecDeque;
use std::fmt;
use std::time::{Duration, Instant};

use super::refinement::RefinementWatch;

/// A decoded picture reduced to mean luma per cell, row by row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Thumbnail {
    pub width: u16,
    pub height: u16,
    /// Mean luma of each cell times 16 (0..=4080).
    pub cells: Vec<u16>,
}

/// Cell values per luma level.
const SCALE: f64 = 16.0;

/// Why a camera's pictures cannot be judged here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Undecodable {
    /// H.265: it is decoded by ffmpeg, which is not installed.
    H265,
    /// H.264 that OpenH264 cannot decode (B-frames), and no ffmpeg.
    H264BFrames,
    /// The decoder could not be started.
    NoDecoder,
    /// Keyframes keep failing to decode.
    Corrupt,
}

impl fmt::Display for Undecodable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Undecodable::H265 => "cannot decode H.265 here: ffmpeg is not installed",
            Undecodable::H264BFrames => {
                "cannot decode this H.264 (B-frames) here: ffmpeg is not installed"
            }
            Undecodable::NoDecoder => "no picture decoder available to check the picture",
            Undecodable::Corrupt => "the picture does not decode",
        })
    }
}

/// What the shell reports about one sampled frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PictureSample {
    Picture { picture: Thumbnail, keyframe: bool },
    Undecodable(Undecodable),
}

/// Whether a camera must show a judged picture to be live.
///
/// There is no one default: a camera a door names defaults to `Required`,
/// any other to `Optional` (`crate::config::Camera::picture_policy`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PicturePolicy {
    /// Not live until its pictures were judged live; an undecodable camera
    /// is never live.
    Required,
    /// Picture faults count, but a camera whose pictures cannot be decoded
    /// is judged by its stream alone.
    Optional,
    /// The picture is not looked at.
    Off,
}

impl fmt::Display for PicturePolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PicturePolicy::Required => "required",
            PicturePolicy::Optional => "optional",
            PicturePolicy::Off => "off",
        })
    }
}

/// What the picture shows that a live camera cannot.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum PictureFault {
    NoPicture,
    Frozen,
    OnlyClockChanges,
    /// Changes that only an encoder refining a still picture makes.
    Refined,
    Replayed {
        every: Duration,
    },
    Undecodable(Undecodable),
}

impl fmt::Display for PictureFault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PictureFault::NoPicture => f.write_str("no picture: the lens may be covered"),
            PictureFault::Frozen => f.write_str("picture frozen: not even sensor noise changes"),
            PictureFault::OnlyClockChanges => {
                f.write_str("picture frozen; only the on-screen clock changes")
            }
            PictureFault::Refined => {
                f.write_str("picture frozen: only the encoder refines a still picture")
            }
            PictureFault::Replayed { every } => write!(
                f,
                "the picture repeats every {:.1} s: a replayed recording",
                every.as_secs_f64()
            ),
            PictureFault::Undecodable(why) => write!(f, "{why}"),
        }
    }
}

/// Samples for this long that are all nearly uniform: no picture.
pub const NO_PICTURE_AFTER: Duration = Duration::from_secs(1);
/// Standard deviation of the cells, in luma levels, below which a
/// picture is uniform.
pub const UNIFORM_SPREAD: f64 = 2.0;
/// Pictures are judged over this span...
pub const FROZEN_AFTER: Duration = Duration::from_millis(1500);
/// ...from at least this many comparisons...
pub const FROZEN_MIN_PAIRS: usize = 8;
/// ...and the picture is frozen when at least this share of them found no
/// change outside a small box.
pub const FROZEN_SHARE: f64 = 0.75;
/// Largest share of the picture the changing cells' box may cover for the
/// change to be an on-screen clock rather than a scene.
pub const CLOCK_MAX_AREA: f64 = 0.12;
/// ...and whose cells change by at least this much (1/16 levels): a
/// clock's digits are drawn in high contrast (x264, measured: 72-200), while
/// faint noise that survives the encoder moves a cell by 1-2 levels.
pub const CLOCK_MIN_STEP: u16 = 48;
/// Keyframe hashes are remembered this long.
pub const REPLAY_MEMORY: Duration = Duration::from_secs(600);
/// ...and at most this many of them.
const REPLAY_KEYS: usize = 4096;

/// One comparison of a picture with the previous one of its kind.
#[derive(Debug, Clone, Copy)]
struct Change {
    at: Instant,
    /// Box around the changed cells (x0, y0, x1, y1, inclusive), if any.
    bbox: Option<(u16, u16, u16, u16)>,
    /// Largest change of a cell.
    peak: u16,
}

/// The picture checks of one camera.
#[derive(Debug, Clone)]
pub struct PictureCheck {
    policy: PicturePolicy,
    /// The last keyframe's and the last other frame's picture, each with
    /// when it was judged.
    last_key: Option<(Instant, Thumbnail)>,
    last_p: Option<(Instant, Thumbnail)>,
    /// Comparisons within the last few seconds.
    changes: VecDeque<Change>,
    /// Since when every sample was uniform.
    uniform_since: Option<Instant>,
    /// Keyframe hashes and when they were seen (kept across sessions).
    keys: VecDeque<(Instant, u64)>,
    /// The last comparison that showed the scene move (kept across
    /// sessions, with the keyframe hashes).
    last_motion: Option<Instant>,
    /// The earlier picture of that comparison: the scene moved after this
    /// instant. The first still picture of a hung sensor differs from the
    /// last live one, so `last_motion` falls just after the first still
    /// keyframe; only this one says the scene moved after it.
    moved_after: Option<Instant>,
    replayed: Option<Duration>,
    undecodable: Option<Undecodable>,
    /// Enough comparisons were judged, this session, and found a live scene.
    judged_live: bool,
    /// The last sample's verdict on still pictures.
    still: Option<PictureFault>,
    /// Whether the changes are only an encoder refining a still picture.
    refinement: RefinementWatch,
    no_picture: bool,
}

impl PictureCheck {
    pub fn new(policy: PicturePolicy) -> Self {
        PictureCheck {
            policy,
            last_key: None,
            last_p: None,
            changes: VecDeque::new(),
            uniform_since: None,
            keys: VecDeque::new(),
            last_motion: None,
            moved_after: None,
            replayed: None,
            undecodable: None,
            judged_live: false,
            still: None,
            refinement: RefinementWatch::default(),
            no_picture: false,
        }
    }

    pub fn policy(&self) -> PicturePolicy {
        self.policy
    }

    /// A new session: pictures start over; keyframe hashes are kept, so a
    /// reconnect to the same recording is caught at its first repeat.
    pub fn restart(&mut self) {
        let keys = std::mem::take(&mut self.keys);
        let (last_motion, moved_after) = (self.last_motion, self.moved_after);
        *self = PictureCheck::new(self.policy);
        self.keys = keys;
        self.last_motion = last_motion;
        self.moved_after = moved_after;
    }

    /// What is wrong with the picture now, if anything.
    pub fn fault(&self) -> Option<PictureFault> {
        if self.policy == PicturePolicy::Off {
            return None;
        }
        if let Some(why) = self.undecodable {
            return (self.policy == PicturePolicy::Required)
                .then_some(PictureFault::Undecodable(why));
        }
        if self.no_picture {
            return Some(PictureFault::NoPicture);
        }
        if let Some(every) = self.replayed {
            return Some(PictureFault::Replayed { every });
        }
        self.still
            .or(self.refinement.refining().then_some(PictureFault::Refined))
    }

    /// Whether the picture allows the camera to become live: no fault, and
    /// under [`PicturePolicy::Required`] pictures that were seen to change.
    pub fn allows_live(&self) -> bool {
        if self.fault().is_some() {
            return false;
        }
        match self.policy {
            PicturePolicy::Required => self.judged_live,
            PicturePolicy::Optional | PicturePolicy::Off => true,
        }
    }

    /// A keyframe's hash, from the stream (every keyframe, decoded or not).
    pub fn handle_keyframe(&mut self, at: Instant, hash: u64) {
        if self.policy == PicturePolicy::Off {
            return;
        }
        while self
            .keys
            .front()
            .is_some_and(|(t, _)| at.saturating_duration_since(*t) > REPLAY_MEMORY)
            || self.keys.len() >= REPLAY_KEYS
        {
            self.keys.pop_front();
        }
        // The newest earlier keyframe with the same bytes, not the one just
        // before (two in a row is the stream rules' case).
        let earlier = self
            .keys
            .iter()
            .enumerate()
            .rev()
            .skip(1)
            .find(|(_, (_, h))| *h == hash)
            .map(|(i, (t, _))| (i, *t));
        let previous_differs = self.keys.back().is_some_and(|(_, h)| *h != hash);
        if let Some((i, then)) = earlier
            && previous_differs
        {
            // A hung sensor's keyframes alternate between two byte strings
            // (x264 alternates idr_pic_id), one keyframe in between, and the
            // change from the last live picture to the still one is seen
            // just after the first of them. So a pair that merely ended
            // after `then` counts only with several pictures in between (a
            // recording of three GOPs or more); with one, the scene must
            // have moved between two pictures taken after `then`.
            let mut between = self.keys.range(i + 1..).map(|(_, h)| *h);
            let first = between.next();
            let several = between.any(|h| Some(h) != first);
            let moved_over = self.last_motion.is_some_and(|m| m > then);
            let moved_after = self.moved_after.is_some_and(|m| m >= then);
            if moved_after || (several && moved_over) {
                self.replayed = Some(at.saturating_duration_since(then));
            }
        }
        self.keys.push_back((at, hash));
    }

    /// One sample from the decoder.
    pub fn handle_sample(&mut self, at: Instant, sample: &PictureSample) {
        if self.policy == PicturePolicy::Off {
            return;
        }
        let (picture, keyframe) = match sample {
            PictureSample::Undecodable(why) => {
                self.undecodable = Some(*why);
                return;
            }
            PictureSample::Picture { picture, keyframe } => (picture, *keyframe),
        };
        if picture.cells.is_empty()
            || picture.cells.len() != usize::from(picture.width) * usize::from(picture.height)
        {
            return;
        }
        self.undecodable = None;
        if keyframe {
            self.refinement.keyframe();
        } else {
            self.refinement.p_frame(picture);
        }

        if spread(&picture.cells) < UNIFORM_SPREAD {
            let since = *self.uniform_since.get_or_insert(at);
            self.no_picture = at.saturating_duration_since(since) >= NO_PICTURE_AFTER;
        } else {
            self.uniform_since = None;
            self.no_picture = false;
        }

        let previous = if keyframe {
            &mut self.last_key
        } else {
            &mut self.last_p
        };
        if let Some((prev_at, prev)) = previous.as_ref()
            && prev.width == picture.width
            && prev.height == picture.height
        {
            let change = compare(at, prev, picture);
            if !is_small_box(change.bbox, picture) {
                self.last_motion = Some(at);
                self.moved_after = Some(*prev_at);
            }
            self.changes.push_back(change);
        }
        *previous = Some((at, picture.clone()));
        // Keep a little more than the frozen span: the verdict needs the
        // oldest comparison to be at least that old.
        while self.changes.len() > FROZEN_MIN_PAIRS
            && self
                .changes
                .get(1)
                .is_some_and(|c| at.saturating_duration_since(c.at) >= FROZEN_AFTER)
        {
            self.changes.pop_front();
        }
        let (judged, still) = self.judge_still(at, picture);
        self.still = still;
        if judged {
            self.judged_live = still.is_none() && !self.refinement.refining();
        }
    }

    /// Whether there was enough to judge, and the verdict on a still
    /// picture. Encoders keep refining a still picture now and then after
    /// a keyframe (x264, measured: 1 to 4 frames in 15 change a few hundred
    /// cells by up to one level), and drop faint noise for a few frames
    /// after one (a quiet scene: up to 3 frames in 15 without change), so
    /// the verdict goes by the share of quiet comparisons, not by all.
    fn judge_still(&self, at: Instant, picture: &Thumbnail) -> (bool, Option<PictureFault>) {
        let Some(oldest) = self.changes.front() else {
            return (false, None);
        };
        let span = at.saturating_duration_since(oldest.at);
        if self.changes.len() < FROZEN_MIN_PAIRS || span < FROZEN_AFTER {
            return (false, None);
        }
        // Comparisons without any change, and those whose change stays in
        // a small box with the contrast of drawn text. Faint noise that the
        // encoder mostly quantizes away also leaves a cell or two changed,
        // in a small box each time, but weakly and never in the same place:
        // only a box that holds all the strong ones is a clock.
        let mut unchanged = 0usize;
        let mut boxed = 0usize;
        let mut union: Option<(u16, u16, u16, u16)> = None;
        for c in &self.changes {
            match c.bbox {
                None => unchanged += 1,
                Some(b) if c.peak >= CLOCK_MIN_STEP && is_small_box(Some(b), picture) => {
                    boxed += 1;
                    union = Some(match union {
                        None => b,
                        Some(u) => (u.0.min(b.0), u.1.min(b.1), u.2.max(b.2), u.3.max(b.3)),
                    });
                }
                Some(_) => {}
            }
        }
        let clock = union.is_some() && is_small_box(union, picture);
        let quiet = if clock { unchanged + boxed } else { unchanged };
        if (quiet as f64) < FROZEN_SHARE * self.changes.len() as f64 {
            return (true, None);
        }
        let verdict = if clock {
            PictureFault::OnlyClockChanges
        } else {
            PictureFault::Frozen
        };
        (true, Some(verdict))
    }
}

fn is_small_box(bbox: Option<(u16, u16, u16, u16)>, picture: &Thumbnail) -> bool {
    let Some((x0, y0, x1, y1)) = bbox else {
        return true;
    };
    let area = f64::from(x1 - x0 + 1) * f64::from(y1 - y0 + 1);
    let whole = f64::from(picture.width) * f64::from(picture.height);
    area <= whole * CLOCK_MAX_AREA
}

fn compare(at: Instant, a: &Thumbnail, b: &Thumbnail) -> Change {
    let w = usize::from(b.width).max(1);
    let mut bbox: Option<(u16, u16, u16, u16)> = None;
    let mut peak = 0u16;
    for (i, (x, y)) in a.cells.iter().zip(&b.cells).enumerate() {
        if x != y {
            peak = peak.max(x.abs_diff(*y));
            let (cx, cy) = ((i % w) as u16, (i / w) as u16);
            bbox = Some(match bbox {
                None => (cx, cy, cx, cy),
                Some(u) => (u.0.min(cx), u.1.min(cy), u.2.max(cx), u.3.max(cy)),
            });
        }
    }
    Change { at, bbox, peak }
}

/// Standard deviation of the cells, in luma levels.
fn spread(cells: &[u16]) -> f64 {
    let n = cells.len() as f64;
    let mean = cells.iter().map(|&c| f64::from(c)).sum::<f64>() / n;
    let var = cells
        .iter()
        .map(|&c| (f64::from(c) - mean).powi(2))
        .sum::<f64>()
        / n;
    var.sqrt() / SCALE
}

#[cfg(test)]
mod tests {
    use super::*;

    const W: u16 = 64;
    const H: u16 = 36;

    /// A deterministic pseudo-random source (xorshift), so the tests need
    /// no crate and always see the same noise.
    struct Noise(u64);
    impl Noise {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
        /// -amp..=amp sixteenths.
        fn jitter(&mut self, amp: i32) -> i32 {
            (self.next() % (2 * amp as u64 + 1)) as i32 - amp
        }
    }

    /// A scene with structure: a gradient with bars.
    fn scene() -> Vec<u16> {
        (0..usize::from(W) * usize::from(H))
            .map(|i| {
                let (x, y) = (i % usize::from(W), i / usize::from(W));
                ((x * 40 + y * 20 + if x % 16 < 8 { 600 } else { 0 }) as u16).min(4000)
            })
            .collect()
    }

    fn pic(cells: Vec<u16>, keyframe: bool) -> PictureSample {
        PictureSample::Picture {
            picture: Thumbnail {
                width: W,
                height: H,
                cells,
            },
            keyframe,
        }
    }

    /// Feeds `n` frames at 15 fps with a keyframe every 15, each made by
    /// `frame(i)`; returns the check and the instant of the last frame.
    fn feed(
        check: &mut PictureCheck,
        start: Instant,
        n: usize,
        mut frame: impl FnMut(usize) -> Vec<u16>,
    ) -> Instant {
        let mut at = start;
        for i in 0..n {
            at = start + Duration::from_millis(i as u64 * 1000 / 15);
            check.handle_sample(at, &pic(frame(i), i % 15 == 0));
        }
        at
    }

    fn noisy(seed: u64, amp: i32) -> impl FnMut(usize) -> Vec<u16> {
        let base = scene();
        let mut noise = Noise(seed);
        move |_| {
            base.iter()
                .map(|&c| (i32::from(c) + noise.jitter(amp)).clamp(0, 4080) as u16)
                .collect()
        }
    }

    /// Sets `cells` around (x, y) to `value` (a clock's digits).
    fn stamp(cells: &mut [u16], x: usize, y: usize, value: u16) {
        for dy in 0..3 {
            for dx in 0..8 {
                cells[(y + dy) * usize::from(W) + x + dx] = value;
            }
        }
    }

    #[test]
    fn a_quiet_scene_with_faint_noise_is_judged_live() {
        let mut check = PictureCheck::new(PicturePolicy::Required);
        let t0 = Instant::now();
        // Faint noise: a sixteenth of a level or two per cell.
        let mut scene = noisy(7, 2);
        let mut frames = 0usize;
        // Like x264 on a quiet scene: the 3 frames after each keyframe
        // repeat the picture exactly.
        let mut last = Vec::new();
        feed(&mut check, t0, 15 * 60, |i| {
            frames += 1;
            if (1..=3).contains(&(i % 15)) && !last.is_empty() {
                return last.clone();
            }
            last = scene(i);
            last.clone()
        });
        assert_eq!(check.fault(), None);
        assert!(check.allows_live());
        assert_eq!(frames, 900);
    }

    /// x264 with a bitrate target behind an on-screen clock: every P-frame
    /// changes the picture, by less each time after a keyframe, and the
    /// clock ticks once a second; the frozen rule sees change, the
    /// refinement watch sees it die down in every group.
    #[test]
    fn a_still_picture_an_encoder_keeps_refining_is_frozen_with_its_reason() {
        let mut check = PictureCheck::new(PicturePolicy::Required);
        let base = scene();
        let mut noise = Noise(11);
        let mut error: Vec<i32> = Vec::new();
        feed(&mut check, Instant::now(), 60, |i| {
            if i % 15 == 0 {
                // A coarse keyframe: every cell off by up to 4 levels.
                error = base.iter().map(|_| noise.jitter(64)).collect();
            } else {
                for e in &mut error {
                    *e /= 2;
                }
            }
            let mut cells: Vec<u16> = base
                .iter()
                .zip(&error)
                .map(|(&c, e)| (i32::from(c) + e).clamp(0, 4080) as u16)
                .collect();
            stamp(&mut cells, 2, 2, if (i / 15) % 2 == 0 { 3000 } else { 500 });
            cells
        });
        assert_eq!(
            check.fault().map(|f| f.to_string()).unwrap_or_default(),
            "picture frozen: only the encoder refines a still picture"
        );
        assert!(!check.allows_live());
        // A new session starts over.
        check.restart();
        assert_eq!(check.fault(), None);
    }

    #[test]
    fn a_still_picture_is_frozen_from_the_first_frames_within_two_seconds() {
        let mut check = PictureCheck::new(PicturePolicy::Required);
        let t0 = Instant::now();
        let base = scene();
        let mut first_fault = None;
        let mut cells = base.clone();
        for i in 0..60usize {
            let at = t0 + Duration::from_millis(i as u64 * 1000 / 15);
            // x264 refining a still picture: a few frames in each GOP
            // change many cells by a little, and the picture stays so.
            if matches!(i % 15, 1 | 8 | 10) {
                for c in cells.iter_mut().step_by(3) {
                    *c += 1;
                }
            }
            let cells = cells.clone();
            check.handle_sample(at, &pic(cells, i % 15 == 0));
            if first_fault.is_none() && check.fault().is_some() {
                first_fault = Some(at - t0);
            }
        }
        assert!(matches!(check.fault(), Some(PictureFault::Frozen)));
        assert!(
            first_fault.is_some_and(|d| d <= Duration::from_secs(2)),
            "{first_fault:?}"
        );
        assert!(!check.allows_live());
        assert_eq!(
            check.fault().map(|f| f.to_string()).unwrap_or_default(),
            "picture frozen: not even sensor noise changes"
        );
    }

    #[test]
    fn a_still_picture_behind_a_ticking_clock_is_caught_with_its_reason() {
        let mut check = PictureCheck::new(PicturePolicy::Required);
        let t0 = Instant::now();
        let base = scene();
        feed(&mut check, t0, 60, |i| {
            let mut cells = base.clone();
            stamp(&mut cells, 50, 2, 100 + (i / 15) as u16 * 200);
            cells
        });
        assert_eq!(
            check.fault().map(|f| f.to_string()).as_deref(),
            Some("picture frozen; only the on-screen clock changes")
        );
    }

    #[test]
    fn a_moving_scene_with_a_clock_is_live() {
        let mut check = PictureCheck::new(PicturePolicy::Required);
        let t0 = Instant::now();
        let mut scene = noisy(3, 20);
        feed(&mut check, t0, 150, |i| {
            let mut cells = scene(i);
            stamp(&mut cells, 50, 2, 100 + (i / 15) as u16 * 200);
            cells
        });
        assert_eq!(check.fault(), None);
        assert!(check.allows_live());
    }

    #[test]
    fn a_uniform_picture_is_no_picture_even_with_noise() {
        let mut check = PictureCheck::new(PicturePolicy::Required);
        let t0 = Instant::now();
        let mut noise = Noise(11);
        feed(&mut check, t0, 30, |_| {
            (0..usize::from(W) * usize::from(H))
                .map(|_| (200 + noise.jitter(8)) as u16)
                .collect()
        });
        assert_eq!(
            check.fault().map(|f| f.to_string()).as_deref(),
            Some("no picture: the lens may be covered")
        );
    }

    #[test]
    fn a_recurring_keyframe_after_others_is_a_replay_with_its_period() {
        let mut check = PictureCheck::new(PicturePolicy::Required);
        let t0 = Instant::now();
        let mut scene = noisy(5, 40);
        // A 4 s loop of 4 keyframes, the picture moving in between.
        for i in 0..(15 * 9) {
            let at = t0 + Duration::from_millis(i as u64 * 1000 / 15);
            if i % 15 == 0 {
                check.handle_keyframe(at, 1000 + (i / 15 % 4) as u64);
            }
            check.handle_sample(at, &pic(scene(i), i % 15 == 0));
        }
        assert_eq!(
            check.fault().map(|f| f.to_string()).as_deref(),
            Some("the picture repeats every 4.0 s: a replayed recording")
        );
        // A reconnect does not forget the recording.
        check.restart();
        assert_eq!(check.fault(), None);
        check.handle_keyframe(t0 + Duration::from_secs(20), 1001);
        check.handle_keyframe(t0 + Duration::from_secs(21), 1002);
        assert!(matches!(check.fault(), Some(PictureFault::Replayed { .. })));
    }

    #[test]
    fn two_alternating_keyframes_of_a_frozen_picture_are_not_called_a_replay() {
        let mut check = PictureCheck::new(PicturePolicy::Required);
        let t0 = Instant::now();
        let base = scene();
        for i in 0..(15 * 6) {
            let at = t0 + Duration::from_millis(i as u64 * 1000 / 15);
            if i % 15 == 0 {
                // x264 alternates idr_pic_id between 0 and 1.
                check.handle_keyframe(at, (i / 15 % 2) as u64);
            }
            check.handle_sample(at, &pic(base.clone(), i % 15 == 0));
        }
        assert!(matches!(check.fault(), Some(PictureFault::Frozen)));
    }

    #[test]
    fn a_live_camera_whose_sensor_hangs_a_while_is_frozen_not_replayed_and_recovers() {
        // The picture of each frame is judged a few ms after its keyframe's
        // bytes were hashed: decoding takes that long.
        const DECODE: Duration = Duration::from_millis(5);
        let mut check = PictureCheck::new(PicturePolicy::Required);
        let t0 = Instant::now();
        let mut moving = noisy(3, 20);
        let base = scene();
        let frame = |check: &mut PictureCheck, i: usize, hash: u64, cells: Vec<u16>| {
            let at = t0 + Duration::from_millis(i as u64 * 1000 / 15);
            let keyframe = i.is_multiple_of(15);
            if keyframe {
                check.handle_keyframe(at, hash);
            }
            check.handle_sample(at + DECODE, &pic(cells, keyframe));
        };
        for i in 0..45 {
            frame(&mut check, i, 100 + (i / 15) as u64, moving(i));
        }
        assert!(check.allows_live());
        // The sensor hangs for 4 s; x264 alternates idr_pic_id, so the
        // keyframes of the still picture repeat every other one.
        for i in 45..105 {
            frame(&mut check, i, (i / 15 % 2) as u64, base.clone());
        }
        assert_eq!(check.fault(), Some(PictureFault::Frozen));
        // The sensor comes back: so does the camera.
        for i in 105..180 {
            frame(&mut check, i, 200 + (i / 15) as u64, moving(i));
        }
        assert_eq!(check.fault(), None);
        assert!(check.allows_live());
    }

    #[test]
    fn a_looped_recording_is_caught_from_one_decoded_keyframe_in_ten() {
        // Outside a close look only one keyframe in ten is decoded; every
        // keyframe's bytes are still hashed. A 4-GOP loop, one GOP a second.
        let mut check = PictureCheck::new(PicturePolicy::Required);
        let t0 = Instant::now();
        let mut moving = noisy(5, 20);
        for k in 0..30u64 {
            let at = t0 + Duration::from_secs(k);
            check.handle_keyframe(at, 500 + k % 4);
            if k % 10 == 0 {
                let at = at + Duration::from_millis(5);
                check.handle_sample(at, &pic(moving(k as usize), true));
            }
        }
        assert_eq!(
            check.fault().map(|f| f.to_string()).as_deref(),
            Some("the picture repeats every 4.0 s: a replayed recording")
        );
    }

    #[test]
    fn undecodable_pictures_block_a_required_camera_only() {
        let h265 = PictureSample::Undecodable(Undecodable::H265);
        let mut required = PictureCheck::new(PicturePolicy::Required);
        required.handle_sample(Instant::now(), &h265);
        assert_eq!(
            required.fault().map(|f| f.to_string()).as_deref(),
            Some("cannot decode H.265 here: ffmpeg is not installed")
        );
        assert!(!required.allows_live());
        let mut optional = PictureCheck::new(PicturePolicy::Optional);
        optional.handle_sample(Instant::now(), &h265);
        assert_eq!(optional.fault(), None);
        assert!(optional.allows_live());
    }

    #[test]
    fn a_required_camera_is_not_allowed_live_before_its_picture_was_judged() {
        let mut check = PictureCheck::new(PicturePolicy::Required);
        assert!(!check.allows_live());
        let t0 = Instant::now();
        feed(&mut check, t0, 5, noisy(1, 20));
        assert!(!check.allows_live(), "5 frames are not enough to judge");
    }
}
