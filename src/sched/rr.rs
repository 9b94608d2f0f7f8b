//! rr: Round Robin (spec §2.1, kernel `ip_vs_rr.c`).
//!
//! The only state is a cursor: the last destination handed out, or the list
//! head ("before the first element") after binding. A pick walks forward from
//! the cursor, wraps through the head at most once, and returns the first
//! destination that is neither OVERLOADed nor weight 0 (weights are otherwise
//! ignored). When the cursor's destination is removed the cursor steps back to
//! the element before it, so the next pick is the one that followed the removed
//! destination; adding at the head only shifts indices (spec §1.1).

use std::sync::Arc;

use super::{DestChange, FlowInfo, SchedCtx, Scheduler};
use crate::service::Dest;

/// Round-robin scheduler state.
#[derive(Debug, Default)]
pub struct Rr {
    /// Index of the last pick; `None` is the list head.
    cursor: Option<usize>,
}

impl Rr {
    /// A fresh scheduler with the cursor at the list head.
    pub fn new() -> Self {
        Rr::default()
    }
}

impl Scheduler for Rr {
    fn name(&self) -> &'static str {
        "rr"
    }

    fn init_service(&mut self, _dests: &[Arc<Dest>], _svc_flags: u32) {
        self.cursor = None;
    }

    fn dests_changed(&mut self, dests: &[Arc<Dest>], change: DestChange, _svc_flags: u32) {
        self.cursor = match (change, self.cursor) {
            (_, None) => None,
            (DestChange::Added(at), Some(c)) if c >= at => Some(c + 1),
            // The cursor's own element left: step back to its predecessor.
            (DestChange::Removed(at), Some(c)) if c == at => at.checked_sub(1),
            (DestChange::Removed(at), Some(c)) if c > at => Some(c - 1),
            (_, c) => c,
        };
        // Never keep a cursor past the end (caller reported changes out of band).
        if self.cursor.is_some_and(|c| c >= dests.len()) {
            self.cursor = None;
        }
    }

    fn schedule(
        &mut self,
        dests: &[Arc<Dest>],
        _flow: &FlowInfo,
        _ctx: &mut SchedCtx,
    ) -> Option<usize> {
        let n = dests.len();
        let ok = |i: usize| {
            let d = &dests[i];
            d.is_schedulable()
        };
        let found = match self.cursor.filter(|&c| c < n) {
            // From the head there is a single pass over the whole list.
            None => (0..n).find(|&i| ok(i)),
            // After the cursor to the end, then from the head up to and
            // including the cursor itself.
            Some(c) => (c + 1..n).chain(0..=c).find(|&i| ok(i)),
        };
        if found.is_some() {
            self.cursor = found;
        }
        found
    }
}

#[cfg(test)]
mod test {
    use super::*;
    use crate::sched::testutil::*;
    use crate::service::DEST_F_OVERLOAD;
    use std::sync::atomic::Ordering::Relaxed;

    #[test]
    fn alternates_newest_first() {
        // add A then B → L = B, A → B, A, B, A (spec §2.1 example).
        let (a, b) = (
            Dest::v4([10, 0, 0, 1], 80, 1),
            Dest::v4([10, 0, 0, 2], 80, 1),
        );
        let mut s = Rr::new();
        let l = build(&mut s, &[a, b]);
        assert_eq!(
            picks(&mut s, &l, 5),
            vec![Some(0), Some(1), Some(0), Some(1), Some(0)]
        );
    }

    #[test]
    fn cursor_after_delete_moves_to_predecessor() {
        // A, B, C added → L = C, B, A.
        let ds = [
            Dest::v4([10, 0, 0, 1], 80, 1),
            Dest::v4([10, 0, 0, 2], 80, 1),
            Dest::v4([10, 0, 0, 3], 80, 1),
        ];
        let mut s = Rr::new();
        let mut l = build(&mut s, &ds);
        assert_eq!(picks(&mut s, &l, 2), vec![Some(0), Some(1)]); // C, B
                                                                  // Delete B (the cursor): next is A, then C.
        l.remove(1);
        s.dests_changed(&l, DestChange::Removed(1), 0);
        let names: Vec<_> = picks(&mut s, &l, 3)
            .into_iter()
            .map(|i| l[i.unwrap()].addr)
            .collect();
        assert_eq!(names, vec![ds[0].addr, ds[2].addr, ds[0].addr]);
    }

    #[test]
    fn delete_of_head_cursor_goes_back_to_list_head() {
        let ds = [
            Dest::v4([10, 0, 0, 1], 80, 1),
            Dest::v4([10, 0, 0, 2], 80, 1),
        ];
        let mut s = Rr::new();
        let mut l = build(&mut s, &ds); // B, A
        assert_eq!(picks(&mut s, &l, 1), vec![Some(0)]); // B
        l.remove(0);
        s.dests_changed(&l, DestChange::Removed(0), 0);
        assert_eq!(picks(&mut s, &l, 2), vec![Some(0), Some(0)]); // A, A
    }

    #[test]
    fn add_at_head_shifts_cursor() {
        let ds = [
            Dest::v4([10, 0, 0, 1], 80, 1),
            Dest::v4([10, 0, 0, 2], 80, 1),
        ];
        let mut s = Rr::new();
        let mut l = build(&mut s, &ds); // B, A
        assert_eq!(picks(&mut s, &l, 2), vec![Some(0), Some(1)]); // B, A (cursor on A)
        let c = Dest::v4([10, 0, 0, 3], 80, 1);
        l.insert(0, c);
        s.dests_changed(&l, DestChange::Added(0), 0); // C, B, A; cursor still on A
        assert_eq!(
            picks(&mut s, &l, 4),
            vec![Some(0), Some(1), Some(2), Some(0)]
        );
    }

    #[test]
    fn weight0_and_overload_skipped() {
        let ds = [
            Dest::v4([10, 0, 0, 1], 80, 1),
            Dest::v4([10, 0, 0, 2], 80, 0),
            Dest::v4([10, 0, 0, 3], 80, 5),
        ];
        let mut s = Rr::new();
        let l = build(&mut s, &ds); // C(5), B(0), A(1)
        assert_eq!(
            picks(&mut s, &l, 4),
            vec![Some(0), Some(2), Some(0), Some(2)]
        );
        l[2].flags.fetch_or(DEST_F_OVERLOAD, Relaxed);
        assert_eq!(picks(&mut s, &l, 2), vec![Some(0), Some(0)]);
        l[0].weight.store(0, Relaxed);
        assert_eq!(picks(&mut s, &l, 1), vec![None]);
        assert_eq!(picks(&mut s, &[], 1), vec![None]);
    }
}
