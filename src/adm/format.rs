//! Pure functions from snapshots to the exact text ipvsadm 1.31 prints
//! (spec §4.7–4.10). Every format string below is the C printf string of
//! `ipvsadm.c` translated one to one; trailing spaces are intentional.

use std::net::{IpAddr, Ipv4Addr};

use super::api::{ConnSnapshot, DestSnapshot, ServiceSnapshot, Timeouts};
use super::names::{inet_ntop, Names};
use crate::service::{
    FwdMethod, Proto, ServiceSpec, SvcId, TunCsum, TunType, SVC_F_ONEPACKET, SVC_F_PERSISTENT,
    SVC_F_SCHED1, SVC_F_SCHED2, SVC_F_SCHED3, SVC_F_SCHED_MASK,
};

/// `ipvsadm -v` (spec §4): kept byte-identical so scripts that parse it work.
pub const VERSION_LINE: &str = "ipvsadm v1.31 2019/12/24 (compiled with popt and IPVS v1.2.1)";

/// Listing options (`-n`, `--stats`, …) as ipvsadm's `FMT_*` bits.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ListFormat {
    /// `-n`: numeric addresses and ports.
    pub numeric: bool,
    /// `--stats`.
    pub stats: bool,
    /// `--rate`.
    pub rate: bool,
    /// `--thresholds`.
    pub thresholds: bool,
    /// `--persistent-conn`.
    pub persistent_conn: bool,
    /// `--nosort`: keep the director's order.
    pub nosort: bool,
    /// `-X`/`--exact`: exact numbers in `--stats`/`--rate`.
    pub exact: bool,
    /// `--tun-info`.
    pub tun_info: bool,
}

/// Internal: a `ListFormat` plus ipvsadm's `FMT_RULE` (the `-S` format).
#[derive(Clone, Copy)]
struct Fmt {
    f: ListFormat,
    rule: bool,
}

/// ipvsadm's `print_largenum` (spec §4.7.7).
pub fn largenum(n: u64, exact: bool) -> String {
    if exact {
        let len = n.to_string().len();
        let w = if len <= 8 { 9 } else { len + 1 };
        return format!("{n:>w$}");
    }
    if n < 100_000_000 {
        format!("{n:>9}")
    } else if n < 1_000_000_000 {
        format!("{:>8}K", n / 1000)
    } else if n < 100_000_000_000 {
        format!("{:>8}M", n / 1_000_000)
    } else if n < 100_000_000_000_000 {
        format!("{:>8}G", n / 1_000_000_000)
    } else {
        format!("{:>8}T", n / 1_000_000_000_000)
    }
}

/// Cut a string to at most `max` bytes (on a char boundary), like C's
/// `buf[max] = '\0'`.
fn truncate(s: &mut String, max: usize) {
    if s.len() > max {
        let mut i = max;
        while !s.is_char_boundary(i) {
            i -= 1;
        }
        s.truncate(i);
    }
}

/// ipvsadm's `addrport_to_anyname` (60-byte buffer, so at most 59 bytes).
fn addrport(addr: IpAddr, port: u16, proto: Option<Proto>, numeric: bool, names: &Names) -> String {
    let (l, r) = if addr.is_ipv6() { ("[", "]") } else { ("", "") };
    let mut s = if numeric {
        format!("{l}{}{r}:{port}", inet_ntop(addr))
    } else {
        let host = names
            .addr_to_host(addr)
            .map(str::to_string)
            .unwrap_or_else(|| inet_ntop(addr));
        let p = names
            .port_to_service(port, proto)
            .map(str::to_string)
            .unwrap_or_else(|| port.to_string());
        format!("{l}{host}{r}:{p}")
    };
    truncate(&mut s, 59);
    s
}

/// The protocol used for port names of a service's entries: fwmark services
/// come back from the kernel with protocol 0, so their ports stay numeric.
fn svc_proto(id: &SvcId) -> Option<Proto> {
    match id {
        SvcId::Addr { proto, .. } => Some(*proto),
        SvcId::Fwmark { .. } => None,
    }
}

/// Address as four host-order words (IPv4 in the first), as libipvs sees the
/// `nf_inet_addr` union when comparing.
fn words(a: IpAddr) -> [u32; 4] {
    match a {
        IpAddr::V4(v4) => [u32::from(v4), 0, 0, 0],
        IpAddr::V6(v6) => {
            let o = v6.octets();
            let w = |i: usize| u32::from_be_bytes([o[i], o[i + 1], o[i + 2], o[i + 3]]);
            [w(0), w(4), w(8), w(12)]
        }
    }
}

/// C `int r = a - b` for two unsigned 32-bit values: wraps (spec §4.7.3).
fn wsub(a: u32, b: u32) -> i32 {
    a.wrapping_sub(b) as i32
}

fn addr_cmp(a: IpAddr, b: IpAddr) -> i32 {
    let (wa, wb) = (words(a), words(b));
    if a.is_ipv6() {
        for i in 0..4 {
            let r = wsub(wa[i], wb[i]);
            if r != 0 {
                return r;
            }
        }
        0
    } else {
        wsub(wa[0], wb[0])
    }
}

/// libipvs `ipvs_cmp_services`, wrapping quirks included.
pub fn cmp_services(a: &ServiceSpec, b: &ServiceSpec) -> i32 {
    // (fwmark, af, protocol, addr, port) as the kernel dump fills them:
    // fwmark services carry protocol 0, address 0, port 0.
    let key = |s: &ServiceSpec| match s.id {
        SvcId::Fwmark { mark, v6 } => (
            mark,
            if v6 { 10 } else { 2 },
            0i32,
            if v6 {
                IpAddr::from([0u16; 8])
            } else {
                IpAddr::from([0u8; 4])
            },
            0i32,
        ),
        SvcId::Addr { proto, addr, port } => (
            0,
            if addr.is_ipv6() { 10 } else { 2 },
            i32::from(proto.number()),
            addr,
            i32::from(port),
        ),
    };
    let (fa, afa, pa, aa, pta) = key(a);
    let (fb, afb, pb, ab, ptb) = key(b);
    let r = wsub(fa, fb);
    if r != 0 {
        return r;
    }
    let r = afa - afb;
    if r != 0 {
        return r;
    }
    let r = pa - pb;
    if r != 0 {
        return r;
    }
    let r = addr_cmp(aa, ab);
    if r != 0 {
        return r;
    }
    pta - ptb
}

/// libipvs `ipvs_cmp_dests`, wrapping quirks included.
pub fn cmp_dests(a: &DestSnapshot, b: &DestSnapshot) -> i32 {
    let r = addr_cmp(a.spec.addr, b.spec.addr);
    if r != 0 {
        return r;
    }
    i32::from(a.spec.port) - i32::from(b.spec.port)
}

/// glibc's classic `qsort` (a top-down merge sort, `msort_with_tmp`): the
/// comparator need not be a total order (the wrapping subtraction is not),
/// and this never panics on one, unlike `slice::sort_by`.
fn msort<T: Clone>(v: &mut [T], cmp: &dyn Fn(&T, &T) -> i32) {
    let n = v.len();
    if n <= 1 {
        return;
    }
    let n1 = n / 2;
    {
        let (a, b) = v.split_at_mut(n1);
        msort(a, cmp);
        msort(b, cmp);
    }
    let mut tmp: Vec<T> = Vec::with_capacity(n);
    let (mut i, mut j) = (0, n1);
    while i < n1 && j < n {
        if cmp(&v[i], &v[j]) <= 0 {
            tmp.push(v[i].clone());
            i += 1;
        } else {
            tmp.push(v[j].clone());
            j += 1;
        }
    }
    tmp.extend_from_slice(&v[i..n1]);
    let k = tmp.len();
    v[..k].clone_from_slice(&tmp);
}

/// Sort services as `ipvsadm -L` does (unless `--nosort`).
pub fn sort_services(v: &mut [ServiceSnapshot]) {
    msort(v, &|a: &ServiceSnapshot, b: &ServiceSnapshot| {
        cmp_services(&a.spec, &b.spec)
    });
}

/// Sort destinations as `ipvsadm -L` does (unless `--nosort`).
pub fn sort_dests(v: &mut [DestSnapshot]) {
    msort(v, &cmp_dests);
}

/// Scheduler flag words (`print_sched_flags`), comma-joined.
fn sched_flags(sched: &str, flags: u32) -> String {
    let mut v: Vec<&str> = Vec::new();
    let names: [(u32, &str); 3] = match sched {
        "sh" => [
            (SVC_F_SCHED1, "sh-fallback"),
            (SVC_F_SCHED2, "sh-port"),
            (0, ""),
        ],
        "mh" => [
            (SVC_F_SCHED1, "mh-fallback"),
            (SVC_F_SCHED2, "mh-port"),
            (0, ""),
        ],
        _ => [
            (SVC_F_SCHED1, "flag-1"),
            (SVC_F_SCHED2, "flag-2"),
            (SVC_F_SCHED3, "flag-3"),
        ],
    };
    for (bit, name) in names {
        if bit != 0 && flags & bit != 0 {
            v.push(name);
        }
    }
    v.join(",")
}

fn print_title(out: &mut String, fmt: Fmt) {
    let f = fmt.f;
    let p = "Prot LocalAddress:Port";
    if f.stats {
        out.push_str(&format!(
            "{p:<33} {:>8} {:>8} {:>8} {:>8} {:>8}\n  -> RemoteAddress:Port\n",
            "Conns", "InPkts", "OutPkts", "InBytes", "OutBytes"
        ));
    } else if f.rate {
        out.push_str(&format!(
            "{p:<33} {:>8} {:>8} {:>8} {:>8} {:>8}\n  -> RemoteAddress:Port\n",
            "CPS", "InPPS", "OutPPS", "InBPS", "OutBPS"
        ));
    } else if f.thresholds {
        out.push_str(&format!(
            "{p:<33} {:<10} {:<10} {:<10} {:<10}\n  -> RemoteAddress:Port\n",
            "Uthreshold", "Lthreshold", "ActiveConn", "InActConn"
        ));
    } else if f.persistent_conn {
        out.push_str(&format!(
            "{p:<33} {:<9} {:<11} {:<10} {:<10}\n  -> RemoteAddress:Port\n",
            "Weight", "PersistConn", "ActiveConn", "InActConn"
        ));
    } else if f.tun_info {
        out.push_str(
            "Prot LocalAddress:Port Scheduler Flags\n  -> RemoteAddress:Port           Forward TunnelInfo    Weight ActiveConn InActConn\n",
        );
    } else if !fmt.rule {
        out.push_str(
            "Prot LocalAddress:Port Scheduler Flags\n  -> RemoteAddress:Port           Forward Weight ActiveConn InActConn\n",
        );
    }
}

fn fwd_switch(f: FwdMethod) -> &'static str {
    match f {
        FwdMethod::Masq => "-m",
        FwdMethod::Tunnel => "-i",
        FwdMethod::Local | FwdMethod::Route => "-g",
    }
}

fn tun_flag(c: TunCsum) -> &'static str {
    match c {
        TunCsum::NoCsum => "-c",
        TunCsum::Csum => "+c",
        TunCsum::RemCsum => "r+c",
    }
}

fn tun_flag_opt(c: TunCsum) -> &'static str {
    match c {
        TunCsum::NoCsum => "--tun-nocsum",
        TunCsum::Csum => "--tun-csum",
        TunCsum::RemCsum => "--tun-remcsum",
    }
}

/// `fwd_tun_info`: `ipip`, `gue:<port>:<c>`, `gre:<c>`, or `n/a`.
fn tun_info(d: &DestSnapshot) -> String {
    let s = &d.spec;
    if s.fwd != FwdMethod::Tunnel {
        return "n/a".into();
    }
    match s.tun_type {
        TunType::Ipip => "ipip".into(),
        TunType::Gue => format!("gue:{}:{}", s.tun_port, tun_flag(s.tun_flags)),
        TunType::Gre => format!("gre:{}", tun_flag(s.tun_flags)),
    }
}

/// The service's name column / rule prefix (`svc_name` in `print_service_entry`).
fn svc_name(spec: &ServiceSpec, fmt: Fmt, names: &Names) -> String {
    match spec.id {
        SvcId::Fwmark { mark, v6 } => match (fmt.rule, v6) {
            (true, true) => format!("-f {mark} -6"),
            (true, false) => format!("-f {mark}"),
            (false, true) => format!("FWM  {mark} IPv6"),
            (false, false) => format!("FWM  {mark}"),
        },
        SvcId::Addr { proto, addr, port } => {
            let vname = addrport(addr, port, Some(proto), fmt.f.numeric, names);
            if fmt.rule {
                let opt = match proto {
                    Proto::Tcp => "-t",
                    Proto::Udp => "-u",
                    Proto::Sctp => "--sctp-service",
                };
                format!("{opt} {vname}")
            } else {
                let mut s = format!("{:<4} {vname}", proto.name());
                if !addr.is_ipv6() {
                    truncate(&mut s, 33);
                }
                s
            }
        }
    }
}

fn stats5(out: &mut String, v: [u64; 5], exact: bool) {
    for n in v {
        out.push_str(&largenum(n, exact));
    }
}

/// `print_service_entry`: the service line and its destination lines.
fn print_service_entry(out: &mut String, se: &ServiceSnapshot, fmt: Fmt, names: &Names) {
    let spec = &se.spec;
    let f = fmt.f;
    let name = svc_name(spec, fmt, names);
    let v6 = spec.id.is_v6();
    let persistent = spec.flags & SVC_F_PERSISTENT != 0;
    let pe = spec.pe.as_deref().filter(|p| !p.is_empty());
    let st = &se.stats;
    if fmt.rule {
        out.push_str(&format!("-A {name} -s {}", spec.sched));
        if persistent {
            out.push_str(&format!(" -p {}", spec.timeout));
            if !v6 && spec.netmask != 0xffff_ffff {
                out.push_str(&format!(" -M {}", Ipv4Addr::from(spec.netmask)));
            }
            if v6 && spec.netmask != 128 {
                out.push_str(&format!(" -M {}", spec.netmask as i32));
            }
        }
        // Unlike the listing, the save prints the engine even when not persistent.
        if let Some(pe) = pe {
            out.push_str(&format!(" --pe {pe}"));
        }
        if spec.flags & SVC_F_ONEPACKET != 0 {
            out.push_str(" -o");
        }
        if spec.flags & SVC_F_SCHED_MASK != 0 {
            out.push_str(&format!(" -b {}", sched_flags(&spec.sched, spec.flags)));
        }
    } else if f.stats {
        out.push_str(&format!("{name:<33}"));
        stats5(
            out,
            [st.conns, st.inpkts, st.outpkts, st.inbytes, st.outbytes],
            f.exact,
        );
    } else if f.rate {
        out.push_str(&format!("{name:<33}"));
        stats5(
            out,
            [st.cps, st.inpps, st.outpps, st.inbps, st.outbps],
            f.exact,
        );
    } else {
        out.push_str(&format!("{name} {}", spec.sched));
        if spec.flags & SVC_F_SCHED_MASK != 0 {
            out.push_str(&format!(" ({})", sched_flags(&spec.sched, spec.flags)));
        }
        if persistent {
            out.push_str(&format!(" persistent {}", spec.timeout));
            if !v6 && spec.netmask != 0xffff_ffff {
                out.push_str(&format!(" mask {}", Ipv4Addr::from(spec.netmask)));
            }
            if v6 && spec.netmask != 128 {
                out.push_str(&format!(" mask {}", spec.netmask as i32));
            }
            if let Some(pe) = pe {
                out.push_str(&format!(" pe {pe}"));
            }
        }
        if spec.flags & SVC_F_ONEPACKET != 0 {
            out.push_str(" ops");
        }
    }
    out.push('\n');

    let mut dests = se.dests.clone();
    if !f.nosort {
        sort_dests(&mut dests);
    }
    let proto = svc_proto(&spec.id);
    for e in &dests {
        let d = &e.spec;
        let mut dname = addrport(d.addr, d.port, proto, f.numeric, names);
        if !fmt.rule && !d.addr.is_ipv6() {
            truncate(&mut dname, 28);
        }
        if fmt.rule {
            let sw = fwd_switch(d.fwd);
            let w = d.weight;
            if d.fwd == FwdMethod::Tunnel {
                match d.tun_type {
                    TunType::Gre => out.push_str(&format!(
                        "-a {name} -r {dname} {sw} -w {w} --tun-type gre {}\n",
                        tun_flag_opt(d.tun_flags)
                    )),
                    TunType::Gue => out.push_str(&format!(
                        "-a {name} -r {dname} {sw} -w {w} --tun-type gue --tun-port {} {}\n",
                        d.tun_port,
                        tun_flag_opt(d.tun_flags)
                    )),
                    TunType::Ipip => out.push_str(&format!(
                        "-a {name} -r {dname} {sw} -w {w} --tun-type {}\n",
                        d.tun_type.name()
                    )),
                }
            } else {
                out.push_str(&format!("-a {name} -r {dname} {sw} -w {w}\n"));
            }
        } else if f.stats {
            let s = &e.stats;
            out.push_str(&format!("  -> {dname:<28}"));
            stats5(
                out,
                [s.conns, s.inpkts, s.outpkts, s.inbytes, s.outbytes],
                f.exact,
            );
            out.push('\n');
        } else if f.rate {
            let s = &e.stats;
            out.push_str(&format!(
                "  -> {dname:<28} {:>8} {:>8} {:>8}",
                s.cps, s.inpps, s.outpps
            ));
            out.push_str(&largenum(s.inbps, f.exact));
            out.push_str(&largenum(s.outbps, f.exact));
            out.push('\n');
        } else if f.thresholds {
            out.push_str(&format!(
                "  -> {dname:<28} {:<10} {:<10} {:<10} {:<10}\n",
                d.u_threshold, d.l_threshold, e.activeconns, e.inactconns
            ));
        } else if f.persistent_conn {
            // `%-9u` of an int weight.
            out.push_str(&format!(
                "  -> {dname:<28} {:<9} {:<11} {:<10} {:<10}\n",
                d.weight as u32, e.persistconns, e.activeconns, e.inactconns
            ));
        } else if f.tun_info {
            out.push_str(&format!(
                "  -> {dname:<28} {:<7} {:<13} {:<6} {:<10} {:<10}\n",
                d.fwd.name(),
                tun_info(e),
                d.weight,
                e.activeconns,
                e.inactconns
            ));
        } else {
            out.push_str(&format!(
                "  -> {dname:<28} {:<7} {:<6} {:<10} {:<10}\n",
                d.fwd.name(),
                d.weight,
                e.activeconns,
                e.inactconns
            ));
        }
    }
}

fn list_all_fmt(services: &[ServiceSnapshot], size: u32, fmt: Fmt, names: &Names) -> String {
    let mut out = String::new();
    if !fmt.rule {
        out.push_str(&format!("IP Virtual Server version 1.2.1 (size={size})\n"));
    }
    let mut svcs = services.to_vec();
    if !fmt.f.nosort {
        sort_services(&mut svcs);
    }
    print_title(&mut out, fmt);
    for s in &svcs {
        print_service_entry(&mut out, s, fmt, names);
    }
    out
}

/// `ipvsadm -L` (`list_all`): version line, title, sorted services and dests.
pub fn list_all(
    services: &[ServiceSnapshot],
    conn_tab_size: u32,
    f: &ListFormat,
    names: &Names,
) -> String {
    list_all_fmt(services, conn_tab_size, Fmt { f: *f, rule: false }, names)
}

/// `ipvsadm -L -t/-u/-f …` (`list_service`): no version line.
pub fn list_service(svc: &ServiceSnapshot, f: &ListFormat, names: &Names) -> String {
    let fmt = Fmt { f: *f, rule: false };
    let mut out = String::new();
    print_title(&mut out, fmt);
    print_service_entry(&mut out, svc, fmt, names);
    out
}

/// `ipvsadm -S [-n]` (spec §4.10): rule lines, no version line, no title.
pub fn save(services: &[ServiceSnapshot], numeric: bool, names: &Names) -> String {
    let f = ListFormat {
        numeric,
        ..ListFormat::default()
    };
    list_all_fmt(services, 0, Fmt { f, rule: true }, names)
}

fn conn_proto(p: &str) -> Option<Proto> {
    match p {
        "TCP" => Some(Proto::Tcp),
        "UDP" => Some(Proto::Udp),
        "SCTP" => Some(Proto::Sctp),
        _ => None,
    }
}

/// `ipvsadm -L -c [--persistent-conn]` (spec §4.8), entries in table order.
pub fn list_conns(conns: &[ConnSnapshot], f: &ListFormat, names: &Names) -> String {
    let mut out = String::from("IPVS connection entries\n");
    if f.persistent_conn {
        out.push_str(&format!(
            "pro expire {:<11} {:<18} {:<18} {:<18} {:<16} {}\n",
            "state", "source", "virtual", "destination", "pe name", "pe_data"
        ));
    } else {
        out.push_str(&format!(
            "pro expire {:<11} {:<18} {:<18} {}\n",
            "state", "source", "virtual", "destination"
        ));
    }
    for c in conns {
        let proto = conn_proto(c.proto);
        let cname = addrport(c.caddr, c.cport, proto, f.numeric, names);
        let vname = addrport(c.vaddr, c.vport, proto, f.numeric, names);
        let dname = addrport(c.daddr, c.dport, proto, f.numeric, names);
        let expire = format!("{:02}:{:02}", c.expires / 60, c.expires % 60);
        // ipvsadm sscanf()s the /proc line: the PE columns count only when
        // both the engine name and its data are present.
        let pe =
            c.pe.as_ref()
                .filter(|(n, d)| !n.is_empty() && !d.is_empty());
        match pe {
            Some((pn, pd)) if f.persistent_conn => out.push_str(&format!(
                "{:<3} {:<6} {:<11} {:<18} {:<18} {:<16} {:<18} {}\n",
                c.proto, expire, c.state, cname, vname, dname, pn, pd
            )),
            _ => out.push_str(&format!(
                "{:<3} {:<6} {:<11} {:<18} {:<18} {}\n",
                c.proto, expire, c.state, cname, vname, dname
            )),
        }
    }
    out
}

/// `ipvsadm -L --timeout` (spec §4.9).
pub fn list_timeout(t: Timeouts) -> String {
    format!(
        "Timeout (tcp tcpfin udp): {} {} {}\n",
        t.tcp as i32, t.tcpfin as i32, t.udp as i32
    )
}

/// `ipvsadm -h` (`usage_exit`), with `prog` for the program name.
pub fn usage(prog: &str) -> String {
    let p = prog;
    let mut s = String::new();
    s.push_str(VERSION_LINE);
    s.push('\n');
    s.push_str("Usage:\n");
    for form in [
        "-A|E virtual-service [-s scheduler] [-p [timeout]] [-M netmask] [--pe persistence_engine] [-b sched-flags]",
        "-D virtual-service",
        "-C",
        "-R",
        "-S [-n]",
        "-a|e virtual-service -r server-address [options]",
        "-d virtual-service -r server-address",
        "-L|l [virtual-service] [options]",
        "-Z [virtual-service]",
        "--set tcp tcpfin udp",
        "--start-daemon {master|backup} [daemon-options]",
        "--stop-daemon {master|backup}",
        "-h",
    ] {
        s.push_str(&format!("  {p} {form}\n"));
    }
    s.push('\n');
    s.push_str(concat!(
        "Commands:\n",
        "Either long or short options are allowed.\n",
        "  --add-service     -A        add virtual service with options\n",
        "  --edit-service    -E        edit virtual service with options\n",
        "  --delete-service  -D        delete virtual service\n",
        "  --clear           -C        clear the whole table\n",
        "  --restore         -R        restore rules from stdin\n",
        "  --save            -S        save rules to stdout\n",
        "  --add-server      -a        add real server with options\n",
        "  --edit-server     -e        edit real server with options\n",
        "  --delete-server   -d        delete real server\n",
        "  --list            -L|-l     list the table\n",
        "  --zero            -Z        zero counters in a service or all services\n",
        "  --set tcp tcpfin udp        set connection timeout values\n",
        "  --start-daemon              start connection sync daemon\n",
        "  --stop-daemon               stop connection sync daemon\n",
        "  --help            -h        display this help message\n\n",
        "virtual-service:\n",
        "  --tcp-service|-t  service-address   service-address is host[:port]\n",
        "  --udp-service|-u  service-address   service-address is host[:port]\n",
        "  --sctp-service    service-address   service-address is host[:port]\n",
        "  --fwmark-service|-f fwmark          fwmark is an integer greater than zero\n",
        "\n",
        "Options:\n",
        "  --ipv6         -6                   fwmark entry uses IPv6\n",
        "  --scheduler    -s scheduler         one of rr|wrr|lc|wlc|lblc|lblcr|dh|sh|sed|nq|fo|ovf|mh,\n",
        "                                      the default scheduler is wlc.\n",
        "  --pe            engine              alternate persistence engine may be sip,\n",
        "                                      not set by default.\n",
        "  --persistent   -p [timeout]         persistent service\n",
        "  --netmask      -M netmask           persistent granularity mask\n",
        "  --real-server  -r server-address    server-address is host (and port)\n",
        "  --gatewaying   -g                   gatewaying (direct routing) (default)\n",
        "  --ipip         -i                   ipip encapsulation (tunneling)\n",
        "  --masquerading -m                   masquerading (NAT)\n",
        "  --tun-type      type                one of ipip|gue|gre,\n",
        "                                      the default tunnel type is ipip.\n",
        "  --tun-port      port                tunnel destination port\n",
        "  --tun-nocsum                        tunnel encapsulation without checksum\n",
        "  --tun-csum                          tunnel encapsulation with checksum\n",
        "  --tun-remcsum                       tunnel encapsulation with remote checksum\n",
        "  --weight       -w weight            capacity of real server\n",
        "  --u-threshold  -x uthreshold        upper threshold of connections\n",
        "  --l-threshold  -y lthreshold        lower threshold of connections\n",
        "  --connection   -c                   output of current IPVS connections\n",
        "  --timeout                           output of timeout (tcp tcpfin udp)\n",
        "  --daemon                            output of daemon information\n",
        "  --stats                             output of statistics information\n",
        "  --rate                              output of rate information\n",
        "  --exact                             expand numbers (display exact values)\n",
        "  --thresholds                        output of thresholds information\n",
        "  --persistent-conn                   output of persistent connection info\n",
        "  --tun-info                          output of tunnel information\n",
        "  --nosort                            disable sorting output of service/server entries\n",
        "  --sort                              does nothing, for backwards compatibility\n",
        "  --ops          -o                   one-packet scheduling\n",
        "  --numeric      -n                   numeric output of addresses and ports\n",
        "  --sched-flags  -b flags             scheduler flags (comma-separated)\n",
        "Daemon Options:\n",
        "  --syncid sid                        syncid for connection sync (default=255)\n",
        "  --sync-maxlen length                Max sync message length (default=1472)\n",
        "  --mcast-interface interface         multicast interface for connection sync\n",
        "  --mcast-group address               IPv4/IPv6 group (default=224.0.0.81)\n",
        "  --mcast-port port                   UDP port (default=8848)\n",
        "  --mcast-ttl ttl                     Multicast TTL (default=1)\n",
    ));
    s
}
