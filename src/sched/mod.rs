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
    fn schedule(&mut self, dests: &[Arc<Dest>], flow: &FlowInfo, ctx: &mut SchedCtx)
        -> Option<usize>;

    /// Periodic housekeeping (lblc/lblcr cache expiry); called about every second.
    fn handle_timeout(&mut self, _now_ms: u64) {}
}

/// The registry (`ip_vs_sched_getbyname`): a fresh scheduler by name.
pub fn by_name(name: &str) -> Option<Box<dyn Scheduler>> {
    let _ = name;
    None
}

/// Names of every scheduler this build knows.
pub const NAMES: &[&str] = &[];
