//! Where a client's RTP goes: interleaved on its RTSP connection, or UDP
//! datagrams to the ports it named at SETUP.

use std::net::{IpAddr, SocketAddr, UdpSocket};

/// What a SETUP's `Transport` header asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Requested {
    /// Interleaved; RTP on this channel, RTCP on the next.
    Tcp {
        channel: u8,
    },
    /// UDP to this RTP port; RTCP to the next.
    Udp {
        client_port: u16,
    },
    Unsupported,
}

/// Reads the first transport spec of a `Transport` header (a client may
/// offer several, most preferred first; one is all this camera needs).
pub(crate) fn requested(header: &str) -> Requested {
    let spec = header.split(',').next().unwrap_or_default();
    let mut parts = spec.split(';').map(str::trim);
    let protocol = parts.next().unwrap_or_default();
    let params: Vec<&str> = parts.collect();
    let param = |name: &str| params.iter().find_map(|p| p.strip_prefix(name));
    let first_port = |range: &str| range.split('-').next().and_then(|p| p.parse::<u16>().ok());
    match protocol {
        "RTP/AVP/TCP" => match param("interleaved=") {
            None => Requested::Tcp { channel: 0 },
            Some(range) => range
                .split('-')
                .next()
                .and_then(|c| c.parse::<u8>().ok())
                .filter(|&c| c < u8::MAX)
                .map_or(Requested::Unsupported, |channel| Requested::Tcp { channel }),
        },
        "RTP/AVP" | "RTP/AVP/UDP" if param("multicast").is_none() => {
            match param("client_port=").and_then(first_port) {
                Some(port) if port < u16::MAX => Requested::Udp { client_port: port },
                _ => Requested::Unsupported,
            }
        }
        _ => Requested::Unsupported,
    }
}

/// A set-up stream's destination.
#[derive(Debug)]
pub(crate) enum Delivery {
    Interleaved {
        channel: u8,
    },
    Udp {
        rtp: UdpSocket,
        rtcp: UdpSocket,
        client_rtp: SocketAddr,
        client_rtcp: SocketAddr,
    },
}

impl Delivery {
    /// Binds an even/odd port pair on 127.0.0.1 (RFC 3550 §11 wants RTP on
    /// the even one) for a client at `client_ip`.
    pub(crate) fn udp(client_ip: IpAddr, client_port: u16) -> std::io::Result<Delivery> {
        let mut last_error = None;
        for _ in 0..20 {
            let rtp = UdpSocket::bind((std::net::Ipv4Addr::LOCALHOST, 0))?;
            let port = rtp.local_addr()?.port();
            if port % 2 != 0 || port == u16::MAX - 1 {
                continue;
            }
            match UdpSocket::bind((std::net::Ipv4Addr::LOCALHOST, port + 1)) {
                Ok(rtcp) => {
                    // Sends must never block the connection's loop: a full
                    // socket buffer drops the packet, as a network would.
                    rtp.set_nonblocking(true)?;
                    rtcp.set_nonblocking(true)?;
                    return Ok(Delivery::Udp {
                        rtp,
                        rtcp,
                        client_rtp: SocketAddr::new(client_ip, client_port),
                        client_rtcp: SocketAddr::new(client_ip, client_port + 1),
                    });
                }
                Err(e) => last_error = Some(e),
            }
        }
        Err(last_error.unwrap_or_else(|| std::io::Error::other("no even/odd UDP port pair free")))
    }

    /// The `Transport` header value of the SETUP response.
    pub(crate) fn describe(&self, ssrc: u32) -> String {
        match self {
            Delivery::Interleaved { channel } => format!(
                "RTP/AVP/TCP;unicast;interleaved={}-{};ssrc={ssrc:08X}",
                channel,
                channel + 1
            ),
            Delivery::Udp {
                rtp, client_rtp, ..
            } => {
                let server = rtp.local_addr().map(|a| a.port()).unwrap_or_default();
                format!(
                    "RTP/AVP;unicast;client_port={}-{};server_port={}-{};ssrc={ssrc:08X}",
                    client_rtp.port(),
                    client_rtp.port() + 1,
                    server,
                    server + 1
                )
            }
        }
    }

    /// Sends RTP (`rtcp` false) or RTCP packets. Interleaved packets are
    /// appended to `tcp_out` for the connection to write; UDP ones leave at
    /// once, and a datagram the kernel will not take now is dropped.
    pub(crate) fn send(&self, rtcp: bool, packets: &[Vec<u8>], tcp_out: &mut Vec<u8>) {
        match self {
            Delivery::Interleaved { channel } => {
                let channel = if rtcp { channel + 1 } else { *channel };
                for packet in packets {
                    super::rtp::interleave(channel, packet, tcp_out);
                }
            }
            Delivery::Udp {
                rtp: rtp_socket,
                rtcp: rtcp_socket,
                client_rtp,
                client_rtcp,
            } => {
                let (socket, to) = if rtcp {
                    (rtcp_socket, client_rtcp)
                } else {
                    (rtp_socket, client_rtp)
                };
                for packet in packets {
                    if let Err(e) = socket.send_to(packet, to) {
                        tracing::trace!(error = %e, "simulated camera: UDP packet dropped");
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_what_retina_and_ffmpeg_ask_for() {
        let cases = [
            (
                "RTP/AVP/TCP;unicast;interleaved=0-1",
                Requested::Tcp { channel: 0 },
            ),
            (
                "RTP/AVP/TCP;unicast;interleaved=4-5",
                Requested::Tcp { channel: 4 },
            ),
            ("RTP/AVP/TCP;unicast", Requested::Tcp { channel: 0 }),
            (
                "RTP/AVP;unicast;client_port=5000-5001",
                Requested::Udp { client_port: 5000 },
            ),
            (
                "RTP/AVP/UDP;unicast;client_port=6000-6001",
                Requested::Udp { client_port: 6000 },
            ),
            (
                "RTP/AVP/TCP;unicast;interleaved=2-3,RTP/AVP;unicast;client_port=1-2",
                Requested::Tcp { channel: 2 },
            ),
            ("RTP/AVP;multicast", Requested::Unsupported),
            ("RTP/AVP;unicast", Requested::Unsupported),
            ("RTP/AVP/TCP;interleaved=255-256", Requested::Unsupported),
            ("RTP/AVP;unicast;client_port=x", Requested::Unsupported),
            ("", Requested::Unsupported),
            ("\u{0}garbage;;;==", Requested::Unsupported),
        ];
        for (header, expected) in cases {
            assert_eq!(requested(header), expected, "{header:?}");
        }
    }

    #[test]
    fn udp_pair_is_even_then_odd_and_described() {
        let delivery = Delivery::udp(IpAddr::from([127, 0, 0, 1]), 5000).unwrap();
        let Delivery::Udp { rtp, rtcp, .. } = &delivery else {
            panic!("expected UDP delivery");
        };
        let port = rtp.local_addr().unwrap().port();
        assert_eq!(port % 2, 0);
        assert_eq!(rtcp.local_addr().unwrap().port(), port + 1);
        assert_eq!(
            delivery.describe(0xab),
            format!(
                "RTP/AVP;unicast;client_port=5000-5001;server_port={port}-{};ssrc=000000AB",
                port + 1
            )
        );
    }

    #[test]
    fn interleaved_rtcp_goes_on_the_odd_channel() {
        let delivery = Delivery::Interleaved { channel: 2 };
        let mut out = Vec::new();
        delivery.send(true, &[vec![1]], &mut out);
        delivery.send(false, &[vec![2]], &mut out);
        assert_eq!(out, vec![b'$', 3, 0, 1, 1, b'$', 2, 0, 1, 2]);
    }
}
