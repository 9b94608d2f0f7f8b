//! Golden frames for tap mode (the L2 layer around the IP pipeline): literal
//! or independently built input frames → the exact frames tunvs writes.
//!
//! The LAN is the kernel selftest's server side (spec §5.2): the director
//! (tunvs, MAC 02:74:76:00:00:01) owns DIP 172.16.0.1/24, the router in front
//! of it is 172.16.0.254 (02:00:00:00:00:fe, also the `--gateway`), the real
//! server 172.16.0.2 (02:00:00:00:00:02). The client 10.0.0.2 is beyond the
//! router. VIP 207.175.44.110:8080 is a direct-routing (`-g`) service;
//! 207.175.44.111:80 is a NAT (`-m`) service to 172.16.0.3:80
//! (02:00:00:00:00:03).
//!
//! Expected frames are written out byte by byte (ARP) or built from scratch
//! with etherparse (`testutil`), never taken from the code under test.

use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};

use tunvs::adm::api::Ipvs;
use tunvs::conntrack::{FlowKey, CONN_F_NOOUTPUT};
use tunvs::dataplane::buf::PacketBuf;
use tunvs::dataplane::l2::{L2Config, L2Drop, L2Pipeline, L2Verdict};
use tunvs::dataplane::neigh::{self, NeighTable};
use tunvs::dataplane::pipeline::{Methods, Pipeline};
use tunvs::director::Director;
use tunvs::host::Host;
use tunvs::packet::testutil::{
    icmp_packet, ipv4_header_checksum_ok, l4_checksum_ok, tcp_packet, to_partial,
};
use tunvs::packet::{TCP_ACK, TCP_SYN};
use tunvs::service::{DestSpec, FwdMethod, Proto, ServiceSpec, SvcId};

const OUR_MAC: [u8; 6] = [0x02, 0x74, 0x76, 0x00, 0x00, 0x01];
const ROUTER_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0xfe];
const RS_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x02];
const RS3_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x03];

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn sa(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

fn svc(addr: &str, port: u16) -> SvcId {
    SvcId::Addr {
        proto: Proto::Tcp,
        addr: ip(addr),
        port,
    }
}

/// The director with a DR and a NAT service.
fn director() -> Arc<Director> {
    let d = Arc::new(Director::new());
    let dr = svc("207.175.44.110", 8080);
    let mut s = ServiceSpec::new(dr);
    s.sched = "rr".into();
    d.add_service(&s).unwrap();
    let mut r = DestSpec::new(ip("172.16.0.2"), 8080);
    r.fwd = FwdMethod::Route;
    d.add_dest(&dr, &r).unwrap();
    let nat = svc("207.175.44.111", 80);
    let mut s = ServiceSpec::new(nat);
    s.sched = "rr".into();
    d.add_service(&s).unwrap();
    let mut r = DestSpec::new(ip("172.16.0.3"), 80);
    r.fwd = FwdMethod::Masq;
    d.add_dest(&nat, &r).unwrap();
    d
}

struct Bench {
    l2: L2Pipeline,
    dir: Arc<Director>,
    vnet: bool,
}

fn bench(vnet: bool) -> Bench {
    let dir = director();
    let cfg = Arc::new(L2Config {
        mac: OUR_MAC,
        addrs: vec![(ip("172.16.0.1"), 24)],
        gateway: Some(ip("172.16.0.254")),
        vnet,
    });
    let host = Host::new(OUR_MAC, &cfg.addrs, cfg.gateway, 0).unwrap();
    let l2 = L2Pipeline::new(
        Pipeline::new(dir.clone(), Methods::TAP),
        dir.clone(),
        cfg,
        Arc::new(NeighTable::new()),
        Arc::new(Mutex::new(host)),
        70_000,
        true,
    );
    Bench { l2, dir, vnet }
}

/// What one frame produced: the verdict, the frame written for it (if
/// any), and everything emitted on the side.
struct Out {
    verdict: L2Verdict,
    frame: Option<Vec<u8>>,
    emitted: Vec<Vec<u8>>,
}

impl Bench {
    fn feed(&mut self, now: u64, frame: &[u8]) -> Out {
        let mut buf = PacketBuf::new(70_000);
        buf.set(frame);
        let mut emitted = Vec::new();
        let verdict = self
            .l2
            .handle(now, &mut buf, &mut |f| emitted.push(f.to_vec()));
        let frame = match verdict {
            L2Verdict::Forward => Some(buf.frame().to_vec()),
            L2Verdict::Reply(n) => Some(self.l2.reply()[..n].to_vec()),
            _ => None,
        };
        Out {
            verdict,
            frame,
            emitted,
        }
    }

    fn poll(&mut self, now: u64) -> Vec<Vec<u8>> {
        let mut emitted = Vec::new();
        self.l2.poll(now, &mut |f| emitted.push(f.to_vec()));
        emitted
    }

    /// The real server tells the director where it is (it asks for the DIP).
    fn learn_rs(&mut self, now: u64) {
        let out = self.feed(now, &self.v(&arp_request_from_rs()));
        assert_eq!(out.verdict, L2Verdict::Consumed);
    }

    /// A frame with a zeroed virtio header in front when this bench has one.
    fn v(&self, frame: &[u8]) -> Vec<u8> {
        if self.vnet {
            let mut f = vec![0u8; 10];
            f.extend_from_slice(frame);
            f
        } else {
            frame.to_vec()
        }
    }
}

/// Ethernet header + payload.
fn eth(dst: [u8; 6], src: [u8; 6], ethertype: u16, payload: &[u8]) -> Vec<u8> {
    let mut f = dst.to_vec();
    f.extend_from_slice(&src);
    f.extend_from_slice(&ethertype.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

/// Set the IPv4 TTL and recompute the header checksum (builders use 64).
fn with_ttl(mut p: Vec<u8>, ttl: u8) -> Vec<u8> {
    // The checksum comes from etherparse, never from the code under test.
    let mut h = etherparse::Ipv4Header::from_slice(&p).unwrap().0;
    h.time_to_live = ttl;
    h.header_checksum = h.calc_header_checksum();
    let ihl = h.header_len();
    p[..ihl].copy_from_slice(&h.to_bytes());
    p
}

#[rustfmt::skip]
fn arp_request_from_rs() -> Vec<u8> {
    vec![
        0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02, 0, 0, 0, 0, 0x02, 0x08, 0x06,
        0, 1, 0x08, 0, 6, 4, 0, 1,            // Ethernet/IPv4, request
        0x02, 0, 0, 0, 0, 0x02, 172, 16, 0, 2, // sender: the real server
        0, 0, 0, 0, 0, 0, 172, 16, 0, 1,       // target: the DIP
    ]
}

#[test]
fn arp_request_for_the_vip_gets_its_exact_reply() {
    let mut b = bench(false);
    #[rustfmt::skip]
    let request = [
        0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02, 0, 0, 0, 0, 0xfe, 0x08, 0x06,
        0, 1, 0x08, 0, 6, 4, 0, 1,              // Ethernet/IPv4, request
        0x02, 0, 0, 0, 0, 0xfe, 172, 16, 0, 254, // sender: the router
        0, 0, 0, 0, 0, 0, 207, 175, 44, 110,     // who has the VIP?
    ];
    #[rustfmt::skip]
    let reply = [
        0x02, 0, 0, 0, 0, 0xfe, 0x02, 0x74, 0x76, 0, 0, 0x01, 0x08, 0x06,
        0, 1, 0x08, 0, 6, 4, 0, 2,                  // Ethernet/IPv4, reply
        0x02, 0x74, 0x76, 0, 0, 0x01, 207, 175, 44, 110, // the VIP is at our MAC
        0x02, 0, 0, 0, 0, 0xfe, 172, 16, 0, 254,     // to the router
    ];
    let out = b.feed(1, &request);
    assert_eq!(out.verdict, L2Verdict::Reply(42));
    assert_eq!(out.frame.unwrap(), reply);
    assert!(out.emitted.is_empty());
    // The asker was snooped: it is on our link.
    assert_eq!(
        NeighTableView(&b).mac("172.16.0.254"),
        Some(ROUTER_MAC),
        "the router was learned from its request"
    );
    // Not a VIP, not ours: no answer.
    let mut other = request;
    other[41] = 111 + 1;
    let out = b.feed(2, &other);
    assert_eq!(out.verdict, L2Verdict::Consumed);
    assert!(out.frame.is_none() && out.emitted.is_empty());
    assert_eq!(b.l2.counters().arp_replies.load(RELAXED), 1);
}

#[test]
fn arp_for_the_dip_is_answered_by_smoltcp() {
    let mut b = bench(true);
    let out = b.feed(1, &b.v(&arp_request_from_rs()));
    assert_eq!(out.verdict, L2Verdict::Consumed);
    #[rustfmt::skip]
    let reply = [
        0u8, 0, 0, 0, 0, 0, 0, 0, 0, 0,               // virtio header
        0x02, 0, 0, 0, 0, 0x02, 0x02, 0x74, 0x76, 0, 0, 0x01, 0x08, 0x06,
        0, 1, 0x08, 0, 6, 4, 0, 2,
        0x02, 0x74, 0x76, 0, 0, 0x01, 172, 16, 0, 1,   // the DIP is at our MAC
        0x02, 0, 0, 0, 0, 0x02, 172, 16, 0, 2,
    ];
    assert_eq!(out.emitted, vec![reply.to_vec()]);
}

/// A client packet as the router hands it to the director.
fn client_tcp(flags: u8, seq: u32, payload: &[u8]) -> Vec<u8> {
    let p = tcp_packet(
        sa("10.0.0.2:40000"),
        sa("207.175.44.110:8080"),
        flags,
        seq,
        if flags & TCP_ACK != 0 { 77 } else { 0 },
        &[],
        payload,
    );
    with_ttl(p, 63)
}

#[test]
fn dr_rewrite_changes_the_mac_addresses_only() {
    let mut b = bench(false);
    b.learn_rs(1);
    for (i, (flags, payload)) in [(TCP_SYN, &b""[..]), (TCP_ACK, &b"hello"[..])]
        .into_iter()
        .enumerate()
    {
        let pkt = client_tcp(flags, 1000 + i as u32, payload);
        let out = b.feed(10 + i as u64, &eth(OUR_MAC, ROUTER_MAC, 0x0800, &pkt));
        assert_eq!(out.verdict, L2Verdict::Forward);
        // Same IP packet, TTL included; to the real server, from us.
        assert_eq!(out.frame.unwrap(), eth(RS_MAC, OUR_MAC, 0x0800, &pkt));
        assert!(out.emitted.is_empty());
    }
    // The connection is a Route one in the input-only state table: SYN →
    // SYN_RECV, ACK → ESTABLISHED, with no reply ever seen.
    let key = FlowKey {
        proto: 6,
        src: ip("10.0.0.2"),
        sport: 40000,
        dst: ip("207.175.44.110"),
        dport: 8080,
    };
    let (c, _) = b.dir.conns.lookup(&key).expect("the connection");
    assert_eq!(c.fwd.fwd, FwdMethod::Route);
    assert_ne!(c.flags() & CONN_F_NOOUTPUT, 0);
    assert_eq!(c.state_name(), "ESTABLISHED");
    assert_eq!(b.dir.conns().len(), 1);
    let svc = &b.dir.services()[0];
    assert_eq!(svc.stats.inpkts, 2);
    assert_eq!(svc.stats.outpkts, 0);
}

#[test]
fn dr_rewrite_passes_a_partial_checksum_gso_frame_unchanged() {
    let mut b = bench(true);
    b.learn_rs(1);
    let syn = client_tcp(TCP_SYN, 1, b"");
    b.feed(2, &b.v(&eth(OUR_MAC, ROUTER_MAC, 0x0800, &syn)));
    let mut pkt = client_tcp(TCP_ACK, 2, &[0x5a; 3000]);
    let mut hdr = to_partial(&mut pkt, 1448);
    // In tap mode the offsets count from the Ethernet header.
    hdr.csum_start += 14;
    hdr.hdr_len += 14;
    let mut frame = hdr.to_bytes().to_vec();
    frame.extend_from_slice(&eth(OUR_MAC, ROUTER_MAC, 0x0800, &pkt));
    let out = b.feed(3, &frame);
    assert_eq!(out.verdict, L2Verdict::Forward);
    let mut want = hdr.to_bytes().to_vec();
    want.extend_from_slice(&eth(RS_MAC, OUR_MAC, 0x0800, &pkt));
    assert_eq!(out.frame.unwrap(), want);
}

#[test]
fn unresolved_real_server_gets_an_arp_request_and_the_frame_waits() {
    let mut b = bench(false);
    let syn = client_tcp(TCP_SYN, 1, b"");
    let out = b.feed(100, &eth(OUR_MAC, ROUTER_MAC, 0x0800, &syn));
    assert_eq!(out.verdict, L2Verdict::Consumed);
    #[rustfmt::skip]
    let who_has_rs = vec![
        0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02, 0x74, 0x76, 0, 0, 0x01, 0x08, 0x06,
        0, 1, 0x08, 0, 6, 4, 0, 1,                     // Ethernet/IPv4, request
        0x02, 0x74, 0x76, 0, 0, 0x01, 172, 16, 0, 1,    // from the DIP
        0, 0, 0, 0, 0, 0, 172, 16, 0, 2,                // who has the real server?
    ];
    assert_eq!(out.emitted, vec![who_has_rs.clone()]);
    // More frames wait, up to the per-neighbour bound; the rest are dropped.
    for i in 0..neigh::PER_NEIGH {
        let ack = client_tcp(TCP_ACK, 2 + i as u32, b"x");
        let out = b.feed(101, &eth(OUR_MAC, ROUTER_MAC, 0x0800, &ack));
        let want = if i + 1 < neigh::PER_NEIGH {
            L2Verdict::Consumed
        } else {
            L2Verdict::Drop(L2Drop::QueueFull)
        };
        assert_eq!(out.verdict, want, "frame {i}");
        assert!(out.emitted.is_empty(), "one request per interval");
    }
    assert_eq!(b.l2.pending(), neigh::PER_NEIGH);
    assert_eq!(b.l2.counters().get(L2Drop::QueueFull), 1);
    // A second request after a second without an answer.
    assert_eq!(b.poll(100 + neigh::PROBE_INTERVAL_MS), vec![who_has_rs]);
    // The real server answers: the waiting frames leave, in order.
    #[rustfmt::skip]
    let rs_reply = [
        0x02, 0x74, 0x76, 0, 0, 0x01, 0x02, 0, 0, 0, 0, 0x02, 0x08, 0x06,
        0, 1, 0x08, 0, 6, 4, 0, 2,
        0x02, 0, 0, 0, 0, 0x02, 172, 16, 0, 2,
        0x02, 0x74, 0x76, 0, 0, 0x01, 172, 16, 0, 1,
    ];
    let out = b.feed(1200, &rs_reply);
    assert_eq!(out.verdict, L2Verdict::Consumed);
    assert_eq!(out.emitted.len(), neigh::PER_NEIGH);
    assert_eq!(out.emitted[0], eth(RS_MAC, OUR_MAC, 0x0800, &syn));
    for (i, f) in out.emitted[1..].iter().enumerate() {
        let ack = client_tcp(TCP_ACK, 2 + i as u32, b"x");
        assert_eq!(*f, eth(RS_MAC, OUR_MAC, 0x0800, &ack));
    }
    assert_eq!(b.l2.pending(), 0);
    assert_eq!(
        b.l2.counters().flushed.load(RELAXED),
        neigh::PER_NEIGH as u64
    );
}

#[test]
fn frames_for_a_silent_real_server_are_dropped_after_the_probes() {
    let mut b = bench(false);
    let syn = client_tcp(TCP_SYN, 1, b"");
    let out = b.feed(0, &eth(OUR_MAC, ROUTER_MAC, 0x0800, &syn));
    assert_eq!(out.verdict, L2Verdict::Consumed);
    let mut requests = out.emitted.len();
    let mut now = 0;
    while b.l2.pending() > 0 && now < 10_000 {
        now += 100;
        requests += b.poll(now).len();
    }
    assert_eq!(b.l2.pending(), 0, "the frame was given up");
    assert_eq!(requests, neigh::MAX_PROBES as usize);
    assert_eq!(b.l2.counters().get(L2Drop::NeighFailed), 1);
    // While failed, new frames are dropped at once.
    let out = b.feed(now + 1, &eth(OUR_MAC, ROUTER_MAC, 0x0800, &syn));
    assert_eq!(out.verdict, L2Verdict::Drop(L2Drop::NeighFailed));
}

#[test]
fn icmp_echo_to_the_vip_is_answered() {
    let mut b = bench(false);
    let body = b"ping payload, 32 bytes long ...!";
    let request = with_ttl(
        icmp_packet(
            ip("10.0.0.2"),
            ip("207.175.44.110"),
            8,
            0,
            [0x12, 0x34, 0, 7],
            body,
        ),
        63,
    );
    let out = b.feed(1, &eth(OUR_MAC, ROUTER_MAC, 0x0800, &request));
    assert_eq!(out.verdict, L2Verdict::Forward);
    let reply = icmp_packet(
        ip("207.175.44.110"),
        ip("10.0.0.2"),
        0,
        0,
        [0x12, 0x34, 0, 7],
        body,
    );
    assert_eq!(out.frame.unwrap(), eth(ROUTER_MAC, OUR_MAC, 0x0800, &reply));
    assert_eq!(b.l2.counters().echo_replies.load(RELAXED), 1);
}

#[test]
fn icmp_echo_to_the_dip_is_answered_by_smoltcp() {
    let mut b = bench(false);
    b.learn_rs(1);
    let request = icmp_packet(
        ip("172.16.0.2"),
        ip("172.16.0.1"),
        8,
        0,
        [0, 1, 0, 1],
        b"abcd",
    );
    let out = b.feed(2, &eth(OUR_MAC, RS_MAC, 0x0800, &request));
    assert_eq!(out.verdict, L2Verdict::Consumed);
    assert_eq!(out.emitted.len(), 1, "{:?}", out.emitted);
    let r = &out.emitted[0];
    assert_eq!(&r[..14], &eth(RS_MAC, OUR_MAC, 0x0800, &[])[..]);
    assert_eq!(&r[14 + 12..14 + 20], &[172, 16, 0, 1, 172, 16, 0, 2]);
    assert_eq!(r[14 + 20], 0, "an echo reply");
    assert_eq!(&r[14 + 24..14 + 28], &[0, 1, 0, 1]);
    assert_eq!(&r[14 + 28..], b"abcd");
    assert!(ipv4_header_checksum_ok(&r[14..]));
    assert!(l4_checksum_ok(&r[14..]), "ICMP checksum verifies");
}

#[test]
fn nat_in_tap_mode_routes_through_the_neighbour_table_and_the_gateway() {
    let mut b = bench(false);
    // The gateway and the NAT real server make themselves known.
    let mut arp = arp_request_from_rs();
    arp[6..12].copy_from_slice(&ROUTER_MAC);
    arp[22..28].copy_from_slice(&ROUTER_MAC);
    arp[28..32].copy_from_slice(&[172, 16, 0, 254]);
    b.feed(1, &arp);
    let mut arp = arp_request_from_rs();
    arp[6..12].copy_from_slice(&RS3_MAC);
    arp[22..28].copy_from_slice(&RS3_MAC);
    arp[28..32].copy_from_slice(&[172, 16, 0, 3]);
    b.feed(1, &arp);
    let syn = with_ttl(
        tcp_packet(
            sa("10.0.0.2:40000"),
            sa("207.175.44.111:80"),
            TCP_SYN,
            5,
            0,
            &[],
            &[],
        ),
        63,
    );
    let out = b.feed(2, &eth(OUR_MAC, ROUTER_MAC, 0x0800, &syn));
    assert_eq!(out.verdict, L2Verdict::Forward);
    let want = with_ttl(
        tcp_packet(
            sa("10.0.0.2:40000"),
            sa("172.16.0.3:80"),
            TCP_SYN,
            5,
            0,
            &[],
            &[],
        ),
        62,
    );
    assert_eq!(out.frame.unwrap(), eth(RS3_MAC, OUR_MAC, 0x0800, &want));
    // The reply goes to the client through the gateway.
    let synack = tcp_packet(
        sa("172.16.0.3:80"),
        sa("10.0.0.2:40000"),
        TCP_SYN | TCP_ACK,
        9,
        6,
        &[],
        &[],
    );
    let out = b.feed(3, &eth(OUR_MAC, RS3_MAC, 0x0800, &synack));
    assert_eq!(out.verdict, L2Verdict::Forward);
    let want = with_ttl(
        tcp_packet(
            sa("207.175.44.111:80"),
            sa("10.0.0.2:40000"),
            TCP_SYN | TCP_ACK,
            9,
            6,
            &[],
            &[],
        ),
        63,
    );
    assert_eq!(out.frame.unwrap(), eth(ROUTER_MAC, OUR_MAC, 0x0800, &want));
    // tunvs routes NAT packets in tap mode, so TTL 1 gets what a router
    // gives: ICMP time exceeded back to the sender, quoting the packet as it
    // arrived, and the packet goes no further.
    let last_hop = with_ttl(
        tcp_packet(
            sa("10.0.0.2:40000"),
            sa("207.175.44.111:80"),
            TCP_ACK,
            6,
            10,
            &[],
            &[],
        ),
        1,
    );
    let out = b.feed(4, &eth(OUR_MAC, ROUTER_MAC, 0x0800, &last_hop));
    assert!(
        matches!(out.verdict, L2Verdict::Reply(_)),
        "{:?}",
        out.verdict
    );
    let f = out.frame.unwrap();
    assert_eq!(&f[..6], &ROUTER_MAC, "back to the hop it came from");
    assert_eq!(&f[12..14], &[0x08, 0x00]);
    let ip = &f[14..];
    assert_eq!(
        (ip[9], &ip[16..20]),
        (1, &[10, 0, 0, 2][..]),
        "ICMP to the client"
    );
    assert_eq!((ip[20], ip[21]), (11, 0), "time exceeded in transit");
    assert_eq!(&ip[28..], &last_hop[..], "quotes the packet as it arrived");
    let c = b.l2.pipeline().counters();
    assert_eq!(c.get(tunvs::dataplane::drop::DropReason::TtlExceeded), 1);
}

#[test]
fn frames_for_other_hosts_and_other_protocols_are_dropped() {
    let mut b = bench(false);
    let syn = client_tcp(TCP_SYN, 1, b"");
    let out = b.feed(1, &eth(RS3_MAC, ROUTER_MAC, 0x0800, &syn));
    assert_eq!(out.verdict, L2Verdict::Drop(L2Drop::NotForUs));
    let out = b.feed(1, &eth(OUR_MAC, ROUTER_MAC, 0x8100, &syn));
    assert_eq!(out.verdict, L2Verdict::Drop(L2Drop::UnsupportedEtherType));
    let out = b.feed(1, &[0u8; 10]);
    assert_eq!(out.verdict, L2Verdict::Drop(L2Drop::Malformed));
    // A DR real server beyond our links cannot be reached at L2.
    let far = svc("207.175.44.112", 80);
    b.dir.add_service(&ServiceSpec::new(far)).unwrap();
    let mut r = DestSpec::new(ip("192.0.2.9"), 80);
    r.fwd = FwdMethod::Route;
    b.dir.add_dest(&far, &r).unwrap();
    let p = tcp_packet(
        sa("10.0.0.2:40001"),
        sa("207.175.44.112:80"),
        TCP_SYN,
        1,
        0,
        &[],
        &[],
    );
    let out = b.feed(2, &eth(OUR_MAC, ROUTER_MAC, 0x0800, &p));
    assert_eq!(out.verdict, L2Verdict::Drop(L2Drop::NoRoute));
    assert_eq!(b.l2.counters().get(L2Drop::NotForUs), 1);
}

const RELAXED: std::sync::atomic::Ordering = std::sync::atomic::Ordering::Relaxed;

/// Read access to the bench's neighbour table through the pipeline.
struct NeighTableView<'a>(&'a Bench);

impl NeighTableView<'_> {
    fn mac(&self, a: &str) -> Option<[u8; 6]> {
        self.0.l2.neigh().get(ip(a))
    }
}
