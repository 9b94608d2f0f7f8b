//! `tunvs realserver`: helpers run on the real servers.
//!
//! `tunvs realserver dr --vip V` applies the classic LVS-DR settings
//! (LVS-HOWTO "the ARP problem"; the kernel selftest `ipvs.sh` DR case):
//! * the VIP as a host address (/32, /128) on `lo` (`--dev`), so the real
//!   server accepts packets addressed to it; `lo` is set up if it is down;
//! * `net.ipv4.conf.all.arp_ignore` at least 1 (answer ARP only for
//!   addresses of the interface it arrives on: never for the VIP on `lo`)
//!   and `net.ipv4.conf.all.arp_announce` 2 (never use the VIP as the source
//!   of ARP requests), so the LAN keeps sending the VIP to the director;
//! * strict reverse-path filtering (`rp_filter` = 1) made loose (2) on
//!   `all`, `default` and every interface: a DR request arrives from the
//!   client's address on the LAN interface, which strict mode drops whenever
//!   the way back to the client leaves by another interface (the `ipvs.sh`
//!   topology is exactly that). 0 and 2 are left alone.
//!
//! Every change is recorded in a state file (`--state-dir`, default
//! `/run/tunvs`), keyed by network namespace and VIP, and `--undo` reverses
//! exactly those changes: a sysctl goes back to its old value only if it
//! still holds the value tunvs wrote, and an address tunvs did not add is
//! never removed. The arp/rp_filter settings are shared by all VIPs of a
//! namespace, so undoing one VIP while another is still applied hands them
//! over to the other's record instead of restoring them. Running it twice
//! for a VIP records only what the second run changed.
//!
//! It needs root (or CAP_NET_ADMIN and write access to `/proc/sys/net`) in
//! the real server's network namespace; a failure part-way rolls back what
//! was already changed.

use std::fs;
use std::io;
use std::net::IpAddr;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use crate::netcfg::{self, sysctl, Netlink};

/// Default directory of the state files.
pub const DEFAULT_STATE_DIR: &str = "/run/tunvs";

/// Extra help of `tunvs realserver dr`.
pub const DR_HELP: &str = "\
What it changes (and --undo reverses, exactly):
  ip addr add VIP/32 dev lo                    (and ip link set lo up if down)
  sysctl -w net.ipv4.conf.all.arp_ignore=1     (if it was 0)
  sysctl -w net.ipv4.conf.all.arp_announce=2   (if it was lower)
  sysctl -w net.ipv4.conf.IF.rp_filter=2       (for all, default and every
                                                interface where it was 1)
The record is kept in --state-dir, per network namespace and VIP.
Needs root (or CAP_NET_ADMIN) in the real server's network namespace.";

/// One recorded change.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Change {
    /// An address tunvs added.
    Addr { dev: String, addr: IpAddr, len: u8 },
    /// A link tunvs set up.
    LinkUp { dev: String },
    /// A sysctl tunvs wrote.
    Sysctl {
        key: String,
        old: String,
        new: String,
    },
}

impl Change {
    fn line(&self) -> String {
        match self {
            Change::Addr { dev, addr, len } => format!("addr {dev} {addr}/{len}"),
            Change::LinkUp { dev } => format!("linkup {dev}"),
            Change::Sysctl { key, old, new } => format!("sysctl {key} {old} {new}"),
        }
    }

    fn parse(line: &str) -> Option<Change> {
        let w: Vec<&str> = line.split_whitespace().collect();
        match w.as_slice() {
            ["addr", dev, cidr] => {
                let (a, l) = cidr.split_once('/')?;
                Some(Change::Addr {
                    dev: dev.to_string(),
                    addr: a.parse().ok()?,
                    len: l.parse().ok()?,
                })
            }
            ["linkup", dev] => Some(Change::LinkUp {
                dev: dev.to_string(),
            }),
            ["sysctl", key, old, new] => Some(Change::Sysctl {
                key: key.to_string(),
                old: old.to_string(),
                new: new.to_string(),
            }),
            _ => None,
        }
    }

    /// Shared by every VIP of the namespace (handed over, not undone, while
    /// another VIP is applied).
    fn shared(&self) -> bool {
        !matches!(self, Change::Addr { .. })
    }
}

/// The network namespace's identity (inode of /proc/self/ns/net).
fn netns_id() -> io::Result<u64> {
    Ok(fs::metadata("/proc/self/ns/net")?.ino())
}

fn state_prefix(dir: &Path, ns: u64) -> String {
    format!("{}/realserver-dr-{ns}-", dir.display())
}

fn state_file(dir: &Path, ns: u64, vip: IpAddr) -> PathBuf {
    PathBuf::from(format!("{}{vip}.state", state_prefix(dir, ns)))
}

fn read_state(path: &Path) -> io::Result<Vec<Change>> {
    let text = fs::read_to_string(path)?;
    text.lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .map(|l| {
            Change::parse(l).ok_or_else(|| {
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("{}: unreadable line {l:?}", path.display()),
                )
            })
        })
        .collect()
}

fn write_state(path: &Path, vip: IpAddr, changes: &[Change]) -> io::Result<()> {
    let mut s = format!("# tunvs realserver dr --vip {vip}: what to undo\n");
    for c in changes {
        s.push_str(&c.line());
        s.push('\n');
    }
    let tmp = path.with_extension("tmp");
    fs::write(&tmp, s)?;
    fs::rename(&tmp, path)
}

/// True for errors that mean "not permitted".
fn denied(e: &io::Error) -> bool {
    matches!(
        netcfg::errno(e),
        Some(libc::EPERM) | Some(libc::EACCES) | Some(libc::EROFS)
    ) || e.kind() == io::ErrorKind::PermissionDenied
}

fn explain(what: &str, e: io::Error) -> String {
    if denied(&e) {
        format!(
            "{what}: {e}: not permitted. `tunvs realserver dr` needs root (or CAP_NET_ADMIN and \
             write access to /proc/sys/net) in the real server's network namespace: run it with sudo"
        )
    } else {
        format!("{what}: {e}")
    }
}

fn undo_one(c: &Change, nl: &mut Option<Netlink>, out: &mut Vec<String>) -> Result<(), String> {
    match c {
        Change::Sysctl { key, old, new } => {
            let cur = sysctl::read(key).map_err(|e| explain("sysctl", e))?;
            if cur == *new {
                sysctl::write(key, old).map_err(|e| explain(&format!("sysctl {key}"), e))?;
                out.push(format!("{key}: {new} -> {old} (restored)"));
            } else {
                out.push(format!(
                    "{key}: left at {cur} (tunvs set {new}, something changed it since)"
                ));
            }
        }
        Change::Addr { dev, addr, len } => {
            let nl = netlink(nl)?;
            let ix = nl
                .link_index(dev)
                .map_err(|e| explain(&format!("device {dev}"), e))?;
            match nl.addr_del(ix, *addr, *len) {
                Ok(()) => out.push(format!("removed {addr}/{len} from {dev}")),
                Err(e)
                    if matches!(
                        netcfg::errno(&e),
                        Some(libc::EADDRNOTAVAIL) | Some(libc::ENOENT)
                    ) =>
                {
                    out.push(format!("{addr}/{len} was already gone from {dev}"))
                }
                Err(e) => return Err(explain(&format!("ip addr del {addr}/{len} dev {dev}"), e)),
            }
        }
        Change::LinkUp { dev } => {
            let nl = netlink(nl)?;
            let ix = nl
                .link_index(dev)
                .map_err(|e| explain(&format!("device {dev}"), e))?;
            nl.link_set_up(ix, false)
                .map_err(|e| explain(&format!("ip link set {dev} down"), e))?;
            out.push(format!("set {dev} down again"));
        }
    }
    Ok(())
}

fn netlink(nl: &mut Option<Netlink>) -> Result<&mut Netlink, String> {
    if nl.is_none() {
        *nl = Some(Netlink::open().map_err(|e| explain("netlink", e))?);
    }
    Ok(nl.as_mut().expect("just opened"))
}

/// Set `key` to `value` unless it already holds one at least as strict
/// (`at_least`), recording the change.
fn raise(
    key: &str,
    value: u32,
    at_least: bool,
    changes: &mut Vec<Change>,
    out: &mut Vec<String>,
) -> Result<(), String> {
    let cur = sysctl::read(key).map_err(|e| explain("sysctl", e))?;
    let n: u32 = cur.parse().unwrap_or(0);
    if n == value || (at_least && n > value) {
        out.push(format!("{key}: already {cur}"));
        return Ok(());
    }
    let old =
        sysctl::write(key, &value.to_string()).map_err(|e| explain(&format!("sysctl {key}"), e))?;
    out.push(format!("{key}: {old} -> {value}"));
    changes.push(Change::Sysctl {
        key: key.to_string(),
        old,
        new: value.to_string(),
    });
    Ok(())
}

/// Every `net.ipv4.conf.*` name: all, default and the interfaces.
fn conf_names() -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir("/proc/sys/net/ipv4/conf")
        .map(|d| {
            d.filter_map(|e| e.ok())
                .filter_map(|e| e.file_name().into_string().ok())
                .collect()
        })
        .unwrap_or_default();
    v.sort_by_key(|n| (n != "all", n != "default", n.clone()));
    v
}

fn apply_changes(
    vip: IpAddr,
    dev: &str,
    changes: &mut Vec<Change>,
    out: &mut Vec<String>,
) -> Result<(), String> {
    let mut nl = Netlink::open().map_err(|e| explain("netlink", e))?;
    let link = nl
        .link_get(dev)
        .map_err(|e| explain(&format!("device {dev}"), e))?;
    if !link.is_up() {
        nl.link_set_up(link.index, true)
            .map_err(|e| explain(&format!("ip link set {dev} up"), e))?;
        changes.push(Change::LinkUp {
            dev: dev.to_string(),
        });
        out.push(format!("set {dev} up"));
    }
    let len = if vip.is_ipv4() { 32 } else { 128 };
    match nl.addr_add(link.index, vip, len) {
        Ok(()) => {
            changes.push(Change::Addr {
                dev: dev.to_string(),
                addr: vip,
                len,
            });
            out.push(format!("added {vip}/{len} to {dev}"));
        }
        Err(e) if netcfg::errno(&e) == Some(libc::EEXIST) => {
            out.push(format!(
                "{vip}/{len} is already on {dev} (left in place by --undo)"
            ));
        }
        Err(e) => return Err(explain(&format!("ip addr add {vip}/{len} dev {dev}"), e)),
    }
    if vip.is_ipv4() {
        for (key, min) in super::arp::ARP_SETTINGS {
            raise(key, min, true, changes, out)?;
        }
        for name in conf_names() {
            let key = sysctl::conf_key(netcfg::Family::V4, &name, "rp_filter");
            if sysctl::read(&key).ok().as_deref() == Some("1") {
                raise(&key, 2, false, changes, out)?;
            }
        }
    }
    Ok(())
}

/// Apply the DR settings for `vip` (see the module documentation); returns
/// what was done, one line each.
pub fn dr_apply(vip: IpAddr, dev: &str, state_dir: &Path) -> Result<Vec<String>, String> {
    let ns = netns_id().map_err(|e| format!("/proc/self/ns/net: {e}"))?;
    let path = state_file(state_dir, ns, vip);
    let mut changes = match read_state(&path) {
        Ok(c) => c,
        Err(e) if e.kind() == io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(format!("{}: {e}", path.display())),
    };
    fs::create_dir_all(state_dir).map_err(|e| {
        format!(
            "{}, or keep the record elsewhere with --state-dir",
            explain(&format!("cannot create {}", state_dir.display()), e)
        )
    })?;
    let before = changes.len();
    let mut out = Vec::new();
    let res = apply_changes(vip, dev, &mut changes, &mut out).and_then(|()| {
        write_state(&path, vip, &changes)
            .map_err(|e| explain(&format!("cannot write {}", path.display()), e))
    });
    if let Err(e) = res {
        // Roll back what this run changed.
        let mut nl = None;
        let mut ignored = Vec::new();
        for c in changes[before..].iter().rev() {
            let _ = undo_one(c, &mut nl, &mut ignored);
        }
        return Err(e);
    }
    out.push(format!("recorded in {}", path.display()));
    Ok(out)
}

/// Reverse what [`dr_apply`] recorded for `vip`; returns what was done.
pub fn dr_undo(vip: IpAddr, _dev: &str, state_dir: &Path) -> Result<Vec<String>, String> {
    let ns = netns_id().map_err(|e| format!("/proc/self/ns/net: {e}"))?;
    let path = state_file(state_dir, ns, vip);
    let changes = match read_state(&path) {
        Ok(c) => c,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Err(format!(
                "nothing to undo: no record of `tunvs realserver dr --vip {vip}` in this network \
                 namespace ({} does not exist)",
                path.display()
            ))
        }
        Err(e) => return Err(format!("{}: {e}", path.display())),
    };
    // Another VIP of this namespace still applied takes over the shared
    // settings.
    let prefix = state_prefix(state_dir, ns);
    let heir = fs::read_dir(state_dir)
        .ok()
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| {
            let s = p.to_string_lossy();
            s.starts_with(&prefix) && s.ends_with(".state") && *p != path
        })
        .min();
    let mut out = Vec::new();
    let mut handed = Vec::new();
    let mut nl = None;
    for c in changes.iter().rev() {
        if c.shared() && heir.is_some() {
            handed.push(c.clone());
            continue;
        }
        undo_one(c, &mut nl, &mut out)?;
    }
    if let Some(h) = heir {
        if !handed.is_empty() {
            let mut theirs = read_state(&h).map_err(|e| format!("{}: {e}", h.display()))?;
            handed.reverse();
            let mut merged = handed;
            merged.append(&mut theirs);
            let hv: IpAddr = h
                .to_string_lossy()
                .trim_start_matches(&prefix)
                .trim_end_matches(".state")
                .parse()
                .unwrap_or(vip);
            write_state(&h, hv, &merged).map_err(|e| format!("{}: {e}", h.display()))?;
            out.push(format!(
                "the shared ARP/rp_filter settings stay for {hv} (its record {} now holds them)",
                h.display()
            ));
        }
    }
    fs::remove_file(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    out.push(format!("removed {}", path.display()));
    Ok(out)
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn records_round_trip() {
        let cs = vec![
            Change::LinkUp { dev: "lo".into() },
            Change::Addr {
                dev: "lo".into(),
                addr: "207.175.44.110".parse().unwrap(),
                len: 32,
            },
            Change::Sysctl {
                key: "net.ipv4.conf.all.arp_ignore".into(),
                old: "0".into(),
                new: "1".into(),
            },
        ];
        for c in &cs {
            assert_eq!(Change::parse(&c.line()).as_ref(), Some(c));
        }
        assert!(Change::parse("addr lo nonsense").is_none());
        assert!(!cs[1].shared() && cs[0].shared() && cs[2].shared());
    }

    #[test]
    fn undo_without_a_record_says_so() {
        let dir = std::env::temp_dir().join(format!("tunvs-rs-test-{}", std::process::id()));
        let e = dr_undo("192.0.2.1".parse().unwrap(), "lo", &dir).unwrap_err();
        assert!(e.contains("nothing to undo"), "{e}");
    }
}
