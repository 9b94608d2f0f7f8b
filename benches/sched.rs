//! Nanoseconds per scheduling decision for every scheduler at 2, 16 and 256
//! destinations, with client (and, for lblc/lblcr/dh, destination) addresses
//! varying across 4096 flows. Kept short: the whole run takes about a minute.

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use tunvs::sched::{by_name, names, DestChange, FlowInfo, SchedCtx};
use tunvs::service::Dest;
use tunvs::util::Rng;

const FLOWS: usize = 4096;

/// `n` destinations added one by one (weights 1..=4, some connections).
fn dests(n: usize) -> Vec<Arc<Dest>> {
    let mut l = Vec::with_capacity(n);
    for i in 0..n {
        let d = Dest::v4([10, 1, (i >> 8) as u8, i as u8], 80, 1 + (i % 4) as i32);
        d.activeconns.store((i * 7 % 13) as u32, Relaxed);
        d.inactconns.store((i * 31 % 97) as u32, Relaxed);
        l.insert(0, d);
    }
    l
}

fn flows() -> Vec<FlowInfo> {
    let mut r = Rng::seeded(3);
    (0..FLOWS)
        .map(|i| FlowInfo {
            proto: 6,
            saddr: IpAddr::V4(Ipv4Addr::from(r.next_u32())),
            sport: 1024 + (i % 60_000) as u16,
            // 1024 distinct destination addresses: the lblc/lblcr cache mostly hits.
            daddr: IpAddr::V4(Ipv4Addr::from(0xc633_6400 + (i % 1024) as u32)),
            dport: 80,
            inverse: false,
        })
        .collect()
}

fn bench(c: &mut Criterion) {
    let flows = flows();
    let mut g = c.benchmark_group("sched");
    g.sample_size(10)
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(1));
    for name in names() {
        for n in [2usize, 16, 256] {
            let list = dests(n);
            let mut s = by_name(name).unwrap();
            // Bind as the daemon does: empty service, then one add per dest.
            s.init_service(&[], 0);
            for k in (0..n).rev() {
                s.dests_changed(&list[k..], DestChange::Added(0), 0);
            }
            let mut rng = Rng::seeded(11);
            // Every scheduler has a usable destination here: time picks, not misses.
            let mut ctx = SchedCtx {
                now_ms: 0,
                rng: &mut rng,
                svc_flags: 0,
            };
            assert!(
                s.schedule(&list, &flows[0], &mut ctx).is_some(),
                "{name}/{n}"
            );
            let mut i = 0usize;
            g.bench_with_input(BenchmarkId::new(name, n), &list, |b, list| {
                b.iter(|| {
                    let f = &flows[i % FLOWS];
                    i = i.wrapping_add(1);
                    let mut ctx = SchedCtx {
                        now_ms: (i >> 10) as u64,
                        rng: &mut rng,
                        svc_flags: 0,
                    };
                    black_box(s.schedule(list, black_box(f), &mut ctx))
                })
            });
        }
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
