//! `tunvs realserver …`: helpers that run on the real servers.
//!
//! * [`tunnel`]: `tunvs realserver tunnel` — decapsulate IPIP, GUE or GRE in user
//!   space, for kernels without the `ipip`/`ip_gre`/`fou` modules, and hand the
//!   client's packet to the local stack through a TUN device that owns the VIP.
//! * [`arp`]: the real-server ARP settings LVS needs whenever the VIP is local on a
//!   real server (`arp_ignore=1`, `arp_announce=2`), shared with the direct-routing
//!   helper.
pub mod arp;
pub mod tunnel;
