//! ipvsadm 1.31's command line: a popt-like option scanner and the checks of
//! `parse_options`/`process_options`, in the same order, with the same
//! messages and exit codes (spec §4.1–4.6).

use std::net::{IpAddr, Ipv4Addr};

use super::api::Timeouts;
use super::format::ListFormat;
use super::names::{atoi, inet_aton, inet_pton6, string_to_number, strtol_full, Names};
use crate::service::{
    DestSpec, FwdMethod, Proto, ServiceSpec, SvcId, TunCsum, TunType, DEFAULT_PERSIST_TIMEOUT,
    SVC_F_ONEPACKET, SVC_F_PERSISTENT, SVC_F_SCHED1, SVC_F_SCHED2, SVC_F_SCHED3, SVC_F_SCHED_MASK,
};

/// `MAX_TIMEOUT` of ipvsadm: 31 days.
const MAX_TIMEOUT: i64 = 86400 * 31;

/// A command-line error: the exact stderr text (without the final newline)
/// and the exit code ipvsadm would use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    /// Message as printed, minus the trailing newline.
    pub message: String,
    /// Exit code (2 for `fail()`, 255 for popt errors and "Try … -h").
    pub code: i32,
}

impl ParseError {
    /// The full stderr text (message plus newline).
    pub fn stderr(&self) -> String {
        format!("{}\n", self.message)
    }
}

fn fail<T>(msg: impl Into<String>) -> Result<T, ParseError> {
    Err(ParseError {
        message: msg.into(),
        code: 2,
    })
}

/// Sync daemon role (`--start-daemon`/`--stop-daemon master|backup`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DaemonState {
    /// `master`.
    Master,
    /// `backup`.
    Backup,
}

/// Sync daemon settings as parsed (tunvs runs no sync daemon; see exec).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DaemonOpts {
    /// Role.
    pub state: DaemonState,
    /// `--mcast-interface` (default `eth0` when starting).
    pub mcast_ifn: String,
    /// `--syncid` (0 when not given).
    pub syncid: u8,
    /// `--mcast-group`.
    pub mcast_group: Option<IpAddr>,
    /// `--mcast-port` (0 = kernel default).
    pub mcast_port: u16,
    /// `--mcast-ttl` (0 = kernel default).
    pub mcast_ttl: u8,
    /// `--sync-maxlen` (0 = kernel default).
    pub sync_maxlen: u16,
}

/// What `-L` lists (precedence of `process_options`: `-c`, service, `--timeout`, `--daemon`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListWhat {
    /// Everything (`list_all`).
    All,
    /// One service (`list_service`, no version line).
    Service(SvcId),
    /// Connection entries (`-c`).
    Conns,
    /// `--timeout`.
    Timeout,
    /// `--daemon`.
    Daemon,
}

/// A `-L` invocation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListOpts {
    /// What to list.
    pub what: ListWhat,
    /// How.
    pub format: ListFormat,
}

/// One parsed `ipvsadm` invocation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// `-A`.
    AddService(ServiceSpec),
    /// `-E` (complete record, defaults for what was not given).
    EditService(ServiceSpec),
    /// `-D`.
    DelService(SvcId),
    /// `-C`.
    Flush,
    /// `-R`: read commands from stdin.
    Restore,
    /// `-S [-n]`.
    Save {
        /// `-n`.
        numeric: bool,
    },
    /// `-a`.
    AddDest(SvcId, DestSpec),
    /// `-e` (complete record).
    EditDest(SvcId, DestSpec),
    /// `-d`: service, real-server address and port.
    DelDest(SvcId, IpAddr, u16),
    /// `-L`/`-l`, or no arguments at all.
    List(ListOpts),
    /// `-Z [service]`.
    Zero(Option<SvcId>),
    /// `--set tcp tcpfin udp` (0 = unchanged).
    SetTimeouts(Timeouts),
    /// `--start-daemon`.
    StartDaemon(DaemonOpts),
    /// `--stop-daemon`.
    StopDaemon(DaemonOpts),
    /// `-h`.
    Help,
    /// `-v`.
    Version,
}

// ---------------------------------------------------------------------------
// popt-like scanner

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Tag {
    AddService,
    EditService,
    DelService,
    Clear,
    List,
    Zero,
    AddServer,
    EditServer,
    DelServer,
    Set,
    Help,
    Version,
    Restore,
    Save,
    StartDaemon,
    StopDaemon,
    Tcp,
    Udp,
    Sctp,
    Fwmark,
    Scheduler,
    Persistent,
    Netmask,
    RealServer,
    Masq,
    Ipip,
    Gate,
    Weight,
    UThreshold,
    LThreshold,
    Numeric,
    Connection,
    McastIf,
    SyncId,
    Timeout,
    Daemon,
    Stats,
    Rate,
    Thresholds,
    PersistentConn,
    NoSort,
    Sort,
    Exact,
    Ipv6,
    Ops,
    Pe,
    SchedFlags,
    McastGroup,
    McastPort,
    McastTtl,
    SyncMaxlen,
    TunInfo,
    TunType,
    TunPort,
    TunNocsum,
    TunCsum,
    TunRemcsum,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum ArgKind {
    No,
    Req,
    Opt,
}

/// The popt option table of `parse_options` (same order: `--list` is `-L`).
const OPTS: &[(&str, Option<char>, ArgKind, Tag)] = &[
    ("add-service", Some('A'), ArgKind::No, Tag::AddService),
    ("edit-service", Some('E'), ArgKind::No, Tag::EditService),
    ("delete-service", Some('D'), ArgKind::No, Tag::DelService),
    ("clear", Some('C'), ArgKind::No, Tag::Clear),
    ("list", Some('L'), ArgKind::No, Tag::List),
    ("list", Some('l'), ArgKind::No, Tag::List),
    ("zero", Some('Z'), ArgKind::No, Tag::Zero),
    ("add-server", Some('a'), ArgKind::No, Tag::AddServer),
    ("edit-server", Some('e'), ArgKind::No, Tag::EditServer),
    ("delete-server", Some('d'), ArgKind::No, Tag::DelServer),
    ("set", None, ArgKind::No, Tag::Set),
    ("help", Some('h'), ArgKind::No, Tag::Help),
    ("version", Some('v'), ArgKind::No, Tag::Version),
    ("restore", Some('R'), ArgKind::No, Tag::Restore),
    ("save", Some('S'), ArgKind::No, Tag::Save),
    ("start-daemon", None, ArgKind::Req, Tag::StartDaemon),
    ("stop-daemon", None, ArgKind::Req, Tag::StopDaemon),
    ("tcp-service", Some('t'), ArgKind::Req, Tag::Tcp),
    ("udp-service", Some('u'), ArgKind::Req, Tag::Udp),
    ("sctp-service", None, ArgKind::Req, Tag::Sctp),
    ("fwmark-service", Some('f'), ArgKind::Req, Tag::Fwmark),
    ("scheduler", Some('s'), ArgKind::Req, Tag::Scheduler),
    ("persistent", Some('p'), ArgKind::Opt, Tag::Persistent),
    ("netmask", Some('M'), ArgKind::Req, Tag::Netmask),
    ("real-server", Some('r'), ArgKind::Req, Tag::RealServer),
    ("masquerading", Some('m'), ArgKind::No, Tag::Masq),
    ("ipip", Some('i'), ArgKind::No, Tag::Ipip),
    ("gatewaying", Some('g'), ArgKind::No, Tag::Gate),
    ("weight", Some('w'), ArgKind::Req, Tag::Weight),
    ("u-threshold", Some('x'), ArgKind::Req, Tag::UThreshold),
    ("l-threshold", Some('y'), ArgKind::Req, Tag::LThreshold),
    ("numeric", Some('n'), ArgKind::No, Tag::Numeric),
    ("connection", Some('c'), ArgKind::No, Tag::Connection),
    ("mcast-interface", None, ArgKind::Req, Tag::McastIf),
    ("syncid", None, ArgKind::Req, Tag::SyncId),
    ("timeout", None, ArgKind::No, Tag::Timeout),
    ("daemon", None, ArgKind::No, Tag::Daemon),
    ("stats", None, ArgKind::No, Tag::Stats),
    ("rate", None, ArgKind::No, Tag::Rate),
    ("thresholds", None, ArgKind::No, Tag::Thresholds),
    ("persistent-conn", None, ArgKind::No, Tag::PersistentConn),
    ("nosort", None, ArgKind::No, Tag::NoSort),
    ("sort", None, ArgKind::No, Tag::Sort),
    ("exact", Some('X'), ArgKind::No, Tag::Exact),
    ("ipv6", Some('6'), ArgKind::No, Tag::Ipv6),
    ("ops", Some('o'), ArgKind::No, Tag::Ops),
    ("pe", None, ArgKind::Req, Tag::Pe),
    ("sched-flags", Some('b'), ArgKind::Req, Tag::SchedFlags),
    ("mcast-group", None, ArgKind::Req, Tag::McastGroup),
    ("mcast-port", None, ArgKind::Req, Tag::McastPort),
    ("mcast-ttl", None, ArgKind::Req, Tag::McastTtl),
    ("sync-maxlen", None, ArgKind::Req, Tag::SyncMaxlen),
    ("tun-info", None, ArgKind::No, Tag::TunInfo),
    ("tun-type", None, ArgKind::Req, Tag::TunType),
    ("tun-port", None, ArgKind::Req, Tag::TunPort),
    ("tun-nocsum", None, ArgKind::No, Tag::TunNocsum),
    ("tun-csum", None, ArgKind::No, Tag::TunCsum),
    ("tun-remcsum", None, ArgKind::No, Tag::TunRemcsum),
];

/// popt's error codes we can produce, with `poptStrerror` text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PoptErr {
    BadOpt,
    NoArg,
    UnwantedArg,
}

impl PoptErr {
    fn text(self) -> &'static str {
        match self {
            PoptErr::BadOpt => "unknown option",
            PoptErr::NoArg => "missing argument",
            PoptErr::UnwantedArg => "option does not take an argument",
        }
    }
}

/// A minimal popt: short clusters (`-Ln`, `-srr`), long options with
/// `--opt value` / `--opt=value`, optional arguments taken from the next word
/// only if it does not start with `-`, `--` ending options, and non-option
/// words collected as leftovers (popt permutes them to the end).
struct Popt<'a> {
    args: &'a [String],
    next: usize,
    /// Byte offset of the rest of a short-option cluster in `args[next - 1]`.
    cluster: Option<usize>,
    leftovers: Vec<String>,
    no_more_opts: bool,
}

type Opt = (Tag, Option<String>);

impl<'a> Popt<'a> {
    fn new(args: &'a [String]) -> Self {
        Popt {
            args,
            next: 0,
            cluster: None,
            leftovers: Vec::new(),
            no_more_opts: false,
        }
    }

    /// `poptBadOption(…, POPT_BADOPTION_NOALIAS)`: the argv word last consumed.
    fn bad_option(&self) -> &str {
        self.next
            .checked_sub(1)
            .and_then(|i| self.args.get(i))
            .map(|s| s.as_str())
            .unwrap_or("")
    }

    fn take_next_word(&mut self, optional: bool) -> Option<String> {
        let w = self.args.get(self.next)?;
        if optional && w.starts_with('-') {
            return None;
        }
        self.next += 1;
        Some(w.clone())
    }

    fn next_opt(&mut self) -> Result<Option<Opt>, PoptErr> {
        loop {
            if let Some(off) = self.cluster {
                let cur = &self.args[self.next - 1];
                let c = cur[off..].chars().next().unwrap_or('\0');
                let after_off = off + c.len_utf8();
                let after = cur[after_off..].to_string();
                self.cluster = if after.is_empty() {
                    None
                } else {
                    Some(after_off)
                };
                let Some(&(_, _, kind, tag)) = OPTS.iter().find(|o| o.1 == Some(c)) else {
                    self.cluster = None;
                    return Err(PoptErr::BadOpt);
                };
                return match kind {
                    ArgKind::No => Ok(Some((tag, None))),
                    ArgKind::Req | ArgKind::Opt if !after.is_empty() => {
                        self.cluster = None;
                        Ok(Some((tag, Some(after))))
                    }
                    ArgKind::Req => match self.take_next_word(false) {
                        Some(w) => Ok(Some((tag, Some(w)))),
                        None => Err(PoptErr::NoArg),
                    },
                    ArgKind::Opt => Ok(Some((tag, self.take_next_word(true)))),
                };
            }
            let Some(a) = self.args.get(self.next) else {
                return Ok(None);
            };
            self.next += 1;
            if self.no_more_opts {
                self.leftovers.push(a.clone());
                continue;
            }
            if a == "--" {
                self.no_more_opts = true;
                continue;
            }
            if let Some(long) = a.strip_prefix("--") {
                let (name, val) = match long.split_once('=') {
                    Some((n, v)) => (n, Some(v.to_string())),
                    None => (long, None),
                };
                let Some(&(_, _, kind, tag)) = OPTS.iter().find(|o| o.0 == name) else {
                    return Err(PoptErr::BadOpt);
                };
                return match (kind, val) {
                    (ArgKind::No, Some(_)) => Err(PoptErr::UnwantedArg),
                    (ArgKind::No, None) => Ok(Some((tag, None))),
                    (_, Some(v)) => Ok(Some((tag, Some(v)))),
                    (ArgKind::Req, None) => match self.take_next_word(false) {
                        Some(w) => Ok(Some((tag, Some(w)))),
                        None => Err(PoptErr::NoArg),
                    },
                    (ArgKind::Opt, None) => Ok(Some((tag, self.take_next_word(true)))),
                };
            }
            if a.len() > 1 && a.starts_with('-') {
                self.cluster = Some(1);
                continue;
            }
            self.leftovers.push(a.clone());
        }
    }
}

// ---------------------------------------------------------------------------
// option bits and the legality tables

const OPTC_NUMERIC: usize = 0;
const OPTC_CONNECTION: usize = 1;
const OPTC_SERVICE: usize = 2;
const OPTC_SCHEDULER: usize = 3;
const OPTC_PERSISTENT: usize = 4;
const OPTC_NETMASK: usize = 5;
const OPTC_SERVER: usize = 6;
const OPTC_FORWARD: usize = 7;
const OPTC_WEIGHT: usize = 8;
const OPTC_UTHRESHOLD: usize = 9;
const OPTC_LTHRESHOLD: usize = 10;
const OPTC_MCAST: usize = 11;
const OPTC_TIMEOUT: usize = 12;
const OPTC_DAEMON: usize = 13;
const OPTC_STATS: usize = 14;
const OPTC_RATE: usize = 15;
const OPTC_THRESHOLDS: usize = 16;
const OPTC_PERSISTENTCONN: usize = 17;
const OPTC_NOSORT: usize = 18;
const OPTC_SYNCID: usize = 19;
const OPTC_EXACT: usize = 20;
const OPTC_ONEPACKET: usize = 21;
const OPTC_PE: usize = 22;
const OPTC_SCHED_FLAGS: usize = 23;
const OPTC_MCAST_GROUP: usize = 24;
const OPTC_MCAST_PORT: usize = 25;
const OPTC_MCAST_TTL: usize = 26;
const OPTC_SYNC_MAXLEN: usize = 27;
const OPTC_TUN_INFO: usize = 28;
const OPTC_TUN_TYPE: usize = 29;
const OPTC_TUN_PORT: usize = 30;
const OPTC_TUN_NOCSUM: usize = 31;
const OPTC_TUN_CSUM: usize = 32;
const OPTC_TUN_REMCSUM: usize = 33;
const NUMBER_OF_OPT: usize = 34;

/// `optnames[]`, the names used in messages (spec §4.5).
const OPTNAMES: [&str; NUMBER_OF_OPT] = [
    "numeric",
    "connection",
    "service-address",
    "scheduler",
    "persistent",
    "netmask",
    "real-server",
    "forwarding-method",
    "weight",
    "u-threshold",
    "l-threshold",
    "mcast-interface",
    "timeout",
    "daemon",
    "stats",
    "rate",
    "thresholds",
    "persistent-conn",
    "nosort",
    "syncid",
    "exact",
    "ops",
    "pe",
    "sched-flags",
    "mcast-group",
    "mcast-port",
    "mcast-ttl",
    "sync-maxlen",
    "tun-info",
    "tun-type",
    "tun-port",
    "tun-nocsum",
    "tun-csum",
    "tun-remcsum",
];

/// Commands in `cmdnames[]` order.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Cmd {
    Add,
    Edit,
    Del,
    Flush,
    List,
    AddDest,
    DelDest,
    EditDest,
    Timeout,
    StartDaemon,
    StopDaemon,
    Restore,
    Save,
    Zero,
}

const CMDNAMES: [&str; 14] = [
    "add-service",
    "edit-service",
    "delete-service",
    "flush",
    "list",
    "add-server",
    "delete-server",
    "edit-server",
    "set",
    "start-daemon",
    "stop-daemon",
    "restore",
    "save",
    "zero",
];

/// `commands_v_options` (spec §4.5): one row per command, one column per
/// option bit; `+` required, `x` illegal, `1` exclusive, ` ` optional.
const COMMANDS_V_OPTIONS: [&[u8; NUMBER_OF_OPT]; 14] = [
    b"xx+   xxxxxxxxxxxxxxx   xxxxxxxxxx", // add-service
    b"xx+   xxxxxxxxxxxxxxx   xxxxxxxxxx", // edit-service
    b"xx+xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx", // delete-service
    b"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx", // flush
    b" 11xxxxxxxxx11       xxxxxxx xxxxx", // list
    b"xx+xxx+    xxxxxxxxxxxxxxxxxx     ", // add-server
    b"xx+xxx+xxxxxxxxxxxxxxxxxxxxxxxxxxx", // delete-server
    b"xx+xxx+    xxxxxxxxxxxxxxxxxx     ", // edit-server
    b"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx", // set
    b"xxxxxxxxxxx xxxxxxx xxxx    xxxxxx", // start-daemon
    b"xxxxxxxxxxxxxxxxxxx xxxxxxxxxxxxxx", // stop-daemon
    b"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx", // restore
    b" xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx", // save
    b"xx xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx", // zero
];

/// `tunopts[]` and `tunnel_types_v_options` (spec §4.6), rows ipip, gue, gre.
const TUNOPTS: [usize; 4] = [
    OPTC_TUN_PORT,
    OPTC_TUN_NOCSUM,
    OPTC_TUN_CSUM,
    OPTC_TUN_REMCSUM,
];
const TUNNEL_TYPES_V_OPTIONS: [&[u8; 4]; 3] = [b"xxxx", b"+111", b"x11x"];
const TUNNAMES: [&str; 3] = ["ipip", "gue", "gre"];

/// `generic_opt_check` / `tunnel_opt_check`: walk the columns in order.
fn opt_check(
    row: &[u8],
    cols: &[usize],
    options: u64,
    what: &str,
    kind: &str,
) -> Result<(), ParseError> {
    let mut last = 0;
    let mut count = 0;
    for (j, &k) in cols.iter().enumerate() {
        let set = options & (1u64 << k) != 0;
        match (set, row[j]) {
            (false, b'+') => {
                return fail(format!(
                    "You need to supply the '{}' option for the '{what}' {kind}",
                    OPTNAMES[k]
                ))
            }
            (true, b'x') => {
                return fail(format!(
                    "Illegal '{}' option with the '{what}' {kind}",
                    OPTNAMES[k]
                ))
            }
            (true, b'1') => {
                count += 1;
                if count == 1 {
                    last = k;
                } else {
                    return fail(format!(
                        "The option '{}' conflicts with the '{}' option in the '{what}' {kind}",
                        OPTNAMES[k], OPTNAMES[last]
                    ));
                }
            }
            _ => {}
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// the command entry being built (ipvsadm's `struct ipvs_command_entry`)

/// Address family as ipvsadm tracks it while parsing (0 = not known yet).
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
enum Af {
    #[default]
    Unset,
    V4,
    V6,
}

/// The address part of `ipvs_service_t` that `parse_service` fills.
#[derive(Clone, Copy, Debug)]
struct SvcAddr {
    af: Af,
    proto: Option<Proto>,
    addr: Option<IpAddr>,
    port: u16,
    netmask: u32,
}

const SERVICE_ADDR: u8 = 1;
const SERVICE_PORT: u8 = 2;

/// ipvsadm's `str_is_digit` (true for the empty string too).
fn str_is_digit(s: &str) -> bool {
    s.bytes().all(|b| b.is_ascii_digit())
}

/// ipvsadm's `parse_service` (spec §4.3): returns `SERVICE_ADDR|SERVICE_PORT`
/// bits, 0 on error; mutates `svc` as the C code does.
fn parse_service(buf: &str, svc: &mut SvcAddr, names: &Names) -> u8 {
    if str_is_digit(buf) {
        return 0;
    }
    let mut s = buf;
    let mut portp: Option<&str> = None;
    if let Some(rest) = s.strip_prefix('[') {
        let Some(i) = rest.find(']') else {
            return 0;
        };
        let Some(p) = rest[i + 1..].strip_prefix(':') else {
            return 0;
        };
        portp = Some(p);
        s = &rest[..i];
    }
    if let Some(a6) = inet_pton6(s) {
        svc.addr = Some(IpAddr::V6(a6));
        svc.af = Af::V6;
        svc.netmask = 128;
    } else {
        // `strrchr(buf, ':')` replaces any port found after a `]`: a
        // bracketed IPv4 address therefore loses its port (as in 1.31).
        portp = match s.rfind(':') {
            Some(i) => {
                let p = &s[i + 1..];
                s = &s[..i];
                Some(p)
            }
            None => None,
        };
        if let Some(a) = inet_aton(s).or_else(|| names.host_to_v4(s)) {
            svc.addr = Some(IpAddr::V4(a));
            svc.af = Af::V4;
        } else {
            return 0;
        }
    }
    let mut result = SERVICE_ADDR;
    if let Some(p) = portp {
        result |= SERVICE_PORT;
        if let Some(n) = string_to_number(p, 0, 65535) {
            svc.port = n as u16;
        } else if let Some(n) = names.service_to_port(p, svc.proto) {
            svc.port = n;
        } else {
            return 0;
        }
    }
    result
}

/// ipvsadm's `parse_timeout`: no value → the default persistence timeout.
fn parse_timeout(buf: Option<&str>, min: i64, max: i64) -> Result<u32, ParseError> {
    let Some(b) = buf else {
        return Ok(DEFAULT_PERSIST_TIMEOUT);
    };
    match string_to_number(b, min, max) {
        Some(n) => Ok(n as u32),
        None => fail(format!("invalid timeout value `{b}' specified")),
    }
}

/// ipvsadm's `parse_sched_flags`; the scheduler defaults to `wlc`.
fn parse_sched_flags(sched: &str, arg: &str) -> Result<u32, ParseError> {
    let sched = if sched.is_empty() { "wlc" } else { sched };
    let mut flags = 0;
    let mut any = false;
    for flag in arg.split(',').filter(|f| !f.is_empty()) {
        any = true;
        let (bit, need) = match flag {
            "flag-1" => (SVC_F_SCHED1, None),
            "flag-2" => (SVC_F_SCHED2, None),
            "flag-3" => (SVC_F_SCHED3, None),
            "sh-fallback" => (SVC_F_SCHED1, Some("sh")),
            "sh-port" => (SVC_F_SCHED2, Some("sh")),
            "mh-fallback" => (SVC_F_SCHED1, Some("mh")),
            "mh-port" => (SVC_F_SCHED2, Some("mh")),
            _ => return fail(format!("invalid scheduler flag `{flag}'")),
        };
        flags |= bit;
        if need.is_some_and(|n| n != sched) {
            return fail(format!("incompatible scheduler flag `{flag}'"));
        }
    }
    if !any {
        // Only commas: 1.31 dereferences NULL here; report it as invalid.
        return fail(format!("invalid scheduler flag `{arg}'"));
    }
    Ok(flags)
}

/// Keep at most `n` bytes (C `strncpy` into a fixed buffer).
fn clip(s: &str, n: usize) -> String {
    let mut i = s.len().min(n);
    while !s.is_char_boundary(i) {
        i -= 1;
    }
    s[..i].to_string()
}

/// The state `parse_options` builds.
struct Ce {
    options: u64,
    format: ListFormat,
    svc: SvcAddr,
    fwmark: u32,
    flags: u32,
    timeout: u32,
    sched: String,
    pe: String,
    sched_flags_arg: String,
    dest: SvcAddr,
    fwd: FwdMethod,
    weight: i32,
    u_threshold: u32,
    l_threshold: u32,
    tun_type: usize,
    tun_port: u16,
    tun_flags: u32,
    timeouts: Timeouts,
    daemon: DaemonOpts,
}

impl Ce {
    /// `process_options` defaults (spec §4.4).
    fn new() -> Self {
        let blank = SvcAddr {
            af: Af::Unset,
            proto: None,
            addr: None,
            port: 0,
            netmask: 0xffff_ffff,
        };
        Ce {
            options: 0,
            format: ListFormat::default(),
            svc: blank,
            fwmark: 0,
            flags: 0,
            timeout: 0,
            sched: String::new(),
            pe: String::new(),
            sched_flags_arg: String::new(),
            dest: SvcAddr {
                netmask: 0,
                ..blank
            },
            fwd: FwdMethod::Route,
            weight: 1,
            u_threshold: 0,
            l_threshold: 0,
            tun_type: 0,
            tun_port: 0,
            tun_flags: 0,
            timeouts: Timeouts {
                tcp: 0,
                tcpfin: 0,
                udp: 0,
            },
            daemon: DaemonOpts {
                state: DaemonState::Master,
                mcast_ifn: String::new(),
                syncid: 0,
                mcast_group: None,
                mcast_port: 0,
                mcast_ttl: 0,
                sync_maxlen: 0,
            },
        }
    }

    fn set_option(&mut self, optc: usize) -> Result<(), ParseError> {
        let bit = 1u64 << optc;
        if self.options & bit != 0 {
            return fail(format!("multiple '{}' options specified", OPTNAMES[optc]));
        }
        self.options |= bit;
        Ok(())
    }

    fn has(&self, optc: usize) -> bool {
        self.options & (1u64 << optc) != 0
    }

    /// One iteration of the `while (poptGetNextOpt)` switch.
    fn option(
        &mut self,
        tag: Tag,
        arg: Option<String>,
        bad: &str,
        names: &Names,
    ) -> Result<(), ParseError> {
        let a = arg.as_deref().unwrap_or("");
        let num = |min: i64, max: i64, msg: &str| -> Result<i64, ParseError> {
            string_to_number(a, min, max).map_or_else(|| fail(msg), Ok)
        };
        match tag {
            Tag::Tcp | Tag::Udp | Tag::Sctp => {
                self.set_option(OPTC_SERVICE)?;
                self.svc.proto = Some(match tag {
                    Tag::Tcp => Proto::Tcp,
                    Tag::Udp => Proto::Udp,
                    _ => Proto::Sctp,
                });
                if parse_service(a, &mut self.svc, names) & SERVICE_ADDR == 0 {
                    return fail("illegal virtual server address[:port] specified");
                }
            }
            Tag::Fwmark => {
                self.set_option(OPTC_SERVICE)?;
                // Protocol set to a sane value even though it is not used.
                self.svc.af = Af::V4;
                self.svc.proto = Some(Proto::Tcp);
                self.fwmark = match strtol_full(a) {
                    Some(l) if l > 0 && l <= i64::from(u32::MAX) => l as u32,
                    _ => return fail(format!("invalid fwmark value `{a}' specified")),
                };
            }
            Tag::Scheduler => {
                self.set_option(OPTC_SCHEDULER)?;
                self.sched = clip(a, 15);
            }
            Tag::Persistent => {
                self.set_option(OPTC_PERSISTENT)?;
                self.flags |= SVC_F_PERSISTENT;
                self.timeout = parse_timeout(arg.as_deref(), 1, MAX_TIMEOUT)?;
            }
            Tag::Netmask => {
                self.set_option(OPTC_NETMASK)?;
                // The form depends on the family known *so far* (spec §4.3).
                if self.svc.af != Af::V6 {
                    match inet_aton(a).or_else(|| names.host_to_v4(a)) {
                        Some(m) => self.svc.netmask = u32::from(m),
                        None => return fail("illegal virtual server persistent mask specified"),
                    }
                } else {
                    let n = atoi(a);
                    if !(1..=128).contains(&n) {
                        return fail("illegal ipv6 netmask specified");
                    }
                    self.svc.netmask = n as u32;
                }
            }
            Tag::RealServer => {
                self.set_option(OPTC_SERVER)?;
                let mut t = self.svc;
                let parse = parse_service(a, &mut t, names);
                self.dest.af = t.af;
                self.dest.addr = t.addr;
                self.dest.port = t.port;
                if parse & SERVICE_ADDR == 0 {
                    return fail("illegal real server address[:port] specified");
                }
                // Copy vport to dport if not specified (the port known so far).
                if parse == SERVICE_ADDR {
                    self.dest.port = self.svc.port;
                }
            }
            Tag::Ipip | Tag::Gate | Tag::Masq => {
                self.set_option(OPTC_FORWARD)?;
                self.fwd = match tag {
                    Tag::Ipip => FwdMethod::Tunnel,
                    Tag::Gate => FwdMethod::Route,
                    _ => FwdMethod::Masq,
                };
            }
            Tag::Weight => {
                self.set_option(OPTC_WEIGHT)?;
                self.weight = num(0, 65535, "illegal weight specified")? as i32;
            }
            Tag::UThreshold => {
                self.set_option(OPTC_UTHRESHOLD)?;
                self.u_threshold =
                    num(0, i64::from(i32::MAX), "illegal u_threshold specified")? as u32;
            }
            Tag::LThreshold => {
                self.set_option(OPTC_LTHRESHOLD)?;
                self.l_threshold =
                    num(0, i64::from(i32::MAX), "illegal l_threshold specified")? as u32;
            }
            Tag::Connection => self.set_option(OPTC_CONNECTION)?,
            Tag::Numeric => {
                self.set_option(OPTC_NUMERIC)?;
                self.format.numeric = true;
            }
            Tag::McastIf => {
                self.set_option(OPTC_MCAST)?;
                self.daemon.mcast_ifn = clip(a, 15);
            }
            Tag::SyncId => {
                self.set_option(OPTC_SYNCID)?;
                self.daemon.syncid = num(0, 255, "illegal syncid specified")? as u8;
            }
            Tag::Timeout => self.set_option(OPTC_TIMEOUT)?,
            Tag::Daemon => self.set_option(OPTC_DAEMON)?,
            Tag::Stats => {
                self.set_option(OPTC_STATS)?;
                self.format.stats = true;
            }
            Tag::Rate => {
                self.set_option(OPTC_RATE)?;
                self.format.rate = true;
            }
            Tag::Thresholds => {
                self.set_option(OPTC_THRESHOLDS)?;
                self.format.thresholds = true;
            }
            Tag::PersistentConn => {
                self.set_option(OPTC_PERSISTENTCONN)?;
                self.format.persistent_conn = true;
            }
            Tag::NoSort => {
                self.set_option(OPTC_NOSORT)?;
                self.format.nosort = true;
            }
            // Sorting is the default; accepted anywhere for compatibility.
            Tag::Sort => {}
            Tag::Exact => {
                self.set_option(OPTC_EXACT)?;
                self.format.exact = true;
            }
            Tag::Ipv6 => {
                if self.fwmark != 0 {
                    self.svc.af = Af::V6;
                    self.svc.netmask = 128;
                } else {
                    // 1.31 passes a message ending in "\n" to fail(), which adds another.
                    return fail("-6 used before -f\n");
                }
            }
            Tag::Ops => {
                self.set_option(OPTC_ONEPACKET)?;
                self.flags |= SVC_F_ONEPACKET;
            }
            Tag::Pe => {
                self.set_option(OPTC_PE)?;
                self.pe = clip(a, 32);
            }
            Tag::SchedFlags => {
                self.set_option(OPTC_SCHED_FLAGS)?;
                self.sched_flags_arg = clip(a, 127);
            }
            Tag::McastGroup => {
                self.set_option(OPTC_MCAST_GROUP)?;
                if a.contains(':') {
                    match inet_pton6(a) {
                        Some(g) if g.segments()[0] >> 8 == 0xff => {
                            self.daemon.mcast_group = Some(IpAddr::V6(g))
                        }
                        _ => return fail(format!("invalid IPv6 mcast-group `{a}'")),
                    }
                } else {
                    match a.parse::<Ipv4Addr>() {
                        Ok(g) if g.is_multicast() => self.daemon.mcast_group = Some(IpAddr::V4(g)),
                        _ => return fail(format!("invalid IPv4 mcast-group `{a}'")),
                    }
                }
            }
            Tag::McastPort => {
                self.set_option(OPTC_MCAST_PORT)?;
                self.daemon.mcast_port = num(1, 65535, "illegal mcast-port specified")? as u16;
            }
            Tag::McastTtl => {
                self.set_option(OPTC_MCAST_TTL)?;
                self.daemon.mcast_ttl = num(1, 255, "illegal mcast-ttl specified")? as u8;
            }
            Tag::SyncMaxlen => {
                self.set_option(OPTC_SYNC_MAXLEN)?;
                self.daemon.sync_maxlen =
                    num(1, 65535 - 20 - 8, "illegal sync-maxlen specified")? as u16;
            }
            Tag::TunInfo => {
                self.set_option(OPTC_TUN_INFO)?;
                self.format.tun_info = true;
            }
            Tag::TunType => {
                self.set_option(OPTC_TUN_TYPE)?;
                self.tun_type = match a {
                    "ipip" => 0,
                    "gue" => 1,
                    "gre" => 2,
                    _ => return fail("illegal tunnel type specified"),
                };
            }
            Tag::TunPort => {
                self.set_option(OPTC_TUN_PORT)?;
                self.tun_port = num(1, 65535, "illegal tunnel port specified")? as u16;
            }
            Tag::TunNocsum => self.set_option(OPTC_TUN_NOCSUM)?,
            Tag::TunCsum => {
                self.set_option(OPTC_TUN_CSUM)?;
                self.tun_flags |= 1;
            }
            Tag::TunRemcsum => {
                self.set_option(OPTC_TUN_REMCSUM)?;
                self.tun_flags |= 2;
            }
            // Commands after the first (and -h/-v there) are not handled by
            // 1.31's option loop: "invalid option", never "multiple commands".
            _ => return fail(format!("invalid option `{bad}'")),
        }
        Ok(())
    }

    fn svc_id(&self) -> SvcId {
        if self.fwmark != 0 {
            SvcId::Fwmark {
                mark: self.fwmark,
                v6: self.svc.af == Af::V6,
            }
        } else {
            SvcId::Addr {
                proto: self.svc.proto.unwrap_or(Proto::Tcp),
                addr: self.svc.addr.unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED)),
                port: self.svc.port,
            }
        }
    }

    fn service_spec(&self) -> ServiceSpec {
        ServiceSpec {
            id: self.svc_id(),
            sched: self.sched.clone(),
            flags: self.flags,
            timeout: self.timeout,
            netmask: self.svc.netmask,
            pe: (!self.pe.is_empty()).then(|| self.pe.clone()),
        }
    }

    fn dest_spec(&self) -> DestSpec {
        DestSpec {
            addr: self.dest.addr.unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED)),
            port: self.dest.port,
            fwd: self.fwd,
            weight: self.weight,
            u_threshold: self.u_threshold,
            l_threshold: self.l_threshold,
            tun_type: match self.tun_type {
                1 => TunType::Gue,
                2 => TunType::Gre,
                _ => TunType::Ipip,
            },
            tun_port: self.tun_port,
            tun_flags: match self.tun_flags {
                1 => TunCsum::Csum,
                2 => TunCsum::RemCsum,
                _ => TunCsum::NoCsum,
            },
        }
    }
}

/// Parse one invocation (argv without the program name). `prog` is used in
/// the "Try `prog -h'" message. Host names go through `names`.
pub fn parse(prog: &str, args: &[String], names: &Names) -> Result<Command, ParseError> {
    // No argument at all: list everything, non-numeric (spec §4.1).
    if args.is_empty() {
        return Ok(Command::List(ListOpts {
            what: ListWhat::All,
            format: ListFormat::default(),
        }));
    }
    let tryhelp = || ParseError {
        message: format!("Try `{prog} -h' or '{prog} --help' for more information."),
        code: 255,
    };
    let mut popt = Popt::new(args);
    let mut ce = Ce::new();

    // The first option must be a command.
    let Ok(Some((tag, arg))) = popt.next_opt() else {
        return Err(tryhelp());
    };
    let daemon_state = |a: &Option<String>| match a.as_deref() {
        Some("master") => Some(DaemonState::Master),
        Some("backup") => Some(DaemonState::Backup),
        _ => None,
    };
    let cmd = match tag {
        Tag::AddService => Cmd::Add,
        Tag::EditService => Cmd::Edit,
        Tag::DelService => Cmd::Del,
        Tag::AddServer => Cmd::AddDest,
        Tag::EditServer => Cmd::EditDest,
        Tag::DelServer => Cmd::DelDest,
        Tag::Clear => Cmd::Flush,
        Tag::List => Cmd::List,
        Tag::Zero => Cmd::Zero,
        Tag::Set => Cmd::Timeout,
        Tag::Restore => Cmd::Restore,
        Tag::Save => Cmd::Save,
        Tag::StartDaemon => {
            ce.daemon.state = match daemon_state(&arg) {
                Some(s) => s,
                None => return fail("illegal start-daemon parameter specified"),
            };
            Cmd::StartDaemon
        }
        Tag::StopDaemon => {
            ce.daemon.state = match daemon_state(&arg) {
                Some(s) => s,
                None => return fail("illegal start_daemon specified"),
            };
            Cmd::StopDaemon
        }
        // -h and -v act immediately, ignoring whatever follows.
        Tag::Help => return Ok(Command::Help),
        Tag::Version => return Ok(Command::Version),
        _ => return Err(tryhelp()),
    };

    loop {
        match popt.next_opt() {
            Ok(None) => break,
            Ok(Some((tag, arg))) => {
                let bad = popt.bad_option().to_string();
                ce.option(tag, arg, &bad, names)?;
            }
            Err(e) => {
                return Err(ParseError {
                    message: format!("{}: {}", popt.bad_option(), e.text()),
                    code: 255,
                })
            }
        }
    }

    let mut leftovers = popt.leftovers.clone().into_iter();
    if cmd == Cmd::Timeout {
        let (Some(a), Some(b), Some(c)) = (leftovers.next(), leftovers.next(), leftovers.next())
        else {
            return fail("--set option requires 3 timeout values");
        };
        ce.timeouts = Timeouts {
            tcp: parse_timeout(Some(&a), 0, MAX_TIMEOUT)?,
            tcpfin: parse_timeout(Some(&b), 0, MAX_TIMEOUT)?,
            udp: parse_timeout(Some(&c), 0, MAX_TIMEOUT)?,
        };
    }
    if let Some(extra) = leftovers.next() {
        return fail(format!("unexpected argument {extra}"));
    }
    if !ce.sched_flags_arg.is_empty() {
        ce.flags &= !SVC_F_SCHED_MASK;
        ce.flags |= parse_sched_flags(&ce.sched, &ce.sched_flags_arg)?;
    }

    let all: Vec<usize> = (0..NUMBER_OF_OPT).collect();
    opt_check(
        COMMANDS_V_OPTIONS[cmd as usize],
        &all,
        ce.options,
        CMDNAMES[cmd as usize],
        "command",
    )?;

    if matches!(cmd, Cmd::Add | Cmd::Edit) {
        if ce.fwmark == 0 && ce.svc.port == 0 && ce.flags & SVC_F_PERSISTENT == 0 {
            return fail("Zero port specified for non-persistent service");
        }
        if ce.flags & SVC_F_ONEPACKET != 0 && ce.fwmark == 0 && ce.svc.proto != Some(Proto::Udp) {
            return fail("One-Packet Scheduling is only for UDP virtual services");
        }
        if ce.sched.is_empty() {
            ce.sched = "wlc".into();
        }
    }
    if cmd == Cmd::StartDaemon && ce.daemon.mcast_ifn.is_empty() {
        ce.daemon.mcast_ifn = "eth0".into();
    }
    if matches!(cmd, Cmd::AddDest | Cmd::EditDest) {
        // DR and TUN keep the service port (not for fwmark services).
        if ce.fwmark == 0 && matches!(ce.fwd, FwdMethod::Tunnel | FwdMethod::Route) {
            ce.dest.port = ce.svc.port;
        }
        if ce.dest.af != ce.svc.af && ce.fwd != FwdMethod::Tunnel {
            return fail("Different address family is allowed only for tunneling servers");
        }
        let tun_opts = [
            OPTC_TUN_TYPE,
            OPTC_TUN_PORT,
            OPTC_TUN_NOCSUM,
            OPTC_TUN_CSUM,
            OPTC_TUN_REMCSUM,
        ];
        if tun_opts.iter().any(|&o| ce.has(o)) && ce.fwd != FwdMethod::Tunnel {
            return fail("Tunnel options conflict with forward method");
        }
        opt_check(
            TUNNEL_TYPES_V_OPTIONS[ce.tun_type],
            &TUNOPTS,
            ce.options,
            TUNNAMES[ce.tun_type],
            "tunnel type",
        )?;
    }

    Ok(match cmd {
        Cmd::List => {
            let o = |c| ce.has(c);
            if (o(OPTC_CONNECTION) || o(OPTC_TIMEOUT) || o(OPTC_DAEMON))
                && (o(OPTC_STATS) || o(OPTC_RATE) || o(OPTC_THRESHOLDS))
                || (o(OPTC_TIMEOUT) || o(OPTC_DAEMON)) && o(OPTC_PERSISTENTCONN)
            {
                return fail("options conflicts in the list command");
            }
            let what = if o(OPTC_CONNECTION) {
                ListWhat::Conns
            } else if o(OPTC_SERVICE) {
                ListWhat::Service(ce.svc_id())
            } else if o(OPTC_TIMEOUT) {
                ListWhat::Timeout
            } else if o(OPTC_DAEMON) {
                ListWhat::Daemon
            } else {
                ListWhat::All
            };
            Command::List(ListOpts {
                what,
                format: ce.format,
            })
        }
        Cmd::Restore => Command::Restore,
        Cmd::Save => Command::Save {
            numeric: ce.format.numeric,
        },
        Cmd::Flush => Command::Flush,
        Cmd::Add => Command::AddService(ce.service_spec()),
        Cmd::Edit => Command::EditService(ce.service_spec()),
        Cmd::Del => Command::DelService(ce.svc_id()),
        Cmd::Zero => Command::Zero(ce.has(OPTC_SERVICE).then(|| ce.svc_id())),
        Cmd::AddDest => Command::AddDest(ce.svc_id(), ce.dest_spec()),
        Cmd::EditDest => Command::EditDest(ce.svc_id(), ce.dest_spec()),
        Cmd::DelDest => {
            let d = ce.dest_spec();
            Command::DelDest(ce.svc_id(), d.addr, d.port)
        }
        Cmd::Timeout => Command::SetTimeouts(ce.timeouts),
        Cmd::StartDaemon => Command::StartDaemon(ce.daemon.clone()),
        Cmd::StopDaemon => Command::StopDaemon(ce.daemon.clone()),
    })
}
