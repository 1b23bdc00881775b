//! RTP packets for H.264 (RFC 6184, packetization-mode 1) and RTCP sender
//! reports (RFC 3550), framed for RTSP interleaved TCP (RFC 2326 §10.12).

use super::clip::Frame;

/// Largest RTP payload: keeps a packet inside a 1500-byte Ethernet MTU with
/// room for IP/UDP headers, as a real camera would.
pub(crate) const MAX_PAYLOAD: usize = 1400;

const PAYLOAD_TYPE: u8 = 96;
const FU_A: u8 = 28;

/// One RTP stream's sender state: the SSRC and the next sequence number.
#[derive(Debug, Clone)]
pub(crate) struct Packetizer {
    pub(crate) ssrc: u32,
    pub(crate) next_seq: u16,
    /// Totals for RTCP sender reports.
    pub(crate) packets_sent: u32,
    pub(crate) octets_sent: u32,
}

impl Packetizer {
    pub(crate) fn new(ssrc: u32, first_seq: u16) -> Self {
        Packetizer {
            ssrc,
            next_seq: first_seq,
            packets_sent: 0,
            octets_sent: 0,
        }
    }

    /// The RTP packets carrying one frame: a single-NAL packet for each NAL
    /// that fits, FU-A fragments for the others, and the marker bit on the
    /// frame's last packet so the client knows the access unit is complete.
    pub(crate) fn packetize(&mut self, frame: &Frame, timestamp: u32) -> Vec<Vec<u8>> {
        let mut payloads: Vec<Vec<u8>> = Vec::new();
        for nal in &frame.nals {
            let Some((&header, body)) = nal.split_first() else {
                continue;
            };
            if nal.len() <= MAX_PAYLOAD {
                payloads.push(nal.clone());
                continue;
            }
            let indicator = (header & 0xe0) | FU_A;
            let kind = header & 0x1f;
            let chunks: Vec<&[u8]> = body.chunks(MAX_PAYLOAD - 2).collect();
            let last = chunks.len() - 1;
            for (i, chunk) in chunks.into_iter().enumerate() {
                let start = if i == 0 { 0x80 } else { 0 };
                let end = if i == last { 0x40 } else { 0 };
                let mut payload = Vec::with_capacity(chunk.len() + 2);
                payload.push(indicator);
                payload.push(start | end | kind);
                payload.extend_from_slice(chunk);
                payloads.push(payload);
            }
        }
        let last = payloads.len().saturating_sub(1);
        payloads
            .into_iter()
            .enumerate()
            .map(|(i, payload)| self.packet(&payload, timestamp, i == last))
            .collect()
    }

    fn packet(&mut self, payload: &[u8], timestamp: u32, marker: bool) -> Vec<u8> {
        let mut packet = Vec::with_capacity(12 + payload.len());
        packet.push(2 << 6); // version 2, no padding, no extension, no CSRC
        packet.push(if marker { 0x80 } else { 0 } | PAYLOAD_TYPE);
        packet.extend_from_slice(&self.next_seq.to_be_bytes());
        packet.extend_from_slice(&timestamp.to_be_bytes());
        packet.extend_from_slice(&self.ssrc.to_be_bytes());
        packet.extend_from_slice(payload);
        self.next_seq = self.next_seq.wrapping_add(1);
        self.packets_sent = self.packets_sent.wrapping_add(1);
        // usize -> u32: a payload is at most MAX_PAYLOAD + 2 bytes.
        self.octets_sent = self.octets_sent.wrapping_add(payload.len() as u32);
        packet
    }

    /// An RTCP sender report tying `rtp_timestamp` to the wall clock.
    pub(crate) fn sender_report(&self, now: std::time::SystemTime, rtp_timestamp: u32) -> Vec<u8> {
        let since_unix = now
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        // NTP counts from 1900; RFC 868 gives the offset to 1970.
        let ntp_seconds = since_unix.as_secs().wrapping_add(2_208_988_800);
        let ntp_fraction = (u64::from(since_unix.subsec_nanos()) << 32) / 1_000_000_000;
        let mut report = Vec::with_capacity(28);
        report.push(2 << 6); // version 2, no padding, no report blocks
        report.push(200); // SR
        report.extend_from_slice(&6u16.to_be_bytes()); // length in words, minus one
        report.extend_from_slice(&self.ssrc.to_be_bytes());
        // Truncation to 32 bits is the NTP format: seconds wrap in 2036.
        report.extend_from_slice(&(ntp_seconds as u32).to_be_bytes());
        report.extend_from_slice(&(ntp_fraction as u32).to_be_bytes());
        report.extend_from_slice(&rtp_timestamp.to_be_bytes());
        report.extend_from_slice(&self.packets_sent.to_be_bytes());
        report.extend_from_slice(&self.octets_sent.to_be_bytes());
        report
    }
}

/// Prefixes a packet with the `$`, channel, length header of interleaved
/// RTSP. Packets here are far below the 64 KiB the length field can hold.
pub(crate) fn interleave(channel: u8, packet: &[u8], out: &mut Vec<u8>) {
    out.push(b'$');
    out.push(channel);
    // Every packet built here is at most MAX_PAYLOAD + 14 bytes.
    out.extend_from_slice(&(packet.len() as u16).to_be_bytes());
    out.extend_from_slice(packet);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(nals: Vec<Vec<u8>>) -> Frame {
        Frame {
            nals,
            is_idr: false,
        }
    }

    /// Reassembles the NALs of one frame the way a client would.
    fn depacketize(packets: &[Vec<u8>]) -> Vec<Vec<u8>> {
        let mut nals = Vec::new();
        let mut partial: Option<Vec<u8>> = None;
        for p in packets {
            let payload = &p[12..];
            if payload[0] & 0x1f == FU_A {
                let fu_header = payload[1];
                if fu_header & 0x80 != 0 {
                    partial = Some(vec![(payload[0] & 0xe0) | (fu_header & 0x1f)]);
                }
                let nal = partial.as_mut().unwrap();
                nal.extend_from_slice(&payload[2..]);
                if fu_header & 0x40 != 0 {
                    nals.push(partial.take().unwrap());
                }
            } else {
                nals.push(payload.to_vec());
            }
        }
        nals
    }

    #[test]
    fn small_nals_go_whole_and_only_the_last_packet_is_marked() {
        let mut p = Packetizer::new(0xdead_beef, 65535);
        let f = frame(vec![vec![0x67, 1, 2], vec![0x68, 3], vec![0x65, 4, 5, 6]]);
        let packets = p.packetize(&f, 0x0102_0304);
        assert_eq!(packets.len(), 3);
        let markers: Vec<bool> = packets.iter().map(|p| p[1] & 0x80 != 0).collect();
        assert_eq!(markers, vec![false, false, true]);
        let seqs: Vec<u16> = packets
            .iter()
            .map(|p| u16::from_be_bytes([p[2], p[3]]))
            .collect();
        assert_eq!(seqs, vec![65535, 0, 1], "sequence numbers wrap");
        for packet in &packets {
            assert_eq!(packet[0], 0x80);
            assert_eq!(packet[1] & 0x7f, 96);
            assert_eq!(&packet[4..8], &[1, 2, 3, 4]);
            assert_eq!(&packet[8..12], &[0xde, 0xad, 0xbe, 0xef]);
        }
        assert_eq!(depacketize(&packets), f.nals);
    }

    #[test]
    fn large_nals_are_fragmented_and_reassemble_exactly() {
        let mut p = Packetizer::new(1, 10);
        let big: Vec<u8> = std::iter::once(0x65)
            .chain((0..5000u32).map(|i| (i % 251) as u8))
            .collect();
        let f = frame(vec![vec![0x67, 1], big.clone()]);
        let packets = p.packetize(&f, 0);
        assert!(packets.len() > 4);
        assert!(packets.iter().all(|p| p.len() <= 12 + MAX_PAYLOAD));
        assert_eq!(packets[1][12], 0x60 | FU_A, "NRI kept in the FU indicator");
        assert_eq!(packets[1][13], 0x80 | 5, "start bit and NAL type");
        let last = packets.last().unwrap();
        assert_eq!(last[13], 0x40 | 5, "end bit on the last fragment");
        assert_ne!(last[1] & 0x80, 0, "marker on the last fragment");
        assert_eq!(depacketize(&packets), vec![vec![0x67, 1], big]);
        assert_eq!(p.next_seq, 10 + packets.len() as u16);
    }

    #[test]
    fn sender_report_counts_what_was_sent() {
        let mut p = Packetizer::new(7, 0);
        p.packetize(&frame(vec![vec![0x41; 100]]), 0);
        let at = std::time::UNIX_EPOCH + std::time::Duration::from_millis(1500);
        let sr = p.sender_report(at, 42);
        assert_eq!(sr.len(), 28);
        assert_eq!(&sr[..4], &[0x80, 200, 0, 6]);
        assert_eq!(
            u32::from_be_bytes([sr[8], sr[9], sr[10], sr[11]]),
            2_208_988_801
        );
        assert_eq!(
            u32::from_be_bytes([sr[12], sr[13], sr[14], sr[15]]),
            1 << 31
        );
        assert_eq!(u32::from_be_bytes([sr[16], sr[17], sr[18], sr[19]]), 42);
        assert_eq!(u32::from_be_bytes([sr[20], sr[21], sr[22], sr[23]]), 1);
        assert_eq!(u32::from_be_bytes([sr[24], sr[25], sr[26], sr[27]]), 100);
    }

    #[test]
    fn interleaved_framing() {
        let mut out = Vec::new();
        interleave(1, &[9, 8, 7], &mut out);
        assert_eq!(out, vec![b'$', 1, 0, 3, 9, 8, 7]);
    }
}
