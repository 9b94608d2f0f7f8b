//! The tap-mode (L2) layer around the IP [`Pipeline`]: it classifies each
//! Ethernet frame read from the TAP, answers for the director's own
//! addresses, runs the IP pipeline on the IP part, and rewrites the Ethernet
//! header of what goes out.
//!
//! Classification (`handle`):
//! * a frame neither to our MAC nor to a group address is not for us
//!   (a bridge floods unknown unicast): dropped, counted `not_for_us`;
//! * **ARP**: its sender is snooped into the [`NeighTable`] (queued frames
//!   for it go out at once); a request or reply for a DIP goes to smoltcp
//!   ([`Host`]), which answers; a request for a VIP is answered here;
//! * **IP to a DIP** goes to smoltcp (ICMP echo, later health checks) —
//!   except ICMP errors quoting one of our tunnel packets, which go to
//!   [`tunnel_icmp::handle`] (path MTU, relay to the client, out of the TAP);
//! * **ICMP echo to a VIP** is answered here, in place;
//! * **any other IP** goes to the IP pipeline: a VIP:port (new or known
//!   connection), or a NAT real server's reply.
//!
//! What the pipeline forwards gets a new Ethernet header — source our MAC,
//! destination the next hop's MAC from the neighbour table:
//! * **direct routing** (`-g`): the real server itself (it must be on one of
//!   the director's links). The IP packet is left exactly as it came,
//!   TTL included: the kernel's IPVS decrements TTL for DR, tunvs does not,
//!   so a DR frame differs from the input in its 12 MAC bytes only and a GSO
//!   super-frame passes with its virtio header unchanged (the router in
//!   front of the director has already decremented it);
//! * **NAT** (`-m`): the packet's new destination if it is on one of our
//!   links, else the gateway (`--gateway`). Here the director is the router
//!   between client and real server, so the TTL is decremented (as the
//!   kernel does when it forwards what a TUN device hands it); a packet
//!   arriving with TTL ≤ 1 is dropped and counted `ttl_exceeded`;
//! * **tunnelling** (`-i`): the outer destination (the real server) if it is
//!   on one of our links, else the gateway. The tunnel transmitter
//!   ([`crate::dataplane::xmit_tunnel`], configured by
//!   [`crate::dataplane::l2_tunnel::tunnel_config`]) already decremented
//!   the inner TTL and copied it to the outer header, so the TTL is left
//!   alone here. A GSO super-packet arrives cut into segments
//!   ([`L2Verdict::Segments`]), each of which gets its Ethernet header
//!   (and waits for the neighbour, if need be) like any other frame.
//!
//! An unresolved next hop gets an ARP request, and up to
//! [`neigh::PER_NEIGH`] frames wait in a fixed per-worker pool
//! ([`PendingQueue`]); the rest are dropped and counted. [`L2Pipeline::poll`]
//! sends them once the answer is in (it may arrive on another queue),
//! retries the requests, and drives smoltcp's timers.
//!
//! With the virtio header on, its `csum_start` and `hdr_len` count from the
//! Ethernet header; they are moved to IP-relative values around the IP
//! pipeline and back, so the pipeline sees exactly what it sees in tun mode.
//!
//! Nothing here reads a clock or allocates per forwarded packet.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};

use crate::dataplane::buf::PacketBuf;
use crate::dataplane::drop::{bump, DropReason};
use crate::dataplane::neigh::{self, Mac, NeighTable, PendingQueue, Resolution};
use crate::dataplane::pipeline::{Pipeline, Verdict};
use crate::dataplane::tunnel_icmp::{self, Outcome};
use crate::dataplane::xmit_tunnel::{TunnelConfig, TunnelError, TunnelRoutes, TunnelTx};
use crate::director::Director;
use crate::host::Host;
use crate::packet::csum;
use crate::packet::vnet::{NEEDS_CSUM, VNET_HDR_LEN};

/// Length of an Ethernet header (no VLAN tag).
pub const ETH_LEN: usize = 14;
/// EtherType of IPv4.
pub const ETHERTYPE_IPV4: u16 = 0x0800;
/// EtherType of ARP.
pub const ETHERTYPE_ARP: u16 = 0x0806;
/// EtherType of IPv6.
pub const ETHERTYPE_IPV6: u16 = 0x86dd;
/// Length of an Ethernet/IPv4 ARP packet.
pub const ARP_LEN: usize = 28;
/// The broadcast MAC.
pub const BROADCAST: Mac = [0xff; 6];
/// Frames the pending pool of one worker holds.
pub const PENDING_SLOTS: usize = 16;
/// Frames wait for a neighbour at most this long.
const PENDING_MAX_MS: u64 = neigh::PROBE_INTERVAL_MS * neigh::MAX_PROBES as u64 + 500;
/// How often `poll` wants to run while frames wait.
const PENDING_POLL_MS: u64 = 10;
/// TTL of the echo replies tunvs sends for VIPs.
const ECHO_TTL: u8 = 64;

/// The director's L2 identity, shared by the workers.
#[derive(Debug, Clone)]
pub struct L2Config {
    /// Our MAC (the source of every frame we send).
    pub mac: Mac,
    /// The director's addresses (DIPs) with their prefix lengths; their
    /// prefixes are the links the director is on.
    pub addrs: Vec<(IpAddr, u8)>,
    /// Next hop for destinations on none of those links (NAT clients).
    pub gateway: Option<IpAddr>,
    /// Frames carry the 10-byte virtio-net header.
    pub vnet: bool,
}

impl L2Config {
    /// True when `ip` is one of the director's own addresses.
    pub fn is_dip(&self, ip: IpAddr) -> bool {
        self.addrs.iter().any(|&(a, _)| a == ip)
    }

    /// The DIP whose prefix holds `ip`, if `ip` is on one of our links.
    pub fn link_of(&self, ip: IpAddr) -> Option<IpAddr> {
        self.addrs
            .iter()
            .find(|&&(a, len)| same_prefix(a, ip, len))
            .map(|&(a, _)| a)
    }

    /// The next hop toward `dst`: itself when on one of our links, else
    /// the gateway.
    pub fn route(&self, dst: IpAddr) -> Option<IpAddr> {
        if self.link_of(dst).is_some() {
            Some(dst)
        } else {
            self.gateway.filter(|g| g.is_ipv4() == dst.is_ipv4())
        }
    }
}

/// True when `a` and `b` share their first `len` bits (same family only).
pub fn same_prefix(a: IpAddr, b: IpAddr, len: u8) -> bool {
    match (a, b) {
        (IpAddr::V4(a), IpAddr::V4(b)) => {
            let m = if len == 0 {
                0
            } else {
                u32::MAX << (32 - u32::from(len.min(32)))
            };
            u32::from(a) & m == u32::from(b) & m
        }
        (IpAddr::V6(a), IpAddr::V6(b)) => {
            let m = if len == 0 {
                0
            } else {
                u128::MAX << (128 - u32::from(len.min(128)))
            };
            u128::from(a) & m == u128::from(b) & m
        }
        _ => false,
    }
}

/// Why the L2 layer dropped a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum L2Drop {
    /// The IP pipeline dropped it (counted there, by reason).
    Ip(DropReason),
    /// Addressed to another MAC (or sent by ourselves).
    NotForUs,
    /// Neither ARP, IPv4 nor IPv6 (VLAN-tagged frames included).
    UnsupportedEtherType,
    /// Too short, or an ARP packet that is not Ethernet/IPv4.
    Malformed,
    /// No next hop: a DR real server on none of our links, or no gateway.
    NoRoute,
    /// The next hop did not answer ARP.
    NeighFailed,
    /// Too many frames already wait for the next hop.
    QueueFull,
    /// IPv6 next hops are not resolved yet (no NDP on the data path).
    Ipv6NextHop,
}

impl L2Drop {
    /// Every L2 reason, in counter order.
    pub const ALL: [L2Drop; 7] = [
        L2Drop::NotForUs,
        L2Drop::UnsupportedEtherType,
        L2Drop::Malformed,
        L2Drop::NoRoute,
        L2Drop::NeighFailed,
        L2Drop::QueueFull,
        L2Drop::Ipv6NextHop,
    ];

    /// Counter name (`l2_` + reason); `None` for pipeline drops.
    pub fn name(self) -> Option<&'static str> {
        Some(match self {
            L2Drop::Ip(_) => return None,
            L2Drop::NotForUs => "l2_not_for_us",
            L2Drop::UnsupportedEtherType => "l2_unsupported_ethertype",
            L2Drop::Malformed => "l2_malformed",
            L2Drop::NoRoute => "l2_no_route",
            L2Drop::NeighFailed => "l2_neigh_failed",
            L2Drop::QueueFull => "l2_neigh_queue_full",
            L2Drop::Ipv6NextHop => "l2_ipv6_next_hop",
        })
    }

    fn index(self) -> Option<usize> {
        L2Drop::ALL.iter().position(|&d| d == self)
    }
}

/// What to do with a frame after [`L2Pipeline::handle`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum L2Verdict {
    /// Write `buf.frame()` (forwarded, or answered in place).
    Forward,
    /// Write `reply()[..n]` instead (an ARP reply, or an ICMP error).
    Reply(usize),
    /// Write the first `n` frames of `segments()` instead (a GSO
    /// super-packet cut and encapsulated for a tunnel, each frame with its
    /// Ethernet header).
    Segments(usize),
    /// Taken: given to smoltcp, snooped, or queued for a neighbour; any
    /// frames it caused were passed to `emit`.
    Consumed,
    /// Dropped, for this reason.
    Drop(L2Drop),
}

/// The L2 counters of one worker (atomics: the control thread reads them;
/// only the worker writes them, with [`bump`]).
#[derive(Debug, Default)]
pub struct L2Counters {
    /// ARP frames read.
    pub arp_in: AtomicU64,
    /// ARP requests for VIPs answered by tunvs.
    pub arp_replies: AtomicU64,
    /// ARP requests tunvs sent (next hops, probes, announcements).
    pub arp_requests: AtomicU64,
    /// Frames handed to smoltcp.
    pub to_host: AtomicU64,
    /// Frames smoltcp sent.
    pub from_host: AtomicU64,
    /// ICMP echo requests to VIPs answered.
    pub echo_replies: AtomicU64,
    /// IP frames handed to the IP pipeline.
    pub ip_in: AtomicU64,
    /// Frames queued for an unresolved neighbour.
    pub queued: AtomicU64,
    /// Queued frames sent once their neighbour answered.
    pub flushed: AtomicU64,
    drops: [AtomicU64; 8],
}

impl L2Counters {
    /// Count a drop (pipeline drops are counted by the pipeline).
    pub fn count_drop(&self, d: L2Drop) {
        if let Some(i) = d.index() {
            bump(&self.drops[i], 1);
        }
    }

    /// The count of one L2 drop reason.
    pub fn get(&self, d: L2Drop) -> u64 {
        d.index().map_or(0, |i| self.drops[i].load(Relaxed))
    }

    /// Rows `(name, value)` summed over `workers`, for `tunvs drops`.
    pub fn report(workers: &[Arc<L2Counters>]) -> Vec<(&'static str, u64)> {
        let sum = |f: &dyn Fn(&L2Counters) -> u64| workers.iter().map(|w| f(w)).sum::<u64>();
        let mut rows = vec![
            ("l2_ip_in", sum(&|c| c.ip_in.load(Relaxed))),
            ("l2_arp_in", sum(&|c| c.arp_in.load(Relaxed))),
            ("l2_arp_replies", sum(&|c| c.arp_replies.load(Relaxed))),
            ("l2_arp_requests", sum(&|c| c.arp_requests.load(Relaxed))),
            ("l2_echo_replies", sum(&|c| c.echo_replies.load(Relaxed))),
            ("l2_to_host", sum(&|c| c.to_host.load(Relaxed))),
            ("l2_from_host", sum(&|c| c.from_host.load(Relaxed))),
            ("l2_queued", sum(&|c| c.queued.load(Relaxed))),
            ("l2_flushed", sum(&|c| c.flushed.load(Relaxed))),
        ];
        for (i, d) in L2Drop::ALL.iter().enumerate() {
            if let Some(name) = d.name() {
                rows.push((name, sum(&|c| c.drops[i].load(Relaxed))));
            }
        }
        rows
    }
}

/// Longest frame smoltcp or the ARP code emits, plus the virtio header.
const SCRATCH_LEN: usize = VNET_HDR_LEN + crate::host::FRAME_MTU + 64;

/// One worker's L2 pipeline.
#[derive(Debug)]
pub struct L2Pipeline {
    pipe: Pipeline,
    dir: Arc<Director>,
    cfg: Arc<L2Config>,
    neigh: Arc<NeighTable>,
    host: Arc<Mutex<Host>>,
    counters: Arc<L2Counters>,
    pending: PendingQueue,
    reply: Box<[u8]>,
    scratch: Box<[u8]>,
    drives_host: bool,
    host_due_ms: u64,
    tunnel_routes: Option<Arc<TunnelRoutes>>,
}

impl L2Pipeline {
    /// A worker's L2 pipeline around `pipe` (built with `Methods::TAP`).
    /// Frames of up to `frame_len` bytes (virtio header included) can wait
    /// for a neighbour. One worker (`drives_host`) runs smoltcp's timers.
    pub fn new(
        pipe: Pipeline,
        dir: Arc<Director>,
        cfg: Arc<L2Config>,
        neigh: Arc<NeighTable>,
        host: Arc<Mutex<Host>>,
        frame_len: usize,
        drives_host: bool,
    ) -> Self {
        L2Pipeline {
            pipe,
            dir,
            cfg,
            neigh,
            host,
            counters: Arc::new(L2Counters::default()),
            pending: PendingQueue::new(PENDING_SLOTS, frame_len),
            reply: vec![0u8; crate::dataplane::pipeline::REPLY_MAX + ETH_LEN + SCRATCH_LEN]
                .into_boxed_slice(),
            scratch: vec![0u8; SCRATCH_LEN].into_boxed_slice(),
            drives_host,
            host_due_ms: 0,
            tunnel_routes: None,
        }
    }

    /// Carry tunnel (`-i`) destinations: the IP pipeline gets a tunnel
    /// transmitter over `routes` with `tcfg` (tap mode:
    /// [`crate::dataplane::l2_tunnel::tunnel_config`]), and ICMP errors to
    /// a DIP about our tunnel packets are handled against the same routes.
    pub fn with_tunnel(self, routes: Arc<TunnelRoutes>, tcfg: TunnelConfig) -> Self {
        L2Pipeline {
            pipe: self.pipe.with_tunnel(TunnelTx::new(routes.clone(), tcfg)),
            tunnel_routes: Some(routes),
            ..self
        }
    }

    /// The frames of the last `L2Verdict::Segments(n)` (the first `n`).
    pub fn segments(&self) -> impl Iterator<Item = &[u8]> {
        self.pipe.segments().into_iter().flat_map(|s| s.iter())
    }

    /// The IP pipeline inside (its counters: forwarded, drops by reason).
    pub fn pipeline(&self) -> &Pipeline {
        &self.pipe
    }

    /// The shared neighbour table.
    pub fn neigh(&self) -> &NeighTable {
        &self.neigh
    }

    /// This worker's L2 counters.
    pub fn counters(&self) -> Arc<L2Counters> {
        self.counters.clone()
    }

    /// The frame to write after `L2Verdict::Reply(n)`: `[..n]`.
    pub fn reply(&self) -> &[u8] {
        &self.reply
    }

    /// Frames waiting for a neighbour.
    pub fn pending(&self) -> usize {
        self.pending.len()
    }

    fn off(&self) -> usize {
        if self.cfg.vnet {
            VNET_HDR_LEN
        } else {
            0
        }
    }

    /// Handle one frame read from the TAP (virtio header first when
    /// `vnet`). Frames it causes besides the verdict's (smoltcp's answers,
    /// ARP requests, queued frames now resolved) go to `emit`, complete
    /// with a virtio header when `vnet`.
    pub fn handle(
        &mut self,
        now_ms: u64,
        buf: &mut PacketBuf,
        emit: &mut dyn FnMut(&[u8]),
    ) -> L2Verdict {
        let v = self.classify(now_ms, buf, emit);
        match v {
            L2Verdict::Drop(d) => self.counters.count_drop(d),
            L2Verdict::Consumed
            | L2Verdict::Forward
            | L2Verdict::Reply(_)
            | L2Verdict::Segments(_) => {}
        }
        v
    }

    fn classify(
        &mut self,
        now: u64,
        buf: &mut PacketBuf,
        emit: &mut dyn FnMut(&[u8]),
    ) -> L2Verdict {
        let off = self.off();
        let frame = buf.frame();
        let Some(eth) = frame.get(off..off + ETH_LEN) else {
            return L2Verdict::Drop(L2Drop::Malformed);
        };
        let dst: Mac = eth[0..6].try_into().unwrap_or_default();
        let src: Mac = eth[6..12].try_into().unwrap_or_default();
        let ethertype = u16::from_be_bytes([eth[12], eth[13]]);
        let group = dst[0] & 1 != 0;
        if (!group && dst != self.cfg.mac) || src == self.cfg.mac {
            return L2Verdict::Drop(L2Drop::NotForUs);
        }
        match ethertype {
            ETHERTYPE_ARP => self.arp(now, buf, emit),
            ETHERTYPE_IPV4 | ETHERTYPE_IPV6 => self.ip(now, buf, group, emit),
            _ => L2Verdict::Drop(L2Drop::UnsupportedEtherType),
        }
    }

    /// Pass an Ethernet frame (no virtio header) to `emit`, with a zeroed
    /// virtio header in front when `vnet`.
    fn emit_eth(scratch: &mut [u8], vnet: bool, frame: &[u8], emit: &mut dyn FnMut(&[u8])) {
        if !vnet {
            emit(frame);
            return;
        }
        let n = VNET_HDR_LEN + frame.len();
        if let Some(out) = scratch.get_mut(..n) {
            out[..VNET_HDR_LEN].fill(0);
            out[VNET_HDR_LEN..].copy_from_slice(frame);
            emit(out);
        }
    }

    /// Give an Ethernet frame to smoltcp and send what it answers.
    fn give_host(
        &mut self,
        now: u64,
        eth_frame_start: usize,
        buf: &PacketBuf,
        emit: &mut dyn FnMut(&[u8]),
    ) {
        bump(&self.counters.to_host, 1);
        let vnet = self.cfg.vnet;
        let scratch = &mut self.scratch;
        let counters = &self.counters;
        let mut host = self.host.lock().unwrap_or_else(|e| e.into_inner());
        host.receive(now, &buf.frame()[eth_frame_start..], &mut |f| {
            bump(&counters.from_host, 1);
            Self::emit_eth(scratch, vnet, f, emit);
        });
    }

    fn arp(&mut self, now: u64, buf: &mut PacketBuf, emit: &mut dyn FnMut(&[u8])) -> L2Verdict {
        bump(&self.counters.arp_in, 1);
        let off = self.off();
        let frame = buf.frame();
        let Some(a) = frame.get(off + ETH_LEN..off + ETH_LEN + ARP_LEN) else {
            return L2Verdict::Drop(L2Drop::Malformed);
        };
        // Ethernet (1) / IPv4 (0x0800), 6-byte and 4-byte addresses.
        if a[0..6] != [0, 1, 8, 0, 6, 4] {
            return L2Verdict::Drop(L2Drop::Malformed);
        }
        let op = u16::from_be_bytes([a[6], a[7]]);
        let sha: Mac = a[8..14].try_into().unwrap_or_default();
        let spa = IpAddr::V4(Ipv4Addr::new(a[14], a[15], a[16], a[17]));
        let tpa = IpAddr::V4(Ipv4Addr::new(a[24], a[25], a[26], a[27]));
        let for_dip = self.cfg.is_dip(tpa);
        // Snoop the sender: update what we know, learn new on-link hosts.
        if spa != IpAddr::V4(Ipv4Addr::UNSPECIFIED)
            && sha[0] & 1 == 0
            && sha != self.cfg.mac
            && !self.cfg.is_dip(spa)
        {
            let create = for_dip || self.cfg.link_of(spa).is_some();
            if self.neigh.learn(spa, sha, now, create) {
                self.flush(now, spa, sha, emit);
            }
        }
        if for_dip {
            self.give_host(now, off, buf, emit);
            return L2Verdict::Consumed;
        }
        if op == 1 && tpa != spa && self.dir.is_vip(tpa) {
            let n = self.arp_reply(&sha, spa, tpa);
            bump(&self.counters.arp_replies, 1);
            return L2Verdict::Reply(n);
        }
        L2Verdict::Consumed
    }

    /// Build in `reply` our ARP reply telling `to` (at `to_mac`) that
    /// `ours` is at our MAC; returns its length.
    fn arp_reply(&mut self, to_mac: &Mac, to: IpAddr, ours: IpAddr) -> usize {
        let off = self.off();
        let out = &mut self.reply[..off + ETH_LEN + ARP_LEN];
        out[..off].fill(0);
        write_arp(&mut out[off..], to_mac, &self.cfg.mac, 2, ours, to_mac, to);
        off + ETH_LEN + ARP_LEN
    }

    /// Send a broadcast ARP request for `target` from the DIP on its link.
    fn arp_request(&mut self, target: IpAddr, emit: &mut dyn FnMut(&[u8])) {
        let Some(src) = self.cfg.link_of(target).or_else(|| {
            self.cfg
                .addrs
                .iter()
                .find(|(a, _)| a.is_ipv4())
                .map(|&(a, _)| a)
        }) else {
            return;
        };
        let off = self.off();
        let n = off + ETH_LEN + ARP_LEN;
        let out = &mut self.scratch[..n];
        out[..off].fill(0);
        write_arp(
            &mut out[off..],
            &BROADCAST,
            &self.cfg.mac,
            1,
            src,
            &[0; 6],
            target,
        );
        bump(&self.counters.arp_requests, 1);
        emit(&self.scratch[..n]);
    }

    /// Announce the director's IPv4 addresses (gratuitous ARP), so
    /// neighbours that cached an older MAC for them update it.
    pub fn announce(&mut self, emit: &mut dyn FnMut(&[u8])) {
        let addrs: Vec<IpAddr> = self
            .cfg
            .addrs
            .iter()
            .map(|&(a, _)| a)
            .filter(IpAddr::is_ipv4)
            .collect();
        let off = self.off();
        let n = off + ETH_LEN + ARP_LEN;
        for a in addrs {
            let out = &mut self.scratch[..n];
            out[..off].fill(0);
            write_arp(&mut out[off..], &BROADCAST, &self.cfg.mac, 1, a, &[0; 6], a);
            bump(&self.counters.arp_requests, 1);
            emit(&self.scratch[..n]);
        }
    }

    /// Send the frames queued for `ip`, now known to be at `mac`.
    fn flush(&mut self, _now: u64, ip: IpAddr, mac: Mac, emit: &mut dyn FnMut(&[u8])) {
        let off = self.off();
        let counters = &self.counters;
        self.pending.drain(ip, |f| {
            if let Some(d) = f.get_mut(off..off + 6) {
                d.copy_from_slice(&mac);
            }
            bump(&counters.flushed, 1);
            emit(f);
        });
    }

    fn ip(
        &mut self,
        now: u64,
        buf: &mut PacketBuf,
        group: bool,
        emit: &mut dyn FnMut(&[u8]),
    ) -> L2Verdict {
        let off = self.off();
        let ip_off = off + ETH_LEN;
        let frame = buf.frame();
        let Some((dst, proto, v6)) = ip_dst(&frame[ip_off..]) else {
            return L2Verdict::Drop(L2Drop::Malformed);
        };
        if group {
            // Broadcast/multicast IP: only IPv6 neighbour discovery
            // (ICMPv6) is of interest, for smoltcp's addresses.
            if v6 && proto == crate::packet::PROTO_ICMPV6 {
                self.give_host(now, off, buf, emit);
                return L2Verdict::Consumed;
            }
            return L2Verdict::Drop(L2Drop::NotForUs);
        }
        if self.cfg.is_dip(dst) {
            if !v6 && proto == crate::packet::PROTO_ICMP {
                if let Some(v) = self.tunnel_icmp(now, buf, emit) {
                    return v;
                }
            }
            self.give_host(now, off, buf, emit);
            return L2Verdict::Consumed;
        }
        if !v6 && proto == crate::packet::PROTO_ICMP && self.dir.is_vip(dst) {
            if let Some(v) = self.echo_reply(buf) {
                return v;
            }
        }
        self.run_pipeline(now, buf, emit)
    }

    /// An ICMP error to a DIP about one of our tunnel packets (a router on
    /// the way to a tunnel real server, or the real server itself, could not
    /// take it): [`tunnel_icmp::handle`] lowers the path MTU and builds the
    /// error for the client, which leaves through the TAP toward the client's
    /// next hop. `None` when it is not about our tunnels (smoltcp's then).
    fn tunnel_icmp(
        &mut self,
        now: u64,
        buf: &PacketBuf,
        emit: &mut dyn FnMut(&[u8]),
    ) -> Option<L2Verdict> {
        let routes = self.tunnel_routes.as_ref()?;
        let off = self.off();
        let start = off + ETH_LEN;
        let pkt = buf.frame().get(start..)?;
        let ihl = usize::from(pkt.first()? & 0x0f) * 4;
        if !matches!(pkt.get(ihl), Some(3 | 4 | 11)) {
            return None;
        }
        let out = self.reply.get_mut(start..)?;
        let (to, len, frag_needed) = match tunnel_icmp::handle(&self.dir, routes, now, pkt, out) {
            Outcome::NotOurs | Outcome::BadChecksum => return None,
            Outcome::Consumed => return Some(L2Verdict::Consumed),
            Outcome::Reply {
                to,
                len,
                frag_needed,
            } => (to, len, frag_needed),
        };
        bump(&self.pipe.counters_ref().replies, 1);
        if frag_needed {
            self.pipe
                .counters_ref()
                .count_drop(DropReason::Tunnel(TunnelError::FragNeeded));
        }
        let total = start + len;
        let frame = &mut self.reply[..total];
        frame[..off].fill(0);
        frame[off + 6..off + 12].copy_from_slice(&self.cfg.mac);
        frame[off + 12..off + 14].copy_from_slice(&ETHERTYPE_IPV4.to_be_bytes());
        let Some(nh) = self.cfg.route(IpAddr::V4(to)) else {
            return Some(L2Verdict::Drop(L2Drop::NoRoute));
        };
        let (next, probe) = next_hop(
            &self.neigh,
            &mut self.pending,
            &self.counters,
            now,
            nh,
            off,
            frame,
        );
        if probe {
            self.arp_request(nh, emit);
        }
        Some(match next {
            Next::Send => L2Verdict::Reply(total),
            Next::Queued => L2Verdict::Consumed,
            Next::Drop(d) => L2Verdict::Drop(d),
        })
    }

    /// Answer an ICMP echo request to a VIP in place; `None` if it is not one.
    fn echo_reply(&mut self, buf: &mut PacketBuf) -> Option<L2Verdict> {
        let off = self.off();
        let mac = self.cfg.mac;
        let frame = buf.frame_mut();
        let ip = frame.get_mut(off + ETH_LEN..)?;
        let ihl = usize::from(ip.first()? & 0x0f) * 4;
        let total = usize::from(u16::from_be_bytes([*ip.get(2)?, *ip.get(3)?]));
        if ihl < 20 || total < ihl + 8 || total > ip.len() {
            return None;
        }
        let frag = u16::from_be_bytes([ip[6], ip[7]]);
        if frag & 0x3fff != 0 || ip[ihl] != 8 || ip[ihl + 1] != 0 {
            return None;
        }
        // IP: swap the addresses, reset the TTL, recompute the checksum.
        let (s, d) = (
            [ip[12], ip[13], ip[14], ip[15]],
            [ip[16], ip[17], ip[18], ip[19]],
        );
        ip[12..16].copy_from_slice(&d);
        ip[16..20].copy_from_slice(&s);
        ip[8] = ECHO_TTL;
        ip[10..12].fill(0);
        let c = csum::checksum(&ip[..ihl]);
        ip[10..12].copy_from_slice(&c.to_be_bytes());
        // ICMP: echo reply, checksum over the whole message.
        let icmp = &mut ip[ihl..total];
        icmp[0] = 0;
        icmp[2..4].fill(0);
        let c = csum::checksum(icmp);
        icmp[2..4].copy_from_slice(&c.to_be_bytes());
        // Ethernet: back to the sender.
        let eth = &mut frame[off..off + ETH_LEN];
        let (a, b) = eth.split_at_mut(6);
        a.copy_from_slice(&b[..6]);
        b[..6].copy_from_slice(&mac);
        // Nothing partial or segmented about the answer.
        frame[..off].fill(0);
        buf.truncate(off + ETH_LEN + total);
        bump(&self.counters.echo_replies, 1);
        Some(L2Verdict::Forward)
    }

    /// Run the IP pipeline on the IP part of the frame, then give what it
    /// forwards its Ethernet header.
    fn run_pipeline(
        &mut self,
        now: u64,
        buf: &mut PacketBuf,
        emit: &mut dyn FnMut(&[u8]),
    ) -> L2Verdict {
        bump(&self.counters.ip_in, 1);
        let vnet = self.cfg.vnet;
        let off = self.off();
        let mut eth = [0u8; ETH_LEN];
        {
            let frame = buf.frame_mut();
            eth.copy_from_slice(&frame[off..off + ETH_LEN]);
            if vnet {
                // [V][E][IP] → [.. E'][V'][IP]: the header moves next to
                // the IP packet, with IP-relative offsets.
                let mut h = [0u8; VNET_HDR_LEN];
                h.copy_from_slice(&frame[..VNET_HDR_LEN]);
                if !shift_vnet(&mut h, false) {
                    return L2Verdict::Drop(L2Drop::Ip(DropReason::Malformed(
                        crate::packet::ParseError::BadVnetHdr,
                    )));
                }
                frame[ETH_LEN..ETH_LEN + VNET_HDR_LEN].copy_from_slice(&h);
            }
        }
        buf.advance(ETH_LEN);
        let v = self.pipe.handle(now, buf, vnet);
        match v {
            Verdict::Forward => {}
            Verdict::Drop(r) => return L2Verdict::Drop(L2Drop::Ip(r)),
            Verdict::Segments(n) => return self.segments_out(now, n, emit),
            Verdict::Reply(n) => {
                // An ICMP error back to whoever sent the frame.
                let r = &self.pipe.reply()[..n];
                let (h, pkt) = r.split_at(off.min(r.len()));
                let total = off + ETH_LEN + pkt.len();
                let Some(out) = self.reply.get_mut(..total) else {
                    return L2Verdict::Drop(L2Drop::Malformed);
                };
                out[..off].copy_from_slice(h);
                out[off..off + 6].copy_from_slice(&eth[6..12]);
                out[off + 6..off + 12].copy_from_slice(&self.cfg.mac);
                out[off + 12..off + 14].copy_from_slice(&eth[12..14]);
                out[off + ETH_LEN..].copy_from_slice(pkt);
                return L2Verdict::Reply(total);
            }
        }
        // The next hop: the DR real server itself, or a route (toward the
        // outer destination for a tunnel packet). The pipeline already did
        // the router's TTL work (Methods::TAP).
        let dr = self.pipe.l2_dest();
        let encapsulated = self.pipe.encapsulated();
        let nh = match dr {
            Some(rip) => self.cfg.link_of(rip).map(|_| rip),
            None => {
                let Some((dst, _, _)) = ip_dst(&buf.frame()[off..]) else {
                    return L2Verdict::Drop(L2Drop::Malformed);
                };
                self.cfg.route(dst)
            }
        };
        let Some(nh) = nh else {
            return L2Verdict::Drop(L2Drop::NoRoute);
        };
        // Put the Ethernet header back in front: [V][E'][IP].
        let Some(frame) = buf.prepend(ETH_LEN) else {
            return L2Verdict::Drop(L2Drop::Malformed);
        };
        if vnet {
            let mut h = [0u8; VNET_HDR_LEN];
            h.copy_from_slice(&frame[ETH_LEN..ETH_LEN + VNET_HDR_LEN]);
            shift_vnet(&mut h, true);
            frame[..VNET_HDR_LEN].copy_from_slice(&h);
        }
        let e = &mut frame[off..off + ETH_LEN];
        e[6..12].copy_from_slice(&self.cfg.mac);
        if encapsulated {
            // The outer header is IPv4 whatever the inner packet is.
            e[12..14].copy_from_slice(&ETHERTYPE_IPV4.to_be_bytes());
        } else {
            e[12..14].copy_from_slice(&eth[12..14]);
        }
        let (next, probe) = next_hop(
            &self.neigh,
            &mut self.pending,
            &self.counters,
            now,
            nh,
            off,
            buf.frame_mut(),
        );
        if probe {
            self.arp_request(nh, emit);
        }
        match next {
            Next::Send => L2Verdict::Forward,
            Next::Queued => L2Verdict::Consumed,
            Next::Drop(d) => L2Verdict::Drop(d),
        }
    }

    /// The `n` tunnel segments the IP pipeline left in its segment buffer,
    /// each `[V][outer IP]` (zeroed virtio header when `vnet`): each gets
    /// its Ethernet header in its headroom, `[V][E][outer IP]`, toward the
    /// next hop of the outer destination, and goes out, or waits for that
    /// neighbour like any other frame (those that find no room are dropped
    /// and counted one by one).
    fn segments_out(&mut self, now: u64, n: usize, emit: &mut dyn FnMut(&[u8])) -> L2Verdict {
        let off = self.off();
        let mac = self.cfg.mac;
        let Some(segs) = self.pipe.segments_mut() else {
            return L2Verdict::Drop(L2Drop::Ip(DropReason::MethodUnavailable));
        };
        let n = n.min(segs.len());
        let mut nh = None;
        for i in 0..n {
            let Some(f) = segs.prepend(i, ETH_LEN) else {
                return L2Verdict::Drop(L2Drop::Malformed);
            };
            // [..E..][V][IP] → [V][E][IP]: the (zeroed, final) virtio
            // header moves to the front; nothing in it counts from the
            // Ethernet header.
            f.copy_within(ETH_LEN..ETH_LEN + off, 0);
            let e = &mut f[off..off + ETH_LEN];
            e[6..12].copy_from_slice(&mac);
            e[12..14].copy_from_slice(&ETHERTYPE_IPV4.to_be_bytes());
            if nh.is_none() {
                nh = ip_dst(&f[off + ETH_LEN..]).map(|(d, _, _)| d);
            }
        }
        let Some(nh) = nh.and_then(|d| self.cfg.route(d)) else {
            for _ in 1..n {
                self.counters.count_drop(L2Drop::NoRoute);
            }
            return L2Verdict::Drop(L2Drop::NoRoute);
        };
        // One resolution for all of them (they share the next hop).
        match self.neigh.resolve(nh, now) {
            Resolution::Known { mac, probe } => {
                for i in 0..n {
                    segs.frame_mut(i)[off..off + 6].copy_from_slice(&mac);
                }
                if probe {
                    self.arp_request(nh, emit);
                }
                L2Verdict::Segments(n)
            }
            Resolution::Unresolved { probe } => {
                let (mut queued, mut full) = (0u64, 0usize);
                for i in 0..n {
                    let f = segs.frame_mut(i);
                    f[off..off + 6].fill(0);
                    match self.pending.push(nh, f, now) {
                        Ok(()) => queued += 1,
                        Err(_) => full += 1,
                    }
                }
                bump(&self.counters.queued, queued);
                if probe {
                    self.arp_request(nh, emit);
                }
                // When none waits, the verdict counts one of the drops.
                let counted_here = if queued == 0 {
                    full.saturating_sub(1)
                } else {
                    full
                };
                for _ in 0..counted_here {
                    self.counters.count_drop(L2Drop::QueueFull);
                }
                if queued == 0 {
                    L2Verdict::Drop(L2Drop::QueueFull)
                } else {
                    L2Verdict::Consumed
                }
            }
            Resolution::Failed => {
                for _ in 1..n {
                    self.counters.count_drop(L2Drop::NeighFailed);
                }
                L2Verdict::Drop(L2Drop::NeighFailed)
            }
        }
    }

    /// Periodic work: send frames whose neighbour answered (perhaps on
    /// another queue), retry ARP requests, drop frames whose neighbour
    /// failed, and run smoltcp's timers (on the worker that drives them).
    pub fn poll(&mut self, now_ms: u64, emit: &mut dyn FnMut(&[u8])) {
        if !self.pending.is_empty() {
            let mut ips = [IpAddr::V4(Ipv4Addr::UNSPECIFIED); PENDING_SLOTS];
            let n = self.pending.waiting(&mut ips);
            for &ip in &ips[..n] {
                match self.neigh.resolve(ip, now_ms) {
                    Resolution::Known { mac, .. } => self.flush(now_ms, ip, mac, emit),
                    Resolution::Unresolved { probe } => {
                        if probe {
                            self.arp_request(ip, emit);
                        }
                    }
                    Resolution::Failed => {
                        for _ in 0..self.pending.discard(ip) {
                            self.counters.count_drop(L2Drop::NeighFailed);
                        }
                    }
                }
            }
            for _ in 0..self.pending.discard_older(now_ms, PENDING_MAX_MS) {
                self.counters.count_drop(L2Drop::NeighFailed);
            }
        }
        if self.drives_host && now_ms >= self.host_due_ms {
            let vnet = self.cfg.vnet;
            let scratch = &mut self.scratch;
            let counters = &self.counters;
            let mut host = self.host.lock().unwrap_or_else(|e| e.into_inner());
            host.poll(now_ms, &mut |f| {
                bump(&counters.from_host, 1);
                Self::emit_eth(scratch, vnet, f, emit);
            });
            let delay = host.poll_delay(now_ms).unwrap_or(1000).min(1000);
            self.host_due_ms = now_ms + delay;
        }
    }

    /// Milliseconds until [`L2Pipeline::poll`] has work (None: nothing
    /// scheduled; poll whenever convenient).
    pub fn poll_delay(&self, now_ms: u64) -> Option<u64> {
        let mut d = None;
        if !self.pending.is_empty() {
            d = Some(PENDING_POLL_MS);
        }
        if self.drives_host {
            let h = self.host_due_ms.saturating_sub(now_ms);
            d = Some(d.map_or(h, |x: u64| x.min(h)));
        }
        d
    }
}

/// Where a finished frame goes.
enum Next {
    /// Now: its destination MAC is filled in.
    Send,
    /// Later: a copy waits in the pending pool for the neighbour.
    Queued,
    /// Nowhere.
    Drop(L2Drop),
}

/// Give `frame` (its Ethernet header at `off`, source and type written) the
/// MAC of next hop `nh`, or queue a copy of it until `nh` answers ARP; also
/// says whether an ARP request for `nh` is due.
fn next_hop(
    neigh: &NeighTable,
    pending: &mut PendingQueue,
    counters: &L2Counters,
    now: u64,
    nh: IpAddr,
    off: usize,
    frame: &mut [u8],
) -> (Next, bool) {
    if nh.is_ipv6() {
        return (Next::Drop(L2Drop::Ipv6NextHop), false);
    }
    match neigh.resolve(nh, now) {
        Resolution::Known { mac, probe } => {
            frame[off..off + 6].copy_from_slice(&mac);
            (Next::Send, probe)
        }
        Resolution::Unresolved { probe } => {
            frame[off..off + 6].fill(0);
            match pending.push(nh, frame, now) {
                Ok(()) => {
                    bump(&counters.queued, 1);
                    (Next::Queued, probe)
                }
                Err(_) => (Next::Drop(L2Drop::QueueFull), probe),
            }
        }
        Resolution::Failed => (Next::Drop(L2Drop::NeighFailed), false),
    }
}

/// Write an Ethernet + ARP (Ethernet/IPv4) frame of `ETH_LEN + ARP_LEN`
/// bytes into `out`.
pub fn write_arp(
    out: &mut [u8],
    eth_dst: &Mac,
    sha: &Mac,
    op: u16,
    spa: IpAddr,
    tha: &Mac,
    tpa: IpAddr,
) {
    let v4 = |a: IpAddr| match a {
        IpAddr::V4(a) => a.octets(),
        IpAddr::V6(_) => [0; 4],
    };
    out[0..6].copy_from_slice(eth_dst);
    out[6..12].copy_from_slice(sha);
    out[12..14].copy_from_slice(&ETHERTYPE_ARP.to_be_bytes());
    let a = &mut out[ETH_LEN..ETH_LEN + ARP_LEN];
    a[0..6].copy_from_slice(&[0, 1, 8, 0, 6, 4]);
    a[6..8].copy_from_slice(&op.to_be_bytes());
    a[8..14].copy_from_slice(sha);
    a[14..18].copy_from_slice(&v4(spa));
    a[18..24].copy_from_slice(tha);
    a[24..28].copy_from_slice(&v4(tpa));
}

/// Destination address, protocol (IPv4 protocol / IPv6 next header) and
/// family of an IP packet, if its fixed header is there.
fn ip_dst(ip: &[u8]) -> Option<(IpAddr, u8, bool)> {
    match ip.first()? >> 4 {
        4 if ip.len() >= 20 => Some((
            IpAddr::V4(Ipv4Addr::new(ip[16], ip[17], ip[18], ip[19])),
            ip[9],
            false,
        )),
        6 if ip.len() >= 40 => {
            let mut d = [0u8; 16];
            d.copy_from_slice(&ip[24..40]);
            Some((IpAddr::V6(d.into()), ip[6], true))
        }
        _ => None,
    }
}

/// Move a virtio header's `csum_start` and `hdr_len` between
/// Ethernet-relative (`to_eth`) and IP-relative offsets; false when they do
/// not fit (a header pointing inside the Ethernet header).
fn shift_vnet(h: &mut [u8; VNET_HDR_LEN], to_eth: bool) -> bool {
    let get = |h: &[u8; VNET_HDR_LEN], i: usize| u16::from_le_bytes([h[i], h[i + 1]]);
    let hdr_len = get(h, 2);
    let start = get(h, 6);
    let e = ETH_LEN as u16;
    let (hdr_len, start) = if to_eth {
        (
            if hdr_len == 0 {
                0
            } else {
                hdr_len.saturating_add(e)
            },
            if h[0] & NEEDS_CSUM != 0 {
                start.saturating_add(e)
            } else {
                start
            },
        )
    } else {
        if h[0] & NEEDS_CSUM != 0 && start < e {
            return false;
        }
        (
            hdr_len.saturating_sub(e),
            if h[0] & NEEDS_CSUM != 0 {
                start - e
            } else {
                start
            },
        )
    };
    h[2..4].copy_from_slice(&hdr_len.to_le_bytes());
    h[6..8].copy_from_slice(&start.to_le_bytes());
    true
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn prefixes() {
        let a: IpAddr = "172.16.0.1".parse().unwrap();
        assert!(same_prefix(a, "172.16.0.200".parse().unwrap(), 24));
        assert!(!same_prefix(a, "172.16.1.2".parse().unwrap(), 24));
        assert!(same_prefix(a, "1.2.3.4".parse().unwrap(), 0));
        assert!(!same_prefix(a, "::1".parse().unwrap(), 0));
        let b: IpAddr = "2001:db8::1".parse().unwrap();
        assert!(same_prefix(b, "2001:db8::99".parse().unwrap(), 64));
        assert!(!same_prefix(b, "2001:db9::1".parse().unwrap(), 64));
    }

    #[test]
    fn vnet_offsets_move_between_ethernet_and_ip() {
        // NEEDS_CSUM, TSO4, hdr_len 80, csum_start 34 (14 + 20), offset 16.
        let mut h = [1, 1, 80, 0, 0xa8, 5, 34, 0, 16, 0];
        assert!(shift_vnet(&mut h, false));
        assert_eq!(h, [1, 1, 66, 0, 0xa8, 5, 20, 0, 16, 0]);
        assert!(shift_vnet(&mut h, true));
        assert_eq!(h, [1, 1, 80, 0, 0xa8, 5, 34, 0, 16, 0]);
        let mut bad = [1, 0, 0, 0, 0, 0, 4, 0, 16, 0];
        assert!(!shift_vnet(&mut bad, false));
        let mut plain = [0u8; 10];
        assert!(shift_vnet(&mut plain, false));
        assert_eq!(plain, [0; 10]);
    }
}
