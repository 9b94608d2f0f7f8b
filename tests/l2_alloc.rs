//! No allocation per forwarded packet in tap mode: an established
//! direct-routing flow, a NAT flow and tunnel flows (IPIP and GUE frames,
//! GSO super-packets cut into Ethernet frames, too-big packets answered
//! with frag-needed) through the L2 layer, counted by a global allocator
//! (exemplars.md §5, "habits common to all").

use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use tunvs::adm::api::Ipvs;
use tunvs::dataplane::buf::PacketBuf;
use tunvs::dataplane::l2::{L2Config, L2Pipeline, L2Verdict};
use tunvs::dataplane::l2_tunnel;
use tunvs::dataplane::neigh::NeighTable;
use tunvs::dataplane::pipeline::{Methods, Pipeline};
use tunvs::dataplane::xmit_tunnel::TunnelRoutes;
use tunvs::director::Director;
use tunvs::host::Host;
use tunvs::packet::testutil::{tcp_packet, to_partial};
use tunvs::packet::{TCP_ACK, TCP_SYN};
use tunvs::service::{DestSpec, FwdMethod, Proto, ServiceSpec, SvcId, TunCsum, TunType};

mod alloc_count;

use alloc_count::allocations_in;

const OUR_MAC: [u8; 6] = [0x02, 0x74, 0x76, 0, 0, 1];
const ROUTER_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0xfe];

fn eth(dst: [u8; 6], src: [u8; 6], payload: &[u8]) -> Vec<u8> {
    let mut f = dst.to_vec();
    f.extend_from_slice(&src);
    f.extend_from_slice(&[8, 0]);
    f.extend_from_slice(payload);
    f
}

#[test]
fn established_dr_and_nat_flows_do_not_allocate() {
    let ip = |s: &str| -> IpAddr { s.parse().unwrap() };
    let dir = Arc::new(Director::new());
    for (vip, rip, fwd) in [
        ("207.175.44.110", "172.16.0.2", FwdMethod::Route),
        ("207.175.44.111", "172.16.0.3", FwdMethod::Masq),
    ] {
        let id = SvcId::Addr {
            proto: Proto::Tcp,
            addr: ip(vip),
            port: 80,
        };
        dir.add_service(&ServiceSpec::new(id)).unwrap();
        let mut d = DestSpec::new(ip(rip), 80);
        d.fwd = fwd;
        dir.add_dest(&id, &d).unwrap();
    }
    let cfg = Arc::new(L2Config {
        mac: OUR_MAC,
        addrs: vec![(ip("172.16.0.1"), 24)],
        gateway: Some(ip("172.16.0.254")),
        vnet: false,
    });
    let host = Host::new(OUR_MAC, &cfg.addrs, cfg.gateway, 0).unwrap();
    let neigh = Arc::new(NeighTable::new());
    for (a, m) in [
        ("172.16.0.2", 2u8),
        ("172.16.0.3", 3),
        ("172.16.0.254", 0xfe),
    ] {
        neigh.learn(ip(a), [2, 0, 0, 0, 0, m], 0, true);
    }
    let mut l2 = L2Pipeline::new(
        Pipeline::new(dir.clone(), Methods::TAP),
        dir.clone(),
        cfg,
        neigh,
        Arc::new(Mutex::new(host)),
        4096,
        false,
    );
    let mut buf = PacketBuf::new(4096);
    let mut frames = Vec::new();
    for vip in ["207.175.44.110:80", "207.175.44.111:80"] {
        let c = "10.0.0.2:40000".parse().unwrap();
        let v = vip.parse().unwrap();
        frames.push((
            eth(
                OUR_MAC,
                ROUTER_MAC,
                &tcp_packet(c, v, TCP_SYN, 1, 0, &[], &[]),
            ),
            eth(
                OUR_MAC,
                ROUTER_MAC,
                &tcp_packet(c, v, TCP_ACK, 2, 1, &[], &[0x5a; 1400]),
            ),
        ));
    }
    let mut sink = |_: &[u8]| {};
    let new_conns = allocations_in(|| {
        for (syn, _) in &frames {
            buf.set(syn);
            assert_eq!(l2.handle(1, &mut buf, &mut sink), L2Verdict::Forward);
        }
    });
    assert!(
        new_conns > 0,
        "a new connection allocates: the counter works"
    );
    let n = allocations_in(|| {
        for i in 0..1000u64 {
            for (_, data) in &frames {
                buf.set(data);
                assert_eq!(l2.handle(2 + i, &mut buf, &mut sink), L2Verdict::Forward);
            }
            l2.poll(2 + i, &mut sink);
        }
    });
    assert_eq!(n, 0, "allocations on established flows");
}

#[test]
fn established_tunnel_flows_do_not_allocate() {
    let ip = |s: &str| -> IpAddr { s.parse().unwrap() };
    let dir = Arc::new(Director::new());
    for (port, ty) in [(80, TunType::Ipip), (81, TunType::Gue)] {
        let id = SvcId::Addr {
            proto: Proto::Tcp,
            addr: ip("207.175.44.110"),
            port,
        };
        dir.add_service(&ServiceSpec::new(id)).unwrap();
        let mut d = DestSpec::new(ip("172.16.0.2"), port);
        d.fwd = FwdMethod::Tunnel;
        d.tun_type = ty;
        d.tun_port = 6080;
        d.tun_flags = TunCsum::Csum;
        dir.add_dest(&id, &d).unwrap();
    }
    let cfg = Arc::new(L2Config {
        mac: OUR_MAC,
        addrs: vec![(ip("172.16.0.1"), 24)],
        gateway: Some(ip("172.16.0.254")),
        vnet: true,
    });
    let routes = Arc::new(TunnelRoutes::new());
    assert!(l2_tunnel::refresh(&dir, &routes, &cfg, 1500).is_empty());
    let host = Host::new(OUR_MAC, &cfg.addrs, cfg.gateway, 0).unwrap();
    let neigh = Arc::new(NeighTable::new());
    for (a, m) in [("172.16.0.2", 2u8), ("172.16.0.254", 0xfe)] {
        neigh.learn(ip(a), [2, 0, 0, 0, 0, m], 0, true);
    }
    let mut l2 = L2Pipeline::new(
        Pipeline::new(dir.clone(), Methods::TAP),
        dir.clone(),
        cfg,
        neigh,
        Arc::new(Mutex::new(host)),
        70_000,
        false,
    )
    .with_tunnel(routes, l2_tunnel::tunnel_config());
    // Frames as the TAP gives them: virtio header (Ethernet-relative
    // offsets), Ethernet header, IP packet.
    let vframe = |pkt: &[u8], gso: Option<u16>| -> Vec<u8> {
        let mut p = pkt.to_vec();
        let mut h = match gso {
            Some(mss) => to_partial(&mut p, mss),
            None => Default::default(),
        };
        if gso.is_some() {
            h.csum_start += 14;
            h.hdr_len += 14;
        }
        let mut f = h.to_bytes().to_vec();
        f.extend_from_slice(&eth(OUR_MAC, ROUTER_MAC, &p));
        f
    };
    let c = "10.0.0.2:40000".parse().unwrap();
    let mut buf = PacketBuf::new(70_000);
    let mut sink = |_: &[u8]| {};
    let mut inputs = Vec::new();
    for vip in ["207.175.44.110:80", "207.175.44.110:81"] {
        let v = vip.parse().unwrap();
        buf.set(&vframe(&tcp_packet(c, v, TCP_SYN, 1, 0, &[], &[]), None));
        assert_eq!(l2.handle(1, &mut buf, &mut sink), L2Verdict::Forward);
        let data = tcp_packet(c, v, TCP_ACK, 2, 1, &[], &[0x5a; 1000]);
        let gso = tcp_packet(c, v, TCP_ACK, 2, 1, &[], &[0x5b; 20_000]);
        let big = tcp_packet(c, v, TCP_ACK, 2, 1, &[], &[0x5c; 1460]);
        inputs.push((vframe(&data, None), L2Verdict::Forward));
        inputs.push((vframe(&gso, Some(1000)), L2Verdict::Segments(20)));
        inputs.push((vframe(&big, None), L2Verdict::Reply(0)));
    }
    let n = allocations_in(|| {
        for i in 0..300u64 {
            // 10 ms apart: the ICMP rate limit (1000/s) lets every reply through.
            let now = 2 + i * 10;
            for (f, want) in &inputs {
                buf.set(f);
                let v = l2.handle(now, &mut buf, &mut sink);
                match (v, want) {
                    (L2Verdict::Reply(_), L2Verdict::Reply(_)) => {}
                    _ => assert_eq!(v, *want),
                }
                if let L2Verdict::Segments(n) = v {
                    assert_eq!(l2.segments().take(n).count(), 20);
                }
            }
            l2.poll(now, &mut sink);
        }
    });
    assert_eq!(n, 0, "allocations on tunnel flows");
}
