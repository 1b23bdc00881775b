//! Telling an encoder that keeps refining a still picture from a live
//! scene's sensor noise.
//!
//! Pure, part of the picture checks ([`crate::core::picture`]): it sees the
//! same thumbnails, P-frame by P-frame, and says whether the changes between
//! them are only an encoder polishing a picture that does not change.
//!
//! # Why this is needed
//!
//! An encoder with a bitrate or quality target (x264 CBR/ABR, most cameras'
//! defaults) codes each keyframe of a still picture coarsely, then spends the
//! spare bits of the following P-frames on refining it. The decoded picture
//! then changes in every P-frame, so the frozen rule, which counts
//! comparisons without any change, sees a live scene; with an on-screen clock
//! the keyframes also differ every second, so the replay rule never fires
//! either. A hung sensor behind such an encoder was live for as long as it was
//! watched (tests/picture_watch.rs, `/cam-still-cbr`, `/cam-still-clock-cbr`).
//!
//! # What tells them apart (measured on x264, docs/performance.md)
//!
//! Within one group of pictures (keyframe to keyframe):
//! - **refinement shrinks toward zero, in the same places**: large changes
//!   over much of the picture just after the keyframe, then ever smaller
//!   ones; by the last third of the group, changes of a whole luma level or
//!   more have all but gone (at most [`STRONG_LEFT`] of the early peak) and
//!   the total change is at most [`ENERGY_LEFT`] of the early peak;
//! - **sensor noise does not die down**: each picture brings fresh noise, so
//!   the last third still changes (measured, in whole-level changes: 23 % or
//!   more of the early peak at 500 kbit/s, 8 % or more where the bitrate is
//!   so low, 200 kbit/s at 320x180, that the encoder refines the quiet
//!   scene as well).
//!
//! A group counts only if its early changes cover at least [`BREADTH`] of the
//! picture (a still scene's faint, sparse noise under a constant-quality
//! encoder changes a few cells at a time and is judged by the frozen rule),
//! and the verdict needs [`GROUPS`] refining groups in a row. An on-screen
//! clock's tick (strong changes, all in one small box) is left out of each
//! comparison, as the frozen rule leaves it out.
//!
//! Groups without enough P-frames (outside a close look only keyframes are
//! decoded) tell nothing: the verdict stands until a judged group says
//! otherwise.

use super::picture::Thumbnail;

/// Refining groups in a row before the picture is judged frozen.
pub const GROUPS: u32 = 2;
/// Least comparisons in a group for it to be judged.
pub const MIN_STEPS: usize = 6;
/// Share of the picture the early changes must cover.
pub const BREADTH: f64 = 0.10;
/// Late total change, at most this share of the early peak.
pub const ENERGY_LEFT: f64 = 0.25;
/// Late changes of a whole luma level or more, at most this share of the
/// early peak.
pub const STRONG_LEFT: f64 = 0.04;
/// A whole luma level, in thumbnail units (1/16 level).
const STRONG: u16 = 16;
/// A clock's digits change a cell by at least this much (as in the frozen
/// rule).
const CLOCK_STEP: u16 = super::picture::CLOCK_MIN_STEP;
/// Largest share of the picture a clock's box may cover.
const CLOCK_AREA: f64 = super::picture::CLOCK_MAX_AREA;
/// Comparisons kept per group (20 s at 15 fps); a longer group is not
/// judged.
const MAX_STEPS: usize = 300;

/// One P-frame compared with the one before it in the same group.
#[derive(Debug, Clone)]
struct Step {
    /// Sum of the cells' changes.
    energy: u64,
    /// Cells changed by a whole luma level or more.
    strong: u32,
    /// Which cells changed at all (a bit per cell).
    changed: Vec<u64>,
}

/// The refinement watch of one camera.
#[derive(Debug, Clone, Default)]
pub struct RefinementWatch {
    /// The previous P-frame of this group (none right after a keyframe: a
    /// P-frame is compared only with P-frames of its own group).
    prev: Option<Thumbnail>,
    steps: Vec<Step>,
    overflow: bool,
    /// Groups in a row judged refining.
    run: u32,
}

impl RefinementWatch {
    /// Whether the picture is a still one that only the encoder refines.
    pub fn refining(&self) -> bool {
        self.run >= GROUPS
    }

    /// A new session: nothing is known.
    pub fn reset(&mut self) {
        *self = RefinementWatch::default();
    }

    /// A decoded keyframe: the group before it ends and is judged.
    pub fn keyframe(&mut self) {
        let judged = (!self.overflow && self.steps.len() >= MIN_STEPS)
            .then(|| self.group_refines(self.cells()));
        match judged {
            Some(true) => self.run = self.run.saturating_add(1),
            Some(false) => self.run = 0,
            None => {}
        }
        self.steps.clear();
        self.overflow = false;
        self.prev = None;
    }

    /// A decoded P-frame.
    pub fn p_frame(&mut self, picture: &Thumbnail) {
        if let Some(prev) = &self.prev
            && prev.width == picture.width
            && prev.height == picture.height
            && prev.cells.len() == picture.cells.len()
        {
            if self.steps.len() < MAX_STEPS {
                self.steps.push(step(prev, picture));
            } else {
                self.overflow = true;
            }
        }
        self.prev = Some(picture.clone());
    }

    fn cells(&self) -> usize {
        self.prev.as_ref().map_or(0, |p| p.cells.len())
    }

    /// Whether the group just ended shrank toward zero like a refinement:
    /// broad early changes, next to nothing late.
    fn group_refines(&self, cells: usize) -> bool {
        let n = self.steps.len();
        if cells == 0 || n < MIN_STEPS {
            return false;
        }
        let head = &self.steps[..n / 2];
        let tail = &self.steps[n - (n / 3).max(2)..];
        let mut covered = vec![0u64; cells.div_ceil(64)];
        for s in head {
            for (c, w) in covered.iter_mut().zip(&s.changed) {
                *c |= w;
            }
        }
        let breadth = covered.iter().map(|w| w.count_ones()).sum::<u32>();
        if f64::from(breadth) < BREADTH * cells as f64 {
            return false;
        }
        let energy_peak = head.iter().map(|s| s.energy).max().unwrap_or(0);
        let strong_peak = head.iter().map(|s| s.strong).max().unwrap_or(0);
        if energy_peak == 0 {
            return false;
        }
        let len = tail.len() as f64;
        let energy_late = tail.iter().map(|s| s.energy as f64).sum::<f64>() / len;
        let strong_late = tail.iter().map(|s| f64::from(s.strong)).sum::<f64>() / len;
        energy_late <= ENERGY_LEFT * energy_peak as f64
            && strong_late <= STRONG_LEFT * f64::from(strong_peak)
    }
}

/// The change from `a` to `b`, an on-screen clock's box left out.
fn step(a: &Thumbnail, b: &Thumbnail) -> Step {
    let w = usize::from(b.width).max(1);
    let mut diff: Vec<u16> = a
        .cells
        .iter()
        .zip(&b.cells)
        .map(|(x, y)| x.abs_diff(*y))
        .collect();
    // The box around the changes a clock's digits make; left out when it
    // is small (a scene's large changes are not a clock's).
    let mut bbox: Option<(usize, usize, usize, usize)> = None;
    for (i, d) in diff.iter().enumerate() {
        if *d >= CLOCK_STEP {
            let (x, y) = (i % w, i / w);
            bbox = Some(match bbox {
                None => (x, y, x, y),
                Some((x0, y0, x1, y1)) => (x0.min(x), y0.min(y), x1.max(x), y1.max(y)),
            });
        }
    }
    if let Some((x0, y0, x1, y1)) = bbox {
        let h = diff.len() / w;
        // One cell of margin: a digit's edge changes its neighbours too.
        let (x0, y0) = (x0.saturating_sub(1), y0.saturating_sub(1));
        let (x1, y1) = ((x1 + 1).min(w - 1), (y1 + 1).min(h.saturating_sub(1)));
        let area = (x1 - x0 + 1) * (y1 - y0 + 1);
        if (area as f64) <= CLOCK_AREA * diff.len() as f64 {
            for y in y0..=y1 {
                for d in &mut diff[y * w + x0..=y * w + x1] {
                    *d = 0;
                }
            }
        }
    }
    let mut changed = vec![0u64; diff.len().div_ceil(64)];
    let mut energy = 0u64;
    let mut strong = 0u32;
    for (i, d) in diff.iter().enumerate() {
        if *d > 0 {
            changed[i / 64] |= 1 << (i % 64);
            energy += u64::from(*d);
            if *d >= STRONG {
                strong += 1;
            }
        }
    }
    Step {
        energy,
        strong,
        changed,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const W: u16 = 64;
    const H: u16 = 36;

    /// Deterministic noise (xorshift).
    struct Noise(u64);
    impl Noise {
        fn jitter(&mut self, amp: i32) -> i32 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            (self.0 % (2 * amp as u64 + 1)) as i32 - amp
        }
    }

    fn thumb(cells: Vec<u16>) -> Thumbnail {
        Thumbnail {
            width: W,
            height: H,
            cells,
        }
    }

    fn scene() -> Vec<u16> {
        (0..usize::from(W) * usize::from(H))
            .map(|i| (1000 + (i % 64) * 20 + (i / 64) * 10) as u16)
            .collect()
    }

    /// `groups` groups of 15 (a keyframe, 14 P-frames), P-frame `k` made by
    /// `frame(group, k)`.
    fn run(
        watch: &mut RefinementWatch,
        groups: usize,
        mut frame: impl FnMut(usize, usize) -> Vec<u16>,
    ) {
        for g in 0..groups {
            watch.keyframe();
            for k in 1..15 {
                watch.p_frame(&thumb(frame(g, k)));
            }
        }
        watch.keyframe();
    }

    /// Each group starts coarse (every cell off by a few levels) and each
    /// P-frame halves what is left: changes shrink toward zero in the same
    /// places.
    fn refining(g: usize, k: usize) -> Vec<u16> {
        let base = scene();
        let mut noise = Noise(7 + g as u64);
        base.iter()
            .map(|&c| {
                let error = noise.jitter(60) as f64 / 2f64.powi(k as i32);
                (f64::from(c) + error).round() as u16
            })
            .collect()
    }

    #[test]
    fn an_encoder_polishing_a_still_picture_is_caught_after_two_groups() {
        let mut watch = RefinementWatch::default();
        run(&mut watch, 1, refining);
        assert!(!watch.refining(), "one group is not enough");
        run(&mut watch, 1, |_, k| refining(1, k));
        assert!(watch.refining());
        // The scene comes back to life: the next judged group clears it.
        let mut noise = Noise(99);
        run(&mut watch, 1, |_, _| {
            scene()
                .into_iter()
                .map(|c| (i32::from(c) + noise.jitter(24)) as u16)
                .collect()
        });
        assert!(!watch.refining());
    }

    #[test]
    fn sensor_noise_that_does_not_die_down_is_not_refinement() {
        let mut watch = RefinementWatch::default();
        let mut noise = Noise(3);
        // Refinement of the picture AND fresh noise in every P-frame.
        run(&mut watch, 6, |g, k| {
            refining(g, k)
                .into_iter()
                .map(|c| (i32::from(c) + noise.jitter(24)) as u16)
                .collect()
        });
        assert!(!watch.refining());
    }

    #[test]
    fn a_clock_ticking_late_in_the_group_does_not_hide_the_refinement() {
        let mut watch = RefinementWatch::default();
        run(&mut watch, 2, |g, k| {
            let mut cells = refining(g, k);
            // The clock's digits change once a group, late.
            if k >= 12 {
                for y in 1..4 {
                    for x in 2..12 {
                        cells[y * 64 + x] = 3000;
                    }
                }
            }
            cells
        });
        assert!(watch.refining());
    }

    #[test]
    fn sparse_faint_noise_and_keyframes_alone_tell_nothing() {
        let mut watch = RefinementWatch::default();
        // A few cells change now and then, early more than late: too
        // little of the picture to be a refinement.
        run(&mut watch, 4, |_, k| {
            let mut cells = scene();
            if k < 4 {
                cells[k * 100] += 40;
            }
            cells
        });
        assert!(!watch.refining());
        // Refining, then only keyframes (no close look): the verdict
        // stands until a judged group says otherwise.
        run(&mut watch, 2, refining);
        assert!(watch.refining());
        for _ in 0..5 {
            watch.keyframe();
        }
        assert!(watch.refining());
        watch.reset();
        assert!(!watch.refining());
    }
}
