//! lblcr: Locality-Based Least-Connection with Replication (spec §2.10,
//! kernel `ip_vs_lblcr.c`).
//!
//! Like lblc, but a destination address maps to a *set* of destinations (newest
//! first). A lookup takes the weighted-least-loaded usable member (`set_min`:
//! not OVERLOADed, weight > 0, AVAILABLE). If the set has more than one member
//! and has not changed for `lblcr_expiration` (24 h), the weighted-*most*-loaded
//! member (`set_max`) is dropped. If `set_min` found nothing or its pick is
//! lblc-overloaded, a wlc pick over the whole list is made and added to the set
//! (replication). A miss creates a one-member set. Entries expire through the
//! shared GC in `locality`.

use std::collections::VecDeque;
use std::sync::Arc;

use super::locality::{find_dest, lblc_overloaded, Table, DEFAULT_EXPIRATION_MS};
use super::wlc::{wfactor, wlc_pick};
use super::{FlowInfo, SchedCtx, Scheduler};
use crate::service::Dest;

/// A destination set (`ip_vs_dest_set`): members newest first, with list-index hints.
#[derive(Debug)]
struct DestSet {
    members: VecDeque<(Arc<Dest>, usize)>,
    lastmod: u64,
}

impl DestSet {
    /// Weighted least-connection member (`ip_vs_dest_set_min`).
    fn min(&self) -> Option<usize> {
        let m = &self.members;
        let first = m
            .iter()
            .position(|(d, _)| d.is_schedulable() && d.is_available())?;
        let (mut least, mut loh) = (first, m[first].0.overhead());
        for (j, (d, _)) in m.iter().enumerate().skip(first + 1) {
            if d.is_overloaded() {
                continue;
            }
            let doh = d.overhead();
            if loh.wrapping_mul(wfactor(d)) > doh.wrapping_mul(wfactor(&m[least].0))
                && d.is_available()
            {
                (least, loh) = (j, doh);
            }
        }
        Some(least)
    }

    /// Weighted most-connection member (`ip_vs_dest_set_max`); OVERLOAD and
    /// AVAILABLE are ignored.
    fn max(&self) -> Option<usize> {
        let m = &self.members;
        let first = m.iter().position(|(d, _)| d.weight() > 0)?;
        let (mut most, mut moh) = (first, m[first].0.overhead());
        for (j, (d, _)) in m.iter().enumerate().skip(first + 1) {
            let doh = d.overhead();
            if moh.wrapping_mul(wfactor(d)) < doh.wrapping_mul(wfactor(&m[most].0))
                && d.weight() > 0
            {
                (most, moh) = (j, doh);
            }
        }
        Some(most)
    }
}

/// LBLC-with-replication scheduler: the destination-address → set cache.
#[derive(Debug)]
pub struct Lblcr {
    table: Table<DestSet>,
}

impl Default for Lblcr {
    fn default() -> Self {
        Lblcr::new()
    }
}

impl Lblcr {
    /// A scheduler with the default 24 h `lblcr_expiration`.
    pub fn new() -> Self {
        Lblcr::with_expiration_ms(DEFAULT_EXPIRATION_MS)
    }

    /// A scheduler with the given `lblcr_expiration` in milliseconds.
    pub fn with_expiration_ms(ms: u64) -> Self {
        Lblcr {
            table: Table::new(ms),
        }
    }

    /// Number of cached destination addresses.
    pub fn cached(&self) -> usize {
        self.table.len()
    }

    /// The set cached for `daddr`, newest member first (tests, tools).
    pub fn set_of(&mut self, daddr: std::net::IpAddr) -> Option<Vec<Arc<Dest>>> {
        let en = self.table.get_mut(daddr)?;
        Some(en.val.members.iter().map(|(d, _)| d.clone()).collect())
    }
}

impl Scheduler for Lblcr {
    fn name(&self) -> &'static str {
        "lblcr"
    }

    fn init_service(&mut self, _dests: &[Arc<Dest>], _svc_flags: u32) {
        self.table.reset();
    }

    fn schedule(
        &mut self,
        dests: &[Arc<Dest>],
        flow: &FlowInfo,
        ctx: &mut SchedCtx,
    ) -> Option<usize> {
        let now = ctx.now_ms;
        let expiration = self.table.expiration_ms;
        self.table.arm(now);
        let Some(en) = self.table.get_mut(flow.daddr) else {
            let i = wlc_pick(dests)?;
            let set = DestSet {
                members: VecDeque::from([(dests[i].clone(), i)]),
                lastmod: now,
            };
            self.table.insert(flow.daddr, now, set);
            return Some(i);
        };
        en.lastuse = now;
        let set = &mut en.val;
        // The kernel checks the overload rule after the shrink below, but neither
        // depends on the other, so resolve the pick's list index first.
        let hit = set.min().and_then(|j| {
            let (d, hint) = &mut set.members[j];
            if lblc_overloaded(d, dests) {
                None
            } else {
                find_dest(dests, d, hint)
            }
        });
        if set.members.len() > 1 && now > set.lastmod.saturating_add(expiration) {
            if let Some(m) = set.max() {
                set.members.remove(m);
                set.lastmod = now;
            }
        }
        if hit.is_some() {
            return hit;
        }
        let i = wlc_pick(dests)?;
        if !set.members.iter().any(|(d, _)| Arc::ptr_eq(d, &dests[i])) {
            set.members.push_front((dests[i].clone(), i));
            set.lastmod = now;
        }
        Some(i)
    }

    fn handle_timeout(&mut self, now_ms: u64) {
        self.table.handle_timeout(now_ms);
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

    fn three(exp_ms: u64) -> (Lblcr, Vec<Arc<Dest>>) {
        let mut s = Lblcr::with_expiration_ms(exp_ms);
        let l = build(
            &mut s,
            &[
                Dest::v4([10, 0, 0, 1], 80, 1),
                Dest::v4([10, 0, 0, 2], 80, 1),
                Dest::v4([10, 0, 0, 3], 80, 1),
            ],
        );
        (s, l)
    }

    #[test]
    fn replicates_when_member_lblc_overloaded() {
        let (mut s, l) = three(DEFAULT_EXPIRATION_MS);
        let v = ip(203, 0, 113, 9);
        let f = flow_to(v);
        assert_eq!(pick_at(&mut s, &l, &f, 0, 0), Some(0));
        // Member has 2 active > weight 1 and l[1] is below half → add wlc pick l[1].
        l[0].activeconns.store(2, Relaxed);
        assert_eq!(pick_at(&mut s, &l, &f, 0, 1), Some(1));
        let set = s.set_of(v).unwrap();
        assert_eq!(set.len(), 2);
        assert!(Arc::ptr_eq(&set[0], &l[1]) && Arc::ptr_eq(&set[1], &l[0]));
        // Now set_min picks the less loaded member l[1] from the set.
        assert_eq!(pick_at(&mut s, &l, &f, 0, 2), Some(1));
        assert_eq!(s.set_of(v).unwrap().len(), 2);
    }

    #[test]
    fn set_min_skips_overload_unavailable_and_weight0() {
        let (mut s, l) = three(DEFAULT_EXPIRATION_MS);
        let v = ip(203, 0, 113, 9);
        let f = flow_to(v);
        pick_at(&mut s, &l, &f, 0, 0); // set {l0}
        l[0].activeconns.store(2, Relaxed);
        pick_at(&mut s, &l, &f, 0, 1); // set {l1, l0}
        l[0].activeconns.store(0, Relaxed);
        l[1].inactconns.store(10, Relaxed);
        // set_min: l1 (oh 10) first, l0 (oh 0) better → l0.
        assert_eq!(pick_at(&mut s, &l, &f, 0, 2), Some(0));
        l[0].flags.fetch_or(DEST_F_OVERLOAD, Relaxed);
        assert_eq!(pick_at(&mut s, &l, &f, 0, 3), Some(1));
        l[0].flags.fetch_and(!DEST_F_OVERLOAD, Relaxed);
        l[0].flags.fetch_and(!DEST_F_AVAILABLE, Relaxed);
        assert_eq!(pick_at(&mut s, &l, &f, 0, 4), Some(1));
        l[0].flags.fetch_or(DEST_F_AVAILABLE, Relaxed);
        l[1].weight.store(0, Relaxed);
        assert_eq!(pick_at(&mut s, &l, &f, 0, 5), Some(0));
        // No usable member and no usable dest at all → none.
        for d in &l {
            d.weight.store(0, Relaxed);
        }
        assert_eq!(pick_at(&mut s, &l, &f, 0, 6), None);
    }

    #[test]
    fn set_shrinks_after_expiration_without_change() {
        let exp = 1000;
        let (mut s, l) = three(exp);
        let v = ip(203, 0, 113, 9);
        let f = flow_to(v);
        pick_at(&mut s, &l, &f, 0, 0);
        l[0].activeconns.store(2, Relaxed);
        pick_at(&mut s, &l, &f, 0, 10); // set {l1, l0}, lastmod 10
        assert_eq!(s.set_of(v).unwrap().len(), 2);
        // Not yet: now must be strictly after lastmod + expiration.
        pick_at(&mut s, &l, &f, 0, 10 + exp);
        assert_eq!(s.set_of(v).unwrap().len(), 2);
        // Drop the most loaded (l0: 512 vs l1: 0) and still answer with set_min.
        assert_eq!(pick_at(&mut s, &l, &f, 0, 11 + exp), Some(1));
        let set = s.set_of(v).unwrap();
        assert_eq!(set.len(), 1);
        assert!(Arc::ptr_eq(&set[0], &l[1]));
    }

    #[test]
    fn entries_expire_via_handle_timeout() {
        let (mut s, l) = three(10 * 60_000);
        s.handle_timeout(0);
        pick_at(&mut s, &l, &flow_to(ip(203, 0, 113, 9)), 0, 0);
        for k in 1..30u64 {
            s.handle_timeout(k * 60_000);
        }
        assert_eq!(s.cached(), 1);
        s.handle_timeout(30 * 60_000); // full check: idle 30 min ≥ 10 min
        assert_eq!(s.cached(), 0);
    }
}
