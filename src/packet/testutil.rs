//! Packet builders and checksum oracles for tests (unit tests, `tests/`, benches).
//!
//! Contract: everything here allocates and panics freely on misuse (mixed address
//! families, oversized payloads) — it is test code, never used on the data path.
//! Checksums are computed with etherparse (`PacketBuilder`, `checksum::Sum16BitWords`),
//! independently of [`super::csum`], so tests can use these functions as an oracle for the
//! incremental updates.

use std::net::{IpAddr, SocketAddr};

use etherparse::checksum::Sum16BitWords;
use etherparse::{
    IpHeaders, IpNumber, Ipv4Header, Ipv4Slice, Ipv6FlowLabel, Ipv6Header, Ipv6Slice,
    PacketBuilder, TcpHeader,
};

use super::parse::{PROTO_TCP, PROTO_UDP};
use super::vnet::{VnetHdr, GSO_NONE, GSO_TCPV4, GSO_TCPV6, GSO_UDP_L4, NEEDS_CSUM};

/// A typical Linux SYN option block: MSS 1460, SACK permitted, timestamps, NOP, wscale 7.
pub const SYN_OPTIONS: [u8; 20] = [
    0x02, 0x04, 0x05, 0xb4, 0x04, 0x02, 0x08, 0x0a, 0x00, 0x01, 0x02, 0x03, 0x00, 0x00, 0x00, 0x00,
    0x01, 0x03, 0x03, 0x07,
];

/// IP headers (IPv4 with DF and identification 0x1c46, or IPv6) for the builder; the
/// builder fills in lengths, protocol and checksums. Panics on mixed families.
pub fn ip_headers(src: IpAddr, dst: IpAddr, ttl: u8) -> IpHeaders {
    match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            let mut h = Ipv4Header::new(0, ttl, IpNumber::TCP, s.octets(), d.octets())
                .expect("ipv4 header");
            h.identification = 0x1c46;
            IpHeaders::Ipv4(h, Default::default())
        }
        (IpAddr::V6(s), IpAddr::V6(d)) => IpHeaders::Ipv6(
            Ipv6Header {
                traffic_class: 0,
                flow_label: Ipv6FlowLabel::ZERO,
                payload_length: 0,
                next_header: IpNumber::TCP,
                hop_limit: ttl,
                source: s.octets(),
                destination: d.octets(),
            },
            Default::default(),
        ),
        _ => panic!("mixed address families"),
    }
}

/// A TCP header with the given flags (`TCP_*` bits), sequence numbers and raw options.
pub fn tcp_header(
    sport: u16,
    dport: u16,
    flags: u8,
    seq: u32,
    ack: u32,
    options: &[u8],
) -> TcpHeader {
    use super::parse::*;
    let mut t = TcpHeader::new(sport, dport, seq, 64240);
    t.acknowledgment_number = ack;
    t.fin = flags & TCP_FIN != 0;
    t.syn = flags & TCP_SYN != 0;
    t.rst = flags & TCP_RST != 0;
    t.psh = flags & TCP_PSH != 0;
    t.ack = flags & TCP_ACK != 0;
    t.urg = flags & TCP_URG != 0;
    t.ece = flags & TCP_ECE != 0;
    t.cwr = flags & TCP_CWR != 0;
    t.set_options_raw(options).expect("tcp options");
    t
}

/// Build an IP/TCP packet from prepared headers, with all checksums computed in full.
pub fn tcp_packet_with(ip: IpHeaders, tcp: TcpHeader, payload: &[u8]) -> Vec<u8> {
    let mut v = Vec::new();
    PacketBuilder::ip(ip)
        .tcp_header(tcp)
        .write(&mut v, payload)
        .expect("build tcp");
    v
}

/// An IPv4 or IPv6 TCP packet (TTL 64) with correct checksums.
pub fn tcp_packet(
    src: SocketAddr,
    dst: SocketAddr,
    flags: u8,
    seq: u32,
    ack: u32,
    options: &[u8],
    payload: &[u8],
) -> Vec<u8> {
    tcp_packet_with(
        ip_headers(src.ip(), dst.ip(), 64),
        tcp_header(src.port(), dst.port(), flags, seq, ack, options),
        payload,
    )
}

/// Build an IP/UDP packet from prepared IP headers, with all checksums computed in full.
pub fn udp_packet_with(ip: IpHeaders, sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
    let mut v = Vec::new();
    PacketBuilder::ip(ip)
        .udp(sport, dport)
        .write(&mut v, payload)
        .expect("build udp");
    v
}

/// An IPv4 or IPv6 UDP packet (TTL 64) with a correct checksum.
pub fn udp_packet(src: SocketAddr, dst: SocketAddr, payload: &[u8]) -> Vec<u8> {
    udp_packet_with(
        ip_headers(src.ip(), dst.ip(), 64),
        src.port(),
        dst.port(),
        payload,
    )
}

/// An IPv4 UDP packet whose checksum field is 0 ("no checksum").
pub fn udp_packet_no_csum(src: SocketAddr, dst: SocketAddr, payload: &[u8]) -> Vec<u8> {
    let mut v = udp_packet(src, dst, payload);
    let l4 = l4_offset(&v);
    v[l4 + 6] = 0;
    v[l4 + 7] = 0;
    v
}

/// An ICMP (v4) or ICMPv6 (v6) message `icmp_type`/`code` with bytes 4..8 = `rest` and
/// body `quoted` (for errors: the offending packet), TTL 64, correct checksums.
pub fn icmp_packet(
    src: IpAddr,
    dst: IpAddr,
    icmp_type: u8,
    code: u8,
    rest: [u8; 4],
    quoted: &[u8],
) -> Vec<u8> {
    let mut v = Vec::new();
    let b = PacketBuilder::ip(ip_headers(src, dst, 64));
    if src.is_ipv4() {
        b.icmpv4_raw(icmp_type, code, rest)
            .write(&mut v, quoted)
            .expect("build icmp");
    } else {
        b.icmpv6_raw(icmp_type, code, rest)
            .write(&mut v, quoted)
            .expect("build icmpv6");
    }
    v
}

/// Split an IP packet into (src, dst, L4 protocol, L4 offset, L4 segment) with etherparse.
fn layers(pkt: &[u8]) -> (Vec<u8>, Vec<u8>, u8, usize, &[u8]) {
    if pkt[0] >> 4 == 4 {
        let s = Ipv4Slice::from_slice(pkt).expect("ipv4 packet");
        let h = s.header();
        let seg = s.payload().payload;
        let off = h.total_len() as usize - seg.len();
        (
            h.source().to_vec(),
            h.destination().to_vec(),
            s.payload_ip_number().0,
            off,
            seg,
        )
    } else {
        let s = Ipv6Slice::from_slice(pkt).expect("ipv6 packet");
        let h = s.header();
        let seg = s.payload().payload;
        let off = 40 + h.payload_length() as usize - seg.len();
        (
            h.source().to_vec(),
            h.destination().to_vec(),
            s.payload().ip_number.0,
            off,
            seg,
        )
    }
}

/// Offset of the L4 header (IPv4 IHL*4, IPv6 40 + extension headers), by etherparse.
pub fn l4_offset(pkt: &[u8]) -> usize {
    layers(pkt).3
}

/// Offset of the L4 checksum field for TCP (16), UDP (6) or ICMP/ICMPv6 (2).
pub fn l4_csum_offset(pkt: &[u8]) -> usize {
    let (_, _, proto, off, _) = layers(pkt);
    off + match proto {
        PROTO_TCP => 16,
        PROTO_UDP => 6,
        _ => 2,
    }
}

fn pseudo_sum(src: &[u8], dst: &[u8], proto: u8, len: usize) -> Sum16BitWords {
    let mut s = Sum16BitWords::new().add_slice(src).add_slice(dst);
    if src.len() == 4 {
        s.add_2bytes([0, proto])
            .add_2bytes((len as u16).to_be_bytes())
    } else {
        s.add_4bytes((len as u32).to_be_bytes())
            .add_4bytes([0, 0, 0, proto])
    }
}

/// The pseudo-header seed (folded, not complemented) for the packet's current addresses.
pub fn pseudo_seed(pkt: &[u8]) -> u16 {
    let (src, dst, proto, _, seg) = layers(pkt);
    !pseudo_sum(&src, &dst, proto, seg.len())
        .ones_complement()
        .to_be()
}

/// True if the L4 checksum (TCP, UDP, ICMP, ICMPv6) verifies; an IPv4 UDP 0 counts as valid.
pub fn l4_checksum_ok(pkt: &[u8]) -> bool {
    let (src, dst, proto, _, seg) = layers(pkt);
    let sum = if proto == 1 {
        Sum16BitWords::new().add_slice(seg)
    } else {
        if proto == PROTO_UDP && src.len() == 4 && seg.len() >= 8 && seg[6] == 0 && seg[7] == 0 {
            return true;
        }
        pseudo_sum(&src, &dst, proto, seg.len()).add_slice(seg)
    };
    sum.ones_complement().to_be() == 0
}

/// True if the IPv4 header checksum verifies (always true for IPv6).
pub fn ipv4_header_checksum_ok(pkt: &[u8]) -> bool {
    if pkt[0] >> 4 != 4 {
        return true;
    }
    let s = Ipv4Slice::from_slice(pkt).expect("ipv4 packet");
    let h = s.header().to_header();
    h.calc_header_checksum() == h.header_checksum
}

/// Turn a packet with a full L4 checksum into what the kernel hands to a `IFF_VNET_HDR`
/// TUN reader for a `CHECKSUM_PARTIAL` skb: the checksum field holds the pseudo-header
/// seed, and the returned header has `NEEDS_CSUM`, `csum_start`/`csum_offset` and, if
/// `gso_size` is non-zero, the GSO type and `hdr_len` (all headers) filled in.
pub fn to_partial(pkt: &mut [u8], gso_size: u16) -> VnetHdr {
    let (_, _, proto, off, seg) = layers(pkt);
    let csum_offset: u16 = match proto {
        PROTO_TCP => 16,
        PROTO_UDP => 6,
        _ => panic!("to_partial: not TCP/UDP"),
    };
    let l4_hdr = if proto == PROTO_TCP {
        (seg[12] >> 4) as usize * 4
    } else {
        8
    };
    let seed = pseudo_seed(pkt);
    let at = off + csum_offset as usize;
    pkt[at..at + 2].copy_from_slice(&seed.to_be_bytes());
    let v6 = pkt[0] >> 4 == 6;
    let (gso_type, hdr_len) = if gso_size == 0 {
        (GSO_NONE, 0)
    } else {
        let t = match (proto, v6) {
            (PROTO_TCP, false) => GSO_TCPV4,
            (PROTO_TCP, true) => GSO_TCPV6,
            _ => GSO_UDP_L4,
        };
        (t, (off + l4_hdr) as u16)
    };
    VnetHdr {
        flags: NEEDS_CSUM,
        gso_type,
        hdr_len,
        gso_size,
        csum_start: off as u16,
        csum_offset,
    }
}

/// Complete a partial checksum as the kernel's `skb_checksum_help` would: sum from
/// `csum_start` to the end of the IP packet (seed included) and store the complement
/// (0 sent as 0xFFFF). Does nothing without `NEEDS_CSUM`.
pub fn complete_partial(pkt: &mut [u8], hdr: &VnetHdr) {
    if !hdr.needs_csum() {
        return;
    }
    let (_, _, _, off, seg) = layers(pkt);
    let end = off + seg.len();
    let start = hdr.csum_start as usize;
    let c = Sum16BitWords::new()
        .add_slice(&pkt[start..end])
        .ones_complement()
        .to_be();
    let c = if c == 0 { 0xffff } else { c };
    let at = start + hdr.csum_offset as usize;
    pkt[at..at + 2].copy_from_slice(&c.to_be_bytes());
}

/// A TUN frame: the virtio header's 10 bytes followed by the packet.
pub fn frame(hdr: &VnetHdr, pkt: &[u8]) -> Vec<u8> {
    let mut v = hdr.to_bytes().to_vec();
    v.extend_from_slice(pkt);
    v
}

/// Format bytes as the body of a Rust array literal, 12 per line (for pasting fixtures).
pub fn hex_array(bytes: &[u8]) -> String {
    let mut s = String::new();
    for line in bytes.chunks(12) {
        s.push_str("   ");
        for b in line {
            s.push_str(&format!(" 0x{b:02x},"));
        }
        s.push('\n');
    }
    s
}

#[cfg(test)]
mod test {
    use super::*;
    use crate::packet::parse::*;

    fn sa(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn built_packets_verify() {
        let payload = b"GET / HTTP/1.0\r\n\r\n!";
        for (src, dst) in [
            (sa("12.0.0.10:40000"), sa("12.0.0.1:80")),
            (sa("[2001:db8::10]:40000"), sa("[2001:db8::1]:80")),
        ] {
            let t = tcp_packet(src, dst, TCP_SYN, 1, 0, &SYN_OPTIONS, payload);
            assert!(l4_checksum_ok(&t) && ipv4_header_checksum_ok(&t));
            let info = parse_ip(&t).unwrap();
            assert_eq!(
                (info.sport, info.dport, info.tcp_flags),
                (40000, 80, TCP_SYN)
            );
            assert_eq!(info.l4_hdr_len, 40);
            let u = udp_packet(src, dst, payload);
            assert!(l4_checksum_ok(&u));
            assert_eq!(l4_csum_offset(&u), info.l4_off + 6);
        }
        let z = udp_packet_no_csum(sa("12.0.0.10:1"), sa("12.0.0.1:2"), b"x");
        assert!(l4_checksum_ok(&z));
        assert_eq!(&z[26..28], &[0, 0]);
    }

    #[test]
    fn partial_round_trip() {
        let mut t = tcp_packet(
            sa("12.0.0.10:40000"),
            sa("12.0.0.1:80"),
            TCP_ACK,
            5,
            6,
            &[],
            &[7u8; 3000],
        );
        let full = t.clone();
        let h = to_partial(&mut t, 1448);
        assert_eq!(
            (h.csum_start, h.csum_offset, h.hdr_len, h.gso_type),
            (20, 16, 40, GSO_TCPV4)
        );
        assert_eq!(u16::from_be_bytes([t[36], t[37]]), pseudo_seed(&full));
        assert!(!l4_checksum_ok(&t));
        complete_partial(&mut t, &h);
        assert_eq!(t, full);
    }
}
