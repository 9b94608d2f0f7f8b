//! ICMP errors that quote a tracked flow (IPVS `ip_vs_in_icmp`/`ip_vs_out_icmp`, spec
//! §3.13), and building the errors the director sends itself (port unreachable when no
//! destination is available, §1.4; fragmentation needed; time exceeded).
//!
//! Contract:
//! * [`parse_icmp_error`] recognises ICMPv4 types 3, 4 and 11 and ICMPv6 types < 128 whose
//!   quoted packet is of the same family, TCP or UDP, not a later fragment, with at least
//!   its IP header (and IPv6 extension headers) and 4 L4 bytes (the ports) present.
//!   The quoted tuple is the packet *as sent by the side receiving the error*, so a
//!   conntrack lookup uses it inverted.
//! * [`icmp_nat_in`] / [`icmp_nat_out`] translate such an error for a NAT conn exactly as
//!   the kernel's `ip_vs_nat_icmp` does: outer address, quoted address and quoted port are
//!   rewritten; the quoted IPv4 header checksum and the ICMP checksum are recomputed in
//!   full; the quoted L4 checksum is left alone; the outer IPv4 header checksum is updated
//!   incrementally. The ICMP checksum is verified first ([`RewriteError::BadChecksum`]).
//!   The ICMP checksum they write is final: a caller holding a virtio header with
//!   `NEEDS_CSUM` must clear it.
//! * [`build_icmp_error`] writes a complete reply into `out` without allocating, and refuses
//!   (returns `None`) where the kernel's `icmp_send`/`icmp6_send` would: errors about ICMP
//!   errors, later fragments, multicast/broadcast or unspecified addresses.
//! * Nothing here panics, whatever the buffer and info hold.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use etherparse::{IpNumber, Ipv6ExtensionSlice, Ipv6ExtensionsSlice};

use super::csum::{checksum, fold, pseudo_v6, sum};
use super::nat::{put16, set_addr, RewriteError};
use super::parse::{
    arr16, arr4, be16, ipv4_field, ipv6_field, l4_field, PacketInfo, PROTO_ICMP, PROTO_ICMPV6,
    PROTO_TCP, PROTO_UDP,
};

/// ICMPv4 type: destination unreachable.
pub const ICMP_DEST_UNREACH: u8 = 3;
/// ICMPv4 type: source quench.
pub const ICMP_SOURCE_QUENCH: u8 = 4;
/// ICMPv4 type: time exceeded.
pub const ICMP_TIME_EXCEEDED: u8 = 11;
/// ICMPv4 dest-unreachable code: port unreachable.
pub const ICMP_PORT_UNREACH: u8 = 3;
/// ICMPv4 dest-unreachable code: fragmentation needed and DF set.
pub const ICMP_FRAG_NEEDED: u8 = 4;
/// ICMPv6 type: destination unreachable.
pub const ICMPV6_DEST_UNREACH: u8 = 1;
/// ICMPv6 type: packet too big.
pub const ICMPV6_PKT_TOOBIG: u8 = 2;
/// ICMPv6 type: time exceeded.
pub const ICMPV6_TIME_EXCEED: u8 = 3;
/// ICMPv6 dest-unreachable code: port unreachable.
pub const ICMPV6_PORT_UNREACH: u8 = 4;

/// Largest ICMPv4 error the director sends (RFC 1812 / kernel `icmp_send`).
pub const ICMP_ERROR_MAX_LEN: usize = 576;
/// Largest ICMPv6 error the director sends (the IPv6 minimum MTU).
pub const ICMPV6_ERROR_MAX_LEN: usize = 1280;

/// The packet quoted in an ICMP error. Offsets are from the start of the outer IP header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EmbeddedInfo {
    /// True if the quoted packet is IPv6 (always the outer family).
    pub v6: bool,
    /// L4 protocol of the quoted packet (TCP or UDP).
    pub proto: u8,
    /// Quoted source address.
    pub src: IpAddr,
    /// Quoted source port.
    pub sport: u16,
    /// Quoted destination address.
    pub dst: IpAddr,
    /// Quoted destination port.
    pub dport: u16,
    /// Offset of the quoted IP header.
    pub ip_off: usize,
    /// Offset of the quoted L4 header (after the quoted IPv4 options / IPv6 extensions).
    pub l4_off: usize,
}

/// Find the quoted packet of an ICMP error that IPVS treats as related (see module doc).
pub fn parse_icmp_error(buf: &[u8], info: &PacketInfo) -> Option<EmbeddedInfo> {
    if !info.has_l4() || info.is_fragment {
        return None;
    }
    let related = if info.v6 {
        info.proto == PROTO_ICMPV6 && info.icmp_type < 128
    } else {
        info.proto == PROTO_ICMP
            && matches!(
                info.icmp_type,
                ICMP_DEST_UNREACH | ICMP_SOURCE_QUENCH | ICMP_TIME_EXCEEDED
            )
    };
    if !related {
        return None;
    }
    let ip_off = info.l4_off.checked_add(l4_field::ICMP_HDR_LEN)?;
    let inner = buf.get(ip_off..info.total_len)?;
    let (proto, src, dst, l4_rel) = if info.v6 {
        if inner.len() < ipv6_field::LEN || inner[0] >> 4 != 6 {
            return None;
        }
        let (exts, next, rest) = Ipv6ExtensionsSlice::from_slice(
            IpNumber(inner[ipv6_field::NEXT_HEADER]),
            &inner[ipv6_field::LEN..],
        )
        .ok()?;
        for ext in exts {
            if let Ipv6ExtensionSlice::Fragment(fr) = ext {
                if fr.fragment_offset().value() != 0 {
                    return None;
                }
            }
        }
        (
            next.0,
            IpAddr::V6(Ipv6Addr::from(arr16(inner, ipv6_field::SRC))),
            IpAddr::V6(Ipv6Addr::from(arr16(inner, ipv6_field::DST))),
            inner.len() - rest.len(),
        )
    } else {
        if inner.len() < ipv4_field::MIN_LEN || inner[0] >> 4 != 4 {
            return None;
        }
        let ihl = (inner[0] & 0x0f) as usize * 4;
        if ihl < ipv4_field::MIN_LEN || be16(inner, ipv4_field::FRAG) & ipv4_field::OFFSET_MASK != 0
        {
            return None;
        }
        (
            inner[ipv4_field::PROTO],
            IpAddr::V4(Ipv4Addr::from(arr4(inner, ipv4_field::SRC))),
            IpAddr::V4(Ipv4Addr::from(arr4(inner, ipv4_field::DST))),
            ihl,
        )
    };
    if proto != PROTO_TCP && proto != PROTO_UDP {
        return None;
    }
    let ports = inner.get(l4_rel..l4_rel + 4)?;
    Some(EmbeddedInfo {
        v6: info.v6,
        proto,
        src,
        sport: be16(ports, 0),
        dst,
        dport: be16(ports, 2),
        ip_off,
        l4_off: ip_off + l4_rel,
    })
}

/// Translate an error from the client side for a NAT conn: outer destination → `rs_addr`,
/// quoted source → `rs_addr`, quoted source port → `rs_port`; checksums as in the module doc.
pub fn icmp_nat_in(
    buf: &mut [u8],
    info: &PacketInfo,
    emb: &EmbeddedInfo,
    rs_addr: IpAddr,
    rs_port: u16,
) -> Result<(), RewriteError> {
    icmp_nat(buf, info, emb, rs_addr, rs_port, false)
}

/// Translate an error from the real-server side for a NAT conn: outer source → `vip`,
/// quoted destination → `vip`, quoted destination port → `vport`; checksums as in the
/// module doc.
pub fn icmp_nat_out(
    buf: &mut [u8],
    info: &PacketInfo,
    emb: &EmbeddedInfo,
    vip: IpAddr,
    vport: u16,
) -> Result<(), RewriteError> {
    icmp_nat(buf, info, emb, vip, vport, true)
}

/// True if the ICMP/ICMPv6 checksum of the packet verifies. `buf` must hold `info.total_len`.
pub fn icmp_checksum_ok(buf: &[u8], info: &PacketInfo) -> bool {
    match icmp_sum(buf, info) {
        Some(s) => fold(s) == 0xffff,
        None => false,
    }
}

/// Unfolded sum over the ICMP message (plus the pseudo-header for ICMPv6).
fn icmp_sum(buf: &[u8], info: &PacketInfo) -> Option<u64> {
    let msg = buf.get(info.l4_off..info.total_len)?;
    let mut s = sum(msg, 0);
    if info.v6 {
        let h = buf.get(..ipv6_field::LEN)?;
        s += pseudo_v6(
            &arr16(h, ipv6_field::SRC),
            &arr16(h, ipv6_field::DST),
            PROTO_ICMPV6,
            msg.len() as u32,
        );
    }
    Some(s)
}

fn icmp_nat(
    buf: &mut [u8],
    info: &PacketInfo,
    emb: &EmbeddedInfo,
    addr: IpAddr,
    port: u16,
    out: bool,
) -> Result<(), RewriteError> {
    if addr.is_ipv6() != info.v6 {
        return Err(RewriteError::AddrFamily);
    }
    if buf.len() < info.total_len {
        return Err(RewriteError::Truncated);
    }
    // Re-deriving `emb` bounds-checks every offset used below.
    if parse_icmp_error(buf, info).as_ref() != Some(emb) {
        return Err(RewriteError::BadEmbedded);
    }
    if !icmp_checksum_ok(buf, info) {
        return Err(RewriteError::BadChecksum);
    }
    // Outer address (IPv4 header checksum updated incrementally).
    set_addr(buf, info.v6, out, addr);
    // Quoted address: the destination when going out, the source when coming in.
    let q = &mut buf[emb.ip_off..info.total_len];
    match addr {
        IpAddr::V4(a) => {
            let off = if out {
                ipv4_field::DST
            } else {
                ipv4_field::SRC
            };
            q[off..off + 4].copy_from_slice(&a.octets());
            let ihl = emb.l4_off - emb.ip_off;
            put16(q, ipv4_field::CHECKSUM, 0);
            let c = checksum(&q[..ihl]);
            put16(q, ipv4_field::CHECKSUM, c);
        }
        IpAddr::V6(a) => {
            let off = if out {
                ipv6_field::DST
            } else {
                ipv6_field::SRC
            };
            q[off..off + 16].copy_from_slice(&a.octets());
        }
    }
    let port_off = emb.l4_off
        + if out {
            l4_field::DPORT
        } else {
            l4_field::SPORT
        };
    put16(buf, port_off, port);
    // ICMP checksum in full.
    let csum_off = info.l4_off + l4_field::ICMP_CHECKSUM;
    put16(buf, csum_off, 0);
    let s = icmp_sum(buf, info).unwrap_or(0);
    put16(buf, csum_off, !fold(s));
    Ok(())
}

/// Which error [`build_icmp_error`] sends (mapped per family).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IcmpErrorKind {
    /// v4 type 3 code 3; v6 type 1 code 4 (no destination available).
    PortUnreachable,
    /// v4 type 3 code 4 with the next-hop MTU (clamped to 16 bits); v6 type 2 (packet too big).
    FragNeeded {
        /// The MTU to report.
        mtu: u32,
    },
    /// v4 type 11 code 0; v6 type 3 code 0 (TTL / hop limit exceeded in transit).
    TimeExceeded,
}

/// Build an ICMP error about `orig` (parsed as `orig_info`) into `out`, from orig's
/// destination to orig's source, TTL/hop limit 64, quoting orig's IP header and as much of
/// it as keeps the reply within 576 bytes (IPv4) or 1280 bytes (IPv6) and within `out`.
/// Returns the reply length, or `None` if no error may be sent (see module doc) or `out`
/// cannot hold the reply with orig's headers and 8 bytes of its payload.
pub fn build_icmp_error(
    out: &mut [u8],
    orig: &[u8],
    orig_info: &PacketInfo,
    kind: IcmpErrorKind,
) -> Option<usize> {
    if orig_info.is_fragment && !orig_info.first_fragment {
        return None;
    }
    let orig_len = orig_info.total_len.min(orig.len());
    if orig_len < orig_info.l4_off {
        return None;
    }
    match (orig_info.src, orig_info.dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) if !orig_info.v6 => {
            if orig_info.proto == PROTO_ICMP && matches!(orig_info.icmp_type, 3 | 4 | 5 | 11 | 12) {
                return None;
            }
            if !unicast_v4(s) || !unicast_v4(d) {
                return None;
            }
            build_v4(out, &orig[..orig_len], orig_info.l4_off, s, d, kind)
        }
        (IpAddr::V6(s), IpAddr::V6(d)) if orig_info.v6 => {
            if orig_info.proto == PROTO_ICMPV6
                && (orig_info.icmp_type < 128 || orig_info.icmp_type == 137)
            {
                return None;
            }
            if s.is_unspecified() || s.is_multicast() || d.is_multicast() {
                return None;
            }
            build_v6(out, &orig[..orig_len], orig_info.l4_off, s, d, kind)
        }
        _ => None,
    }
}

/// [`build_icmp_error`] with [`IcmpErrorKind::PortUnreachable`].
pub fn build_port_unreachable(
    out: &mut [u8],
    orig: &[u8],
    orig_info: &PacketInfo,
) -> Option<usize> {
    build_icmp_error(out, orig, orig_info, IcmpErrorKind::PortUnreachable)
}

fn unicast_v4(a: Ipv4Addr) -> bool {
    !(a.is_unspecified() || a.is_broadcast() || a.is_multicast())
}

/// How many bytes of `orig` (of which `hdrs` are headers) fit after `fixed` bytes in a
/// reply limited to `max` and to `out_len`; `None` if not even the headers + 8 fit.
fn quote_len(
    orig_len: usize,
    hdrs: usize,
    fixed: usize,
    max: usize,
    out_len: usize,
) -> Option<usize> {
    let room = max.min(out_len).checked_sub(fixed)?;
    let q = orig_len.min(room);
    if q < orig_len.min(hdrs + 8) {
        return None;
    }
    Some(q)
}

fn build_v4(
    out: &mut [u8],
    orig: &[u8],
    hdrs: usize,
    orig_src: Ipv4Addr,
    orig_dst: Ipv4Addr,
    kind: IcmpErrorKind,
) -> Option<usize> {
    const FIXED: usize = ipv4_field::MIN_LEN + l4_field::ICMP_HDR_LEN;
    let q = quote_len(orig.len(), hdrs, FIXED, ICMP_ERROR_MAX_LEN, out.len())?;
    let total = FIXED + q;
    let out = &mut out[..total];
    let (ty, code, rest) = match kind {
        IcmpErrorKind::PortUnreachable => (ICMP_DEST_UNREACH, ICMP_PORT_UNREACH, [0u8; 4]),
        IcmpErrorKind::FragNeeded { mtu } => {
            let m = mtu.min(u16::MAX as u32) as u16;
            let m = m.to_be_bytes();
            (ICMP_DEST_UNREACH, ICMP_FRAG_NEEDED, [0, 0, m[0], m[1]])
        }
        IcmpErrorKind::TimeExceeded => (ICMP_TIME_EXCEEDED, 0, [0u8; 4]),
    };
    let (ip, rest_out) = out.split_at_mut(ipv4_field::MIN_LEN);
    ip.copy_from_slice(&[
        0x45, 0xc0, 0, 0, 0, 0, 0, 0, 64, PROTO_ICMP, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    ]);
    put16(ip, ipv4_field::TOTAL_LEN, total as u16);
    ip[ipv4_field::SRC..ipv4_field::SRC + 4].copy_from_slice(&orig_dst.octets());
    ip[ipv4_field::DST..ipv4_field::DST + 4].copy_from_slice(&orig_src.octets());
    let c = checksum(ip);
    put16(ip, ipv4_field::CHECKSUM, c);
    let (icmp, quoted) = rest_out.split_at_mut(l4_field::ICMP_HDR_LEN);
    icmp.copy_from_slice(&[ty, code, 0, 0, rest[0], rest[1], rest[2], rest[3]]);
    quoted.copy_from_slice(&orig[..q]);
    let c = !fold(sum(quoted, sum(icmp, 0)));
    put16(icmp, l4_field::ICMP_CHECKSUM, c);
    Some(total)
}

fn build_v6(
    out: &mut [u8],
    orig: &[u8],
    hdrs: usize,
    orig_src: Ipv6Addr,
    orig_dst: Ipv6Addr,
    kind: IcmpErrorKind,
) -> Option<usize> {
    const FIXED: usize = ipv6_field::LEN + l4_field::ICMP_HDR_LEN;
    let q = quote_len(orig.len(), hdrs, FIXED, ICMPV6_ERROR_MAX_LEN, out.len())?;
    let total = FIXED + q;
    let out = &mut out[..total];
    let (ty, code, rest) = match kind {
        IcmpErrorKind::PortUnreachable => (ICMPV6_DEST_UNREACH, ICMPV6_PORT_UNREACH, [0u8; 4]),
        IcmpErrorKind::FragNeeded { mtu } => (ICMPV6_PKT_TOOBIG, 0, mtu.to_be_bytes()),
        IcmpErrorKind::TimeExceeded => (ICMPV6_TIME_EXCEED, 0, [0u8; 4]),
    };
    let (ip, rest_out) = out.split_at_mut(ipv6_field::LEN);
    ip[..8].copy_from_slice(&[0x60, 0, 0, 0, 0, 0, PROTO_ICMPV6, 64]);
    let l4_len = total - ipv6_field::LEN;
    put16(ip, ipv6_field::PAYLOAD_LEN, l4_len as u16);
    ip[ipv6_field::SRC..ipv6_field::SRC + 16].copy_from_slice(&orig_dst.octets());
    ip[ipv6_field::DST..ipv6_field::DST + 16].copy_from_slice(&orig_src.octets());
    let (icmp, quoted) = rest_out.split_at_mut(l4_field::ICMP_HDR_LEN);
    icmp.copy_from_slice(&[ty, code, 0, 0, rest[0], rest[1], rest[2], rest[3]]);
    quoted.copy_from_slice(&orig[..q]);
    let ph = pseudo_v6(
        &orig_dst.octets(),
        &orig_src.octets(),
        PROTO_ICMPV6,
        l4_len as u32,
    );
    let c = !fold(sum(quoted, sum(icmp, ph)));
    put16(icmp, l4_field::ICMP_CHECKSUM, c);
    Some(total)
}

#[cfg(test)]
mod test {
    use super::*;
    use crate::packet::nat::{decrement_ttl, rewrite_dst, rewrite_src};
    use crate::packet::parse::{parse_ip, parse_ip_frag, TCP_ACK, TCP_SYN};
    use crate::packet::testutil::*;
    use etherparse::{IpDscp, IpHeaders, Ipv4Header, PacketBuilder};
    use std::net::SocketAddr;

    // Router 10.0.0.254 -> VIP 12.0.0.1: fragmentation needed (MTU 1400) about a 1500-byte
    // TCP segment VIP:80 -> client 12.0.0.10:40000; quotes the IP header + 8 bytes.
    static FRAG_NEEDED_TO_VIP: [u8; 56] = [
        0x45, 0x00, 0x00, 0x38, 0x1c, 0x46, 0x40, 0x00, 0x40, 0x01, 0x07, 0x81, 0x0a, 0x00, 0x00,
        0xfe, 0x0c, 0x00, 0x00, 0x01, 0x03, 0x04, 0x56, 0xed, 0x00, 0x00, 0x05, 0x78, 0x45, 0x00,
        0x05, 0xdc, 0x1c, 0x46, 0x40, 0x00, 0x40, 0x06, 0x00, 0xcc, 0x0c, 0x00, 0x00, 0x01, 0x0c,
        0x00, 0x00, 0x0a, 0x00, 0x50, 0x9c, 0x40, 0x01, 0x02, 0x03, 0x04,
    ];

    fn sa(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }
    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    /// The quoted packet as the expected output should carry it: `quoted` with one address
    /// and one port replaced and its IPv4 header checksum recomputed by etherparse.
    fn requote(quoted: &[u8], src: bool, addr: IpAddr, port: u16) -> Vec<u8> {
        let mut q = quoted.to_vec();
        match addr {
            IpAddr::V4(a) => {
                let ihl = (q[0] & 0xf) as usize * 4;
                let off = if src { 12 } else { 16 };
                q[off..off + 4].copy_from_slice(&a.octets());
                let (mut h, _) = Ipv4Header::from_slice(&q[..ihl]).unwrap();
                h.header_checksum = h.calc_header_checksum();
                q[10..12].copy_from_slice(&h.header_checksum.to_be_bytes());
                let p = ihl + if src { 0 } else { 2 };
                q[p..p + 2].copy_from_slice(&port.to_be_bytes());
            }
            IpAddr::V6(a) => {
                let off = if src { 8 } else { 24 };
                q[off..off + 16].copy_from_slice(&a.octets());
                let p = 40 + if src { 0 } else { 2 };
                q[p..p + 2].copy_from_slice(&port.to_be_bytes());
            }
        }
        q
    }

    #[test]
    fn test_deconstruct_frag_needed() {
        let info = parse_ip(&FRAG_NEEDED_TO_VIP).unwrap();
        assert_eq!(
            (info.proto, info.icmp_type, info.icmp_code),
            (PROTO_ICMP, 3, 4)
        );
        assert!(icmp_checksum_ok(&FRAG_NEEDED_TO_VIP, &info));
        let emb = parse_icmp_error(&FRAG_NEEDED_TO_VIP, &info).unwrap();
        assert_eq!(
            emb,
            EmbeddedInfo {
                v6: false,
                proto: PROTO_TCP,
                src: ip("12.0.0.1"),
                sport: 80,
                dst: ip("12.0.0.10"),
                dport: 40000,
                ip_off: 28,
                l4_off: 48,
            }
        );
    }

    #[test]
    fn test_nat_in_v4() {
        let mut buf = FRAG_NEEDED_TO_VIP;
        let info = parse_ip(&buf).unwrap();
        let emb = parse_icmp_error(&buf, &info).unwrap();
        icmp_nat_in(&mut buf, &info, &emb, ip("192.168.168.20"), 8080).unwrap();
        let quoted = requote(&FRAG_NEEDED_TO_VIP[28..], true, ip("192.168.168.20"), 8080);
        let want = icmp_packet(
            ip("10.0.0.254"),
            ip("192.168.168.20"),
            3,
            4,
            [0, 0, 5, 0x78],
            &quoted,
        );
        assert_eq!(&buf[..], &want[..]);
        assert!(ipv4_header_checksum_ok(&buf) && l4_checksum_ok(&buf));
        let e2 = parse_icmp_error(&buf, &parse_ip(&buf).unwrap()).unwrap();
        assert_eq!(
            (e2.src, e2.sport, e2.dst, e2.dport),
            (ip("192.168.168.20"), 8080, ip("12.0.0.10"), 40000)
        );
    }

    #[test]
    fn test_nat_out_v4_port_unreachable() {
        // RS says port unreachable about a UDP datagram client -> RS (full quote).
        let orig = udp_packet(sa("12.0.0.10:40000"), sa("192.168.168.10:80"), b"query?");
        let mut buf = icmp_packet(ip("192.168.168.10"), ip("12.0.0.10"), 3, 3, [0; 4], &orig);
        let info = parse_ip(&buf).unwrap();
        let emb = parse_icmp_error(&buf, &info).unwrap();
        assert_eq!(
            (emb.src, emb.sport, emb.dst, emb.dport),
            (ip("12.0.0.10"), 40000, ip("192.168.168.10"), 80)
        );
        assert_eq!(emb.proto, PROTO_UDP);
        icmp_nat_out(&mut buf, &info, &emb, ip("12.0.0.1"), 53).unwrap();
        let quoted = requote(&orig, false, ip("12.0.0.1"), 53);
        let want = icmp_packet(ip("12.0.0.1"), ip("12.0.0.10"), 3, 3, [0; 4], &quoted);
        assert_eq!(buf, want);
    }

    #[test]
    fn test_nat_v6() {
        let orig = tcp_packet(
            sa("[2001:db8::1]:80"),
            sa("[2001:db8::10]:40000"),
            TCP_ACK,
            1,
            2,
            &[],
            &[1; 100],
        );
        // in: packet too big from a router to the VIP
        let mut buf = icmp_packet(
            ip("2001:db8:ff::1"),
            ip("2001:db8::1"),
            2,
            0,
            1280u32.to_be_bytes(),
            &orig,
        );
        let info = parse_ip(&buf).unwrap();
        let emb = parse_icmp_error(&buf, &info).unwrap();
        assert!(emb.v6);
        assert_eq!((emb.ip_off, emb.l4_off), (48, 88));
        icmp_nat_in(&mut buf, &info, &emb, ip("2001:db8:1::10"), 8080).unwrap();
        let quoted = requote(&orig, true, ip("2001:db8:1::10"), 8080);
        let want = icmp_packet(
            ip("2001:db8:ff::1"),
            ip("2001:db8:1::10"),
            2,
            0,
            1280u32.to_be_bytes(),
            &quoted,
        );
        assert_eq!(buf, want);

        // out: RS rejects a client packet
        let orig = udp_packet(
            sa("[2001:db8::10]:40000"),
            sa("[2001:db8:1::10]:8080"),
            b"x",
        );
        let mut buf = icmp_packet(
            ip("2001:db8:1::10"),
            ip("2001:db8::10"),
            1,
            4,
            [0; 4],
            &orig,
        );
        let info = parse_ip(&buf).unwrap();
        let emb = parse_icmp_error(&buf, &info).unwrap();
        icmp_nat_out(&mut buf, &info, &emb, ip("2001:db8::1"), 80).unwrap();
        let quoted = requote(&orig, false, ip("2001:db8::1"), 80);
        let want = icmp_packet(ip("2001:db8::1"), ip("2001:db8::10"), 1, 4, [0; 4], &quoted);
        assert_eq!(buf, want);
    }

    #[test]
    fn test_not_related() {
        let quote = &FRAG_NEEDED_TO_VIP[28..];
        let src = ip("10.0.0.254");
        let dst = ip("12.0.0.1");
        for (ty, related) in [
            (0u8, false),
            (3, true),
            (4, true),
            (5, false),
            (8, false),
            (11, true),
            (12, false),
        ] {
            let p = icmp_packet(src, dst, ty, 0, [0; 4], quote);
            let info = parse_ip(&p).unwrap();
            assert_eq!(parse_icmp_error(&p, &info).is_some(), related, "type {ty}");
        }
        for (ty, related) in [
            (1u8, true),
            (2, true),
            (3, true),
            (4, true),
            (128, false),
            (135, false),
        ] {
            let orig = udp_packet(sa("[2001:db8::10]:1"), sa("[2001:db8::1]:2"), b"");
            let p = icmp_packet(ip("2001:db8::1"), ip("2001:db8::10"), ty, 0, [0; 4], &orig);
            let info = parse_ip(&p).unwrap();
            assert_eq!(
                parse_icmp_error(&p, &info).is_some(),
                related,
                "v6 type {ty}"
            );
        }
        // a TCP packet is not an ICMP error
        let t = tcp_packet(sa("12.0.0.10:1"), sa("12.0.0.1:2"), TCP_SYN, 0, 0, &[], &[]);
        assert!(parse_icmp_error(&t, &parse_ip(&t).unwrap()).is_none());
    }

    #[test]
    fn test_embedded_hostile() {
        let src = ip("10.0.0.254");
        let dst = ip("12.0.0.1");
        let q = FRAG_NEEDED_TO_VIP[28..].to_vec();
        let check = |quoted: &[u8]| {
            let p = icmp_packet(src, dst, 3, 4, [0; 4], quoted);
            parse_icmp_error(&p, &parse_ip(&p).unwrap())
        };
        assert!(check(&q).is_some());
        // every truncation of the quote below header + ports is refused
        for n in 0..24 {
            assert!(check(&q[..n]).is_none(), "quote len {n}");
        }
        assert!(check(&q[..24]).is_some());
        let mut bad = q.clone();
        bad[0] = 0x65; // wrong family
        assert!(check(&bad).is_none());
        bad[0] = 0x44; // IHL 4
        assert!(check(&bad).is_none());
        bad[0] = 0x4f; // IHL past the quote
        assert!(check(&bad).is_none());
        let mut bad = q.clone();
        bad[9] = 1; // quoted ICMP
        assert!(check(&bad).is_none());
        let mut bad = q.clone();
        bad[7] = 1; // later fragment
        assert!(check(&bad).is_none());
        bad[6] = 0x20; // MF, offset 8: still a later fragment
        assert!(check(&bad).is_none());
        bad[7] = 0; // first fragment is fine
        assert!(check(&bad).is_some());
    }

    #[test]
    fn test_nat_refusals_leave_buffer_untouched() {
        let info = parse_ip(&FRAG_NEEDED_TO_VIP).unwrap();
        let emb = parse_icmp_error(&FRAG_NEEDED_TO_VIP, &info).unwrap();
        let mut buf = FRAG_NEEDED_TO_VIP;
        buf[55] ^= 0xff; // corrupt the quoted sequence number: ICMP checksum fails
        let before = buf;
        assert_eq!(
            icmp_nat_in(&mut buf, &info, &emb, ip("192.168.168.20"), 1),
            Err(RewriteError::BadChecksum)
        );
        assert_eq!(buf, before);
        let mut buf = FRAG_NEEDED_TO_VIP;
        assert_eq!(
            icmp_nat_out(&mut buf, &info, &emb, ip("2001:db8::1"), 1),
            Err(RewriteError::AddrFamily)
        );
        let mut other = emb;
        other.l4_off = 10_000;
        assert_eq!(
            icmp_nat_out(&mut buf, &info, &other, ip("12.0.0.1"), 1),
            Err(RewriteError::BadEmbedded)
        );
        let mut short = FRAG_NEEDED_TO_VIP[..40].to_vec();
        assert_eq!(
            icmp_nat_in(&mut short, &info, &emb, ip("12.0.0.1"), 1),
            Err(RewriteError::Truncated)
        );
        assert_eq!(buf, FRAG_NEEDED_TO_VIP);
    }

    /// The expected ICMPv4 error, built by etherparse: TOS 0xc0, id 0, no DF, TTL 64.
    fn expected_v4(
        src: IpAddr,
        dst: IpAddr,
        ty: u8,
        code: u8,
        rest: [u8; 4],
        quoted: &[u8],
    ) -> Vec<u8> {
        let (IpAddr::V4(s), IpAddr::V4(d)) = (src, dst) else {
            panic!()
        };
        let mut h =
            Ipv4Header::new(0, 64, etherparse::IpNumber::ICMP, s.octets(), d.octets()).unwrap();
        h.dont_fragment = false;
        h.dscp = IpDscp::try_new(0x30).unwrap();
        let mut v = Vec::new();
        PacketBuilder::ip(IpHeaders::Ipv4(h, Default::default()))
            .icmpv4_raw(ty, code, rest)
            .write(&mut v, quoted)
            .unwrap();
        v
    }

    #[test]
    fn test_build_port_unreachable_v4() {
        let orig = udp_packet(sa("12.0.0.10:40000"), sa("12.0.0.1:80"), b"hello");
        let info = parse_ip(&orig).unwrap();
        let mut out = vec![0xa5u8; 1500];
        let n = build_port_unreachable(&mut out, &orig, &info).unwrap();
        assert_eq!(n, 28 + orig.len());
        assert_eq!(
            &out[..n],
            &expected_v4(ip("12.0.0.1"), ip("12.0.0.10"), 3, 3, [0; 4], &orig)[..]
        );
        assert!(out[n..].iter().all(|&b| b == 0xa5));
        let r = parse_ip(&out[..n]).unwrap();
        let emb = parse_icmp_error(&out[..n], &r).unwrap();
        assert_eq!(
            (emb.src, emb.sport, emb.dst, emb.dport),
            (info.src, info.sport, info.dst, info.dport)
        );
    }

    #[test]
    fn test_build_limits_to_576() {
        let orig = tcp_packet(
            sa("12.0.0.10:40000"),
            sa("12.0.0.1:80"),
            TCP_ACK,
            1,
            1,
            &[],
            &[0x77; 1400],
        );
        let info = parse_ip(&orig).unwrap();
        let mut out = vec![0xa5u8; 2000];
        let n = build_icmp_error(
            &mut out,
            &orig,
            &info,
            IcmpErrorKind::FragNeeded { mtu: 1400 },
        )
        .unwrap();
        assert_eq!(n, 576);
        let want = expected_v4(
            ip("12.0.0.1"),
            ip("12.0.0.10"),
            3,
            4,
            [0, 0, 0x05, 0x78],
            &orig[..548],
        );
        assert_eq!(&out[..n], &want[..]);
        // a small output buffer quotes less, but at least the headers + 8 bytes
        let mut small = vec![0xa5u8; 100];
        let n = build_icmp_error(&mut small, &orig, &info, IcmpErrorKind::TimeExceeded).unwrap();
        assert_eq!(n, 100);
        assert_eq!(
            &small[..],
            &expected_v4(ip("12.0.0.1"), ip("12.0.0.10"), 11, 0, [0; 4], &orig[..72])[..]
        );
        let mut tiny = vec![0xa5u8; 28 + 20 + 7];
        assert_eq!(build_port_unreachable(&mut tiny, &orig, &info), None);
        assert!(tiny.iter().all(|&b| b == 0xa5));
        // FragNeeded clamps the MTU to 16 bits
        let n = build_icmp_error(
            &mut out,
            &orig,
            &info,
            IcmpErrorKind::FragNeeded { mtu: 70_000 },
        )
        .unwrap();
        assert_eq!(&out[24..28], &[0, 0, 0xff, 0xff]);
        assert!(l4_checksum_ok(&out[..n]));
    }

    #[test]
    fn test_build_v6() {
        let orig = udp_packet(
            sa("[2001:db8::10]:40000"),
            sa("[2001:db8::1]:80"),
            &[0x42; 2000],
        );
        let info = parse_ip(&orig).unwrap();
        let mut out = vec![0xa5u8; 1500];
        let n = build_port_unreachable(&mut out, &orig, &info).unwrap();
        assert_eq!(n, 1280);
        let want = icmp_packet(
            ip("2001:db8::1"),
            ip("2001:db8::10"),
            1,
            4,
            [0; 4],
            &orig[..1280 - 48],
        );
        assert_eq!(&out[..n], &want[..]);
        let n = build_icmp_error(
            &mut out,
            &orig,
            &info,
            IcmpErrorKind::FragNeeded { mtu: 1400 },
        )
        .unwrap();
        let want = icmp_packet(
            ip("2001:db8::1"),
            ip("2001:db8::10"),
            2,
            0,
            1400u32.to_be_bytes(),
            &orig[..1280 - 48],
        );
        assert_eq!(&out[..n], &want[..]);
        let n = build_icmp_error(&mut out, &orig, &info, IcmpErrorKind::TimeExceeded).unwrap();
        assert_eq!((out[40], out[41]), (3, 0));
        assert!(l4_checksum_ok(&out[..n]));
    }

    #[test]
    fn test_build_refusals() {
        let mut out = vec![0u8; 1500];
        // an error about an ICMP error
        let info = parse_ip(&FRAG_NEEDED_TO_VIP).unwrap();
        assert_eq!(
            build_port_unreachable(&mut out, &FRAG_NEEDED_TO_VIP, &info),
            None
        );
        // ... but an echo request may get one
        let echo = icmp_packet(ip("12.0.0.10"), ip("12.0.0.1"), 8, 0, [0; 4], b"x");
        assert!(build_port_unreachable(&mut out, &echo, &parse_ip(&echo).unwrap()).is_some());
        // ICMPv6 errors
        let e6 = icmp_packet(
            ip("2001:db8::1"),
            ip("2001:db8::10"),
            1,
            4,
            [0; 4],
            &[0x60; 48],
        );
        assert_eq!(
            build_port_unreachable(&mut out, &e6, &parse_ip(&e6).unwrap()),
            None
        );
        // broadcast / multicast / unspecified
        for (s, d) in [
            ("0.0.0.0:1", "12.0.0.1:2"),
            ("12.0.0.10:1", "255.255.255.255:2"),
            ("12.0.0.10:1", "224.0.0.1:2"),
        ] {
            let p = udp_packet(sa(s), sa(d), b"");
            assert_eq!(
                build_port_unreachable(&mut out, &p, &parse_ip(&p).unwrap()),
                None,
                "{s} {d}"
            );
        }
        let p = udp_packet(sa("[::]:1"), sa("[2001:db8::1]:2"), b"");
        assert_eq!(
            build_port_unreachable(&mut out, &p, &parse_ip(&p).unwrap()),
            None
        );
        // later fragments
        let mut frag = udp_packet(sa("12.0.0.10:1"), sa("12.0.0.1:2"), b"abcdefgh");
        frag[7] = 1;
        let fi = parse_ip_frag(&frag).unwrap();
        assert_eq!(build_port_unreachable(&mut out, &frag, &fi), None);
    }

    #[test]
    fn test_random_garbage_never_panics() {
        let mut rng = crate::util::Rng::seeded(7);
        let v6err = {
            let orig = tcp_packet(
                sa("[2001:db8::1]:80"),
                sa("[2001:db8::10]:40000"),
                TCP_ACK,
                1,
                2,
                &[],
                &[1; 20],
            );
            icmp_packet(
                ip("2001:db8:ff::1"),
                ip("2001:db8::1"),
                2,
                0,
                [0, 0, 5, 0],
                &orig,
            )
        };
        let tcp = tcp_packet(
            sa("12.0.0.10:40000"),
            sa("12.0.0.1:80"),
            TCP_SYN,
            1,
            0,
            &SYN_OPTIONS,
            b"data",
        );
        let bases: [&[u8]; 3] = [&FRAG_NEEDED_TO_VIP, &v6err, &tcp];
        let mut out = [0u8; 600];
        for round in 0..100_000 {
            let mut p = bases[round % bases.len()].to_vec();
            for _ in 0..1 + rng.below(3) {
                let at = rng.below(p.len() as u32) as usize;
                p[at] = rng.next_u32() as u8;
            }
            let cut = rng.below(p.len() as u32 + 1) as usize;
            p.truncate(cut);
            let Ok(info) = parse_ip_frag(&p) else {
                continue;
            };
            let (a, b) = if info.v6 {
                (ip("2001:db8::99"), ip("2001:db8::98"))
            } else {
                (ip("1.2.3.4"), ip("5.6.7.8"))
            };
            let _ = build_icmp_error(&mut out, &p, &info, IcmpErrorKind::PortUnreachable);
            let _ = build_icmp_error(
                &mut out[..rng.below(600) as usize],
                &p,
                &info,
                IcmpErrorKind::TimeExceeded,
            );
            if let Some(emb) = parse_icmp_error(&p, &info) {
                let mut q = p.clone();
                let _ = icmp_nat_in(&mut q, &info, &emb, a, 1);
                let _ = icmp_nat_out(&mut q, &info, &emb, b, 2);
            }
            let mut q = p.clone();
            rewrite_dst(&mut q, &info, a, 1, round % 2 == 0).unwrap();
            rewrite_src(&mut q, &info, b, 2, false).unwrap();
            let _ = decrement_ttl(&mut q, &info);
            // a PacketInfo from another packet must not panic either
            let mut short = p[..p.len() / 2].to_vec();
            let _ = rewrite_dst(&mut short, &info, a, 1, false);
            let _ = icmp_nat_in(
                &mut short,
                &info,
                &EmbeddedInfo {
                    v6: info.v6,
                    proto: 6,
                    src: a,
                    sport: 0,
                    dst: b,
                    dport: 0,
                    ip_off: 28,
                    l4_off: 48,
                },
                a,
                1,
            );
        }
    }
}
