//! A fragmented MP4 file written as the video arrives, so that whatever
//! happens to the bridge the file plays up to its last whole fragment.
//!
//! Owns: the box layout (ISO/IEC 14496-12) of one video track: `ftyp` and
//! `moov` (with the stream's own `avcC` / `hvcC` and an `mvex`) first, then
//! one `moof` + `mdat` pair per fragment, each written in one piece and
//! flushed to the disk before the next. Samples go in as the camera sent
//! them (4-byte length-prefixed NAL units, which is MP4's own framing):
//! nothing is decoded or re-encoded.
//!
//! A fragment closes at each keyframe or after about a second, whichever
//! comes first. A sample's duration is only known when the next one
//! arrives, so the newest sample always waits for its successor (or for
//! [`Mp4Writer::finish`], which gives it the previous sample's duration).
//! `finish` also writes the clip's length into `mehd`; a file cut short by a
//! crash has none, and players take the length from its fragments.
//!
//! A `free` box after `moov` keeps room for chapter marks (where the camera
//! stopped being live, where frames were lost), known only at the end:
//! [`Mp4Writer::finish_marked`] grows `moov` into that room in place, so
//! nothing already on disk moves.

use std::fs::File;
use std::io::{Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

/// Which codec the track carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VideoCodec {
    H264,
    H265,
}

/// What the `moov` needs to know about the stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrackParams {
    pub codec: VideoCodec,
    /// Display size in pixels.
    pub width: u16,
    pub height: u16,
    /// The decoder configuration record: an `avcC` body for H.264, an
    /// `hvcC` body for H.265 (as retina gives it in `extra_data`).
    pub config: Vec<u8>,
    /// Ticks per second of the sample times (RTP video: 90 000).
    pub timescale: u32,
}

/// One coded picture.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sample {
    /// Decode time in `TrackParams::timescale` ticks from the clip's start.
    pub time: u64,
    pub keyframe: bool,
    /// Length-prefixed NAL units (4-byte lengths).
    pub data: std::sync::Arc<[u8]>,
}

#[derive(Debug, thiserror::Error)]
pub enum Mp4Error {
    #[error("cannot write video clip {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Longest a fragment grows without a keyframe, in seconds.
const FRAGMENT_SECONDS: u64 = 1;
/// The movie header's timescale (milliseconds).
const MOVIE_TIMESCALE: u32 = 1000;
const TRACK_ID: u32 = 1;
/// Bytes kept free after `moov` for the chapter marks, which are known only
/// when the clip ends: `moov` then grows into this room, in place, and a
/// smaller `free` box takes the rest. Room for about 100 marks.
const CHAPTER_ROOM: usize = 4096;

/// A chapter mark: where a player should show that something changed (the
/// camera stopped being live, frames were lost), as Nero chapters (`chpl`
/// in `moov/udta`), which ffmpeg, VLC and mpv read.
#[derive(Debug, Clone, PartialEq)]
pub struct Mark {
    /// Seconds from the start of the clip.
    pub at_s: f64,
    pub title: String,
}

/// A clip being written. Dropping it without [`Mp4Writer::finish`] leaves
/// the file playable up to the last fragment written.
#[derive(Debug)]
pub struct Mp4Writer {
    path: PathBuf,
    file: File,
    timescale: u32,
    /// Where `mehd`'s duration field sits, to fill in at the end.
    mehd_at: u64,
    /// Where `moov` starts and how long it is: the chapter marks go in
    /// the room right after it.
    moov_at: u64,
    moov_size: u32,
    sequence: u32,
    /// Samples not yet in a fragment; the last one lacks its duration.
    pending: Vec<Sample>,
    /// The duration the last written sample got (for the final sample).
    last_duration: u32,
    /// Decode time just after the last written sample.
    written_end: u64,
    first_time: Option<u64>,
    bytes: u64,
}

impl Mp4Writer {
    /// Creates `path`, which must not exist yet (evidence is never
    /// overwritten), and writes the file header.
    pub fn create(path: &Path, track: &TrackParams) -> Result<Mp4Writer, Mp4Error> {
        let io = |source| Mp4Error::Io {
            path: path.to_path_buf(),
            source,
        };
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(path)
            .map_err(io)?;
        let Header {
            bytes: header,
            mehd_at,
            moov_at,
            moov_size,
        } = header(track);
        file.write_all(&header).map_err(io)?;
        file.sync_data().map_err(io)?;
        Ok(Mp4Writer {
            path: path.to_path_buf(),
            file,
            timescale: track.timescale.max(1),
            mehd_at: mehd_at as u64,
            moov_at: moov_at as u64,
            moov_size,
            sequence: 0,
            pending: Vec::new(),
            last_duration: 0,
            written_end: 0,
            first_time: None,
            bytes: header.len() as u64,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Bytes written so far.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Adds a sample. Times must grow; one that does not is moved one tick
    /// past its predecessor, since MP4 has no way to say "same instant".
    pub fn push(&mut self, mut sample: Sample) -> Result<(), Mp4Error> {
        self.first_time.get_or_insert(sample.time);
        if let Some(prev) = self.pending.last() {
            sample.time = sample.time.max(prev.time + 1);
        } else if self.sequence > 0 {
            sample.time = sample.time.max(self.written_end);
        }
        let span = self
            .pending
            .first()
            .map(|f| sample.time - f.time)
            .unwrap_or(0);
        let close = !self.pending.is_empty()
            && (sample.keyframe || span >= FRAGMENT_SECONDS * u64::from(self.timescale));
        if close {
            let samples = std::mem::take(&mut self.pending);
            self.write_fragment(samples, sample.time)?;
        }
        self.pending.push(sample);
        Ok(())
    }

    /// Writes every waiting sample but the newest (whose duration is not
    /// known yet). For a camera gone quiet: what it sent is on disk.
    pub fn flush_known(&mut self) -> Result<(), Mp4Error> {
        if self.pending.len() < 2 {
            return Ok(());
        }
        let newest = self.pending.pop();
        let samples = std::mem::take(&mut self.pending);
        let end = newest.as_ref().map(|s| s.time).unwrap_or(0);
        self.write_fragment(samples, end)?;
        self.pending.extend(newest);
        Ok(())
    }

    /// Writes the rest and the clip's length. Returns the clip's duration in
    /// track ticks.
    pub fn finish(self) -> Result<u64, Mp4Error> {
        self.finish_marked(&[])
    }

    /// [`Mp4Writer::finish`], with chapter marks. Marks that do not fit the
    /// room kept for them are left out (the sidecar has them all).
    pub fn finish_marked(mut self, marks: &[Mark]) -> Result<u64, Mp4Error> {
        if let Some(last) = self.pending.last() {
            let end = last.time + u64::from(self.last_duration.max(1));
            let samples = std::mem::take(&mut self.pending);
            self.write_fragment(samples, end)?;
        }
        let duration = self
            .written_end
            .saturating_sub(self.first_time.unwrap_or(0));
        let movie = duration * u64::from(MOVIE_TIMESCALE) / u64::from(self.timescale);
        let path = self.path.clone();
        let io = |source| Mp4Error::Io { path, source };
        self.file.seek(SeekFrom::Start(self.mehd_at)).map_err(io)?;
        self.file
            .write_all(&u64::to_be_bytes(movie))
            .map_err(|source| Mp4Error::Io {
                path: self.path.clone(),
                source,
            })?;
        self.write_marks(marks).map_err(|source| Mp4Error::Io {
            path: self.path.clone(),
            source,
        })?;
        self.file.sync_all().map_err(|source| Mp4Error::Io {
            path: self.path.clone(),
            source,
        })?;
        Ok(duration)
    }

    /// Puts `marks` into the room after `moov`: `moov` grows by a `udta`
    /// box, a smaller `free` box keeps the rest, and nothing after them
    /// moves. A crash in between leaves a `moov` one size or the other,
    /// both whole.
    fn write_marks(&mut self, marks: &[Mark]) -> std::io::Result<()> {
        let Some(udta) = chapters(marks) else {
            return Ok(());
        };
        let room_at = self.moov_at + u64::from(self.moov_size);
        let mut tail = udta.clone();
        boxed(&mut tail, b"free", |b| {
            b.resize(b.len() + CHAPTER_ROOM - udta.len() - 8, 0);
        });
        self.file.seek(SeekFrom::Start(room_at))?;
        self.file.write_all(&tail)?;
        let grown = self.moov_size + u32::try_from(udta.len()).unwrap_or(0);
        self.file.seek(SeekFrom::Start(self.moov_at))?;
        self.file.write_all(&grown.to_be_bytes())
    }

    /// One `moof` + `mdat` for `samples`; the last one lasts until `end`.
    fn write_fragment(&mut self, samples: Vec<Sample>, end: u64) -> Result<(), Mp4Error> {
        let Some(first) = samples.first() else {
            return Ok(());
        };
        let base = first.time - self.first_time.unwrap_or(first.time);
        self.sequence += 1;
        let durations: Vec<u32> = samples
            .iter()
            .enumerate()
            .map(|(i, s)| {
                let next = samples.get(i + 1).map(|n| n.time).unwrap_or(end);
                u32::try_from(next.saturating_sub(s.time).max(1)).unwrap_or(u32::MAX)
            })
            .collect();
        let fragment = fragment(self.sequence, base, &samples, &durations);
        let io = |source| Mp4Error::Io {
            path: self.path.clone(),
            source,
        };
        self.file.write_all(&fragment).map_err(io)?;
        // What was written must survive a crash or power cut from here on.
        self.file.sync_data().map_err(io)?;
        self.bytes += fragment.len() as u64;
        self.last_duration = durations.last().copied().unwrap_or(self.last_duration);
        self.written_end =
            samples.last().map(|s| s.time).unwrap_or(end) + u64::from(self.last_duration);
        Ok(())
    }
}

/// The length in seconds of the video in a clip this module wrote, read
/// from its fragments (for a clip cut short, which has no `mehd`): the
/// track's timescale from `mdhd` and every sample duration of every whole
/// fragment. `None` for a file not laid out that way.
pub fn written_seconds(path: &Path) -> Option<f64> {
    use std::io::Read;
    let mut file = File::open(path).ok()?;
    let len = file.metadata().ok()?.len();
    let mut at = 0u64;
    let mut timescale = 0u32;
    let mut ticks = 0u64;
    while at + 8 <= len {
        let mut head = [0u8; 8];
        file.seek(SeekFrom::Start(at)).ok()?;
        file.read_exact(&mut head).ok()?;
        let size = u64::from(u32::from_be_bytes(head[..4].try_into().ok()?));
        if size < 8 || at + size > len {
            break; // a fragment cut off by the crash
        }
        let kind = &head[4..8];
        if kind == b"moov" || kind == b"moof" {
            // Both are small: headers and sample tables, never video.
            let mut body = vec![0u8; usize::try_from(size - 8).ok()?.min(16 << 20)];
            file.read_exact(&mut body).ok()?;
            if kind == b"moov" {
                let i = body.windows(4).position(|w| w == b"mdhd")?;
                // type, version+flags, creation, modification, timescale
                timescale = u32::from_be_bytes(body.get(i + 16..i + 20)?.try_into().ok()?);
            } else {
                let i = body.windows(4).position(|w| w == b"trun")?;
                let count = u32::from_be_bytes(body.get(i + 8..i + 12)?.try_into().ok()?);
                // After count and data offset: duration, size, flags each.
                for n in 0..count as usize {
                    let d = i + 16 + n * 12;
                    ticks += u64::from(u32::from_be_bytes(body.get(d..d + 4)?.try_into().ok()?));
                }
            }
        }
        at += size;
    }
    (timescale > 0).then(|| ticks as f64 / f64::from(timescale))
}

/// Appends a box: a size placeholder, the type, whatever `body` writes,
/// then the size filled in.
fn boxed(out: &mut Vec<u8>, kind: &[u8; 4], body: impl FnOnce(&mut Vec<u8>)) {
    let start = out.len();
    out.extend_from_slice(&[0; 4]);
    out.extend_from_slice(kind);
    body(out);
    let size = u32::try_from(out.len() - start).unwrap_or(u32::MAX);
    out[start..start + 4].copy_from_slice(&size.to_be_bytes());
}

/// A "full box": a box whose body starts with a version and 24 bits of flags.
fn full_boxed(
    out: &mut Vec<u8>,
    kind: &[u8; 4],
    version: u8,
    flags: u32,
    body: impl FnOnce(&mut Vec<u8>),
) {
    boxed(out, kind, |b| {
        b.extend_from_slice(&((u32::from(version) << 24) | (flags & 0x00ff_ffff)).to_be_bytes());
        body(b);
    });
}

fn u16s(out: &mut Vec<u8>, v: u16) {
    out.extend_from_slice(&v.to_be_bytes());
}
fn u32s(out: &mut Vec<u8>, v: u32) {
    out.extend_from_slice(&v.to_be_bytes());
}
fn u64s(out: &mut Vec<u8>, v: u64) {
    out.extend_from_slice(&v.to_be_bytes());
}

/// The unity transformation matrix of `mvhd` and `tkhd` (16.16 and 2.30
/// fixed point).
fn matrix(out: &mut Vec<u8>) {
    for v in [0x0001_0000u32, 0, 0, 0, 0x0001_0000, 0, 0, 0, 0x4000_0000] {
        u32s(out, v);
    }
}

/// The `udta` box holding `marks` as Nero chapters (`chpl` version 1: a
/// reserved word, a count, then each start in 100 ns units and its title as
/// a length-prefixed string), cut to what fits [`CHAPTER_ROOM`] with a
/// `free` box after it; `None` without marks.
fn chapters(marks: &[Mark]) -> Option<Vec<u8>> {
    // udta + chpl headers, version and flags, reserved word, count.
    const FIXED: usize = 8 + 8 + 4 + 4 + 1;
    let mut kept: Vec<(u64, &str)> = Vec::new();
    let mut size = FIXED;
    for m in marks.iter().take(255) {
        let title = cut_at_char(&m.title, 255);
        let need = 8 + 1 + title.len();
        if size + need > CHAPTER_ROOM - 8 {
            break;
        }
        size += need;
        kept.push(((m.at_s.max(0.0) * 10_000_000.0) as u64, title));
    }
    if kept.is_empty() {
        return None;
    }
    let mut out = Vec::with_capacity(size);
    boxed(&mut out, b"udta", |b| {
        full_boxed(b, b"chpl", 1, 0, |b| {
            u32s(b, 0);
            b.push(u8::try_from(kept.len()).unwrap_or(u8::MAX));
            for (start, title) in &kept {
                u64s(b, *start);
                b.push(u8::try_from(title.len()).unwrap_or(u8::MAX));
                b.extend_from_slice(title.as_bytes());
            }
        });
    });
    Some(out)
}

/// `text` cut to at most `max` bytes, at a character boundary.
fn cut_at_char(text: &str, max: usize) -> &str {
    let mut end = text.len().min(max);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// The file header and where its parts sit.
struct Header {
    bytes: Vec<u8>,
    /// Where `mehd`'s 64-bit duration sits.
    mehd_at: usize,
    moov_at: usize,
    moov_size: u32,
}

/// `ftyp` + `moov` + the room for chapter marks.
fn header(track: &TrackParams) -> Header {
    let mut out = Vec::with_capacity(1024);
    boxed(&mut out, b"ftyp", |b| {
        b.extend_from_slice(b"isom");
        u32s(b, 0x200);
        for brand in [b"isom", b"iso6", b"mp41"] {
            b.extend_from_slice(brand);
        }
        b.extend_from_slice(match track.codec {
            VideoCodec::H264 => b"avc1",
            VideoCodec::H265 => b"hvc1",
        });
    });
    let mut mehd_at = 0;
    let moov_at = out.len();
    boxed(&mut out, b"moov", |b| {
        full_boxed(b, b"mvhd", 0, 0, |b| {
            u32s(b, 0); // creation time: the sidecar has the real one
            u32s(b, 0); // modification time
            u32s(b, MOVIE_TIMESCALE);
            u32s(b, 0); // duration: in mehd, fragments follow
            u32s(b, 0x0001_0000); // rate 1.0
            u16s(b, 0x0100); // volume 1.0
            b.extend_from_slice(&[0; 10]);
            matrix(b);
            b.extend_from_slice(&[0; 24]);
            u32s(b, TRACK_ID + 1); // next track id
        });
        boxed(b, b"trak", |b| {
            // Flags: enabled, in movie, in preview.
            full_boxed(b, b"tkhd", 0, 0x7, |b| {
                u32s(b, 0);
                u32s(b, 0);
                u32s(b, TRACK_ID);
                u32s(b, 0);
                u32s(b, 0); // duration
                b.extend_from_slice(&[0; 8]);
                u16s(b, 0); // layer
                u16s(b, 0); // alternate group
                u16s(b, 0); // volume: video has none
                u16s(b, 0);
                matrix(b);
                u32s(b, u32::from(track.width) << 16);
                u32s(b, u32::from(track.height) << 16);
            });
            boxed(b, b"mdia", |b| {
                full_boxed(b, b"mdhd", 0, 0, |b| {
                    u32s(b, 0);
                    u32s(b, 0);
                    u32s(b, track.timescale.max(1));
                    u32s(b, 0);
                    u16s(b, 0x55c4); // language "und", packed ISO-639-2
                    u16s(b, 0);
                });
                full_boxed(b, b"hdlr", 0, 0, |b| {
                    u32s(b, 0);
                    b.extend_from_slice(b"vide");
                    b.extend_from_slice(&[0; 12]);
                    b.extend_from_slice(b"doorwarden evidence\0");
                });
                boxed(b, b"minf", |b| {
                    full_boxed(b, b"vmhd", 0, 1, |b| b.extend_from_slice(&[0; 8]));
                    boxed(b, b"dinf", |b| {
                        full_boxed(b, b"dref", 0, 0, |b| {
                            u32s(b, 1);
                            // Flag 1: the media is in this same file.
                            full_boxed(b, b"url ", 0, 1, |_| {});
                        });
                    });
                    boxed(b, b"stbl", |b| {
                        full_boxed(b, b"stsd", 0, 0, |b| {
                            u32s(b, 1);
                            sample_entry(b, track);
                        });
                        // The sample tables stay empty: every sample is
                        // described by its fragment.
                        full_boxed(b, b"stts", 0, 0, |b| u32s(b, 0));
                        full_boxed(b, b"stsc", 0, 0, |b| u32s(b, 0));
                        full_boxed(b, b"stsz", 0, 0, |b| {
                            u32s(b, 0);
                            u32s(b, 0);
                        });
                        full_boxed(b, b"stco", 0, 0, |b| u32s(b, 0));
                    });
                });
            });
        });
        boxed(b, b"mvex", |b| {
            full_boxed(b, b"mehd", 1, 0, |b| {
                mehd_at = b.len();
                u64s(b, 0);
            });
            full_boxed(b, b"trex", 0, 0, |b| {
                u32s(b, TRACK_ID);
                u32s(b, 1); // sample description index
                u32s(b, 0); // default duration, size, flags: each trun says
                u32s(b, 0);
                u32s(b, 0);
            });
        });
    });
    let moov_size = u32::try_from(out.len() - moov_at).unwrap_or(u32::MAX);
    boxed(&mut out, b"free", |b| {
        b.resize(b.len() + CHAPTER_ROOM - 8, 0)
    });
    Header {
        bytes: out,
        mehd_at,
        moov_at,
        moov_size,
    }
}

/// The `avc1` / `hvc1` visual sample entry with the stream's decoder
/// configuration record.
fn sample_entry(b: &mut Vec<u8>, track: &TrackParams) {
    let (kind, config) = match track.codec {
        VideoCodec::H264 => (b"avc1", b"avcC"),
        VideoCodec::H265 => (b"hvc1", b"hvcC"),
    };
    boxed(b, kind, |b| {
        b.extend_from_slice(&[0; 6]);
        u16s(b, 1); // data reference index
        b.extend_from_slice(&[0; 16]);
        u16s(b, track.width);
        u16s(b, track.height);
        u32s(b, 0x0048_0000); // 72 dpi
        u32s(b, 0x0048_0000);
        u32s(b, 0);
        u16s(b, 1); // frames per sample
        b.extend_from_slice(&[0; 32]); // compressor name
        u16s(b, 0x0018); // depth
        u16s(b, 0xffff);
        boxed(b, config, |b| b.extend_from_slice(&track.config));
    });
}

/// Sample flags (ISO/IEC 14496-12 8.8.3.1): a keyframe depends on nothing;
/// anything else depends on others and is no sync sample.
const KEY_FLAGS: u32 = 0x0200_0000;
const DELTA_FLAGS: u32 = 0x0101_0000;

/// One `moof` + `mdat`. `base` is the first sample's decode time.
fn fragment(sequence: u32, base: u64, samples: &[Sample], durations: &[u32]) -> Vec<u8> {
    let payload: usize = samples.iter().map(|s| s.data.len()).sum();
    let mut out = Vec::with_capacity(payload + 64 + samples.len() * 12);
    let mut data_offset_at = 0;
    boxed(&mut out, b"moof", |b| {
        full_boxed(b, b"mfhd", 0, 0, |b| u32s(b, sequence));
        boxed(b, b"traf", |b| {
            // 0x020000: offsets count from this moof's first byte.
            full_boxed(b, b"tfhd", 0, 0x02_0000, |b| u32s(b, TRACK_ID));
            full_boxed(b, b"tfdt", 1, 0, |b| u64s(b, base));
            // data offset, sample duration, size and flags present.
            full_boxed(b, b"trun", 0, 0x000_701, |b| {
                u32s(b, u32::try_from(samples.len()).unwrap_or(u32::MAX));
                data_offset_at = b.len();
                u32s(b, 0);
                for (s, d) in samples.iter().zip(durations) {
                    u32s(b, *d);
                    u32s(b, u32::try_from(s.data.len()).unwrap_or(u32::MAX));
                    u32s(b, if s.keyframe { KEY_FLAGS } else { DELTA_FLAGS });
                }
            });
        });
    });
    // The samples start right after the mdat header that follows the moof.
    let offset = u32::try_from(out.len() + 8).unwrap_or(u32::MAX);
    out[data_offset_at..data_offset_at + 4].copy_from_slice(&offset.to_be_bytes());
    let mdat_size = u32::try_from(payload + 8).unwrap_or(u32::MAX);
    u32s(&mut out, mdat_size);
    out.extend_from_slice(b"mdat");
    for s in samples {
        out.extend_from_slice(&s.data);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Top-level boxes of a file: (type, offset, size).
    fn boxes(bytes: &[u8]) -> Vec<(String, usize, usize)> {
        let mut out = Vec::new();
        let mut at = 0;
        while at + 8 <= bytes.len() {
            let size = u32::from_be_bytes(bytes[at..at + 4].try_into().expect("4 bytes")) as usize;
            let kind = String::from_utf8_lossy(&bytes[at + 4..at + 8]).into_owned();
            assert!(
                size >= 8 && at + size <= bytes.len(),
                "{kind} at {at} runs past the end"
            );
            out.push((kind, at, size));
            at += size;
        }
        assert_eq!(at, bytes.len(), "trailing bytes");
        out
    }

    fn find(bytes: &[u8], kind: &[u8; 4]) -> usize {
        bytes
            .windows(4)
            .position(|w| w == kind)
            .expect("box present")
    }

    fn u32_at(bytes: &[u8], at: usize) -> u32 {
        u32::from_be_bytes(bytes[at..at + 4].try_into().expect("4 bytes"))
    }

    #[test]
    fn a_fragment_per_keyframe_or_second_each_sample_lasting_until_the_next() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("clip.mp4");
        let track = TrackParams {
            codec: VideoCodec::H264,
            width: 640,
            height: 360,
            config: vec![1, 0x64, 0, 0x1f, 0xff, 0xe0, 0],
            timescale: 90_000,
        };
        let mut w = Mp4Writer::create(&path, &track).expect("create");
        // 15 fps from tick 1000: a keyframe at 0 and 15; then 30 frames
        // without one (a fragment closes after a second anyway).
        for i in 0..45u64 {
            let sample = Sample {
                time: 1000 + i * 6000,
                keyframe: i == 0 || i == 15,
                data: std::sync::Arc::from(vec![0u8, 0, 0, 1, i as u8].as_slice()),
            };
            w.push(sample).expect("push");
        }
        let ticks = w.finish().expect("finish");
        assert_eq!(
            ticks,
            45 * 6000,
            "the last sample lasts as long as the one before"
        );

        let bytes = std::fs::read(&path).expect("read");
        let kinds: Vec<String> = boxes(&bytes).into_iter().map(|b| b.0).collect();
        assert_eq!(
            kinds,
            [
                "ftyp", "moov", "free", "moof", "mdat", "moof", "mdat", "moof", "mdat"
            ]
        );
        let moov = &bytes[..boxes(&bytes)[2].1];
        assert!(
            !moov.windows(4).any(|w| w == b"udta"),
            "no chapters without marks"
        );
        let hvcc_or_avcc = find(moov, b"avcC");
        assert_eq!(
            &moov[hvcc_or_avcc + 4..hvcc_or_avcc + 11],
            track.config.as_slice()
        );
        // mehd holds the length in milliseconds: 3 s.
        let mehd = find(moov, b"mehd");
        assert_eq!(&moov[mehd + 8..mehd + 16], &3000u64.to_be_bytes());
        // The third fragment starts a second after the second one.
        let frags: Vec<(String, usize, usize)> = boxes(&bytes)
            .into_iter()
            .filter(|b| b.0 == "moof")
            .collect();
        let third = &bytes[frags[2].1..frags[2].1 + frags[2].2];
        let tfdt = find(third, b"tfdt");
        assert_eq!(&third[tfdt + 8..tfdt + 16], &(30u64 * 6000).to_be_bytes());
        let trun = find(third, b"trun");
        assert_eq!(u32_at(third, trun + 8), 15, "15 samples");
        // The data offset points just past the mdat header.
        assert_eq!(u32_at(third, trun + 12) as usize, frags[2].2 + 8);
        assert_eq!(u32_at(third, trun + 16), 6000, "first sample's duration");
        assert_eq!(u32_at(third, trun + 24), DELTA_FLAGS, "not a keyframe");
    }

    #[test]
    fn a_clip_cut_short_keeps_every_whole_fragment() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("clip.mp4");
        let track = TrackParams {
            codec: VideoCodec::H265,
            width: 640,
            height: 360,
            config: vec![1; 23],
            timescale: 90_000,
        };
        let mut w = Mp4Writer::create(&path, &track).expect("create");
        for i in 0..20u64 {
            let sample = Sample {
                time: i * 6000,
                keyframe: i % 10 == 0,
                data: std::sync::Arc::from(vec![0u8, 0, 0, 1, 0x26].as_slice()),
            };
            w.push(sample).expect("push");
        }
        // A crash: no finish. The first group of pictures is on disk whole.
        drop(w);
        assert_eq!(written_seconds(&path), Some(10.0 * 6000.0 / 90_000.0));
        let bytes = std::fs::read(&path).expect("read");
        let kinds: Vec<String> = boxes(&bytes).into_iter().map(|b| b.0).collect();
        assert_eq!(kinds, ["ftyp", "moov", "free", "moof", "mdat"]);
        assert!(find(&bytes, b"hvc1") > 0 && find(&bytes, b"hvcC") > 0);
    }

    #[test]
    fn chapter_marks_grow_moov_into_its_room_and_move_nothing_else() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("clip.mp4");
        let track = TrackParams {
            codec: VideoCodec::H264,
            width: 320,
            height: 180,
            config: vec![1, 0x64, 0, 0x1f, 0xff, 0xe0, 0],
            timescale: 90_000,
        };
        let mut w = Mp4Writer::create(&path, &track).expect("create");
        for i in 0..30u64 {
            let sample = Sample {
                time: i * 6000,
                keyframe: i % 15 == 0,
                data: std::sync::Arc::from(vec![0u8, 0, 0, 1, 0x65].as_slice()),
            };
            w.push(sample).expect("push");
        }
        let before = std::fs::read(&path).expect("read");
        let marks = [
            Mark {
                at_s: 0.0,
                title: "camera live".into(),
            },
            Mark {
                at_s: 1.2,
                title: "camera frozen: 7 identical frames".into(),
            },
        ];
        w.finish_marked(&marks).expect("finish");
        let bytes = std::fs::read(&path).expect("read");
        let layout = boxes(&bytes);
        let kinds: Vec<&str> = layout.iter().map(|b| b.0.as_str()).collect();
        assert_eq!(
            kinds,
            ["ftyp", "moov", "free", "moof", "mdat", "moof", "mdat"]
        );
        // The fragments did not move: the marks took the room.
        let first_moof = layout[3].1;
        assert_eq!(
            &bytes[first_moof..first_moof + 16],
            &before[first_moof..first_moof + 16]
        );
        assert_eq!(layout[1].2 + layout[2].2, first_moof - layout[1].1);
        let moov = &bytes[layout[1].1..layout[1].1 + layout[1].2];
        let chpl = find(moov, b"chpl");
        assert_eq!(moov[chpl + 4], 1, "version 1");
        assert_eq!(moov[chpl + 12], 2, "two marks");
        let second = chpl + 13 + 8 + 1 + "camera live".len();
        assert_eq!(&moov[second..second + 8], &12_000_000u64.to_be_bytes());
        assert_eq!(
            &moov[second + 9..second + 9 + 33],
            b"camera frozen: 7 identical frames"
        );
    }

    #[test]
    fn marks_that_do_not_fit_are_left_out_and_titles_are_cut_at_a_character() {
        let many: Vec<Mark> = (0..400)
            .map(|i| Mark {
                at_s: f64::from(i),
                title: format!("gap {i}: frames dropped while the recorder fell behind"),
            })
            .collect();
        let udta = chapters(&many).expect("some fit");
        assert!(udta.len() <= CHAPTER_ROOM - 8);
        let count = udta[8 + 8 + 4 + 4];
        assert!(count > 10 && usize::from(count) < 400, "{count}");
        let long = "é".repeat(200);
        assert_eq!(cut_at_char(&long, 255).len(), 254);
        assert!(chapters(&[]).is_none());
    }
}
