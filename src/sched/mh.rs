//! mh: Maglev Hashing (spec §2.11, kernel `ip_vs_mh.c`; Eisenbud et al.,
//! NSDI '16, §3.4).
//!
//! A lookup table of prime size `M` = 4093 (Kconfig `IP_VS_MH_TAB_INDEX` 12)
//! maps `hsiphash(client addr + port) % M` to a destination. Each destination
//! has a permutation of the slots given by `offset` and `skip`, both hsiphash
//! values of its own address and port under two fixed keys. The table is
//! filled round by round: in list order each destination claims its next free
//! preferred slot `turns` times, until all `M` slots are taken.
//! `turns = (last_weight / gcd) >> rshift` (at least 1 if `last_weight` ≠ 0),
//! where `rshift` keeps `max / gcd` within `IP_VS_MH_TAB_BITS` = 6 bits. It is
//! `last_weight`, not `weight`: a quiesced destination keeps its slots and is
//! merely unavailable (weight ≤ 0 or OVERLOAD), while one added with weight 0
//! gets no slots at all. The table is rebuilt on every destination change.
//!
//! `mh-fallback` (`SVC_F_SCHED1`) re-hashes with offsets `(off + h) % M` until
//! an available destination appears; an empty slot ends the search.
//! `mh-port` (`SVC_F_SCHED2`) adds the client port for TCP/UDP/SCTP.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;

use super::hash::{addr_fold, hash_input, hsiphash_u32, table_lookup, SipKey};
use super::{DestChange, FlowInfo, SchedCtx, Scheduler};
use crate::service::{Dest, SVC_F_SCHED1};

/// Table size: `primes[IP_VS_MH_TAB_INDEX − 8]` with the default index 12.
pub const MH_TAB_SIZE: usize = 4093;
/// `IP_VS_MH_TAB_INDEX / 2`: how many bits of `max_weight / gcd` become turns.
pub const MH_TAB_BITS: u32 = 6;
/// Key for lookups and destination offsets (`hash1`).
const HASH1: SipKey = SipKey(2_654_435_761, 2_654_435_761);
/// Key for destination skips (`hash2`).
const HASH2: SipKey = SipKey(2_654_446_892, 2_654_446_892);
/// Empty slot marker.
const NONE: u32 = u32::MAX;

/// `ip_vs_mh_hashkey`: hsiphash of `offset + port + addr` (mod 2^32).
#[inline]
fn mh_key(addr: IpAddr, port: u16, key: SipKey, offset: u32) -> u32 {
    let v = offset
        .wrapping_add(port as u32)
        .wrapping_add(addr_fold(addr));
    hsiphash_u32(v, key)
}

/// A destination's place in the permutation while populating.
#[derive(Clone, Copy, Debug)]
struct Setup {
    skip: usize,
    perm: usize,
    turns: i32,
}

/// Maglev-hashing scheduler: the lookup table of list indices.
#[derive(Debug)]
pub struct Mh {
    table: Vec<u32>,
    /// The list the table's indices refer to (only used to carry the table over
    /// when a rebuild is refused).
    built: Vec<Arc<Dest>>,
}

impl Default for Mh {
    fn default() -> Self {
        Mh::new()
    }
}

impl Mh {
    /// A scheduler with an empty table.
    pub fn new() -> Self {
        Mh {
            table: vec![NONE; MH_TAB_SIZE],
            built: Vec::new(),
        }
    }

    /// The list index in each slot (`None` when the table is empty).
    pub fn slots(&self) -> impl Iterator<Item = Option<usize>> + '_ {
        self.table
            .iter()
            .map(|&b| (b != NONE).then_some(b as usize))
    }

    /// `(offset, skip)` of a destination's permutation.
    fn offset_skip(d: &Dest) -> (usize, usize) {
        let offset = mh_key(d.addr, d.port, HASH1, 0) as usize % MH_TAB_SIZE;
        let skip = mh_key(d.addr, d.port, HASH2, 0) as usize % (MH_TAB_SIZE - 1) + 1;
        (offset, skip)
    }

    /// `(gcd, rshift)` over the positive `last_weight`s; gcd 0 when there are none.
    fn gcd_shift(dests: &[Arc<Dest>]) -> (i32, u32) {
        let g = super::weight_gcd(dests, Dest::last_weight);
        if g < 1 {
            return (0, 0);
        }
        let max = dests.iter().map(|d| d.last_weight()).fold(0, i32::max);
        let bits = 32 - ((max / g) as u32).leading_zeros(); // fls()
        (g, bits.saturating_sub(MH_TAB_BITS))
    }

    fn reassign(&mut self, dests: &[Arc<Dest>]) {
        if dests.len() > MH_TAB_SIZE {
            // The kernel refuses (-EINVAL) and keeps the old table; our table
            // holds list indices, so re-point them at the new list.
            self.carry_over(dests);
            return;
        }
        self.built = dests.to_vec();
        let (g, rshift) = Self::gcd_shift(dests);
        if g < 1 {
            self.table.fill(NONE);
            return;
        }
        let mut setup: Vec<Setup> = dests
            .iter()
            .map(|d| {
                let (offset, skip) = Self::offset_skip(d);
                let lw = d.last_weight();
                let t = (lw / g) >> rshift;
                Setup {
                    skip,
                    perm: offset,
                    turns: if t != 0 { t } else { (lw != 0) as i32 },
                }
            })
            .collect();
        let mut filled = vec![false; MH_TAB_SIZE];
        let (mut n, mut dt_count) = (0, 0);
        // Rounds over the list; each dest takes `turns` slots per round
        // (dt_count carries over between steps, exactly as the kernel counts).
        while n < MH_TAB_SIZE {
            let mut i = 0;
            while i < setup.len() {
                let ds = &mut setup[i];
                if ds.turns < 1 {
                    i += 1;
                    continue;
                }
                while filled[ds.perm] {
                    ds.perm += ds.skip;
                    if ds.perm >= MH_TAB_SIZE {
                        ds.perm -= MH_TAB_SIZE;
                    }
                }
                filled[ds.perm] = true;
                self.table[ds.perm] = i as u32;
                n += 1;
                if n == MH_TAB_SIZE {
                    return;
                }
                dt_count += 1;
                if dt_count >= ds.turns {
                    dt_count = 0;
                    i += 1;
                }
            }
        }
    }

    fn carry_over(&mut self, dests: &[Arc<Dest>]) {
        let new_index: HashMap<usize, u32> = dests
            .iter()
            .enumerate()
            .map(|(i, d)| (Arc::as_ptr(d) as usize, i as u32))
            .collect();
        for slot in self.table.iter_mut().filter(|s| **s != NONE) {
            let old = &self.built[*slot as usize];
            // A dest that left the list would be a trashed dest in the kernel; we
            // cannot return it as an index, so its slots become empty.
            *slot = *new_index.get(&(Arc::as_ptr(old) as usize)).unwrap_or(&NONE);
        }
        self.built = dests.to_vec();
    }

    /// The table slot `(addr, port)` hashes to with `offset`.
    #[inline]
    fn slot(addr: IpAddr, port: u16, offset: u32) -> usize {
        mh_key(addr, port, HASH1, offset) as usize % MH_TAB_SIZE
    }
}

impl Scheduler for Mh {
    fn name(&self) -> &'static str {
        "mh"
    }

    fn init_service(&mut self, dests: &[Arc<Dest>], _svc_flags: u32) {
        self.table.fill(NONE);
        self.built.clear();
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
        let fallback = ctx.svc_flags & SVC_F_SCHED1 != 0;
        let table = &self.table;
        table_lookup(
            dests,
            MH_TAB_SIZE,
            fallback,
            |off| Self::slot(addr, port, off),
            |k| table[k] as usize,
        )
    }
}

#[cfg(test)]
mod test {
    use super::*;
    use crate::sched::testutil::*;
    use crate::service::DEST_F_OVERLOAD;
    use std::net::Ipv4Addr;
    use std::sync::atomic::Ordering::Relaxed;

    fn ip(a: u8, b: u8, c: u8, d: u8) -> IpAddr {
        IpAddr::V4(Ipv4Addr::new(a, b, c, d))
    }

    /// Spec §2.11 reference: .10 then .11 added, both :80 weight 1.
    fn reference() -> (Mh, Vec<Arc<Dest>>) {
        let mut s = Mh::new();
        let l = build(
            &mut s,
            &[
                Dest::v4([192, 168, 168, 10], 80, 1),
                Dest::v4([192, 168, 168, 11], 80, 1),
            ],
        );
        (s, l)
    }

    #[test]
    fn reference_offsets_and_skips() {
        let d10 = Dest::v4([192, 168, 168, 10], 80, 1);
        let d11 = Dest::v4([192, 168, 168, 11], 80, 1);
        assert_eq!(Mh::offset_skip(&d10), (4060, 2159));
        assert_eq!(Mh::offset_skip(&d11), (3055, 617));
    }

    #[test]
    fn reference_split_and_first_slots() {
        let (s, l) = reference();
        assert_eq!(l[0].addr, ip(192, 168, 168, 11));
        let count = |i| s.slots().filter(|x| *x == Some(i)).count();
        assert_eq!((count(0), count(1)), (2047, 2046));
        // Each dest's first claim is its own offset: .11 first (list head).
        assert_eq!(s.table[3055], 0);
        assert_eq!(s.table[4060], 1);
    }

    #[test]
    fn reference_client_slots() {
        let (mut s, l) = reference();
        assert_eq!(Mh::slot(ip(10, 0, 0, 2), 0, 0), 1884);
        assert_eq!(Mh::slot(ip(10, 0, 0, 3), 0, 0), 3741);
        assert_eq!(Mh::slot(ip(198, 51, 100, 7), 0, 0), 924);
        let who = |s: &mut Mh, a| l[pick_at(s, &l, &flow_from(a, 999), 0, 0).unwrap()].addr;
        assert_eq!(who(&mut s, ip(10, 0, 0, 2)), ip(192, 168, 168, 11));
        assert_eq!(who(&mut s, ip(10, 0, 0, 3)), ip(192, 168, 168, 10));
        assert_eq!(who(&mut s, ip(198, 51, 100, 7)), ip(192, 168, 168, 10));
    }

    #[test]
    fn turns_follow_last_weight_with_rshift() {
        // last weights 3 and 1 → 3:1 turns per round, gcd 1, rshift 0.
        let mut s = Mh::new();
        let l = build(
            &mut s,
            &[
                Dest::v4([192, 168, 168, 10], 80, 1),
                Dest::v4([192, 168, 168, 11], 80, 3),
            ],
        );
        let count = |s: &Mh, i| s.slots().filter(|x| *x == Some(i)).count();
        // Rounds of 4 placements (3 + 1): 1023 full rounds = 4092, then one more for .11.
        assert_eq!((count(&s, 0), count(&s, 1)), (3070, 1023));
        // Weights 1000 and 10 (gcd 10): 100 / 1 → fls(100) = 7 bits → rshift 1 → turns 50 and 1
        // (0 after the shift, but a non-zero last_weight keeps one turn).
        l[0].last_weight.store(1000, Relaxed);
        l[1].last_weight.store(10, Relaxed);
        assert_eq!(Mh::gcd_shift(&l), (10, 1));
        s.dests_changed(&l, DestChange::Edited(0), 0);
        // 4093 = 80 * 51 + 13 → 80 full rounds, then 13 more for the head.
        assert_eq!((count(&s, 0), count(&s, 1)), (80 * 50 + 13, 80));
    }

    #[test]
    fn weight0_added_gets_no_slots_but_quiesced_keeps_them() {
        let mut s = Mh::new();
        let l = build(
            &mut s,
            &[
                Dest::v4([192, 168, 168, 10], 80, 1),
                Dest::v4([192, 168, 168, 11], 80, 0),
            ],
        );
        assert!(s.slots().all(|x| x == Some(1)));
        // Quiesce .10 with -e (last_weight stays 1): slots kept, lookups fail.
        l[1].weight.store(0, Relaxed);
        s.dests_changed(&l, DestChange::Edited(1), 0);
        assert!(s.slots().all(|x| x == Some(1)));
        assert_eq!(
            pick_at(&mut s, &l, &flow_from(ip(10, 0, 0, 2), 0), 0, 0),
            None
        );
        // No last_weight anywhere → empty table.
        l[1].last_weight.store(0, Relaxed);
        s.dests_changed(&l, DestChange::Edited(1), 0);
        assert!(s.slots().all(|x| x.is_none()));
    }

    #[test]
    fn fallback_rehashes_with_offsets() {
        // .10, .11, .12 added → L = .12, .11, .10; 1365/1364/1364 slots.
        let mut s = Mh::new();
        let l = build(
            &mut s,
            &[
                Dest::v4([192, 168, 168, 10], 80, 1),
                Dest::v4([192, 168, 168, 11], 80, 1),
                Dest::v4([192, 168, 168, 12], 80, 1),
            ],
        );
        let count = |i| s.slots().filter(|x| *x == Some(i)).count();
        assert_eq!((count(0), count(1), count(2)), (1365, 1364, 1364));
        // 10.0.0.2 → slot 1884 → .12; the fallback probes slot(c, 1884 + off):
        // off 0 → 2088 (.10), off 1 → 2349 (.11), off 2 → 78 (.12).
        let f = flow_from(ip(10, 0, 0, 2), 0);
        assert_eq!(pick_at(&mut s, &l, &f, SVC_F_SCHED1, 0), Some(0));
        l[0].flags.fetch_or(DEST_F_OVERLOAD, Relaxed);
        assert_eq!(pick_at(&mut s, &l, &f, 0, 0), None);
        assert_eq!(pick_at(&mut s, &l, &f, SVC_F_SCHED1, 0), Some(2));
        l[2].weight.store(0, Relaxed);
        assert_eq!(pick_at(&mut s, &l, &f, SVC_F_SCHED1, 0), Some(1));
        l[1].flags.fetch_or(DEST_F_OVERLOAD, Relaxed);
        assert_eq!(pick_at(&mut s, &l, &f, SVC_F_SCHED1, 0), None);
    }

    #[test]
    fn mh_port_hashes_client_port() {
        let c = ip(10, 0, 0, 2);
        // mh-port: v = port + addr, so port 1 on 10.0.0.2 hashes like 10.0.0.3 port 0.
        assert_eq!(Mh::slot(c, 1, 0), Mh::slot(ip(10, 0, 0, 3), 0, 0));
        let (mut s, l) = reference();
        let f = flow_from(c, 1);
        let flags = crate::service::SVC_F_SCHED2;
        assert_eq!(
            l[pick_at(&mut s, &l, &f, flags, 0).unwrap()].addr,
            ip(192, 168, 168, 10)
        );
        assert_eq!(
            l[pick_at(&mut s, &l, &f, 0, 0).unwrap()].addr,
            ip(192, 168, 168, 11)
        );
    }

    #[test]
    fn more_dests_than_slots_keeps_old_table() {
        let ds: Vec<_> = (0..MH_TAB_SIZE as u32)
            .map(|i| Dest::v4((0x0a00_0000 + i).to_be_bytes(), 80, 1))
            .collect();
        let mut s = Mh::new();
        let mut l: Vec<_> = ds.iter().rev().cloned().collect();
        s.init_service(&l, 0);
        let before: Vec<_> = s.slots().map(|x| Arc::as_ptr(&l[x.unwrap()])).collect();
        l.insert(0, Dest::v4([11, 0, 0, 1], 80, 1));
        s.dests_changed(&l, DestChange::Added(0), 0);
        let after: Vec<_> = s.slots().map(|x| Arc::as_ptr(&l[x.unwrap()])).collect();
        assert_eq!(before, after);
    }
}
