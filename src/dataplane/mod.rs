//! The data path: the pure pipeline and, at the edge, device I/O.
//!
//! [`pipeline`] is a function of (frame bytes, tables, clock) → verdict and is
//! tested and benchmarked without a device; [`device`] opens the TUN/TAP
//! queues the daemon's workers read and write. In tap mode [`l2`] wraps the
//! pipeline with the Ethernet layer, [`neigh`] is its neighbour table and
//! [`l2_tunnel`] gives tunnel real servers their routes.
pub mod buf;
pub mod device;
pub mod drop;
pub mod l2;
pub mod l2_tunnel;
pub mod neigh;
pub mod pipeline;
pub mod queue_loop;
pub mod tunnel_icmp;
pub mod tunnel_route;
pub mod xmit_tunnel;
