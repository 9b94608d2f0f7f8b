//! Scheduler properties over many picks (spec §2): weighted shares, minimal
//! disruption of mh, restart stability of the hashing schedulers, and the
//! weight-0 / OVERLOAD invariants of every scheduler under random load.

use std::collections::VecDeque;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

use tunvs::sched::{by_name, names, DestChange, FlowInfo, SchedCtx, Scheduler};
use tunvs::service::{Dest, DEST_F_OVERLOAD, SVC_F_SCHED2};
use tunvs::util::Rng;

fn client(i: u32) -> IpAddr {
    IpAddr::V4(Ipv4Addr::from(
        0x0a00_0000u32.wrapping_add(i.wrapping_mul(2_654_435_761)),
    ))
}

fn flow(saddr: IpAddr, sport: u16, daddr: IpAddr) -> FlowInfo {
    FlowInfo {
        proto: 6,
        saddr,
        sport,
        daddr,
        dport: 80,
        inverse: false,
    }
}

/// A scheduler bound to an empty service, then `weights` added one by one at the
/// head (ipvsadm order). Returns the list, newest first.
fn service(name: &str, weights: &[i32]) -> (Box<dyn Scheduler>, Vec<Arc<Dest>>) {
    let mut s = by_name(name).unwrap();
    let mut l: Vec<Arc<Dest>> = Vec::new();
    s.init_service(&l, 0);
    for (i, &w) in weights.iter().enumerate() {
        let d = Dest::v4([172, 16, (i >> 8) as u8, i as u8], 8080, w);
        l.insert(0, d);
        s.dests_changed(&l, DestChange::Added(0), 0);
    }
    (s, l)
}

fn assert_shares(counts: &[usize], weights: &[f64], tol: f64) {
    let n: usize = counts.iter().sum();
    let wsum: f64 = weights.iter().sum();
    for (c, w) in counts.iter().zip(weights) {
        let (got, want) = (*c as f64 / n as f64, w / wsum);
        assert!(
            (got - want).abs() <= tol,
            "share {got:.4} want {want:.4} (counts {counts:?})"
        );
    }
}

#[test]
fn registry_knows_every_name() {
    let all: Vec<&str> = names().collect();
    assert_eq!(
        all,
        [
            "rr", "wrr", "lc", "wlc", "lblc", "lblcr", "dh", "sh", "sed", "nq", "fo", "ovf", "mh",
            "twos"
        ]
    );
    for n in &all {
        assert_eq!(by_name(n).unwrap().name(), *n);
    }
    assert!(by_name("none").is_none());
    assert!(by_name("WLC").is_none());
}

#[test]
fn wrr_shares_match_weights() {
    // Added with weights 5, 3, 2, 1 → list 1, 2, 3, 5.
    let (mut s, l) = service("wrr", &[5, 3, 2, 1]);
    let mut rng = Rng::seeded(1);
    let mut ctx = SchedCtx {
        now_ms: 0,
        rng: &mut rng,
        svc_flags: 0,
    };
    let f = flow(client(1), 1, client(2));
    let mut counts = vec![0; l.len()];
    for _ in 0..11 * 1000 {
        counts[s.schedule(&l, &f, &mut ctx).unwrap()] += 1;
    }
    // Whole periods after the first partial pass: off by at most one pass.
    assert_shares(&counts, &[1.0, 2.0, 3.0, 5.0], 0.001);
}

#[test]
fn wlc_with_churn_shares_follow_weights() {
    // Each pick opens a connection; a random open connection closes whenever more
    // than 600 are open. wlc keeps active/weight level, so picks follow weights.
    let weights = [1, 2, 3, 4];
    let (mut s, l) = service("wlc", &weights);
    let mut rng = Rng::seeded(99);
    let mut churn = Rng::seeded(7);
    let f = flow(client(1), 1, client(2));
    let mut open: VecDeque<usize> = VecDeque::new();
    let mut counts = vec![0; l.len()];
    for step in 0..100_000 {
        let mut ctx = SchedCtx {
            now_ms: step,
            rng: &mut rng,
            svc_flags: 0,
        };
        let i = s.schedule(&l, &f, &mut ctx).unwrap();
        l[i].activeconns.fetch_add(1, Relaxed);
        open.push_back(i);
        if open.len() > 600 {
            let k = churn.below(open.len() as u32) as usize;
            let j = open.swap_remove_back(k).unwrap();
            l[j].activeconns.fetch_sub(1, Relaxed);
        }
        if step >= 10_000 {
            counts[i] += 1;
        }
    }
    // List order is newest first: weights 4, 3, 2, 1.
    assert_shares(&counts, &[4.0, 3.0, 2.0, 1.0], 0.01);
}

#[test]
fn sh_buckets_follow_weights() {
    let (mut s, l) = service("sh", &[1, 2, 5]);
    let mut rng = Rng::seeded(1);
    let mut ctx = SchedCtx {
        now_ms: 0,
        rng: &mut rng,
        svc_flags: SVC_F_SCHED2,
    };
    let mut counts = vec![0; l.len()];
    for i in 0..50_000u32 {
        let f = flow(client(i), (i % 60_000) as u16 + 1024, client(0));
        counts[s.schedule(&l, &f, &mut ctx).unwrap()] += 1;
    }
    // 256 buckets in runs of 5, 2, 1: 160 + 64 + 32.
    assert_shares(&counts, &[160.0, 64.0, 32.0], 0.02);
}

/// Picks of `s` for `n` clients (port 0 hashing, varying source and destination).
fn picks(s: &mut dyn Scheduler, l: &[Arc<Dest>], n: u32) -> Vec<Option<IpAddr>> {
    let mut rng = Rng::seeded(5);
    let mut ctx = SchedCtx {
        now_ms: 0,
        rng: &mut rng,
        svc_flags: 0,
    };
    (0..n)
        .map(|i| {
            let f = flow(client(i), 40_000, client(i ^ 0x5555));
            s.schedule(l, &f, &mut ctx).map(|k| l[k].addr)
        })
        .collect()
}

#[test]
fn mh_removal_moves_about_one_nth() {
    let n_dests = 10;
    let (mut s, mut l) = service("mh", &vec![1; n_dests]);
    let n = 20_000;
    let before = picks(s.as_mut(), &l, n);
    let victim = l[3].addr;
    l.remove(3);
    s.dests_changed(&l, DestChange::Removed(3), 0);
    let after = picks(s.as_mut(), &l, n);
    let (mut moved, mut kept_elsewhere, mut others) = (0, 0, 0);
    for (b, a) in before.iter().zip(&after) {
        let (b, a) = (b.unwrap(), a.unwrap());
        if b == victim {
            assert_ne!(a, victim);
            moved += 1;
        } else {
            others += 1;
            if a == b {
                kept_elsewhere += 1;
            }
        }
    }
    let moved_share = moved as f64 / n as f64;
    assert!((0.08..0.12).contains(&moved_share), "moved {moved_share}");
    // Maglev is not perfectly minimal, but almost every other flow stays.
    let kept = kept_elsewhere as f64 / others as f64;
    assert!(kept > 0.97, "kept {kept}");
}

#[test]
fn hashing_schedulers_are_restart_stable() {
    for name in ["sh", "dh", "mh"] {
        let (mut built, l) = service(name, &[3, 1, 4, 1, 5, 9, 2, 6]);
        // A fresh instance bound directly to the final list (daemon restart).
        let mut fresh = by_name(name).unwrap();
        fresh.init_service(&l, 0);
        let a = picks(built.as_mut(), &l, 5000);
        let b = picks(fresh.as_mut(), &l, 5000);
        assert_eq!(a, b, "{name}");
        assert!(a.iter().all(Option::is_some));
    }
}

#[test]
fn random_load_respects_weight0_and_overload() {
    // Random lists, weights (some 0), OVERLOAD flags and connection counts.
    let mut r = Rng::seeded(2024);
    for round in 0..300 {
        let n = 1 + r.below(12) as usize;
        let l: Vec<Arc<Dest>> = (0..n)
            .map(|i| {
                let d = Dest::v4([192, 0, 2, i as u8], 80, r.below(4) as i32);
                if r.below(4) == 0 {
                    d.flags.fetch_or(DEST_F_OVERLOAD, Relaxed);
                }
                d.activeconns.store(r.below(8), Relaxed);
                d.inactconns.store(r.below(300), Relaxed);
                d
            })
            .collect();
        let any_ok = l.iter().any(|d| d.weight() > 0 && !d.is_overloaded());
        for name in names() {
            let mut s = by_name(name).unwrap();
            s.init_service(&l, 0);
            for k in 0..20u32 {
                let f = flow(client(k + round * 100), k as u16, client(k % 3));
                let mut ctx = SchedCtx {
                    now_ms: k as u64,
                    rng: &mut r,
                    svc_flags: 0,
                };
                let got = s.schedule(&l, &f, &mut ctx);
                if let Some(i) = got {
                    let d = &l[i];
                    assert!(d.weight() > 0, "{name} picked weight 0");
                    // lblc's cache hit ignores OVERLOAD (its own overload rule
                    // applies); every fresh pick honours it.
                    if name != "lblc" {
                        assert!(!d.is_overloaded(), "{name} picked an OVERLOADed dest");
                    }
                    if name == "ovf" {
                        assert!(d.active() as i32 <= d.weight());
                    }
                } else if !["sh", "dh", "mh", "ovf"].contains(&name) {
                    // Work-conserving schedulers only fail when nothing is usable.
                    assert!(!any_ok, "{name} returned none with a usable dest");
                }
            }
        }
    }
}
