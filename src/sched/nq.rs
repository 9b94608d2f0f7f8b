//! nq: Never Queue (spec §2.6, kernel `ip_vs_nq.c`).
//!
//! The first idle destination (no active connections) in list order wins at
//! once; if none is idle, fall back to the sed rule `(active + 1) / weight`
//! with a strict comparison (ties to the list head). Weight 0 and OVERLOADed
//! destinations are skipped on both paths.

use std::sync::Arc;

use super::wlc::wfactor;
use super::{FlowInfo, SchedCtx, Scheduler};
use crate::service::Dest;

/// Never-queue scheduler (stateless).
#[derive(Debug, Default, Clone, Copy)]
pub struct Nq;

impl Scheduler for Nq {
    fn name(&self) -> &'static str {
        "nq"
    }

    fn schedule(
        &mut self,
        dests: &[Arc<Dest>],
        _flow: &FlowInfo,
        _ctx: &mut SchedCtx,
    ) -> Option<usize> {
        let mut least: Option<(usize, u64, u64)> = None;
        for (i, d) in dests.iter().enumerate() {
            if d.is_overloaded() || d.weight() == 0 {
                continue;
            }
            let active = d.active() as u64;
            if active == 0 {
                return Some(i);
            }
            let (doh, dw) = (active + 1, wfactor(d));
            if least.is_none_or(|(_, loh, lw)| loh.wrapping_mul(dw) > doh.wrapping_mul(lw)) {
                least = Some((i, doh, dw));
            }
        }
        least.map(|(i, _, _)| i)
    }
}

#[cfg(test)]
mod test {
    use super::*;
    use crate::sched::testutil::*;
    use crate::service::DEST_F_OVERLOAD;
    use std::sync::atomic::Ordering::Relaxed;

    #[test]
    fn first_idle_wins_regardless_of_weight() {
        let mut s = Nq;
        let l = vec![
            Dest::v4([10, 0, 0, 1], 80, 10),
            Dest::v4([10, 0, 0, 2], 80, 1),
            Dest::v4([10, 0, 0, 3], 80, 100),
        ];
        l[0].activeconns.store(1, Relaxed);
        // Index 1 is idle (inactive conns don't matter) and comes before index 2.
        l[1].inactconns.store(500, Relaxed);
        assert_eq!(picks(&mut s, &l, 1), vec![Some(1)]);
    }

    #[test]
    fn busy_falls_back_to_expected_delay() {
        let mut s = Nq;
        let l = vec![
            Dest::v4([10, 0, 0, 1], 80, 1),
            Dest::v4([10, 0, 0, 2], 80, 2),
            Dest::v4([10, 0, 0, 3], 80, 4),
        ];
        l[0].activeconns.store(1, Relaxed); // 2/1
        l[1].activeconns.store(3, Relaxed); // 4/2 (tie with head → head)
        l[2].activeconns.store(9, Relaxed); // 10/4
        assert_eq!(picks(&mut s, &l, 1), vec![Some(0)]);
        l[2].activeconns.store(6, Relaxed); // 7/4 < 2
        assert_eq!(picks(&mut s, &l, 1), vec![Some(2)]);
    }

    #[test]
    fn weight0_and_overload_skipped_even_if_idle() {
        let mut s = Nq;
        let l = vec![
            Dest::v4([10, 0, 0, 1], 80, 0),
            Dest::v4([10, 0, 0, 2], 80, 1),
            Dest::v4([10, 0, 0, 3], 80, 1),
        ];
        l[1].flags.fetch_or(DEST_F_OVERLOAD, Relaxed);
        l[2].activeconns.store(7, Relaxed);
        assert_eq!(picks(&mut s, &l, 1), vec![Some(2)]);
        l[2].weight.store(0, Relaxed);
        assert_eq!(picks(&mut s, &l, 1), vec![None]);
    }
}
