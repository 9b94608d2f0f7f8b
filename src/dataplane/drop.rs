//! Why a packet was not forwarded. Every drop is counted by reason, per
//! worker, and summed when `tunvs drops` asks.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use crate::dataplane::xmit_tunnel::TunnelError;
use crate::packet::nat::RewriteError;
use crate::packet::parse::ParseError;

/// The reason a packet was dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropReason {
    /// The packet could not be parsed.
    Malformed(ParseError),
    /// No service and no connection matches it.
    NoMatch,
    /// A TCP packet without SYN (or with RST) for no known connection.
    NotSyn,
    /// The scheduler found no destination (an ICMP port unreachable was sent).
    NoDestination,
    /// The connection's destination was deleted (expire_nodest_conn=0).
    DestDeleted,
    /// The destination's forwarding method is not available in this device mode.
    MethodUnavailable,
    /// An ICMP error that quotes no tracked connection.
    IcmpUnrelated,
    /// ICMP that is not an error (echo etc.): not ours to forward.
    IcmpNotError,
    /// The device refused the write.
    WriteFailed,
    /// A rewrite refused the packet (ICMP checksum wrong, quoted header odd).
    Rewrite(RewriteError),
    /// Port 0 of a non-persistent service (kernel: "port zero only supported
    /// in persistent services").
    PortZeroNotPersistent,
    /// Tunnel transmit refused the packet (no route, MTU, segmentation).
    Tunnel(TunnelError),
    /// An ICMP error tunvs would have sent was suppressed by the rate limit
    /// (counted besides the reason of the packet's own drop).
    IcmpRateLimited,
    /// TTL ≤ 1 on a packet tunvs routes itself (tap-mode NAT); an ICMP time
    /// exceeded went back.
    TtlExceeded,
}

/// The reasons without a payload, in counter order, with their names.
const PLAIN: [(DropReason, &str); 11] = [
    (DropReason::NoMatch, "no_match"),
    (DropReason::NotSyn, "not_syn"),
    (DropReason::NoDestination, "no_destination"),
    (DropReason::DestDeleted, "dest_deleted"),
    (DropReason::MethodUnavailable, "method_unavailable"),
    (DropReason::IcmpUnrelated, "icmp_unrelated"),
    (DropReason::IcmpNotError, "icmp_not_error"),
    (DropReason::WriteFailed, "write_failed"),
    (
        DropReason::PortZeroNotPersistent,
        "port_zero_not_persistent",
    ),
    (DropReason::IcmpRateLimited, "icmp_rate_limited"),
    (DropReason::TtlExceeded, "ttl_exceeded"),
];
/// Counter slots: the plain reasons, then the parse, rewrite and tunnel
/// errors, each range as long as its error enum.
const PARSE_SLOT: usize = PLAIN.len();
const REWRITE_SLOT: usize = PARSE_SLOT + ParseError::ALL.len();
const TUNNEL_SLOT: usize = REWRITE_SLOT + RewriteError::ALL.len();
/// Number of counter slots.
pub const SLOTS: usize = TUNNEL_SLOT + TunnelError::ALL.len();

impl DropReason {
    /// Counter slot.
    pub fn index(self) -> usize {
        match self {
            DropReason::Malformed(e) => PARSE_SLOT + e.index(),
            DropReason::Rewrite(e) => REWRITE_SLOT + e.index(),
            DropReason::Tunnel(e) => TUNNEL_SLOT + e.index(),
            plain => PLAIN.iter().position(|(r, _)| *r == plain).unwrap_or(0),
        }
    }

    /// Name of a counter slot.
    pub fn slot_name(i: usize) -> Option<&'static str> {
        if i < PARSE_SLOT {
            PLAIN.get(i).map(|(_, n)| *n)
        } else if i < REWRITE_SLOT {
            ParseError::ALL.get(i - PARSE_SLOT).map(|e| e.name())
        } else if i < TUNNEL_SLOT {
            // Prefixed: "truncated" also names a parse error.
            RewriteError::ALL.get(i - REWRITE_SLOT).map(|e| match e {
                RewriteError::AddrFamily => "rewrite_addr_family",
                RewriteError::Truncated => "rewrite_truncated",
                RewriteError::BadChecksum => "icmp_bad_checksum",
                RewriteError::BadEmbedded => "icmp_bad_embedded",
            })
        } else {
            TunnelError::ALL.get(i - TUNNEL_SLOT).map(|e| e.name())
        }
    }
}

/// Add to a counter that only one thread writes (a worker's own counters):
/// a plain load and store, no locked instruction; readers see whole values.
#[inline]
pub fn bump(c: &AtomicU64, n: u64) {
    c.store(c.load(Relaxed).wrapping_add(n), Relaxed);
}

/// Counters of one worker (atomics so the control thread can read them;
/// only the owning worker writes, so they never contend).
#[derive(Debug)]
pub struct Counters {
    /// Packets forwarded (written back).
    pub forwarded: AtomicU64,
    /// ICMP replies generated.
    pub replies: AtomicU64,
    /// GSO super-packets cut into segments in user space (tunnel mode).
    pub segmented: AtomicU64,
    drops: [AtomicU64; SLOTS],
}

impl Default for Counters {
    fn default() -> Self {
        Counters {
            forwarded: AtomicU64::new(0),
            replies: AtomicU64::new(0),
            segmented: AtomicU64::new(0),
            drops: std::array::from_fn(|_| AtomicU64::new(0)),
        }
    }
}

impl Counters {
    /// Count one drop.
    #[inline]
    pub fn count_drop(&self, r: DropReason) {
        if let Some(c) = self.drops.get(r.index()) {
            bump(c, 1);
        }
    }

    /// Count of one reason.
    pub fn get(&self, r: DropReason) -> u64 {
        self.drops.get(r.index()).map_or(0, |c| c.load(Relaxed))
    }

    /// All counters summed over `workers`, as `(name, value)` rows, preceded by
    /// `forwarded`, `icmp_replies` and `gso_segmented`.
    pub fn report(workers: &[std::sync::Arc<Counters>]) -> Vec<(&'static str, u64)> {
        let sum = |f: &dyn Fn(&Counters) -> u64| workers.iter().map(|w| f(w)).sum::<u64>();
        let mut rows = vec![
            ("forwarded", sum(&|c| c.forwarded.load(Relaxed))),
            ("icmp_replies", sum(&|c| c.replies.load(Relaxed))),
            ("gso_segmented", sum(&|c| c.segmented.load(Relaxed))),
        ];
        for i in 0..SLOTS {
            if let Some(name) = DropReason::slot_name(i) {
                rows.push((name, sum(&|c| c.drops[i].load(Relaxed))));
            }
        }
        rows
    }
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn every_reason_has_its_own_named_slot() {
        let mut all: Vec<DropReason> = PLAIN.iter().map(|(r, _)| *r).collect();
        all.extend(ParseError::ALL.map(DropReason::Malformed));
        all.extend(RewriteError::ALL.map(DropReason::Rewrite));
        all.extend(TunnelError::ALL.map(DropReason::Tunnel));
        let slots: Vec<usize> = all.iter().map(|r| r.index()).collect();
        assert_eq!(slots, (0..SLOTS).collect::<Vec<_>>(), "dense and distinct");
        let names: std::collections::HashSet<&str> = (0..SLOTS)
            .map(|i| DropReason::slot_name(i).unwrap())
            .collect();
        assert_eq!(names.len(), SLOTS, "names are distinct");
        assert_eq!(DropReason::slot_name(SLOTS), None);
    }
}
