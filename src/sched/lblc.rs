//! lblc: Locality-Based Least-Connection (spec §2.9, kernel `ip_vs_lblc.c`).
//!
//! Meant for transparent cache clusters: requests for one destination IP keep
//! going to one real server. A cache maps the packet's destination address
//! (never swapped for ICMP-embedded headers, as in the kernel) to a destination. A cached destination is reused while it is AVAILABLE, has
//! weight > 0 and is not "lblc-overloaded" (more active connections than its
//! weight while some destination is below half its weight). The OVERLOAD flag
//! is deliberately *not* checked on this path. Otherwise a fresh wlc pick
//! (§2.4) is made and cached, replacing the old mapping. Entries expire through
//! the GC in `locality` (60 s timer, 24 h `lblc_expiration`, partial GC above
//! 16384 entries).

use std::sync::Arc;

use super::locality::{find_dest, lblc_overloaded, Table, DEFAULT_EXPIRATION_MS};
use super::wlc::wlc_pick;
use super::{FlowInfo, SchedCtx, Scheduler};
use crate::service::Dest;

/// A cached destination and where it sat in the list last time.
#[derive(Debug)]
struct Cached {
    dest: Arc<Dest>,
    hint: usize,
}

/// Locality-based least-connection scheduler: the destination-address cache.
#[derive(Debug)]
pub struct Lblc {
    table: Table<Cached>,
}

impl Default for Lblc {
    fn default() -> Self {
        Lblc::new()
    }
}

impl Lblc {
    /// A scheduler with the default 24 h `lblc_expiration`.
    pub fn new() -> Self {
        Lblc::with_expiration_ms(DEFAULT_EXPIRATION_MS)
    }

    /// A scheduler with the given `lblc_expiration` in milliseconds.
    pub fn with_expiration_ms(ms: u64) -> Self {
        Lblc {
            table: Table::new(ms),
        }
    }

    /// Number of cached destination addresses.
    pub fn cached(&self) -> usize {
        self.table.len()
    }
}

impl Scheduler for Lblc {
    fn name(&self) -> &'static str {
        "lblc"
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
        self.table.arm(now);
        if let Some(en) = self.table.get_mut(flow.daddr) {
            en.lastuse = now;
            let c = &mut en.val;
            let d = &c.dest;
            if d.is_available() && d.weight() > 0 && !lblc_overloaded(d, dests) {
                // A dest still flagged available must be in the list; if the
                // caller has not updated it yet, reschedule instead.
                if let Some(i) = find_dest(dests, &c.dest, &mut c.hint) {
                    return Some(i);
                }
            }
        }
        let i = wlc_pick(dests)?;
        let d = &dests[i];
        match self.table.get_mut(flow.daddr) {
            Some(en) => {
                if !Arc::ptr_eq(&en.val.dest, d) {
                    // The kernel replaces the entry with a fresh one.
                    en.val = Cached {
                        dest: d.clone(),
                        hint: i,
                    };
                    en.lastuse = now;
                }
            }
            None => self.table.insert(
                flow.daddr,
                now,
                Cached {
                    dest: d.clone(),
                    hint: i,
                },
            ),
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
    use crate::sched::locality::CHECK_EXPIRE_INTERVAL_MS;
    use crate::sched::testutil::*;
    use crate::sched::DestChange;
    use crate::service::{DEST_F_AVAILABLE, DEST_F_OVERLOAD};
    use std::net::{IpAddr, Ipv4Addr};
    use std::sync::atomic::Ordering::Relaxed;

    fn ip(a: u8, b: u8, c: u8, d: u8) -> IpAddr {
        IpAddr::V4(Ipv4Addr::new(a, b, c, d))
    }

    fn three() -> (Lblc, Vec<Arc<Dest>>) {
        let mut s = Lblc::new();
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
    fn sticks_to_cached_dest_despite_load() {
        let (mut s, l) = three();
        let f = flow_to(ip(203, 0, 113, 9));
        assert_eq!(pick_at(&mut s, &l, &f, 0, 0), Some(0)); // wlc tie → head
                                                            // Plenty of inactive load: wlc would move, the cache does not.
        l[0].inactconns.store(1000, Relaxed);
        assert_eq!(pick_at(&mut s, &l, &f, 0, 1), Some(0));
        // A different destination address gets its own wlc pick.
        assert_eq!(
            pick_at(&mut s, &l, &flow_to(ip(203, 0, 113, 10)), 0, 2),
            Some(1)
        );
        assert_eq!(s.cached(), 2);
    }

    #[test]
    fn overload_flag_ignored_on_cached_path_but_lblc_rule_applies() {
        let (mut s, l) = three();
        let f = flow_to(ip(203, 0, 113, 9));
        assert_eq!(pick_at(&mut s, &l, &f, 0, 0), Some(0));
        l[0].flags.fetch_or(DEST_F_OVERLOAD, Relaxed);
        assert_eq!(pick_at(&mut s, &l, &f, 0, 1), Some(0));
        // 2 active > weight 1, and l[1] has 0*2 < 1 → lblc-overloaded: re-pick with
        // wlc (skipping the OVERLOAD-flagged head) and replace the entry.
        l[0].activeconns.store(2, Relaxed);
        assert_eq!(pick_at(&mut s, &l, &f, 0, 2), Some(1));
        l[0].flags.fetch_and(!DEST_F_OVERLOAD, Relaxed);
        l[0].activeconns.store(0, Relaxed);
        l[1].activeconns.store(1, Relaxed);
        assert_eq!(pick_at(&mut s, &l, &f, 0, 3), Some(1)); // cached again
        assert_eq!(s.cached(), 1);
    }

    #[test]
    fn weight0_or_unavailable_cached_dest_is_replaced() {
        let (mut s, mut l) = three();
        let f = flow_to(ip(203, 0, 113, 9));
        assert_eq!(pick_at(&mut s, &l, &f, 0, 0), Some(0));
        l[0].weight.store(0, Relaxed);
        assert_eq!(pick_at(&mut s, &l, &f, 0, 1), Some(1));
        // Delete the cached dest (index 1): AVAILABLE cleared, list shrinks.
        let gone = l.remove(1);
        gone.flags.fetch_and(!DEST_F_AVAILABLE, Relaxed);
        s.dests_changed(&l, DestChange::Removed(1), 0);
        assert_eq!(pick_at(&mut s, &l, &f, 0, 2), Some(1)); // 10.0.0.1, the only weight>0
                                                            // All weights 0 → no destination.
        l[1].weight.store(0, Relaxed);
        assert_eq!(pick_at(&mut s, &l, &f, 0, 3), None);
    }

    #[test]
    fn cached_dest_found_after_list_shift() {
        let (mut s, mut l) = three();
        let f = flow_to(ip(203, 0, 113, 9));
        assert_eq!(pick_at(&mut s, &l, &f, 0, 0), Some(0));
        let cached = l[0].clone();
        l.insert(0, Dest::v4([10, 0, 0, 4], 80, 1));
        s.dests_changed(&l, DestChange::Added(0), 0);
        let i = pick_at(&mut s, &l, &f, 0, 1).unwrap();
        assert!(Arc::ptr_eq(&l[i], &cached));
    }

    #[test]
    fn expiry_after_24h_via_full_check() {
        let (mut s, l) = three();
        s.handle_timeout(0);
        let f = flow_to(ip(203, 0, 113, 9));
        assert_eq!(pick_at(&mut s, &l, &f, 0, 0), Some(0));
        // Drive the daemon's once-a-minute-ish calls for 24 h: the entry survives
        // every full check (each 30 min) while idle less than 24 h.
        let day = 24 * 3600 * 1000;
        let mut now = 0;
        while now + CHECK_EXPIRE_INTERVAL_MS < day {
            now += CHECK_EXPIRE_INTERVAL_MS;
            s.handle_timeout(now);
        }
        assert_eq!(s.cached(), 1);
        // The next full check after 24 h idle drops it (within 30 min).
        while s.cached() == 1 {
            now += CHECK_EXPIRE_INTERVAL_MS;
            s.handle_timeout(now);
            assert!(now <= day + 30 * 60_000);
        }
        // Re-learned with the current wlc choice.
        l[0].inactconns.store(5, Relaxed);
        assert_eq!(pick_at(&mut s, &l, &f, 0, now), Some(1));
    }

    #[test]
    fn use_refreshes_lastuse() {
        let mut s = Lblc::with_expiration_ms(10 * 60_000);
        let l = build(&mut s, &[Dest::v4([10, 0, 0, 1], 80, 1)]);
        s.handle_timeout(0);
        let f = flow_to(ip(203, 0, 113, 9));
        pick_at(&mut s, &l, &f, 0, 0);
        // Touch it at 25 min; the full check at 30 min sees 5 min idle < 10 min.
        for k in 1..=30u64 {
            if k == 25 {
                pick_at(&mut s, &l, &f, 0, k * 60_000);
            }
            s.handle_timeout(k * 60_000);
        }
        assert_eq!(s.cached(), 1);
        // Untouched since 25 min: the full check at 60 min (35 min idle) drops it.
        for k in 31..60u64 {
            s.handle_timeout(k * 60_000);
        }
        assert_eq!(s.cached(), 1);
        s.handle_timeout(60 * 60_000);
        assert_eq!(s.cached(), 0);
    }
}
