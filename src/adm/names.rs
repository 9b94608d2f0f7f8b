//! Host and port names, and the C library number/address parsers ipvsadm
//! relies on (`strtol`, `atoi`, `inet_aton`, `inet_ntop`), so parsing and
//! output match ipvsadm 1.31 byte for byte (spec §4.3, §4.7.8).
//!
//! Deliberate difference from ipvsadm: output never asks DNS. Reverse lookups
//! (`-L` without `-n`) read `/etc/hosts` only and port names `/etc/services`
//! only, so listings are deterministic and never block inside lab namespaces.
//! Forward lookups of a host *name* given on the command line consult
//! `/etc/hosts` first and then the system resolver (std `ToSocketAddrs`),
//! like ipvsadm's `gethostbyname`; addresses never reach the resolver.

use std::cell::OnceCell;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, ToSocketAddrs};

use crate::service::Proto;

/// One `/etc/hosts` line: an address and its names (canonical name first).
#[derive(Debug, Clone)]
struct HostEnt {
    addr: IpAddr,
    names: Vec<String>,
}

/// One `/etc/services` line.
#[derive(Debug, Clone)]
struct ServEnt {
    name: String,
    port: u16,
    proto: String,
    aliases: Vec<String>,
}

/// The name database used for parsing and listing.
#[derive(Debug)]
pub struct Names {
    hosts_path: Option<&'static str>,
    services_path: Option<&'static str>,
    hosts: OnceCell<Vec<HostEnt>>,
    services: OnceCell<Vec<ServEnt>>,
    dns: bool,
}

impl Names {
    /// The system database: `/etc/hosts`, `/etc/services` (read lazily), and
    /// the system resolver for forward lookups of host names.
    pub fn system() -> Self {
        Names {
            hosts_path: Some("/etc/hosts"),
            services_path: Some("/etc/services"),
            hosts: OnceCell::new(),
            services: OnceCell::new(),
            dns: true,
        }
    }

    /// A fixed database from file contents (`hosts`, `services` syntax), with
    /// no resolver fallback: for tests and other deterministic callers.
    pub fn from_tables(hosts: &str, services: &str) -> Self {
        let n = Names {
            hosts_path: None,
            services_path: None,
            hosts: OnceCell::new(),
            services: OnceCell::new(),
            dns: false,
        };
        let _ = n.hosts.set(parse_hosts(hosts));
        let _ = n.services.set(parse_services(services));
        n
    }

    fn hosts(&self) -> &[HostEnt] {
        self.hosts.get_or_init(|| {
            self.hosts_path
                .and_then(|p| std::fs::read_to_string(p).ok())
                .map(|t| parse_hosts(&t))
                .unwrap_or_default()
        })
    }

    fn services(&self) -> &[ServEnt] {
        self.services.get_or_init(|| {
            self.services_path
                .and_then(|p| std::fs::read_to_string(p).ok())
                .map(|t| parse_services(&t))
                .unwrap_or_default()
        })
    }

    /// `gethostbyname` for AF_INET: the first IPv4 address of a host name.
    pub fn host_to_v4(&self, name: &str) -> Option<Ipv4Addr> {
        if name.is_empty() {
            return None;
        }
        for h in self.hosts() {
            if let IpAddr::V4(a) = h.addr {
                if h.names.iter().any(|n| n.eq_ignore_ascii_case(name)) {
                    return Some(a);
                }
            }
        }
        if !self.dns {
            return None;
        }
        (name, 0u16)
            .to_socket_addrs()
            .ok()?
            .find_map(|sa| match sa.ip() {
                IpAddr::V4(a) => Some(a),
                IpAddr::V6(_) => None,
            })
    }

    /// Reverse lookup (`gethostbyaddr`), from `/etc/hosts` only.
    pub fn addr_to_host(&self, addr: IpAddr) -> Option<&str> {
        self.hosts()
            .iter()
            .find(|h| h.addr == addr)
            .and_then(|h| h.names.first())
            .map(|s| s.as_str())
    }

    /// `getservbyname(name, proto)`; `None` for protocol 0 (unknown).
    pub fn service_to_port(&self, name: &str, proto: Option<Proto>) -> Option<u16> {
        let p = proto_str(proto?);
        self.services()
            .iter()
            .find(|s| s.proto == p && (s.name == name || s.aliases.iter().any(|a| a == name)))
            .map(|s| s.port)
    }

    /// `getservbyport(port, proto)`; `None` for protocol 0 (unknown).
    pub fn port_to_service(&self, port: u16, proto: Option<Proto>) -> Option<&str> {
        let p = proto_str(proto?);
        self.services()
            .iter()
            .find(|s| s.port == port && s.proto == p)
            .map(|s| s.name.as_str())
    }
}

fn proto_str(p: Proto) -> &'static str {
    match p {
        Proto::Tcp => "tcp",
        Proto::Udp => "udp",
        Proto::Sctp => "sctp",
    }
}

fn strip_comment(line: &str) -> &str {
    match line.find('#') {
        Some(i) => &line[..i],
        None => line,
    }
}

fn parse_hosts(text: &str) -> Vec<HostEnt> {
    let mut out = Vec::new();
    for line in text.lines() {
        let mut it = strip_comment(line).split_whitespace();
        let Some(addr) = it.next().and_then(|a| a.parse::<IpAddr>().ok()) else {
            continue;
        };
        let names: Vec<String> = it.map(str::to_string).collect();
        if !names.is_empty() {
            out.push(HostEnt { addr, names });
        }
    }
    out
}

fn parse_services(text: &str) -> Vec<ServEnt> {
    let mut out = Vec::new();
    for line in text.lines() {
        let mut it = strip_comment(line).split_whitespace();
        let (Some(name), Some(pp)) = (it.next(), it.next()) else {
            continue;
        };
        let Some((port, proto)) = pp.split_once('/') else {
            continue;
        };
        let Ok(port) = port.parse::<u16>() else {
            continue;
        };
        out.push(ServEnt {
            name: name.to_string(),
            port,
            proto: proto.to_string(),
            aliases: it.map(str::to_string).collect(),
        });
    }
    out
}

/// C `isspace` in the C locale.
fn c_isspace(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r')
}

/// C `strtol(s, &end, 10)` requiring the whole string to be consumed, as
/// ipvsadm's `string_to_number` does: `None` if no digits, trailing junk, or
/// overflow of a 64-bit `long`.
pub fn strtol_full(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() && c_isspace(b[i]) {
        i += 1;
    }
    let mut neg = false;
    if i < b.len() && (b[i] == b'+' || b[i] == b'-') {
        neg = b[i] == b'-';
        i += 1;
    }
    let start = i;
    let mut v: i128 = 0;
    let mut overflow = false;
    while i < b.len() && b[i].is_ascii_digit() {
        v = v * 10 + i128::from(b[i] - b'0');
        if v > i128::from(i64::MAX) + 1 {
            overflow = true;
            v = i128::from(i64::MAX) + 1;
        }
        i += 1;
    }
    if i == start || i != b.len() {
        return None;
    }
    let v = if neg { -v } else { v };
    if overflow || v > i128::from(i64::MAX) || v < i128::from(i64::MIN) {
        return None;
    }
    Some(v as i64)
}

/// ipvsadm's `string_to_number(s, min, max)`.
pub fn string_to_number(s: &str, min: i64, max: i64) -> Option<i64> {
    strtol_full(s).filter(|n| (min..=max).contains(n))
}

/// C `atoi` (leading space, sign, digits; junk after ignored; saturating).
pub fn atoi(s: &str) -> i64 {
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() && c_isspace(b[i]) {
        i += 1;
    }
    let mut neg = false;
    if i < b.len() && (b[i] == b'+' || b[i] == b'-') {
        neg = b[i] == b'-';
        i += 1;
    }
    let mut v: i64 = 0;
    while i < b.len() && b[i].is_ascii_digit() {
        v = v.saturating_mul(10).saturating_add(i64::from(b[i] - b'0'));
        i += 1;
    }
    if neg {
        -v
    } else {
        v
    }
}

/// glibc `inet_aton`: 1 to 4 parts, each decimal, octal (`0…`) or hex
/// (`0x…`); `a.b.c` and `a.b` forms fill the low bytes; trailing whitespace
/// (and anything after it) is accepted, as in glibc.
pub fn inet_aton(s: &str) -> Option<Ipv4Addr> {
    let b = s.as_bytes();
    let mut i = 0;
    let mut parts: Vec<u32> = Vec::with_capacity(4);
    let mut val: u64;
    loop {
        if i >= b.len() || !b[i].is_ascii_digit() {
            return None;
        }
        // strtoul(cp, &end, 0)
        let (base, mut j) = if b[i] == b'0'
            && i + 2 < b.len()
            && (b[i + 1] == b'x' || b[i + 1] == b'X')
            && b[i + 2].is_ascii_hexdigit()
        {
            (16, i + 2)
        } else if b[i] == b'0' {
            (8, i)
        } else {
            (10, i)
        };
        val = 0;
        while j < b.len() {
            let d = match b[j] {
                c @ b'0'..=b'9' => u64::from(c - b'0'),
                c @ b'a'..=b'f' => u64::from(c - b'a' + 10),
                c @ b'A'..=b'F' => u64::from(c - b'A' + 10),
                _ => break,
            };
            if d >= base {
                break;
            }
            val = val.saturating_mul(base).saturating_add(d);
            j += 1;
        }
        if val > 0xffff_ffff {
            return None;
        }
        i = j;
        if i < b.len() && b[i] == b'.' {
            if parts.len() > 2 || val > 0xff {
                return None;
            }
            parts.push(val as u32);
            i += 1;
        } else {
            break;
        }
    }
    if i < b.len() && !c_isspace(b[i]) {
        return None;
    }
    let val = val as u32;
    let max = match parts.len() {
        0 => u32::MAX,
        1 => 0x00ff_ffff,
        2 => 0xffff,
        _ => 0xff,
    };
    if val > max {
        return None;
    }
    let mut word = val;
    for (k, p) in parts.iter().enumerate() {
        word |= p << (24 - 8 * k);
    }
    Some(Ipv4Addr::from(word))
}

/// glibc `inet_pton(AF_INET6, …)`, strict: whole string must be an IPv6 address.
pub fn inet_pton6(s: &str) -> Option<Ipv6Addr> {
    // std's parser accepts exactly the RFC 4291 text forms inet_pton accepts
    // (including an embedded dotted quad), and rejects zone ids.
    s.parse::<Ipv6Addr>().ok()
}

/// glibc `inet_ntop(AF_INET6, …)`: longest run (≥ 2) of zero words becomes
/// `::`; IPv4-mapped and IPv4-compatible addresses end in a dotted quad.
pub fn inet_ntop6(a: &Ipv6Addr) -> String {
    let w = a.segments();
    // Find the longest run of zero words (first one wins ties).
    let (mut best_base, mut best_len) = (usize::MAX, 0usize);
    let (mut cur_base, mut cur_len) = (usize::MAX, 0usize);
    for (i, &x) in w.iter().enumerate() {
        if x == 0 {
            if cur_base == usize::MAX {
                cur_base = i;
                cur_len = 1;
            } else {
                cur_len += 1;
            }
        } else if cur_base != usize::MAX {
            if best_base == usize::MAX || cur_len > best_len {
                best_base = cur_base;
                best_len = cur_len;
            }
            cur_base = usize::MAX;
        }
    }
    if cur_base != usize::MAX && (best_base == usize::MAX || cur_len > best_len) {
        best_base = cur_base;
        best_len = cur_len;
    }
    if best_base != usize::MAX && best_len < 2 {
        best_base = usize::MAX;
    }
    let mut out = String::new();
    let mut i = 0;
    while i < 8 {
        if best_base != usize::MAX && i >= best_base && i < best_base + best_len {
            if i == best_base {
                out.push(':');
            }
            i += 1;
            continue;
        }
        if i != 0 {
            out.push(':');
        }
        if i == 6 && best_base == 0 && (best_len == 6 || (best_len == 5 && w[5] == 0xffff)) {
            let o = a.octets();
            out.push_str(&format!("{}.{}.{}.{}", o[12], o[13], o[14], o[15]));
            return out;
        }
        out.push_str(&format!("{:x}", w[i]));
        i += 1;
    }
    if best_base != usize::MAX && best_base + best_len == 8 {
        out.push(':');
    }
    out
}

/// `inet_ntop` for either family.
pub fn inet_ntop(a: IpAddr) -> String {
    match a {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => inet_ntop6(&v6),
    }
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn inet_aton_accepts_the_glibc_forms() {
        let a = |s: &str| inet_aton(s).map(|a| a.to_string());
        assert_eq!(a("1.2.3.4").as_deref(), Some("1.2.3.4"));
        assert_eq!(a("1").as_deref(), Some("0.0.0.1"));
        assert_eq!(a("1.2").as_deref(), Some("1.0.0.2"));
        assert_eq!(a("1.2.3").as_deref(), Some("1.2.0.3"));
        assert_eq!(a("0x7f.1").as_deref(), Some("127.0.0.1"));
        assert_eq!(a("010.0.0.1").as_deref(), Some("8.0.0.1"));
        assert_eq!(a("1.2.3.4 junk").as_deref(), Some("1.2.3.4"));
        assert_eq!(a("1.2.3.256"), None);
        assert_eq!(a("256.1.1.1"), None);
        assert_eq!(a("08.1.1.1"), None);
        assert_eq!(a("1.2.3.4.5"), None);
        assert_eq!(a(""), None);
        assert_eq!(a("a.b.c.d"), None);
        assert_eq!(a("1.2.3.4x"), None);
    }

    #[test]
    fn inet_ntop6_matches_glibc() {
        let f = |s: &str| inet_ntop6(&s.parse().unwrap());
        assert_eq!(f("2001:db8::80"), "2001:db8::80");
        assert_eq!(f("::1"), "::1");
        assert_eq!(f("::"), "::");
        assert_eq!(f("2001:db8:0:1:0:0:0:1"), "2001:db8:0:1::1");
        assert_eq!(f("2001:0:1:0:1:0:1:0"), "2001:0:1:0:1:0:1:0");
        assert_eq!(f("::ffff:1.2.3.4"), "::ffff:1.2.3.4");
        assert_eq!(f("::1.2.3.4"), "::1.2.3.4");
        assert_eq!(f("1::"), "1::");
    }

    #[test]
    fn strtol_is_strict_about_the_whole_string() {
        assert_eq!(strtol_full("80"), Some(80));
        assert_eq!(strtol_full(" +80"), Some(80));
        assert_eq!(strtol_full("-5"), Some(-5));
        assert_eq!(strtol_full(""), None);
        assert_eq!(strtol_full("80x"), None);
        assert_eq!(strtol_full("99999999999999999999"), None);
        assert_eq!(atoi("64abc"), 64);
        assert_eq!(atoi("abc"), 0);
    }

    #[test]
    fn tables_answer_lookups() {
        let n = Names::from_tables(
            "127.0.0.1 localhost\n10.0.0.1 web1 www # c\n::1 ip6-localhost\n",
            "http 80/tcp www # WWW\nhttp 80/udp\ndomain 53/udp\n",
        );
        assert_eq!(n.host_to_v4("www"), Some(Ipv4Addr::new(10, 0, 0, 1)));
        assert_eq!(n.host_to_v4("nope"), None);
        assert_eq!(n.addr_to_host("10.0.0.1".parse().unwrap()), Some("web1"));
        assert_eq!(
            n.addr_to_host("::1".parse().unwrap()),
            Some("ip6-localhost")
        );
        assert_eq!(n.service_to_port("www", Some(Proto::Tcp)), Some(80));
        assert_eq!(n.service_to_port("domain", Some(Proto::Tcp)), None);
        assert_eq!(n.port_to_service(53, Some(Proto::Udp)), Some("domain"));
        assert_eq!(n.port_to_service(80, None), None);
    }
}
