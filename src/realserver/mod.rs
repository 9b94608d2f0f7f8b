//! `tunvs realserver …`: helpers that run on the real servers.
//!
//! * [`dr`]: `tunvs realserver dr` — the classic LVS-DR settings (VIP on `lo`,
//!   ARP sysctls, loose `rp_filter`), recorded so `--undo` reverses exactly them.
//! * [`tunnel`]: `tunvs realserver tunnel` — decapsulate IPIP, GUE or GRE in user
//!   space, for kernels without the `ipip`/`ip_gre`/`fou` modules, and hand the
//!   client's packet to the local stack through a TUN device that owns the VIP.
//! * [`arp`]: the real-server ARP settings LVS needs whenever the VIP is local on a
//!   real server (`arp_ignore=1`, `arp_announce=2`).
pub mod arp;
pub mod dr;
pub mod tunnel;

pub use dr::{dr_apply, dr_undo, DEFAULT_STATE_DIR, DR_HELP};
