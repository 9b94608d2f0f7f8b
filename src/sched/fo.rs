//! fo: Weighted Fail Over (spec §2.12, kernel `ip_vs_fo.c`).
//!
//! Always the non-OVERLOADed destination with the highest weight; connection
//! counts are ignored. Strictly greater wins, so among equal weights the one
//! nearest the list head (most recently added) is used. Weight 0 never wins
//! because the running maximum starts at 0.

use std::sync::Arc;

use super::{FlowInfo, SchedCtx, Scheduler};
use crate::service::Dest;

/// Weighted fail-over scheduler (stateless).
#[derive(Debug, Default, Clone, Copy)]
pub struct Fo;

impl Scheduler for Fo {
    fn name(&self) -> &'static str {
        "fo"
    }

    fn schedule(
        &mut self,
        dests: &[Arc<Dest>],
        _flow: &FlowInfo,
        _ctx: &mut SchedCtx,
    ) -> Option<usize> {
        let mut best = None;
        let mut hw = 0;
        for (i, d) in dests.iter().enumerate() {
            let w = d.weight();
            if !d.is_overloaded() && w > hw {
                (best, hw) = (Some(i), w);
            }
        }
        best
    }
}

#[cfg(test)]
mod test {
    use super::*;
    use crate::sched::testutil::*;
    use crate::service::DEST_F_OVERLOAD;
    use std::sync::atomic::Ordering::Relaxed;

    #[test]
    fn highest_weight_then_failover() {
        let mut s = Fo;
        let l = vec![
            Dest::v4([10, 0, 0, 1], 80, 50),
            Dest::v4([10, 0, 0, 2], 80, 100),
            Dest::v4([10, 0, 0, 3], 80, 100),
        ];
        l[1].activeconns.store(1000, Relaxed); // connections don't matter
        assert_eq!(picks(&mut s, &l, 2), vec![Some(1), Some(1)]); // tie → nearer the head
        l[1].flags.fetch_or(DEST_F_OVERLOAD, Relaxed);
        assert_eq!(picks(&mut s, &l, 1), vec![Some(2)]);
        l[2].weight.store(0, Relaxed);
        assert_eq!(picks(&mut s, &l, 1), vec![Some(0)]);
        l[0].weight.store(0, Relaxed);
        assert_eq!(picks(&mut s, &l, 1), vec![None]);
    }
}
