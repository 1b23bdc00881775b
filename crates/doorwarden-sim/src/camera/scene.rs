//! What the simulated camera's sensor sees, drawn into a YUV 4:2:0 picture
//! for the live encoder (`super::live`). Pure: the frame index and the wall
//! clock come in, a picture comes out.
//!
//! Owns the scene (a static porch view with a ball moving across it), the
//! faint per-frame sensor noise that makes even a quiet live picture
//! differ from the one before, the on-screen clock and frame counter (drawn
//! with a tiny hand-made digit font, in one corner as cameras do), and what
//! each picture fault does to all of that:
//!
//! - live: the scene moves, the noise changes, the clock ticks;
//! - still: nothing changes at all, not even noise (a hung camera whose
//!   encoder keeps coding one picture);
//! - hung sensor: the sensor's picture stops, the overlay keeps ticking;
//! - covered: a dark, even picture (a hand or tape over the lens).

use openh264::formats::YUVSource;

/// Picture size: small, so the encoder costs little, and the size the
/// GStreamer test sources use, so the picture checks see the same cells.
pub(crate) const WIDTH: usize = 320;
pub(crate) const HEIGHT: usize = 180;
/// Frames per second of the live source.
pub(crate) const FPS: u64 = 15;

/// Sensor noise, in luma levels either side (a standard deviation of
/// about 3.7, a real small sensor's in dim light): enough to survive the
/// encoder in a quiet scene, so that consecutive pictures still differ all
/// over after decoding (the picture checks' cells average 5x5 pixels
/// here).
const NOISE: u8 = 6;

/// What the sensor and the overlay do this frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Sensor {
    /// A live scene: the ball moves (unless the scene is quiet), noise
    /// changes, the clock ticks.
    Live { quiet: bool },
    /// The same picture again, byte for byte, overlay included.
    Still,
    /// The sensor's last picture again; only the overlay changes.
    Hung,
    /// Lens covered: dark and even, faint noise, no overlay.
    Covered,
}

/// The picture handed to the encoder, and what it is drawn from.
pub(crate) struct Scene {
    /// Planar I420: Y, then U, then V.
    yuv: Vec<u8>,
    /// The sensor's luma before the overlay, kept so a hung sensor can be
    /// shown behind a ticking clock.
    sensor: Vec<u8>,
    /// The porch view without the ball or noise, drawn once.
    background: Vec<u8>,
    noise: u64,
    drawn: bool,
}

impl Scene {
    pub(crate) fn new(seed: u64) -> Self {
        let mut background = vec![0u8; WIDTH * HEIGHT];
        for y in 0..HEIGHT {
            for x in 0..WIDTH {
                // A sky-to-ground gradient, a door and three steps: edges
                // and light falloff, as a real view has.
                let mut luma = 70 + (y * 90 / HEIGHT) as u8;
                if (200..260).contains(&x) && (40..150).contains(&y) {
                    luma = 45;
                }
                if y >= 150 && (y - 150) % 10 < 2 {
                    luma = 190;
                }
                background[y * WIDTH + x] = luma;
            }
        }
        let mut yuv = vec![128u8; WIDTH * HEIGHT * 3 / 2];
        yuv[..WIDTH * HEIGHT].copy_from_slice(&background);
        Scene {
            sensor: background.clone(),
            yuv,
            background,
            noise: seed | 1,
            drawn: false,
        }
    }

    /// Draws frame `index` as `sensor` says, with `clock` ("HH:MM:SS") in
    /// the overlay.
    pub(crate) fn draw(&mut self, index: u64, clock: &str, sensor: Sensor) {
        match sensor {
            Sensor::Still if self.drawn => return,
            Sensor::Still => self.draw_sensor(index, true),
            Sensor::Live { quiet } => self.draw_sensor(index, quiet),
            Sensor::Hung if self.drawn => {}
            Sensor::Hung => self.draw_sensor(index, true),
            Sensor::Covered => {
                self.drawn = true;
                for i in 0..WIDTH * HEIGHT {
                    let n = self.next_noise();
                    self.yuv[i] = 20u8.saturating_add_signed(n);
                }
                self.yuv[WIDTH * HEIGHT..].fill(128);
                return;
            }
        }
        self.drawn = true;
        self.yuv[..WIDTH * HEIGHT].copy_from_slice(&self.sensor);
        self.yuv[WIDTH * HEIGHT..].fill(128);
        let text = format!("{clock} #{:06}", index % 1_000_000);
        self.draw_overlay(&text);
    }

    /// The sensor's picture of frame `index`: the view, the ball where it
    /// is at that moment (left out in a quiet scene), and fresh noise.
    fn draw_sensor(&mut self, index: u64, quiet: bool) {
        self.sensor.copy_from_slice(&self.background);
        if !quiet {
            // A Lissajous path: never the same place twice in a row. It
            // keeps to the lower right, away from the overlay: a change
            // near the clock alone looks like the clock to the picture
            // checks, and a scene that moves is not meant to test that.
            let t = index as f64 / FPS as f64;
            let cx = 225.0 + 75.0 * (t * std::f64::consts::TAU / 6.0).sin();
            let cy = 125.0 + 35.0 * (t * std::f64::consts::TAU / 4.0).sin();
            let r = 18.0;
            for y in 0..HEIGHT {
                let dy = y as f64 - cy;
                if dy.abs() > r {
                    continue;
                }
                for x in 0..WIDTH {
                    let dx = x as f64 - cx;
                    if dx * dx + dy * dy <= r * r {
                        self.sensor[y * WIDTH + x] = 210;
                    }
                }
            }
        }
        for i in 0..WIDTH * HEIGHT {
            let n = self.next_noise();
            self.sensor[i] = self.sensor[i].saturating_add_signed(n);
        }
    }

    /// White digits on a dark box in the top left corner.
    fn draw_overlay(&mut self, text: &str) {
        const SCALE: usize = 2;
        const X0: usize = 4;
        const Y0: usize = 4;
        let advance = 4 * SCALE;
        let box_w = text.chars().count() * advance + 2 * SCALE;
        let box_h = 5 * SCALE + 2 * SCALE;
        for y in Y0..(Y0 + box_h).min(HEIGHT) {
            for x in X0..(X0 + box_w).min(WIDTH) {
                self.yuv[y * WIDTH + x] = 16;
            }
        }
        for (n, ch) in text.chars().enumerate() {
            let rows = glyph(ch);
            for (row, bits) in rows.iter().enumerate() {
                for col in 0..3 {
                    if bits & (0b100 >> col) == 0 {
                        continue;
                    }
                    for sy in 0..SCALE {
                        for sx in 0..SCALE {
                            let x = X0 + SCALE + n * advance + col * SCALE + sx;
                            let y = Y0 + SCALE + row * SCALE + sy;
                            if x < WIDTH && y < HEIGHT {
                                self.yuv[y * WIDTH + x] = 235;
                            }
                        }
                    }
                }
            }
        }
    }

    /// -NOISE..=NOISE from xorshift64: noise, not security.
    fn next_noise(&mut self) -> i8 {
        self.noise ^= self.noise << 13;
        self.noise ^= self.noise >> 7;
        self.noise ^= self.noise << 17;
        let span = u64::from(NOISE) * 2 + 1;
        // In range by construction: at most 2 * NOISE.
        (self.noise % span) as i8 - NOISE as i8
    }

    /// The luma plane, for tests.
    #[cfg(test)]
    pub(crate) fn luma(&self) -> &[u8] {
        &self.yuv[..WIDTH * HEIGHT]
    }
}

impl YUVSource for Scene {
    fn dimensions(&self) -> (usize, usize) {
        (WIDTH, HEIGHT)
    }

    fn strides(&self) -> (usize, usize, usize) {
        (WIDTH, WIDTH / 2, WIDTH / 2)
    }

    fn y(&self) -> &[u8] {
        &self.yuv[..WIDTH * HEIGHT]
    }

    fn u(&self) -> &[u8] {
        let start = WIDTH * HEIGHT;
        &self.yuv[start..start + WIDTH * HEIGHT / 4]
    }

    fn v(&self) -> &[u8] {
        &self.yuv[WIDTH * HEIGHT * 5 / 4..]
    }
}

/// A 3x5 glyph, one row per entry, the top bit the left column. Only what
/// the overlay writes: digits, ':', '#' and space.
fn glyph(ch: char) -> [u8; 5] {
    match ch {
        '0' => [0b111, 0b101, 0b101, 0b101, 0b111],
        '1' => [0b010, 0b110, 0b010, 0b010, 0b111],
        '2' => [0b111, 0b001, 0b111, 0b100, 0b111],
        '3' => [0b111, 0b001, 0b111, 0b001, 0b111],
        '4' => [0b101, 0b101, 0b111, 0b001, 0b001],
        '5' => [0b111, 0b100, 0b111, 0b001, 0b111],
        '6' => [0b111, 0b100, 0b111, 0b101, 0b111],
        '7' => [0b111, 0b001, 0b010, 0b010, 0b010],
        '8' => [0b111, 0b101, 0b111, 0b101, 0b111],
        '9' => [0b111, 0b101, 0b111, 0b001, 0b111],
        ':' => [0b000, 0b010, 0b000, 0b010, 0b000],
        '#' => [0b101, 0b111, 0b101, 0b111, 0b101],
        _ => [0; 5],
    }
}

/// "HH:MM:SS" (UTC) of a wall-clock time, for the overlay.
pub(crate) fn clock_text(now: std::time::SystemTime) -> String {
    let secs = now
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let day = secs % 86_400;
    format!("{:02}:{:02}:{:02}", day / 3600, day % 3600 / 60, day % 60)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Pixels that differ between two luma planes, and their bounding box.
    fn diff(a: &[u8], b: &[u8]) -> (usize, Option<(usize, usize, usize, usize)>) {
        let mut count = 0;
        let mut bbox: Option<(usize, usize, usize, usize)> = None;
        for (i, (p, q)) in a.iter().zip(b).enumerate() {
            if p != q {
                count += 1;
                let (x, y) = (i % WIDTH, i / WIDTH);
                bbox = Some(match bbox {
                    None => (x, y, x, y),
                    Some(u) => (u.0.min(x), u.1.min(y), u.2.max(x), u.3.max(y)),
                });
            }
        }
        (count, bbox)
    }

    #[test]
    fn a_live_picture_differs_all_over_even_when_quiet() {
        for quiet in [false, true] {
            let mut scene = Scene::new(7);
            scene.draw(10, "12:00:00", Sensor::Live { quiet });
            let before = scene.luma().to_vec();
            scene.draw(11, "12:00:00", Sensor::Live { quiet });
            let (changed, bbox) = diff(&before, scene.luma());
            assert!(changed > WIDTH * HEIGHT / 2, "{changed} pixels changed");
            assert_eq!(bbox, Some((0, 0, WIDTH - 1, HEIGHT - 1)));
        }
    }

    #[test]
    fn still_repeats_the_picture_byte_for_byte() {
        let mut scene = Scene::new(7);
        scene.draw(10, "12:00:00", Sensor::Live { quiet: false });
        let before = scene.luma().to_vec();
        scene.draw(11, "12:00:01", Sensor::Still);
        scene.draw(12, "12:00:02", Sensor::Still);
        assert_eq!(diff(&before, scene.luma()).0, 0);
    }

    #[test]
    fn a_hung_sensor_changes_only_the_overlay_corner() {
        let mut scene = Scene::new(7);
        scene.draw(10, "12:00:00", Sensor::Live { quiet: false });
        let before = scene.luma().to_vec();
        scene.draw(11, "12:00:01", Sensor::Hung);
        let (changed, bbox) = diff(&before, scene.luma());
        assert!(changed > 0, "the clock ticks");
        let (_, _, x1, y1) = bbox.unwrap();
        assert!(x1 < 140 && y1 < 20, "changes outside the overlay: {bbox:?}");
    }

    #[test]
    fn a_covered_lens_is_dark_and_even() {
        let mut scene = Scene::new(7);
        scene.draw(10, "12:00:00", Sensor::Covered);
        let luma = scene.luma();
        assert!(luma.iter().all(|&p| (20 - NOISE..=20 + NOISE).contains(&p)));
        let mean = luma.iter().map(|&p| f64::from(p)).sum::<f64>() / luma.len() as f64;
        assert!((mean - 20.0).abs() < 0.5, "{mean}");
    }

    #[test]
    fn digits_and_clock_text() {
        assert_eq!(glyph('8'), [0b111, 0b101, 0b111, 0b101, 0b111]);
        assert_ne!(glyph('0'), glyph('8'));
        let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(86_400 * 3 + 3723);
        assert_eq!(clock_text(t), "01:02:03");
    }
}
