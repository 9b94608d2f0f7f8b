//! No allocation per packet on the tunnel path: once a connection exists, plain
//! packets, partial-checksum packets, GSO super-packets (segmented into the
//! pipeline's reused buffer) and too-big packets (answered with an ICMP error)
//! go through the pipeline without touching the allocator. A counting global
//! allocator, switched on per thread, checks it.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;

use tunvs::adm::api::Ipvs;
use tunvs::dataplane::buf::PacketBuf;
use tunvs::dataplane::pipeline::{Methods, Pipeline, Verdict};
use tunvs::dataplane::xmit_tunnel::{TunnelConfig, TunnelRoutes, TunnelTx};
use tunvs::director::Director;
use tunvs::packet::testutil::{frame, tcp_packet, to_partial};
use tunvs::packet::vnet::VnetHdr;
use tunvs::packet::{TCP_ACK, TCP_SYN};
use tunvs::service::{DestSpec, FwdMethod, Proto, ServiceSpec, SvcId, TunCsum, TunType};

mod alloc_count;

use alloc_count::allocations_in;

fn sa(a: [u8; 4], p: u16) -> SocketAddr {
    SocketAddr::new(IpAddr::V4(Ipv4Addr::from(a)), p)
}

#[test]
fn tunnel_packets_allocate_nothing() {
    let d = Arc::new(Director::new());
    let vip = [207, 175, 44, 110];
    let mut ports = Vec::new();
    for (port, ty, csum) in [
        (8080, TunType::Ipip, TunCsum::NoCsum),
        (8081, TunType::Gue, TunCsum::RemCsum),
        (8082, TunType::Gre, TunCsum::Csum),
    ] {
        let id = SvcId::Addr {
            proto: Proto::Tcp,
            addr: IpAddr::V4(vip.into()),
            port,
        };
        d.add_service(&ServiceSpec::new(id)).unwrap();
        let mut r = DestSpec::new(IpAddr::V4([172, 16, 0, 2].into()), port);
        r.fwd = FwdMethod::Tunnel;
        r.tun_type = ty;
        r.tun_port = 6080;
        r.tun_flags = csum;
        d.add_dest(&id, &r).unwrap();
        ports.push(port);
    }
    let routes = Arc::new(TunnelRoutes::new());
    routes.set(
        IpAddr::V4([172, 16, 0, 2].into()),
        Ipv4Addr::new(172, 16, 0, 1),
        1400,
    );
    let mut p =
        Pipeline::new(d, Methods::TUN).with_tunnel(TunnelTx::new(routes, TunnelConfig::default()));
    let client = sa([10, 0, 0, 2], 40000);
    let mut buf = PacketBuf::new(65536 + 10);
    let mut inputs = Vec::new();
    for &port in &ports {
        let v = sa(vip, port);
        let syn = tcp_packet(client, v, TCP_SYN, 1, 0, &[], &[]);
        buf.set(&frame(&VnetHdr::default(), &syn));
        assert_eq!(p.handle(1, &mut buf, true), Verdict::Forward);
        let small = tcp_packet(client, v, TCP_ACK, 2, 1, &[], &[7u8; 500]);
        let mut partial = small.clone();
        let ph = to_partial(&mut partial, 0);
        let mut gso = tcp_packet(client, v, TCP_ACK, 2, 1, &[], &[9u8; 20000]);
        let gh = to_partial(&mut gso, 1000);
        let big = tcp_packet(client, v, TCP_ACK, 2, 1, &[], &[1u8; 1400]);
        inputs.push((frame(&VnetHdr::default(), &small), Verdict::Forward));
        inputs.push((frame(&ph, &partial), Verdict::Forward));
        inputs.push((frame(&gh, &gso), Verdict::Segments(20)));
        inputs.push((frame(&VnetHdr::default(), &big), Verdict::Reply(0)));
    }
    let n = allocations_in(|| {
        for _ in 0..3 {
            for (f, want) in &inputs {
                buf.set(f);
                let v = p.handle(2, &mut buf, true);
                match (v, want) {
                    (Verdict::Reply(_), Verdict::Reply(_)) => {}
                    _ => assert_eq!(v, *want),
                }
            }
        }
    });
    assert_eq!(n, 0, "allocations on the tunnel path");
}
