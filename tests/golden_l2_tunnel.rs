//! Golden frames for tunnelling (`-i`) in tap mode: Ethernet frames in → the
//! exact Ethernet frames tunvs writes to the TAP.
//!
//! The LAN is the one of `golden_l2.rs` (the kernel selftest's server side):
//! the director (tunvs, MAC 02:74:76:00:00:01) owns DIP 172.16.0.1/24, the
//! router in front of it is 172.16.0.254 (02:00:00:00:00:fe, also the
//! `--gateway`), the real server 172.16.0.2 (02:00:00:00:00:02) decapsulates
//! IPIP. The client 10.0.0.2 is beyond the router; its packets reach the
//! director with TTL 63 and DF. VIP 207.175.44.110:8080 is a tunnel (`-i`)
//! service to 172.16.0.2; port 8081 tunnels to 10.20.0.2, a real server
//! beyond the router. The TAP link's MTU is 1500.
//!
//! What tap mode adds to tun mode's tunnel packets (`golden_tunnel.rs`): the
//! Ethernet header (the next hop toward the *outer* destination, our MAC,
//! 0x0800) after the virtio header, and the TTL: no kernel forwards the frame,
//! so tunvs decrements the inner TTL itself (63 → 62) and the outer TTL equals
//! it (no local hop follows), as kernel IPVS's packets show on the wire.
//!
//! Expected frames are literal bytes (Ethernet and outer IPv4 header, checksum
//! computed by hand) or built from scratch with etherparse (`testutil`),
//! never taken from the code under test.

use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use etherparse::checksum::Sum16BitWords;
use etherparse::{IpDscp, IpNumber, Ipv4Header};
use tunvs::adm::api::Ipvs;
use tunvs::dataplane::buf::PacketBuf;
use tunvs::dataplane::drop::DropReason;
use tunvs::dataplane::l2::{L2Config, L2Drop, L2Pipeline, L2Verdict};
use tunvs::dataplane::l2_tunnel;
use tunvs::dataplane::neigh::{self, NeighTable};
use tunvs::dataplane::pipeline::{Methods, Pipeline};
use tunvs::dataplane::xmit_tunnel::{TunnelConfig, TunnelError, TunnelRoutes};
use tunvs::director::Director;
use tunvs::host::Host;
use tunvs::packet::testutil::{
    icmp_packet, ip_headers, ipv4_header_checksum_ok, l4_checksum_ok, tcp_header, tcp_packet_with,
    to_partial,
};
use tunvs::packet::{TCP_ACK, TCP_PSH, TCP_SYN};
use tunvs::service::{DestSpec, FwdMethod, Proto, ServiceSpec, SvcId};

const OUR_MAC: [u8; 6] = [0x02, 0x74, 0x76, 0x00, 0x00, 0x01];
const ROUTER_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0xfe];
const RS_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x02];
const DIP: [u8; 4] = [172, 16, 0, 1];
const RS: [u8; 4] = [172, 16, 0, 2];
const FAR_RS: [u8; 4] = [10, 20, 0, 2];
const VIP: [u8; 4] = [207, 175, 44, 110];
const CLIENT: [u8; 4] = [10, 0, 0, 2];
const LINK_MTU: u32 = 1500;
const RELAXED: std::sync::atomic::Ordering = std::sync::atomic::Ordering::Relaxed;

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn v4(a: [u8; 4]) -> IpAddr {
    IpAddr::V4(a.into())
}

/// The director: VIP:8080 → 172.16.0.2 and VIP:8081 → 10.20.0.2, both IPIP.
fn director() -> Arc<Director> {
    let d = Arc::new(Director::new());
    for (port, rs) in [(8080, RS), (8081, FAR_RS)] {
        let id = SvcId::Addr {
            proto: Proto::Tcp,
            addr: v4(VIP),
            port,
        };
        let mut s = ServiceSpec::new(id);
        s.sched = "rr".into();
        d.add_service(&s).unwrap();
        let mut r = DestSpec::new(v4(rs), port);
        r.fwd = FwdMethod::Tunnel;
        d.add_dest(&id, &r).unwrap();
    }
    d
}

struct Bench {
    l2: L2Pipeline,
    routes: Arc<TunnelRoutes>,
    vnet: bool,
}

fn bench(vnet: bool) -> Bench {
    let dir = director();
    let cfg = Arc::new(L2Config {
        mac: OUR_MAC,
        addrs: vec![(v4(DIP), 24)],
        gateway: Some(ip("172.16.0.254")),
        vnet,
    });
    // The routes as the tap daemon fills them: from the DIPs and the link MTU.
    let routes = Arc::new(TunnelRoutes::new());
    assert!(l2_tunnel::refresh(&dir, &routes, &cfg, LINK_MTU).is_empty());
    let tcfg = TunnelConfig {
        hash_seed: 1,
        ..l2_tunnel::tunnel_config()
    };
    let host = Host::new(OUR_MAC, &cfg.addrs, cfg.gateway, 0).unwrap();
    let l2 = L2Pipeline::new(
        Pipeline::new(dir.clone(), Methods::TAP),
        dir,
        cfg,
        Arc::new(NeighTable::new()),
        Arc::new(Mutex::new(host)),
        70_000,
        true,
    )
    .with_tunnel(routes.clone(), tcfg);
    Bench { l2, routes, vnet }
}

/// What one frame produced: the verdict, the frames written for it, and
/// everything emitted on the side.
struct Out {
    verdict: L2Verdict,
    frames: Vec<Vec<u8>>,
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
        let frames = match verdict {
            L2Verdict::Forward => vec![buf.frame().to_vec()],
            L2Verdict::Reply(n) => vec![self.l2.reply()[..n].to_vec()],
            L2Verdict::Segments(n) => self.l2.segments().take(n).map(<[u8]>::to_vec).collect(),
            _ => Vec::new(),
        };
        Out {
            verdict,
            frames,
            emitted,
        }
    }

    /// A neighbour announces itself (it asks for the DIP).
    fn learn(&mut self, now: u64, mac: [u8; 6], addr: [u8; 4]) {
        let out = self.feed(now, &self.v(&arp(1, BROADCAST, mac, addr, [0; 6], DIP)));
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

    fn ip_drops(&self, r: DropReason) -> u64 {
        self.l2.pipeline().counters().get(r)
    }
}

const BROADCAST: [u8; 6] = [0xff; 6];

/// Ethernet header + payload.
fn eth(dst: [u8; 6], src: [u8; 6], payload: &[u8]) -> Vec<u8> {
    let mut f = dst.to_vec();
    f.extend_from_slice(&src);
    f.extend_from_slice(&[0x08, 0x00]);
    f.extend_from_slice(payload);
    f
}

/// An Ethernet/IPv4 ARP frame.
fn arp(op: u8, dst: [u8; 6], sha: [u8; 6], spa: [u8; 4], tha: [u8; 6], tpa: [u8; 4]) -> Vec<u8> {
    let mut f = dst.to_vec();
    f.extend_from_slice(&sha);
    f.extend_from_slice(&[0x08, 0x06, 0, 1, 0x08, 0, 6, 4, 0, op]);
    f.extend_from_slice(&sha);
    f.extend_from_slice(&spa);
    f.extend_from_slice(&tha);
    f.extend_from_slice(&tpa);
    f
}

/// A client packet to VIP:`port` as the router hands it over (TTL `ttl`, DF).
fn client_tcp(port: u16, flags: u8, seq: u32, ttl: u8, payload: &[u8]) -> Vec<u8> {
    tcp_packet_with(
        ip_headers(v4(CLIENT), v4(VIP), ttl),
        tcp_header(40000, port, flags, seq, 0, &[]),
        payload,
    )
}

/// The outer IPv4 header tap mode writes in front of `inner` toward `dst`:
/// TOS and DF copied (ID 0 with DF), TTL = the inner one, protocol 4, from
/// the DIP (etherparse computes the checksum).
fn ipip(inner: &[u8], dst: [u8; 4]) -> Vec<u8> {
    let mut h = Ipv4Header::new(inner.len() as u16, inner[8], IpNumber(4), DIP, dst).unwrap();
    h.dont_fragment = inner[6] & 0x40 != 0;
    h.identification = 0;
    h.header_checksum = h.calc_header_checksum();
    let mut v = Vec::new();
    h.write(&mut v).unwrap();
    v.extend_from_slice(inner);
    v
}

/// The ICMP error tunvs sends the client about `orig` (from the VIP, TOS
/// 0xc0, TTL 64, no DF), quoting `orig` whole.
fn client_error(ty: u8, code: u8, rest: [u8; 4], orig: &[u8]) -> Vec<u8> {
    let mut v = Vec::new();
    let mut h = Ipv4Header::new(8 + orig.len() as u16, 64, IpNumber(1), VIP, CLIENT).unwrap();
    h.dscp = IpDscp::try_new(0x30).unwrap();
    h.dont_fragment = false;
    h.header_checksum = h.calc_header_checksum();
    h.write(&mut v).unwrap();
    let mut icmp = vec![ty, code, 0, 0, rest[0], rest[1], rest[2], rest[3]];
    let c = Sum16BitWords::new()
        .add_slice(&icmp)
        .add_slice(orig)
        .ones_complement()
        .to_be();
    icmp[2..4].copy_from_slice(&c.to_be_bytes());
    v.extend_from_slice(&icmp);
    v.extend_from_slice(orig);
    v
}

/// The SYN to VIP:8080 (40 bytes, TTL 63) and, literally, the frame that must
/// leave for it: Ethernet to the real server, outer header (total length 60,
/// ID 0, DF, TTL 62, protocol 4, checksum 0xe49a, 172.16.0.1 → 172.16.0.2),
/// then the SYN with TTL 62.
fn syn_and_frame() -> (Vec<u8>, Vec<u8>) {
    let syn = client_tcp(8080, TCP_SYN, 1, 63, &[]);
    #[rustfmt::skip]
    let mut want = vec![
        0x02, 0, 0, 0, 0, 0x02, 0x02, 0x74, 0x76, 0, 0, 0x01, 0x08, 0x00,
        0x45, 0x00, 0x00, 0x3c, 0x00, 0x00, 0x40, 0x00,
        0x3e, 0x04, 0xe4, 0x9a,
        172, 16, 0, 1,
        172, 16, 0, 2,
    ];
    want.extend_from_slice(&client_tcp(8080, TCP_SYN, 1, 62, &[]));
    (syn, want)
}

#[test]
fn ipip_frame_leaves_with_exact_ethernet_and_outer_header() {
    for vnet in [false, true] {
        let mut b = bench(vnet);
        b.learn(1, RS_MAC, RS);
        let (syn, want) = syn_and_frame();
        let out = b.feed(2, &b.v(&eth(OUR_MAC, ROUTER_MAC, &syn)));
        assert_eq!(out.verdict, L2Verdict::Forward, "vnet {vnet}");
        assert_eq!(out.frames, vec![b.v(&want)], "vnet {vnet}");
        assert!(out.emitted.is_empty());
        assert_eq!(b.l2.pipeline().counters().forwarded.load(RELAXED), 1);
    }
}

#[test]
fn real_server_beyond_the_lan_is_reached_through_the_gateway() {
    let mut b = bench(false);
    b.learn(1, ROUTER_MAC, [172, 16, 0, 254]);
    let syn = client_tcp(8081, TCP_SYN, 1, 63, &[]);
    let out = b.feed(2, &eth(OUR_MAC, ROUTER_MAC, &syn));
    assert_eq!(out.verdict, L2Verdict::Forward);
    // Outer 172.16.0.1 → 10.20.0.2 (checksum 0x8697), Ethernet to the router.
    #[rustfmt::skip]
    let mut want = vec![
        0x02, 0, 0, 0, 0, 0xfe, 0x02, 0x74, 0x76, 0, 0, 0x01, 0x08, 0x00,
        0x45, 0x00, 0x00, 0x3c, 0x00, 0x00, 0x40, 0x00,
        0x3e, 0x04, 0x86, 0x97,
        172, 16, 0, 1,
        10, 20, 0, 2,
    ];
    want.extend_from_slice(&client_tcp(8081, TCP_SYN, 1, 62, &[]));
    assert_eq!(out.frames, vec![want]);
}

/// A GSO super-packet from the router (offsets in the virtio header count
/// from the Ethernet header in tap mode): 3000 bytes of payload, MSS 1000.
fn gso_frame(seq: u32) -> Vec<u8> {
    let payload: Vec<u8> = (0..3000u32).map(|i| (i * 7 % 251) as u8).collect();
    let mut p = client_tcp(8080, TCP_ACK | TCP_PSH, seq, 63, &payload);
    let mut h = to_partial(&mut p, 1000);
    h.csum_start += 14;
    h.hdr_len += 14;
    let mut f = h.to_bytes().to_vec();
    f.extend_from_slice(&eth(OUR_MAC, ROUTER_MAC, &p));
    f
}

/// The frames the GSO super-packet must become: one per MSS, each with the
/// virtio header (zeroed), its Ethernet header, the outer header and a
/// complete segment as the kernel's `tcp_gso_segment` cuts it (IP ID
/// counting up from the super-packet's, PSH on the last one only, full
/// checksums), TTL 62 inside and out.
fn gso_want(seq: u32) -> Vec<Vec<u8>> {
    let payload: Vec<u8> = (0..3000u32).map(|i| (i * 7 % 251) as u8).collect();
    (0..3)
        .map(|i| {
            let mut iph = ip_headers(v4(CLIENT), v4(VIP), 62);
            if let etherparse::IpHeaders::Ipv4(h, _) = &mut iph {
                h.identification = 0x1c46 + i as u16;
            }
            let flags = if i == 2 { TCP_ACK | TCP_PSH } else { TCP_ACK };
            let seg = tcp_packet_with(
                iph,
                tcp_header(40000, 8080, flags, seq + 1000 * i as u32, 0, &[]),
                &payload[i * 1000..(i + 1) * 1000],
            );
            let mut f = vec![0u8; 10];
            f.extend_from_slice(&eth(RS_MAC, OUR_MAC, &ipip(&seg, RS)));
            f
        })
        .collect()
}

#[test]
fn gso_super_packet_leaves_as_mss_segments_each_with_an_ethernet_header() {
    let mut b = bench(true);
    b.learn(1, RS_MAC, RS);
    let syn = client_tcp(8080, TCP_SYN, 1, 63, &[]);
    assert_eq!(
        b.feed(2, &b.v(&eth(OUR_MAC, ROUTER_MAC, &syn))).verdict,
        L2Verdict::Forward
    );
    let out = b.feed(3, &gso_frame(2));
    assert_eq!(out.verdict, L2Verdict::Segments(3));
    assert!(out.emitted.is_empty());
    let want = gso_want(2);
    assert_eq!(out.frames.len(), want.len());
    for (i, (got, want)) in out.frames.iter().zip(&want).enumerate() {
        assert_eq!(got, want, "segment {i}");
        // Nothing above the link MTU; every checksum verifies.
        let outer = &got[10 + 14..];
        assert!(outer.len() <= LINK_MTU as usize);
        assert!(ipv4_header_checksum_ok(outer) && ipv4_header_checksum_ok(&outer[20..]));
        assert!(l4_checksum_ok(&outer[20..]));
    }
    let c = b.l2.pipeline().counters();
    assert_eq!(c.segmented.load(RELAXED), 1);
    assert_eq!(c.forwarded.load(RELAXED), 1 + 3);
}

#[test]
fn unresolved_real_server_queues_tunnel_frames_behind_an_arp_request() {
    let mut b = bench(true);
    let (syn, want) = syn_and_frame();
    let out = b.feed(100, &b.v(&eth(OUR_MAC, ROUTER_MAC, &syn)));
    assert_eq!(out.verdict, L2Verdict::Consumed);
    let who_has_rs = b.v(&arp(1, BROADCAST, OUR_MAC, DIP, [0; 6], RS));
    assert_eq!(out.emitted, vec![who_has_rs]);
    // A GSO super-packet's segments wait too, up to the per-neighbour bound.
    let out = b.feed(101, &gso_frame(2));
    assert_eq!(out.verdict, L2Verdict::Consumed);
    assert!(out.emitted.is_empty(), "one request per interval");
    assert_eq!(b.l2.pending(), neigh::PER_NEIGH);
    assert_eq!(1 + 3, neigh::PER_NEIGH, "the SYN and 3 segments fill it");
    // The next super-packet finds no room: each of its segments is counted.
    let out = b.feed(102, &gso_frame(3002));
    assert_eq!(out.verdict, L2Verdict::Drop(L2Drop::QueueFull));
    assert_eq!(b.l2.counters().get(L2Drop::QueueFull), 3);
    // The real server answers: the SYN and the segments that waited leave,
    // in order, with its MAC.
    let reply = arp(2, OUR_MAC, RS_MAC, RS, OUR_MAC, DIP);
    let out = b.feed(200, &b.v(&reply));
    assert_eq!(out.verdict, L2Verdict::Consumed);
    let mut expected = vec![b.v(&want)];
    expected.extend(gso_want(2));
    assert_eq!(out.emitted, expected);
    assert_eq!(b.l2.pending(), 0);
    assert_eq!(
        b.l2.counters().flushed.load(RELAXED),
        neigh::PER_NEIGH as u64
    );
}

/// The 1500-byte DF packet the client sends with MSS 1460: it does not fit
/// the link MTU once encapsulated.
fn too_big(ttl: u8) -> Vec<u8> {
    client_tcp(8080, TCP_ACK, 2, ttl, &[0x42; 1460])
}

#[test]
fn too_big_df_packet_gets_frag_needed_back_to_the_client_as_an_ethernet_frame() {
    let mut b = bench(true);
    b.learn(1, RS_MAC, RS);
    let syn = client_tcp(8080, TCP_SYN, 1, 63, &[]);
    b.feed(2, &b.v(&eth(OUR_MAC, ROUTER_MAC, &syn)));
    let out = b.feed(3, &b.v(&eth(OUR_MAC, ROUTER_MAC, &too_big(63))));
    // To the router's MAC (it sent the frame), from the VIP, MTU 1500 − 20,
    // quoting the packet (with the TTL tunvs already decremented) up to the
    // 576 bytes an ICMP error may have.
    let quote = &too_big(62)[..576 - 28];
    let want = b.v(&eth(
        ROUTER_MAC,
        OUR_MAC,
        &client_error(3, 4, [0, 0, 0x05, 0xc8], quote),
    ));
    assert_eq!(out.verdict, L2Verdict::Reply(want.len()));
    assert_eq!(out.frames, vec![want]);
    assert_eq!(
        b.ip_drops(DropReason::Tunnel(TunnelError::FragNeeded)),
        1,
        "counted"
    );
}

#[test]
fn ttl_1_gets_time_exceeded_back_as_an_ethernet_frame() {
    let mut b = bench(false);
    b.learn(1, RS_MAC, RS);
    let syn = client_tcp(8080, TCP_SYN, 1, 1, &[]);
    let out = b.feed(2, &eth(OUR_MAC, ROUTER_MAC, &syn));
    let want = eth(ROUTER_MAC, OUR_MAC, &client_error(11, 0, [0; 4], &syn));
    assert_eq!(out.verdict, L2Verdict::Reply(want.len()));
    assert_eq!(out.frames, vec![want]);
    assert_eq!(b.ip_drops(DropReason::Tunnel(TunnelError::TtlExpired)), 1);
}

/// An ICMP error from the router 172.16.0.254 to the DIP about `outer`.
fn router_icmp(ty: u8, code: u8, rest: [u8; 4], outer: &[u8]) -> Vec<u8> {
    icmp_packet(ip("172.16.0.254"), v4(DIP), ty, code, rest, outer)
}

#[test]
fn router_frag_needed_about_a_tunnel_packet_lowers_the_pmtu_and_reaches_the_client() {
    let mut b = bench(false);
    b.learn(1, RS_MAC, RS);
    b.learn(1, ROUTER_MAC, [172, 16, 0, 254]);
    let (syn, sent) = syn_and_frame();
    assert_eq!(
        b.feed(2, &eth(OUR_MAC, ROUTER_MAC, &syn)).verdict,
        L2Verdict::Forward
    );
    // The router cannot forward our 60-byte outer packet beyond MTU 1400
    // (pretend): it tells the DIP, quoting the outer packet.
    let icmp = router_icmp(3, 4, [0, 0, 0x05, 0x78], &sent[14..]);
    let out = b.feed(3, &eth(OUR_MAC, ROUTER_MAC, &icmp));
    // Not for smoltcp: the client (through the router, the gateway, which
    // is known) learns MTU 1400 − 20 about its own SYN — as tunvs sent it,
    // TTL 62.
    let quoted = client_tcp(8080, TCP_SYN, 1, 62, &[]);
    let want = eth(
        ROUTER_MAC,
        OUR_MAC,
        &client_error(3, 4, [0, 0, 0x05, 0x64], &quoted),
    );
    assert_eq!(out.verdict, L2Verdict::Reply(want.len()));
    assert_eq!(out.frames, vec![want]);
    assert_eq!(b.l2.counters().to_host.load(RELAXED), 2, "only the ARP");
    let c = b.l2.pipeline().counters();
    assert_eq!(c.replies.load(RELAXED), 1);
    assert_eq!(c.get(DropReason::Tunnel(TunnelError::FragNeeded)), 1);
    // The path MTU toward the real server is now 1400: a packet that fits
    // the link but not the path is refused with the smaller MTU.
    assert_eq!(
        b.routes.get(v4(RS)).unwrap().resolved(4),
        Some((DIP.into(), 1400))
    );
    let pkt = client_tcp(8080, TCP_ACK, 2, 63, &[0x42; 1400]);
    let out = b.feed(4, &eth(OUR_MAC, ROUTER_MAC, &pkt));
    let L2Verdict::Reply(n) = out.verdict else {
        panic!("{:?}", out.verdict)
    };
    let r = &out.frames[0][..n];
    assert_eq!(&r[..14], &eth(ROUTER_MAC, OUR_MAC, &[])[..]);
    assert_eq!((r[14 + 20], r[14 + 21]), (3, 4));
    assert_eq!(&r[14 + 26..14 + 28], &1380u16.to_be_bytes());
}

#[test]
fn icmp_errors_about_other_packets_still_go_to_smoltcp() {
    let mut b = bench(false);
    b.learn(1, RS_MAC, RS);
    let (syn, sent) = syn_and_frame();
    b.feed(2, &eth(OUR_MAC, ROUTER_MAC, &syn));
    // About a packet to a real server tunvs does not tunnel to, and an echo.
    let mut other = sent[14..].to_vec();
    other[19] = 99;
    for icmp in [
        router_icmp(3, 4, [0, 0, 5, 0x78], &other),
        router_icmp(8, 0, [0, 1, 0, 1], b"ping"),
    ] {
        let out = b.feed(3, &eth(OUR_MAC, ROUTER_MAC, &icmp));
        assert_eq!(out.verdict, L2Verdict::Consumed);
        assert!(out.frames.is_empty());
    }
    assert_eq!(b.l2.counters().to_host.load(RELAXED), 1 + 2);
    assert_eq!(b.l2.pipeline().counters().replies.load(RELAXED), 0);
    assert_eq!(
        b.routes.get(v4(RS)).unwrap().resolved(4),
        Some((DIP.into(), LINK_MTU)),
        "nothing learned"
    );
}

#[test]
fn relayed_error_waits_for_an_unresolved_gateway() {
    let mut b = bench(false);
    b.learn(1, RS_MAC, RS);
    let (syn, sent) = syn_and_frame();
    b.feed(2, &eth(OUR_MAC, ROUTER_MAC, &syn));
    let icmp = router_icmp(3, 1, [0; 4], &sent[14..]);
    let out = b.feed(3, &eth(OUR_MAC, ROUTER_MAC, &icmp));
    // The router's MAC is not known yet (its ICMP was IP, not ARP): asked.
    assert_eq!(out.verdict, L2Verdict::Consumed);
    assert_eq!(
        out.emitted,
        vec![arp(1, BROADCAST, OUR_MAC, DIP, [0; 6], [172, 16, 0, 254])]
    );
    assert_eq!(b.l2.pending(), 1);
    let reply = arp(2, OUR_MAC, ROUTER_MAC, [172, 16, 0, 254], OUR_MAC, DIP);
    let out = b.feed(4, &reply);
    let quoted = client_tcp(8080, TCP_SYN, 1, 62, &[]);
    assert_eq!(
        out.emitted,
        vec![eth(
            ROUTER_MAC,
            OUR_MAC,
            &client_error(3, 1, [0; 4], &quoted)
        )]
    );
}
