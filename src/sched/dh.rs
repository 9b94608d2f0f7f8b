//! dh: Destination Hashing (spec §2.8, kernel `ip_vs_dh.c`).
//!
//! A 256-bucket table (`IP_VS_DH_TAB_BITS` = 8) keyed by `hash_32(daddr, 8)` of
//! the packet's *destination* address (no port; IPv6 folded; like the kernel,
//! the address is not swapped for ICMP-embedded headers). The table is
//! rebuilt on every destination change with one bucket per destination,
//! walking the list cyclically; weights only matter as "> 0". The bucket's
//! destination is returned unless it is not AVAILABLE, has weight ≤ 0 or is
//! OVERLOADed, in which case there is no destination (no fallback).

use std::sync::Arc;

use super::hash::{addr_fold, hash_32};
use super::{DestChange, FlowInfo, SchedCtx, Scheduler};
use crate::service::Dest;

/// Table size exponent (Kconfig `IP_VS_DH_TAB_BITS`, default 8).
pub const DH_TAB_BITS: u32 = 8;
const DH_TAB_SIZE: usize = 1 << DH_TAB_BITS;
/// Empty bucket marker.
const NONE: u32 = u32::MAX;

/// Destination-hashing scheduler: the bucket table of list indices.
#[derive(Debug)]
pub struct Dh {
    buckets: Box<[u32; DH_TAB_SIZE]>,
}

impl Default for Dh {
    fn default() -> Self {
        Dh::new()
    }
}

impl Dh {
    /// A scheduler with an empty table.
    pub fn new() -> Self {
        Dh {
            buckets: Box::new([NONE; DH_TAB_SIZE]),
        }
    }

    /// The list index in each bucket (`None` for an empty service), for tests and tools.
    pub fn buckets(&self) -> impl Iterator<Item = Option<usize>> + '_ {
        self.buckets
            .iter()
            .map(|&b| (b != NONE).then_some(b as usize))
    }

    fn reassign(&mut self, dests: &[Arc<Dest>]) {
        let n = dests.len();
        for (b, slot) in self.buckets.iter_mut().enumerate() {
            *slot = if n == 0 { NONE } else { (b % n) as u32 };
        }
    }
}

impl Scheduler for Dh {
    fn name(&self) -> &'static str {
        "dh"
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
        _ctx: &mut SchedCtx,
    ) -> Option<usize> {
        let b = self.buckets[hash_32(addr_fold(flow.daddr), DH_TAB_BITS) as usize];
        let d = dests.get(b as usize)?;
        (d.is_available() && d.is_schedulable()).then_some(b as usize)
    }
}

#[cfg(test)]
mod test {
    use super::*;
    use crate::sched::testutil::*;
    use crate::service::{DEST_F_AVAILABLE, DEST_F_OVERLOAD};
    use std::net::{IpAddr, Ipv4Addr};
    use std::sync::atomic::Ordering::Relaxed;

    fn ip(a: u8, b: u8, c: u8, d: u8) -> IpAddr {
        IpAddr::V4(Ipv4Addr::new(a, b, c, d))
    }

    #[test]
    fn one_bucket_per_dest_ignoring_weight() {
        let mut s = Dh::new();
        let l = build(
            &mut s,
            &[
                Dest::v4([10, 0, 0, 1], 80, 5),
                Dest::v4([10, 0, 0, 2], 80, 0),
                Dest::v4([10, 0, 0, 3], 80, 1),
            ],
        );
        let b: Vec<_> = s.buckets().map(|b| b.unwrap()).collect();
        assert_eq!(&b[..7], &[0, 1, 2, 0, 1, 2, 0]);
        assert_eq!(b[255], 0); // 255 = 3 * 85
        assert_eq!(l.len(), 3);
    }

    #[test]
    fn keyed_by_destination_address_only() {
        let ds: Vec<_> = (0..256)
            .map(|i| Dest::v4([10, 1, 0, i as u8], 80, 1))
            .collect();
        let mut s = Dh::new();
        let l = build(&mut s, &ds);
        // 10.0.0.2 * 0x61C88647 mod 2^32 = 0x89910C8E → bucket 0x89.
        let f = flow_to(ip(10, 0, 0, 2));
        assert_eq!(pick_at(&mut s, &l, &f, 0, 0), Some(0x89));
        // Source address and ports don't matter.
        let f2 = FlowInfo {
            saddr: ip(172, 16, 5, 5),
            sport: 9,
            ..f
        };
        assert_eq!(pick_at(&mut s, &l, &f2, 0, 0), Some(0x89));
        // A fresh instance agrees (restart stability).
        let mut s2 = Dh::new();
        s2.init_service(&l, 0);
        assert_eq!(pick_at(&mut s2, &l, &f, 0, 0), Some(0x89));
    }

    #[test]
    fn unavailable_weight0_overload_give_none() {
        let mut s = Dh::new();
        let l = build(&mut s, &[Dest::v4([10, 0, 0, 1], 80, 1)]);
        let f = flow_to(ip(10, 0, 0, 2));
        assert_eq!(pick_at(&mut s, &l, &f, 0, 0), Some(0));
        l[0].flags.fetch_or(DEST_F_OVERLOAD, Relaxed);
        assert_eq!(pick_at(&mut s, &l, &f, 0, 0), None);
        l[0].flags.fetch_and(!DEST_F_OVERLOAD, Relaxed);
        l[0].weight.store(0, Relaxed);
        assert_eq!(pick_at(&mut s, &l, &f, 0, 0), None);
        l[0].weight.store(1, Relaxed);
        l[0].flags.fetch_and(!DEST_F_AVAILABLE, Relaxed);
        assert_eq!(pick_at(&mut s, &l, &f, 0, 0), None);
        s.init_service(&[], 0);
        assert_eq!(pick_at(&mut s, &[], &f, 0, 0), None);
    }
}
