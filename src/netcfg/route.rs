//! Routes: `RTM_NEWROUTE` / `RTM_DELROUTE` / `RTM_GETROUTE`, limited to what
//! tun mode needs: "PREFIX (or default) dev IFINDEX table T".
//!
//! A route message is `struct rtmsg` (uapi `linux/rtnetlink.h`):
//! `u8 family, dst_len, src_len, tos, table, protocol, scope, type; u32 flags`
//! followed by `RTA_*` attributes. As for rules, a table id above 255 goes in
//! `RTA_TABLE` with `RT_TABLE_UNSPEC` in the header; `RTA_TABLE` is sent
//! always.

use std::io;
use std::net::IpAddr;

use super::nl::{self, MsgBuf, Netlink};
use super::rule::{addr_bytes, parse_addr, RT_TABLE_UNSPEC};
use super::Family;

/// `RTA_DST`: destination prefix.
pub const RTA_DST: u16 = 1;
/// `RTA_OIF`: output interface index.
pub const RTA_OIF: u16 = 4;
/// `RTA_TABLE`: table id as u32.
pub const RTA_TABLE: u16 = 15;
/// `RTPROT_BOOT`: what `ip route add` tags routes with.
pub const RTPROT_BOOT: u8 = 3;
/// `RT_SCOPE_UNIVERSE`.
pub const RT_SCOPE_UNIVERSE: u8 = 0;
/// `RT_SCOPE_LINK`: directly attached, no gateway.
pub const RT_SCOPE_LINK: u8 = 253;
/// `RT_SCOPE_NOWHERE`: on delete, matches any scope.
pub const RT_SCOPE_NOWHERE: u8 = 255;
/// `RTN_UNICAST`.
pub const RTN_UNICAST: u8 = 1;

/// Length of `struct rtmsg`.
const RTMSG_LEN: usize = 12;

/// A unicast route through an interface, without a gateway.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Route {
    /// Address family.
    pub family: Family,
    /// Destination prefix; `None` is `default`.
    pub dst: Option<(IpAddr, u8)>,
    /// Output interface index.
    pub oif: u32,
    /// Routing table id.
    pub table: u32,
    /// `rtm_protocol` (`RTPROT_*`).
    pub protocol: u8,
}

impl Route {
    /// `default dev OIF table TABLE`.
    pub fn default_dev(family: Family, oif: u32, table: u32) -> Route {
        Route {
            family,
            dst: None,
            oif,
            table,
            protocol: RTPROT_BOOT,
        }
    }

    /// `ADDR/LEN dev OIF table TABLE`.
    pub fn prefix_dev(addr: IpAddr, len: u8, oif: u32, table: u32) -> Route {
        Route {
            family: Family::of(addr),
            dst: Some((addr, len)),
            oif,
            table,
            protocol: RTPROT_BOOT,
        }
    }

    /// Encodes the route as a complete netlink message. A delete
    /// (`RTM_DELROUTE`) matches any scope, as `ip route del` does.
    pub fn message(&self, msg_type: u16, flags: u16, seq: u32) -> Vec<u8> {
        let mut m = MsgBuf::new(msg_type, flags, seq);
        let scope = if msg_type == nl::RTM_DELROUTE {
            RT_SCOPE_NOWHERE
        } else if self.family == Family::V4 {
            RT_SCOPE_LINK
        } else {
            RT_SCOPE_UNIVERSE
        };
        let mut hdr = [0u8; RTMSG_LEN];
        hdr[0] = self.family.af();
        hdr[1] = self.dst.map_or(0, |d| d.1);
        hdr[4] = if self.table <= 255 {
            self.table as u8
        } else {
            RT_TABLE_UNSPEC as u8
        };
        hdr[5] = self.protocol;
        hdr[6] = scope;
        hdr[7] = RTN_UNICAST;
        m.push(&hdr);
        if let Some((a, _)) = self.dst {
            m.attr(RTA_DST, &addr_bytes(a));
        }
        m.attr_u32(RTA_TABLE, self.table);
        m.attr_u32(RTA_OIF, self.oif);
        m.finish()
    }

    /// Decodes an `RTM_NEWROUTE` payload; `None` unless it is a unicast
    /// IPv4/IPv6 route with an output interface.
    pub fn parse(payload: &[u8]) -> Option<Route> {
        let hdr = payload.get(..RTMSG_LEN)?;
        let family = Family::from_af(hdr[0])?;
        if hdr[7] != RTN_UNICAST {
            return None;
        }
        let mut r = Route::default_dev(family, 0, hdr[4] as u32);
        r.protocol = hdr[5];
        for (ty, p) in nl::attrs(&payload[RTMSG_LEN..]) {
            match ty {
                RTA_DST => r.dst = Some((parse_addr(family, p)?, hdr[1])),
                RTA_OIF => r.oif = nl::get_u32(p)?,
                RTA_TABLE => r.table = nl::get_u32(p)?,
                _ => {}
            }
        }
        (r.oif != 0).then_some(r)
    }

    /// The arguments of `ip route add|replace|del`, naming the device `dev`,
    /// e.g. `default dev tunvs0 table 4242`.
    pub fn ip_args(&self, dev: &str) -> String {
        let dst = match self.dst {
            None => "default".to_string(),
            Some((a, l)) => format!("{a}/{l}"),
        };
        format!(
            "{dst} dev {dev} table {}",
            super::rule::table_name(self.table)
        )
    }
}

impl Netlink {
    /// Adds or replaces a route (`ip route replace`).
    pub fn route_replace(&mut self, route: &Route) -> io::Result<()> {
        let flags = nl::NLM_F_REQUEST | nl::NLM_F_ACK | nl::NLM_F_CREATE | nl::NLM_F_REPLACE;
        let msg = route.message(nl::RTM_NEWROUTE, flags, 0);
        self.ack(&format!("ip route replace {route:?}"), msg)
    }

    /// Deletes a route (`ip route del`); `ESRCH` if there is none.
    pub fn route_del(&mut self, route: &Route) -> io::Result<()> {
        let msg = route.message(nl::RTM_DELROUTE, nl::NLM_F_REQUEST | nl::NLM_F_ACK, 0);
        self.ack(&format!("ip route del {route:?}"), msg)
    }

    /// The unicast device routes of one table.
    pub fn route_list(&mut self, family: Family, table: u32) -> io::Result<Vec<Route>> {
        let mut m = MsgBuf::new(nl::RTM_GETROUTE, nl::NLM_F_REQUEST | nl::NLM_F_DUMP, 0);
        let mut hdr = [0u8; RTMSG_LEN];
        hdr[0] = family.af();
        m.push(&hdr);
        let replies = self.dump("ip route show table all", m.finish())?;
        Ok(replies
            .iter()
            .filter(|r| r.msg_type == nl::RTM_NEWROUTE)
            .filter_map(|r| Route::parse(&r.payload))
            .filter(|r| r.family == family && r.table == table)
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `ip route replace default dev <ifindex 7> table 4242`, by hand from
    /// the uapi structs (little-endian host).
    #[test]
    fn default_route_add_is_byte_exact() {
        let r = Route::default_dev(Family::V4, 7, 4242);
        let got = r.message(nl::RTM_NEWROUTE, 0x0505, 42);
        #[rustfmt::skip]
        let want: Vec<u8> = [
            // nlmsghdr: len 44, RTM_NEWROUTE (24), REQUEST|ACK|REPLACE|CREATE, seq 42, pid 0
            &[44, 0, 0, 0, 24, 0, 0x05, 0x05, 42, 0, 0, 0, 0, 0, 0, 0][..],
            // rtmsg: AF_INET, dst_len 0, src_len 0, tos 0, table UNSPEC, proto boot (3),
            // scope link (253), type unicast (1), flags 0
            &[2, 0, 0, 0, 0, 3, 253, 1, 0, 0, 0, 0],
            // RTA_TABLE (15) = 4242
            &[8, 0, 15, 0, 0x92, 0x10, 0, 0],
            // RTA_OIF (4) = 7
            &[8, 0, 4, 0, 7, 0, 0, 0],
        ]
        .concat();
        if cfg!(target_endian = "little") {
            assert_eq!(got, want);
        }
        assert_eq!(got.len(), 44);
    }

    #[test]
    fn v6_prefix_route_is_byte_exact() {
        let r = Route::prefix_dev("2001:db8::".parse().unwrap(), 64, 3, 200);
        let got = r.message(nl::RTM_NEWROUTE, 0x0605, 1);
        #[rustfmt::skip]
        let want: Vec<u8> = [
            &[64, 0, 0, 0, 24, 0, 0x05, 0x06, 1, 0, 0, 0, 0, 0, 0, 0][..],
            // AF_INET6, /64, table 200 fits the header, scope universe for IPv6
            &[10, 64, 0, 0, 200, 3, 0, 1, 0, 0, 0, 0],
            &[20, 0, 1, 0, 0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
            &[8, 0, 15, 0, 200, 0, 0, 0],
            &[8, 0, 4, 0, 3, 0, 0, 0],
        ]
        .concat();
        if cfg!(target_endian = "little") {
            assert_eq!(got, want);
        }
        let back = Route::parse(&got[nl::NLMSG_HDRLEN..]).unwrap();
        assert_eq!(back, r);
    }

    #[test]
    fn delete_matches_any_scope() {
        let r = Route::default_dev(Family::V4, 7, 4242);
        let got = r.message(nl::RTM_DELROUTE, 0x0005, 1);
        assert_eq!(got[16 + 6], RT_SCOPE_NOWHERE);
        assert_eq!(r.ip_args("tunvs0"), "default dev tunvs0 table 4242");
    }
}
