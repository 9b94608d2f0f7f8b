//! Schedulers: one file per algorithm behind one trait, as the kernel's
//! `ip_vs_*.c` files share one `struct ip_vs_scheduler` (spec §2).
//!
//! A scheduler gets the service's destinations in kernel list order
//! (newest first, spec §1.1) and owns only its private state (the kernel's
//! `sched_data`). It is called only when a connection-table lookup misses.

use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;

use crate::service::Dest;
use crate::util::Rng;

pub mod dh;
pub mod fo;
pub mod hash;
pub mod lblc;
pub mod lblcr;
pub mod lc;
pub mod locality;
pub mod mh;
pub mod nq;
pub mod ovf;
pub mod rr;
pub mod sed;
pub mod sh;
pub mod twos;
pub mod wlc;
pub mod wrr;

/// What a scheduler may look at in the packet that starts a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FlowInfo {
    /// IP protocol number.
    pub proto: u8,
    /// Packet source address (client).
    pub saddr: IpAddr,
    /// Packet source port.
    pub sport: u16,
    /// Packet destination address (VIP).
    pub daddr: IpAddr,
    /// Packet destination port.
    pub dport: u16,
    /// True for an ICMP-embedded ("inverse") header: hash the other side.
    pub inverse: bool,
}

/// Context of one scheduling decision.
#[derive(Debug)]
pub struct SchedCtx<'a> {
    /// Milliseconds on the daemon clock.
    pub now_ms: u64,
    /// Randomness (`twos`), seeded by the caller.
    pub rng: &'a mut Rng,
    /// The service's `SVC_F_*` flags (`sh-port`, `mh-fallback`, …).
    pub svc_flags: u32,
}

/// Which change happened to the destination list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DestChange {
    /// A destination was inserted at this index (always 0: the head).
    Added(usize),
    /// The destination at this index (in the list *before* removal) was removed.
    Removed(usize),
    /// The destination at this index was edited (weight, thresholds, …).
    Edited(usize),
}

/// One scheduling algorithm (the kernel's `struct ip_vs_scheduler`).
pub trait Scheduler: Send + fmt::Debug {
    /// The name ipvsadm shows (`rr`, `wlc`, …).
    fn name(&self) -> &'static str;

    /// Called when the scheduler is bound to a service (`init_service`).
    fn init_service(&mut self, _dests: &[Arc<Dest>], _svc_flags: u32) {}

    /// Called after every add/del/edit of a destination; `dests` is the new list.
    fn dests_changed(&mut self, _dests: &[Arc<Dest>], _change: DestChange, _svc_flags: u32) {}

    /// Pick a destination: an index into `dests`, or `None` for "no destination available".
    fn schedule(
        &mut self,
        dests: &[Arc<Dest>],
        flow: &FlowInfo,
        ctx: &mut SchedCtx,
    ) -> Option<usize>;

    /// Periodic housekeeping (lblc/lblcr cache expiry); called about every second.
    fn handle_timeout(&mut self, _now_ms: u64) {}
}

/// The gcd of the positive values `weight(d)` over `dests` (0 if none):
/// wrr's interval over weights, mh's over last weights.
pub fn weight_gcd(dests: &[Arc<Dest>], weight: impl Fn(&Dest) -> i32) -> i32 {
    fn gcd(mut a: i32, mut b: i32) -> i32 {
        while b != 0 {
            (a, b) = (b, a % b);
        }
        a
    }
    dests
        .iter()
        .map(|d| weight(d))
        .filter(|&w| w > 0)
        .fold(0, |g, w| if g > 0 { gcd(w, g) } else { w })
}

/// The registry (`ip_vs_sched_getbyname`), in ipvsadm(8) order: one table,
/// so names and constructors cannot drift apart.
///
/// `"none"` is not a scheduler here either: the kernel special-cases that name
/// in the control path rather than registering it.
const REGISTRY: [(&str, NewScheduler); 14] = [
    ("rr", || Box::new(rr::Rr::new())),
    ("wrr", || Box::new(wrr::Wrr::new())),
    ("lc", || Box::new(lc::Lc)),
    ("wlc", || Box::new(wlc::Wlc)),
    ("lblc", || Box::new(lblc::Lblc::new())),
    ("lblcr", || Box::new(lblcr::Lblcr::new())),
    ("dh", || Box::new(dh::Dh::new())),
    ("sh", || Box::new(sh::Sh::new())),
    ("sed", || Box::new(sed::Sed)),
    ("nq", || Box::new(nq::Nq)),
    ("fo", || Box::new(fo::Fo)),
    ("ovf", || Box::new(ovf::Ovf)),
    ("mh", || Box::new(mh::Mh::new())),
    ("twos", || Box::new(twos::Twos)),
];

/// Builds a fresh scheduler.
type NewScheduler = fn() -> Box<dyn Scheduler>;

/// A fresh scheduler by name.
pub fn by_name(name: &str) -> Option<Box<dyn Scheduler>> {
    REGISTRY
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, new)| new())
}

/// Names of every scheduler this build knows (ipvsadm(8) order).
pub fn names() -> impl Iterator<Item = &'static str> {
    REGISTRY.iter().map(|(n, _)| *n)
}

/// Test helpers shared by the per-scheduler unit tests.
#[cfg(test)]
pub(crate) mod testutil {
    use super::*;
    use std::net::Ipv4Addr;

    /// A TCP flow from `saddr:sport` to 192.0.2.1:80.
    pub fn flow_from(saddr: IpAddr, sport: u16) -> FlowInfo {
        FlowInfo {
            proto: 6,
            saddr,
            sport,
            daddr: IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)),
            dport: 80,
            inverse: false,
        }
    }

    /// A TCP flow from 10.1.1.1:1234 to `daddr:80` (lblc/lblcr/dh key).
    pub fn flow_to(daddr: IpAddr) -> FlowInfo {
        FlowInfo {
            daddr,
            ..flow_from(IpAddr::V4(Ipv4Addr::new(10, 1, 1, 1)), 1234)
        }
    }

    /// Bind `s` to an empty service, then add `in_order` one by one at the head,
    /// as `ipvsadm -A; -a; -a; …` does. Returns the list in kernel order.
    pub fn build(s: &mut dyn Scheduler, in_order: &[Arc<Dest>]) -> Vec<Arc<Dest>> {
        build_flags(s, in_order, 0)
    }

    /// `build` with service flags.
    pub fn build_flags(
        s: &mut dyn Scheduler,
        in_order: &[Arc<Dest>],
        flags: u32,
    ) -> Vec<Arc<Dest>> {
        let mut l: Vec<Arc<Dest>> = Vec::new();
        s.init_service(&l, flags);
        for d in in_order {
            l.insert(0, d.clone());
            s.dests_changed(&l, DestChange::Added(0), flags);
        }
        l
    }

    /// `n` picks for a fixed flow at time 0.
    pub fn picks(s: &mut dyn Scheduler, l: &[Arc<Dest>], n: usize) -> Vec<Option<usize>> {
        let f = flow_from(IpAddr::V4(Ipv4Addr::new(10, 9, 9, 9)), 4321);
        let mut rng = Rng::seeded(1);
        let mut ctx = SchedCtx {
            now_ms: 0,
            rng: &mut rng,
            svc_flags: 0,
        };
        (0..n).map(|_| s.schedule(l, &f, &mut ctx)).collect()
    }

    /// One pick for `flow` with flags and time.
    pub fn pick_at(
        s: &mut dyn Scheduler,
        l: &[Arc<Dest>],
        flow: &FlowInfo,
        flags: u32,
        now_ms: u64,
    ) -> Option<usize> {
        let mut rng = Rng::seeded(1);
        let mut ctx = SchedCtx {
            now_ms,
            rng: &mut rng,
            svc_flags: flags,
        };
        s.schedule(l, flow, &mut ctx)
    }
}
