//! The packet pipeline: a pure function of (packet bytes, tables, clock) →
//! (verdict, rewritten bytes). No device, no clock reads, no allocation on
//! an established flow (a new connection allocates its entry).
//!
//! The way of a packet (tun mode, spec §1.4, §3):
//! 1. parse (malformed → drop, counted);
//! 2. ICMP errors quoting a tracked NAT flow are translated (§3.13);
//! 3. connection lookup by the packet's tuple, from either side;
//! 4. on a miss, a service lookup and scheduling (persistence templates,
//!    one-packet scheduling), creating the connection;
//! 5. the state machine, the counters, and the rewrite for the method: NAT in
//!    place, tunnelling by [`crate::dataplane::xmit_tunnel`] (which may cut a GSO
//!    super-packet into several frames: [`Verdict::Segments`]).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;

use crate::conntrack::tcp::flags as tcpf;
use crate::conntrack::{Conn, ConnTable, NewConn, Side, TemplateKey};
use crate::dataplane::buf::PacketBuf;
use crate::dataplane::drop::{bump, Counters, DropReason};
use crate::dataplane::xmit_tunnel::{TunnelTx, TxOut, TxPacket};
use crate::director::{Director, Service, SvcParams};
use crate::packet::gso::SegmentBuf;
use crate::packet::icmp;
use crate::packet::nat;
use crate::packet::parse::{parse_ip, PacketInfo, ParseError, PROTO_UDP};
use crate::packet::vnet::{VnetHdr, NEEDS_CSUM, VNET_HDR_LEN};
use crate::sched::FlowInfo;
use crate::service::{FwdMethod, SvcId};
use crate::stats::Writer;

/// What to do with a packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Write the (rewritten) packet back to the device.
    Forward,
    /// Drop the packet and write this many frames of `Pipeline::segments()`
    /// instead (a GSO super-packet cut and encapsulated for a tunnel).
    Segments(usize),
    /// Drop the packet and write this many bytes of `Pipeline::reply()`
    /// instead (an ICMP error to the sender).
    Reply(usize),
    /// Drop it, for this reason.
    Drop(DropReason),
}

/// Which forwarding methods this device mode can carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Methods {
    /// NAT.
    pub masq: bool,
    /// Direct routing (needs L2: tap mode).
    pub route: bool,
    /// Tunnelling.
    pub tunnel: bool,
    /// tunvs is the router that puts NAT packets on the wire (tap mode), so
    /// it decrements their TTL; in tun mode the kernel routes them and does.
    pub decrement_ttl: bool,
}

impl Methods {
    /// What tun mode carries: NAT and tunnelling (the latter once a
    /// [`TunnelTx`] is attached with [`Pipeline::with_tunnel`]).
    pub const TUN: Methods = Methods {
        masq: true,
        route: false,
        tunnel: true,
        decrement_ttl: false,
    };

    /// What tap mode carries: NAT, direct routing (the L2 layer,
    /// `dataplane::l2`, does the MAC rewrite) and tunnelling (once a
    /// [`TunnelTx`] is attached; the L2 layer gives each outer packet its
    /// Ethernet header).
    pub const TAP: Methods = Methods {
        masq: true,
        route: true,
        tunnel: true,
        decrement_ttl: true,
    };

    fn allows(self, f: FwdMethod) -> bool {
        match f {
            FwdMethod::Masq => self.masq,
            FwdMethod::Route => self.route,
            FwdMethod::Tunnel => self.tunnel,
            FwdMethod::Local => false,
        }
    }
}

/// Maximum size of a generated reply frame (virtio header + ICMP error).
pub const REPLY_MAX: usize = VNET_HDR_LEN + 1280;

/// One worker's pipeline over the shared director.
#[derive(Debug)]
pub struct Pipeline {
    dir: Arc<Director>,
    counters: Arc<Counters>,
    methods: Methods,
    fwmark: Option<u32>,
    reply: Box<[u8]>,
    l2_dest: Option<IpAddr>,
    /// This worker's counter slot (no locked instructions per packet).
    writer: Writer,
    encapsulated: bool,
    reply_reason: DropReason,
    tunnel: Option<TunnelTx>,
    icmp_limit: IcmpLimit,
}

/// The ICMP errors tunvs sends are rate-limited like the kernel's
/// (`net.ipv4.icmp_msgs_per_sec` 1000, `icmp_msgs_burst` 50), per worker: a
/// token bucket refilled with the clock.
#[derive(Debug, Clone, Copy)]
pub struct IcmpLimit {
    tokens: u32,
    last_ms: u64,
}

impl IcmpLimit {
    /// Errors per second.
    pub const PER_SEC: u64 = 1000;
    /// Bucket size.
    pub const BURST: u32 = 50;

    /// A full bucket.
    pub const fn new() -> Self {
        IcmpLimit {
            tokens: Self::BURST,
            last_ms: 0,
        }
    }

    /// Take a token if there is one.
    pub fn allow(&mut self, now_ms: u64) -> bool {
        let refill = now_ms.saturating_sub(self.last_ms) * Self::PER_SEC / 1000;
        if refill > 0 {
            self.tokens = (self.tokens as u64 + refill).min(Self::BURST as u64) as u32;
            self.last_ms = now_ms;
        }
        if self.tokens == 0 {
            return false;
        }
        self.tokens -= 1;
        true
    }
}

impl Default for IcmpLimit {
    fn default() -> Self {
        IcmpLimit::new()
    }
}

impl Pipeline {
    /// A pipeline for a device carrying `methods`.
    pub fn new(dir: Arc<Director>, methods: Methods) -> Self {
        Pipeline {
            dir,
            counters: Arc::new(Counters::default()),
            methods,
            fwmark: None,
            reply: vec![0u8; REPLY_MAX].into_boxed_slice(),
            l2_dest: None,
            writer: Writer::claim(),
            encapsulated: false,
            reply_reason: DropReason::NoDestination,
            tunnel: None,
            icmp_limit: IcmpLimit::new(),
        }
    }

    /// Tunnel connections are encapsulated by `tx` (without one they are
    /// dropped as `method_unavailable`).
    pub fn with_tunnel(mut self, tx: TunnelTx) -> Self {
        self.tunnel = Some(tx);
        self
    }

    /// The frames of the last `Verdict::Segments(n)` (`n` of them).
    pub fn segments(&self) -> Option<&SegmentBuf> {
        self.tunnel.as_ref().map(|t| t.segments())
    }

    /// The segments, writable (a link layer prepends its header to each).
    pub fn segments_mut(&mut self) -> Option<&mut SegmentBuf> {
        self.tunnel.as_mut().map(|t| t.segments_mut())
    }

    /// Packets from this pipeline's device carry firewall mark `mark`
    /// (fwmark services: one device per mark).
    pub fn with_fwmark(mut self, mark: u32) -> Self {
        self.fwmark = Some(mark);
        self
    }

    /// This worker's counters, borrowed (no refcount traffic).
    pub fn counters_ref(&self) -> &Counters {
        &self.counters
    }

    /// This worker's counters.
    pub fn counters(&self) -> Arc<Counters> {
        self.counters.clone()
    }

    /// The last generated reply frame (valid after `Verdict::Reply(n)`: `[..n]`),
    /// with a zeroed virtio header in front when the frame had one.
    pub fn reply(&self) -> &[u8] {
        &self.reply
    }

    /// After `Verdict::Forward` of a direct-routing packet: the real server
    /// it must be delivered to at L2 (the IP packet itself is unchanged).
    /// `None` for every other verdict and method: route by the packet's
    /// (rewritten) destination.
    pub fn l2_dest(&self) -> Option<IpAddr> {
        self.l2_dest
    }

    /// After `Verdict::Forward` or `Verdict::Segments`: true when the
    /// frame(s) are tunnel packets built here (outer TTL final, next hop the
    /// outer destination; a link layer must not decrement the TTL again).
    pub fn encapsulated(&self) -> bool {
        self.encapsulated
    }

    /// Handle one frame in place: an IP packet, preceded by a 10-byte virtio
    /// header when `vnet` (offloads on). On `Forward`, write `buf.frame()`. With NEEDS_CSUM set, the L4 checksum
    /// field holds a pseudo-header seed and is updated as one; GSO
    /// super-packets pass with only their headers rewritten (NAT) or are cut
    /// into the frames of `Segments` (tunnel).
    pub fn handle(&mut self, now_ms: u64, buf: &mut PacketBuf, vnet: bool) -> Verdict {
        let v = self.classify(now_ms, buf, vnet);
        // Per-worker, single-writer counters: see `drop::bump`.
        match v {
            Verdict::Forward => {
                bump(&self.counters.forwarded, 1);
            }
            Verdict::Segments(n) => {
                bump(&self.counters.forwarded, n as u64);
                bump(&self.counters.segmented, 1);
            }
            Verdict::Reply(_) => {
                self.counters.count_drop(self.reply_reason);
                if !self.icmp_limit.allow(now_ms) {
                    self.counters.count_drop(DropReason::IcmpRateLimited);
                    return Verdict::Drop(self.reply_reason);
                }
                bump(&self.counters.replies, 1);
            }
            Verdict::Drop(r) => self.counters.count_drop(r),
        }
        v
    }

    fn classify(&mut self, now: u64, buf: &mut PacketBuf, vnet: bool) -> Verdict {
        self.l2_dest = None;
        self.encapsulated = false;
        let frame = buf.frame_mut();
        let (hdr_bytes, pkt) = if vnet {
            if frame.len() < VNET_HDR_LEN {
                return Verdict::Drop(DropReason::Malformed(ParseError::BadVnetHdr));
            }
            frame.split_at_mut(VNET_HDR_LEN)
        } else {
            frame.split_at_mut(0)
        };
        let info = match parse_ip(pkt) {
            Ok(i) => i,
            Err(e) => return Verdict::Drop(DropReason::Malformed(e)),
        };
        let mut hdr = None;
        if vnet {
            let mut b = [0u8; VNET_HDR_LEN];
            b.copy_from_slice(hdr_bytes);
            hdr = Some(VnetHdr::from_bytes(b));
        }
        let partial = match &hdr {
            Some(h) => match h.l4_partial(&info) {
                Ok(p) => p,
                Err(e) => return Verdict::Drop(DropReason::Malformed(e)),
            },
            None => false,
        };
        if info.is_icmp() {
            let v = match self.icmp(now, pkt, &info) {
                IcmpAction::Done(v) => v,
                IcmpAction::Tunnel(conn) => {
                    let p = TxPacket {
                        info: &info,
                        vnet: hdr,
                        partial: false,
                        icmp: true,
                    };
                    return self.tunnel_xmit(now, buf, p, &conn);
                }
            };
            if v == Verdict::Forward && partial {
                // The ICMP checksum was recomputed in full: nothing is partial now.
                hdr_bytes[0] &= !NEEDS_CSUM;
            }
            return v;
        }
        let key = crate::conntrack::FlowKey {
            proto: info.proto,
            src: info.src,
            sport: info.sport,
            dst: info.dst,
            dport: info.dport,
        };
        // No clone of the director per packet: its refcount would bounce
        // between the queue workers' cores.
        let found = self.dir.conns.lookup_live(&key, now);
        let (conn, side) = match found {
            Some((c, side)) => {
                // A SYN on a tuple whose old connection is closing starts a new
                // one (conn_reuse_mode=1, spec §3.10).
                if side == Side::Client && is_new_conn(&info) && c.is_reusable() {
                    self.dir.conns.expire_conn(&c);
                    match self.new_conn(now, pkt, &info, vnet) {
                        Ok(c) => (c, Side::Client),
                        Err(v) => return v,
                    }
                } else {
                    (c, side)
                }
            }
            None => match self.new_conn(now, pkt, &info, vnet) {
                Ok(c) => (c, Side::Client),
                Err(v) => return v,
            },
        };
        if side == Side::Client && !conn.dest.is_available() {
            // Destination deleted: its connections are kept but the client's
            // packets are not served (ip_vs_in); replies still are, as the
            // kernel's reply path (ip_vs_out) has no destination check.
            return Verdict::Drop(DropReason::DestDeleted);
        }
        let v = if !self.methods.allows(conn.fwd.fwd) {
            Verdict::Drop(DropReason::MethodUnavailable)
        } else {
            conn.on_packet(now, side, info.tcp_flags, &self.dir.conns.timeouts);
            self.count(&conn, side, info.total_len);
            if conn.fwd.fwd == FwdMethod::Masq
                && self.methods.decrement_ttl
                && !nat::decrement_ttl(pkt, &info)
            {
                return finish(&conn, self.time_exceeded(pkt, &info, vnet));
            }
            let res = match (side, conn.fwd.fwd) {
                (Side::Client, FwdMethod::Masq) => {
                    nat::rewrite_dst(pkt, &info, conn.daddr, conn.dport, partial)
                }
                (Side::Client, FwdMethod::Route) => {
                    // Direct routing: the IP packet goes on untouched; only
                    // its MAC addresses change (tap mode, L2 layer).
                    self.l2_dest = Some(conn.daddr);
                    Ok(())
                }
                (Side::Client, FwdMethod::Tunnel) => {
                    let p = TxPacket {
                        info: &info,
                        vnet: hdr,
                        partial,
                        icmp: false,
                    };
                    return finish(&conn, self.tunnel_xmit(now, buf, p, &conn));
                }
                (Side::Client, FwdMethod::Local) => {
                    return finish(&conn, Verdict::Drop(DropReason::MethodUnavailable))
                }
                (Side::Server, _) => nat::rewrite_src(pkt, &info, conn.vaddr, conn.vport, partial),
            };
            match res {
                Ok(()) => Verdict::Forward,
                Err(e) => Verdict::Drop(DropReason::Rewrite(e)),
            }
        };
        finish(&conn, v)
    }

    /// Count a packet of a connection (or related ICMP, spec §3.16) for its
    /// destination, its service and the director, in the flow's direction.
    fn count(&self, conn: &Conn, side: Side, len: usize) {
        for s in [&conn.dest.stats, &conn.svc.stats, &self.dir.stats] {
            match side {
                Side::Client => s.count_in_by(&self.writer, len),
                Side::Server => s.count_out_by(&self.writer, len),
            }
        }
    }

    /// A packet matching no connection: find its service and schedule it.
    fn new_conn(
        &mut self,
        now: u64,
        pkt: &[u8],
        info: &PacketInfo,
        vnet: bool,
    ) -> Result<Arc<Conn>, Verdict> {
        let svc = match self.fwmark {
            Some(m) => self.dir.find_fwmark(m, info.src.is_ipv6()),
            None => self.dir.find_service(info.proto, info.dst, info.dport),
        };
        let Some(svc) = svc else {
            return Err(Verdict::Drop(DropReason::NoMatch));
        };
        if info.proto == 6 && !is_new_conn(info) {
            return Err(Verdict::Drop(DropReason::NotSyn));
        }
        let flow = FlowInfo {
            proto: info.proto,
            saddr: info.src,
            sport: info.sport,
            daddr: info.dst,
            dport: info.dport,
            inverse: false,
        };
        let svc_port = svc.id.port();
        let is_fwmark = matches!(svc.id, SvcId::Fwmark { .. });
        let params = svc.params();
        let (dest, control) = if params.is_persistent() {
            match self.persistent_dest(now, &svc, params, info, &flow) {
                Some(x) => x,
                None => return Err(self.no_destination(pkt, info, vnet)),
            }
        } else {
            if !is_fwmark && info.dport != svc_port {
                return Err(Verdict::Drop(DropReason::PortZeroNotPersistent));
            }
            match svc.schedule(&flow, now) {
                Some(d) => (d, None),
                None => return Err(self.no_destination(pkt, info, vnet)),
            }
        };
        let mut dport = info.dport;
        if (dport == svc_port || (is_fwmark && control.is_none())) && dest.port != 0 {
            dport = dest.port;
        }
        let one_packet = params.is_one_packet() && info.proto == PROTO_UDP;
        let conn = Conn::new(
            NewConn {
                proto: info.proto,
                caddr: info.src,
                cport: info.sport,
                vaddr: info.dst,
                vport: info.dport,
                daddr: dest.addr,
                dport,
                dest: dest.clone(),
                svc: svc.clone(),
                control,
            },
            now,
            one_packet,
        );
        dest.stats.count_conn_by(&self.writer);
        svc.stats.count_conn_by(&self.writer);
        self.dir.stats.count_conn_by(&self.writer);
        if !one_packet {
            self.dir.conns.insert(conn.clone());
        }
        Ok(conn)
    }

    /// Persistence (spec §3.7): reuse the client's template, or schedule and
    /// create one.
    fn persistent_dest(
        &mut self,
        now: u64,
        svc: &Arc<Service>,
        params: SvcParams,
        info: &PacketInfo,
        flow: &FlowInfo,
    ) -> Option<(Arc<crate::service::Dest>, Option<Arc<Conn>>)> {
        let snet = mask_addr(info.src, params.netmask);
        let svc_port = svc.id.port();
        let key = if info.dport == svc_port && !matches!(svc.id, SvcId::Fwmark { .. }) {
            TemplateKey {
                proto: info.proto,
                snet,
                vaddr: info.dst,
                vport: if svc_port == 21 { 0 } else { svc_port },
            }
        } else if let SvcId::Fwmark { mark, .. } = svc.id {
            TemplateKey {
                proto: 0,
                snet,
                vaddr: IpAddr::V4(Ipv4Addr::from(mark)),
                vport: 0,
            }
        } else {
            TemplateKey {
                proto: info.proto,
                snet,
                vaddr: info.dst,
                vport: 0,
            }
        };
        let conns = &self.dir.conns;
        if let Some(t) = conns.template_live(&key, now) {
            if t.dest.is_available() {
                t.refresh(now);
                return Some((t.dest.clone(), Some(t)));
            }
            conns.invalidate_template(&key, &t);
        }
        let dest = svc.schedule(flow, now)?;
        let tdport = if info.dport == svc_port && svc_port != 21 {
            dest.port
        } else {
            0
        };
        let t = Conn::new_template(
            key,
            dest.addr,
            tdport,
            dest.clone(),
            svc.clone(),
            params.timeout,
            now,
        );
        conns.insert_template(t.clone());
        Some((dest, Some(t)))
    }

    /// Encapsulate for tunnel connection `conn` (spec §3.15).
    fn tunnel_xmit(
        &mut self,
        now: u64,
        buf: &mut PacketBuf,
        p: TxPacket<'_>,
        conn: &Conn,
    ) -> Verdict {
        let Some(tx) = self.tunnel.as_mut() else {
            return Verdict::Drop(DropReason::MethodUnavailable);
        };
        match tx.xmit(now, buf, p, &conn.fwd, conn.daddr, &mut self.reply) {
            TxOut::Forward => {
                self.encapsulated = true;
                Verdict::Forward
            }
            TxOut::Segments(n) => {
                self.encapsulated = true;
                Verdict::Segments(n)
            }
            TxOut::Reply { len, why } => {
                self.reply_reason = DropReason::Tunnel(why);
                Verdict::Reply(len)
            }
            TxOut::Drop(e) => Verdict::Drop(DropReason::Tunnel(e)),
        }
    }

    /// No destination available: answer the client with ICMP port
    /// unreachable, as the kernel does (spec §1.4).
    fn no_destination(&mut self, pkt: &[u8], info: &PacketInfo, vnet: bool) -> Verdict {
        self.reply_reason = DropReason::NoDestination;
        let off = if vnet { VNET_HDR_LEN } else { 0 };
        self.reply[..off].fill(0);
        match icmp::build_port_unreachable(&mut self.reply[off..], pkt, info) {
            Some(n) => Verdict::Reply(off + n),
            None => Verdict::Drop(DropReason::NoDestination),
        }
    }

    /// TTL ≤ 1 on a packet tunvs would route (tap-mode NAT): ICMP time
    /// exceeded back to its sender, as a router does.
    fn time_exceeded(&mut self, pkt: &[u8], info: &PacketInfo, vnet: bool) -> Verdict {
        self.reply_reason = DropReason::TtlExceeded;
        let off = if vnet { VNET_HDR_LEN } else { 0 };
        self.reply[..off].fill(0);
        let kind = icmp::IcmpErrorKind::TimeExceeded;
        match icmp::build_icmp_error(&mut self.reply[off..], pkt, info, kind) {
            Some(n) => Verdict::Reply(off + n),
            None => Verdict::Drop(DropReason::TtlExceeded),
        }
    }

    /// ICMP: errors about a tracked NAT flow are translated, errors from the
    /// client side about a tunnel connection are encapsulated to its real
    /// server (spec §3.13); everything else is not ours.
    fn icmp(&mut self, now: u64, pkt: &mut [u8], info: &PacketInfo) -> IcmpAction {
        use IcmpAction::Done;
        let Some(emb) = icmp::parse_icmp_error(pkt, info) else {
            return Done(Verdict::Drop(DropReason::IcmpNotError));
        };
        // The quoted packet went the other way: invert it to find the conn.
        let key = crate::conntrack::FlowKey {
            proto: emb.proto,
            src: emb.dst,
            sport: emb.dport,
            dst: emb.src,
            dport: emb.sport,
        };
        let Some((conn, side)) = self.dir.conns.lookup_live(&key, now) else {
            return Done(Verdict::Drop(DropReason::IcmpUnrelated));
        };
        if conn.fwd.fwd == FwdMethod::Tunnel && side == Side::Client && self.tunnel.is_some() {
            if !icmp::icmp_checksum_ok(pkt, info) {
                return Done(Verdict::Drop(DropReason::Rewrite(
                    nat::RewriteError::BadChecksum,
                )));
            }
            // Like NAT-related ICMP below: counted like the flow, no re-arm.
            self.count(&conn, Side::Client, info.total_len);
            return IcmpAction::Tunnel(conn);
        }
        if conn.fwd.fwd != FwdMethod::Masq {
            return Done(Verdict::Drop(DropReason::MethodUnavailable));
        }
        let len = info.total_len;
        let res = match side {
            Side::Client => icmp::icmp_nat_in(pkt, info, &emb, conn.daddr, conn.dport),
            Side::Server => icmp::icmp_nat_out(pkt, info, &emb, conn.vaddr, conn.vport),
        };
        if let Err(e) = res {
            return Done(Verdict::Drop(DropReason::Rewrite(e)));
        }
        // No timer re-arm: the kernel only puts the conn back (ip_vs_in_icmp,
        // __ip_vs_conn_put), so errors alone never keep a flow alive.
        //
        // Related ICMP counts like the flow's packets (spec §3.16).
        self.count(&conn, side, len);
        Done(Verdict::Forward)
    }
}

/// What [`Pipeline::icmp`] decided.
enum IcmpAction {
    /// Done (translated in place, or dropped).
    Done(Verdict),
    /// An error from the client side about this tunnel connection: encapsulate it.
    Tunnel(Arc<Conn>),
}

/// A one-packet connection (`-o`) is never hashed: it goes with its packet,
/// whatever became of the packet.
fn finish(conn: &Arc<Conn>, v: Verdict) -> Verdict {
    if conn.is_one_packet() {
        ConnTable::release_unhashed(conn);
    }
    v
}

/// A TCP SYN without RST: the only TCP packet that may start a connection.
fn is_new_conn(info: &PacketInfo) -> bool {
    info.proto == 6 && info.tcp_flags & tcpf::SYN != 0 && info.tcp_flags & tcpf::RST == 0
}

/// Mask a client address with the service netmask (IPv4 mask as a u32,
/// IPv6 prefix length).
pub fn mask_addr(a: IpAddr, netmask: u32) -> IpAddr {
    match a {
        IpAddr::V4(v4) => IpAddr::V4(Ipv4Addr::from(u32::from(v4) & netmask)),
        IpAddr::V6(v6) => {
            let bits = netmask.min(128);
            let m: u128 = if bits == 0 {
                0
            } else {
                u128::MAX << (128 - bits)
            };
            IpAddr::V6(Ipv6Addr::from(u128::from(v6) & m))
        }
    }
}

#[cfg(test)]
mod test {
    use super::IcmpLimit;

    #[test]
    fn icmp_limit_allows_a_burst_then_the_rate() {
        let mut l = IcmpLimit::new();
        let sent = (0..100).filter(|_| l.allow(1_000)).count();
        assert_eq!(
            sent,
            IcmpLimit::BURST as usize,
            "a burst, then nothing at the same instant"
        );
        // 10 ms later: 10 more tokens at 1000/s.
        let sent = (0..100).filter(|_| l.allow(1_010)).count();
        assert_eq!(sent, 10);
        // A long pause refills only up to the burst.
        let sent = (0..100).filter(|_| l.allow(60_000)).count();
        assert_eq!(sent, IcmpLimit::BURST as usize);
    }
}
