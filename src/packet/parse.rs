//! Parse an IP packet (as read from a TUN device, after any virtio header) into a
//! [`PacketInfo`]: the addresses, protocol, offsets and L4 fields the pipeline needs.
//!
//! Contract:
//! * [`parse_ip`] never panics and never allocates, whatever the input. It returns `Ok`
//!   only if every offset in the returned [`PacketInfo`] lies inside `buf`: the IP header,
//!   the IPv6 extension headers and the whole L4 header (TCP options included) are within
//!   the length the IP header claims, and that length is within `buf`. Trailing bytes after
//!   the IP total length are allowed (and ignored).
//! * It accepts TCP, UDP, ICMP (over IPv4) and ICMPv6 (over IPv6). Anything else — SCTP
//!   included, since its CRC32c checksum cannot be updated incrementally — is
//!   [`ParseError::UnsupportedProto`]. Fragments are [`ParseError::Fragment`];
//!   [`parse_ip_frag`] accepts them instead and reports them in [`PacketInfo`].
//! * IPv6 extension headers are walked with etherparse (hop-by-hop, routing, fragment,
//!   destination options, authentication); ESP and unknown headers end the walk and so are
//!   reported as an unsupported protocol.
//! * Checksums are not verified here (TUN packets come from the kernel's own stack); see
//!   [`super::csum::ipv4_header_ok`] if a caller wants to.
//! * Every error is a [`ParseError`], a small `Copy` drop reason with a counter name.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use etherparse::{IpNumber, Ipv6ExtensionSlice, Ipv6ExtensionsSlice};

/// IP protocol number of ICMP.
pub const PROTO_ICMP: u8 = 1;
/// IP protocol number of TCP.
pub const PROTO_TCP: u8 = 6;
/// IP protocol number of UDP.
pub const PROTO_UDP: u8 = 17;
/// IP protocol number of ICMPv6.
pub const PROTO_ICMPV6: u8 = 58;
/// IP protocol number of SCTP (recognised, but reported as unsupported).
pub const PROTO_SCTP: u8 = 132;

/// TCP flag FIN.
pub const TCP_FIN: u8 = 0x01;
/// TCP flag SYN.
pub const TCP_SYN: u8 = 0x02;
/// TCP flag RST.
pub const TCP_RST: u8 = 0x04;
/// TCP flag PSH.
pub const TCP_PSH: u8 = 0x08;
/// TCP flag ACK.
pub const TCP_ACK: u8 = 0x10;
/// TCP flag URG.
pub const TCP_URG: u8 = 0x20;
/// TCP flag ECE.
pub const TCP_ECE: u8 = 0x40;
/// TCP flag CWR.
pub const TCP_CWR: u8 = 0x80;

/// Byte offsets inside the IPv4 header.
pub mod ipv4_field {
    /// Version (high nibble) and IHL (low nibble, in 32-bit words).
    pub const VER_IHL: usize = 0;
    /// Total length, 2 bytes.
    pub const TOTAL_LEN: usize = 2;
    /// Flags (3 bits) and fragment offset (13 bits, in 8-byte units), 2 bytes.
    pub const FRAG: usize = 6;
    /// Time to live.
    pub const TTL: usize = 8;
    /// Protocol.
    pub const PROTO: usize = 9;
    /// Header checksum, 2 bytes.
    pub const CHECKSUM: usize = 10;
    /// Source address, 4 bytes.
    pub const SRC: usize = 12;
    /// Destination address, 4 bytes.
    pub const DST: usize = 16;
    /// Length of a header without options.
    pub const MIN_LEN: usize = 20;
    /// "More fragments" bit in the `FRAG` word.
    pub const MF: u16 = 0x2000;
    /// Fragment offset mask in the `FRAG` word.
    pub const OFFSET_MASK: u16 = 0x1fff;
}

/// Byte offsets inside the fixed IPv6 header.
pub mod ipv6_field {
    /// Payload length, 2 bytes.
    pub const PAYLOAD_LEN: usize = 4;
    /// Next header.
    pub const NEXT_HEADER: usize = 6;
    /// Hop limit.
    pub const HOP_LIMIT: usize = 7;
    /// Source address, 16 bytes.
    pub const SRC: usize = 8;
    /// Destination address, 16 bytes.
    pub const DST: usize = 24;
    /// Length of the fixed header.
    pub const LEN: usize = 40;
}

/// Byte offsets inside TCP/UDP/ICMP headers (relative to the L4 header).
pub mod l4_field {
    /// Source port (TCP, UDP, SCTP).
    pub const SPORT: usize = 0;
    /// Destination port (TCP, UDP, SCTP).
    pub const DPORT: usize = 2;
    /// TCP data offset (high nibble, in 32-bit words).
    pub const TCP_DOFF: usize = 12;
    /// TCP flags byte (CWR..FIN).
    pub const TCP_FLAGS: usize = 13;
    /// TCP checksum, 2 bytes.
    pub const TCP_CHECKSUM: usize = 16;
    /// Minimum TCP header length.
    pub const TCP_MIN_LEN: usize = 20;
    /// UDP length, 2 bytes.
    pub const UDP_LEN: usize = 4;
    /// UDP checksum, 2 bytes.
    pub const UDP_CHECKSUM: usize = 6;
    /// UDP header length.
    pub const UDP_HDR_LEN: usize = 8;
    /// ICMP/ICMPv6 type.
    pub const ICMP_TYPE: usize = 0;
    /// ICMP/ICMPv6 code.
    pub const ICMP_CODE: usize = 1;
    /// ICMP/ICMPv6 checksum, 2 bytes.
    pub const ICMP_CHECKSUM: usize = 2;
    /// ICMP/ICMPv6 header length (type, code, checksum, 4 type-specific bytes).
    pub const ICMP_HDR_LEN: usize = 8;
}

/// Why a packet could not be parsed: a drop reason, counted by [`ParseError::name`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ParseError {
    /// The buffer is shorter than a header or than the length the IP header claims.
    Truncated,
    /// The IP version nibble is neither 4 nor 6.
    BadVersion,
    /// Malformed IP header: IHL < 5, total length < header length, bad extension header.
    BadIpHeader,
    /// Malformed L4 header: shorter than its minimum, TCP data offset < 5 or past the end,
    /// UDP length out of range.
    BadL4Header,
    /// A fragment (only [`parse_ip_frag`] accepts them).
    Fragment,
    /// An L4 protocol other than TCP, UDP, ICMP (v4) or ICMPv6 (v6).
    UnsupportedProto,
    /// A virtio-net header that is short or inconsistent with the packet.
    BadVnetHdr,
}

impl ParseError {
    /// Every variant, in [`ParseError::index`] order (for per-reason counter arrays).
    pub const ALL: [ParseError; 7] = [
        ParseError::Truncated,
        ParseError::BadVersion,
        ParseError::BadIpHeader,
        ParseError::BadL4Header,
        ParseError::Fragment,
        ParseError::UnsupportedProto,
        ParseError::BadVnetHdr,
    ];

    /// Counter name: `truncated`, `bad_version`, `bad_ip_header`, `bad_l4_header`,
    /// `fragment`, `unsupported_proto`, `bad_vnet_hdr`.
    pub const fn name(self) -> &'static str {
        match self {
            ParseError::Truncated => "truncated",
            ParseError::BadVersion => "bad_version",
            ParseError::BadIpHeader => "bad_ip_header",
            ParseError::BadL4Header => "bad_l4_header",
            ParseError::Fragment => "fragment",
            ParseError::UnsupportedProto => "unsupported_proto",
            ParseError::BadVnetHdr => "bad_vnet_hdr",
        }
    }

    /// Position in [`ParseError::ALL`].
    pub const fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl std::error::Error for ParseError {}

/// What [`parse_ip`] learned about a packet. All offsets are from the start of the IP header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PacketInfo {
    /// True for IPv6, false for IPv4.
    pub v6: bool,
    /// Source address.
    pub src: IpAddr,
    /// Destination address.
    pub dst: IpAddr,
    /// L4 protocol number (after IPv6 extension headers).
    pub proto: u8,
    /// TTL (IPv4) or hop limit (IPv6).
    pub ttl: u8,
    /// Offset of the L4 header: IPv4 IHL*4, or 40 + IPv6 extension headers.
    pub l4_off: usize,
    /// Length of the L4 header: TCP data offset * 4, 8 for UDP and ICMP; 0 if absent.
    pub l4_hdr_len: usize,
    /// Packet length from the IP header (IPv4 total length, IPv6 40 + payload length).
    pub total_len: usize,
    /// True if this is a fragment (MF set or offset ≠ 0).
    pub is_fragment: bool,
    /// True if this is the first fragment (offset 0, MF set); false for whole packets.
    pub first_fragment: bool,
    /// Source port (TCP/UDP); 0 otherwise.
    pub sport: u16,
    /// Destination port (TCP/UDP); 0 otherwise.
    pub dport: u16,
    /// TCP flags byte (CWR..FIN, see `TCP_*`); 0 otherwise.
    pub tcp_flags: u8,
    /// Offset of the L4 checksum field (TCP, UDP, ICMP, ICMPv6); 0 if the L4 header is absent.
    pub csum_off: usize,
    /// ICMP/ICMPv6 type; 0 otherwise.
    pub icmp_type: u8,
    /// ICMP/ICMPv6 code; 0 otherwise.
    pub icmp_code: u8,
}

impl PacketInfo {
    /// True if the L4 header was parsed (always, except for non-first fragments).
    pub const fn has_l4(&self) -> bool {
        self.l4_hdr_len != 0
    }

    /// Length of the L4 segment (header + payload) according to the IP header.
    pub const fn l4_len(&self) -> usize {
        self.total_len.saturating_sub(self.l4_off)
    }

    /// Offset of the L4 payload (after TCP options, the UDP header or the ICMP header).
    pub const fn payload_off(&self) -> usize {
        self.l4_off + self.l4_hdr_len
    }

    /// Length of the L4 payload (TCP segment data, UDP datagram data, ICMP body).
    pub const fn payload_len(&self) -> usize {
        self.total_len.saturating_sub(self.payload_off())
    }

    /// True for TCP.
    pub const fn is_tcp(&self) -> bool {
        self.proto == PROTO_TCP
    }

    /// True for UDP.
    pub const fn is_udp(&self) -> bool {
        self.proto == PROTO_UDP
    }

    /// True for ICMP over IPv4 or ICMPv6 over IPv6.
    pub const fn is_icmp(&self) -> bool {
        self.proto == PROTO_ICMP || self.proto == PROTO_ICMPV6
    }
}

/// Parse an IPv4 or IPv6 packet; fragments are rejected with [`ParseError::Fragment`].
pub fn parse_ip(buf: &[u8]) -> Result<PacketInfo, ParseError> {
    parse(buf, false)
}

/// Like [`parse_ip`], but fragments are accepted: the first fragment has its L4 header
/// parsed (it must be complete inside the fragment); later fragments have none
/// ([`PacketInfo::has_l4`] is false, ports are 0).
pub fn parse_ip_frag(buf: &[u8]) -> Result<PacketInfo, ParseError> {
    parse(buf, true)
}

#[inline]
pub(crate) fn be16(b: &[u8], off: usize) -> u16 {
    u16::from_be_bytes([b[off], b[off + 1]])
}

#[inline]
pub(crate) fn arr4(b: &[u8], off: usize) -> [u8; 4] {
    [b[off], b[off + 1], b[off + 2], b[off + 3]]
}

#[inline]
pub(crate) fn arr16(b: &[u8], off: usize) -> [u8; 16] {
    let mut a = [0u8; 16];
    a.copy_from_slice(&b[off..off + 16]);
    a
}

fn parse(buf: &[u8], allow_frag: bool) -> Result<PacketInfo, ParseError> {
    let Some(&first) = buf.first() else {
        return Err(ParseError::Truncated);
    };
    match first >> 4 {
        4 => parse_v4(buf, allow_frag),
        6 => parse_v6(buf, allow_frag),
        _ => Err(ParseError::BadVersion),
    }
}

fn empty_info(v6: bool, src: IpAddr, dst: IpAddr, proto: u8, ttl: u8) -> PacketInfo {
    PacketInfo {
        v6,
        src,
        dst,
        proto,
        ttl,
        l4_off: 0,
        l4_hdr_len: 0,
        total_len: 0,
        is_fragment: false,
        first_fragment: false,
        sport: 0,
        dport: 0,
        tcp_flags: 0,
        csum_off: 0,
        icmp_type: 0,
        icmp_code: 0,
    }
}

fn parse_v4(buf: &[u8], allow_frag: bool) -> Result<PacketInfo, ParseError> {
    use ipv4_field as f;
    if buf.len() < f::MIN_LEN {
        return Err(ParseError::Truncated);
    }
    let ihl = (buf[f::VER_IHL] & 0x0f) as usize * 4;
    if ihl < f::MIN_LEN {
        return Err(ParseError::BadIpHeader);
    }
    let total = be16(buf, f::TOTAL_LEN) as usize;
    if total < ihl {
        return Err(ParseError::BadIpHeader);
    }
    if buf.len() < total {
        return Err(ParseError::Truncated);
    }
    let frag = be16(buf, f::FRAG);
    let offset = frag & f::OFFSET_MASK;
    let is_fragment = frag & f::MF != 0 || offset != 0;
    if is_fragment && !allow_frag {
        return Err(ParseError::Fragment);
    }
    let proto = buf[f::PROTO];
    let src = IpAddr::V4(Ipv4Addr::from(arr4(buf, f::SRC)));
    let dst = IpAddr::V4(Ipv4Addr::from(arr4(buf, f::DST)));
    let mut info = empty_info(false, src, dst, proto, buf[f::TTL]);
    info.l4_off = ihl;
    info.total_len = total;
    info.is_fragment = is_fragment;
    info.first_fragment = is_fragment && offset == 0;
    parse_l4(&buf[..total], &mut info)?;
    Ok(info)
}

fn parse_v6(buf: &[u8], allow_frag: bool) -> Result<PacketInfo, ParseError> {
    use ipv6_field as f;
    if buf.len() < f::LEN {
        return Err(ParseError::Truncated);
    }
    let total = f::LEN + be16(buf, f::PAYLOAD_LEN) as usize;
    if buf.len() < total {
        return Err(ParseError::Truncated);
    }
    let (exts, next, rest) =
        Ipv6ExtensionsSlice::from_slice(IpNumber(buf[f::NEXT_HEADER]), &buf[f::LEN..total])
            .map_err(|_| ParseError::BadIpHeader)?;
    let mut is_fragment = false;
    let mut first_fragment = false;
    if exts.is_fragmenting_payload() {
        is_fragment = true;
        first_fragment = true;
        for ext in exts {
            if let Ipv6ExtensionSlice::Fragment(fr) = ext {
                if fr.is_fragmenting_payload() && fr.fragment_offset().value() != 0 {
                    first_fragment = false;
                }
            }
        }
        if !allow_frag {
            return Err(ParseError::Fragment);
        }
    }
    let src = IpAddr::V6(Ipv6Addr::from(arr16(buf, f::SRC)));
    let dst = IpAddr::V6(Ipv6Addr::from(arr16(buf, f::DST)));
    let mut info = empty_info(true, src, dst, next.0, buf[f::HOP_LIMIT]);
    info.l4_off = total - rest.len();
    info.total_len = total;
    info.is_fragment = is_fragment;
    info.first_fragment = first_fragment;
    parse_l4(&buf[..total], &mut info)?;
    Ok(info)
}

/// Fill the L4 fields of `info` from `pkt` (bounded to the IP total length).
fn parse_l4(pkt: &[u8], info: &mut PacketInfo) -> Result<(), ParseError> {
    use l4_field as f;
    let proto = info.proto;
    let supported = match proto {
        PROTO_TCP | PROTO_UDP => true,
        PROTO_ICMP => !info.v6,
        PROTO_ICMPV6 => info.v6,
        _ => false,
    };
    if !supported {
        return Err(ParseError::UnsupportedProto);
    }
    if info.is_fragment && !info.first_fragment {
        return Ok(()); // no L4 header in a later fragment
    }
    let l4 = pkt.get(info.l4_off..).unwrap_or(&[]);
    match proto {
        PROTO_TCP => {
            if l4.len() < f::TCP_MIN_LEN {
                return Err(ParseError::BadL4Header);
            }
            let hlen = (l4[f::TCP_DOFF] >> 4) as usize * 4;
            if hlen < f::TCP_MIN_LEN || hlen > l4.len() {
                return Err(ParseError::BadL4Header);
            }
            info.sport = be16(l4, f::SPORT);
            info.dport = be16(l4, f::DPORT);
            info.tcp_flags = l4[f::TCP_FLAGS];
            info.l4_hdr_len = hlen;
            info.csum_off = info.l4_off + f::TCP_CHECKSUM;
        }
        PROTO_UDP => {
            if l4.len() < f::UDP_HDR_LEN {
                return Err(ParseError::BadL4Header);
            }
            let ulen = be16(l4, f::UDP_LEN) as usize;
            // In a first fragment the UDP length covers the whole datagram.
            if ulen < f::UDP_HDR_LEN || (!info.is_fragment && ulen > l4.len()) {
                return Err(ParseError::BadL4Header);
            }
            info.sport = be16(l4, f::SPORT);
            info.dport = be16(l4, f::DPORT);
            info.l4_hdr_len = f::UDP_HDR_LEN;
            info.csum_off = info.l4_off + f::UDP_CHECKSUM;
        }
        _ => {
            if l4.len() < f::ICMP_HDR_LEN {
                return Err(ParseError::BadL4Header);
            }
            info.icmp_type = l4[f::ICMP_TYPE];
            info.icmp_code = l4[f::ICMP_CODE];
            info.l4_hdr_len = f::ICMP_HDR_LEN;
            info.csum_off = info.l4_off + f::ICMP_CHECKSUM;
        }
    }
    Ok(())
}

#[cfg(test)]
mod test {
    use super::*;

    // 12.0.0.10:40000 -> 12.0.0.1:80 SYN, seq 0x11223344, options MSS/SACK/TS/NOP/WS.
    static IPV4_TCP_SYN: [u8; 60] = [
        0x45, 0x00, 0x00, 0x3c, 0x1c, 0x46, 0x40, 0x00, 0x40, 0x06, 0x06, 0x6c, 0x0c, 0x00, 0x00,
        0x0a, 0x0c, 0x00, 0x00, 0x01, 0x9c, 0x40, 0x00, 0x50, 0x11, 0x22, 0x33, 0x44, 0x00, 0x00,
        0x00, 0x00, 0xa0, 0x02, 0xfa, 0xf0, 0x52, 0x0a, 0x00, 0x00, 0x02, 0x04, 0x05, 0xb4, 0x04,
        0x02, 0x08, 0x0a, 0x00, 0x01, 0x02, 0x03, 0x00, 0x00, 0x00, 0x00, 0x01, 0x03, 0x03, 0x07,
    ];
    // 12.0.0.10:40000 -> 12.0.0.1:53 UDP "hello".
    static IPV4_UDP: [u8; 33] = [
        0x45, 0x00, 0x00, 0x21, 0x1c, 0x46, 0x40, 0x00, 0x40, 0x11, 0x06, 0x7c, 0x0c, 0x00, 0x00,
        0x0a, 0x0c, 0x00, 0x00, 0x01, 0x9c, 0x40, 0x00, 0x35, 0x00, 0x0d, 0x07, 0x82, 0x68, 0x65,
        0x6c, 0x6c, 0x6f,
    ];
    // 12.0.0.10 -> 12.0.0.1 ICMP echo request id 1 seq 2 "ping".
    static IPV4_ICMP_ECHO: [u8; 32] = [
        0x45, 0x00, 0x00, 0x20, 0x1c, 0x46, 0x40, 0x00, 0x40, 0x01, 0x06, 0x8d, 0x0c, 0x00, 0x00,
        0x0a, 0x0c, 0x00, 0x00, 0x01, 0x08, 0x00, 0x19, 0x2c, 0x00, 0x01, 0x00, 0x02, 0x70, 0x69,
        0x6e, 0x67,
    ];
    // 2001:db8::10 -> 2001:db8::1 ICMPv6 echo request id 1 seq 2 "ping".
    static IPV6_ICMPV6_ECHO: [u8; 52] = [
        0x60, 0x00, 0x00, 0x00, 0x00, 0x0c, 0x3a, 0x40, 0x20, 0x01, 0x0d, 0xb8, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x10, 0x20, 0x01, 0x0d, 0xb8, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0x80, 0x00, 0x45, 0x62, 0x00,
        0x01, 0x00, 0x02, 0x70, 0x69, 0x6e, 0x67,
    ];
    // [2001:db8::10]:40000 -> [2001:db8::1]:80, hop-by-hop + destination options (8 bytes
    // each, PadN), TCP ACK|PSH seq 1000 ack 2000, payload "hi".
    static IPV6_EXT_TCP: [u8; 78] = [
        0x60, 0x00, 0x00, 0x00, 0x00, 0x26, 0x00, 0x40, 0x20, 0x01, 0x0d, 0xb8, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x10, 0x20, 0x01, 0x0d, 0xb8, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0x3c, 0x00, 0x01, 0x04, 0x00,
        0x00, 0x00, 0x00, 0x06, 0x00, 0x01, 0x04, 0x00, 0x00, 0x00, 0x00, 0x9c, 0x40, 0x00, 0x50,
        0x00, 0x00, 0x03, 0xe8, 0x00, 0x00, 0x07, 0xd0, 0x50, 0x18, 0xfa, 0xf0, 0x48, 0xa5, 0x00,
        0x00, 0x68, 0x69,
    ];
    // 12.0.0.10:40000 -> 12.0.0.1:53 UDP "hi", IHL 6 (options NOP NOP NOP EOL).
    static IPV4_OPTS_UDP: [u8; 34] = [
        0x46, 0x00, 0x00, 0x22, 0x1c, 0x46, 0x40, 0x00, 0x40, 0x11, 0x03, 0x7a, 0x0c, 0x00, 0x00,
        0x0a, 0x0c, 0x00, 0x00, 0x01, 0x01, 0x01, 0x01, 0x00, 0x9c, 0x40, 0x00, 0x35, 0x00, 0x0a,
        0xe2, 0xf0, 0x68, 0x69,
    ];

    static ALL_FIXTURES: [&[u8]; 6] = [
        &IPV4_TCP_SYN,
        &IPV4_UDP,
        &IPV4_ICMP_ECHO,
        &IPV6_ICMPV6_ECHO,
        &IPV6_EXT_TCP,
        &IPV4_OPTS_UDP,
    ];

    fn v4(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    /// A copy of `pkt` with some bytes changed (the parser ignores checksums).
    fn patch_v4(pkt: &[u8], f: impl FnOnce(&mut Vec<u8>)) -> Vec<u8> {
        let mut p = pkt.to_vec();
        f(&mut p);
        p
    }

    #[test]
    fn test_deconstruct_tcp_syn() {
        let i = parse_ip(&IPV4_TCP_SYN).unwrap();
        assert!(!i.v6);
        assert_eq!(i.src, v4("12.0.0.10"));
        assert_eq!(i.dst, v4("12.0.0.1"));
        assert_eq!(i.proto, PROTO_TCP);
        assert_eq!(i.ttl, 64);
        assert_eq!(i.l4_off, 20);
        assert_eq!(i.l4_hdr_len, 40);
        assert_eq!(i.total_len, 60);
        assert!(!i.is_fragment && !i.first_fragment);
        assert_eq!((i.sport, i.dport), (40000, 80));
        assert_eq!(i.tcp_flags, TCP_SYN);
        assert_eq!(i.csum_off, 36);
        assert_eq!((i.icmp_type, i.icmp_code), (0, 0));
        assert!(i.has_l4() && i.is_tcp() && !i.is_udp() && !i.is_icmp());
        assert_eq!((i.l4_len(), i.payload_off(), i.payload_len()), (40, 60, 0));
    }

    #[test]
    fn test_deconstruct_udp() {
        let i = parse_ip(&IPV4_UDP).unwrap();
        assert_eq!(i.proto, PROTO_UDP);
        assert_eq!((i.sport, i.dport), (40000, 53));
        assert_eq!(
            (i.l4_off, i.l4_hdr_len, i.csum_off, i.total_len),
            (20, 8, 26, 33)
        );
        assert_eq!(i.payload_len(), 5);
        assert_eq!(i.tcp_flags, 0);

        let i = parse_ip(&IPV4_OPTS_UDP).unwrap();
        assert_eq!(
            (i.l4_off, i.csum_off, i.sport, i.dport),
            (24, 30, 40000, 53)
        );
    }

    #[test]
    fn test_deconstruct_icmp() {
        let i = parse_ip(&IPV4_ICMP_ECHO).unwrap();
        assert_eq!(i.proto, PROTO_ICMP);
        assert_eq!((i.icmp_type, i.icmp_code, i.csum_off), (8, 0, 22));
        assert_eq!((i.sport, i.dport), (0, 0));
        assert!(i.is_icmp());

        let i = parse_ip(&IPV6_ICMPV6_ECHO).unwrap();
        assert!(i.v6);
        assert_eq!(i.proto, PROTO_ICMPV6);
        assert_eq!(
            (i.icmp_type, i.icmp_code, i.l4_off, i.csum_off),
            (128, 0, 40, 42)
        );
        assert_eq!(i.src, "2001:db8::10".parse::<IpAddr>().unwrap());
    }

    #[test]
    fn test_deconstruct_ipv6_ext() {
        let i = parse_ip(&IPV6_EXT_TCP).unwrap();
        assert!(i.v6);
        assert_eq!(i.src, "2001:db8::10".parse::<IpAddr>().unwrap());
        assert_eq!(i.dst, "2001:db8::1".parse::<IpAddr>().unwrap());
        assert_eq!((i.proto, i.ttl), (PROTO_TCP, 64));
        assert_eq!(
            (i.l4_off, i.l4_hdr_len, i.total_len, i.csum_off),
            (56, 20, 78, 72)
        );
        assert_eq!(
            (i.sport, i.dport, i.tcp_flags),
            (40000, 80, TCP_ACK | TCP_PSH)
        );
        assert_eq!(i.payload_len(), 2);
    }

    #[test]
    fn test_impossible_len() {
        // Every truncation of every valid packet is an error, never a panic.
        for f in ALL_FIXTURES {
            for n in 0..f.len() {
                let r = parse_ip(&f[..n]);
                assert!(r.is_err(), "len {n} of {f:02x?}");
                assert_eq!(r, Err(ParseError::Truncated));
                assert_eq!(parse_ip_frag(&f[..n]), Err(ParseError::Truncated));
            }
        }
    }

    #[test]
    fn test_trailing_bytes_ignored() {
        for f in ALL_FIXTURES {
            let mut long = f.to_vec();
            long.extend_from_slice(&[0xa5; 17]);
            assert_eq!(parse_ip(&long), parse_ip(f));
            assert_eq!(parse_ip(&long).unwrap().total_len, f.len());
        }
    }

    #[test]
    fn test_bad_version() {
        assert_eq!(parse_ip(&[]), Err(ParseError::Truncated));
        for v in [0u8, 1, 5, 7, 15] {
            let p = patch_v4(&IPV4_UDP, |p| p[0] = (v << 4) | 5);
            assert_eq!(parse_ip(&p), Err(ParseError::BadVersion), "version {v}");
        }
        // an IPv4 header claiming version 6 is a short IPv6 packet
        let p = patch_v4(&IPV4_UDP, |p| p[0] = 0x65);
        assert_eq!(parse_ip(&p), Err(ParseError::Truncated));
    }

    #[test]
    fn test_bad_ihl() {
        for ihl in 0..5u8 {
            let p = patch_v4(&IPV4_UDP, |p| p[0] = 0x40 | ihl);
            assert_eq!(parse_ip(&p), Err(ParseError::BadIpHeader), "ihl {ihl}");
        }
        // IHL past the total length
        let p = patch_v4(&IPV4_UDP, |p| p[0] = 0x4f);
        assert_eq!(parse_ip(&p), Err(ParseError::BadIpHeader));
        // IHL 7 eats the UDP header: what is left is too short for UDP
        let p = patch_v4(&IPV4_UDP, |p| p[0] = 0x47);
        assert_eq!(parse_ip(&p), Err(ParseError::BadL4Header));
    }

    #[test]
    fn test_total_len_lies() {
        let set = |len: u16| {
            patch_v4(&IPV4_TCP_SYN, |p| {
                p[2..4].copy_from_slice(&len.to_be_bytes())
            })
        };
        assert_eq!(parse_ip(&set(0)), Err(ParseError::BadIpHeader));
        assert_eq!(parse_ip(&set(19)), Err(ParseError::BadIpHeader));
        assert_eq!(parse_ip(&set(20)), Err(ParseError::BadL4Header));
        assert_eq!(parse_ip(&set(39)), Err(ParseError::BadL4Header));
        // 40: a 20-byte TCP header fits but the data offset says 40
        assert_eq!(parse_ip(&set(40)), Err(ParseError::BadL4Header));
        assert_eq!(parse_ip(&set(61)), Err(ParseError::Truncated));
        assert_eq!(parse_ip(&set(u16::MAX)), Err(ParseError::Truncated));
        // IPv6 payload length past the buffer
        let mut p = IPV6_EXT_TCP.to_vec();
        p[4..6].copy_from_slice(&0x27u16.to_be_bytes());
        assert_eq!(parse_ip(&p), Err(ParseError::Truncated));
        // IPv6 payload length cutting into the extension headers
        p[4..6].copy_from_slice(&12u16.to_be_bytes());
        assert_eq!(parse_ip(&p), Err(ParseError::BadIpHeader));
        // ... or into the TCP header
        p[4..6].copy_from_slice(&30u16.to_be_bytes());
        assert_eq!(parse_ip(&p), Err(ParseError::BadL4Header));
    }

    #[test]
    fn test_tcp_data_offset() {
        for doff in 0..5u8 {
            let p = patch_v4(&IPV4_TCP_SYN, |p| p[32] = doff << 4);
            assert_eq!(parse_ip(&p), Err(ParseError::BadL4Header), "doff {doff}");
        }
        let p = patch_v4(&IPV4_TCP_SYN, |p| p[32] = 11 << 4);
        assert_eq!(parse_ip(&p), Err(ParseError::BadL4Header));
        let p = patch_v4(&IPV4_TCP_SYN, |p| p[32] = 5 << 4);
        let i = parse_ip(&p).unwrap();
        assert_eq!((i.l4_hdr_len, i.payload_len()), (20, 20));
    }

    #[test]
    fn test_udp_length() {
        for bad in [0u16, 7, 14] {
            let p = patch_v4(&IPV4_UDP, |p| p[24..26].copy_from_slice(&bad.to_be_bytes()));
            assert_eq!(parse_ip(&p), Err(ParseError::BadL4Header), "udp len {bad}");
        }
        // shorter than the IP payload is fine (padding)
        let p = patch_v4(&IPV4_UDP, |p| {
            p[24..26].copy_from_slice(&8u16.to_be_bytes())
        });
        assert!(parse_ip(&p).is_ok());
    }

    #[test]
    fn test_icmp_too_short() {
        let mut p = IPV4_ICMP_ECHO[..27].to_vec();
        p[2..4].copy_from_slice(&27u16.to_be_bytes());
        assert_eq!(parse_ip(&p), Err(ParseError::BadL4Header));
    }

    #[test]
    fn test_unsupported_proto() {
        for proto in [0u8, 4, 41, 47, 50, PROTO_ICMPV6, PROTO_SCTP, 255] {
            let p = patch_v4(&IPV4_UDP, |p| p[9] = proto);
            assert_eq!(
                parse_ip(&p),
                Err(ParseError::UnsupportedProto),
                "proto {proto}"
            );
        }
        for next in [PROTO_ICMP, 59, 50, PROTO_SCTP] {
            let mut p = IPV6_EXT_TCP.to_vec();
            p[48] = next; // next header of the destination options header
            assert_eq!(
                parse_ip(&p),
                Err(ParseError::UnsupportedProto),
                "next {next}"
            );
        }
    }

    #[test]
    fn test_bad_ipv6_extension_chain() {
        // hop-by-hop after destination options
        let mut p = IPV6_EXT_TCP.to_vec();
        p[40] = 0;
        assert_eq!(parse_ip(&p), Err(ParseError::BadIpHeader));
        // extension header longer than the packet
        let mut p = IPV6_EXT_TCP.to_vec();
        p[49] = 200;
        assert_eq!(parse_ip(&p), Err(ParseError::BadIpHeader));
    }

    #[test]
    fn test_ipv4_fragments() {
        // MF set, offset 0: first fragment
        let first = patch_v4(&IPV4_TCP_SYN, |p| p[6] = 0x20);
        assert_eq!(parse_ip(&first), Err(ParseError::Fragment));
        let i = parse_ip_frag(&first).unwrap();
        assert!(i.is_fragment && i.first_fragment && i.has_l4());
        assert_eq!((i.sport, i.dport), (40000, 80));
        // offset 8, no MF: last fragment, no L4
        let last = patch_v4(&IPV4_TCP_SYN, |p| p[6..8].copy_from_slice(&[0x00, 0x01]));
        assert_eq!(parse_ip(&last), Err(ParseError::Fragment));
        let i = parse_ip_frag(&last).unwrap();
        assert!(i.is_fragment && !i.first_fragment && !i.has_l4());
        assert_eq!((i.sport, i.dport, i.csum_off, i.l4_hdr_len), (0, 0, 0, 0));
        // a first fragment whose UDP length covers the whole datagram
        let udp = patch_v4(&IPV4_UDP, |p| {
            p[6] = 0x20;
            p[24..26].copy_from_slice(&1000u16.to_be_bytes());
        });
        assert!(parse_ip_frag(&udp).is_ok());
        // a first fragment too short for the TCP header
        let mut tiny = first[..30].to_vec();
        tiny[2..4].copy_from_slice(&30u16.to_be_bytes());
        assert_eq!(parse_ip_frag(&tiny), Err(ParseError::BadL4Header));
        // later fragments of unsupported protocols are still refused
        let gre = patch_v4(&last, |p| p[9] = 47);
        assert_eq!(parse_ip_frag(&gre), Err(ParseError::UnsupportedProto));
    }

    #[test]
    fn test_ipv6_fragments() {
        // Rewrite the destination-options header (8 bytes) into a fragment header.
        let frag = |off_units: u16, more: bool| {
            let mut p = IPV6_EXT_TCP.to_vec();
            p[40] = 44; // hop-by-hop next: fragment
            let w = (off_units << 3) | more as u16;
            p[48..56].copy_from_slice(&[6, 0, (w >> 8) as u8, w as u8, 0, 0, 0, 9]);
            p
        };
        let first = frag(0, true);
        assert_eq!(parse_ip(&first), Err(ParseError::Fragment));
        let i = parse_ip_frag(&first).unwrap();
        assert!(i.is_fragment && i.first_fragment && i.has_l4());
        assert_eq!((i.l4_off, i.sport), (56, 40000));
        let later = frag(100, false);
        let i = parse_ip_frag(&later).unwrap();
        assert!(i.is_fragment && !i.first_fragment && !i.has_l4());
        // an atomic fragment (offset 0, no MF) is a whole packet
        let atomic = frag(0, false);
        let i = parse_ip(&atomic).unwrap();
        assert!(!i.is_fragment);
    }

    #[test]
    fn test_error_names() {
        let names: Vec<_> = ParseError::ALL.iter().map(|e| e.name()).collect();
        assert_eq!(
            names,
            [
                "truncated",
                "bad_version",
                "bad_ip_header",
                "bad_l4_header",
                "fragment",
                "unsupported_proto",
                "bad_vnet_hdr"
            ]
        );
        for (i, e) in ParseError::ALL.iter().enumerate() {
            assert_eq!(e.index(), i);
            assert_eq!(e.to_string(), e.name());
        }
    }

    #[test]
    fn test_random_garbage_never_panics() {
        let mut rng = crate::util::Rng::seeded(99);
        for round in 0..200_000 {
            let base = ALL_FIXTURES[round % ALL_FIXTURES.len()];
            let mut p = base.to_vec();
            for _ in 0..1 + rng.below(4) {
                let at = rng.below(p.len() as u32) as usize;
                p[at] = rng.next_u32() as u8;
            }
            let cut = rng.below(p.len() as u32 + 1) as usize;
            let p = &p[..cut];
            for i in [parse_ip(p), parse_ip_frag(p)].into_iter().flatten() {
                assert!(i.total_len <= p.len());
                assert!(i.l4_off <= i.total_len);
                assert!(i.payload_off() <= i.total_len);
                if i.has_l4() {
                    assert!(i.csum_off + 2 <= i.total_len);
                }
            }
        }
    }
}
