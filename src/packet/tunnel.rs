//! Tunnel encapsulation (IPVS `-i`, spec §3.15): the outer IPv4 header and, for GUE
//! and GRE, the UDP + GUE or GRE header between it and the inner packet, exactly as
//! the kernel's `ip_vs_tunnel_xmit` builds them.
//!
//! Contract:
//! * [`write_outer`] fills `frame[..hlen]` in front of an inner packet that occupies
//!   exactly `frame[hlen..]` (the caller made room, e.g. with `PacketBuf::prepend`, and
//!   cut any trailing bytes). It never allocates and never panics; on error nothing
//!   was written.
//! * Outer IPv4 fields (kernel `ip_vs_prepare_tunneled_skb` + `ip_vs_tunnel_xmit`):
//!   version 4, IHL 5; TOS = the inner DSCP with the inner ECN, except that CE becomes
//!   ECT(0) (`INET_ECN_encapsulate`); total length; ID 0 when DF is set, else the
//!   caller's per-destination counter; DF copied from an IPv4 inner packet when
//!   `pmtu_disc` (never for IPv6 inner); TTL = the inner TTL/hop limit (already
//!   decremented for this hop) plus [`Outer::local_hops`]; protocol 4 / 41 / 17 / 47;
//!   header checksum.
//! * GUE (`ipvs_gue_encap`): UDP source port from the caller ([`gue_src_port`] of a
//!   [`flow_hash`]), destination `port`, length, checksum 0 for [`GueCsum::None`] and a
//!   full checksum otherwise (`udp_set_csum`); GUE version 0, C 0, `proto_ctype` 4 or
//!   41. With [`GueCsum::RemCsum`] and an inner packet whose L4 checksum is still a
//!   pseudo-header seed, the header carries the private-flags option: `hlen` 2, flags
//!   `PRIV`, private flags `REMCSUM`, then the checksum start and start + offset,
//!   relative to the inner packet; the inner checksum stays a seed for the receiver
//!   to complete.
//! * GRE (`ipvs_gre_encap`/`gre_build_header`): version 0, protocol 0x0800 / 0x86DD,
//!   only the C bit with [`Encap::Gre`] `csum`, then the checksum of GRE header +
//!   payload (no pseudo-header) and 2 reserved zero bytes.

use std::hash::BuildHasher;
use std::net::{IpAddr, Ipv4Addr};

use super::csum::{checksum, fold, pseudo_v4, sum};
use super::nat::put16;
use super::parse::{ipv4_field, ipv6_field, PROTO_UDP};

/// IP protocol number of IPv4-in-IP (IPIP).
pub const IPPROTO_IPIP: u8 = 4;
/// IP protocol number of IPv6-in-IP.
pub const IPPROTO_IPV6: u8 = 41;
/// IP protocol number of GRE.
pub const IPPROTO_GRE: u8 = 47;
/// Length of the outer IPv4 header (no options).
pub const OUTER_IPV4_LEN: usize = 20;
/// Length of the UDP header in front of GUE.
pub const UDP_HDR_LEN: usize = 8;
/// Length of the base GUE header.
pub const GUE_HDR_LEN: usize = 4;
/// Length of the GUE options IPVS adds for remote checksum offload
/// (`GUE_LEN_PRIV` + `GUE_PLEN_REMCSUM`).
pub const GUE_REMCSUM_OPT_LEN: usize = 8;
/// GUE flag: a private-flags word follows.
pub const GUE_FLAG_PRIV: u16 = 0x0001;
/// GUE private flag: remote checksum offload (start and offset follow).
pub const GUE_PFLAG_REMCSUM: u32 = 0x8000_0000;
/// Length of the base GRE header.
pub const GRE_HDR_LEN: usize = 4;
/// Length of the GRE checksum field plus its reserved half.
pub const GRE_CSUM_LEN: usize = 4;
/// GRE flag: checksum present.
pub const GRE_FLAG_CSUM: u16 = 0x8000;
/// Ethertype of IPv4 (GRE protocol field).
pub const ETH_P_IP: u16 = 0x0800;
/// Ethertype of IPv6 (GRE protocol field).
pub const ETH_P_IPV6: u16 = 0x86dd;
/// The DF bit in the IPv4 flags/fragment-offset word.
pub const IP_DF: u16 = 0x4000;
/// The largest outer header [`write_outer`] writes (IPv4 + UDP + GUE + REMCSUM option).
pub const MAX_OUTER_LEN: usize = OUTER_IPV4_LEN + UDP_HDR_LEN + GUE_HDR_LEN + GUE_REMCSUM_OPT_LEN;

/// GUE checksum option (`--tun-nocsum` / `--tun-csum` / `--tun-remcsum`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum GueCsum {
    /// Outer UDP checksum 0.
    None,
    /// Outer UDP checksum computed.
    Csum,
    /// Outer UDP checksum computed; partial inner checksums are left to the receiver.
    RemCsum,
}

/// The encapsulation of a tunnel destination.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Encap {
    /// IP in IP: the outer IPv4 header only.
    Ipip,
    /// Generic UDP Encapsulation to UDP port `port`.
    Gue {
        /// Destination port (`--tun-port`).
        port: u16,
        /// Checksum option.
        csum: GueCsum,
    },
    /// GRE, with or without its checksum.
    Gre {
        /// `--tun-csum`.
        csum: bool,
    },
}

impl Encap {
    /// True if a packet whose L4 checksum is partial gets the GUE REMCSUM option.
    pub const fn uses_remcsum(self, partial: bool) -> bool {
        partial
            && matches!(
                self,
                Encap::Gue {
                    csum: GueCsum::RemCsum,
                    ..
                }
            )
    }

    /// Bytes between the outer IPv4 header and the inner packet.
    pub const fn tunnel_hdr_len(self, remcsum: bool) -> usize {
        match self {
            Encap::Ipip => 0,
            Encap::Gue { .. } => {
                UDP_HDR_LEN + GUE_HDR_LEN + if remcsum { GUE_REMCSUM_OPT_LEN } else { 0 }
            }
            Encap::Gre { csum } => GRE_HDR_LEN + if csum { GRE_CSUM_LEN } else { 0 },
        }
    }

    /// All the bytes encapsulation adds (outer IPv4 header included): what the inner
    /// MTU is smaller than the route MTU (spec §3.15).
    pub const fn overhead(self, remcsum: bool) -> usize {
        OUTER_IPV4_LEN + self.tunnel_hdr_len(remcsum)
    }

    /// The protocol of the outer IPv4 header for an inner packet of this family.
    pub const fn outer_proto(self, inner_v6: bool) -> u8 {
        match self {
            Encap::Ipip if inner_v6 => IPPROTO_IPV6,
            Encap::Ipip => IPPROTO_IPIP,
            Encap::Gue { .. } => PROTO_UDP,
            Encap::Gre { .. } => IPPROTO_GRE,
        }
    }
}

/// The outer-header fields the caller decides (the rest comes from the inner packet).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Outer {
    /// Outer source: the address the routing table selects for reaching the real server.
    pub src: Ipv4Addr,
    /// Outer destination: the real server.
    pub dst: Ipv4Addr,
    /// IP ID, used only when the outer header has no DF (else 0).
    pub id: u16,
    /// `net.ipv4.vs.pmtu_disc`: copy DF from the inner packet (default on).
    pub pmtu_disc: bool,
    /// Hops the outer packet makes inside this host before it leaves: added to the TTL
    /// so that it leaves with the inner TTL, as the kernel's does. 1 in tun mode (the
    /// kernel forwards what tunvs writes into the device), 0 when tunvs writes to the
    /// wire itself.
    pub local_hops: u8,
    /// GUE only: the UDP source port.
    pub sport: u16,
}

/// Why [`write_outer`] refused (nothing was written).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum EncapError {
    /// The frame is shorter than the header length plus an IP header.
    Truncated,
    /// The inner packet is neither IPv4 nor IPv6.
    BadInner,
    /// The encapsulated packet would be longer than 65535 bytes.
    TooBig,
    /// The REMCSUM checksum start/offset do not lie inside the inner packet.
    BadCsumStart,
}

impl EncapError {
    /// Counter name.
    pub const fn name(self) -> &'static str {
        match self {
            EncapError::Truncated => "encap_truncated",
            EncapError::BadInner => "encap_bad_inner",
            EncapError::TooBig => "encap_too_big",
            EncapError::BadCsumStart => "encap_bad_csum_start",
        }
    }
}

impl std::fmt::Display for EncapError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::error::Error for EncapError {}

/// `INET_ECN_encapsulate(inner, inner)`: keep the DSCP, copy ECN except CE → ECT(0).
pub const fn ecn_encapsulate(tos: u8) -> u8 {
    let ecn = tos & 3;
    (tos & !3) | if ecn == 3 { 2 } else { ecn }
}

/// What the outer header copies from the inner one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct InnerFields {
    v6: bool,
    tos: u8,
    ttl: u8,
    df: bool,
}

fn inner_fields(inner: &[u8]) -> Result<InnerFields, EncapError> {
    match inner.first().map(|b| b >> 4) {
        Some(4) if inner.len() >= ipv4_field::MIN_LEN => Ok(InnerFields {
            v6: false,
            tos: inner[1],
            ttl: inner[ipv4_field::TTL],
            df: inner[ipv4_field::FRAG] & 0x40 != 0,
        }),
        Some(6) if inner.len() >= ipv6_field::LEN => Ok(InnerFields {
            v6: true,
            tos: (inner[0] << 4) | (inner[1] >> 4),
            ttl: inner[ipv6_field::HOP_LIMIT],
            df: false,
        }),
        None => Err(EncapError::Truncated),
        Some(4) | Some(6) => Err(EncapError::Truncated),
        _ => Err(EncapError::BadInner),
    }
}

/// Fill `frame[..hlen]` with the outer headers for the inner packet in `frame[hlen..]`,
/// where `hlen = encap.overhead(remcsum.is_some())`. `remcsum` is the inner packet's
/// `(csum_start, csum_offset)` (relative to the inner packet) when its L4 checksum is a
/// seed and `encap` uses REMCSUM; pass `None` otherwise. Returns `hlen`.
pub fn write_outer(
    frame: &mut [u8],
    encap: Encap,
    outer: &Outer,
    remcsum: Option<(u16, u16)>,
) -> Result<usize, EncapError> {
    let remcsum = if matches!(
        encap,
        Encap::Gue {
            csum: GueCsum::RemCsum,
            ..
        }
    ) {
        remcsum
    } else {
        None
    };
    let hlen = encap.overhead(remcsum.is_some());
    if frame.len() < hlen {
        return Err(EncapError::Truncated);
    }
    let (hdr, inner) = frame.split_at_mut(hlen);
    let f = inner_fields(inner)?;
    let total = hlen + inner.len();
    if total > u16::MAX as usize {
        return Err(EncapError::TooBig);
    }
    if let Some((start, off)) = remcsum {
        let (start, off) = (start as usize, off as usize);
        if start + off + 2 > inner.len() {
            return Err(EncapError::BadCsumStart);
        }
    }
    let df = outer.pmtu_disc && f.df;
    let proto = encap.outer_proto(f.v6);
    let (ip, tun) = hdr.split_at_mut(OUTER_IPV4_LEN);
    ip[0] = 0x45;
    ip[1] = ecn_encapsulate(f.tos);
    put16(ip, ipv4_field::TOTAL_LEN, total as u16);
    put16(ip, 4, if df { 0 } else { outer.id });
    put16(ip, ipv4_field::FRAG, if df { IP_DF } else { 0 });
    ip[ipv4_field::TTL] = f.ttl.saturating_add(outer.local_hops);
    ip[ipv4_field::PROTO] = proto;
    put16(ip, ipv4_field::CHECKSUM, 0);
    ip[ipv4_field::SRC..ipv4_field::SRC + 4].copy_from_slice(&outer.src.octets());
    ip[ipv4_field::DST..ipv4_field::DST + 4].copy_from_slice(&outer.dst.octets());
    let c = checksum(ip);
    put16(ip, ipv4_field::CHECKSUM, c);
    match encap {
        Encap::Ipip => {}
        Encap::Gue { port, csum } => {
            let inner_proto = if f.v6 { IPPROTO_IPV6 } else { IPPROTO_IPIP };
            let udp_len = tun.len() + inner.len();
            let (udp, gue) = tun.split_at_mut(UDP_HDR_LEN);
            put16(udp, 0, outer.sport);
            put16(udp, 2, port);
            put16(udp, 4, udp_len as u16);
            put16(udp, 6, 0);
            let hl = (gue.len() - GUE_HDR_LEN) / 4;
            gue[0] = hl as u8; // version 0, C 0, hlen
            gue[1] = inner_proto;
            match remcsum {
                Some((start, off)) => {
                    put16(gue, 2, GUE_FLAG_PRIV);
                    gue[4..8].copy_from_slice(&GUE_PFLAG_REMCSUM.to_be_bytes());
                    put16(gue, 8, start);
                    put16(gue, 10, start + off);
                }
                None => put16(gue, 2, 0),
            }
            if csum != GueCsum::None {
                let s = pseudo_v4(
                    &outer.src.octets(),
                    &outer.dst.octets(),
                    PROTO_UDP,
                    udp_len as u32,
                );
                let s = sum(inner, sum(tun, s));
                let c = match !fold(s) {
                    0 => 0xffff,
                    c => c,
                };
                put16(tun, 6, c);
            }
        }
        Encap::Gre { csum } => {
            put16(tun, 0, if csum { GRE_FLAG_CSUM } else { 0 });
            put16(tun, 2, if f.v6 { ETH_P_IPV6 } else { ETH_P_IP });
            if csum {
                tun[4..8].fill(0);
                let c = !fold(sum(inner, sum(tun, 0)));
                put16(tun, 4, c);
            }
        }
    }
    Ok(hlen)
}

/// A hash of the inner flow (addresses, protocol, ports) under `seed`: stable for the
/// life of a flow, so every packet of a GUE flow gets the same UDP source port.
pub fn flow_hash(seed: u64, src: IpAddr, dst: IpAddr, proto: u8, sport: u16, dport: u16) -> u32 {
    let h = foldhash::fast::FixedState::with_seed(seed).hash_one((src, dst, proto, sport, dport));
    (h ^ (h >> 32)) as u32
}

/// The kernel's `udp_flow_src_port`: map a flow hash into `[lo, hi)` (the local port
/// range, `net.ipv4.ip_local_port_range`) after folding its low half into the high one.
pub const fn gue_src_port(hash: u32, lo: u16, hi: u16) -> u16 {
    let (lo, hi) = if lo < hi { (lo, hi) } else { (32768, 60999) };
    let h = hash ^ (hash << 16);
    (((h as u64 * (hi - lo) as u64) >> 32) as u16) + lo
}

#[cfg(test)]
mod test {
    use super::*;
    use crate::packet::testutil::{ipv4_header_checksum_ok, tcp_packet};
    use crate::packet::TCP_ACK;

    fn inner() -> Vec<u8> {
        // TTL 63 (as forwarded into the device), DF, TOS 0xb8 | ECN CE.
        let mut p = tcp_packet(
            "10.0.0.2:40000".parse().unwrap(),
            "207.175.44.110:8080".parse().unwrap(),
            TCP_ACK,
            1,
            2,
            &[],
            b"hello",
        );
        p[1] = 0xbb;
        p[8] = 63;
        p[10] = 0;
        p[11] = 0;
        let c = checksum(&p[..20]);
        p[10..12].copy_from_slice(&c.to_be_bytes());
        p
    }

    fn outer() -> Outer {
        Outer {
            src: Ipv4Addr::new(172, 16, 0, 1),
            dst: Ipv4Addr::new(172, 16, 0, 2),
            id: 0x1234,
            pmtu_disc: true,
            local_hops: 0,
            sport: 50000,
        }
    }

    fn encap(e: Encap, o: &Outer, inner: &[u8], rem: Option<(u16, u16)>) -> Vec<u8> {
        let hl = e.overhead(rem.is_some() && e.uses_remcsum(true));
        let mut f = vec![0xa5u8; hl];
        f.extend_from_slice(inner);
        assert_eq!(write_outer(&mut f, e, o, rem), Ok(hl));
        assert_eq!(&f[hl..], inner);
        f
    }

    #[test]
    fn ipip_outer_fields() {
        let i = inner();
        let f = encap(Encap::Ipip, &outer(), &i, None);
        assert_eq!(f.len(), 20 + i.len());
        assert_eq!(f[0], 0x45);
        assert_eq!(f[1], 0xba, "CE becomes ECT(0), DSCP kept");
        assert_eq!(u16::from_be_bytes([f[2], f[3]]) as usize, f.len());
        assert_eq!(&f[4..6], &[0, 0], "DF: id 0");
        assert_eq!(&f[6..8], &[0x40, 0]);
        assert_eq!(f[8], 63);
        assert_eq!(f[9], IPPROTO_IPIP);
        assert_eq!(&f[12..16], &[172, 16, 0, 1]);
        assert_eq!(&f[16..20], &[172, 16, 0, 2]);
        assert!(ipv4_header_checksum_ok(&f));
        // No DF: the caller's id, no DF; local hops added to the TTL.
        let mut i2 = i.clone();
        i2[6] = 0;
        let o = Outer {
            local_hops: 1,
            ..outer()
        };
        let f = encap(Encap::Ipip, &o, &i2, None);
        assert_eq!(&f[4..8], &[0x12, 0x34, 0, 0]);
        assert_eq!(f[8], 64);
        // pmtu_disc off: no DF even when the inner has it.
        let o = Outer {
            pmtu_disc: false,
            ..outer()
        };
        let f = encap(Encap::Ipip, &o, &i, None);
        assert_eq!(&f[4..8], &[0x12, 0x34, 0, 0]);
    }

    #[test]
    fn ecn() {
        assert_eq!(ecn_encapsulate(0x00), 0x00);
        assert_eq!(ecn_encapsulate(0x01), 0x01);
        assert_eq!(ecn_encapsulate(0x02), 0x02);
        assert_eq!(ecn_encapsulate(0x03), 0x02);
        assert_eq!(ecn_encapsulate(0xff), 0xfe);
    }

    #[test]
    fn gue_header_and_checksum() {
        let i = inner();
        for csum in [GueCsum::None, GueCsum::Csum, GueCsum::RemCsum] {
            let e = Encap::Gue { port: 6080, csum };
            let f = encap(e, &outer(), &i, None);
            assert_eq!(f[9], 17);
            let udp = &f[20..];
            assert_eq!(u16::from_be_bytes([udp[0], udp[1]]), 50000);
            assert_eq!(u16::from_be_bytes([udp[2], udp[3]]), 6080);
            assert_eq!(u16::from_be_bytes([udp[4], udp[5]]) as usize, udp.len());
            assert_eq!(&udp[8..12], &[0, IPPROTO_IPIP, 0, 0]);
            let c = u16::from_be_bytes([udp[6], udp[7]]);
            if csum == GueCsum::None {
                assert_eq!(c, 0);
            } else {
                let s = pseudo_v4(&[172, 16, 0, 1], &[172, 16, 0, 2], 17, udp.len() as u32);
                assert_eq!(fold(sum(udp, s)), 0xffff, "udp checksum verifies");
            }
        }
    }

    #[test]
    fn gue_remcsum_option() {
        let i = inner();
        let e = Encap::Gue {
            port: 6080,
            csum: GueCsum::RemCsum,
        };
        let f = encap(e, &outer(), &i, Some((20, 16)));
        assert_eq!(f.len(), 20 + 8 + 12 + i.len());
        let g = &f[28..40];
        assert_eq!(g, &[2, 4, 0, 1, 0x80, 0, 0, 0, 0, 20, 0, 36]);
        // REMCSUM is ignored for other encapsulations.
        let f = encap(Encap::Ipip, &outer(), &i, Some((20, 16)));
        assert_eq!(f.len(), 20 + i.len());
        let mut f = vec![0u8; 40 + 10];
        f[40] = 0x45;
        assert_eq!(
            write_outer(&mut f, e, &outer(), Some((20, 16))),
            Err(EncapError::Truncated)
        );
        let mut f = vec![0u8; 40];
        f.extend_from_slice(&i);
        assert_eq!(
            write_outer(&mut f, e, &outer(), Some((40, 16))),
            Err(EncapError::BadCsumStart)
        );
    }

    #[test]
    fn gre_header_and_checksum() {
        let i = inner();
        let f = encap(Encap::Gre { csum: false }, &outer(), &i, None);
        assert_eq!(f[9], IPPROTO_GRE);
        assert_eq!(&f[20..24], &[0, 0, 0x08, 0x00]);
        let f = encap(Encap::Gre { csum: true }, &outer(), &i, None);
        assert_eq!(&f[20..22], &[0x80, 0]);
        assert_eq!(&f[26..28], &[0, 0]);
        assert_eq!(fold(sum(&f[20..], 0)), 0xffff, "gre checksum verifies");
    }

    #[test]
    fn ipv6_inner() {
        let mut i = tcp_packet(
            "[2001:db8::10]:40000".parse().unwrap(),
            "[2001:db8::1]:80".parse().unwrap(),
            TCP_ACK,
            1,
            2,
            &[],
            b"x",
        );
        i[0] = 0x6b; // traffic class 0xb3 (ECN CE)
        i[1] = 0x30;
        let f = encap(Encap::Ipip, &outer(), &i, None);
        assert_eq!(f[9], IPPROTO_IPV6);
        assert_eq!(f[1], 0xb2);
        assert_eq!(&f[4..8], &[0x12, 0x34, 0, 0], "IPv6 inner: no DF");
        assert_eq!(f[8], 64);
        let f = encap(Encap::Gre { csum: false }, &outer(), &i, None);
        assert_eq!(&f[22..24], &[0x86, 0xdd]);
        let f = encap(
            Encap::Gue {
                port: 1,
                csum: GueCsum::None,
            },
            &outer(),
            &i,
            None,
        );
        assert_eq!(f[29], IPPROTO_IPV6);
    }

    #[test]
    fn bad_inputs_write_nothing() {
        let mut f = vec![0xa5u8; 30];
        f[20] = 0x75;
        assert_eq!(
            write_outer(&mut f, Encap::Ipip, &outer(), None),
            Err(EncapError::BadInner)
        );
        assert!(f[..20].iter().all(|&b| b == 0xa5));
        let mut f = vec![0xa5u8; 20];
        assert_eq!(
            write_outer(&mut f, Encap::Ipip, &outer(), None),
            Err(EncapError::Truncated)
        );
        let mut f = vec![0xa5u8; 19];
        assert_eq!(
            write_outer(&mut f, Encap::Ipip, &outer(), None),
            Err(EncapError::Truncated)
        );
        let mut f = vec![0u8; 65536];
        f[20] = 0x45;
        assert_eq!(
            write_outer(&mut f, Encap::Ipip, &outer(), None),
            Err(EncapError::TooBig)
        );
    }

    #[test]
    fn src_port_in_range_and_stable() {
        let a: IpAddr = "10.0.0.2".parse().unwrap();
        let b: IpAddr = "207.175.44.110".parse().unwrap();
        let h = flow_hash(7, a, b, 6, 40000, 8080);
        assert_eq!(h, flow_hash(7, a, b, 6, 40000, 8080));
        assert_ne!(h, flow_hash(7, a, b, 6, 40001, 8080));
        let mut seen = std::collections::HashSet::new();
        for p in 0..2000u16 {
            let s = gue_src_port(flow_hash(7, a, b, 6, p, 8080), 32768, 60999);
            assert!((32768..60999).contains(&s));
            seen.insert(s);
        }
        assert!(seen.len() > 1900, "ports spread: {}", seen.len());
        // the kernel's arithmetic
        assert_eq!(gue_src_port(0, 32768, 60999), 32768);
        assert_eq!(gue_src_port(0xffff_0000, 32768, 60999), 32768 + 28230);
        assert_eq!(gue_src_port(0x8000_0000, 32768, 60999), 32768 + 14115);
        // the low half is folded into the high one first
        assert_eq!(gue_src_port(0x8000, 32768, 60999), 32768 + 14115);
    }
}
