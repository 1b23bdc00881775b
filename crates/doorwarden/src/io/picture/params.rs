//! The stream's parameter sets (H.264 SPS/PPS, H.265 VPS/SPS/PPS) as a
//! decoder wants them in front of a keyframe.
//!
//! Owns: turning retina's copy of the parameters (from the SDP's
//! `sprop-parameter-sets`, refreshed from the stream) into Annex B once per
//! change, and telling whether a keyframe already carries its own.
//!
//! Why the sampler needs this: every keyframe decoded outside a close look
//! goes to a fresh decoder (OpenH264) or ffmpeg child, which knows only the
//! bytes it is handed. retina strips in-band parameter sets from every frame
//! and puts its copy back only in front of the frames it counts as random
//! access points: H.264 IDR and H.265 IDR pictures. An H.265 camera with
//! open GOPs sends CRA keyframes after its first IDR, so a session that
//! joins it mid-stream would never see a parameter set and never decode.

use retina::codec::{VideoParameters, VideoParametersCodec};

use super::PictureCodec;

/// More than any real stream's parameter sets (an SPS with scaling lists is
/// a few hundred bytes); larger ones are not trusted.
pub const MAX_BYTES: usize = 16 * 1024;

/// The parameter sets of `params` in Annex B, in decoding order. `None`
/// for another codec, an empty set, or sets over [`MAX_BYTES`].
pub fn from_retina(params: &VideoParameters) -> Option<Vec<u8>> {
    match params.codec_params() {
        VideoParametersCodec::H264 { sps, pps } => annex_b(&[sps, pps]),
        VideoParametersCodec::H265 { vps, sps, pps } => annex_b(&[vps, sps, pps]),
        _ => None,
    }
}

/// `nals` in Annex B framing (each after a 4-byte start code). `None` if
/// one is empty or together they exceed [`MAX_BYTES`].
pub fn annex_b(nals: &[&[u8]]) -> Option<Vec<u8>> {
    let len: usize = nals.iter().map(|n| n.len() + 4).sum();
    if len > MAX_BYTES || nals.iter().any(|n| n.is_empty()) {
        return None;
    }
    let mut out = Vec::with_capacity(len);
    for nal in nals {
        out.extend_from_slice(&[0, 0, 0, 1]);
        out.extend_from_slice(nal);
    }
    Some(out)
}

/// Whether a frame in retina's framing (each NAL unit after its length as
/// 4 big-endian bytes) carries a sequence parameter set, which retina puts
/// there with the rest of the sets. A malformed frame carries none.
pub fn has_sps(data: &[u8], codec: PictureCodec) -> bool {
    let mut rest = data;
    while let Some((len, tail)) = rest.split_first_chunk::<4>() {
        let len = u32::from_be_bytes(*len) as usize;
        let Some(nal) = tail.get(..len) else {
            return false;
        };
        let sps = nal.first().is_some_and(|&b| match codec {
            PictureCodec::H264 => b & 0x1f == 7,
            PictureCodec::H265 => (b >> 1) & 0x3f == 33,
        });
        if sps {
            return true;
        }
        rest = &tail[len..];
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameter_sets_become_annex_b_in_order() {
        let (vps, sps, pps) = ([0x40, 0x01, 0x0c], [0x42, 0x01, 0x01, 0x01], [0x44, 0x01]);
        assert_eq!(
            annex_b(&[&vps, &sps, &pps]),
            Some(vec![
                0, 0, 0, 1, 0x40, 0x01, 0x0c, 0, 0, 0, 1, 0x42, 0x01, 0x01, 0x01, 0, 0, 0, 1, 0x44,
                0x01
            ])
        );
    }

    #[test]
    fn empty_or_oversized_sets_are_no_parameters() {
        assert_eq!(annex_b(&[&[0x67, 1], &[]]), None);
        let huge = vec![0x67; MAX_BYTES];
        assert_eq!(annex_b(&[&huge, &[0x68]]), None);
        // Just under the bound is kept.
        let big = vec![0x67; MAX_BYTES - 9];
        assert!(annex_b(&[&big, &[0x68]]).is_some());
    }

    #[test]
    fn an_sps_is_found_in_length_prefixed_frames_of_either_codec() {
        // H.264: SPS (7), PPS (8), IDR slice (5).
        let idr = [0, 0, 0, 2, 0x67, 0xAA, 0, 0, 0, 1, 0x68, 0, 0, 0, 1, 0x65];
        assert!(has_sps(&idr, PictureCodec::H264));
        assert!(!has_sps(&idr[6..], PictureCodec::H264));
        // H.265: VPS (32), SPS (33), CRA slice (21).
        let cra = [
            0, 0, 0, 2, 0x40, 0x01, 0, 0, 0, 2, 0x42, 0x01, 0, 0, 0, 2, 0x2A, 0x01,
        ];
        assert!(has_sps(&cra, PictureCodec::H265));
        assert!(!has_sps(&cra[12..], PictureCodec::H265));
        // The H.264 reading of an H.265 SPS header (0x42: type 2) is no SPS.
        assert!(!has_sps(&cra[6..], PictureCodec::H264));
        // A length past the end: nothing trusted, no panic.
        assert!(!has_sps(&[0, 0, 0, 9, 0x67], PictureCodec::H264));
        assert!(!has_sps(&[0, 0], PictureCodec::H264));
        assert!(!has_sps(&[0, 0, 0, 0], PictureCodec::H265));
    }
}
