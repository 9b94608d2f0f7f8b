//! Steering only virtual-service traffic into the TUN device (tun mode).
//!
//! # What is installed
//!
//! With table `T` (default [`DEFAULT_TABLE`] = 4242) and rule preference base
//! `B` (default [`DEFAULT_PREF_BASE`] = 10):
//!
//! | pref | rule | why |
//! |---|---|---|
//! | `B` | `to VIP/32 ipproto P dport PORT lookup T` per service (no `dport` for port 0) | client → VIP traffic enters the device, even when the VIP is a local address |
//! | `B+10` | `lookup local` (moved here from pref 0) | everything else addressed to the host stays local |
//! | `B+11` | `from RIP/32 ipproto P sport RPORT lookup T` per NAT real server | replies of real servers enter the device; replies addressed to the director itself (health checks) already matched `local` |
//! | `32766`… | `main`, `default` | untouched |
//!
//! plus `default dev DEV table T` for IPv4 and IPv6, and the sysctls needed to
//! write packets back into the device:
//! - `net.ipv4.conf.DEV.accept_local=1`: reverse-NATed packets carry the VIP,
//!   possibly a local address, as source;
//! - `net.ipv4.conf.DEV.rp_filter=2` (loose) when the effective value,
//!   `max(conf.all.rp_filter, conf.DEV.rp_filter)`, is 1 (strict): forward
//!   packets written back carry the client's address, which is not routed
//!   via the device;
//! - `net.ipv4.ip_forward=1`, and `net.ipv6.conf.all.forwarding=1` once an
//!   IPv6 service or real server is added (note: IPv6 forwarding makes the
//!   kernel ignore router advertisements on interfaces with `accept_ra=1`;
//!   use `accept_ra=2` on uplinks configured by SLAAC).
//!
//! # The local rule
//!
//! The kernel's `0: from all lookup local` comes before every other rule, so a
//! rule for a VIP that is also a local address could never win. The first
//! service or real server of a family therefore *moves* it: tunvs adds
//! `pref B+10 lookup local` (tagged `protocol 76`, [`RTPROT_TUNVS`]) and only
//! then deletes the pref-0 rule (and any other plain `lookup local` rule below
//! `B+10`), so local delivery never has a gap. Teardown does the reverse: it
//! re-adds the deleted rules exactly as dumped (pref 0, `proto kernel`) and
//! then deletes its own. If a previous run died without tearing down, the next
//! [`Steering::setup`] deletes the stale rules pointing at table `T`, adopts a
//! leftover `lookup local` rule tagged 76 at `B+10`, and its teardown puts the
//! kernel's pref-0 rule back. Moving `local` changes the meaning of any other
//! rule at prefs `1..=B+11`, so such rules make the move fail with an error
//! that names them (pick a base below them).
//!
//! Table `T` belongs to tunvs: [`Steering::setup`] deletes every rule that
//! points at it. The table id 4242 is not used by the usual tenants of policy
//! routing (wg-quick 51820, Tailscale 52, Cilium 2004/2005, kube-router
//! 77–79); the base 10 sits below Tailscale (5210+) and Cilium's moved local
//! rule (100).
//!
//! # `--no-routes`
//!
//! [`Steering::describe`] renders the same configuration as `ip` and
//! `sysctl -w` commands that an operator can run as they are.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io;
use std::net::IpAddr;

use super::nl::Netlink;
use super::route::Route;
use super::rule::{Rule, RT_TABLE_DEFAULT, RT_TABLE_LOCAL, RT_TABLE_MAIN};
use super::sysctl::{self, SysctlChange};
use super::{errno, Family};
use crate::service::Proto;

/// Routing table tunvs owns unless told otherwise.
pub const DEFAULT_TABLE: u32 = 4242;
/// Preference of the service rules unless told otherwise.
pub const DEFAULT_PREF_BASE: u32 = 10;
/// Offset from the base of the moved `lookup local` rule.
pub const LOCAL_PREF_OFFSET: u32 = 10;
/// Offset from the base of the real-server reply rules.
pub const REPLY_PREF_OFFSET: u32 = 11;
/// `FRA_PROTOCOL` tag of the moved local rule (unassigned in `rt_protos`).
pub const RTPROT_TUNVS: u8 = 76;
/// `RTPROT_KERNEL`: the tag of the kernel's own default rules.
pub const RTPROT_KERNEL: u8 = 2;
/// First preference of the kernel's `main` rule; the base must stay below.
const MAIN_PREF: u32 = 32766;

/// Something [`Steering`] changed on the host, in the order it did it;
/// teardown undoes the list from the end.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Change {
    /// A sysctl was written (restore `old`).
    Sysctl(SysctlChange),
    /// A route was added or replaced (delete it).
    RouteAdded(Route),
    /// A rule was added (delete it).
    RuleAdded(Rule),
    /// A rule was deleted (add it back).
    RuleRemoved(Rule),
}

/// `(protocol, address, port)` of a virtual service or a real server; port 0
/// means every port.
pub type Endpoint = (Proto, IpAddr, u16);

/// Largest firewall mark tunvs can steer: each mark gets its own routing
/// table, `table + mark`.
pub const MAX_FWMARK: u32 = 65535;

/// What steering one firewall mark into its own device installed.
#[derive(Clone, Debug)]
struct FwmarkSteer {
    rule: Rule,
    changes: Vec<Change>,
}

/// The steering manager: policy rules, routes and sysctls for one device.
#[derive(Debug)]
pub struct Steering {
    nl: Netlink,
    dev_ifindex: u32,
    dev_name: String,
    table: u32,
    pref_base: u32,
    setup_done: bool,
    v6_route: bool,
    families: Vec<Family>,
    changes: Vec<Change>,
    services: BTreeMap<Endpoint, Rule>,
    fwmarks: BTreeMap<(u32, bool), FwmarkSteer>,
    replies: BTreeMap<Endpoint, (Rule, usize)>,
}

impl Steering {
    /// A manager for device `dev_name` (index `dev_ifindex`) using routing
    /// table `table` and rule preferences from `pref_base` (see the module
    /// documentation). Changes nothing until [`Steering::setup`].
    pub fn new(dev_ifindex: u32, dev_name: &str, table: u32, pref_base: u32) -> io::Result<Self> {
        if matches!(table, 0 | RT_TABLE_DEFAULT | RT_TABLE_MAIN | RT_TABLE_LOCAL) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "table {table} is reserved; pick an unused table id such as {DEFAULT_TABLE}"
                ),
            ));
        }
        if pref_base == 0 || pref_base + REPLY_PREF_OFFSET >= MAIN_PREF {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "rule preference base {pref_base} must be 1 to {}",
                    MAIN_PREF - REPLY_PREF_OFFSET - 1
                ),
            ));
        }
        Ok(Steering {
            nl: Netlink::open()?,
            dev_ifindex,
            dev_name: dev_name.to_string(),
            table,
            pref_base,
            setup_done: false,
            v6_route: false,
            families: Vec::new(),
            changes: Vec::new(),
            services: BTreeMap::new(),
            fwmarks: BTreeMap::new(),
            replies: BTreeMap::new(),
        })
    }

    /// Preference of the service rules.
    pub fn service_pref(&self) -> u32 {
        self.pref_base
    }

    /// Preference of the moved `lookup local` rule.
    pub fn local_pref(&self) -> u32 {
        self.pref_base + LOCAL_PREF_OFFSET
    }

    /// Preference of the real-server reply rules.
    pub fn reply_pref(&self) -> u32 {
        self.pref_base + REPLY_PREF_OFFSET
    }

    /// Everything changed so far that teardown will undo, oldest first
    /// (service and reply rules are tracked separately).
    pub fn changes(&self) -> &[Change] {
        &self.changes
    }

    /// Brings the device up, removes stale rules pointing at the table,
    /// installs the default routes (IPv4, and IPv6 when the host has it) and
    /// the IPv4 sysctls. Returns what it changed; a second call does nothing.
    pub fn setup(&mut self) -> io::Result<Vec<Change>> {
        if self.setup_done {
            return Ok(Vec::new());
        }
        let start = self.changes.len();
        self.nl.link_set_up(self.dev_ifindex, true)?;
        self.flush_stale()?;

        let r4 = Route::default_dev(Family::V4, self.dev_ifindex, self.table);
        self.nl.route_replace(&r4)?;
        self.changes.push(Change::RouteAdded(r4));
        // IPv6 may be off on this host or device; services of that family
        // retry and report the error then.
        let r6 = Route::default_dev(Family::V6, self.dev_ifindex, self.table);
        if self.nl.route_replace(&r6).is_ok() {
            self.changes.push(Change::RouteAdded(r6));
            self.v6_route = true;
        }

        // Restoring ip_forward=0 at teardown also resets every interface's
        // conf.*.forwarding, as writing it always does; it is only written
        // back if tunvs changed it.
        self.ensure_sysctl("net.ipv4.ip_forward", "1")?;
        let dev = self.dev_name.clone();
        self.prepare_v4_dev(&dev)?;
        self.setup_done = true;
        Ok(self.changes[start..].to_vec())
    }

    /// Steers `proto` traffic to `vip:vport` (any port when `vport` is 0)
    /// into the device. Runs [`Steering::setup`] first if needed.
    pub fn add_service(&mut self, proto: Proto, vip: IpAddr, vport: u16) -> io::Result<()> {
        let key = (proto, vip, vport);
        if self.services.contains_key(&key) {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!(
                    "service {} {} is already steered",
                    proto.name(),
                    sock(vip, vport)
                ),
            ));
        }
        self.ensure_family(Family::of(vip))?;
        let rule = self.service_rule(proto, vip, vport);
        self.nl.rule_add(&rule)?;
        self.services.insert(key, rule);
        Ok(())
    }

    /// Removes the rule of a service added with [`Steering::add_service`].
    pub fn del_service(&mut self, proto: Proto, vip: IpAddr, vport: u16) -> io::Result<()> {
        let key = (proto, vip, vport);
        let rule = self.services.remove(&key).ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::NotFound,
                format!(
                    "service {} {} is not steered",
                    proto.name(),
                    sock(vip, vport)
                ),
            )
        })?;
        if let Err(e) = self.del_rule(&rule) {
            self.services.insert(key, rule);
            return Err(e);
        }
        Ok(())
    }

    /// Steers `proto` replies from real server `rip:rport` (any port when 0)
    /// into the device. Reference counted: services sharing a real server
    /// each add it once.
    pub fn add_reply(&mut self, proto: Proto, rip: IpAddr, rport: u16) -> io::Result<()> {
        let key = (proto, rip, rport);
        if let Some((_, n)) = self.replies.get_mut(&key) {
            *n += 1;
            return Ok(());
        }
        self.ensure_family(Family::of(rip))?;
        let rule = self.reply_rule(proto, rip, rport);
        self.nl.rule_add(&rule)?;
        self.replies.insert(key, (rule, 1));
        Ok(())
    }

    /// Drops one reference to a real server's reply rule; the last removes it.
    pub fn del_reply(&mut self, proto: Proto, rip: IpAddr, rport: u16) -> io::Result<()> {
        let key = (proto, rip, rport);
        let Some((rule, n)) = self.replies.get_mut(&key) else {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!(
                    "real server {} {} is not steered",
                    proto.name(),
                    sock(rip, rport)
                ),
            ));
        };
        if *n > 1 {
            *n -= 1;
            return Ok(());
        }
        let rule = rule.clone();
        self.del_rule(&rule)?;
        self.replies.remove(&key);
        Ok(())
    }

    /// The routing table of firewall mark `mark`.
    pub fn fwmark_table(&self, mark: u32) -> u32 {
        self.table + mark
    }

    /// The rule [`Steering::add_fwmark`] installs.
    pub fn fwmark_rule(&self, mark: u32, v6: bool) -> Rule {
        let fam = if v6 { Family::V6 } else { Family::V4 };
        Rule::lookup(fam, self.fwmark_table(mark))
            .pref(self.service_pref())
            .fwmark(mark, u32::MAX)
    }

    /// Steers packets carrying firewall mark `mark` into their own device
    /// (`dev_ifindex`/`dev_name`): a firewall-mark service (`-f`). The daemon
    /// knows the mark from the device a packet came from, since a TUN reader
    /// cannot see `skb->mark`. Installs `default dev DEV table T+mark`, the
    /// device sysctls, and `fwmark MARK lookup T+mark` ahead of the local table.
    pub fn add_fwmark(
        &mut self,
        mark: u32,
        v6: bool,
        dev_ifindex: u32,
        dev_name: &str,
    ) -> io::Result<()> {
        if mark == 0 || mark > MAX_FWMARK {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("firewall mark {mark}: tunvs steers marks 1 to {MAX_FWMARK}"),
            ));
        }
        if self.fwmarks.contains_key(&(mark, v6)) {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!("firewall mark {mark} is already steered"),
            ));
        }
        let fam = if v6 { Family::V6 } else { Family::V4 };
        self.ensure_family(fam)?;
        // Record this mark's own changes apart, so removing the service undoes them.
        let outer = std::mem::take(&mut self.changes);
        let res = self.install_fwmark(mark, fam, dev_ifindex, dev_name);
        let own = std::mem::replace(&mut self.changes, outer);
        match res {
            Ok(rule) => {
                self.fwmarks
                    .insert((mark, v6), FwmarkSteer { rule, changes: own });
                Ok(())
            }
            Err(e) => {
                for c in own.iter().rev() {
                    let _ = self.undo(c);
                }
                Err(e)
            }
        }
    }

    fn install_fwmark(
        &mut self,
        mark: u32,
        fam: Family,
        ifindex: u32,
        dev: &str,
    ) -> io::Result<Rule> {
        self.nl.link_set_up(ifindex, true)?;
        let route = Route::default_dev(fam, ifindex, self.fwmark_table(mark));
        self.nl.route_replace(&route)?;
        self.changes.push(Change::RouteAdded(route));
        if fam == Family::V4 {
            self.prepare_v4_dev(dev)?;
        }
        let rule = self.fwmark_rule(mark, fam == Family::V6);
        self.nl.rule_add(&rule)?;
        Ok(rule)
    }

    /// Removes what [`Steering::add_fwmark`] installed for `mark`.
    pub fn del_fwmark(&mut self, mark: u32, v6: bool) -> io::Result<()> {
        let Some(f) = self.fwmarks.remove(&(mark, v6)) else {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!("firewall mark {mark} is not steered"),
            ));
        };
        let mut first = self.del_rule(&f.rule).err();
        for c in f.changes.iter().rev() {
            if let Err(e) = self.undo(c) {
                first.get_or_insert(e);
            }
        }
        first.map_or(Ok(()), Err)
    }

    /// `--no-routes`: the commands equivalent to [`Steering::add_fwmark`].
    pub fn describe_fwmark(&self, mark: u32, v6: bool, dev_name: &str) -> Vec<String> {
        let fam = if v6 { Family::V6 } else { Family::V4 };
        let dev = sh_word(dev_name);
        let route = Route::default_dev(fam, 0, self.fwmark_table(mark));
        let ip = if v6 { "ip -6" } else { "ip" };
        vec![
            format!("ip link set dev {dev} up"),
            format!("{ip} route replace {}", route.ip_args(&dev)),
            sysctl::command(&sysctl::conf_key(Family::V4, dev_name, "accept_local"), "1"),
            sysctl::command(&sysctl::conf_key(Family::V4, dev_name, "rp_filter"), "2"),
            rule_command("add", &self.fwmark_rule(mark, v6)),
        ]
    }

    /// Removes everything this manager added, in reverse order, puts the
    /// local rule back and restores the sysctls. Best effort: it goes on after
    /// an error and returns the first one. Calling it again does nothing.
    pub fn teardown(&mut self) -> io::Result<()> {
        let mut first: Option<io::Error> = None;
        let fwmarks: Vec<(u32, bool)> = self.fwmarks.keys().copied().collect();
        for (mark, v6) in fwmarks {
            if let Err(e) = self.del_fwmark(mark, v6) {
                first.get_or_insert(e);
            }
        }
        let replies = std::mem::take(&mut self.replies);
        let services = std::mem::take(&mut self.services);
        for rule in replies.values().map(|(r, _)| r).chain(services.values()) {
            if let Err(e) = self.del_rule(rule) {
                first.get_or_insert(e);
            }
        }
        while let Some(change) = self.changes.pop() {
            if let Err(e) = self.undo(&change) {
                first.get_or_insert(e);
            }
        }
        self.families.clear();
        self.setup_done = false;
        self.v6_route = false;
        first.map_or(Ok(()), Err)
    }

    /// The rule [`Steering::add_service`] installs.
    pub fn service_rule(&self, proto: Proto, vip: IpAddr, vport: u16) -> Rule {
        let fam = Family::of(vip);
        let r = Rule::lookup(fam, self.table)
            .pref(self.service_pref())
            .to_prefix(vip, fam.max_prefix())
            .ipproto(proto.number());
        if vport == 0 {
            r
        } else {
            r.dport(vport)
        }
    }

    /// The rule [`Steering::add_reply`] installs.
    pub fn reply_rule(&self, proto: Proto, rip: IpAddr, rport: u16) -> Rule {
        let fam = Family::of(rip);
        let r = Rule::lookup(fam, self.table)
            .pref(self.reply_pref())
            .from_prefix(rip, fam.max_prefix())
            .ipproto(proto.number());
        if rport == 0 {
            r
        } else {
            r.sport(rport)
        }
    }

    /// `--no-routes`: the commands equivalent to [`Steering::setup`].
    pub fn describe_setup(&self) -> Vec<String> {
        let dev = sh_word(&self.dev_name);
        let r4 = Route::default_dev(Family::V4, self.dev_ifindex, self.table);
        let r6 = Route::default_dev(Family::V6, self.dev_ifindex, self.table);
        vec![
            format!("ip link set dev {dev} up"),
            format!("ip route replace {}", r4.ip_args(&dev)),
            format!("ip -6 route replace {}", r6.ip_args(&dev)),
            sysctl::command("net.ipv4.ip_forward", "1"),
            sysctl::command(
                &sh_word(&sysctl::conf_key(
                    Family::V4,
                    &self.dev_name,
                    "accept_local",
                )),
                "1",
            ),
            sysctl::command(
                &sh_word(&sysctl::conf_key(Family::V4, &self.dev_name, "rp_filter")),
                "2",
            ),
        ]
    }

    /// `--no-routes`: the commands that prepare a family for its first
    /// service (IPv6 forwarding, moving `lookup local`).
    pub fn describe_family(&self, family: Family) -> Vec<String> {
        let mut v = Vec::new();
        if family == Family::V6 {
            v.push(sysctl::command("net.ipv6.conf.all.forwarding", "1"));
        }
        let moved = Rule::lookup(family, RT_TABLE_LOCAL).pref(self.local_pref());
        let kernel = Rule::lookup(family, RT_TABLE_LOCAL).pref(0);
        v.push(rule_command("add", &moved));
        v.push(rule_command("del", &kernel));
        v
    }

    /// `--no-routes`: the command equivalent to [`Steering::add_service`].
    pub fn describe_service(&self, proto: Proto, vip: IpAddr, vport: u16) -> String {
        rule_command("add", &self.service_rule(proto, vip, vport))
    }

    /// `--no-routes`: the command equivalent to [`Steering::add_reply`].
    pub fn describe_reply(&self, proto: Proto, rip: IpAddr, rport: u16) -> String {
        rule_command("add", &self.reply_rule(proto, rip, rport))
    }

    /// `--no-routes`: the command that undoes [`Steering::add_service`].
    pub fn describe_service_removal(&self, proto: Proto, vip: IpAddr, vport: u16) -> String {
        rule_command("del", &self.service_rule(proto, vip, vport))
    }

    /// `--no-routes`: the command that undoes [`Steering::add_reply`].
    pub fn describe_reply_removal(&self, proto: Proto, rip: IpAddr, rport: u16) -> String {
        rule_command("del", &self.reply_rule(proto, rip, rport))
    }

    /// `--no-routes`: [`Steering::describe_family`] the first time a family
    /// is asked for, nothing afterwards (what [`Steering::add_service`] and
    /// [`Steering::add_reply`] do once per family when they apply).
    pub fn describe_family_once(&mut self, family: Family) -> Vec<String> {
        if self.families.contains(&family) {
            return Vec::new();
        }
        self.families.push(family);
        self.describe_family(family)
    }

    /// `--no-routes`: a complete shell script (comments and commands) for
    /// these services and real servers; the undo commands follow as comments.
    pub fn describe(&self, services: &[Endpoint], replies: &[Endpoint]) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "# tunvs --no-routes: run as root to steer virtual-service traffic into {}\n\
             # (table {}; service rules at pref {}, `lookup local` moved to pref {}, \
             real-server reply rules at pref {})",
            self.dev_name,
            self.table,
            self.service_pref(),
            self.local_pref(),
            self.reply_pref()
        );
        for line in self.describe_commands(services, replies) {
            let _ = writeln!(s, "{line}");
        }
        let _ = writeln!(s, "# to undo:");
        for line in self.describe_teardown(services, replies) {
            let _ = writeln!(s, "#   {line}");
        }
        s
    }

    /// `--no-routes`: [`Steering::describe`] without the comments, one
    /// command per entry.
    pub fn describe_commands(&self, services: &[Endpoint], replies: &[Endpoint]) -> Vec<String> {
        let mut v = self.describe_setup();
        for fam in families(services, replies) {
            v.extend(self.describe_family(fam));
        }
        for &(p, a, port) in dedup(services) {
            v.push(self.describe_service(p, a, port));
        }
        for &(p, a, port) in dedup(replies) {
            v.push(self.describe_reply(p, a, port));
        }
        v
    }

    /// `--no-routes`: the commands that undo [`Steering::describe_commands`]
    /// (except the sysctls, whose old values only the operator knows).
    pub fn describe_teardown(&self, services: &[Endpoint], replies: &[Endpoint]) -> Vec<String> {
        let mut v = Vec::new();
        for &(p, a, port) in dedup(replies).into_iter().rev() {
            v.push(rule_command("del", &self.reply_rule(p, a, port)));
        }
        for &(p, a, port) in dedup(services).into_iter().rev() {
            v.push(rule_command("del", &self.service_rule(p, a, port)));
        }
        for fam in families(services, replies).into_iter().rev() {
            let moved = Rule::lookup(fam, RT_TABLE_LOCAL).pref(self.local_pref());
            let kernel = Rule::lookup(fam, RT_TABLE_LOCAL).pref(0);
            v.push(rule_command("add", &kernel));
            v.push(rule_command("del", &moved));
        }
        let dev = sh_word(&self.dev_name);
        let r4 = Route::default_dev(Family::V4, self.dev_ifindex, self.table);
        let r6 = Route::default_dev(Family::V6, self.dev_ifindex, self.table);
        v.push(format!("ip -6 route del {}", r6.ip_args(&dev)));
        v.push(format!("ip route del {}", r4.ip_args(&dev)));
        v
    }

    // ---- internals -------------------------------------------------------

    /// Writes a sysctl if needed and records the change.
    /// What a device that packets are written back into needs: reverse-NATed
    /// packets carry a local source (`accept_local=1`), DNATed ones a client
    /// routed elsewhere (rp_filter loose if strict).
    fn prepare_v4_dev(&mut self, dev: &str) -> io::Result<()> {
        self.ensure_sysctl(&sysctl::conf_key(Family::V4, dev, "accept_local"), "1")?;
        if let Some(c) = sysctl::loosen_rp_filter(dev)? {
            self.changes.push(Change::Sysctl(c));
        }
        Ok(())
    }

    fn ensure_sysctl(&mut self, key: &str, value: &str) -> io::Result<()> {
        if let Some(c) = sysctl::ensure(key, value)? {
            self.changes.push(Change::Sysctl(c));
        }
        Ok(())
    }

    /// Deletes rules left pointing at our table by a run that did not tear
    /// down.
    fn flush_stale(&mut self) -> io::Result<()> {
        for fam in [Family::V4, Family::V6] {
            let rules = match self.nl.rule_list(fam) {
                Ok(r) => r,
                // No IPv6 here: nothing stale either.
                Err(_) if fam == Family::V6 => continue,
                Err(e) => return Err(e),
            };
            let stale: Vec<Rule> = rules.into_iter().filter(|r| self.is_ours(r)).collect();
            for r in &stale {
                self.del_rule(r)?;
            }
        }
        Ok(())
    }

    /// A rule that looks up our table (ours by definition).
    fn is_ours(&self, r: &Rule) -> bool {
        r.action == super::rule::RuleAction::ToTable
            && (r.table == self.table
                || (r.fwmark.is_some()
                    && r.table > self.table
                    && r.table <= self.table + MAX_FWMARK))
    }

    /// Prepares a family for its first service or real server.
    fn ensure_family(&mut self, fam: Family) -> io::Result<()> {
        if self.families.contains(&fam) {
            return Ok(());
        }
        self.setup()?;
        if fam == Family::V6 {
            if !self.v6_route {
                let r6 = Route::default_dev(Family::V6, self.dev_ifindex, self.table);
                self.nl.route_replace(&r6)?;
                self.changes.push(Change::RouteAdded(r6));
                self.v6_route = true;
            }
            self.ensure_sysctl("net.ipv6.conf.all.forwarding", "1")?;
        }
        self.move_local_rule(fam)?;
        self.families.push(fam);
        Ok(())
    }

    /// Moves `lookup local` from pref 0 to [`Steering::local_pref`]: add the
    /// new rule first, then delete the old ones, recording both.
    fn move_local_rule(&mut self, fam: Family) -> io::Result<()> {
        let rules = self.nl.rule_list(fam)?;
        let local_pref = self.local_pref();
        let reply_pref = self.reply_pref();
        let pref = |r: &Rule| r.priority.unwrap_or(0);

        let conflicts: Vec<String> = rules
            .iter()
            .filter(|r| (1..=reply_pref).contains(&pref(r)))
            .filter(|r| !r.is_plain_lookup(RT_TABLE_LOCAL) && !self.is_ours(r))
            .map(|r| format!("`{}`", r))
            .collect();
        if !conflicts.is_empty() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "cannot move `lookup local` to pref {local_pref}: these rules would then \
                     come before it and change meaning: {}; choose a rule preference base \
                     so that prefs {}..={} are free",
                    conflicts.join(", "),
                    self.pref_base,
                    reply_pref
                ),
            ));
        }

        let old: Vec<Rule> = rules
            .iter()
            .filter(|r| r.is_plain_lookup(RT_TABLE_LOCAL) && pref(r) < local_pref)
            .cloned()
            .collect();
        let existing = rules
            .iter()
            .find(|r| r.is_plain_lookup(RT_TABLE_LOCAL) && pref(r) == local_pref);
        match existing {
            Some(r) if r.protocol == RTPROT_TUNVS => {
                // Left over by a run that did not tear down: adopt it, and
                // give the kernel's rule back at teardown.
                self.changes.push(Change::RuleAdded(r.clone()));
                if old.is_empty() {
                    let kernel = Rule::lookup(fam, RT_TABLE_LOCAL)
                        .pref(0)
                        .protocol(RTPROT_KERNEL);
                    self.changes.push(Change::RuleRemoved(kernel));
                }
            }
            Some(_) => {} // somebody else's rule at that pref: use, don't own
            None => {
                let moved = Rule::lookup(fam, RT_TABLE_LOCAL)
                    .pref(local_pref)
                    .protocol(RTPROT_TUNVS);
                self.nl.rule_add(&moved)?;
                self.changes.push(Change::RuleAdded(moved));
            }
        }
        for r in old {
            self.nl.rule_del(&r)?;
            self.changes.push(Change::RuleRemoved(r));
        }
        Ok(())
    }

    /// Deletes a rule; one that is already gone is fine.
    fn del_rule(&mut self, rule: &Rule) -> io::Result<()> {
        match self.nl.rule_del(rule) {
            Err(e) if errno(&e) == Some(libc::ENOENT) => Ok(()),
            r => r,
        }
    }

    /// Undoes one change; what is already undone (or whose device is gone)
    /// is fine.
    fn undo(&mut self, change: &Change) -> io::Result<()> {
        // (sysctl errors carry only the kind: a device's key vanishes with it)
        let gone = |e: &io::Error| {
            matches!(
                errno(e),
                Some(libc::ENOENT) | Some(libc::ESRCH) | Some(libc::ENODEV)
            ) || e.kind() == io::ErrorKind::NotFound
        };
        let r = match change {
            Change::Sysctl(c) => c.restore(),
            Change::RouteAdded(r) => self.nl.route_del(r),
            Change::RuleAdded(r) => self.nl.rule_del(r),
            Change::RuleRemoved(r) => match self.nl.rule_add(r) {
                Err(e) if errno(&e) == Some(libc::EEXIST) => Ok(()),
                r => r,
            },
        };
        match r {
            Err(e) if gone(&e) => Ok(()),
            r => r,
        }
    }
}

impl Drop for Steering {
    fn drop(&mut self) {
        let _ = self.teardown();
    }
}

/// `ip [-6] rule VERB ARGS`.
fn rule_command(verb: &str, rule: &Rule) -> String {
    format!("ip{} rule {verb} {}", rule.family.ip_flag(), rule.ip_args())
}

/// `addr:port`, with brackets for IPv6.
fn sock(addr: IpAddr, port: u16) -> String {
    std::net::SocketAddr::new(addr, port).to_string()
}

/// The families used, IPv4 first.
fn families(services: &[Endpoint], replies: &[Endpoint]) -> Vec<Family> {
    let mut v: Vec<Family> = services
        .iter()
        .chain(replies)
        .map(|k| Family::of(k.1))
        .collect();
    v.sort();
    v.dedup();
    v
}

/// The keys in order, without repeats (shared real servers).
fn dedup(keys: &[Endpoint]) -> Vec<&Endpoint> {
    let mut seen = std::collections::BTreeSet::new();
    keys.iter().filter(|k| seen.insert(**k)).collect()
}

/// Quotes a word for `sh` unless it is made of safe characters only.
fn sh_word(s: &str) -> String {
    let safe = |c: char| c.is_ascii_alphanumeric() || "_-.:/%@+=,".contains(c);
    if !s.is_empty() && s.chars().all(safe) {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn steering() -> Steering {
        Steering::new(7, "tunvs0", DEFAULT_TABLE, DEFAULT_PREF_BASE).unwrap()
    }

    #[test]
    fn rules_have_the_documented_shape() {
        let s = steering();
        let vip: IpAddr = "10.0.0.1".parse().unwrap();
        let r = s.service_rule(Proto::Tcp, vip, 80);
        assert_eq!(
            r.ip_args(),
            "pref 10 to 10.0.0.1/32 ipproto 6 dport 80 lookup 4242"
        );
        let r = s.service_rule(Proto::Udp, vip, 0);
        assert_eq!(r.ip_args(), "pref 10 to 10.0.0.1/32 ipproto 17 lookup 4242");
        let rip: IpAddr = "2001:db8::5".parse().unwrap();
        let r = s.reply_rule(Proto::Sctp, rip, 3868);
        assert_eq!(
            r.to_string(),
            "-6 pref 21 from 2001:db8::5/128 ipproto 132 sport 3868 lookup 4242"
        );
    }

    #[test]
    fn no_routes_text_is_exact() {
        let s = steering();
        let services = [
            (Proto::Tcp, "10.0.0.1".parse().unwrap(), 80),
            (Proto::Tcp, "2001:db8::1".parse().unwrap(), 443),
        ];
        let replies = [
            (Proto::Tcp, "192.168.1.10".parse().unwrap(), 8080),
            (Proto::Tcp, "192.168.1.10".parse().unwrap(), 8080),
        ];
        let want = "\
# tunvs --no-routes: run as root to steer virtual-service traffic into tunvs0
# (table 4242; service rules at pref 10, `lookup local` moved to pref 20, real-server reply rules at pref 21)
ip link set dev tunvs0 up
ip route replace default dev tunvs0 table 4242
ip -6 route replace default dev tunvs0 table 4242
sysctl -w net.ipv4.ip_forward=1
sysctl -w net.ipv4.conf.tunvs0.accept_local=1
sysctl -w net.ipv4.conf.tunvs0.rp_filter=2
ip rule add pref 20 lookup local
ip rule del pref 0 lookup local
sysctl -w net.ipv6.conf.all.forwarding=1
ip -6 rule add pref 20 lookup local
ip -6 rule del pref 0 lookup local
ip rule add pref 10 to 10.0.0.1/32 ipproto 6 dport 80 lookup 4242
ip -6 rule add pref 10 to 2001:db8::1/128 ipproto 6 dport 443 lookup 4242
ip rule add pref 21 from 192.168.1.10/32 ipproto 6 sport 8080 lookup 4242
# to undo:
#   ip rule del pref 21 from 192.168.1.10/32 ipproto 6 sport 8080 lookup 4242
#   ip -6 rule del pref 10 to 2001:db8::1/128 ipproto 6 dport 443 lookup 4242
#   ip rule del pref 10 to 10.0.0.1/32 ipproto 6 dport 80 lookup 4242
#   ip -6 rule add pref 0 lookup local
#   ip -6 rule del pref 20 lookup local
#   ip rule add pref 0 lookup local
#   ip rule del pref 20 lookup local
#   ip -6 route del default dev tunvs0 table 4242
#   ip route del default dev tunvs0 table 4242
";
        assert_eq!(s.describe(&services, &replies), want);
    }

    #[test]
    fn bad_tables_and_prefs_are_refused() {
        assert!(Steering::new(1, "t", 254, 10).is_err());
        assert!(Steering::new(1, "t", 0, 10).is_err());
        assert!(Steering::new(1, "t", 100, 0).is_err());
        assert!(Steering::new(1, "t", 100, 32755).is_err());
        assert!(Steering::new(1, "t", 100, 32754).is_ok());
    }

    #[test]
    fn odd_device_names_are_quoted() {
        assert_eq!(sh_word("tunvs0"), "tunvs0");
        assert_eq!(sh_word("a b"), "'a b'");
        assert_eq!(sh_word("it's"), r"'it'\''s'");
    }
}
