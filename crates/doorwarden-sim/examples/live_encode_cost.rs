//! What the simulated camera's live source costs per frame: drawing its
//! scene and encoding it with OpenH264 at 320x180, for a moving scene, a
//! quiet one, and a hung sensor behind its clock (the encoder then codes
//! almost nothing), in one run. Prints medians; asserts nothing.
//!
//! `cargo run --release -p doorwarden-sim --example live_encode_cost`

#![allow(clippy::print_stdout)]

use std::time::Duration;

use doorwarden_sim::camera::{SimClip, measure_live_encoding};

const FRAMES: usize = 450; // 30 s of video at 15 fps

fn median_ms(mut samples: Vec<Duration>) -> f64 {
    samples.sort();
    samples
        .get(samples.len() / 2)
        .map_or(f64::NAN, |d| d.as_secs_f64() * 1000.0)
}

fn main() {
    println!("simulated camera, live source: 320x180, 15 fps, {FRAMES} frames each, medians");
    for (name, clip, hung) in [
        ("moving scene", SimClip::Live, false),
        ("quiet scene", SimClip::Quiet, false),
        ("hung sensor", SimClip::Live, true),
    ] {
        match measure_live_encoding(clip, hung, FRAMES) {
            Ok(cost) => {
                let draw = median_ms(cost.draw);
                let encode = median_ms(cost.encode);
                // 15 frames a second: the share of one core it takes.
                let core = (draw + encode) * 15.0 / 10.0;
                println!(
                    "{name:>13}: draw {draw:.2} ms, encode {encode:.2} ms a frame ({core:.1} % of a core)"
                );
            }
            Err(e) => println!("{name:>13}: {e}"),
        }
    }
}
