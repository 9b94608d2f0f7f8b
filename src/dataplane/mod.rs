//! The data plane's edge: the TUN/TAP device the kernel steers virtual-service
//! traffic into, and (later) the per-queue worker loops.

pub mod device;
