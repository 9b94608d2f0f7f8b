//! sed: Shortest Expected Delay (spec §2.5, kernel `ip_vs_sed.c`).
//!
//! wlc's comparison with the expected delay `(active + 1) / weight` instead of
//! the connection overhead: inactive connections are ignored and the `+ 1`
//! counts the connection being scheduled. Same first-candidate rule (not
//! OVERLOADed, weight > 0), strict comparison, ties to the list head.

use std::sync::Arc;

use super::wlc::weighted_least;
use super::{FlowInfo, SchedCtx, Scheduler};
use crate::service::Dest;

/// Shortest-expected-delay scheduler (stateless).
#[derive(Debug, Default, Clone, Copy)]
pub struct Sed;

impl Scheduler for Sed {
    fn name(&self) -> &'static str {
        "sed"
    }

    fn schedule(
        &mut self,
        dests: &[Arc<Dest>],
        _flow: &FlowInfo,
        _ctx: &mut SchedCtx,
    ) -> Option<usize> {
        weighted_least(dests, |d| d.active() as u64 + 1)
    }
}

#[cfg(test)]
mod test {
    use super::*;
    use crate::sched::testutil::*;
    use crate::service::DEST_F_OVERLOAD;
    use std::sync::atomic::Ordering::Relaxed;

    #[test]
    fn expected_delay_and_ties() {
        let mut s = Sed;
        let l = vec![
            Dest::v4([10, 0, 0, 1], 80, 1),
            Dest::v4([10, 0, 0, 2], 80, 3),
        ];
        // Both idle: 1/1 vs 1/3 → the heavier one.
        assert_eq!(picks(&mut s, &l, 1), vec![Some(1)]);
        // 1/1 vs 3/3: tie → head.
        l[1].activeconns.store(2, Relaxed);
        assert_eq!(picks(&mut s, &l, 1), vec![Some(0)]);
        // Inactive connections do not count.
        l[0].inactconns.store(1000, Relaxed);
        assert_eq!(picks(&mut s, &l, 1), vec![Some(0)]);
        l[1].activeconns.store(1, Relaxed); // 2/3 < 1
        assert_eq!(picks(&mut s, &l, 1), vec![Some(1)]);
    }

    #[test]
    fn weight0_and_overload() {
        let mut s = Sed;
        let l = vec![
            Dest::v4([10, 0, 0, 1], 80, 0),
            Dest::v4([10, 0, 0, 2], 80, 1),
        ];
        l[1].activeconns.store(9, Relaxed);
        assert_eq!(picks(&mut s, &l, 1), vec![Some(1)]);
        l[1].flags.fetch_or(DEST_F_OVERLOAD, Relaxed);
        assert_eq!(picks(&mut s, &l, 1), vec![None]);
    }
}
