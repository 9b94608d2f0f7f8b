//! lc: Least Connection (spec §2.3, kernel `ip_vs_lc.c`).
//!
//! Picks the destination with the smallest overhead `active * 256 + inactive`
//! (spec §1.2), ignoring weights except that weight 0 (quiescent) and
//! OVERLOADed destinations are skipped. The comparison is strict, so ties go
//! to the destination nearest the list head (the most recently added).

use std::sync::Arc;

use super::{FlowInfo, SchedCtx, Scheduler};
use crate::service::Dest;

/// Least-connection scheduler (stateless).
#[derive(Debug, Default, Clone, Copy)]
pub struct Lc;

impl Scheduler for Lc {
    fn name(&self) -> &'static str {
        "lc"
    }

    fn schedule(
        &mut self,
        dests: &[Arc<Dest>],
        _flow: &FlowInfo,
        _ctx: &mut SchedCtx,
    ) -> Option<usize> {
        let mut best: Option<(usize, u64)> = None;
        for (i, d) in dests.iter().enumerate() {
            if d.is_overloaded() || d.weight() == 0 {
                continue;
            }
            let oh = d.overhead();
            if best.is_none_or(|(_, boh)| oh < boh) {
                best = Some((i, oh));
            }
        }
        best.map(|(i, _)| i)
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
        let mut s = Lc;
        let l = build(
            &mut s,
            &[
                Dest::v4([10, 0, 0, 1], 80, 1),
                Dest::v4([10, 0, 0, 2], 80, 9),
            ],
        );
        assert_eq!(picks(&mut s, &l, 1), vec![Some(0)]);
    }

    #[test]
    fn overhead_counts_active_256_times() {
        let mut s = Lc;
        let l = vec![
            Dest::v4([10, 0, 0, 1], 80, 1),
            Dest::v4([10, 0, 0, 2], 80, 1),
        ];
        set(&l[0], 1, 0); // 256
        set(&l[1], 0, 255); // 255
        assert_eq!(picks(&mut s, &l, 1), vec![Some(1)]);
        set(&l[1], 0, 256); // equal → head
        assert_eq!(picks(&mut s, &l, 1), vec![Some(0)]);
        set(&l[1], 0, 257);
        assert_eq!(picks(&mut s, &l, 1), vec![Some(0)]);
    }

    #[test]
    fn weights_ignored_except_zero() {
        let mut s = Lc;
        let l = vec![
            Dest::v4([10, 0, 0, 1], 80, 100),
            Dest::v4([10, 0, 0, 2], 80, 1),
        ];
        set(&l[0], 2, 0);
        set(&l[1], 1, 0);
        assert_eq!(picks(&mut s, &l, 1), vec![Some(1)]);
        l[1].weight.store(0, Relaxed);
        assert_eq!(picks(&mut s, &l, 1), vec![Some(0)]);
        l[0].flags.fetch_or(DEST_F_OVERLOAD, Relaxed);
        assert_eq!(picks(&mut s, &l, 1), vec![None]);
    }
}
