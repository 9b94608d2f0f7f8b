//! wrr: Weighted Round Robin (spec §2.2, kernel `ip_vs_wrr.c`).
//!
//! Passes over the list with a falling "current weight" `cw`: a destination is
//! picked in every pass whose `cw` does not exceed its weight. `cw` starts at
//! `mw` and drops by `di` (the gcd of the positive weights) per pass; `mw` is
//! the maximum weight minus `di − 1`, so the last pass runs at `cw = 1`-ish and
//! still catches a destination whose weight fell below `di`.
//!
//! Any add/del/edit resets the cursor to the head and recomputes `di`/`mw`;
//! `cw` is kept where possible (clamped to `mw`, or re-aligned to `k·di + 1`),
//! which is why the first picks after building a service finish a partial
//! pass (the spec's worked example: `C B A | A B A C B A C B A | …`).
//! OVERLOADed destinations are skipped; once every destination has been tried at
//! `cw ≤ di` without a hit the pick fails ("all destinations are overloaded").

use std::sync::Arc;

use super::{DestChange, FlowInfo, SchedCtx, Scheduler};
use crate::service::Dest;

/// Weighted round-robin scheduler state (the kernel's `ip_vs_wrr_mark`).
#[derive(Debug, Default)]
pub struct Wrr {
    /// Last pick; `None` is the list head.
    cl: Option<usize>,
    /// Current weight.
    cw: i32,
    /// Maximum weight minus (di − 1).
    mw: i32,
    /// Decreasing interval: gcd of the positive weights.
    di: i32,
}

impl Wrr {
    /// A fresh scheduler (state as after binding to an empty service).
    pub fn new() -> Self {
        Wrr {
            cl: None,
            cw: 0,
            mw: 0,
            di: 1,
        }
    }

    fn recompute(&mut self, dests: &[Arc<Dest>]) {
        let g = super::weight_gcd(dests, Dest::weight);
        self.di = if g > 0 { g } else { 1 };
        let max = dests.iter().map(|d| d.weight()).fold(0, i32::max);
        self.mw = max - (self.di - 1);
    }
}

impl Scheduler for Wrr {
    fn name(&self) -> &'static str {
        "wrr"
    }

    fn init_service(&mut self, dests: &[Arc<Dest>], _svc_flags: u32) {
        self.cl = None;
        self.recompute(dests);
        self.cw = self.mw;
    }

    fn dests_changed(&mut self, dests: &[Arc<Dest>], _change: DestChange, _svc_flags: u32) {
        self.cl = None;
        self.recompute(dests);
        if self.cw > self.mw || self.cw == 0 {
            self.cw = self.mw;
        } else if self.di > 1 {
            self.cw = (self.cw / self.di) * self.di + 1;
        }
    }

    fn schedule(
        &mut self,
        dests: &[Arc<Dest>],
        _flow: &FlowInfo,
        _ctx: &mut SchedCtx,
    ) -> Option<usize> {
        if self.mw == 0 {
            return None; // no destination available
        }
        let last = self.cl;
        // Position we continue after (None = head).
        let mut pos = self.cl;
        let mut stop: Option<usize> = None;
        let mut last_pass = false;
        let mut restarted = false;
        loop {
            let from = pos.map_or(0, |p| p + 1);
            for (j, d) in dests.iter().enumerate().skip(from) {
                if !d.is_overloaded() && d.weight() >= self.cw {
                    self.cl = Some(j);
                    return Some(j);
                }
                if stop == Some(j) {
                    self.cl = Some(j);
                    return None; // all destinations are overloaded
                }
            }
            // End of list: next pass with a lower current weight.
            pos = None;
            self.cw -= self.di;
            if self.cw <= 0 {
                self.cw = self.mw;
                // Every destination was already tried at w >= 1: from the head
                // in one traversal, or in the previous last pass.
                if last_pass || last.is_none() {
                    self.cl = None;
                    return None;
                }
                restarted = true;
            }
            last_pass = self.cw <= self.di;
            if last_pass && restarted && last.is_some() {
                // The first traversal only covered dests after `last`; cover the
                // rest up to and including `last`, then give up.
                stop = last;
            }
        }
    }
}

#[cfg(test)]
mod test {
    use super::*;
    use crate::sched::testutil::*;
    use crate::service::DEST_F_OVERLOAD;
    use std::sync::atomic::Ordering::Relaxed;

    fn letters(l: &[Arc<Dest>], names: &[(&Arc<Dest>, char)], p: Vec<Option<usize>>) -> String {
        p.into_iter()
            .map(|i| match i {
                None => '-',
                Some(i) => names.iter().find(|(d, _)| Arc::ptr_eq(d, &l[i])).unwrap().1,
            })
            .collect()
    }

    #[test]
    fn worked_example_432_added_in_order() {
        // Spec §2.2: A=4, B=3, C=2 added in that order → L = C, B, A.
        let a = Dest::v4([10, 0, 0, 1], 80, 4);
        let b = Dest::v4([10, 0, 0, 2], 80, 3);
        let c = Dest::v4([10, 0, 0, 3], 80, 2);
        let mut s = Wrr::new();
        let l = build(&mut s, &[a.clone(), b.clone(), c.clone()]);
        let names = [(&a, 'A'), (&b, 'B'), (&c, 'C')];
        let got = letters(&l, &names, picks(&mut s, &l, 3 + 9 + 9));
        assert_eq!(got, "CBA".to_owned() + "ABACBACBA" + "ABACBACBA");
    }

    #[test]
    fn worked_example_432_fresh_init() {
        // Idealised: init_service over A, B, C in that list order → A A B A B C A B C.
        let a = Dest::v4([10, 0, 0, 1], 80, 4);
        let b = Dest::v4([10, 0, 0, 2], 80, 3);
        let c = Dest::v4([10, 0, 0, 3], 80, 2);
        let l = vec![a.clone(), b.clone(), c.clone()];
        let mut s = Wrr::new();
        s.init_service(&l, 0);
        let names = [(&a, 'A'), (&b, 'B'), (&c, 'C')];
        assert_eq!(
            letters(&l, &names, picks(&mut s, &l, 18)),
            "AABABCABCAABABCABC"
        );
    }

    #[test]
    fn weights_4_6_give_3_to_2() {
        // A=4, B=6 → L = B, A; di = 2, mw = 5; cw stays 1 after adding B.
        let a = Dest::v4([10, 0, 0, 1], 80, 4);
        let b = Dest::v4([10, 0, 0, 2], 80, 6);
        let mut s = Wrr::new();
        let l = build(&mut s, &[a.clone(), b.clone()]);
        assert_eq!((s.di, s.mw, s.cw), (2, 5, 1));
        let names = [(&a, 'A'), (&b, 'B')];
        // Rest of the cw=1 pass (B A), then periods B | B A | B A.
        assert_eq!(letters(&l, &names, picks(&mut s, &l, 12)), "BABBABABBABA");
    }

    #[test]
    fn weight0_never_chosen_and_all_zero_is_none() {
        let a = Dest::v4([10, 0, 0, 1], 80, 0);
        let b = Dest::v4([10, 0, 0, 2], 80, 2);
        let mut s = Wrr::new();
        let l = build(&mut s, &[a, b]); // B(2), A(0)
        assert!(picks(&mut s, &l, 10).iter().all(|p| *p == Some(0)));
        l[0].weight.store(0, Relaxed);
        s.dests_changed(&l, DestChange::Edited(0), 0);
        assert_eq!((s.mw, s.di), (0, 1));
        assert_eq!(picks(&mut s, &l, 2), vec![None, None]);
    }

    #[test]
    fn overloaded_skipped_then_all_overloaded_is_none() {
        let a = Dest::v4([10, 0, 0, 1], 80, 1);
        let b = Dest::v4([10, 0, 0, 2], 80, 3);
        let mut s = Wrr::new();
        let l = build(&mut s, &[a, b]); // B(3), A(1)
        l[0].flags.fetch_or(DEST_F_OVERLOAD, Relaxed);
        assert_eq!(picks(&mut s, &l, 4), vec![Some(1); 4]);
        l[1].flags.fetch_or(DEST_F_OVERLOAD, Relaxed);
        assert_eq!(picks(&mut s, &l, 2), vec![None, None]);
        l[0].flags.fetch_and(!DEST_F_OVERLOAD, Relaxed);
        assert_eq!(picks(&mut s, &l, 1), vec![Some(0)]);
    }

    #[test]
    fn edit_realigns_cw_with_gcd() {
        // L = B(6), A(4): di 2, mw 5. Two picks (B at cw 5, B at cw 3) leave cw = 3.
        let a = Dest::v4([10, 0, 0, 1], 80, 4);
        let b = Dest::v4([10, 0, 0, 2], 80, 6);
        let l = vec![b.clone(), a.clone()];
        let mut s = Wrr::new();
        s.init_service(&l, 0);
        assert_eq!(picks(&mut s, &l, 2), vec![Some(0), Some(0)]);
        assert_eq!(s.cw, 3);
        // B → 12: di 4, mw 12 − 3 = 9; cw 3 ≤ mw and ≠ 0 → (3 / 4) * 4 + 1 = 1.
        b.weight.store(12, Relaxed);
        s.dests_changed(&l, DestChange::Edited(0), 0);
        assert_eq!((s.di, s.mw, s.cw, s.cl), (4, 9, 1, None));
    }
}
