//! `Pipeline::handle` on an established NAT flow allocates nothing
//! (architecture.md: "No allocation per packet"): both directions, IPv4 and
//! IPv6, bare frames and frames with a virtio header (full and partial
//! checksums, GSO). A counting global allocator counts the allocations of the
//! current thread only, so other test threads do not disturb the measurement.

use std::net::SocketAddr;
use std::sync::Arc;

use tunvs::adm;
use tunvs::dataplane::buf::PacketBuf;
use tunvs::dataplane::pipeline::{Methods, Pipeline, Verdict};
use tunvs::director::Director;
use tunvs::packet::testutil::{frame, tcp_packet, to_partial, udp_packet, SYN_OPTIONS};
use tunvs::packet::{VnetHdr, TCP_ACK, TCP_PSH, TCP_SYN};
use tunvs::util::Rng;

mod alloc_count;

use alloc_count::allocations_in;

fn sa(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

fn adm_ok(dir: &Director, line: &str) {
    let args: Vec<String> = line.split_whitespace().map(str::to_string).collect();
    let o = adm::run("ipvsadm", &args, "", dir);
    assert_eq!(o.code, 0, "{line}: {}", o.stderr);
}

/// A frame list for one flow: (frame, vnet) for client → VIP and RS → client.
fn frames(client: &str, vip: &str, rs: &str) -> Vec<(Vec<u8>, bool)> {
    let (c, v, r) = (sa(client), sa(vip), sa(rs));
    let data = [0x42u8; 1400];
    let big = vec![0x17u8; 20_000];
    let mut out = Vec::new();
    for (src, dst) in [(c, v), (r, c)] {
        let plain = tcp_packet(src, dst, TCP_PSH | TCP_ACK, 1000, 2000, &[], &data);
        out.push((plain.clone(), false));
        out.push((frame(&VnetHdr::default(), &plain), true));
        let mut p = plain.clone();
        let h = to_partial(&mut p, 0);
        out.push((frame(&h, &p), true));
        let mut g = tcp_packet(src, dst, TCP_ACK, 1000, 2000, &[], &big);
        let h = to_partial(&mut g, 1448);
        out.push((frame(&h, &g), true));
    }
    out
}

#[test]
fn established_nat_flow_allocates_nothing() {
    let dir = Arc::new(Director::with_clock(Arc::new(|| 0), Rng::seeded(3)));
    for line in [
        "-A -t 12.0.0.1:80 -s rr",
        "-a -t 12.0.0.1:80 -r 192.168.168.10:8080 -m",
        "-A -t [2001:db8::1]:80 -s rr",
        "-a -t [2001:db8::1]:80 -r [2001:db8:1::10]:8080 -m",
        "-A -u 12.0.0.1:53 -s rr",
        "-a -u 12.0.0.1:53 -r 192.168.168.10:5353 -m",
    ] {
        adm_ok(&dir, line);
    }
    let mut pipe = Pipeline::new(dir.clone(), Methods::TUN);
    let mut buf = PacketBuf::new(65536 + 10);
    let mut now = 1_000u64;

    // Establish the flows (a new connection may allocate its entry).
    let flows = [
        ("10.0.0.2:40000", "12.0.0.1:80", "192.168.168.10:8080"),
        (
            "[2001:db8::10]:40000",
            "[2001:db8::1]:80",
            "[2001:db8:1::10]:8080",
        ),
    ];
    for (c, v, r) in flows {
        for (src, dst, flags) in [(c, v, TCP_SYN), (r, c, TCP_SYN | TCP_ACK), (c, v, TCP_ACK)] {
            let o: &[u8] = if flags & TCP_SYN != 0 {
                &SYN_OPTIONS
            } else {
                &[]
            };
            buf.set(&tcp_packet(sa(src), sa(dst), flags, 1, 1, o, &[]));
            assert_eq!(pipe.handle(now, &mut buf, false), Verdict::Forward);
        }
    }
    let u = udp_packet(sa("10.0.0.2:5000"), sa("12.0.0.1:53"), b"first");
    buf.set(&u);
    assert_eq!(pipe.handle(now, &mut buf, false), Verdict::Forward);

    // Every frame is built before the measurement.
    let mut all = Vec::new();
    for (c, v, r) in flows {
        all.extend(frames(c, v, r));
    }
    let (uc, uv, ur) = (
        sa("10.0.0.2:5000"),
        sa("12.0.0.1:53"),
        sa("192.168.168.10:5353"),
    );
    for (src, dst) in [(uc, uv), (ur, uc)] {
        let p = udp_packet(src, dst, &[7u8; 512]);
        all.push((p.clone(), false));
        let mut q = p.clone();
        let h = to_partial(&mut q, 0);
        all.push((frame(&h, &q), true));
    }
    // Warm up once (lazy one-time initialisation is not per packet).
    for (f, vnet) in &all {
        buf.set(f);
        assert_eq!(pipe.handle(now, &mut buf, *vnet), Verdict::Forward);
    }

    // The measurement: single-threaded, this thread's allocations only.
    let mut verdicts_ok = true;
    let n = allocations_in(|| {
        for _ in 0..200 {
            now += 10;
            for (f, vnet) in &all {
                buf.set(f);
                verdicts_ok &= pipe.handle(now, &mut buf, *vnet) == Verdict::Forward;
            }
        }
    });
    assert!(
        verdicts_ok,
        "every measured packet must take the forwarding path"
    );
    assert_eq!(
        n, 0,
        "Pipeline::handle allocated {n} times on established flows"
    );
    assert_eq!(
        dir.conns.len(),
        3,
        "no new connection was made while measuring"
    );
}

/// The counter is live: an allocation inside the measured closure is seen
/// (so the zero above means something).
#[test]
fn the_counter_sees_allocations() {
    let n = allocations_in(|| {
        let v = std::hint::black_box(vec![1u8; 64]);
        drop(v);
        let s = std::hint::black_box(String::from("x")) + "y";
        drop(s);
    });
    assert!(n >= 2, "{n}");
}
