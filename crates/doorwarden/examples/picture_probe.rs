//! Measures what the picture checks see in a recorded H.264 stream: decode
//! time per frame and, between consecutive thumbnails, how many cells
//! changed and by how much. Used to set the thresholds in
//! `doorwarden::core::picture` from real encoder output.
//!
//! `cargo run --release -p doorwarden --example picture_probe -- FILE.h264`
//! (`PROBE_KEYS=1` decodes keyframes only, as the sampler does when idle)

use std::time::Instant;

use doorwarden::core::picture::{PictureCheck, PicturePolicy, PictureSample};
use doorwarden::io::picture::thumbnail;
use openh264::formats::YUVSource;

fn main() {
    let Some(path) = std::env::args().nth(1) else {
        eprintln!("usage: picture_probe FILE.h264");
        std::process::exit(2);
    };
    let data = match std::fs::read(&path) {
        Ok(d) => d,
        Err(e) => {
            eprintln!("{path}: {e}");
            std::process::exit(1);
        }
    };
    let keys_only = std::env::var_os("PROBE_KEYS").is_some();
    // The real picture check, fed as the camera task would at 15 fps.
    let start = Instant::now();
    let mut check = PictureCheck::new(PicturePolicy::Required);
    let mut fault = None;
    let mut index = 0u64;
    let mut decoder = openh264::decoder::Decoder::new().expect("decoder");
    let mut prev: Option<Vec<u16>> = None;
    let mut prev_key: Option<Vec<u16>> = None;
    let mut times: Vec<std::time::Duration> = Vec::new();
    let mut key_times: Vec<std::time::Duration> = Vec::new();
    let mut thumb_times: Vec<std::time::Duration> = Vec::new();
    for body in split_nal_units(&data) {
        let key = body.first().is_some_and(|b| b & 0x1f == 5);
        // PROBE_KEYS=1: what the idle sampler decodes, keyframes only.
        if keys_only && body.first().is_some_and(|b| b & 0x1f == 1) {
            continue;
        }
        let mut nal = vec![0, 0, 0, 1];
        nal.extend_from_slice(body);
        let nal = &nal[..];
        let t0 = Instant::now();
        let out = decoder.decode(nal);
        let took = t0.elapsed();
        let yuv = match out {
            Ok(Some(yuv)) => yuv,
            Ok(None) => continue,
            Err(e) => {
                println!("decode error: {e}");
                continue;
            }
        };
        if key {
            key_times.push(took);
        } else {
            times.push(took);
        }
        let (w, h) = yuv.dimensions();
        let (stride, _, _) = yuv.strides();
        let t1 = Instant::now();
        let Some(t) = thumbnail(yuv.y(), w, h, stride) else {
            continue;
        };
        thumb_times.push(t1.elapsed());
        let at = start + std::time::Duration::from_millis(index * 1000 / 15);
        index += 1;
        check.handle_sample(
            at,
            &PictureSample::Picture {
                picture: t.clone(),
                keyframe: key,
            },
        );
        if check.fault() != fault {
            fault = check.fault();
            println!(
                "VERDICT at {:.2} s: {}",
                index as f64 / 15.0,
                fault.map(|f| f.to_string()).unwrap_or("live".into())
            );
        }
        let stats = |a: &[u16], b: &[u16]| {
            let diffs: Vec<u32> = a
                .iter()
                .zip(b)
                .map(|(x, y)| u32::from(x.abs_diff(*y)))
                .collect();
            let changed = diffs.iter().filter(|d| **d > 0).count();
            let max = diffs.iter().max().copied().unwrap_or(0);
            let mean = diffs.iter().sum::<u32>() as f64 / diffs.len() as f64;
            format!("changed {changed:4} max {max:4} mean {mean:7.3}")
        };
        let n = t.cells.len() as f64;
        let avg = t.cells.iter().map(|c| f64::from(*c)).sum::<f64>() / n;
        let sd = (t
            .cells
            .iter()
            .map(|c| (f64::from(*c) - avg).powi(2))
            .sum::<f64>()
            / n)
            .sqrt();
        let p = prev
            .as_deref()
            .map(|p| stats(p, &t.cells))
            .unwrap_or_default();
        let k = if key {
            prev_key
                .as_deref()
                .map(|p| format!("KEY {}", stats(p, &t.cells)))
                .unwrap_or_default()
        } else {
            String::new()
        };
        println!(
            "{w}x{h} {:6.2} ms sd {:6.1} | {p} {k}",
            took.as_secs_f64() * 1e3,
            sd / 16.0
        );
        if key {
            prev_key = Some(t.cells.clone());
        }
        prev = Some(t.cells);
    }
    for (what, mut list) in [
        ("P-frame decode", times),
        ("keyframe decode", key_times),
        ("thumbnail", thumb_times),
    ] {
        list.sort();
        if let (Some(median), Some(max)) = (list.get(list.len() / 2), list.last()) {
            println!(
                "{what}: {} frames, median {median:?}, max {max:?}",
                list.len()
            );
        }
    }
}

/// The NAL unit bodies of an Annex B stream (3- or 4-byte start codes).
fn split_nal_units(data: &[u8]) -> Vec<&[u8]> {
    let mut starts = Vec::new();
    let mut i = 0;
    while i + 3 <= data.len() {
        if data[i..i + 3] == [0, 0, 1] {
            starts.push(i + 3);
            i += 3;
        } else {
            i += 1;
        }
    }
    let mut out = Vec::new();
    for (k, &s) in starts.iter().enumerate() {
        let mut end = starts.get(k + 1).map_or(data.len(), |n| n - 3);
        while end > s && data[end - 1] == 0 {
            end -= 1;
        }
        out.push(&data[s..end]);
    }
    out
}
