//! Decapsulation on a real server (`tunvs realserver tunnel`): check the outer headers
//! of an IPIP, GRE or GUE packet and find the inner packet to inject.
//!
//! Contract:
//! * [`decap_ipip`] and [`decap_gre`] take the whole outer IPv4 packet, as a raw socket
//!   of protocol 4 or 47 reads it; [`decap_gue`] takes the UDP payload, as a UDP socket
//!   reads it (the kernel has checked the outer IP and UDP headers then).
//! * The outer IPv4 header is checked in full: version, IHL, total length against the
//!   bytes read, header checksum, no fragment (the kernel reassembles before raw
//!   sockets see it), protocol.
//! * GRE: version 0, no routing bit; checksum (C) verified when present; key and
//!   sequence fields skipped; protocol 0x0800 or 0x86DD. GUE: version 0 with C = 0
//!   (a data message) and a known inner protocol (4 or 41), or version 1 (the payload
//!   is the IP packet itself); flags other than PRIV, and private flags other than
//!   REMCSUM, are refused; a REMCSUM option is returned for [`apply_remcsum`].
//! * [`check_inner`] accepts only an inner packet of the expected family, with a sane
//!   header, addressed to the VIP: a decapsulator is not an open relay.
//! * Every refusal is a [`DecapError`] with a counter name. Nothing panics or allocates.

use std::fmt;
use std::net::IpAddr;
use std::ops::Range;

use super::csum::{checksum, fold, sum};
use super::nat::put16;
use super::parse::{arr16, arr4, be16, ipv4_field, ipv6_field};
use super::tunnel::{
    ETH_P_IP, ETH_P_IPV6, GRE_FLAG_CSUM, GUE_FLAG_PRIV, GUE_HDR_LEN, GUE_PFLAG_REMCSUM,
    IPPROTO_GRE, IPPROTO_IPIP, IPPROTO_IPV6,
};

/// GRE flag: routing present (obsolete; refused).
pub const GRE_FLAG_ROUTING: u16 = 0x4000;
/// GRE flag: key present.
pub const GRE_FLAG_KEY: u16 = 0x2000;
/// GRE flag: sequence number present.
pub const GRE_FLAG_SEQ: u16 = 0x1000;
/// GRE version bits.
pub const GRE_VERSION_MASK: u16 = 0x0007;

/// Why an encapsulated packet was dropped.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DecapError {
    /// Shorter than its headers, or than the lengths they claim.
    Truncated,
    /// Outer IP version is not 4.
    OuterVersion,
    /// Outer IHL < 5 or total length inconsistent.
    OuterHeader,
    /// Outer IPv4 header checksum wrong.
    OuterChecksum,
    /// Outer packet is a fragment.
    OuterFragment,
    /// Outer protocol is not the one this decapsulator reads.
    OuterProto,
    /// GRE version, routing bit or unknown flags.
    GreFlags,
    /// GRE checksum wrong.
    GreChecksum,
    /// GRE/GUE inner protocol not IPv4/IPv6.
    InnerProto,
    /// GUE version or control bit (a control message).
    GueVersion,
    /// GUE flags or private flags this decapsulator does not know.
    GueFlags,
    /// GUE REMCSUM option pointing outside the inner packet.
    GueRemcsum,
    /// The inner packet is not a sane IPv4/IPv6 packet of the VIP's family.
    InnerHeader,
    /// The inner packet is not addressed to the VIP.
    NotVip,
    /// The outer packet does not come from the director the decapsulator accepts.
    NotDirector,
}

impl DecapError {
    /// Every variant, in [`DecapError::index`] order.
    pub const ALL: [DecapError; 15] = [
        DecapError::Truncated,
        DecapError::OuterVersion,
        DecapError::OuterHeader,
        DecapError::OuterChecksum,
        DecapError::OuterFragment,
        DecapError::OuterProto,
        DecapError::GreFlags,
        DecapError::GreChecksum,
        DecapError::InnerProto,
        DecapError::GueVersion,
        DecapError::GueFlags,
        DecapError::GueRemcsum,
        DecapError::InnerHeader,
        DecapError::NotVip,
        DecapError::NotDirector,
    ];

    /// Position in [`DecapError::ALL`].
    pub const fn index(self) -> usize {
        self as usize
    }

    /// Counter name.
    pub const fn name(self) -> &'static str {
        match self {
            DecapError::Truncated => "truncated",
            DecapError::OuterVersion => "outer_version",
            DecapError::OuterHeader => "outer_header",
            DecapError::OuterChecksum => "outer_checksum",
            DecapError::OuterFragment => "outer_fragment",
            DecapError::OuterProto => "outer_proto",
            DecapError::GreFlags => "gre_flags",
            DecapError::GreChecksum => "gre_checksum",
            DecapError::InnerProto => "inner_proto",
            DecapError::GueVersion => "gue_version",
            DecapError::GueFlags => "gue_flags",
            DecapError::GueRemcsum => "gue_remcsum",
            DecapError::InnerHeader => "inner_header",
            DecapError::NotVip => "not_vip",
            DecapError::NotDirector => "not_director",
        }
    }
}

impl fmt::Display for DecapError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl std::error::Error for DecapError {}

/// Where the inner packet is, and what is left to do to it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decapped {
    /// The inner packet's bytes in the input (trailing bytes may follow; see
    /// [`check_inner`] for its own length).
    pub inner: Range<usize>,
    /// True if the tunnel header says the inner packet is IPv6.
    pub inner_v6: bool,
    /// GUE REMCSUM: `(start, offset)` of the inner L4 checksum to complete, relative
    /// to the inner packet (the offset is from `start`).
    pub remcsum: Option<(usize, usize)>,
}

/// Check an outer IPv4 header of protocol `proto`; returns (IHL, total length).
fn outer_v4(pkt: &[u8], proto: u8) -> Result<(usize, usize), DecapError> {
    if pkt.is_empty() {
        return Err(DecapError::Truncated);
    }
    if pkt[0] >> 4 != 4 {
        return Err(DecapError::OuterVersion);
    }
    if pkt.len() < ipv4_field::MIN_LEN {
        return Err(DecapError::Truncated);
    }
    let ihl = (pkt[0] & 0x0f) as usize * 4;
    let total = be16(pkt, ipv4_field::TOTAL_LEN) as usize;
    if ihl < ipv4_field::MIN_LEN || total < ihl {
        return Err(DecapError::OuterHeader);
    }
    if pkt.len() < total {
        return Err(DecapError::Truncated);
    }
    if fold(sum(&pkt[..ihl], 0)) != 0xffff {
        return Err(DecapError::OuterChecksum);
    }
    let frag = be16(pkt, ipv4_field::FRAG);
    if frag & (ipv4_field::MF | ipv4_field::OFFSET_MASK) != 0 {
        return Err(DecapError::OuterFragment);
    }
    if pkt[ipv4_field::PROTO] != proto {
        return Err(DecapError::OuterProto);
    }
    Ok((ihl, total))
}

/// IPIP (IPv4 or IPv6 inner): the outer IPv4 header of protocol 4 or 41.
pub fn decap_ipip(pkt: &[u8]) -> Result<Decapped, DecapError> {
    let proto = match pkt.get(ipv4_field::PROTO) {
        Some(&IPPROTO_IPV6) => IPPROTO_IPV6,
        _ => IPPROTO_IPIP,
    };
    let (ihl, total) = outer_v4(pkt, proto)?;
    Ok(Decapped {
        inner: ihl..total,
        inner_v6: proto == IPPROTO_IPV6,
        remcsum: None,
    })
}

/// GRE: the outer IPv4 header of protocol 47 and the GRE header.
pub fn decap_gre(pkt: &[u8]) -> Result<Decapped, DecapError> {
    let (ihl, total) = outer_v4(pkt, IPPROTO_GRE)?;
    let gre = &pkt[ihl..total];
    if gre.len() < 4 {
        return Err(DecapError::Truncated);
    }
    let flags = be16(gre, 0);
    if flags & (GRE_VERSION_MASK | GRE_FLAG_ROUTING) != 0
        || flags & !(GRE_FLAG_CSUM | GRE_FLAG_KEY | GRE_FLAG_SEQ | GRE_VERSION_MASK) != 0
    {
        return Err(DecapError::GreFlags);
    }
    let inner_v6 = match be16(gre, 2) {
        ETH_P_IP => false,
        ETH_P_IPV6 => true,
        _ => return Err(DecapError::InnerProto),
    };
    let mut hl = 4;
    for f in [GRE_FLAG_CSUM, GRE_FLAG_KEY, GRE_FLAG_SEQ] {
        if flags & f != 0 {
            hl += 4;
        }
    }
    if gre.len() < hl {
        return Err(DecapError::Truncated);
    }
    if flags & GRE_FLAG_CSUM != 0 && fold(sum(gre, 0)) != 0xffff {
        return Err(DecapError::GreChecksum);
    }
    Ok(Decapped {
        inner: ihl + hl..total,
        inner_v6,
        remcsum: None,
    })
}

/// GUE: the UDP payload (GUE header and inner packet).
pub fn decap_gue(payload: &[u8]) -> Result<Decapped, DecapError> {
    let Some(&b0) = payload.first() else {
        return Err(DecapError::Truncated);
    };
    match b0 >> 6 {
        // Version 1: the payload is the IP packet (its version nibble is 4 or 6).
        1 => {
            return Ok(Decapped {
                inner: 0..payload.len(),
                inner_v6: b0 >> 4 == 6,
                remcsum: None,
            })
        }
        0 => {}
        _ => return Err(DecapError::GueVersion),
    }
    if b0 & 0x20 != 0 {
        return Err(DecapError::GueVersion);
    }
    if payload.len() < GUE_HDR_LEN {
        return Err(DecapError::Truncated);
    }
    let hlen = (b0 & 0x1f) as usize * 4;
    let end = GUE_HDR_LEN + hlen;
    if payload.len() < end {
        return Err(DecapError::Truncated);
    }
    let inner_v6 = match payload[1] {
        IPPROTO_IPIP => false,
        IPPROTO_IPV6 => true,
        _ => return Err(DecapError::InnerProto),
    };
    let flags = be16(payload, 2);
    if flags & !GUE_FLAG_PRIV != 0 {
        return Err(DecapError::GueFlags);
    }
    let mut remcsum = None;
    if flags & GUE_FLAG_PRIV != 0 {
        // The private flags word comes first among the options.
        if hlen < 4 {
            return Err(DecapError::GueFlags);
        }
        let pflags = u32::from_be_bytes(arr4(payload, GUE_HDR_LEN));
        if pflags & !GUE_PFLAG_REMCSUM != 0 {
            return Err(DecapError::GueFlags);
        }
        let mut need = 4;
        if pflags & GUE_PFLAG_REMCSUM != 0 {
            need += 4;
            if hlen < need {
                return Err(DecapError::GueFlags);
            }
            let start = be16(payload, GUE_HDR_LEN + 4) as usize;
            let at = be16(payload, GUE_HDR_LEN + 6) as usize;
            if at < start || at + 2 > payload.len() - end {
                return Err(DecapError::GueRemcsum);
            }
            remcsum = Some((start, at - start));
        }
        if hlen != need {
            return Err(DecapError::GueFlags);
        }
    } else if hlen != 0 {
        return Err(DecapError::GueFlags);
    }
    Ok(Decapped {
        inner: end..payload.len(),
        inner_v6,
        remcsum,
    })
}

/// Check the inner packet: the family the tunnel header announced (`v6`), a sane
/// header, the destination `vip`. Returns its length (trailing bytes excluded).
pub fn check_inner(inner: &[u8], v6: bool, vip: IpAddr) -> Result<usize, DecapError> {
    let Some(&b0) = inner.first() else {
        return Err(DecapError::Truncated);
    };
    if v6 != (b0 >> 4 == 6) || (!v6 && b0 >> 4 != 4) || v6 != vip.is_ipv6() {
        return Err(DecapError::InnerHeader);
    }
    let (len, dst) = if v6 {
        if inner.len() < ipv6_field::LEN {
            return Err(DecapError::Truncated);
        }
        (
            ipv6_field::LEN + be16(inner, ipv6_field::PAYLOAD_LEN) as usize,
            IpAddr::from(arr16(inner, ipv6_field::DST)),
        )
    } else {
        if inner.len() < ipv4_field::MIN_LEN {
            return Err(DecapError::Truncated);
        }
        let ihl = (b0 & 0x0f) as usize * 4;
        let total = be16(inner, ipv4_field::TOTAL_LEN) as usize;
        if ihl < ipv4_field::MIN_LEN || total < ihl || inner.len() < ihl {
            return Err(DecapError::InnerHeader);
        }
        if checksum(&inner[..ihl]) != 0 {
            return Err(DecapError::InnerHeader);
        }
        (total, IpAddr::from(arr4(inner, ipv4_field::DST)))
    };
    if inner.len() < len {
        return Err(DecapError::Truncated);
    }
    if dst != vip {
        return Err(DecapError::NotVip);
    }
    Ok(len)
}

/// Complete the inner L4 checksum a GUE REMCSUM option points at: the field at
/// `start + offset` holds a pseudo-header seed; sum from `start` to the end of the
/// inner packet and store the complement.
pub fn apply_remcsum(inner: &mut [u8], start: usize, offset: usize) -> Result<(), DecapError> {
    let at = start + offset;
    if at + 2 > inner.len() {
        return Err(DecapError::GueRemcsum);
    }
    let c = !fold(sum(&inner[start..], 0));
    put16(inner, at, c);
    Ok(())
}

#[cfg(test)]
mod test {
    use super::*;
    use crate::packet::testutil::{l4_checksum_ok, tcp_packet, to_partial};
    use crate::packet::tunnel::{write_outer, Encap, GueCsum, Outer};
    use crate::packet::TCP_ACK;
    use std::net::Ipv4Addr;

    const VIP: &str = "207.175.44.110";

    fn inner() -> Vec<u8> {
        tcp_packet(
            "10.0.0.2:40000".parse().unwrap(),
            format!("{VIP}:8080").parse().unwrap(),
            TCP_ACK,
            1,
            2,
            &[],
            b"payload",
        )
    }

    fn enc(e: Encap, inner: &[u8], rem: Option<(u16, u16)>) -> Vec<u8> {
        let hl = e.overhead(rem.is_some());
        let mut f = vec![0u8; hl];
        f.extend_from_slice(inner);
        let o = Outer {
            src: Ipv4Addr::new(172, 16, 0, 1),
            dst: Ipv4Addr::new(172, 16, 0, 2),
            id: 9,
            pmtu_disc: true,
            local_hops: 0,
            sport: 40001,
        };
        write_outer(&mut f, e, &o, rem).unwrap();
        f
    }

    #[test]
    fn round_trips() {
        let vip: IpAddr = VIP.parse().unwrap();
        let i = inner();
        let p = enc(Encap::Ipip, &i, None);
        let d = decap_ipip(&p).unwrap();
        assert_eq!(&p[d.inner.clone()], &i[..]);
        assert_eq!(check_inner(&p[d.inner], false, vip), Ok(i.len()));
        for csum in [false, true] {
            let p = enc(Encap::Gre { csum }, &i, None);
            let d = decap_gre(&p).unwrap();
            assert_eq!(&p[d.inner], &i[..]);
        }
        for csum in [GueCsum::None, GueCsum::Csum] {
            let p = enc(Encap::Gue { port: 6080, csum }, &i, None);
            let d = decap_gue(&p[28..]).unwrap();
            assert_eq!(&p[28..][d.inner], &i[..]);
        }
        // REMCSUM: the seed is completed on the way out.
        let mut partial = i.clone();
        to_partial(&mut partial, 0);
        let e = Encap::Gue {
            port: 6080,
            csum: GueCsum::RemCsum,
        };
        let mut p = enc(e, &partial, Some((20, 16)));
        let d = decap_gue(&p[28..]).unwrap();
        assert_eq!(d.remcsum, Some((20, 16)));
        let (s, o) = d.remcsum.unwrap();
        let inner = &mut p[28..][d.inner];
        assert!(!l4_checksum_ok(inner));
        apply_remcsum(inner, s, o).unwrap();
        assert_eq!(&inner[..], &i[..]);
        // GUE version 1: the payload is the packet.
        let d = decap_gue(&i).unwrap();
        assert_eq!(d.inner, 0..i.len());
    }

    #[test]
    fn malformed_outer_headers() {
        let i = inner();
        let good = enc(Encap::Ipip, &i, None);
        let bad = |f: &dyn Fn(&mut Vec<u8>)| {
            let mut p = good.clone();
            f(&mut p);
            decap_ipip(&p)
        };
        assert_eq!(bad(&|p| p.truncate(0)), Err(DecapError::Truncated));
        assert_eq!(bad(&|p| p.truncate(19)), Err(DecapError::Truncated));
        assert_eq!(bad(&|p| p[0] = 0x65), Err(DecapError::OuterVersion));
        assert_eq!(bad(&|p| p[0] = 0x44), Err(DecapError::OuterHeader));
        assert_eq!(
            bad(&|p| p[2..4].copy_from_slice(&[0, 19])),
            Err(DecapError::OuterHeader)
        );
        assert_eq!(bad(&|p| p.truncate(50)), Err(DecapError::Truncated));
        assert_eq!(bad(&|p| p[10] ^= 1), Err(DecapError::OuterChecksum));
        let fix = |p: &mut Vec<u8>| {
            p[10..12].fill(0);
            let c = checksum(&p[..20]);
            p[10..12].copy_from_slice(&c.to_be_bytes());
        };
        assert_eq!(
            bad(&|p| {
                p[6] = 0x20;
                fix(p)
            }),
            Err(DecapError::OuterFragment)
        );
        assert_eq!(
            bad(&|p| {
                p[9] = 17;
                fix(p)
            }),
            Err(DecapError::OuterProto)
        );
        let gre = enc(Encap::Gre { csum: true }, &i, None);
        let badg = |f: &dyn Fn(&mut Vec<u8>)| {
            let mut p = gre.clone();
            f(&mut p);
            decap_gre(&p)
        };
        assert_eq!(badg(&|p| p[21] = 1), Err(DecapError::GreFlags));
        assert_eq!(badg(&|p| p[20] |= 0x40), Err(DecapError::GreFlags));
        assert_eq!(badg(&|p| p[22] = 0x88), Err(DecapError::InnerProto));
        assert_eq!(badg(&|p| p[40] ^= 0xff), Err(DecapError::GreChecksum));
        assert_eq!(decap_gre(&good), Err(DecapError::OuterProto));
        let gue = enc(
            Encap::Gue {
                port: 1,
                csum: GueCsum::None,
            },
            &i,
            None,
        );
        let p = &gue[28..];
        let badu = |f: &dyn Fn(&mut Vec<u8>)| {
            let mut q = p.to_vec();
            f(&mut q);
            decap_gue(&q)
        };
        assert_eq!(badu(&|q| q[0] = 0x80), Err(DecapError::GueVersion));
        assert_eq!(badu(&|q| q[0] = 0x20), Err(DecapError::GueVersion));
        assert_eq!(badu(&|q| q[1] = 17), Err(DecapError::InnerProto));
        assert_eq!(badu(&|q| q[3] = 2), Err(DecapError::GueFlags));
        assert_eq!(badu(&|q| q[0] = 1), Err(DecapError::GueFlags));
        assert_eq!(badu(&|q| q.truncate(3)), Err(DecapError::Truncated));
        assert_eq!(decap_gue(&[]), Err(DecapError::Truncated));
    }

    #[test]
    fn inner_checks() {
        let vip: IpAddr = VIP.parse().unwrap();
        let i = inner();
        assert_eq!(check_inner(&i, false, vip), Ok(i.len()));
        let mut long = i.clone();
        long.extend_from_slice(&[0xa5; 7]);
        assert_eq!(check_inner(&long, false, vip), Ok(i.len()));
        assert_eq!(
            check_inner(&i, false, "1.2.3.4".parse().unwrap()),
            Err(DecapError::NotVip)
        );
        assert_eq!(check_inner(&i, true, vip), Err(DecapError::InnerHeader));
        assert_eq!(
            check_inner(&i[..30], false, vip),
            Err(DecapError::Truncated)
        );
        let mut c = i.clone();
        c[10] ^= 1;
        assert_eq!(check_inner(&c, false, vip), Err(DecapError::InnerHeader));
        assert_eq!(check_inner(&[], false, vip), Err(DecapError::Truncated));
    }

    #[test]
    fn garbage_never_panics() {
        let mut rng = crate::util::Rng::seeded(5);
        let vip: IpAddr = VIP.parse().unwrap();
        let seeds = [
            enc(Encap::Ipip, &inner(), None),
            enc(Encap::Gre { csum: true }, &inner(), None),
        ];
        for round in 0..50_000 {
            let mut p = seeds[round % 2].clone();
            for _ in 0..1 + rng.below(3) {
                let at = rng.below(p.len() as u32) as usize;
                p[at] = rng.next_u32() as u8;
            }
            let cut = rng.below(p.len() as u32 + 1) as usize;
            let p = &p[..cut];
            for d in [decap_ipip(p), decap_gre(p), decap_gue(p)]
                .into_iter()
                .flatten()
            {
                assert!(d.inner.end <= p.len() && d.inner.start <= d.inner.end);
                let _ = check_inner(&p[d.inner.clone()], d.inner_v6, vip);
            }
        }
    }
}
