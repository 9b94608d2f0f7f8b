//! tunvs: Linux IPVS/LVS rebuilt in user space over TUN/TAP devices.
//!
//! The library holds everything that works without a device: the service
//! model, schedulers, connection tracking, the packet pipeline, and the
//! `ipvsadm`-compatible command line. Devices, sockets and threads live at the
//! edges (`dataplane::device`, `netcfg`, `control`, `daemon`, the binary).
#![deny(unsafe_op_in_unsafe_fn)]

pub mod adm;
pub mod conntrack;
pub mod control;
pub mod daemon;
pub mod dataplane;
pub mod director;
pub mod netcfg;
pub mod packet;
pub mod realserver;
pub mod sched;
pub mod service;
pub mod stats;
pub mod util;
