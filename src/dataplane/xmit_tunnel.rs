//! Tunnel transmit (`-i`, the kernel's `ip_vs_tunnel_xmit`, spec §3.15): encapsulate a
//! client packet of a tunnel connection toward its real server.
//!
//! The output is one or more *IP* frames, each preceded by a zeroed virtio header when
//! the device has one (no GSO, no partial checksum: every checksum is final, except the
//! inner one that GUE REMCSUM deliberately leaves to the receiver). In tun mode they are
//! written back into the device and the kernel routes the outer packets; a link layer
//! (tap mode) inserts its Ethernet header after the virtio header (every frame has
//! headroom for it) and resolves the next hop for the outer destination itself.
//!
//! Steps, as in the kernel:
//! 1. the route toward the real server ([`TunnelRoutes`], filled off the data path):
//!    outer source address and route MTU (lowered by PMTU learned from ICMP errors
//!    about our tunnel packets);
//! 2. the inner MTU = route MTU − encapsulation overhead; below 68 → drop;
//! 3. if `pmtu_disc` and the inner packet has DF (always for IPv6 inner) and it — or,
//!    for a GSO super-packet, each of its segments — is longer than the inner MTU: an
//!    ICMP fragmentation-needed / packet-too-big with that MTU goes back to the client
//!    and the packet is dropped (not for ICMP errors being forwarded);
//! 4. a GSO super-packet is cut into segments in user space; a packet with a partial
//!    checksum gets it completed (unless GUE REMCSUM applies);
//! 5. the outer headers are prepended in place ([`crate::packet::tunnel::write_outer`]).
//!
//! Without DF the outer packet has no DF either, and whatever routes it fragments it
//! if needed, as the kernel does.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;

use dashmap::DashMap;

use crate::dataplane::buf::PacketBuf;
use crate::packet::gso::{complete_checksum, segment_tcp, GsoError, SegCsum, SegmentBuf};
use crate::packet::icmp::{build_icmp_error, IcmpErrorKind};
use crate::packet::nat::decrement_ttl;
use crate::packet::parse::PacketInfo;
use crate::packet::tunnel::{
    flow_hash, gue_src_port, write_outer, Encap, EncapError, GueCsum, Outer,
};
use crate::packet::vnet::{VnetHdr, VNET_HDR_LEN};
use crate::service::{DestFwd, TunCsum, TunType};

/// How long a path MTU learned from an ICMP error holds (the kernel's
/// `net.ipv4.route.mtu_expires` default).
pub const PMTU_EXPIRES_MS: u64 = 600_000;
/// Smallest inner MTU the kernel accepts for IPv4 (`mtu < 68` → drop).
pub const MIN_INNER_MTU: u32 = 68;

/// Why a tunnel packet was not sent (a drop counter).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TunnelError {
    /// No route (outer source) known toward the real server yet.
    NoRoute,
    /// The real server is IPv6: an IPv6 outer header is not implemented.
    Ipv6Outer,
    /// Route MTU minus the overhead is below 68.
    MtuTooSmall,
    /// Too big with DF: an ICMP fragmentation-needed went back to the client.
    FragNeeded,
    /// No headroom in front of the frame (cannot happen with [`PacketBuf`]).
    NoHeadroom,
    /// The inner packet cannot be encapsulated (not IPv4/IPv6, truncated).
    BadInner,
    /// The encapsulated packet would exceed 65535 bytes.
    TooBig,
    /// A GSO super-packet that is not TCP.
    GsoNotTcp,
    /// A GSO super-packet with more segments than the segment buffer holds.
    GsoNoRoom,
    /// TTL / hop limit exhausted (only when the transmitter decrements it): an
    /// ICMP time exceeded went back to the client.
    TtlExpired,
}

impl TunnelError {
    /// Every variant, in [`TunnelError::index`] order.
    pub const ALL: [TunnelError; 10] = [
        TunnelError::NoRoute,
        TunnelError::Ipv6Outer,
        TunnelError::MtuTooSmall,
        TunnelError::FragNeeded,
        TunnelError::NoHeadroom,
        TunnelError::BadInner,
        TunnelError::TooBig,
        TunnelError::GsoNotTcp,
        TunnelError::GsoNoRoom,
        TunnelError::TtlExpired,
    ];

    /// Position in [`TunnelError::ALL`].
    pub const fn index(self) -> usize {
        self as usize
    }

    /// Counter name.
    pub const fn name(self) -> &'static str {
        match self {
            TunnelError::NoRoute => "tunnel_no_route",
            TunnelError::Ipv6Outer => "tunnel_ipv6_outer",
            TunnelError::MtuTooSmall => "tunnel_mtu_too_small",
            TunnelError::FragNeeded => "tunnel_frag_needed",
            TunnelError::NoHeadroom => "tunnel_no_headroom",
            TunnelError::BadInner => "tunnel_bad_inner",
            TunnelError::TooBig => "tunnel_too_big",
            TunnelError::GsoNotTcp => "tunnel_gso_not_tcp",
            TunnelError::GsoNoRoom => "tunnel_gso_no_room",
            TunnelError::TtlExpired => "tunnel_ttl_expired",
        }
    }
}

impl From<EncapError> for TunnelError {
    fn from(e: EncapError) -> Self {
        match e {
            EncapError::TooBig => TunnelError::TooBig,
            _ => TunnelError::BadInner,
        }
    }
}

impl From<GsoError> for TunnelError {
    fn from(e: GsoError) -> Self {
        match e {
            GsoError::NotTcp => TunnelError::GsoNotTcp,
            GsoError::ZeroMss | GsoError::NoRoom => TunnelError::GsoNoRoom,
        }
    }
}

/// The encapsulation a destination's tunnel settings ask for.
pub fn encap_of(f: &DestFwd) -> Encap {
    match f.tun_type {
        TunType::Ipip => Encap::Ipip,
        TunType::Gue => Encap::Gue {
            port: f.tun_port,
            csum: match f.tun_flags {
                TunCsum::NoCsum => GueCsum::None,
                TunCsum::Csum => GueCsum::Csum,
                TunCsum::RemCsum => GueCsum::RemCsum,
            },
        },
        TunType::Gre => Encap::Gre {
            csum: f.tun_flags == TunCsum::Csum,
        },
    }
}

/// The route toward one real server, as the data path reads it. Written by the
/// control side ([`TunnelRoutes::set`], [`TunnelRoutes::learn_pmtu`]).
#[derive(Debug, Default)]
pub struct RouteEntry {
    /// Outer source address (0 = not resolved).
    src: AtomicU32,
    /// Route MTU from the routing table (0 = not resolved).
    mtu: AtomicU32,
    /// Path MTU learned from an ICMP fragmentation-needed (0 = none).
    learned: AtomicU32,
    /// When `learned` expires (ms on the data-path clock).
    learned_until: AtomicU64,
    /// IP ID generator for outer headers without DF.
    ip_id: AtomicU32,
    /// Found unused by the last [`TunnelRoutes::sweep`].
    unused: std::sync::atomic::AtomicBool,
}

impl RouteEntry {
    /// `(outer source, MTU)` at `now_ms`, or `None` while unresolved.
    pub fn resolved(&self, now_ms: u64) -> Option<(Ipv4Addr, u32)> {
        let src = self.src.load(Relaxed);
        let mtu = self.mtu.load(Relaxed);
        if src == 0 || mtu == 0 {
            return None;
        }
        let learned = self.learned.load(Relaxed);
        let mtu = if learned != 0 && now_ms < self.learned_until.load(Relaxed) {
            mtu.min(learned)
        } else {
            mtu
        };
        Some((Ipv4Addr::from(src), mtu))
    }

    /// The next outer IP ID.
    pub fn next_id(&self) -> u16 {
        self.ip_id.fetch_add(1, Relaxed) as u16
    }
}

/// Routes toward tunnel real servers, shared by the workers and the control side.
#[derive(Debug, Default)]
pub struct TunnelRoutes {
    map: DashMap<IpAddr, Arc<RouteEntry>, foldhash::fast::RandomState>,
}

impl TunnelRoutes {
    /// An empty table.
    pub fn new() -> Self {
        TunnelRoutes::default()
    }

    /// The entry for real server `addr`.
    pub fn get(&self, addr: IpAddr) -> Option<Arc<RouteEntry>> {
        self.map.get(&addr).map(|e| e.clone())
    }

    /// The data path's borrow of an entry: no reference-count traffic (every
    /// worker sending to this real server would bounce it per packet). It
    /// holds the table's shard lock: never write the table while holding it.
    fn borrow(&self, addr: IpAddr) -> Option<impl std::ops::Deref<Target = Arc<RouteEntry>> + '_> {
        self.map.get(&addr)
    }

    fn entry(&self, addr: IpAddr) -> Arc<RouteEntry> {
        self.map.entry(addr).or_default().clone()
    }

    /// Record the route the kernel selects toward `addr`: outer source and route MTU.
    pub fn set(&self, addr: IpAddr, src: Ipv4Addr, mtu: u32) {
        let e = self.entry(addr);
        e.src.store(u32::from(src), Relaxed);
        e.mtu.store(mtu, Relaxed);
    }

    /// Mark `addr` unresolvable (packets toward it are dropped as `tunnel_no_route`).
    pub fn set_unresolved(&self, addr: IpAddr) {
        let e = self.entry(addr);
        e.src.store(0, Relaxed);
    }

    /// Lower the path MTU toward `addr` to `mtu` until `now_ms` +
    /// [`PMTU_EXPIRES_MS`] (an ICMP fragmentation-needed about our outer packet).
    pub fn learn_pmtu(&self, addr: IpAddr, mtu: u32, now_ms: u64) {
        if let Some(e) = self.get(addr) {
            let cur = e.learned.load(Relaxed);
            let live = cur != 0 && now_ms < e.learned_until.load(Relaxed);
            if !live || mtu < cur {
                e.learned.store(mtu, Relaxed);
            }
            e.learned_until.store(now_ms + PMTU_EXPIRES_MS, Relaxed);
        }
    }

    /// Forget `addr`.
    pub fn remove(&self, addr: IpAddr) {
        self.map.remove(&addr);
    }

    /// Forget the addresses `in_use` says are unused — at the second sweep in a
    /// row that finds them unused, so an entry added just before its destination
    /// is linked (the control path resolves first) survives.
    pub fn sweep(&self, in_use: impl Fn(IpAddr) -> bool) {
        self.map.retain(|a, e| {
            if in_use(*a) {
                e.unused.store(false, Relaxed);
                true
            } else {
                !e.unused.swap(true, Relaxed)
            }
        });
    }

    /// Every real server in the table.
    pub fn addrs(&self) -> Vec<IpAddr> {
        self.map.iter().map(|e| *e.key()).collect()
    }
}

/// Settings of the tunnel transmitter.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TunnelConfig {
    /// Hops inside this host before the outer packet leaves (see
    /// [`Outer::local_hops`]): 1 in tun mode.
    pub local_hops: u8,
    /// `net.ipv4.vs.pmtu_disc` (default on).
    pub pmtu_disc: bool,
    /// Local port range for GUE source ports (`net.ipv4.ip_local_port_range`).
    pub port_lo: u16,
    /// End of the port range (exclusive, as the kernel computes).
    pub port_hi: u16,
    /// Seed of the flow hash (random per process).
    pub hash_seed: u64,
    /// Decrement the inner TTL / hop limit first (TTL ≤ 1: ICMP time exceeded),
    /// as the kernel's `decrement_ttl`. Off in tun mode, where the kernel already
    /// did it forwarding the packet into the device; on when tunvs receives the
    /// packet from the wire itself (tap mode).
    pub decrement_ttl: bool,
}

impl Default for TunnelConfig {
    fn default() -> Self {
        TunnelConfig {
            local_hops: 1,
            pmtu_disc: true,
            port_lo: 32768,
            port_hi: 60999,
            hash_seed: 0,
            decrement_ttl: false,
        }
    }
}

/// What [`TunnelTx::xmit`] produced.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TxOut {
    /// The frame in the `PacketBuf` is the encapsulated packet.
    Forward,
    /// The frames of [`TunnelTx::segments`] (this many) are to be written.
    Segments(usize),
    /// The first `len` bytes of the reply buffer are an ICMP error for the client,
    /// sent instead of the packet for reason `why`.
    Reply {
        /// Length of the reply frame.
        len: usize,
        /// Why the packet was not sent (`FragNeeded` or `TtlExpired`).
        why: TunnelError,
    },
    /// Dropped.
    Drop(TunnelError),
}

/// One worker's tunnel transmitter: the shared routes and its own segment buffer.
#[derive(Debug)]
pub struct TunnelTx {
    routes: Arc<TunnelRoutes>,
    cfg: TunnelConfig,
    segs: SegmentBuf,
}

/// A packet to encapsulate, as the pipeline parsed it.
#[derive(Clone, Copy, Debug)]
pub struct TxPacket<'a> {
    /// The parsed inner packet.
    pub info: &'a PacketInfo,
    /// Its virtio header (`None` without one).
    pub vnet: Option<VnetHdr>,
    /// True if its L4 checksum holds a pseudo-header seed (`NEEDS_CSUM`).
    pub partial: bool,
    /// True for an ICMP error being forwarded (no MTU check).
    pub icmp: bool,
}

impl TunnelTx {
    /// A transmitter over `routes`.
    pub fn new(routes: Arc<TunnelRoutes>, cfg: TunnelConfig) -> Self {
        TunnelTx {
            routes,
            cfg,
            segs: SegmentBuf::new(),
        }
    }

    /// The segments of the last [`TxOut::Segments`].
    pub fn segments(&self) -> &SegmentBuf {
        &self.segs
    }

    /// The segments, writable (a link layer prepends its header).
    pub fn segments_mut(&mut self) -> &mut SegmentBuf {
        &mut self.segs
    }

    /// Encapsulate the packet in `buf` (after its virtio header when `p.vnet` is set)
    /// toward real server `rs` with the settings `fwd`. A frag-needed reply is built
    /// into `reply` (with a zeroed virtio header in front when `p.vnet` is set).
    pub fn xmit(
        &mut self,
        now_ms: u64,
        buf: &mut PacketBuf,
        p: TxPacket<'_>,
        fwd: &DestFwd,
        rs: IpAddr,
        reply: &mut [u8],
    ) -> TxOut {
        match self.xmit_inner(now_ms, buf, p, fwd, rs, reply) {
            Ok(o) => o,
            Err(e) => TxOut::Drop(e),
        }
    }

    fn xmit_inner(
        &mut self,
        now_ms: u64,
        buf: &mut PacketBuf,
        p: TxPacket<'_>,
        fwd: &DestFwd,
        rs: IpAddr,
        reply: &mut [u8],
    ) -> Result<TxOut, TunnelError> {
        let IpAddr::V4(rs4) = rs else {
            return Err(TunnelError::Ipv6Outer);
        };
        let route = self.routes.borrow(rs).ok_or(TunnelError::NoRoute)?;
        let (src, route_mtu) = route.resolved(now_ms).ok_or(TunnelError::NoRoute)?;
        let info = p.info;
        let encap = encap_of(fwd);
        let remcsum = encap.uses_remcsum(p.partial) && info.has_l4();
        let overhead = encap.overhead(remcsum) as u32;
        let mtu = route_mtu.saturating_sub(overhead);
        if mtu < MIN_INNER_MTU {
            return Err(TunnelError::MtuTooSmall);
        }
        let off = if p.vnet.is_some() { VNET_HDR_LEN } else { 0 };
        let gso = p.vnet.filter(|h| h.is_gso());
        if self.cfg.decrement_ttl {
            let pkt = buf.frame_mut().get_mut(off..).unwrap_or(&mut []);
            if !decrement_ttl(pkt, info) {
                let pkt = buf.frame().get(off..).unwrap_or(&[]);
                reply[..off].fill(0);
                return match build_icmp_error(
                    &mut reply[off..],
                    pkt,
                    info,
                    IcmpErrorKind::TimeExceeded,
                ) {
                    Some(n) => Ok(TxOut::Reply {
                        len: off + n,
                        why: TunnelError::TtlExpired,
                    }),
                    None => Err(TunnelError::TtlExpired),
                };
            }
        }
        // Path MTU (kernel `ensure_mtu_is_adequate`, GSO-aware).
        let pkt = buf.frame().get(off..).unwrap_or(&[]);
        let df = info.v6 || pkt.get(6).is_some_and(|b| b & 0x40 != 0);
        if !p.icmp && df && (self.cfg.pmtu_disc || info.v6) {
            let len = match gso {
                Some(h) => info.payload_off() + h.gso_size as usize,
                None => info.total_len,
            };
            if len > mtu as usize {
                reply[..off].fill(0);
                let n = build_icmp_error(
                    &mut reply[off..],
                    pkt,
                    info,
                    IcmpErrorKind::FragNeeded { mtu },
                );
                return match n {
                    Some(n) => Ok(TxOut::Reply {
                        len: off + n,
                        why: TunnelError::FragNeeded,
                    }),
                    None => Err(TunnelError::FragNeeded),
                };
            }
        }
        let sport = match encap {
            Encap::Gue { .. } => gue_src_port(
                flow_hash(
                    self.cfg.hash_seed,
                    info.src,
                    info.dst,
                    info.proto,
                    info.sport,
                    info.dport,
                ),
                self.cfg.port_lo,
                self.cfg.port_hi,
            ),
            _ => 0,
        };
        let mut outer = Outer {
            src,
            dst: rs4,
            id: 0,
            pmtu_disc: self.cfg.pmtu_disc,
            local_hops: self.cfg.local_hops,
            sport,
        };
        let rem = remcsum.then(|| (info.l4_off as u16, (info.csum_off - info.l4_off) as u16));
        let hl = encap.overhead(remcsum);
        let outer_df = self.cfg.pmtu_disc && df && !info.v6;
        if let Some(h) = gso {
            let csum = if remcsum {
                SegCsum::Partial
            } else {
                SegCsum::Full
            };
            let n = segment_tcp(pkt, info, h.gso_size, csum, &mut self.segs)?;
            for i in 0..n {
                if !outer_df {
                    outer.id = route.next_id();
                }
                let f = self.segs.prepend(i, hl).ok_or(TunnelError::NoHeadroom)?;
                write_outer(f, encap, &outer, rem)?;
                if off != 0 {
                    let v = self.segs.prepend(i, off).ok_or(TunnelError::NoHeadroom)?;
                    v[..off].fill(0);
                }
            }
            return Ok(TxOut::Segments(n));
        }
        if p.partial && !remcsum {
            let pkt = buf.frame_mut().get_mut(off..).unwrap_or(&mut []);
            complete_checksum(pkt, info);
        }
        if !outer_df {
            outer.id = route.next_id();
        }
        buf.advance(off);
        buf.truncate(info.total_len);
        let f = buf.prepend(hl).ok_or(TunnelError::NoHeadroom)?;
        write_outer(f, encap, &outer, rem)?;
        if off != 0 {
            let v = buf.prepend(off).ok_or(TunnelError::NoHeadroom)?;
            v[..off].fill(0);
        }
        Ok(TxOut::Forward)
    }
}

#[cfg(test)]
mod test {
    use super::*;
    use crate::packet::parse::parse_ip;
    use crate::packet::testutil::*;
    use crate::packet::{TCP_ACK, TCP_SYN};
    use crate::service::FwdMethod;

    const RS: Ipv4Addr = Ipv4Addr::new(172, 16, 0, 2);

    fn fwd(tun_type: TunType, tun_port: u16, tun_flags: TunCsum) -> DestFwd {
        DestFwd {
            fwd: FwdMethod::Tunnel,
            tun_type,
            tun_port,
            tun_flags,
        }
    }

    fn tx(mtu: u32) -> TunnelTx {
        let routes = Arc::new(TunnelRoutes::new());
        routes.set(IpAddr::V4(RS), Ipv4Addr::new(172, 16, 0, 1), mtu);
        TunnelTx::new(routes, TunnelConfig::default())
    }

    fn data(len: usize) -> Vec<u8> {
        let payload: Vec<u8> = (0..len).map(|i| i as u8).collect();
        let mut p = tcp_packet(
            "10.0.0.2:40000".parse().unwrap(),
            "207.175.44.110:8080".parse().unwrap(),
            TCP_ACK,
            1,
            2,
            &[],
            &payload,
        );
        p[8] = 63;
        p[10..12].fill(0);
        let c = crate::packet::csum::checksum(&p[..20]);
        p[10..12].copy_from_slice(&c.to_be_bytes());
        p
    }

    fn run(
        t: &mut TunnelTx,
        pkt: &[u8],
        vnet: Option<VnetHdr>,
        f: &DestFwd,
    ) -> (TxOut, PacketBuf, Vec<u8>) {
        let mut frame = Vec::new();
        if let Some(h) = vnet {
            frame.extend_from_slice(&h.to_bytes());
        }
        frame.extend_from_slice(pkt);
        let mut buf = PacketBuf::from_frame(&frame);
        let info = parse_ip(pkt).unwrap();
        let mut reply = vec![0xa5u8; 1500];
        let p = TxPacket {
            info: &info,
            vnet,
            partial: vnet.is_some_and(|h| h.needs_csum()),
            icmp: false,
        };
        let o = t.xmit(1, &mut buf, p, f, IpAddr::V4(RS), &mut reply);
        (o, buf, reply)
    }

    #[test]
    fn plain_packet_is_encapsulated_in_place() {
        let mut t = tx(1500);
        let pkt = data(100);
        let (o, buf, _) = run(&mut t, &pkt, None, &fwd(TunType::Ipip, 0, TunCsum::NoCsum));
        assert_eq!(o, TxOut::Forward);
        let f = buf.frame();
        assert_eq!(&f[20..], &pkt[..]);
        assert_eq!(f[8], 64, "TTL: inner 63 + 1 local hop");
        assert_eq!(&f[12..20], &[172, 16, 0, 1, 172, 16, 0, 2]);
    }

    #[test]
    fn partial_checksum_is_completed_and_vnet_header_zeroed() {
        let mut t = tx(1500);
        let full = data(100);
        let mut p = full.clone();
        let h = to_partial(&mut p, 0);
        let (o, buf, _) = run(&mut t, &p, Some(h), &fwd(TunType::Gre, 0, TunCsum::Csum));
        assert_eq!(o, TxOut::Forward);
        let f = buf.frame();
        assert_eq!(&f[..10], &[0; 10]);
        assert_eq!(&f[10 + 28..], &full[..]);
        // GUE REMCSUM keeps the seed and says where it is.
        let (o, buf, _) = run(
            &mut t,
            &p,
            Some(h),
            &fwd(TunType::Gue, 6080, TunCsum::RemCsum),
        );
        assert_eq!(o, TxOut::Forward);
        let f = buf.frame();
        assert_eq!(&f[10 + 40..], &p[..]);
        assert_eq!(
            &f[10 + 28..10 + 40],
            &[2, 4, 0, 1, 0x80, 0, 0, 0, 0, 20, 0, 36]
        );
    }

    #[test]
    fn gso_is_segmented_and_every_segment_fits() {
        let mut t = tx(1500);
        let full = data(10_000);
        let mut p = full.clone();
        let h = to_partial(&mut p, 1400);
        let (o, _, _) = run(&mut t, &p, Some(h), &fwd(TunType::Ipip, 0, TunCsum::NoCsum));
        assert_eq!(o, TxOut::Segments(8));
        let mut payload = Vec::new();
        for f in t.segments().iter() {
            assert_eq!(&f[..10], &[0; 10]);
            let ip = &f[10..];
            assert!(ip.len() <= 1500, "{}", ip.len());
            assert_eq!(u16::from_be_bytes([ip[2], ip[3]]) as usize, ip.len());
            assert!(ipv4_header_checksum_ok(ip));
            let inner = &ip[20..];
            assert!(l4_checksum_ok(inner));
            payload.extend_from_slice(&inner[40..]);
        }
        assert_eq!(payload, full[40..]);
    }

    #[test]
    fn too_big_with_df_gets_frag_needed() {
        let mut t = tx(1400);
        let pkt = data(1400); // 1440 > 1380
        let (o, _, reply) = run(&mut t, &pkt, None, &fwd(TunType::Ipip, 0, TunCsum::NoCsum));
        let TxOut::Reply { len: n, why } = o else {
            panic!("{o:?}")
        };
        assert_eq!(why, TunnelError::FragNeeded);
        let r = &reply[..n];
        assert_eq!((r[20], r[21]), (3, 4));
        assert_eq!(u16::from_be_bytes([r[26], r[27]]), 1380);
        assert_eq!(&r[12..16], &pkt[16..20], "from the VIP");
        assert_eq!(&r[16..20], &pkt[12..16], "to the client");
        // GUE: 12 more bytes of overhead.
        let (o, _, reply) = run(&mut t, &pkt, None, &fwd(TunType::Gue, 1, TunCsum::NoCsum));
        assert!(matches!(o, TxOut::Reply { .. }));
        assert_eq!(u16::from_be_bytes([reply[26], reply[27]]), 1368);
        // Without DF it goes out (the kernel fragments the outer packet).
        let mut nodf = pkt.clone();
        nodf[6] = 0;
        nodf[10..12].fill(0);
        let c = crate::packet::csum::checksum(&nodf[..20]);
        nodf[10..12].copy_from_slice(&c.to_be_bytes());
        let (o, buf, _) = run(&mut t, &nodf, None, &fwd(TunType::Ipip, 0, TunCsum::NoCsum));
        assert_eq!(o, TxOut::Forward);
        assert_eq!(
            &buf.frame()[4..8],
            &[0, 0, 0, 0],
            "id 0 from the counter, no DF"
        );
        let (_, buf, _) = run(&mut t, &nodf, None, &fwd(TunType::Ipip, 0, TunCsum::NoCsum));
        assert_eq!(&buf.frame()[4..8], &[0, 1, 0, 0], "the counter moves");
        // GSO: each segment is checked.
        let mut big = data(5000);
        let h = to_partial(&mut big, 1400);
        let (o, _, reply) = run(
            &mut t,
            &big,
            Some(h),
            &fwd(TunType::Ipip, 0, TunCsum::NoCsum),
        );
        let TxOut::Reply { len: n, .. } = o else {
            panic!("{o:?}")
        };
        assert_eq!(&reply[..10], &[0; 10]);
        assert_eq!(reply[10 + 20], 3);
        assert!(n > 10 + 28);
    }

    #[test]
    fn unresolved_and_ipv6_and_small_mtu_drop() {
        let mut t = tx(1500);
        let pkt = data(10);
        let info = parse_ip(&pkt).unwrap();
        let p = TxPacket {
            info: &info,
            vnet: None,
            partial: false,
            icmp: false,
        };
        let f = fwd(TunType::Ipip, 0, TunCsum::NoCsum);
        let mut reply = [0u8; 100];
        let mut buf = PacketBuf::from_frame(&pkt);
        let other = IpAddr::V4(Ipv4Addr::new(1, 2, 3, 4));
        assert_eq!(
            t.xmit(1, &mut buf, p, &f, other, &mut reply),
            TxOut::Drop(TunnelError::NoRoute)
        );
        assert_eq!(
            t.xmit(
                1,
                &mut buf,
                p,
                &f,
                "2001:db8::1".parse().unwrap(),
                &mut reply
            ),
            TxOut::Drop(TunnelError::Ipv6Outer)
        );
        let mut t = tx(80);
        assert_eq!(
            t.xmit(1, &mut buf, p, &f, IpAddr::V4(RS), &mut reply),
            TxOut::Drop(TunnelError::MtuTooSmall)
        );
        // A SYN is small: goes even with a small MTU.
        let syn = tcp_packet(
            "10.0.0.2:1".parse().unwrap(),
            "207.175.44.110:80".parse().unwrap(),
            TCP_SYN,
            1,
            0,
            &[],
            &[],
        );
        let mut t = tx(100);
        let (o, _, _) = run(&mut t, &syn, None, &f);
        assert_eq!(o, TxOut::Forward);
    }

    #[test]
    fn tap_mode_decrements_the_inner_ttl() {
        let routes = Arc::new(TunnelRoutes::new());
        routes.set(IpAddr::V4(RS), Ipv4Addr::new(172, 16, 0, 1), 1500);
        let cfg = TunnelConfig {
            local_hops: 0,
            decrement_ttl: true,
            ..TunnelConfig::default()
        };
        let mut t = TunnelTx::new(routes, cfg);
        let f = fwd(TunType::Ipip, 0, TunCsum::NoCsum);
        let pkt = data(10); // TTL 63
        let (o, buf, _) = run(&mut t, &pkt, None, &f);
        assert_eq!(o, TxOut::Forward);
        let out = buf.frame();
        assert_eq!(
            (out[8], out[20 + 8]),
            (62, 62),
            "inner decremented, outer copies it"
        );
        assert!(ipv4_header_checksum_ok(&out[20..]));
        // GSO: every segment carries the decremented TTL.
        let mut big = data(3000);
        let h = to_partial(&mut big, 1000);
        let (o, _, _) = run(&mut t, &big, Some(h), &f);
        assert_eq!(o, TxOut::Segments(3));
        assert!(t
            .segments()
            .iter()
            .all(|s| s[10 + 8] == 62 && s[10 + 28] == 62));
        // TTL 1: time exceeded to the client.
        let mut one = data(10);
        one[8] = 1;
        one[10..12].fill(0);
        let c = crate::packet::csum::checksum(&one[..20]);
        one[10..12].copy_from_slice(&c.to_be_bytes());
        let (o, _, reply) = run(&mut t, &one, None, &f);
        let TxOut::Reply { len, why } = o else {
            panic!("{o:?}")
        };
        assert_eq!(why, TunnelError::TtlExpired);
        assert_eq!((reply[20], reply[21]), (11, 0));
        assert!(len > 28);
    }

    #[test]
    fn learned_pmtu_lowers_and_expires() {
        let routes = TunnelRoutes::new();
        let a = IpAddr::V4(RS);
        routes.set(a, Ipv4Addr::new(10, 0, 0, 1), 1500);
        let e = routes.get(a).unwrap();
        assert_eq!(e.resolved(0).unwrap().1, 1500);
        routes.learn_pmtu(a, 1400, 1000);
        assert_eq!(e.resolved(1001).unwrap().1, 1400);
        routes.learn_pmtu(a, 1450, 2000);
        assert_eq!(e.resolved(2001).unwrap().1, 1400, "only lowers while live");
        assert_eq!(e.resolved(2000 + PMTU_EXPIRES_MS).unwrap().1, 1500);
        routes.set_unresolved(a);
        assert!(e.resolved(0).is_none());
        assert_eq!(routes.addrs(), vec![a]);
        routes.remove(a);
        assert!(routes.get(a).is_none());
        routes.set(a, Ipv4Addr::new(10, 0, 0, 1), 1500);
        routes.sweep(|_| false);
        assert!(routes.get(a).is_some(), "kept at the first sweep");
        routes.sweep(|_| true);
        routes.sweep(|_| false);
        assert!(routes.get(a).is_some(), "in use in between");
        routes.sweep(|_| false);
        assert!(routes.get(a).is_none(), "gone at the second sweep in a row");
    }
}
