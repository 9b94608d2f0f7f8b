//! ovf: Weighted Overflow (spec §2.13, kernel `ip_vs_ovf.c`).
//!
//! Like fo (highest weight, ties to the list head), but a destination is only
//! eligible while its *active* connections do not exceed its weight, so load
//! overflows to the next-highest weight. Inactive connections never count,
//! which is why the man page calls it unsuitable for UDP. OVERLOAD and weight 0
//! are skipped.

use std::sync::Arc;

use super::{FlowInfo, SchedCtx, Scheduler};
use crate::service::Dest;

/// Weighted overflow scheduler (stateless).
#[derive(Debug, Default, Clone, Copy)]
pub struct Ovf;

impl Scheduler for Ovf {
    fn name(&self) -> &'static str {
        "ovf"
    }

    fn schedule(
        &mut self,
        dests: &[Arc<Dest>],
        _flow: &FlowInfo,
        _ctx: &mut SchedCtx,
    ) -> Option<usize> {
        let mut best: Option<(usize, i32)> = None;
        for (i, d) in dests.iter().enumerate() {
            let w = d.weight();
            if d.is_overloaded() || d.active() as i64 > w as i64 || w == 0 {
                continue;
            }
            if best.is_none_or(|(_, hw)| w > hw) {
                best = Some((i, w));
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

    #[test]
    fn overflows_by_active_conns() {
        let mut s = Ovf;
        let l = vec![
            Dest::v4([10, 0, 0, 1], 80, 2),
            Dest::v4([10, 0, 0, 2], 80, 3),
        ];
        assert_eq!(picks(&mut s, &l, 1), vec![Some(1)]);
        l[1].activeconns.store(3, Relaxed); // not yet > weight
        assert_eq!(picks(&mut s, &l, 1), vec![Some(1)]);
        l[1].activeconns.store(4, Relaxed);
        assert_eq!(picks(&mut s, &l, 1), vec![Some(0)]);
        l[1].activeconns.store(0, Relaxed);
        l[1].inactconns.store(1000, Relaxed); // inactive never counts
        assert_eq!(picks(&mut s, &l, 1), vec![Some(1)]);
        l[1].flags.fetch_or(DEST_F_OVERLOAD, Relaxed);
        assert_eq!(picks(&mut s, &l, 1), vec![Some(0)]);
        l[0].activeconns.store(3, Relaxed);
        assert_eq!(picks(&mut s, &l, 1), vec![None]);
    }

    #[test]
    fn ties_to_head_and_weight0_skipped() {
        let mut s = Ovf;
        let l = vec![
            Dest::v4([10, 0, 0, 1], 80, 0),
            Dest::v4([10, 0, 0, 2], 80, 5),
            Dest::v4([10, 0, 0, 3], 80, 5),
        ];
        assert_eq!(picks(&mut s, &l, 1), vec![Some(1)]);
    }
}
