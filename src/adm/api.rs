//! The operations `tunvs adm` performs on the director, as a trait, so the
//! command line (parsing, execution, output) is a plain library over tables
//! (the Katran habit): the daemon implements it over its live tables, tests
//! over a fresh in-process director.

use std::net::IpAddr;

use crate::service::{DestSpec, ServiceSpec, SvcId};
use crate::stats::StatsSnapshot;

/// The errors of kernel IPVS operations (the errno values ipvsadm maps to
/// messages in `ipvs_strerror`, spec §4.12).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IpvsError {
    /// EEXIST: service or destination already exists, daemon already running.
    Exists,
    /// ENOENT: scheduler/persistence engine not found, or no such destination.
    NotFound,
    /// ESRCH: no such service / service not defined, no daemon running.
    NoService,
    /// EINVAL: invalid operation (bad address, GUE without port, …).
    Invalid,
    /// ERANGE: value out of range (l_threshold > u_threshold, negative weight).
    Range,
    /// EPERM.
    Permission,
    /// EOPNOTSUPP: not supported (e.g. sync daemons in tunvs).
    NotSupported,
    /// EAFNOSUPPORT.
    AfNotSupported,
    /// Any other error, with its text.
    Other(String),
}

/// Timeouts in seconds (`--set tcp tcpfin udp`, `-L --timeout`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// TCP ESTABLISHED.
    pub tcp: u32,
    /// TCP FIN_WAIT.
    pub tcpfin: u32,
    /// UDP.
    pub udp: u32,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            tcp: 900,
            tcpfin: 120,
            udp: 300,
        }
    }
}

/// A destination as listings show it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DestSnapshot {
    /// Settings (address, port, method, weight, thresholds, tunnel).
    pub spec: DestSpec,
    /// ActiveConn.
    pub activeconns: u32,
    /// InActConn.
    pub inactconns: u32,
    /// PersistConn.
    pub persistconns: u32,
    /// Counters and rates.
    pub stats: StatsSnapshot,
}

/// A service as listings show it; `dests` in kernel list order (newest first).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceSnapshot {
    /// Settings.
    pub spec: ServiceSpec,
    /// Counters and rates.
    pub stats: StatsSnapshot,
    /// Destinations, newest first (ipvsadm sorts unless `--nosort`).
    pub dests: Vec<DestSnapshot>,
}

/// One connection or template, as `/proc/net/ip_vs_conn` would list it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnSnapshot {
    /// `TCP`, `UDP`, `SCTP`, or `IP` for fwmark templates.
    pub proto: &'static str,
    /// Client address.
    pub caddr: IpAddr,
    /// Client port (0 for templates).
    pub cport: u16,
    /// Virtual address (for fwmark templates: the mark as an IPv4 address).
    pub vaddr: IpAddr,
    /// Virtual port.
    pub vport: u16,
    /// Real server address.
    pub daddr: IpAddr,
    /// Real server port.
    pub dport: u16,
    /// State name (`ESTABLISHED`, `NONE`, `ASSURED`, `UDP`, …).
    pub state: &'static str,
    /// Seconds until expiry.
    pub expires: u32,
    /// Persistence engine name and data, if any.
    pub pe: Option<(String, String)>,
}

/// The director as `tunvs adm` sees it. Every mutating call either succeeds
/// or changes nothing.
pub trait Ipvs {
    /// `-A`.
    fn add_service(&self, s: &ServiceSpec) -> Result<(), IpvsError>;
    /// `-E` (a complete record: unspecified options already hold defaults).
    fn edit_service(&self, s: &ServiceSpec) -> Result<(), IpvsError>;
    /// `-D`.
    fn del_service(&self, id: &SvcId) -> Result<(), IpvsError>;
    /// `-C`.
    fn flush(&self) -> Result<(), IpvsError>;
    /// `-a`.
    fn add_dest(&self, svc: &SvcId, d: &DestSpec) -> Result<(), IpvsError>;
    /// `-e` (a complete record).
    fn edit_dest(&self, svc: &SvcId, d: &DestSpec) -> Result<(), IpvsError>;
    /// `-d`.
    fn del_dest(&self, svc: &SvcId, addr: IpAddr, port: u16) -> Result<(), IpvsError>;
    /// `-Z` (all services and the global totals when `svc` is None).
    fn zero(&self, svc: Option<&SvcId>) -> Result<(), IpvsError>;
    /// `--set` (0 = leave unchanged).
    fn set_timeouts(&self, t: Timeouts) -> Result<(), IpvsError>;
    /// `-L --timeout`.
    fn timeouts(&self) -> Timeouts;
    /// All services, in the director's own order (`--nosort` order).
    fn services(&self) -> Vec<ServiceSnapshot>;
    /// Connection entries and templates (`-L -c`).
    fn conns(&self) -> Vec<ConnSnapshot>;
    /// Connection table size shown in the version line (`size=4096`).
    fn conn_tab_size(&self) -> u32 {
        4096
    }
    /// A warning to print after a successful `-a`/`-e` (e.g. a forwarding
    /// method this device mode cannot carry yet), or None.
    fn dest_warning(&self, _svc: &SvcId, _d: &DestSpec) -> Option<String> {
        None
    }
}
