//! In-place NAT rewrites with incremental checksum updates (IPVS `-m` masquerading).
//!
//! Contract:
//! * `info` must come from [`super::parse_ip`] (or [`super::parse_ip_frag`]) on the same
//!   bytes. The functions still never panic if it does not: every offset is bounds-checked
//!   first, and on any error the buffer is left untouched.
//! * [`rewrite_dst`] (DNAT, client→VIP becomes client→RIP) and [`rewrite_src`] (SNAT,
//!   RIP→client becomes VIP→client) change one address and, for TCP/UDP, one port:
//!   * the IPv4 header checksum by RFC 1624 (it is never partial);
//!   * the TCP/UDP checksum by a **fast** update (address + port) when `l4_partial` is
//!     false, or by a **partial** update (address only — the port is summed later, from
//!     `csum_start`) when the virtio header says `NEEDS_CSUM`
//!     (see [`super::VnetHdr::l4_partial`]);
//!   * a UDP checksum of 0 stays 0; a computed 0 becomes 0xFFFF;
//!   * ICMPv6 checksums cover the pseudo-header and are updated likewise; ICMPv4 has no
//!     pseudo-header, so only the IP header changes (the port argument is ignored for ICMP);
//!   * for a later fragment (no L4 header) only the IP header changes.
//! * Nothing is allocated; `PacketInfo` is not updated (re-parse or patch it if needed).
//! * The virtio header, if any, is written back unchanged by the caller.

use std::fmt;
use std::net::IpAddr;

use super::csum::{fast_update16, Diff};
use super::parse::{
    arr16, arr4, be16, ipv4_field, ipv6_field, l4_field, PacketInfo, PROTO_ICMPV6, PROTO_TCP,
    PROTO_UDP,
};

/// Why a rewrite was refused (the buffer is unchanged).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RewriteError {
    /// The new address is not of the packet's family (IPv4 vs IPv6).
    AddrFamily,
    /// `buf` is shorter than `info` says: `info` did not come from this buffer.
    Truncated,
    /// ICMP translation only: the ICMP checksum of the packet does not verify.
    BadChecksum,
    /// ICMP translation only: the embedded header is not the one `emb` describes.
    BadEmbedded,
}

impl RewriteError {
    /// Every variant, in [`RewriteError::index`] order (for per-reason counter arrays).
    pub const ALL: [RewriteError; 4] = [
        RewriteError::AddrFamily,
        RewriteError::Truncated,
        RewriteError::BadChecksum,
        RewriteError::BadEmbedded,
    ];

    /// Position in [`RewriteError::ALL`].
    pub const fn index(self) -> usize {
        self as usize
    }

    /// Counter name: `addr_family`, `truncated`, `bad_checksum`, `bad_embedded`.
    pub const fn name(self) -> &'static str {
        match self {
            RewriteError::AddrFamily => "addr_family",
            RewriteError::Truncated => "truncated",
            RewriteError::BadChecksum => "bad_checksum",
            RewriteError::BadEmbedded => "bad_embedded",
        }
    }
}

impl fmt::Display for RewriteError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl std::error::Error for RewriteError {}

/// DNAT: set the destination address to `new_addr` and (TCP/UDP) the destination port to
/// `new_port`, updating checksums; `l4_partial` = the L4 checksum field holds a seed.
pub fn rewrite_dst(
    buf: &mut [u8],
    info: &PacketInfo,
    new_addr: IpAddr,
    new_port: u16,
    l4_partial: bool,
) -> Result<(), RewriteError> {
    rewrite(buf, info, Side::Dst, new_addr, new_port, l4_partial)
}

/// SNAT: set the source address to `new_addr` and (TCP/UDP) the source port to
/// `new_port`, updating checksums; `l4_partial` = the L4 checksum field holds a seed.
pub fn rewrite_src(
    buf: &mut [u8],
    info: &PacketInfo,
    new_addr: IpAddr,
    new_port: u16,
    l4_partial: bool,
) -> Result<(), RewriteError> {
    rewrite(buf, info, Side::Src, new_addr, new_port, l4_partial)
}

/// Decrement the IPv4 TTL (with RFC 1624 header checksum update) or IPv6 hop limit.
/// Returns false, changing nothing, if it is ≤ 1 (the packet must not be forwarded) or
/// the buffer is too short.
pub fn decrement_ttl(buf: &mut [u8], info: &PacketInfo) -> bool {
    if info.v6 {
        match buf.get_mut(ipv6_field::HOP_LIMIT) {
            Some(h) if *h > 1 => {
                *h -= 1;
                true
            }
            _ => false,
        }
    } else {
        let Some(hdr) = buf.get_mut(..ipv4_field::MIN_LEN) else {
            return false;
        };
        let ttl = hdr[ipv4_field::TTL];
        if ttl <= 1 {
            return false;
        }
        let proto = hdr[ipv4_field::PROTO];
        let old = u16::from_be_bytes([ttl, proto]);
        let new = u16::from_be_bytes([ttl - 1, proto]);
        hdr[ipv4_field::TTL] = ttl - 1;
        let c = be16(hdr, ipv4_field::CHECKSUM);
        put16(hdr, ipv4_field::CHECKSUM, fast_update16(c, old, new));
        true
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Side {
    Src,
    Dst,
}

#[inline]
pub(crate) fn put16(b: &mut [u8], off: usize, v: u16) {
    b[off..off + 2].copy_from_slice(&v.to_be_bytes());
}

/// Replace one IP address in the header at `buf[..]` (IPv4: also the header checksum).
/// Returns the pseudo-header difference. Bounds must have been checked by the caller.
pub(crate) fn set_addr(buf: &mut [u8], v6: bool, src: bool, new: IpAddr) -> Diff {
    match new {
        IpAddr::V4(a) if !v6 => {
            let off = if src {
                ipv4_field::SRC
            } else {
                ipv4_field::DST
            };
            let old = arr4(buf, off);
            let new = a.octets();
            buf[off..off + 4].copy_from_slice(&new);
            let d = Diff::new().addr4(old, new);
            let c = be16(buf, ipv4_field::CHECKSUM);
            put16(buf, ipv4_field::CHECKSUM, d.apply_fast(c));
            d
        }
        IpAddr::V6(a) if v6 => {
            let off = if src {
                ipv6_field::SRC
            } else {
                ipv6_field::DST
            };
            let old = arr16(buf, off);
            let new = a.octets();
            buf[off..off + 16].copy_from_slice(&new);
            Diff::new().addr16(old, new)
        }
        _ => Diff::new(), // family checked by callers
    }
}

fn rewrite(
    buf: &mut [u8],
    info: &PacketInfo,
    side: Side,
    new_addr: IpAddr,
    new_port: u16,
    l4_partial: bool,
) -> Result<(), RewriteError> {
    if new_addr.is_ipv6() != info.v6 {
        return Err(RewriteError::AddrFamily);
    }
    let hdr_len = if info.v6 {
        ipv6_field::LEN
    } else {
        ipv4_field::MIN_LEN
    };
    let ports = info.has_l4() && (info.proto == PROTO_TCP || info.proto == PROTO_UDP);
    let l4_csum = info.has_l4() && (ports || info.proto == PROTO_ICMPV6);
    let port_off = info.l4_off.saturating_add(match side {
        Side::Src => l4_field::SPORT,
        Side::Dst => l4_field::DPORT,
    });
    let mut need = hdr_len;
    if l4_csum {
        need = need.max(info.csum_off.saturating_add(2));
    }
    if ports {
        need = need.max(port_off.saturating_add(2));
    }
    if buf.len() < need {
        return Err(RewriteError::Truncated);
    }

    let diff = set_addr(buf, info.v6, side == Side::Src, new_addr);
    if !l4_csum {
        return Ok(());
    }
    let c = be16(buf, info.csum_off);
    let new_c = if ports {
        let old_port = be16(buf, port_off);
        put16(buf, port_off, new_port);
        if l4_partial {
            diff.apply_partial(c)
        } else if info.proto == PROTO_UDP {
            diff.u16(old_port, new_port).apply_udp(c)
        } else {
            diff.u16(old_port, new_port).apply_fast(c)
        }
    } else if l4_partial {
        diff.apply_partial(c)
    } else {
        diff.apply_fast(c)
    };
    put16(buf, info.csum_off, new_c);
    Ok(())
}

#[cfg(test)]
mod test {
    use super::*;
    use crate::packet::parse::*;
    use crate::packet::testutil::*;
    use crate::packet::vnet::VnetHdr;
    use crate::util::Rng;
    use etherparse::{IpHeaders, IpNumber, Ipv6Extensions, Ipv6FragmentHeader, Ipv6RawExtHeader};
    use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};

    fn sa(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    // IPv4 TCP SYN 12.0.0.10:40000 -> 12.0.0.1:80, no options, seq 1.
    static SYN_IN: [u8; 40] = [
        0x45, 0x00, 0x00, 0x28, 0x1c, 0x46, 0x40, 0x00, 0x40, 0x06, 0x06, 0x80, 0x0c, 0x00, 0x00,
        0x0a, 0x0c, 0x00, 0x00, 0x01, 0x9c, 0x40, 0x00, 0x50, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00,
        0x00, 0x00, 0x50, 0x02, 0xfa, 0xf0, 0x00, 0x56, 0x00, 0x00,
    ];
    // The same after DNAT to 192.168.168.20:8080 (computed by etherparse in full).
    static SYN_OUT: [u8; 40] = [
        0x45, 0x00, 0x00, 0x28, 0x1c, 0x46, 0x40, 0x00, 0x40, 0x06, 0xa9, 0xc3, 0x0c, 0x00, 0x00,
        0x0a, 0xc0, 0xa8, 0xa8, 0x14, 0x9c, 0x40, 0x1f, 0x90, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00,
        0x00, 0x00, 0x50, 0x02, 0xfa, 0xf0, 0x84, 0x59, 0x00, 0x00,
    ];

    #[test]
    fn test_fixture_dnat() {
        assert_eq!(
            &SYN_IN[..],
            &tcp_packet(
                sa("12.0.0.10:40000"),
                sa("12.0.0.1:80"),
                TCP_SYN,
                1,
                0,
                &[],
                &[]
            )[..]
        );
        let mut buf = SYN_IN;
        let info = parse_ip(&buf).unwrap();
        rewrite_dst(
            &mut buf,
            &info,
            "192.168.168.20".parse().unwrap(),
            8080,
            false,
        )
        .unwrap();
        assert_eq!(buf, SYN_OUT);
    }

    fn rand_v4(rng: &mut Rng) -> IpAddr {
        IpAddr::V4(Ipv4Addr::from(rng.next_u32()))
    }
    fn rand_v6(rng: &mut Rng) -> IpAddr {
        IpAddr::V6(Ipv6Addr::from(
            (rng.next_u64() as u128) << 64 | rng.next_u64() as u128,
        ))
    }

    /// Random flows: rewriting must equal building the rewritten packet from scratch,
    /// for fast (full checksum) and partial (seed) checksums, both directions.
    #[test]
    fn rewrite_equals_rebuild() {
        let mut rng = Rng::seeded(11);
        for round in 0..3000 {
            let v6 = round % 2 == 1;
            let addr = |rng: &mut Rng| if v6 { rand_v6(rng) } else { rand_v4(rng) };
            let src = SocketAddr::new(addr(&mut rng), rng.next_u32() as u16);
            let dst = SocketAddr::new(addr(&mut rng), rng.next_u32() as u16);
            let new = SocketAddr::new(addr(&mut rng), rng.next_u32() as u16);
            let plen = rng.below(300) as usize;
            let payload: Vec<u8> = (0..plen).map(|_| rng.next_u32() as u8).collect();
            let udp = rng.below(2) == 0;
            let build = |s: SocketAddr, d: SocketAddr| {
                if udp {
                    udp_packet(s, d, &payload)
                } else {
                    tcp_packet(s, d, TCP_ACK | TCP_PSH, rng_seq(round), 7, &[], &payload)
                }
            };
            let dnat = rng.below(2) == 0;
            let input = build(src, dst);
            let want = if dnat {
                build(src, new)
            } else {
                build(new, dst)
            };
            for partial in [false, true] {
                let mut buf = input.clone();
                let mut want = want.clone();
                if partial {
                    to_partial(&mut buf, 0);
                    to_partial(&mut want, 0);
                }
                let info = parse_ip(&buf).unwrap();
                let r = if dnat {
                    rewrite_dst(&mut buf, &info, new.ip(), new.port(), partial)
                } else {
                    rewrite_src(&mut buf, &info, new.ip(), new.port(), partial)
                };
                r.unwrap();
                // Both checksums verify, then the bytes are identical to the rebuild
                // (RFC 1624 eqn. 3 is exact, and UDP maps 0 to 0xffff on both sides).
                assert!(ipv4_header_checksum_ok(&buf));
                if !partial {
                    assert!(l4_checksum_ok(&buf), "round {round}");
                }
                assert_eq!(
                    buf, want,
                    "round {round} udp {udp} dnat {dnat} partial {partial}"
                );
            }
        }
    }

    fn rng_seq(round: usize) -> u32 {
        (round as u32).wrapping_mul(0x9e37_79b9)
    }

    #[test]
    fn gso_partial_passes_through() {
        let payload = vec![0x5au8; 20_000];
        for (c, v, r) in [
            ("12.0.0.10:40000", "12.0.0.1:80", "192.168.168.20:8080"),
            (
                "[2001:db8::10]:40000",
                "[2001:db8::1]:80",
                "[2001:db8:1::10]:8080",
            ),
        ] {
            let mut buf = tcp_packet(sa(c), sa(v), TCP_ACK, 1, 2, &[], &payload);
            let hdr = to_partial(&mut buf, 1448);
            let info = parse_ip(&buf).unwrap();
            assert_eq!(hdr.l4_partial(&info), Ok(true));
            rewrite_dst(&mut buf, &info, sa(r).ip(), sa(r).port(), true).unwrap();
            let mut want = tcp_packet(sa(c), sa(r), TCP_ACK, 1, 2, &[], &payload);
            let want_hdr = to_partial(&mut want, 1448);
            assert_eq!(hdr, want_hdr);
            assert_eq!(buf, want);
            // and the kernel's completion gives a valid checksum
            complete_partial(&mut buf, &hdr);
            assert!(l4_checksum_ok(&buf));
        }
    }

    #[test]
    fn udp_zero_checksum_stays_zero() {
        let mut buf = udp_packet_no_csum(sa("12.0.0.10:40000"), sa("12.0.0.1:53"), b"query");
        let info = parse_ip(&buf).unwrap();
        rewrite_dst(
            &mut buf,
            &info,
            "192.168.168.10".parse().unwrap(),
            5353,
            false,
        )
        .unwrap();
        let info2 = parse_ip(&buf).unwrap();
        assert_eq!(info2.dport, 5353);
        assert_eq!(&buf[info.csum_off..info.csum_off + 2], &[0, 0]);
        assert!(ipv4_header_checksum_ok(&buf));
    }

    #[test]
    fn udp_computed_zero_becomes_ffff() {
        // Search a destination port that makes the new checksum compute to 0.
        let input = udp_packet(sa("12.0.0.10:40000"), sa("12.0.0.1:53"), b"abcd");
        let info = parse_ip(&input).unwrap();
        let mut hit = false;
        for port in 0..=u16::MAX {
            let mut buf = input.clone();
            rewrite_dst(
                &mut buf,
                &info,
                "192.168.168.10".parse().unwrap(),
                port,
                false,
            )
            .unwrap();
            let c = be16(&buf, info.csum_off);
            assert_ne!(c, 0);
            if c == 0xffff {
                hit = true;
                assert!(l4_checksum_ok(&buf));
            }
        }
        assert!(hit);
    }

    #[test]
    fn icmp_rewrite_keeps_checksums() {
        // ICMPv4 echo: only the IP header changes. ICMPv6: pseudo-header update.
        let mut v4 = icmp_packet(
            "12.0.0.10".parse().unwrap(),
            "12.0.0.1".parse().unwrap(),
            8,
            0,
            [0, 1, 0, 2],
            b"ping",
        );
        let info = parse_ip(&v4).unwrap();
        let l4_before = v4[20..].to_vec();
        rewrite_dst(
            &mut v4,
            &info,
            "192.168.168.10".parse().unwrap(),
            999,
            false,
        )
        .unwrap();
        assert_eq!(&v4[20..], &l4_before[..]);
        assert!(ipv4_header_checksum_ok(&v4) && l4_checksum_ok(&v4));

        let mut v6 = icmp_packet(
            "2001:db8::10".parse().unwrap(),
            "2001:db8::1".parse().unwrap(),
            128,
            0,
            [0, 1, 0, 2],
            b"ping",
        );
        let info = parse_ip(&v6).unwrap();
        rewrite_src(
            &mut v6,
            &info,
            "2001:db8:1::10".parse().unwrap(),
            999,
            false,
        )
        .unwrap();
        let want = icmp_packet(
            "2001:db8:1::10".parse().unwrap(),
            "2001:db8::1".parse().unwrap(),
            128,
            0,
            [0, 1, 0, 2],
            b"ping",
        );
        assert_eq!(v6, want);
    }

    fn v6_with_exts(src: &str, dst: &str, frag: Option<(u16, bool)>, payload: &[u8]) -> Vec<u8> {
        let s: SocketAddr = sa(src);
        let d: SocketAddr = sa(dst);
        let mut ip = ip_headers(s.ip(), d.ip(), 64);
        if let IpHeaders::Ipv6(_, exts) = &mut ip {
            *exts = Ipv6Extensions {
                hop_by_hop_options: Some(
                    Ipv6RawExtHeader::new_raw(IpNumber::TCP, &[1, 4, 0, 0, 0, 0]).unwrap(),
                ),
                destination_options: Some(
                    Ipv6RawExtHeader::new_raw(IpNumber::TCP, &[1, 4, 0, 0, 0, 0]).unwrap(),
                ),
                routing: None,
                fragment: frag.map(|(off, more)| {
                    Ipv6FragmentHeader::new(IpNumber::TCP, off.try_into().unwrap(), more, 77)
                }),
                auth: None,
            };
        }
        tcp_packet_with(
            ip,
            tcp_header(s.port(), d.port(), TCP_ACK, 9, 9, &[]),
            payload,
        )
    }

    #[test]
    fn ipv6_extension_headers() {
        let mut buf = v6_with_exts("[2001:db8::10]:40000", "[2001:db8::1]:80", None, b"hello!!");
        let info = parse_ip(&buf).unwrap();
        assert_eq!(info.l4_off, 40 + 8 + 8);
        assert_eq!((info.proto, info.sport, info.dport), (PROTO_TCP, 40000, 80));
        rewrite_dst(
            &mut buf,
            &info,
            "2001:db8:1::10".parse().unwrap(),
            8080,
            false,
        )
        .unwrap();
        let want = v6_with_exts(
            "[2001:db8::10]:40000",
            "[2001:db8:1::10]:8080",
            None,
            b"hello!!",
        );
        assert_eq!(buf, want);
    }

    #[test]
    fn fragments() {
        // IPv4 first fragment: the L4 checksum (of the whole datagram) is updated too.
        let whole = tcp_packet(
            sa("12.0.0.10:40000"),
            sa("12.0.0.1:80"),
            TCP_ACK,
            1,
            1,
            &[],
            &[3u8; 64],
        );
        let mut first = whole[..20 + 32].to_vec();
        first[2..4].copy_from_slice(&52u16.to_be_bytes());
        first[6] = 0x20; // MF, offset 0
        let c = etherparse::Ipv4HeaderSlice::from_slice(&first)
            .unwrap()
            .to_header()
            .calc_header_checksum();
        first[10..12].copy_from_slice(&c.to_be_bytes());
        assert_eq!(parse_ip(&first), Err(ParseError::Fragment));
        let info = parse_ip_frag(&first).unwrap();
        assert!(info.is_fragment && info.first_fragment && info.has_l4());
        rewrite_dst(
            &mut first,
            &info,
            "192.168.168.20".parse().unwrap(),
            8080,
            false,
        )
        .unwrap();
        let want = tcp_packet(
            sa("12.0.0.10:40000"),
            sa("192.168.168.20:8080"),
            TCP_ACK,
            1,
            1,
            &[],
            &[3u8; 64],
        );
        assert_eq!(&first[20..52], &want[20..52]);
        assert!(ipv4_header_checksum_ok(&first));

        // A later fragment: only the IP header changes.
        let mut later = first.clone();
        later[6] = 0x00;
        later[7] = 4; // offset 32 bytes, last
        let c = etherparse::Ipv4HeaderSlice::from_slice(&later)
            .unwrap()
            .to_header()
            .calc_header_checksum();
        later[10..12].copy_from_slice(&c.to_be_bytes());
        let info = parse_ip_frag(&later).unwrap();
        assert!(info.is_fragment && !info.first_fragment && !info.has_l4());
        let l4 = later[20..].to_vec();
        rewrite_src(&mut later, &info, "12.0.0.99".parse().unwrap(), 1, false).unwrap();
        assert_eq!(&later[20..], &l4[..]);
        assert!(ipv4_header_checksum_ok(&later));

        // IPv6 later fragment.
        let mut v6 = v6_with_exts(
            "[2001:db8::10]:40000",
            "[2001:db8::1]:80",
            Some((3, false)),
            b"xy",
        );
        let info = parse_ip_frag(&v6).unwrap();
        assert!(info.is_fragment && !info.first_fragment && !info.has_l4());
        rewrite_dst(
            &mut v6,
            &info,
            "2001:db8:1::10".parse().unwrap(),
            8080,
            false,
        )
        .unwrap();
        assert_eq!(
            &v6[24..40],
            &"2001:db8:1::10".parse::<Ipv6Addr>().unwrap().octets()
        );
    }

    #[test]
    fn family_mismatch_and_short_buffers_are_refused() {
        let mut buf = SYN_IN;
        let info = parse_ip(&buf).unwrap();
        assert_eq!(
            rewrite_dst(&mut buf, &info, "2001:db8::1".parse().unwrap(), 1, false),
            Err(RewriteError::AddrFamily)
        );
        assert_eq!(buf, SYN_IN);
        for n in 0..SYN_IN.len() {
            let mut short = SYN_IN[..n].to_vec();
            let r = rewrite_src(&mut short, &info, "1.2.3.4".parse().unwrap(), 1, false);
            if n < 38 {
                assert_eq!(r, Err(RewriteError::Truncated), "len {n}");
                assert_eq!(&short[..], &SYN_IN[..n]);
            }
            let mut short = SYN_IN[..n].to_vec();
            let _ = decrement_ttl(&mut short, &info);
        }
        // hostile PacketInfo: offsets past the end
        let mut bogus = info;
        bogus.csum_off = usize::MAX;
        assert_eq!(
            rewrite_dst(&mut buf, &bogus, "1.2.3.4".parse().unwrap(), 1, false),
            Err(RewriteError::Truncated)
        );
        bogus = info;
        bogus.l4_off = usize::MAX - 1;
        assert!(rewrite_dst(&mut buf, &bogus, "1.2.3.4".parse().unwrap(), 1, false).is_err());
        assert_eq!(buf, SYN_IN);
    }

    #[test]
    fn error_names() {
        for (i, e) in RewriteError::ALL.iter().enumerate() {
            assert_eq!(e.index(), i);
            assert_eq!(e.to_string(), e.name());
        }
        assert_eq!(RewriteError::BadEmbedded.name(), "bad_embedded");
    }

    #[test]
    fn ttl() {
        let mut buf = SYN_IN;
        let info = parse_ip(&buf).unwrap();
        assert!(decrement_ttl(&mut buf, &info));
        assert_eq!(buf[8], 63);
        assert!(ipv4_header_checksum_ok(&buf));
        buf[8] = 2;
        let c = etherparse::Ipv4HeaderSlice::from_slice(&buf)
            .unwrap()
            .to_header()
            .calc_header_checksum();
        buf[10..12].copy_from_slice(&c.to_be_bytes());
        assert!(decrement_ttl(&mut buf, &info));
        assert!(ipv4_header_checksum_ok(&buf));
        let before = buf;
        assert!(!decrement_ttl(&mut buf, &info));
        assert_eq!(buf, before);
        buf[8] = 0;
        assert!(!decrement_ttl(&mut buf, &info));

        let mut v6 = tcp_packet(
            sa("[2001:db8::10]:1"),
            sa("[2001:db8::1]:2"),
            TCP_SYN,
            0,
            0,
            &[],
            &[],
        );
        let info = parse_ip(&v6).unwrap();
        assert!(decrement_ttl(&mut v6, &info));
        assert_eq!(v6[7], 63);
        v6[7] = 1;
        assert!(!decrement_ttl(&mut v6, &info));
    }

    #[test]
    fn vnet_partial_flag_from_header() {
        let mut buf = tcp_packet(
            sa("12.0.0.10:40000"),
            sa("12.0.0.1:80"),
            TCP_SYN,
            1,
            0,
            &SYN_OPTIONS,
            &[],
        );
        let hdr = to_partial(&mut buf, 0);
        let info = parse_ip(&buf).unwrap();
        let partial = hdr.l4_partial(&info).unwrap();
        assert!(partial);
        rewrite_dst(
            &mut buf,
            &info,
            "192.168.168.10".parse().unwrap(),
            80,
            partial,
        )
        .unwrap();
        complete_partial(&mut buf, &hdr);
        assert!(l4_checksum_ok(&buf));
        assert!(!VnetHdr::default().l4_partial(&info).unwrap());
    }
}
