//! Golden tunnel packets: literal input frames through the real pipeline → literal
//! expected frames, for IPIP, GUE and GRE encapsulation (every outer field), the
//! PMTU fragmentation-needed reply, GSO segmentation, ICMP from the client side,
//! and decapsulation on the real server (malformed outer headers dropped and
//! counted).
//!
//! Lab addresses (kernel selftest `ipvs.sh`): client 10.0.0.2:40000, VIP
//! 207.175.44.110, director 172.16.0.1, real servers 172.16.0.2 (route MTU 1500),
//! 172.16.0.3 (route MTU 100) and 172.16.0.4 (for the IP ID counter). One service
//! per tunnel variant, on VIP ports 8080…8088. Client packets arrive as the kernel
//! forwards them into the device: TTL 63, TOS 0x2b (DSCP AF11 with ECN CE), DF.
//!
//! What every encapsulated frame must show (spec §3.15): outer version 4 / IHL 5;
//! TOS 0x2a (DSCP kept, CE → ECT(0)); total length; ID 0 with DF; DF copied; TTL
//! 64 (the inner 63 plus the one hop the kernel makes forwarding it out of the tun
//! device, so the wire shows 63 like the kernel's); protocol 4 / 17 / 47; source
//! 172.16.0.1; destination the real server; header checksum. GUE: source port
//! from the flow hash (fixed seed here) in 32768..60999, destination 6080, UDP
//! checksum 0 or full; GUE header version 0, hlen, proto 4, REMCSUM option. GRE:
//! flags 0 or C, protocol 0x0800, checksum. The inner packet is untouched.
//!
//! The byte arrays were generated once by `print_fixtures` (run it with
//! `cargo test --test golden_tunnel -- --ignored --nocapture`) from etherparse
//! headers with fully computed checksums, built without the code under test (only
//! the GUE source port comes from `flow_hash`, since any hash will do);
//! `fixtures_match_independent_builders` checks the literals still equal that
//! generator.

use std::net::IpAddr;
use std::sync::Arc;

use etherparse::checksum::Sum16BitWords;
use etherparse::{IpDscp, IpEcn, IpHeaders, IpNumber, Ipv4Header, UdpHeader};
use tunvs::adm::api::Ipvs;
use tunvs::dataplane::buf::PacketBuf;
use tunvs::dataplane::drop::DropReason;
use tunvs::dataplane::pipeline::{Methods, Pipeline, Verdict};
use tunvs::dataplane::xmit_tunnel::{TunnelConfig, TunnelError, TunnelRoutes, TunnelTx};
use tunvs::director::Director;
use tunvs::packet::decap::DecapError;
use tunvs::packet::testutil::{
    frame, hex_array, icmp_packet, ip_headers, tcp_header, tcp_packet_with, to_partial, SYN_OPTIONS,
};
use tunvs::packet::tunnel::{flow_hash, gue_src_port};
use tunvs::packet::vnet::{VnetHdr, GSO_TCPV4, NEEDS_CSUM};
use tunvs::packet::{TCP_ACK, TCP_PSH, TCP_SYN};
use tunvs::realserver::tunnel::Decapsulator;
use tunvs::service::{DestSpec, FwdMethod, Proto, ServiceSpec, SvcId, TunCsum, TunType};

const SEED: u64 = 0x005e_ed0f_7a11;
const DIP: [u8; 4] = [172, 16, 0, 1];
const RS: [u8; 4] = [172, 16, 0, 2];
const RS_SMALL: [u8; 4] = [172, 16, 0, 3];
const RS_NODF: [u8; 4] = [172, 16, 0, 4];
const VIP: [u8; 4] = [207, 175, 44, 110];
const CLIENT: [u8; 4] = [10, 0, 0, 2];
const CPORT: u16 = 40000;
const ISN: u32 = 0x3ade_68b1;
const TOS: u8 = 0x2b;

/// The services: VIP port → (real server, tunnel type, GUE port, checksum option).
const SERVICES: [(u16, [u8; 4], TunType, u16, TunCsum); 9] = [
    (8080, RS, TunType::Ipip, 0, TunCsum::NoCsum),
    (8081, RS, TunType::Gue, 6080, TunCsum::NoCsum),
    (8082, RS, TunType::Gue, 6080, TunCsum::Csum),
    (8083, RS, TunType::Gue, 6080, TunCsum::RemCsum),
    (8084, RS, TunType::Gre, 0, TunCsum::NoCsum),
    (8085, RS, TunType::Gre, 0, TunCsum::Csum),
    (8086, RS_SMALL, TunType::Ipip, 0, TunCsum::NoCsum),
    (8087, RS, TunType::Ipip, 0, TunCsum::NoCsum),
    (8088, RS_NODF, TunType::Ipip, 0, TunCsum::NoCsum),
];

/// A client → VIP:port TCP packet as forwarded into the device.
fn client_tcp(port: u16, flags: u8, seq: u32, opts: &[u8], payload: &[u8], df: bool) -> Vec<u8> {
    let mut ip = ip_headers(IpAddr::V4(CLIENT.into()), IpAddr::V4(VIP.into()), 63);
    if let IpHeaders::Ipv4(h, _) = &mut ip {
        h.dscp = IpDscp::try_new(TOS >> 2).unwrap();
        h.ecn = IpEcn::try_new(TOS & 3).unwrap();
        h.dont_fragment = df;
    }
    tcp_packet_with(ip, tcp_header(CPORT, port, flags, seq, 0, opts), payload)
}

fn syn(port: u16) -> Vec<u8> {
    client_tcp(port, TCP_SYN, ISN, &SYN_OPTIONS, &[], true)
}

/// The outer TOS for an inner TOS: DSCP kept, ECN copied except CE → ECT(0).
fn outer_tos(inner_tos: u8) -> u8 {
    match inner_tos & 3 {
        3 => inner_tos & !1,
        _ => inner_tos,
    }
}

/// The outer IPv4 header the kernel builds for `inner`.
fn outer(proto: u8, inner: &[u8], tun_len: usize, dst: [u8; 4], id: u16, df: bool) -> Vec<u8> {
    let payload_len = tun_len + inner.len();
    let tos = outer_tos(inner[1]);
    let mut h = Ipv4Header::new(payload_len as u16, 64, IpNumber(proto), DIP, dst).unwrap();
    h.dscp = IpDscp::try_new(tos >> 2).unwrap();
    h.ecn = IpEcn::try_new(tos & 3).unwrap();
    h.identification = id;
    h.dont_fragment = df;
    h.header_checksum = h.calc_header_checksum();
    let mut v = Vec::new();
    h.write(&mut v).unwrap();
    v
}

fn ipip(inner: &[u8], dst: [u8; 4], id: u16, df: bool) -> Vec<u8> {
    let mut v = outer(4, inner, 0, dst, id, df);
    v.extend_from_slice(inner);
    v
}

fn gue_sport(port: u16) -> u16 {
    gue_src_port(
        flow_hash(
            SEED,
            IpAddr::V4(CLIENT.into()),
            IpAddr::V4(VIP.into()),
            6,
            CPORT,
            port,
        ),
        32768,
        60999,
    )
}

fn gue(inner: &[u8], vport: u16, csum: bool, remcsum: Option<(u16, u16)>) -> Vec<u8> {
    let mut payload = match remcsum {
        None => vec![0, 4, 0, 0],
        Some((s, o)) => {
            let mut g = vec![2, 4, 0, 1, 0x80, 0, 0, 0];
            g.extend_from_slice(&s.to_be_bytes());
            g.extend_from_slice(&(s + o).to_be_bytes());
            g
        }
    };
    payload.extend_from_slice(inner);
    let v = outer(17, inner, 8 + payload.len() - inner.len(), RS, 0, true);
    let ip = Ipv4Header::from_slice(&v).unwrap().0;
    let udp = if csum {
        UdpHeader::with_ipv4_checksum(gue_sport(vport), 6080, &ip, &payload).unwrap()
    } else {
        UdpHeader {
            source_port: gue_sport(vport),
            destination_port: 6080,
            length: (8 + payload.len()) as u16,
            checksum: 0,
        }
    };
    let mut v = v;
    udp.write(&mut v).unwrap();
    v.extend_from_slice(&payload);
    v
}

fn gre(inner: &[u8], csum: bool) -> Vec<u8> {
    let mut g = if csum {
        vec![0x80, 0, 0x08, 0x00, 0, 0, 0, 0]
    } else {
        vec![0, 0, 0x08, 0x00]
    };
    if csum {
        let c = Sum16BitWords::new()
            .add_slice(&g)
            .add_slice(inner)
            .ones_complement()
            .to_be();
        g[4..6].copy_from_slice(&c.to_be_bytes());
    }
    let mut v = outer(47, inner, g.len(), RS, 0, true);
    v.extend_from_slice(&g);
    v.extend_from_slice(inner);
    v
}

/// The REMCSUM input: NEEDS_CSUM with the seed in the TCP checksum field.
fn remcsum_input() -> (VnetHdr, Vec<u8>) {
    let mut p = syn(8083);
    let h = to_partial(&mut p, 0);
    (h, p)
}

/// The GSO input on 8087: 30 bytes in segments of 12, PSH on the super-packet.
fn gso_input() -> (VnetHdr, Vec<u8>) {
    let mut p = client_tcp(
        8087,
        TCP_ACK | TCP_PSH,
        ISN + 1,
        &[],
        b"abcdefghijklmnopqrstuvwxyz0123",
        true,
    );
    let h = to_partial(&mut p, 12);
    assert_eq!(h.gso_type, GSO_TCPV4);
    (h, p)
}

/// The GSO segments as the kernel's `tcp_gso_segment` cuts them.
fn gso_segments() -> Vec<Vec<u8>> {
    let data = b"abcdefghijklmnopqrstuvwxyz0123";
    (0..3)
        .map(|i| {
            let mut ip = ip_headers(IpAddr::V4(CLIENT.into()), IpAddr::V4(VIP.into()), 63);
            if let IpHeaders::Ipv4(h, _) = &mut ip {
                h.dscp = IpDscp::try_new(TOS >> 2).unwrap();
                h.ecn = IpEcn::try_new(TOS & 3).unwrap();
                h.identification = 0x1c46 + i as u16;
            }
            let flags = if i == 2 { TCP_ACK | TCP_PSH } else { TCP_ACK };
            let chunk = &data[i * 12..(i * 12 + 12).min(30)];
            let seg = tcp_packet_with(
                ip,
                tcp_header(CPORT, 8087, flags, ISN + 1 + 12 * i as u32, 0, &[]),
                chunk,
            );
            let mut f = vec![0u8; 10];
            f.extend_from_slice(&ipip(&seg, RS, 0, true));
            f
        })
        .collect()
}

/// An ICMP port unreachable from the client about a reply VIP:8080 → client.
fn client_icmp() -> Vec<u8> {
    let reply = tcp_packet_with(
        ip_headers(IpAddr::V4(VIP.into()), IpAddr::V4(CLIENT.into()), 64),
        tcp_header(8080, CPORT, TCP_SYN | TCP_ACK, 77, ISN + 1, &[]),
        &[],
    );
    let mut p = icmp_packet(
        IpAddr::V4(CLIENT.into()),
        IpAddr::V4(VIP.into()),
        3,
        3,
        [0; 4],
        &reply[..28],
    );
    p[6] = 0; // Linux sends ICMP errors without DF
    p[8] = 63;
    p[10..12].fill(0);
    let h = Ipv4Header::from_slice(&p).unwrap().0;
    p[10..12].copy_from_slice(&h.calc_header_checksum().to_be_bytes());
    p
}

/// The fragmentation-needed reply to a 100-byte DF packet toward 172.16.0.3
/// (route MTU 100: inner MTU 80), from the VIP to the client, quoting it whole.
fn frag_needed(orig: &[u8]) -> Vec<u8> {
    let mut v = Vec::new();
    let mut ip = Ipv4Header::new(8 + orig.len() as u16, 64, IpNumber(1), VIP, CLIENT).unwrap();
    ip.dscp = IpDscp::try_new(0x30).unwrap(); // tos 0xc0
    ip.dont_fragment = false;
    ip.header_checksum = ip.calc_header_checksum();
    ip.write(&mut v).unwrap();
    let mut icmp = vec![3, 4, 0, 0, 0, 0, 0, 80];
    let c = Sum16BitWords::new()
        .add_slice(&icmp)
        .add_slice(orig)
        .ones_complement()
        .to_be();
    icmp[2..4].copy_from_slice(&c.to_be_bytes());
    v.extend_from_slice(&icmp);
    v.extend_from_slice(orig);
    let mut f = vec![0u8; 10];
    f.extend_from_slice(&v);
    f
}

fn big_df_packet() -> Vec<u8> {
    client_tcp(8086, TCP_ACK, ISN + 1, &[], &[0x42; 60], true)
}

fn nodf_syn() -> Vec<u8> {
    client_tcp(8088, TCP_SYN, ISN, &SYN_OPTIONS, &[], false)
}

fn nodf_ack() -> Vec<u8> {
    client_tcp(8088, TCP_ACK, ISN + 1, &[], &[], false)
}

/// (name, expected frame) from the independent builders, in fixture order.
fn generated() -> Vec<(&'static str, Vec<u8>)> {
    let (_, rem) = remcsum_input();
    let segs = gso_segments();
    vec![
        ("IPIP_SYN", ipip(&syn(8080), RS, 0, true)),
        ("GUE_NOCSUM_SYN", gue(&syn(8081), 8081, false, None)),
        ("GUE_CSUM_SYN", gue(&syn(8082), 8082, true, None)),
        ("GUE_REMCSUM_SYN_VNET", {
            let mut f = vec![0u8; 10];
            f.extend_from_slice(&gue(&rem, 8083, true, Some((20, 16))));
            f
        }),
        ("GRE_NOCSUM_SYN", gre(&syn(8084), false)),
        ("GRE_CSUM_SYN", gre(&syn(8085), true)),
        ("FRAG_NEEDED_VNET", frag_needed(&big_df_packet())),
        ("GSO_SEG0", segs[0].clone()),
        ("GSO_SEG1", segs[1].clone()),
        ("GSO_SEG2", segs[2].clone()),
        ("NODF_SYN", ipip(&nodf_syn(), RS_NODF, 0, false)),
        ("NODF_ACK", ipip(&nodf_ack(), RS_NODF, 1, false)),
        ("IPIP_CLIENT_ICMP", ipip(&client_icmp(), RS, 0, false)),
    ]
}

fn fixtures() -> Vec<(&'static str, &'static [u8])> {
    vec![
        ("IPIP_SYN", &IPIP_SYN),
        ("GUE_NOCSUM_SYN", &GUE_NOCSUM_SYN),
        ("GUE_CSUM_SYN", &GUE_CSUM_SYN),
        ("GUE_REMCSUM_SYN_VNET", &GUE_REMCSUM_SYN_VNET),
        ("GRE_NOCSUM_SYN", &GRE_NOCSUM_SYN),
        ("GRE_CSUM_SYN", &GRE_CSUM_SYN),
        ("FRAG_NEEDED_VNET", &FRAG_NEEDED_VNET),
        ("GSO_SEG0", &GSO_SEG0),
        ("GSO_SEG1", &GSO_SEG1),
        ("GSO_SEG2", &GSO_SEG2),
        ("NODF_SYN", &NODF_SYN),
        ("NODF_ACK", &NODF_ACK),
        ("IPIP_CLIENT_ICMP", &IPIP_CLIENT_ICMP),
    ]
}

#[test]
#[ignore = "generator: prints the fixture literals"]
fn print_fixtures() {
    for (name, bytes) in generated() {
        println!(
            "/// {name} ({} bytes).\nstatic {name}: [u8; {}] = [\n{}];\n",
            bytes.len(),
            bytes.len(),
            hex_array(&bytes)
        );
    }
}

#[test]
fn fixtures_match_independent_builders() {
    let gen = generated();
    let lit = fixtures();
    assert_eq!(gen.len(), lit.len());
    for ((gn, g), (ln, l)) in gen.iter().zip(lit) {
        assert_eq!(*gn, ln);
        assert_eq!(&g[..], l, "{gn}");
    }
}

/// The provisioned director: one service per variant, each with one tunnel
/// real server; routes as the kernel would report them.
fn prepare_parts() -> (Arc<Director>, Arc<TunnelRoutes>, Pipeline) {
    let d = Arc::new(Director::new());
    for (port, rs, ty, tport, csum) in SERVICES {
        let id = SvcId::Addr {
            proto: Proto::Tcp,
            addr: IpAddr::V4(VIP.into()),
            port,
        };
        let mut s = ServiceSpec::new(id);
        s.sched = "rr".into();
        d.add_service(&s).unwrap();
        let mut r = DestSpec::new(IpAddr::V4(rs.into()), port);
        r.fwd = FwdMethod::Tunnel;
        r.tun_type = ty;
        r.tun_port = tport;
        r.tun_flags = csum;
        d.add_dest(&id, &r).unwrap();
    }
    let routes = Arc::new(TunnelRoutes::new());
    routes.set(IpAddr::V4(RS.into()), DIP.into(), 1500);
    routes.set(IpAddr::V4(RS_SMALL.into()), DIP.into(), 100);
    routes.set(IpAddr::V4(RS_NODF.into()), DIP.into(), 1500);
    let cfg = TunnelConfig {
        local_hops: 1,
        pmtu_disc: true,
        port_lo: 32768,
        port_hi: 60999,
        hash_seed: SEED,
        decrement_ttl: false,
    };
    let p = Pipeline::new(d.clone(), Methods::TUN).with_tunnel(TunnelTx::new(routes.clone(), cfg));
    (d, routes, p)
}

fn run(p: &mut Pipeline, input: &[u8], vnet: bool) -> (Verdict, Vec<u8>) {
    let mut buf = PacketBuf::from_frame(input);
    let v = p.handle(1000, &mut buf, vnet);
    let out = match v {
        Verdict::Forward => buf.frame().to_vec(),
        Verdict::Reply(n) => p.reply()[..n].to_vec(),
        _ => Vec::new(),
    };
    (v, out)
}

fn show(b: &[u8]) -> String {
    hex_array(b)
}

/// The whole suite, in order, on one provisioned pipeline (later cases rely on
/// the connections earlier ones created).
#[test]
fn pipeline_produces_the_golden_frames() {
    let (dir, _, mut p) = prepare_parts();
    let cases: [(&str, Vec<u8>, bool, &[u8]); 6] = [
        ("ipip", syn(8080), false, &IPIP_SYN),
        ("gue nocsum", syn(8081), false, &GUE_NOCSUM_SYN),
        ("gue csum", syn(8082), false, &GUE_CSUM_SYN),
        ("gre nocsum", syn(8084), false, &GRE_NOCSUM_SYN),
        ("gre csum", syn(8085), false, &GRE_CSUM_SYN),
        (
            "gue remcsum (partial checksum)",
            {
                let (h, pkt) = remcsum_input();
                assert_eq!(h.flags, NEEDS_CSUM);
                frame(&h, &pkt)
            },
            true,
            &GUE_REMCSUM_SYN_VNET,
        ),
    ];
    for (name, input, vnet, want) in cases {
        let (v, out) = run(&mut p, &input, vnet);
        assert_eq!(v, Verdict::Forward, "{name}");
        assert!(
            out == want,
            "{name}: got\n{}\nwant\n{}",
            show(&out),
            show(want)
        );
    }

    // No DF: ID from the per-destination counter, 0 then 1.
    for (input, want) in [(nodf_syn(), &NODF_SYN[..]), (nodf_ack(), &NODF_ACK[..])] {
        let (v, out) = run(&mut p, &input, false);
        assert_eq!(v, Verdict::Forward);
        assert!(out == want, "no DF: got\n{}", show(&out));
    }

    // PMTU: toward the small-MTU real server a SYN fits, a 100-byte DF packet
    // does not: fragmentation needed (MTU 80) back to the client.
    let (v, _) = run(&mut p, &syn(8086), false);
    assert_eq!(v, Verdict::Forward);
    let big = frame(&VnetHdr::default(), &big_df_packet());
    let (v, out) = run(&mut p, &big, true);
    assert_eq!(v, Verdict::Reply(FRAG_NEEDED_VNET.len()));
    assert!(out == FRAG_NEEDED_VNET, "frag needed: got\n{}", show(&out));
    assert_eq!(
        p.counters()
            .get(DropReason::Tunnel(TunnelError::FragNeeded)),
        1
    );

    // GSO: a super-packet of 30 bytes with gso_size 12 becomes three encapsulated
    // segments (IDs +1, sequence +12, PSH only on the last).
    let (v, _) = run(&mut p, &syn(8087), false);
    assert_eq!(v, Verdict::Forward);
    let (h, pkt) = gso_input();
    let mut buf = PacketBuf::from_frame(&frame(&h, &pkt));
    assert_eq!(p.handle(1000, &mut buf, true), Verdict::Segments(3));
    let segs = p.segments().unwrap();
    for (i, want) in [&GSO_SEG0[..], &GSO_SEG1[..], &GSO_SEG2[..]]
        .iter()
        .enumerate()
    {
        assert!(
            segs.frame(i) == *want,
            "segment {i}: got\n{}",
            show(segs.frame(i))
        );
    }

    // ICMP from the client about the 8080 connection: encapsulated as it is
    // (no DF on the outer header: the ICMP packet has none).
    let in_before = |d: &Director| {
        let s = d
            .services()
            .into_iter()
            .find(|s| s.spec.id.port() == 8080)
            .unwrap();
        (s.stats.inpkts, s.dests[0].stats.inpkts)
    };
    let (svc0, dest0) = in_before(&dir);
    let (v, out) = run(&mut p, &client_icmp(), false);
    assert_eq!(v, Verdict::Forward);
    assert!(out == IPIP_CLIENT_ICMP, "client icmp: got\n{}", show(&out));
    // Related ICMP counts like the flow, for the service as for the dest
    // (spec §3.16).
    let (svc1, dest1) = in_before(&dir);
    assert_eq!((svc1 - svc0, dest1 - dest0), (1, 1));

    // Counters: every frame above was forwarded, one super-packet segmented.
    let c = p.counters();
    assert_eq!(c.segmented.load(std::sync::atomic::Ordering::Relaxed), 1);
}

/// An ICMP error from router 172.16.0.254 to the director about `outer` (an
/// encapsulated packet we sent), quoting it whole.
fn router_icmp(ty: u8, code: u8, rest: [u8; 4], outer: &[u8]) -> Vec<u8> {
    icmp_packet(
        IpAddr::V4([172, 16, 0, 254].into()),
        IpAddr::V4(DIP.into()),
        ty,
        code,
        rest,
        outer,
    )
}

/// The error tunvs sends the client about its own packet `orig` (as the kernel's
/// `icmp_send` from the VIP would).
fn client_error(ty: u8, code: u8, rest: [u8; 4], orig: &[u8]) -> Vec<u8> {
    let mut v = Vec::new();
    let mut ip = Ipv4Header::new(8 + orig.len() as u16, 64, IpNumber(1), VIP, CLIENT).unwrap();
    ip.dscp = IpDscp::try_new(0x30).unwrap();
    ip.dont_fragment = false;
    ip.header_checksum = ip.calc_header_checksum();
    ip.write(&mut v).unwrap();
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

/// ICMP errors about our own tunnel packets (spec §3.13 tunnel case): the router's
/// fragmentation-needed lowers the path MTU and becomes a fragmentation-needed to
/// the client with the MTU left after the overhead; other errors are relayed with
/// their type, code and info; errors about unknown tunnels, without a connection
/// or with a bad checksum are not ours.
#[test]
fn icmp_errors_about_tunnel_packets_reach_the_client() {
    use tunvs::dataplane::tunnel_icmp::{handle, Outcome};
    let (d, routes, mut p) = prepare_parts();
    for port in [8080, 8081, 8084] {
        assert_eq!(run(&mut p, &syn(port), false).0, Verdict::Forward);
    }
    let rs = IpAddr::V4(RS.into());
    let mut out = vec![0u8; 1500];
    let now = 5000;
    // IPIP, fragmentation needed, MTU 1400: client gets 1380.
    let icmp = router_icmp(3, 4, [0, 0, 0x05, 0x78], &IPIP_SYN);
    let o = handle(&d, &routes, now, &icmp, &mut out);
    let want = client_error(3, 4, [0, 0, 0x05, 0x64], &syn(8080));
    assert_eq!(
        o,
        Outcome::Reply {
            to: CLIENT.into(),
            len: want.len(),
            frag_needed: true
        }
    );
    assert_eq!(&out[..want.len()], &want[..]);
    assert_eq!(
        routes.get(rs).unwrap().resolved(now),
        Some((DIP.into(), 1400))
    );
    // GUE: the real overhead (32) comes off.
    let icmp = router_icmp(3, 4, [0, 0, 0x05, 0x50], &GUE_NOCSUM_SYN);
    let o = handle(&d, &routes, now, &icmp, &mut out);
    let want = client_error(3, 4, [0, 0, 0x05, 0x30], &syn(8081));
    assert!(
        matches!(o, Outcome::Reply { len, .. } if len == want.len()),
        "{o:?}"
    );
    assert_eq!(&out[..want.len()], &want[..]);
    // GRE, host unreachable: relayed as it is.
    let icmp = router_icmp(3, 1, [0, 0, 0, 0], &GRE_NOCSUM_SYN);
    let o = handle(&d, &routes, now, &icmp, &mut out);
    let want = client_error(3, 1, [0, 0, 0, 0], &syn(8084));
    assert!(
        matches!(
            o,
            Outcome::Reply {
                frag_needed: false,
                ..
            }
        ),
        "{o:?}"
    );
    assert_eq!(&out[..want.len()], &want[..]);
    // A quote cut after the client's ports still works (RFC 792 routers).
    let icmp = router_icmp(11, 0, [0; 4], &IPIP_SYN[..20 + 24]);
    let o = handle(&d, &routes, now, &icmp, &mut out);
    let want = client_error(11, 0, [0; 4], &syn(8080)[..24]);
    assert_eq!(&out[..want.len()], &want[..], "{o:?}");
    // Not ours: the tunnel type does not match the destination's, no connection,
    // a non-error type; a bad ICMP checksum is refused.
    let mut as_gre = IPIP_SYN.to_vec();
    as_gre[9] = 47;
    for (what, icmp) in [
        ("type mismatch", router_icmp(3, 4, [0, 0, 5, 0x78], &as_gre)),
        (
            "no connection",
            router_icmp(3, 4, [0, 0, 5, 0x78], &NODF_ACK[..20 + 20]),
        ),
        ("echo", router_icmp(8, 0, [0; 4], &IPIP_SYN)),
    ] {
        assert_eq!(
            handle(&d, &routes, now, &icmp, &mut out),
            Outcome::NotOurs,
            "{what}"
        );
    }
    let mut bad = router_icmp(3, 1, [0; 4], &IPIP_SYN);
    bad[30] ^= 1;
    assert_eq!(
        handle(&d, &routes, now, &bad, &mut out),
        Outcome::BadChecksum
    );
    // A client packet without DF: only the path MTU is lowered.
    let (v, _) = run(&mut p, &nodf_syn(), false);
    assert_eq!(v, Verdict::Forward);
    let nodf_outer = ipip(&nodf_syn(), RS_NODF, 2, false);
    routes.set(IpAddr::V4(RS_NODF.into()), DIP.into(), 1500);
    let icmp = router_icmp(3, 4, [0, 0, 0x04, 0x00], &nodf_outer);
    assert_eq!(handle(&d, &routes, now, &icmp, &mut out), Outcome::Consumed);
    assert_eq!(
        routes
            .get(IpAddr::V4(RS_NODF.into()))
            .unwrap()
            .resolved(now),
        Some((DIP.into(), 1024))
    );
}

/// Decapsulation on the real server: every golden frame gives back the client's
/// packet; malformed outer headers are dropped and counted by reason.
#[test]
fn decapsulation_of_the_golden_frames() {
    let vip = IpAddr::V4(VIP.into());
    let mut ipip_d = Decapsulator::new(TunType::Ipip, vip);
    for (frame, inner) in [
        (&IPIP_SYN[..], syn(8080)),
        (&NODF_SYN[..], nodf_syn()),
        (&GSO_SEG1[10..], gso_segments()[1][30..].to_vec()),
    ] {
        let mut b = frame.to_vec();
        let r = ipip_d.process(&mut b).unwrap();
        assert_eq!(&b[r], &inner[..]);
    }
    let mut gre_d = Decapsulator::new(TunType::Gre, vip);
    for (frame, inner) in [
        (&GRE_NOCSUM_SYN[..], syn(8084)),
        (&GRE_CSUM_SYN[..], syn(8085)),
    ] {
        let mut b = frame.to_vec();
        let r = gre_d.process(&mut b).unwrap();
        assert_eq!(&b[r], &inner[..]);
    }
    let mut gue_d = Decapsulator::new(TunType::Gue, vip);
    for (frame, inner) in [
        (&GUE_NOCSUM_SYN[28..], syn(8081)),
        (&GUE_CSUM_SYN[28..], syn(8082)),
        // REMCSUM: the seed is completed into the full checksum.
        (&GUE_REMCSUM_SYN_VNET[10 + 28..], syn(8083)),
    ] {
        let mut b = frame.to_vec();
        let r = gue_d.process(&mut b).unwrap();
        assert_eq!(&b[r], &inner[..]);
    }

    // Malformed: (decapsulator, frame, mutation, reason).
    type Mutation = fn(&mut Vec<u8>);
    fn refix_at(b: &mut [u8], at: usize) {
        let h = Ipv4Header::from_slice(&b[at..at + 20]).unwrap().0;
        b[at + 10..at + 12].copy_from_slice(&h.calc_header_checksum().to_be_bytes());
    }
    fn refix(b: &mut [u8]) {
        refix_at(b, 0)
    }
    let bad: [(TunType, &[u8], Mutation, DecapError); 14] = [
        (
            TunType::Ipip,
            &IPIP_SYN,
            |b| b.truncate(12),
            DecapError::Truncated,
        ),
        (
            TunType::Ipip,
            &IPIP_SYN,
            |b| b[0] = 0x65,
            DecapError::OuterVersion,
        ),
        (
            TunType::Ipip,
            &IPIP_SYN,
            |b| b[0] = 0x44,
            DecapError::OuterHeader,
        ),
        (
            TunType::Ipip,
            &IPIP_SYN,
            |b| b.truncate(70),
            DecapError::Truncated,
        ),
        (
            TunType::Ipip,
            &IPIP_SYN,
            |b| b[11] ^= 0x10,
            DecapError::OuterChecksum,
        ),
        (
            TunType::Ipip,
            &IPIP_SYN,
            |b| {
                b[6] |= 0x20;
                refix(b)
            },
            DecapError::OuterFragment,
        ),
        (
            TunType::Ipip,
            &IPIP_SYN,
            |b| {
                b[36] = 10; // inner destination 10.175.44.110
                refix_at(b, 20)
            },
            DecapError::NotVip,
        ),
        (
            TunType::Ipip,
            &IPIP_SYN,
            |b| b[31] ^= 1,
            DecapError::InnerHeader,
        ),
        (TunType::Gre, &IPIP_SYN, |_| {}, DecapError::OuterProto),
        (
            TunType::Gre,
            &GRE_CSUM_SYN,
            |b| b[20] |= 0x40,
            DecapError::GreFlags,
        ),
        (
            TunType::Gre,
            &GRE_CSUM_SYN,
            |b| b[50] ^= 0xff,
            DecapError::GreChecksum,
        ),
        (
            TunType::Gre,
            &GRE_NOCSUM_SYN,
            |b| b[23] = 0x06,
            DecapError::InnerProto,
        ),
        (
            TunType::Gue,
            &GUE_NOCSUM_SYN[28..],
            |b| b[0] |= 0x20,
            DecapError::GueVersion,
        ),
        (
            TunType::Gue,
            &GUE_NOCSUM_SYN[28..],
            |b| b[3] = 4,
            DecapError::GueFlags,
        ),
    ];
    let mut counted = std::collections::HashMap::new();
    for (i, (kind, frame, mutate, why)) in bad.iter().enumerate() {
        let d = match kind {
            TunType::Ipip => &mut ipip_d,
            TunType::Gre => &mut gre_d,
            TunType::Gue => &mut gue_d,
        };
        let mut b = frame.to_vec();
        mutate(&mut b);
        assert_eq!(d.process(&mut b), Err(*why), "case {i}");
        *counted.entry(((*kind) as u8, *why)).or_insert(0u64) += 1;
    }
    for (kind, d) in [
        (TunType::Ipip, &ipip_d),
        (TunType::Gre, &gre_d),
        (TunType::Gue, &gue_d),
    ] {
        for e in DecapError::ALL {
            let want = counted.get(&(kind as u8, e)).copied().unwrap_or(0);
            assert_eq!(d.counters.drop_count(e), want, "{kind:?} {}", e.name());
        }
    }
    assert_eq!(ipip_d.counters.received, 3 + 8);
    assert_eq!(gre_d.counters.received, 2 + 4);
    assert_eq!(gue_d.counters.received, 3 + 2);
}

// ---- fixtures (generated by `print_fixtures`) ----

/// IPIP_SYN (80 bytes).
static IPIP_SYN: [u8; 80] = [
    0x45, 0x2a, 0x00, 0x50, 0x00, 0x00, 0x40, 0x00, 0x40, 0x04, 0xe2, 0x5c, 0xac, 0x10, 0x00, 0x01,
    0xac, 0x10, 0x00, 0x02, 0x45, 0x2b, 0x00, 0x3c, 0x1c, 0x46, 0x40, 0x00, 0x3f, 0x06, 0x19, 0x2c,
    0x0a, 0x00, 0x00, 0x02, 0xcf, 0xaf, 0x2c, 0x6e, 0x9c, 0x40, 0x1f, 0x90, 0x3a, 0xde, 0x68, 0xb1,
    0x00, 0x00, 0x00, 0x00, 0xa0, 0x02, 0xfa, 0xf0, 0xe5, 0x8b, 0x00, 0x00, 0x02, 0x04, 0x05, 0xb4,
    0x04, 0x02, 0x08, 0x0a, 0x00, 0x01, 0x02, 0x03, 0x00, 0x00, 0x00, 0x00, 0x01, 0x03, 0x03, 0x07,
];

/// GUE_NOCSUM_SYN (92 bytes).
static GUE_NOCSUM_SYN: [u8; 92] = [
    0x45, 0x2a, 0x00, 0x5c, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0xe2, 0x43, 0xac, 0x10, 0x00, 0x01,
    0xac, 0x10, 0x00, 0x02, 0xbf, 0x13, 0x17, 0xc0, 0x00, 0x48, 0x00, 0x00, 0x00, 0x04, 0x00, 0x00,
    0x45, 0x2b, 0x00, 0x3c, 0x1c, 0x46, 0x40, 0x00, 0x3f, 0x06, 0x19, 0x2c, 0x0a, 0x00, 0x00, 0x02,
    0xcf, 0xaf, 0x2c, 0x6e, 0x9c, 0x40, 0x1f, 0x91, 0x3a, 0xde, 0x68, 0xb1, 0x00, 0x00, 0x00, 0x00,
    0xa0, 0x02, 0xfa, 0xf0, 0xe5, 0x8a, 0x00, 0x00, 0x02, 0x04, 0x05, 0xb4, 0x04, 0x02, 0x08, 0x0a,
    0x00, 0x01, 0x02, 0x03, 0x00, 0x00, 0x00, 0x00, 0x01, 0x03, 0x03, 0x07,
];

/// GUE_CSUM_SYN (92 bytes).
static GUE_CSUM_SYN: [u8; 92] = [
    0x45, 0x2a, 0x00, 0x5c, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0xe2, 0x43, 0xac, 0x10, 0x00, 0x01,
    0xac, 0x10, 0x00, 0x02, 0xec, 0x6b, 0x17, 0xc0, 0x00, 0x48, 0xa9, 0x58, 0x00, 0x04, 0x00, 0x00,
    0x45, 0x2b, 0x00, 0x3c, 0x1c, 0x46, 0x40, 0x00, 0x3f, 0x06, 0x19, 0x2c, 0x0a, 0x00, 0x00, 0x02,
    0xcf, 0xaf, 0x2c, 0x6e, 0x9c, 0x40, 0x1f, 0x92, 0x3a, 0xde, 0x68, 0xb1, 0x00, 0x00, 0x00, 0x00,
    0xa0, 0x02, 0xfa, 0xf0, 0xe5, 0x89, 0x00, 0x00, 0x02, 0x04, 0x05, 0xb4, 0x04, 0x02, 0x08, 0x0a,
    0x00, 0x01, 0x02, 0x03, 0x00, 0x00, 0x00, 0x00, 0x01, 0x03, 0x03, 0x07,
];

/// GUE_REMCSUM_SYN_VNET (110 bytes).
static GUE_REMCSUM_SYN_VNET: [u8; 110] = [
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x45, 0x2a, 0x00, 0x64, 0x00, 0x00,
    0x40, 0x00, 0x40, 0x11, 0xe2, 0x3b, 0xac, 0x10, 0x00, 0x01, 0xac, 0x10, 0x00, 0x02, 0xbc, 0x05,
    0x17, 0xc0, 0x00, 0x50, 0x36, 0xb0, 0x02, 0x04, 0x00, 0x01, 0x80, 0x00, 0x00, 0x00, 0x00, 0x14,
    0x00, 0x24, 0x45, 0x2b, 0x00, 0x3c, 0x1c, 0x46, 0x40, 0x00, 0x3f, 0x06, 0x19, 0x2c, 0x0a, 0x00,
    0x00, 0x02, 0xcf, 0xaf, 0x2c, 0x6e, 0x9c, 0x40, 0x1f, 0x93, 0x3a, 0xde, 0x68, 0xb1, 0x00, 0x00,
    0x00, 0x00, 0xa0, 0x02, 0xfa, 0xf0, 0x06, 0x4e, 0x00, 0x00, 0x02, 0x04, 0x05, 0xb4, 0x04, 0x02,
    0x08, 0x0a, 0x00, 0x01, 0x02, 0x03, 0x00, 0x00, 0x00, 0x00, 0x01, 0x03, 0x03, 0x07,
];

/// GRE_NOCSUM_SYN (84 bytes).
static GRE_NOCSUM_SYN: [u8; 84] = [
    0x45, 0x2a, 0x00, 0x54, 0x00, 0x00, 0x40, 0x00, 0x40, 0x2f, 0xe2, 0x2d, 0xac, 0x10, 0x00, 0x01,
    0xac, 0x10, 0x00, 0x02, 0x00, 0x00, 0x08, 0x00, 0x45, 0x2b, 0x00, 0x3c, 0x1c, 0x46, 0x40, 0x00,
    0x3f, 0x06, 0x19, 0x2c, 0x0a, 0x00, 0x00, 0x02, 0xcf, 0xaf, 0x2c, 0x6e, 0x9c, 0x40, 0x1f, 0x94,
    0x3a, 0xde, 0x68, 0xb1, 0x00, 0x00, 0x00, 0x00, 0xa0, 0x02, 0xfa, 0xf0, 0xe5, 0x87, 0x00, 0x00,
    0x02, 0x04, 0x05, 0xb4, 0x04, 0x02, 0x08, 0x0a, 0x00, 0x01, 0x02, 0x03, 0x00, 0x00, 0x00, 0x00,
    0x01, 0x03, 0x03, 0x07,
];

/// GRE_CSUM_SYN (88 bytes).
static GRE_CSUM_SYN: [u8; 88] = [
    0x45, 0x2a, 0x00, 0x58, 0x00, 0x00, 0x40, 0x00, 0x40, 0x2f, 0xe2, 0x29, 0xac, 0x10, 0x00, 0x01,
    0xac, 0x10, 0x00, 0x02, 0x80, 0x00, 0x08, 0x00, 0x7e, 0x4d, 0x00, 0x00, 0x45, 0x2b, 0x00, 0x3c,
    0x1c, 0x46, 0x40, 0x00, 0x3f, 0x06, 0x19, 0x2c, 0x0a, 0x00, 0x00, 0x02, 0xcf, 0xaf, 0x2c, 0x6e,
    0x9c, 0x40, 0x1f, 0x95, 0x3a, 0xde, 0x68, 0xb1, 0x00, 0x00, 0x00, 0x00, 0xa0, 0x02, 0xfa, 0xf0,
    0xe5, 0x86, 0x00, 0x00, 0x02, 0x04, 0x05, 0xb4, 0x04, 0x02, 0x08, 0x0a, 0x00, 0x01, 0x02, 0x03,
    0x00, 0x00, 0x00, 0x00, 0x01, 0x03, 0x03, 0x07,
];

/// FRAG_NEEDED_VNET (138 bytes).
static FRAG_NEEDED_VNET: [u8; 138] = [
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x45, 0xc0, 0x00, 0x80, 0x00, 0x00,
    0x00, 0x00, 0x40, 0x01, 0x73, 0x9e, 0xcf, 0xaf, 0x2c, 0x6e, 0x0a, 0x00, 0x00, 0x02, 0x03, 0x04,
    0x03, 0x22, 0x00, 0x00, 0x00, 0x50, 0x45, 0x2b, 0x00, 0x64, 0x1c, 0x46, 0x40, 0x00, 0x3f, 0x06,
    0x19, 0x04, 0x0a, 0x00, 0x00, 0x02, 0xcf, 0xaf, 0x2c, 0x6e, 0x9c, 0x40, 0x1f, 0x96, 0x3a, 0xde,
    0x68, 0xb2, 0x00, 0x00, 0x00, 0x00, 0x50, 0x10, 0xfa, 0xf0, 0x8b, 0x5d, 0x00, 0x00, 0x42, 0x42,
    0x42, 0x42, 0x42, 0x42, 0x42, 0x42, 0x42, 0x42, 0x42, 0x42, 0x42, 0x42, 0x42, 0x42, 0x42, 0x42,
    0x42, 0x42, 0x42, 0x42, 0x42, 0x42, 0x42, 0x42, 0x42, 0x42, 0x42, 0x42, 0x42, 0x42, 0x42, 0x42,
    0x42, 0x42, 0x42, 0x42, 0x42, 0x42, 0x42, 0x42, 0x42, 0x42, 0x42, 0x42, 0x42, 0x42, 0x42, 0x42,
    0x42, 0x42, 0x42, 0x42, 0x42, 0x42, 0x42, 0x42, 0x42, 0x42,
];

/// GSO_SEG0 (82 bytes).
static GSO_SEG0: [u8; 82] = [
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x45, 0x2a, 0x00, 0x48, 0x00, 0x00,
    0x40, 0x00, 0x40, 0x04, 0xe2, 0x64, 0xac, 0x10, 0x00, 0x01, 0xac, 0x10, 0x00, 0x02, 0x45, 0x2b,
    0x00, 0x34, 0x1c, 0x46, 0x40, 0x00, 0x3f, 0x06, 0x19, 0x34, 0x0a, 0x00, 0x00, 0x02, 0xcf, 0xaf,
    0x2c, 0x6e, 0x9c, 0x40, 0x1f, 0x97, 0x3a, 0xde, 0x68, 0xb2, 0x00, 0x00, 0x00, 0x00, 0x50, 0x10,
    0xfa, 0xf0, 0xe8, 0xe3, 0x00, 0x00, 0x61, 0x62, 0x63, 0x64, 0x65, 0x66, 0x67, 0x68, 0x69, 0x6a,
    0x6b, 0x6c,
];

/// GSO_SEG1 (82 bytes).
static GSO_SEG1: [u8; 82] = [
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x45, 0x2a, 0x00, 0x48, 0x00, 0x00,
    0x40, 0x00, 0x40, 0x04, 0xe2, 0x64, 0xac, 0x10, 0x00, 0x01, 0xac, 0x10, 0x00, 0x02, 0x45, 0x2b,
    0x00, 0x34, 0x1c, 0x47, 0x40, 0x00, 0x3f, 0x06, 0x19, 0x33, 0x0a, 0x00, 0x00, 0x02, 0xcf, 0xaf,
    0x2c, 0x6e, 0x9c, 0x40, 0x1f, 0x97, 0x3a, 0xde, 0x68, 0xbe, 0x00, 0x00, 0x00, 0x00, 0x50, 0x10,
    0xfa, 0xf0, 0xa0, 0x8f, 0x00, 0x00, 0x6d, 0x6e, 0x6f, 0x70, 0x71, 0x72, 0x73, 0x74, 0x75, 0x76,
    0x77, 0x78,
];

/// GSO_SEG2 (76 bytes).
static GSO_SEG2: [u8; 76] = [
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x45, 0x2a, 0x00, 0x42, 0x00, 0x00,
    0x40, 0x00, 0x40, 0x04, 0xe2, 0x6a, 0xac, 0x10, 0x00, 0x01, 0xac, 0x10, 0x00, 0x02, 0x45, 0x2b,
    0x00, 0x2e, 0x1c, 0x48, 0x40, 0x00, 0x3f, 0x06, 0x19, 0x38, 0x0a, 0x00, 0x00, 0x02, 0xcf, 0xaf,
    0x2c, 0x6e, 0x9c, 0x40, 0x1f, 0x97, 0x3a, 0xde, 0x68, 0xca, 0x00, 0x00, 0x00, 0x00, 0x50, 0x18,
    0xfa, 0xf0, 0x73, 0x57, 0x00, 0x00, 0x79, 0x7a, 0x30, 0x31, 0x32, 0x33,
];

/// NODF_SYN (80 bytes).
static NODF_SYN: [u8; 80] = [
    0x45, 0x2a, 0x00, 0x50, 0x00, 0x00, 0x00, 0x00, 0x40, 0x04, 0x22, 0x5b, 0xac, 0x10, 0x00, 0x01,
    0xac, 0x10, 0x00, 0x04, 0x45, 0x2b, 0x00, 0x3c, 0x1c, 0x46, 0x00, 0x00, 0x3f, 0x06, 0x59, 0x2c,
    0x0a, 0x00, 0x00, 0x02, 0xcf, 0xaf, 0x2c, 0x6e, 0x9c, 0x40, 0x1f, 0x98, 0x3a, 0xde, 0x68, 0xb1,
    0x00, 0x00, 0x00, 0x00, 0xa0, 0x02, 0xfa, 0xf0, 0xe5, 0x83, 0x00, 0x00, 0x02, 0x04, 0x05, 0xb4,
    0x04, 0x02, 0x08, 0x0a, 0x00, 0x01, 0x02, 0x03, 0x00, 0x00, 0x00, 0x00, 0x01, 0x03, 0x03, 0x07,
];

/// NODF_ACK (60 bytes).
static NODF_ACK: [u8; 60] = [
    0x45, 0x2a, 0x00, 0x3c, 0x00, 0x01, 0x00, 0x00, 0x40, 0x04, 0x22, 0x6e, 0xac, 0x10, 0x00, 0x01,
    0xac, 0x10, 0x00, 0x04, 0x45, 0x2b, 0x00, 0x28, 0x1c, 0x46, 0x00, 0x00, 0x3f, 0x06, 0x59, 0x40,
    0x0a, 0x00, 0x00, 0x02, 0xcf, 0xaf, 0x2c, 0x6e, 0x9c, 0x40, 0x1f, 0x98, 0x3a, 0xde, 0x68, 0xb2,
    0x00, 0x00, 0x00, 0x00, 0x50, 0x10, 0xfa, 0xf0, 0x4f, 0x5b, 0x00, 0x00,
];

/// IPIP_CLIENT_ICMP (76 bytes).
static IPIP_CLIENT_ICMP: [u8; 76] = [
    0x45, 0x00, 0x00, 0x4c, 0x00, 0x00, 0x00, 0x00, 0x40, 0x04, 0x22, 0x8b, 0xac, 0x10, 0x00, 0x01,
    0xac, 0x10, 0x00, 0x02, 0x45, 0x00, 0x00, 0x38, 0x1c, 0x46, 0x00, 0x00, 0x3f, 0x01, 0x59, 0x60,
    0x0a, 0x00, 0x00, 0x02, 0xcf, 0xaf, 0x2c, 0x6e, 0x03, 0x03, 0x40, 0xdf, 0x00, 0x00, 0x00, 0x00,
    0x45, 0x00, 0x00, 0x28, 0x1c, 0x46, 0x40, 0x00, 0x40, 0x06, 0x18, 0x6b, 0xcf, 0xaf, 0x2c, 0x6e,
    0x0a, 0x00, 0x00, 0x02, 0x1f, 0x90, 0x9c, 0x40, 0x00, 0x00, 0x00, 0x4d,
];
