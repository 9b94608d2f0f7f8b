//! Reading and writing `/proc/sys` values, remembering old values so that
//! callers can put them back.
//!
//! Keys use the dotted `sysctl(8)` notation (`net.ipv4.conf.tunvs0.rp_filter`);
//! as in `sysctl(8)`, a `/` inside a key stands for a `.` in a path component,
//! so an interface `eth0.100` is written `net.ipv4.conf.eth0/100.rp_filter`.
//! The `net.*` values belong to the network namespace of the calling thread.

use std::fs;
use std::io;
use std::path::PathBuf;

use super::Family;

/// One value that was changed: enough to undo it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SysctlChange {
    /// Dotted key.
    pub key: String,
    /// Value before the change.
    pub old: String,
    /// Value written.
    pub new: String,
}

impl SysctlChange {
    /// Writes the old value back.
    pub fn restore(&self) -> io::Result<()> {
        write(&self.key, &self.old).map(drop)
    }
}

/// The `/proc/sys` path of a dotted key.
pub fn key_path(key: &str) -> PathBuf {
    let mut p = PathBuf::from("/proc/sys");
    for part in key.split('.') {
        p.push(part.replace('/', "."));
    }
    p
}

/// The dotted key of a per-interface setting:
/// `net.ipv4.conf.DEV.NAME` or `net.ipv6.conf.DEV.NAME`.
pub fn conf_key(family: Family, dev: &str, name: &str) -> String {
    let fam = match family {
        Family::V4 => "ipv4",
        Family::V6 => "ipv6",
    };
    format!("net.{fam}.conf.{}.{name}", dev.replace('.', "/"))
}

/// Reads a value, without the trailing newline.
pub fn read(key: &str) -> io::Result<String> {
    let path = key_path(key);
    let s = fs::read_to_string(&path)
        .map_err(|e| io::Error::new(e.kind(), format!("sysctl {key} ({}): {e}", path.display())))?;
    Ok(s.trim_end().to_string())
}

/// Writes a value and returns the previous one.
pub fn write(key: &str, value: &str) -> io::Result<String> {
    let old = read(key)?;
    let path = key_path(key);
    fs::write(&path, value).map_err(|e| {
        io::Error::new(
            e.kind(),
            format!("sysctl -w {key}={value} ({}): {e}", path.display()),
        )
    })?;
    Ok(old)
}

/// Raises a numeric value to at least `min` (never lowers an operator's
/// stricter setting, e.g. `arp_ignore=2`); returns the change made.
pub fn raise(key: &str, min: u32) -> io::Result<Option<SysctlChange>> {
    let cur = read(key)?;
    if cur.parse::<u32>().unwrap_or(0) >= min {
        return Ok(None);
    }
    ensure(key, &min.to_string())
}

/// Makes reverse-path filtering on IPv4 device `dev` loose (2) when its
/// effective value, `max(conf.all.rp_filter, conf.DEV.rp_filter)`, is strict
/// (1): packets written into the device carry sources routed elsewhere.
/// Returns the change made.
pub fn loosen_rp_filter(dev: &str) -> io::Result<Option<SysctlChange>> {
    let num = |k: &str| -> io::Result<u32> { Ok(read(k)?.parse().unwrap_or(0)) };
    let key = conf_key(Family::V4, dev, "rp_filter");
    if num("net.ipv4.conf.all.rp_filter")?.max(num(&key)?) == 1 {
        return ensure(&key, "2");
    }
    Ok(None)
}

/// Writes `value` unless the key already holds it; returns the change made.
pub fn ensure(key: &str, value: &str) -> io::Result<Option<SysctlChange>> {
    let cur = read(key)?;
    if cur == value {
        return Ok(None);
    }
    let old = write(key, value)?;
    Ok(Some(SysctlChange {
        key: key.to_string(),
        old,
        new: value.to_string(),
    }))
}

/// `sysctl -w KEY=VALUE`, as an operator would type it.
pub fn command(key: &str, value: &str) -> String {
    format!("sysctl -w {key}={value}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_map_to_proc_paths() {
        assert_eq!(
            key_path("net.ipv4.ip_forward"),
            PathBuf::from("/proc/sys/net/ipv4/ip_forward")
        );
        let k = conf_key(Family::V4, "eth0.100", "rp_filter");
        assert_eq!(k, "net.ipv4.conf.eth0/100.rp_filter");
        assert_eq!(
            key_path(&k),
            PathBuf::from("/proc/sys/net/ipv4/conf/eth0.100/rp_filter")
        );
        assert_eq!(
            conf_key(Family::V6, "all", "forwarding"),
            "net.ipv6.conf.all.forwarding"
        );
    }

    #[test]
    fn reads_work_without_privilege() {
        let v = read("net.ipv4.ip_forward").unwrap();
        assert!(v == "0" || v == "1");
        assert!(read("net.ipv4.no_such_key").is_err());
    }
}
