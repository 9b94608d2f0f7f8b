//! The pure pipeline on fixed packets, no device: an established NAT flow
//! (client → VIP), with and without the virtio header's partial
//! checksum, and a new connection including scheduling. The baseline measured
//! in the same run is a plain copy of the packet (what any TUN loop pays), so
//! the README can report ratios.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use tunvs::adm::api::Ipvs;
use tunvs::dataplane::buf::PacketBuf;
use tunvs::dataplane::pipeline::{Methods, Pipeline, Verdict};
use tunvs::director::Director;
use tunvs::packet::testutil;
use tunvs::service::{DestSpec, FwdMethod, Proto, ServiceSpec, SvcId};

const VIP: Ipv4Addr = Ipv4Addr::new(12, 0, 0, 1);

fn director(sched: &str) -> Arc<Director> {
    let d = Arc::new(Director::new());
    let id = SvcId::Addr {
        proto: Proto::Tcp,
        addr: IpAddr::V4(VIP),
        port: 80,
    };
    let mut s = ServiceSpec::new(id);
    s.sched = sched.into();
    d.add_service(&s).unwrap();
    for i in 0..4u8 {
        let mut r = DestSpec::new(IpAddr::V4(Ipv4Addr::new(192, 168, 168, 10 + i)), 80);
        r.fwd = FwdMethod::Masq;
        d.add_dest(&id, &r).unwrap();
    }
    d
}

fn sa(a: [u8; 4], p: u16) -> SocketAddr {
    SocketAddr::new(IpAddr::V4(Ipv4Addr::from(a)), p)
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("pipeline");
    g.measurement_time(Duration::from_secs(2));
    g.warm_up_time(Duration::from_millis(500));
    g.throughput(Throughput::Elements(1));

    let payload = [0x5au8; 1400];
    let client = sa([12, 0, 0, 10], 40000);
    let vip = sa([12, 0, 0, 1], 80);
    let syn = testutil::tcp_packet(client, vip, 0x02, 1, 0, &[], &[]);
    let data = testutil::tcp_packet(client, vip, 0x18, 2, 1, &[], &payload);

    // Baseline: copying the packet into the buffer, as every loop does.
    let mut buf = PacketBuf::from_frame(&data);
    g.bench_function("baseline_copy_1440B", |b| {
        b.iter(|| {
            buf.set(std::hint::black_box(&data));
            std::hint::black_box(buf.frame());
        })
    });

    // Established flow, client side, final checksums (no offload).
    let d = director("rr");
    let mut p = Pipeline::new(d.clone(), Methods::TUN);
    assert_eq!(
        p.handle(1, &mut PacketBuf::from_frame(&syn), false),
        Verdict::Forward
    );
    // What is timed must be the forwarding path, not a drop.
    buf.set(&data);
    assert_eq!(p.handle(2, &mut buf, false), Verdict::Forward);
    g.bench_function("established_in_1440B", |b| {
        b.iter(|| {
            buf.set(&data);
            std::hint::black_box(p.handle(2, &mut buf, false))
        })
    });

    // The same with the virtio header and a partial checksum (offload on).
    let mut partial = data.clone();
    let hdr = testutil::to_partial(&mut partial, 0);
    let framed = testutil::frame(&hdr, &partial);
    buf.set(&framed);
    assert_eq!(p.handle(2, &mut buf, true), Verdict::Forward);
    g.bench_function("established_in_1440B_vnet_partial_csum", |b| {
        b.iter(|| {
            buf.set(&framed);
            std::hint::black_box(p.handle(2, &mut buf, true))
        })
    });

    // New connection: service lookup, wlc scheduling, conn creation. Each
    // iteration is a new client address and port.
    let d = director("wlc");
    let mut p = Pipeline::new(d.clone(), Methods::TUN);
    let mut n: u32 = 0;
    g.bench_function("new_connection_wlc", |b| {
        b.iter_batched(
            || {
                n = n.wrapping_add(1);
                let c = SocketAddr::new(
                    IpAddr::V4(Ipv4Addr::from(0x0a00_0000 | (n >> 8))),
                    1024 + (n & 0xff) as u16,
                );
                PacketBuf::from_frame(&testutil::tcp_packet(c, vip, 0x02, 1, 0, &[], &[]))
            },
            |mut pkt| {
                let v = p.handle(3, &mut pkt, false);
                debug_assert_eq!(v, Verdict::Forward);
                std::hint::black_box(v)
            },
            BatchSize::SmallInput,
        )
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
