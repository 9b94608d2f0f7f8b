//! FIB (policy routing) rules: `RTM_NEWRULE` / `RTM_DELRULE` / `RTM_GETRULE`.
//!
//! A rule message is `struct fib_rule_hdr` (uapi `linux/fib_rules.h`):
//! `u8 family, dst_len, src_len, tos, table, res1, res2, action; u32 flags`
//! followed by `FRA_*` attributes. Tables above 255 do not fit the header's
//! `table` byte: it is then `RT_TABLE_UNSPEC` and the id travels in
//! `FRA_TABLE` (sent always, as the kernel prefers it).

use std::fmt;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::nl::{self, MsgBuf, Netlink};
use super::Family;

/// `FRA_DST`: destination prefix.
pub const FRA_DST: u16 = 1;
/// `FRA_SRC`: source prefix.
pub const FRA_SRC: u16 = 2;
/// `FRA_IIFNAME`: input interface.
pub const FRA_IIFNAME: u16 = 3;
/// `FRA_GOTO`: target priority of a goto rule.
pub const FRA_GOTO: u16 = 4;
/// `FRA_PRIORITY`: the rule's preference.
pub const FRA_PRIORITY: u16 = 6;
/// `FRA_FWMARK`: firewall mark.
pub const FRA_FWMARK: u16 = 10;
/// `FRA_SUPPRESS_IFGROUP`.
pub const FRA_SUPPRESS_IFGROUP: u16 = 13;
/// `FRA_SUPPRESS_PREFIXLEN`.
pub const FRA_SUPPRESS_PREFIXLEN: u16 = 14;
/// `FRA_TABLE`: table id as u32.
pub const FRA_TABLE: u16 = 15;
/// `FRA_FWMASK`: firewall mark mask.
pub const FRA_FWMASK: u16 = 16;
/// `FRA_OIFNAME`: output interface.
pub const FRA_OIFNAME: u16 = 17;
/// `FRA_PAD`: alignment padding.
pub const FRA_PAD: u16 = 18;
/// `FRA_PROTOCOL`: who installed the rule (`RTPROT_*`).
pub const FRA_PROTOCOL: u16 = 21;
/// `FRA_IP_PROTO`: IP protocol selector.
pub const FRA_IP_PROTO: u16 = 22;
/// `FRA_SPORT_RANGE`: `struct fib_rule_port_range { u16 start, end; }`.
pub const FRA_SPORT_RANGE: u16 = 23;
/// `FRA_DPORT_RANGE`: as `FRA_SPORT_RANGE`, for the destination port.
pub const FRA_DPORT_RANGE: u16 = 24;

/// `FIB_RULE_INVERT` header flag: `ip rule add not …`.
pub const FIB_RULE_INVERT: u32 = 0x2;
/// `RT_TABLE_UNSPEC`.
pub const RT_TABLE_UNSPEC: u32 = 0;
/// `RT_TABLE_DEFAULT`.
pub const RT_TABLE_DEFAULT: u32 = 253;
/// `RT_TABLE_MAIN`.
pub const RT_TABLE_MAIN: u32 = 254;
/// `RT_TABLE_LOCAL`.
pub const RT_TABLE_LOCAL: u32 = 255;

/// Length of `struct fib_rule_hdr`.
const FIB_RULE_HDR_LEN: usize = 12;

/// What a rule does when it matches (`FR_ACT_*`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RuleAction {
    /// `lookup TABLE` (`FR_ACT_TO_TBL`).
    ToTable,
    /// `goto PREF` (`FR_ACT_GOTO`).
    Goto,
    /// `nop` (`FR_ACT_NOP`).
    Nop,
    /// `blackhole` (`FR_ACT_BLACKHOLE`).
    Blackhole,
    /// `unreachable` (`FR_ACT_UNREACHABLE`).
    Unreachable,
    /// `prohibit` (`FR_ACT_PROHIBIT`).
    Prohibit,
    /// Anything else, by number.
    Other(u8),
}

impl RuleAction {
    /// The `FR_ACT_*` number.
    pub fn number(self) -> u8 {
        match self {
            RuleAction::ToTable => 1,
            RuleAction::Goto => 2,
            RuleAction::Nop => 3,
            RuleAction::Blackhole => 6,
            RuleAction::Unreachable => 7,
            RuleAction::Prohibit => 8,
            RuleAction::Other(n) => n,
        }
    }

    /// From an `FR_ACT_*` number.
    pub fn from_number(n: u8) -> RuleAction {
        match n {
            1 => RuleAction::ToTable,
            2 => RuleAction::Goto,
            3 => RuleAction::Nop,
            6 => RuleAction::Blackhole,
            7 => RuleAction::Unreachable,
            8 => RuleAction::Prohibit,
            n => RuleAction::Other(n),
        }
    }
}

/// One FIB rule: selectors, a priority and an action. Build one with
/// [`Rule::lookup`] and the chained setters; dumps fill in the same struct.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Rule {
    /// Address family.
    pub family: Family,
    /// `pref`; `None` lets the kernel choose (on add) or matches any (on
    /// delete). Dumps report 0 as `Some(0)`.
    pub priority: Option<u32>,
    /// `from PREFIX`.
    pub src: Option<(IpAddr, u8)>,
    /// `to PREFIX`.
    pub dst: Option<(IpAddr, u8)>,
    /// `tos` (0: any).
    pub tos: u8,
    /// `ipproto N`.
    pub ip_proto: Option<u8>,
    /// `sport A-B`.
    pub sport: Option<(u16, u16)>,
    /// `dport A-B`.
    pub dport: Option<(u16, u16)>,
    /// `fwmark MARK/MASK`.
    pub fwmark: Option<(u32, u32)>,
    /// `iif NAME`.
    pub iif: Option<String>,
    /// `oif NAME`.
    pub oif: Option<String>,
    /// Table for [`RuleAction::ToTable`] (0 otherwise).
    pub table: u32,
    /// What happens on a match.
    pub action: RuleAction,
    /// `FRA_PROTOCOL` (`RTPROT_*`); 0 is "unspec" and is not sent.
    pub protocol: u8,
    /// `fib_rule_hdr.flags` (`FIB_RULE_INVERT`, …).
    pub flags: u32,
    /// Attributes this module does not model, as dumped; sent back verbatim.
    pub extra: Vec<(u16, Vec<u8>)>,
}

impl Rule {
    /// `lookup TABLE` with no selectors and no priority.
    pub fn lookup(family: Family, table: u32) -> Rule {
        Rule {
            family,
            priority: None,
            src: None,
            dst: None,
            tos: 0,
            ip_proto: None,
            sport: None,
            dport: None,
            fwmark: None,
            iif: None,
            oif: None,
            table,
            action: RuleAction::ToTable,
            protocol: 0,
            flags: 0,
            extra: Vec::new(),
        }
    }

    /// Sets `pref`.
    pub fn pref(mut self, pref: u32) -> Rule {
        self.priority = Some(pref);
        self
    }

    /// Sets `from ADDR/LEN`.
    pub fn from_prefix(mut self, addr: IpAddr, len: u8) -> Rule {
        self.src = Some((addr, len));
        self
    }

    /// Sets `to ADDR/LEN`.
    pub fn to_prefix(mut self, addr: IpAddr, len: u8) -> Rule {
        self.dst = Some((addr, len));
        self
    }

    /// Sets `ipproto N`.
    pub fn ipproto(mut self, proto: u8) -> Rule {
        self.ip_proto = Some(proto);
        self
    }

    /// Sets `sport PORT`.
    pub fn sport(mut self, port: u16) -> Rule {
        self.sport = Some((port, port));
        self
    }

    /// Sets `dport PORT`.
    pub fn dport(mut self, port: u16) -> Rule {
        self.dport = Some((port, port));
        self
    }

    /// Sets `fwmark MARK/MASK`.
    pub fn fwmark(mut self, mark: u32, mask: u32) -> Rule {
        self.fwmark = Some((mark, mask));
        self
    }

    /// Sets `iif NAME`.
    pub fn iif(mut self, name: &str) -> Rule {
        self.iif = Some(name.to_string());
        self
    }

    /// Sets the `FRA_PROTOCOL` tag.
    pub fn protocol(mut self, proto: u8) -> Rule {
        self.protocol = proto;
        self
    }

    /// True for a plain `lookup TABLE` rule: no selector of any kind.
    pub fn is_plain_lookup(&self, table: u32) -> bool {
        self.action == RuleAction::ToTable
            && self.table == table
            && self.src.is_none()
            && self.dst.is_none()
            && self.tos == 0
            && self.ip_proto.is_none()
            && self.sport.is_none()
            && self.dport.is_none()
            && self.fwmark.is_none()
            && self.iif.is_none()
            && self.oif.is_none()
            && self.flags & FIB_RULE_INVERT == 0
            && self.extra.is_empty()
    }

    /// The same rule without its priority and protocol tag, for comparing
    /// what rules do rather than where they sit.
    pub fn selectors(&self) -> Rule {
        Rule {
            priority: None,
            protocol: 0,
            ..self.clone()
        }
    }

    /// Encodes the rule as a complete netlink message.
    pub fn message(&self, msg_type: u16, flags: u16, seq: u32) -> Vec<u8> {
        let mut m = MsgBuf::new(msg_type, flags, seq);
        let hdr_table = if self.table <= 255 {
            self.table as u8
        } else {
            RT_TABLE_UNSPEC as u8
        };
        let mut hdr = [0u8; FIB_RULE_HDR_LEN];
        hdr[0] = self.family.af();
        hdr[1] = self.dst.map_or(0, |d| d.1);
        hdr[2] = self.src.map_or(0, |s| s.1);
        hdr[3] = self.tos;
        hdr[4] = hdr_table;
        hdr[7] = self.action.number();
        hdr[8..12].copy_from_slice(&self.flags.to_ne_bytes());
        m.push(&hdr);
        if let Some(p) = self.priority {
            m.attr_u32(FRA_PRIORITY, p);
        }
        if let Some((a, _)) = self.src {
            m.attr(FRA_SRC, &addr_bytes(a));
        }
        if let Some((a, _)) = self.dst {
            m.attr(FRA_DST, &addr_bytes(a));
        }
        if let Some(n) = &self.iif {
            m.attr_str(FRA_IIFNAME, n);
        }
        if let Some(n) = &self.oif {
            m.attr_str(FRA_OIFNAME, n);
        }
        if let Some((mark, mask)) = self.fwmark {
            m.attr_u32(FRA_FWMARK, mark);
            m.attr_u32(FRA_FWMASK, mask);
        }
        if let Some(p) = self.ip_proto {
            m.attr_u8(FRA_IP_PROTO, p);
        }
        if let Some(r) = self.sport {
            m.attr(FRA_SPORT_RANGE, &port_range(r));
        }
        if let Some(r) = self.dport {
            m.attr(FRA_DPORT_RANGE, &port_range(r));
        }
        if self.action == RuleAction::ToTable {
            m.attr_u32(FRA_TABLE, self.table);
        }
        if self.protocol != 0 {
            m.attr_u8(FRA_PROTOCOL, self.protocol);
        }
        for (ty, p) in &self.extra {
            m.attr(*ty, p);
        }
        m.finish()
    }

    /// Decodes an `RTM_NEWRULE` payload (after the `nlmsghdr`); `None` for a
    /// family other than IPv4/IPv6 or a truncated message.
    pub fn parse(payload: &[u8]) -> Option<Rule> {
        let hdr = payload.get(..FIB_RULE_HDR_LEN)?;
        let family = Family::from_af(hdr[0])?;
        let (dst_len, src_len) = (hdr[1], hdr[2]);
        let mut r = Rule::lookup(family, hdr[4] as u32);
        r.tos = hdr[3];
        r.action = RuleAction::from_number(hdr[7]);
        r.flags = u32::from_ne_bytes(hdr[8..12].try_into().ok()?);
        r.priority = Some(0); // the kernel omits FRA_PRIORITY for pref 0
        let (mut mark, mut mask) = (None, None);
        for (ty, p) in nl::attrs(&payload[FIB_RULE_HDR_LEN..]) {
            match ty {
                FRA_DST => r.dst = Some((parse_addr(family, p)?, dst_len)),
                FRA_SRC => r.src = Some((parse_addr(family, p)?, src_len)),
                FRA_IIFNAME => r.iif = Some(nl::get_str(p)),
                FRA_OIFNAME => r.oif = Some(nl::get_str(p)),
                FRA_PRIORITY => r.priority = nl::get_u32(p),
                FRA_FWMARK => mark = nl::get_u32(p),
                FRA_FWMASK => mask = nl::get_u32(p),
                FRA_TABLE => r.table = nl::get_u32(p)?,
                FRA_PROTOCOL => r.protocol = *p.first()?,
                FRA_IP_PROTO => r.ip_proto = Some(*p.first()?),
                FRA_SPORT_RANGE => r.sport = Some((nl::get_u16(p, 0)?, nl::get_u16(p, 2)?)),
                FRA_DPORT_RANGE => r.dport = Some((nl::get_u16(p, 0)?, nl::get_u16(p, 2)?)),
                // Defaults the kernel always reports: "not set".
                FRA_SUPPRESS_PREFIXLEN | FRA_SUPPRESS_IFGROUP
                    if nl::get_u32(p) == Some(u32::MAX) => {}
                FRA_PAD => {}
                _ => r.extra.push((ty, p.to_vec())),
            }
        }
        if mark.is_some() || mask.is_some() {
            r.fwmark = Some((mark.unwrap_or(0), mask.unwrap_or(u32::MAX)));
        }
        Some(r)
    }

    /// The arguments of `ip rule add|del` for this rule (without the family
    /// option), e.g. `pref 10 to 10.0.0.1/32 ipproto 6 dport 80 lookup 4242`.
    pub fn ip_args(&self) -> String {
        let mut s = String::new();
        let mut w = |part: String| {
            if !s.is_empty() {
                s.push(' ');
            }
            s.push_str(&part);
        };
        if self.flags & FIB_RULE_INVERT != 0 {
            w("not".into());
        }
        if let Some(p) = self.priority {
            w(format!("pref {p}"));
        }
        if let Some((a, l)) = self.src {
            w(format!("from {a}/{l}"));
        }
        if let Some((a, l)) = self.dst {
            w(format!("to {a}/{l}"));
        }
        if self.tos != 0 {
            w(format!("tos {:#x}", self.tos));
        }
        if let Some((m, k)) = self.fwmark {
            w(format!("fwmark {m:#x}/{k:#x}"));
        }
        if let Some(n) = &self.iif {
            w(format!("iif {n}"));
        }
        if let Some(n) = &self.oif {
            w(format!("oif {n}"));
        }
        if let Some(p) = self.ip_proto {
            w(format!("ipproto {p}"));
        }
        if let Some(r) = self.sport {
            w(format!("sport {}", range_text(r)));
        }
        if let Some(r) = self.dport {
            w(format!("dport {}", range_text(r)));
        }
        if self.protocol != 0 {
            w(format!("protocol {}", self.protocol));
        }
        w(match self.action {
            RuleAction::ToTable => format!("lookup {}", table_name(self.table)),
            RuleAction::Goto => "goto".into(),
            RuleAction::Nop => "nop".into(),
            RuleAction::Blackhole => "blackhole".into(),
            RuleAction::Unreachable => "unreachable".into(),
            RuleAction::Prohibit => "prohibit".into(),
            RuleAction::Other(n) => format!("action {n}"),
        });
        s
    }
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let fam = match self.family {
            Family::V4 => "",
            Family::V6 => "-6 ",
        };
        write!(f, "{fam}{}", self.ip_args())
    }
}

impl Netlink {
    /// Adds a rule (`ip rule add`); `AlreadyExists` if an identical one exists.
    pub fn rule_add(&mut self, rule: &Rule) -> io::Result<()> {
        let flags = nl::NLM_F_REQUEST | nl::NLM_F_ACK | nl::NLM_F_CREATE | nl::NLM_F_EXCL;
        let msg = rule.message(nl::RTM_NEWRULE, flags, 0);
        self.ack(&format!("ip rule add {rule}"), msg)
    }

    /// Deletes the first rule matching every selector given (`ip rule del`);
    /// `NotFound` (`ENOENT`) if there is none.
    pub fn rule_del(&mut self, rule: &Rule) -> io::Result<()> {
        let msg = rule.message(nl::RTM_DELRULE, nl::NLM_F_REQUEST | nl::NLM_F_ACK, 0);
        self.ack(&format!("ip rule del {rule}"), msg)
    }

    /// All rules of a family, in the kernel's order (by priority).
    pub fn rule_list(&mut self, family: Family) -> io::Result<Vec<Rule>> {
        let mut m = MsgBuf::new(nl::RTM_GETRULE, nl::NLM_F_REQUEST | nl::NLM_F_DUMP, 0);
        let mut hdr = [0u8; FIB_RULE_HDR_LEN];
        hdr[0] = family.af();
        m.push(&hdr);
        let replies = self.dump("ip rule show", m.finish())?;
        Ok(replies
            .iter()
            .filter(|r| r.msg_type == nl::RTM_NEWRULE)
            .filter_map(|r| Rule::parse(&r.payload))
            .filter(|r| r.family == family)
            .collect())
    }
}

/// `ip` table names for the reserved ids, numbers otherwise.
pub fn table_name(table: u32) -> String {
    match table {
        RT_TABLE_LOCAL => "local".into(),
        RT_TABLE_MAIN => "main".into(),
        RT_TABLE_DEFAULT => "default".into(),
        t => t.to_string(),
    }
}

/// The address's bytes in network order.
pub(crate) fn addr_bytes(a: IpAddr) -> Vec<u8> {
    match a {
        IpAddr::V4(v) => v.octets().to_vec(),
        IpAddr::V6(v) => v.octets().to_vec(),
    }
}

/// An address attribute of the given family.
pub(crate) fn parse_addr(family: Family, p: &[u8]) -> Option<IpAddr> {
    match family {
        Family::V4 => Some(IpAddr::V4(Ipv4Addr::from(
            <[u8; 4]>::try_from(p.get(..4)?).ok()?,
        ))),
        Family::V6 => Some(IpAddr::V6(Ipv6Addr::from(
            <[u8; 16]>::try_from(p.get(..16)?).ok()?,
        ))),
    }
}

/// `struct fib_rule_port_range` in host byte order.
fn port_range((start, end): (u16, u16)) -> [u8; 4] {
    let mut b = [0u8; 4];
    b[..2].copy_from_slice(&start.to_ne_bytes());
    b[2..].copy_from_slice(&end.to_ne_bytes());
    b
}

/// `80` or `80-90`.
fn range_text((a, b): (u16, u16)) -> String {
    if a == b {
        a.to_string()
    } else {
        format!("{a}-{b}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `ip rule add pref 10 to 10.1.2.3/32 ipproto tcp dport 80 lookup 4242`,
    /// assembled by hand from the uapi structs (little-endian host).
    #[test]
    fn rule_add_is_byte_exact() {
        let rule = Rule::lookup(Family::V4, 4242)
            .pref(10)
            .to_prefix("10.1.2.3".parse().unwrap(), 32)
            .ipproto(6)
            .dport(80);
        let got = rule.message(nl::RTM_NEWRULE, 0x0605, 0x0102_0304);
        #[rustfmt::skip]
        let want: Vec<u8> = [
            // nlmsghdr: len 68, type RTM_NEWRULE (32), flags REQUEST|ACK|EXCL|CREATE (0x605),
            // seq 0x01020304, pid 0
            &[68, 0, 0, 0, 32, 0, 0x05, 0x06, 0x04, 0x03, 0x02, 0x01, 0, 0, 0, 0][..],
            // fib_rule_hdr: AF_INET, dst_len 32, src_len 0, tos 0, table UNSPEC (4242 > 255),
            // res1, res2, action FR_ACT_TO_TBL (1), flags 0
            &[2, 32, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0],
            // FRA_PRIORITY (6) = 10
            &[8, 0, 6, 0, 10, 0, 0, 0],
            // FRA_DST (1) = 10.1.2.3
            &[8, 0, 1, 0, 10, 1, 2, 3],
            // FRA_IP_PROTO (22) = 6, padded
            &[5, 0, 22, 0, 6, 0, 0, 0],
            // FRA_DPORT_RANGE (24) = {80, 80}
            &[8, 0, 24, 0, 80, 0, 80, 0],
            // FRA_TABLE (15) = 4242 = 0x1092
            &[8, 0, 15, 0, 0x92, 0x10, 0, 0],
        ]
        .concat();
        if cfg!(target_endian = "little") {
            assert_eq!(got, want);
        }
        assert_eq!(got.len(), 68);
    }

    /// A v6 rule with source, sport range, iif, fwmark and a small table.
    #[test]
    fn rule_v6_with_all_selectors_is_byte_exact() {
        let mut rule = Rule::lookup(Family::V6, 100)
            .pref(20)
            .from_prefix("2001:db8::1".parse().unwrap(), 128)
            .iif("lo")
            .fwmark(1, 0xff)
            .ipproto(17);
        rule.sport = Some((1000, 2000));
        let got = rule.message(nl::RTM_DELRULE, 0x0005, 1);
        #[rustfmt::skip]
        let want: Vec<u8> = [
            &[104, 0, 0, 0, 33, 0, 0x05, 0, 1, 0, 0, 0, 0, 0, 0, 0][..],
            // AF_INET6 (10), dst_len 0, src_len 128, tos 0, table 100, res, res, to_tbl, flags
            &[10, 0, 128, 0, 100, 0, 0, 1, 0, 0, 0, 0],
            &[8, 0, 6, 0, 20, 0, 0, 0],
            // FRA_SRC (2), 16 bytes
            &[20, 0, 2, 0, 0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1],
            // FRA_IIFNAME (3) "lo\0", padded
            &[7, 0, 3, 0, b'l', b'o', 0, 0],
            // FRA_FWMARK (10) 1, FRA_FWMASK (16) 0xff
            &[8, 0, 10, 0, 1, 0, 0, 0],
            &[8, 0, 16, 0, 0xff, 0, 0, 0],
            &[5, 0, 22, 0, 17, 0, 0, 0],
            // FRA_SPORT_RANGE (23) {1000, 2000}
            &[8, 0, 23, 0, 0xe8, 0x03, 0xd0, 0x07],
            &[8, 0, 15, 0, 100, 0, 0, 0],
        ]
        .concat();
        if cfg!(target_endian = "little") {
            assert_eq!(got, want);
        }
    }

    #[test]
    fn rules_parse_back_from_their_encoding() {
        let rule = Rule::lookup(Family::V4, 4242)
            .pref(11)
            .from_prefix("192.168.1.10".parse().unwrap(), 32)
            .ipproto(17)
            .sport(53)
            .fwmark(0x10, 0xf0)
            .iif("eth0")
            .protocol(99);
        let msg = rule.message(nl::RTM_NEWRULE, 0, 0);
        let back = Rule::parse(&msg[nl::NLMSG_HDRLEN..]).unwrap();
        assert_eq!(back, rule);

        // pref 0 is omitted by the kernel; the local table fits the header.
        let local = Rule::lookup(Family::V6, RT_TABLE_LOCAL);
        let msg = local.message(nl::RTM_NEWRULE, 0, 0);
        let back = Rule::parse(&msg[nl::NLMSG_HDRLEN..]).unwrap();
        assert_eq!(back.priority, Some(0));
        assert!(back.is_plain_lookup(RT_TABLE_LOCAL));
    }

    #[test]
    fn ip_args_read_like_ip_rule() {
        let rule = Rule::lookup(Family::V4, 4242)
            .pref(10)
            .to_prefix("10.0.0.1".parse().unwrap(), 32)
            .ipproto(6)
            .dport(80);
        assert_eq!(
            rule.ip_args(),
            "pref 10 to 10.0.0.1/32 ipproto 6 dport 80 lookup 4242"
        );
        let local = Rule::lookup(Family::V6, RT_TABLE_LOCAL).pref(0);
        assert_eq!(local.to_string(), "-6 pref 0 lookup local");
    }
}
