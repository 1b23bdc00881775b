//! The bundled H.264 clips, cut into access units (one per frame).
//!
//! The clips are raw Annex B byte streams made by `scripts/make-clips.sh`:
//! one slice per frame, SPS and PPS before every IDR, no B-frames, so the
//! decode order is the presentation order and a frame can be sent as soon as
//! it is read.

use std::sync::OnceLock;

static MOVING_BYTES: &[u8] = include_bytes!("../../../../assets/clips/moving.h264");
static STILL_BYTES: &[u8] = include_bytes!("../../../../assets/clips/still.h264");

/// One coded frame: its NAL units, without start codes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Frame {
    pub(crate) nals: Vec<Vec<u8>>,
    /// Holds an IDR slice: a decoder can start here.
    pub(crate) is_idr: bool,
}

impl Frame {
    #[cfg(test)]
    pub(crate) fn size(&self) -> usize {
        self.nals.iter().map(Vec::len).sum()
    }
}

/// A parsed clip: its frames in order, and the parameter sets the SDP
/// advertises.
#[derive(Debug)]
pub(crate) struct Clip {
    pub(crate) frames: Vec<Frame>,
    pub(crate) sps: Vec<u8>,
    pub(crate) pps: Vec<u8>,
}

const NAL_SLICE: u8 = 1;
const NAL_IDR: u8 = 5;
const NAL_SEI: u8 = 6;
const NAL_SPS: u8 = 7;
const NAL_PPS: u8 = 8;
const NAL_AUD: u8 = 9;

impl Clip {
    /// The moving test pattern, parsed once.
    pub(crate) fn moving() -> Result<&'static Clip, String> {
        static CLIP: OnceLock<Result<Clip, String>> = OnceLock::new();
        CLIP.get_or_init(|| Clip::parse(MOVING_BYTES).map_err(|e| format!("moving.h264: {e}")))
            .as_ref()
            .map_err(Clone::clone)
    }

    /// The unchanging picture, parsed once.
    pub(crate) fn still() -> Result<&'static Clip, String> {
        static CLIP: OnceLock<Result<Clip, String>> = OnceLock::new();
        CLIP.get_or_init(|| Clip::parse(STILL_BYTES).map_err(|e| format!("still.h264: {e}")))
            .as_ref()
            .map_err(Clone::clone)
    }

    /// Cuts an Annex B stream into frames. Fails on a stream that has no
    /// frame, no SPS/PPS, or does not open with an IDR: looping such a clip
    /// would hand clients undecodable video.
    pub(crate) fn parse(annex_b: &[u8]) -> Result<Clip, String> {
        let frames = split_frames(annex_b);
        let all: Vec<Vec<u8>> = frames.iter().flat_map(|f| f.nals.clone()).collect();
        let params = ParameterSets::find(&all).ok_or("no SPS and PPS, or an SPS too short")?;
        match frames.first() {
            None => return Err("no frames".to_owned()),
            Some(f) if !f.is_idr => return Err("does not start with an IDR".to_owned()),
            Some(_) => {}
        }
        Ok(Clip {
            frames,
            sps: params.sps,
            pps: params.pps,
        })
    }

    pub(crate) fn params(&self) -> ParameterSets {
        ParameterSets {
            sps: self.sps.clone(),
            pps: self.pps.clone(),
        }
    }

    /// `profile-level-id` for the SDP.
    #[cfg(test)]
    pub(crate) fn profile_level_id(&self) -> String {
        self.params().profile_level_id()
    }

    /// `sprop-parameter-sets` for the SDP.
    #[cfg(test)]
    pub(crate) fn sprop_parameter_sets(&self) -> String {
        self.params().sprop_parameter_sets()
    }
}

/// The SPS and PPS a stream's SDP announces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ParameterSets {
    pub(crate) sps: Vec<u8>,
    pub(crate) pps: Vec<u8>,
}

impl ParameterSets {
    /// The first SPS and PPS among `nals`; `None` if either is missing or
    /// the SPS is too short to name a profile and level.
    pub(crate) fn find(nals: &[Vec<u8>]) -> Option<ParameterSets> {
        let of = |kind: u8| {
            nals.iter()
                .find(|n| n.first().is_some_and(|h| h & 0x1f == kind))
                .cloned()
        };
        let sps = of(NAL_SPS)?;
        let pps = of(NAL_PPS)?;
        (sps.len() >= 4).then_some(ParameterSets { sps, pps })
    }

    /// `profile-level-id` for the SDP: profile, constraint flags, level.
    pub(crate) fn profile_level_id(&self) -> String {
        // find() checked the SPS has at least 4 bytes.
        format!("{:02X}{:02X}{:02X}", self.sps[1], self.sps[2], self.sps[3])
    }

    /// `sprop-parameter-sets` for the SDP: base64 SPS and PPS.
    pub(crate) fn sprop_parameter_sets(&self) -> String {
        format!(
            "{},{}",
            super::rtsp::base64(&self.sps),
            super::rtsp::base64(&self.pps)
        )
    }
}

/// Cuts an Annex B stream into frames (access units): a new frame starts
/// at a parameter set, SEI or delimiter after a slice, or at a slice whose
/// first macroblock is 0.
pub(crate) fn split_frames(annex_b: &[u8]) -> Vec<Frame> {
    let mut frames: Vec<Frame> = Vec::new();
    let mut current = Frame {
        nals: Vec::new(),
        is_idr: false,
    };
    let mut current_has_slice = false;
    for nal in split_annex_b(annex_b) {
        let Some(&header) = nal.first() else {
            continue;
        };
        let kind = header & 0x1f;
        let is_slice = kind == NAL_SLICE || kind == NAL_IDR;
        // A new frame starts at a non-VCL NAL that may only come before a
        // frame's slices, or at a slice whose first macroblock is 0 (the
        // first bit of its ue(v) first_mb_in_slice is 1).
        let starts_frame = if is_slice {
            nal.get(1).is_some_and(|b| b & 0x80 != 0)
        } else {
            matches!(kind, NAL_AUD | NAL_SPS | NAL_PPS | NAL_SEI)
        };
        if starts_frame && current_has_slice {
            frames.push(std::mem::replace(
                &mut current,
                Frame {
                    nals: Vec::new(),
                    is_idr: false,
                },
            ));
            current_has_slice = false;
        }
        current.is_idr |= kind == NAL_IDR;
        current_has_slice |= is_slice;
        current.nals.push(nal.to_vec());
    }
    if current_has_slice {
        frames.push(current);
    }
    frames
}

/// Splits an Annex B byte stream at its 3- and 4-byte start codes.
fn split_annex_b(data: &[u8]) -> Vec<&[u8]> {
    let mut starts = Vec::new();
    let mut i = 0;
    while i + 3 <= data.len() {
        if data[i] == 0 && data[i + 1] == 0 && data[i + 2] == 1 {
            starts.push(i + 3);
            i += 3;
        } else {
            i += 1;
        }
    }
    let mut nals = Vec::with_capacity(starts.len());
    for (n, &start) in starts.iter().enumerate() {
        let mut end = starts.get(n + 1).map_or(data.len(), |&next| next - 3);
        // A 4-byte start code leaves its leading zero on the previous NAL;
        // trailing zeros are never part of a NAL (they are trailing_zero_8bits).
        while end > start && data[end - 1] == 0 {
            end -= 1;
        }
        nals.push(&data[start..end]);
    }
    nals
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_three_and_four_byte_start_codes() {
        let data = [
            0, 0, 0, 1, 0x67, 1, 2, 0, 0, 1, 0x68, 3, 0, 0, 0, 1, 0x65, 0x88,
        ];
        let nals = split_annex_b(&data);
        assert_eq!(
            nals,
            vec![&[0x67, 1, 2][..], &[0x68, 3][..], &[0x65, 0x88][..]]
        );
    }

    #[test]
    fn groups_parameter_sets_with_the_following_idr() {
        let data = [
            0, 0, 0, 1, 0x67, 0x42, 0xc0, 0x1e, // SPS
            0, 0, 0, 1, 0x68, 0xce, // PPS
            0, 0, 0, 1, 0x65, 0x88, 0x01, // IDR, first_mb 0
            0, 0, 0, 1, 0x41, 0x9a, 0x02, // P, first_mb 0
            0, 0, 0, 1, 0x41, 0x9a, 0x03, // P, first_mb 0
        ];
        let clip = Clip::parse(&data).unwrap();
        assert_eq!(clip.frames.len(), 3);
        assert_eq!(clip.frames[0].nals.len(), 3);
        assert!(clip.frames[0].is_idr);
        assert!(!clip.frames[1].is_idr);
        assert_eq!(clip.profile_level_id(), "42C01E");
        assert_eq!(clip.sprop_parameter_sets(), "Z0LAHg==,aM4=");
    }

    #[test]
    fn a_second_slice_of_the_same_frame_stays_in_it() {
        let data = [
            0, 0, 1, 0x67, 0x42, 0xc0, 0x1e, 0, 0, 1, 0x68, 0xce, // SPS, PPS
            0, 0, 1, 0x65, 0x88, // IDR slice, first_mb 0
            0, 0, 1, 0x65, 0x40, // IDR slice, first_mb != 0
        ];
        let clip = Clip::parse(&data).unwrap();
        assert_eq!(clip.frames.len(), 1);
        assert_eq!(clip.frames[0].nals.len(), 4);
    }

    #[test]
    fn rejects_clips_that_cannot_be_looped() {
        assert!(Clip::parse(&[]).is_err());
        assert!(Clip::parse(&[0, 0, 1, 0x41, 0x9a]).is_err());
        assert!(Clip::parse(&[0xff; 64]).is_err());
    }

    #[test]
    fn bundled_clips_are_one_second_gops_at_the_same_size() {
        let moving = Clip::moving().unwrap();
        let still = Clip::still().unwrap();
        for clip in [moving, still] {
            assert_eq!(clip.frames.len(), 60);
            let idrs: Vec<usize> = (0..clip.frames.len())
                .filter(|&i| clip.frames[i].is_idr)
                .collect();
            assert_eq!(idrs, vec![0, 15, 30, 45]);
        }
        // One SDP serves both clips, so they must share parameter sets.
        assert_eq!(moving.sps, still.sps);
        assert_eq!(moving.pps, still.pps);
        // The still clip's P-frames are near-empty; the moving one's are not.
        assert!(still.frames[20].size() < 100);
        assert!(moving.frames[20].size() > 500);
    }
}
