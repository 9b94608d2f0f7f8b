//! wlc: Weighted Least Connection, the default scheduler (spec §2.4, kernel
//! `ip_vs_wlc.c`).
//!
//! Picks the destination with the smallest `overhead / weight`, compared
//! without division as `loh * w_d > doh * w_least` (64-bit products, strict,
//! so ties go to the destination nearest the list head). The first candidate
//! must be non-OVERLOADed with weight > 0; later weight-0 destinations are not
//! skipped explicitly but can never win (`loh * 0 > …` is false).
//! `wlc_pick` is shared with lblc/lblcr, whose fallback is exactly this.

use std::sync::Arc;

use super::{FlowInfo, SchedCtx, Scheduler};
use crate::service::Dest;

/// Weighted least-connection scheduler (stateless).
#[derive(Debug, Default, Clone, Copy)]
pub struct Wlc;

/// A weight as the unsigned factor of the overhead comparison (never negative).
#[inline]
pub(crate) fn wfactor(d: &Dest) -> u64 {
    d.weight().max(0) as u64
}

/// The weighted-least pick over `dests` with overhead function `oh`
/// (wlc uses the connection overhead, sed `active + 1`).
#[inline]
pub(crate) fn weighted_least(dests: &[Arc<Dest>], oh: impl Fn(&Dest) -> u64) -> Option<usize> {
    let first = dests.iter().position(|d| d.is_schedulable())?;
    let (mut least, mut loh) = (first, oh(&dests[first]));
    let mut lw = wfactor(&dests[first]);
    for (i, d) in dests.iter().enumerate().skip(first + 1) {
        if d.is_overloaded() {
            continue;
        }
        let doh = oh(d);
        let dw = wfactor(d);
        // Wrapping: with ipvsadm's weights (≤ 65535) and u32 counters the
        // products stay far below 2^64.
        if loh.wrapping_mul(dw) > doh.wrapping_mul(lw) {
            (least, loh, lw) = (i, doh, dw);
        }
    }
    Some(least)
}

/// The wlc decision (also the fallback of lblc and lblcr).
#[inline]
pub(crate) fn wlc_pick(dests: &[Arc<Dest>]) -> Option<usize> {
    weighted_least(dests, Dest::overhead)
}

impl Scheduler for Wlc {
    fn name(&self) -> &'static str {
        "wlc"
    }

    fn schedule(
        &mut self,
        dests: &[Arc<Dest>],
        _flow: &FlowInfo,
        _ctx: &mut SchedCtx,
    ) -> Option<usize> {
        wlc_pick(dests)
    }
}

#[cfg(test)]
mod test {
    use super::*;
    use crate::sched::testutil::*;
    use crate::service::DEST_F_OVERLOAD;
    use std::sync::atomic::Ordering::Relaxed;

    fn set(d: &Dest, active: u32, inactive: u32) {
        d.activeconns.store(active, Relaxed);
        d.inactconns.store(inactive, Relaxed);
    }

    #[test]
    fn ties_go_to_list_head() {
        let mut s = Wlc;
        let l = build(
            &mut s,
            &[
                Dest::v4([10, 0, 0, 1], 80, 2),
                Dest::v4([10, 0, 0, 2], 80, 2),
            ],
        );
        assert_eq!(picks(&mut s, &l, 1), vec![Some(0)]);
        // 512/2 vs 256/1: equal → still the head.
        l[0].weight.store(2, Relaxed);
        l[1].weight.store(1, Relaxed);
        set(&l[0], 2, 0);
        set(&l[1], 1, 0);
        assert_eq!(picks(&mut s, &l, 1), vec![Some(0)]);
        set(&l[1], 1, 1); // 257/1 > 256 → head still wins
        assert_eq!(picks(&mut s, &l, 1), vec![Some(0)]);
        set(&l[0], 2, 1); // 513/2 = 256.5 > 256 → second
        set(&l[1], 1, 0);
        assert_eq!(picks(&mut s, &l, 1), vec![Some(1)]);
    }

    #[test]
    fn weighted_overhead() {
        let mut s = Wlc;
        let l = vec![
            Dest::v4([10, 0, 0, 1], 80, 1),
            Dest::v4([10, 0, 0, 2], 80, 3),
            Dest::v4([10, 0, 0, 3], 80, 2),
        ];
        set(&l[0], 1, 0); // 256/1
        set(&l[1], 2, 0); // 512/3 = 170.7
        set(&l[2], 1, 10); // 266/2 = 133
        assert_eq!(picks(&mut s, &l, 1), vec![Some(2)]);
        l[2].flags.fetch_or(DEST_F_OVERLOAD, Relaxed);
        assert_eq!(picks(&mut s, &l, 1), vec![Some(1)]);
    }

    #[test]
    fn weight0_never_chosen() {
        let mut s = Wlc;
        let l = vec![
            Dest::v4([10, 0, 0, 1], 80, 0),
            Dest::v4([10, 0, 0, 2], 80, 1),
            Dest::v4([10, 0, 0, 3], 80, 0),
        ];
        set(&l[1], 100, 100);
        assert_eq!(picks(&mut s, &l, 1), vec![Some(1)]);
        l[1].weight.store(0, Relaxed);
        assert_eq!(picks(&mut s, &l, 1), vec![None]);
    }

    #[test]
    fn first_candidate_skips_overload_and_zero() {
        let mut s = Wlc;
        let l = vec![
            Dest::v4([10, 0, 0, 1], 80, 5),
            Dest::v4([10, 0, 0, 2], 80, 0),
            Dest::v4([10, 0, 0, 3], 80, 1),
        ];
        l[0].flags.fetch_or(DEST_F_OVERLOAD, Relaxed);
        set(&l[2], 50, 0);
        assert_eq!(picks(&mut s, &l, 1), vec![Some(2)]);
    }
}
