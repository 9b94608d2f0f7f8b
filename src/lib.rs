//! tunvs: Linux IPVS/LVS rebuilt in user space over TUN/TAP devices.
//!
//! The library holds everything that works without a device: the service
//! model, schedulers, connection tracking, the packet pipeline, and the
//! `ipvsadm`-compatible command line. Devices, sockets and threads live at the
//! edges (`dataplane::device`, `control`, the binary).
#![deny(unsafe_op_in_unsafe_fn)]

pub mod dataplane;
pub mod netcfg;
pub mod sched;
pub mod service;
pub mod stats;
pub mod util;
