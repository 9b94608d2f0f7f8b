//! The real-server ARP settings of LVS direct routing and tunnelling: a real
//! server holds the VIP locally but must neither answer ARP for it nor use it as
//! the source of its own ARP requests, or clients' routers would send VIP traffic
//! straight to it instead of the director:
//! * `net.ipv4.conf.all.arp_ignore=1`: answer ARP only for addresses configured on
//!   the interface the request arrived on;
//! * `net.ipv4.conf.all.arp_announce=2`: in ARP requests use the best local
//!   address for the target, never the VIP.
//!
//! (The same settings as the kernel selftest's real server, spec §5.4.) Kept in
//! this small module so `realserver dr` can share it.

use std::io;

use crate::netcfg::sysctl::{self, SysctlChange};

/// The settings, as `(key, minimum value)`: a stricter value an operator set
/// (e.g. `arp_ignore=2`) is left alone.
pub const ARP_SETTINGS: [(&str, u32); 2] = [
    ("net.ipv4.conf.all.arp_ignore", 1),
    ("net.ipv4.conf.all.arp_announce", 2),
];

/// Raise the [`ARP_SETTINGS`] where they are below their minimum; returns
/// what was changed (to [`restore`] later). On error the changes made so far
/// are undone.
pub fn apply() -> io::Result<Vec<SysctlChange>> {
    let mut done = Vec::new();
    for (k, v) in ARP_SETTINGS {
        match sysctl::raise(k, v) {
            Ok(Some(c)) => done.push(c),
            Ok(None) => {}
            Err(e) => {
                restore(&done);
                return Err(e);
            }
        }
    }
    Ok(done)
}

/// Put back what [`apply`] changed, newest first (best effort; errors are printed).
pub fn restore(changes: &[SysctlChange]) {
    for c in changes.iter().rev() {
        if let Err(e) = c.restore() {
            eprintln!("tunvs: cannot restore {}: {e}", c.key);
        }
    }
}

/// The commands an operator runs to apply the settings by hand.
pub fn commands() -> Vec<String> {
    ARP_SETTINGS
        .iter()
        .map(|(k, v)| sysctl::command(k, &v.to_string()))
        .collect()
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn commands_are_the_lvs_settings() {
        assert_eq!(
            commands(),
            [
                "sysctl -w net.ipv4.conf.all.arp_ignore=1",
                "sysctl -w net.ipv4.conf.all.arp_announce=2"
            ]
        );
    }
}
