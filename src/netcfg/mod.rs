//! Host network configuration for tun mode, without running `ip`: a minimal
//! rtnetlink client ([`Netlink`]: links, addresses, FIB rules, routes),
//! `/proc/sys` access ([`sysctl`]) and the steering manager the daemon uses
//! ([`steer::Steering`]) to send only virtual-service traffic into the device.
//!
//! Everything here is control path: it allocates freely and blocks on the
//! netlink socket. A [`Netlink`] socket belongs to the network namespace of
//! the thread that opened it.

pub mod link;
pub mod nl;
pub mod route;
pub mod rule;
pub mod steer;
pub mod sysctl;

use std::io;
use std::net::IpAddr;

pub use link::Link;
pub use nl::Netlink;
pub use route::Route;
pub use rule::{Rule, RuleAction};
pub use steer::Steering;

/// An address family, as rules and routes need one even without addresses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Family {
    /// IPv4 (`AF_INET`).
    V4,
    /// IPv6 (`AF_INET6`).
    V6,
}

impl Family {
    /// The `AF_*` number the kernel uses.
    pub fn af(self) -> u8 {
        match self {
            Family::V4 => libc::AF_INET as u8,
            Family::V6 => libc::AF_INET6 as u8,
        }
    }

    /// From an `AF_*` number.
    pub fn from_af(af: u8) -> Option<Family> {
        match af as libc::c_int {
            libc::AF_INET => Some(Family::V4),
            libc::AF_INET6 => Some(Family::V6),
            _ => None,
        }
    }

    /// The family of an address.
    pub fn of(addr: IpAddr) -> Family {
        match addr {
            IpAddr::V4(_) => Family::V4,
            IpAddr::V6(_) => Family::V6,
        }
    }

    /// Full-length prefix for this family (32 or 128).
    pub fn max_prefix(self) -> u8 {
        match self {
            Family::V4 => 32,
            Family::V6 => 128,
        }
    }

    /// `ip` option selecting the family (`-4`/`-6`), as `ip` prints it.
    pub fn ip_flag(self) -> &'static str {
        match self {
            Family::V4 => "",
            Family::V6 => " -6",
        }
    }
}

/// The errno behind an error from this module (or any OS error), if any.
pub fn errno(e: &io::Error) -> Option<i32> {
    e.raw_os_error().or_else(|| {
        e.get_ref()
            .and_then(|inner| inner.downcast_ref::<nl::NlError>())
            .map(|n| n.errno)
    })
}
