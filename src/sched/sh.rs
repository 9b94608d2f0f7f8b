//! sh: Source Hashing (spec §2.7, kernel `ip_vs_sh.c`).
//!
//! A 256-bucket table (`IP_VS_SH_TAB_BITS` = 8) maps `hash_32(port + addr, 8)`
//! of the client (source) address to a destination. The table is rebuilt on
//! every destination change by walking the list cyclically, each destination
//! taking `max(weight, 1)` consecutive buckets (so weight 0 keeps one bucket,
//! and a huge weight may take all of them).
//!
//! A bucket's destination is unusable when its weight is ≤ 0 or it is
//! OVERLOADed. Without `sh-fallback` that means "no destination"; with
//! `sh-fallback` (`SVC_F_SCHED1`) the kernel probes
//! `(roff + ihash) & 255` with `roff = (off + ihash) % 256`, i.e. bucket
//! `(2·ihash + off) mod 256`: the first probe is `2·ihash`, not `ihash + 1`.
//! We reproduce that quirk. `sh-port` (`SVC_F_SCHED2`) adds the client port
//! for TCP/UDP/SCTP. ICMP-embedded headers hash the other side (`hash_input`).

use std::sync::Arc;

use super::hash::{addr_fold, hash_32, hash_input, table_lookup};
use super::{DestChange, FlowInfo, SchedCtx, Scheduler};
use crate::service::{Dest, SVC_F_SCHED1};

/// Table size exponent (Kconfig `IP_VS_SH_TAB_BITS`, default 8).
pub const SH_TAB_BITS: u32 = 8;
const SH_TAB_SIZE: usize = 1 << SH_TAB_BITS;
const SH_TAB_MASK: u32 = SH_TAB_SIZE as u32 - 1;
/// Empty bucket marker.
const NONE: u32 = u32::MAX;

/// Source-hashing scheduler: the bucket table of list indices.
#[derive(Debug)]
pub struct Sh {
    buckets: Box<[u32; SH_TAB_SIZE]>,
}

impl Default for Sh {
    fn default() -> Self {
        Sh::new()
    }
}

/// The bucket of `(addr, port)` displaced by `offset` (`ip_vs_sh_hashkey`).
#[inline]
fn key(addr_port: u32, offset: u32) -> usize {
    (offset.wrapping_add(hash_32(addr_port, SH_TAB_BITS)) & SH_TAB_MASK) as usize
}

impl Sh {
    /// A scheduler with an empty table.
    pub fn new() -> Self {
        Sh {
            buckets: Box::new([NONE; SH_TAB_SIZE]),
        }
    }

    /// The list index in each bucket (`None` for an empty service), for tests and tools.
    pub fn buckets(&self) -> impl Iterator<Item = Option<usize>> + '_ {
        self.buckets
            .iter()
            .map(|&b| (b != NONE).then_some(b as usize))
    }

    fn reassign(&mut self, dests: &[Arc<Dest>]) {
        if dests.is_empty() {
            self.buckets.fill(NONE);
            return;
        }
        let (mut i, mut count) = (0usize, 0i32);
        for b in self.buckets.iter_mut() {
            *b = i as u32;
            count += 1;
            // Stay on this dest until it has `weight` buckets (at least one).
            if count >= dests[i].weight() {
                i = (i + 1) % dests.len();
                count = 0;
            }
        }
    }
}

impl Scheduler for Sh {
    fn name(&self) -> &'static str {
        "sh"
    }

    fn init_service(&mut self, dests: &[Arc<Dest>], _svc_flags: u32) {
        self.reassign(dests);
    }

    fn dests_changed(&mut self, dests: &[Arc<Dest>], _change: DestChange, _svc_flags: u32) {
        self.reassign(dests);
    }

    fn schedule(
        &mut self,
        dests: &[Arc<Dest>],
        flow: &FlowInfo,
        ctx: &mut SchedCtx,
    ) -> Option<usize> {
        let (addr, port) = hash_input(flow, ctx.svc_flags);
        let ap = (port as u32).wrapping_add(addr_fold(addr));
        let fallback = ctx.svc_flags & SVC_F_SCHED1 != 0;
        let buckets = &self.buckets;
        table_lookup(
            dests,
            SH_TAB_SIZE,
            fallback,
            |off| key(ap, off),
            |k| buckets[k] as usize,
        )
    }
}

#[cfg(test)]
mod test {
    use super::*;
    use crate::sched::testutil::*;
    use crate::service::{DEST_F_OVERLOAD, SVC_F_SCHED2};
    use std::net::{IpAddr, Ipv4Addr};
    use std::sync::atomic::Ordering::Relaxed;

    fn ip(a: u8, b: u8, c: u8, d: u8) -> IpAddr {
        IpAddr::V4(Ipv4Addr::new(a, b, c, d))
    }

    #[test]
    fn bucket_fill_follows_weights_cyclically() {
        // Added A(3), B(0), C(1) → L = C, B, A: buckets C, B, A, A, A, C, B, A, A, A, …
        let mut s = Sh::new();
        let l = build(
            &mut s,
            &[
                Dest::v4([10, 0, 0, 1], 80, 3),
                Dest::v4([10, 0, 0, 2], 80, 0),
                Dest::v4([10, 0, 0, 3], 80, 1),
            ],
        );
        let b: Vec<_> = s.buckets().map(|b| b.unwrap()).collect();
        assert_eq!(&b[..10], &[0, 1, 2, 2, 2, 0, 1, 2, 2, 2]);
        // 256 = 51 * 5 + 1: C 52, B 51, A 153.
        let count = |i| b.iter().filter(|&&x| x == i).count();
        assert_eq!((count(0), count(1), count(2)), (52, 51, 153));
        assert_eq!(l.len(), 3);
    }

    #[test]
    fn huge_weight_takes_every_bucket_and_empty_is_none() {
        let mut s = Sh::new();
        let l = build(
            &mut s,
            &[
                Dest::v4([10, 0, 0, 1], 80, 1),
                Dest::v4([10, 0, 0, 2], 80, 1000),
            ],
        );
        assert!(s.buckets().all(|b| b == Some(0)));
        s.init_service(&[], 0);
        assert!(s.buckets().all(|b| b.is_none()));
        assert_eq!(
            pick_at(&mut s, &[], &flow_from(ip(1, 2, 3, 4), 1), 0, 0),
            None
        );
        assert_eq!(l.len(), 2);
    }

    #[test]
    fn client_maps_to_hashed_bucket() {
        // 256 dests of weight 1 added in order → bucket b holds list index b.
        let ds: Vec<_> = (0..256)
            .map(|i| Dest::v4([10, 1, 0, i as u8], 80, 1))
            .collect();
        let mut s = Sh::new();
        let l = build(&mut s, &ds);
        // 10.0.0.2 = 0x0a000002; * 0x61C88647 mod 2^32 = 0x89910C8E → top byte 0x89.
        let f = flow_from(ip(10, 0, 0, 2), 5555);
        assert_eq!(pick_at(&mut s, &l, &f, 0, 0), Some(0x89));
        // sh-port: hash (5555 + 0x0a000002) = 0x0a0015b5; * golden = 0x5BCAC333.
        assert_eq!(pick_at(&mut s, &l, &f, SVC_F_SCHED2, 0), Some(0x5B));
        // Non-L4 protocols hash port 0 even with sh-port.
        let icmp = FlowInfo { proto: 1, ..f };
        assert_eq!(pick_at(&mut s, &l, &icmp, SVC_F_SCHED2, 0), Some(0x89));
        // Stable across calls and for a fresh instance over the same list.
        let mut s2 = Sh::new();
        s2.init_service(&l, 0);
        assert_eq!(pick_at(&mut s2, &l, &f, 0, 0), Some(0x89));
    }

    #[test]
    fn unavailable_without_and_with_fallback() {
        let ds: Vec<_> = (0..256)
            .map(|i| Dest::v4([10, 1, 0, i as u8], 80, 1))
            .collect();
        let mut s = Sh::new();
        let l = build(&mut s, &ds);
        let f = flow_from(ip(10, 0, 0, 2), 0); // ihash 0x89 = 137
        l[137].weight.store(0, Relaxed);
        s.dests_changed(&l, DestChange::Edited(137), 0); // still 1 bucket each
        assert_eq!(pick_at(&mut s, &l, &f, 0, 0), None);
        // Fallback: first probe is bucket (2 * 137) mod 256 = 18.
        assert_eq!(pick_at(&mut s, &l, &f, SVC_F_SCHED1, 0), Some(18));
        l[18].flags.fetch_or(DEST_F_OVERLOAD, Relaxed);
        assert_eq!(pick_at(&mut s, &l, &f, SVC_F_SCHED1, 0), Some(19));
        // All unavailable → none after 256 probes.
        for d in &l {
            d.flags.fetch_or(DEST_F_OVERLOAD, Relaxed);
        }
        assert_eq!(pick_at(&mut s, &l, &f, SVC_F_SCHED1, 0), None);
    }

    #[test]
    fn ipv6_source_is_folded() {
        let ds: Vec<_> = (0..256)
            .map(|i| Dest::v4([10, 1, 0, i as u8], 80, 1))
            .collect();
        let mut s = Sh::new();
        let l = build(&mut s, &ds);
        // 2001:db8::a00:2 folds to 0x20010db8 ^ 0x0a000002 = 0x2a010dba;
        // * 0x61C88647 mod 2^32 = 0x66CA2A96 → bucket 0x66.
        let a: IpAddr = "2001:db8::a00:2".parse().unwrap();
        assert_eq!(pick_at(&mut s, &l, &flow_from(a, 0), 0, 0), Some(0x66));
    }
}
