//! twos: Power of Two Choices (spec §2.14, kernel `ip_vs_twos.c`; Mitzenmacher,
//! "The Power of Two Random Choices").
//!
//! Draws two weighted-random candidates among the non-OVERLOADed destinations
//! with weight > 0 and keeps the one with the lower `overhead / weight`.
//! Each draw is `r = random in 0..=total` (inclusive: the kernel takes
//! `random % (total + 1)`), and walks the list subtracting weights until
//! `r <= 0`. Because `r = 0` also stops at the first destination, the list head
//! is favoured: with weights 1, 1 it is drawn with probability 2/3 per choice.
//! The second candidate wins only if `w2 * oh1 > w1 * oh2`; these products are
//! C `int`s in the kernel, reproduced here with wrapping `i32` arithmetic.
//! Randomness comes from the caller's `Rng` so tests are repeatable.

use std::sync::Arc;

use super::{FlowInfo, SchedCtx, Scheduler};
use crate::service::Dest;

/// Power-of-two-choices scheduler (stateless).
#[derive(Debug, Default, Clone, Copy)]
pub struct Twos;

#[inline]
fn eligible(d: &Dest) -> Option<i32> {
    let w = d.weight();
    (!d.is_overloaded() && w > 0).then_some(w)
}

impl Scheduler for Twos {
    fn name(&self) -> &'static str {
        "twos"
    }

    fn schedule(
        &mut self,
        dests: &[Arc<Dest>],
        _flow: &FlowInfo,
        ctx: &mut SchedCtx,
    ) -> Option<usize> {
        let mut total: i32 = 0;
        // The kernel leaves choice1 at the last eligible dest of this pass; it
        // only matters if weights change between the two passes.
        let mut choice1 = None;
        for (i, d) in dests.iter().enumerate() {
            if let Some(w) = eligible(d) {
                total = total.wrapping_add(w);
                choice1 = Some(i);
            }
        }
        choice1?;
        let range = total.wrapping_add(1) as u32;
        let mut r1 = ctx.rng.below(range) as i32;
        let mut r2 = ctx.rng.below(range) as i32;

        let (mut w1, mut w2, mut oh1, mut oh2) = (-1i32, -1i32, 0i32, 0i32);
        let mut choice2 = None;
        for (i, d) in dests.iter().enumerate() {
            let Some(w) = eligible(d) else { continue };
            r1 = r1.wrapping_sub(w);
            r2 = r2.wrapping_sub(w);
            if r1 <= 0 && w1 == -1 {
                (choice1, w1, oh1) = (Some(i), w, d.overhead() as i32);
            }
            if r2 <= 0 && w2 == -1 {
                (choice2, w2, oh2) = (Some(i), w, d.overhead() as i32);
            }
            if w1 != -1 && w2 != -1 {
                break;
            }
        }
        if choice2.is_some() && w2.wrapping_mul(oh1) > w1.wrapping_mul(oh2) {
            choice1 = choice2;
        }
        choice1
    }
}

#[cfg(test)]
mod test {
    use super::*;
    use crate::sched::testutil::*;
    use crate::service::DEST_F_OVERLOAD;
    use crate::util::Rng;
    use std::sync::atomic::Ordering::Relaxed;

    /// Pick `n` times with a seeded RNG; count per list index.
    fn counts(l: &[Arc<Dest>], n: usize, seed: u64) -> Vec<usize> {
        let f = flow_from("10.0.0.1".parse().unwrap(), 1);
        let mut rng = Rng::seeded(seed);
        let mut ctx = SchedCtx {
            now_ms: 0,
            rng: &mut rng,
            svc_flags: 0,
        };
        let mut c = vec![0; l.len()];
        for _ in 0..n {
            c[Twos.schedule(l, &f, &mut ctx).unwrap()] += 1;
        }
        c
    }

    fn assert_share(got: usize, n: usize, p: f64) {
        let share = got as f64 / n as f64;
        assert!((share - p).abs() < 0.01, "share {share} expected {p}");
    }

    #[test]
    fn equal_weights_idle_favour_head_two_thirds() {
        // r ∈ {0, 1, 2}: 0 and 1 stop at the head; equal overheads keep choice1.
        let l = vec![
            Dest::v4([10, 0, 0, 1], 80, 1),
            Dest::v4([10, 0, 0, 2], 80, 1),
        ];
        let n = 60_000;
        let c = counts(&l, n, 42);
        assert_share(c[0], n, 2.0 / 3.0);
    }

    #[test]
    fn loaded_head_wins_only_if_both_choices_are_head() {
        // Head overhead 1, other 0: the other wins whenever either choice is it,
        // so P(head) = (2/3)^2 = 4/9.
        let l = vec![
            Dest::v4([10, 0, 0, 1], 80, 1),
            Dest::v4([10, 0, 0, 2], 80, 1),
        ];
        l[0].inactconns.store(1, Relaxed);
        let n = 60_000;
        let c = counts(&l, n, 7);
        assert_share(c[0], n, 4.0 / 9.0);
    }

    #[test]
    fn weighted_draw_distribution() {
        // Weights 3, 1 (total 4, r ∈ 0..=4): head for r ≤ 3 → 4/5 per choice.
        // Idle → choice1 kept → P(head) = 4/5.
        let l = vec![
            Dest::v4([10, 0, 0, 1], 80, 3),
            Dest::v4([10, 0, 0, 2], 80, 1),
        ];
        let n = 60_000;
        let c = counts(&l, n, 9);
        assert_share(c[0], n, 0.8);
        // Now head has overhead 256 (1 active): w2*oh1 > w1*oh2 when choice2 is the
        // second (1*256 > 3*0) → head only if choice2 is head: 4/5.
        // If choice1 is the second and choice2 is the head: 3*0 > 1*256 false → second.
        // So P(head) = P(c1 = head and c2 = head) = 16/25.
        l[0].activeconns.store(1, Relaxed);
        let c = counts(&l, n, 11);
        assert_share(c[0], n, 16.0 / 25.0);
    }

    #[test]
    fn weight0_and_overload_never_chosen() {
        let l = vec![
            Dest::v4([10, 0, 0, 1], 80, 0),
            Dest::v4([10, 0, 0, 2], 80, 2),
            Dest::v4([10, 0, 0, 3], 80, 5),
        ];
        l[2].flags.fetch_or(DEST_F_OVERLOAD, Relaxed);
        assert_eq!(counts(&l, 1000, 3), vec![0, 1000, 0]);
        l[1].weight.store(0, Relaxed);
        let mut s = Twos;
        assert_eq!(picks(&mut s, &l, 1), vec![None]);
    }
}
