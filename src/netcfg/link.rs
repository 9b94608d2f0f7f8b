//! Links and addresses: look a link up by name, set it up or down, set its
//! MTU and transmit queue length, add or remove an address.
//!
//! Link messages are `struct ifinfomsg` (`u8 family, pad; u16 type;
//! i32 index; u32 flags, change`) plus `IFLA_*` attributes; address messages
//! are `struct ifaddrmsg` (`u8 family, prefixlen, flags, scope; u32 index`)
//! plus `IFA_*` attributes.

use std::io;
use std::net::IpAddr;

use super::nl::{self, MsgBuf, Netlink};
use super::rule::addr_bytes;
use super::Family;

/// `IFLA_IFNAME`: interface name.
pub const IFLA_IFNAME: u16 = 3;
/// `IFLA_MTU`.
pub const IFLA_MTU: u16 = 4;
/// `IFLA_MASTER`: the bridge (or bond) a link is enslaved to.
pub const IFLA_MASTER: u16 = 10;
/// `IFLA_TXQLEN`: transmit queue length.
pub const IFLA_TXQLEN: u16 = 13;
/// `IFA_ADDRESS`: the (peer) address.
pub const IFA_ADDRESS: u16 = 1;
/// `IFA_LOCAL`: the local address.
pub const IFA_LOCAL: u16 = 2;

/// Length of `struct ifinfomsg`.
const IFINFOMSG_LEN: usize = 16;

/// What tunvs needs to know about a link.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Link {
    /// Interface index.
    pub index: u32,
    /// Interface name.
    pub name: String,
    /// `IFF_*` flags (`IFF_UP`, …).
    pub flags: u32,
    /// MTU.
    pub mtu: u32,
    /// Transmit queue length.
    pub txqlen: u32,
}

impl Link {
    /// True when the link is administratively up.
    pub fn is_up(&self) -> bool {
        self.flags & libc::IFF_UP as u32 != 0
    }
}

/// `struct ifinfomsg` for `index` with the given flags and change mask.
fn ifinfomsg(index: u32, flags: u32, change: u32) -> [u8; IFINFOMSG_LEN] {
    let mut h = [0u8; IFINFOMSG_LEN];
    h[4..8].copy_from_slice(&(index as i32).to_ne_bytes());
    h[8..12].copy_from_slice(&flags.to_ne_bytes());
    h[12..16].copy_from_slice(&change.to_ne_bytes());
    h
}

impl Netlink {
    /// Looks a link up by name (`ip link show NAME`); `ENODEV` if missing.
    pub fn link_get(&mut self, name: &str) -> io::Result<Link> {
        let mut m = MsgBuf::new(nl::RTM_GETLINK, nl::NLM_F_REQUEST | nl::NLM_F_ACK, 0);
        m.push(&ifinfomsg(0, 0, 0));
        m.attr_str(IFLA_IFNAME, name);
        let replies = self.exec(&format!("ip link show {name}"), m.finish())?;
        replies
            .iter()
            .filter(|r| r.msg_type == nl::RTM_NEWLINK)
            .find_map(|r| parse_link(&r.payload))
            .ok_or_else(|| {
                io::Error::new(
                    io::ErrorKind::NotFound,
                    format!("ip link show {name}: no link in the answer"),
                )
            })
    }

    /// The interface index of `name`.
    pub fn link_index(&mut self, name: &str) -> io::Result<u32> {
        self.link_get(name).map(|l| l.index)
    }

    /// `ip link set dev IFINDEX up|down`.
    pub fn link_set_up(&mut self, ifindex: u32, up: bool) -> io::Result<()> {
        let iff_up = libc::IFF_UP as u32;
        let mut m = MsgBuf::new(nl::RTM_NEWLINK, nl::NLM_F_REQUEST | nl::NLM_F_ACK, 0);
        m.push(&ifinfomsg(ifindex, if up { iff_up } else { 0 }, iff_up));
        let word = if up { "up" } else { "down" };
        self.ack(&format!("ip link set {ifindex} {word}"), m.finish())
    }

    /// `ip link set dev IFINDEX mtu MTU`.
    pub fn link_set_mtu(&mut self, ifindex: u32, mtu: u32) -> io::Result<()> {
        let mut m = MsgBuf::new(nl::RTM_NEWLINK, nl::NLM_F_REQUEST | nl::NLM_F_ACK, 0);
        m.push(&ifinfomsg(ifindex, 0, 0));
        m.attr_u32(IFLA_MTU, mtu);
        self.ack(&format!("ip link set {ifindex} mtu {mtu}"), m.finish())
    }

    /// `ip link set dev IFINDEX txqueuelen N`.
    pub fn link_set_txqueuelen(&mut self, ifindex: u32, qlen: u32) -> io::Result<()> {
        let mut m = MsgBuf::new(nl::RTM_NEWLINK, nl::NLM_F_REQUEST | nl::NLM_F_ACK, 0);
        m.push(&ifinfomsg(ifindex, 0, 0));
        m.attr_u32(IFLA_TXQLEN, qlen);
        self.ack(
            &format!("ip link set {ifindex} txqueuelen {qlen}"),
            m.finish(),
        )
    }

    /// `ip link set dev IFINDEX master MASTER` (0: `nomaster`).
    pub fn link_set_master(&mut self, ifindex: u32, master: u32) -> io::Result<()> {
        let mut m = MsgBuf::new(nl::RTM_NEWLINK, nl::NLM_F_REQUEST | nl::NLM_F_ACK, 0);
        m.push(&ifinfomsg(ifindex, 0, 0));
        m.attr_u32(IFLA_MASTER, master);
        self.ack(
            &format!("ip link set {ifindex} master {master}"),
            m.finish(),
        )
    }

    /// `ip addr add ADDR/LEN dev IFINDEX`.
    pub fn addr_add(&mut self, ifindex: u32, addr: IpAddr, prefix_len: u8) -> io::Result<()> {
        let flags = nl::NLM_F_REQUEST | nl::NLM_F_ACK | nl::NLM_F_CREATE | nl::NLM_F_EXCL;
        let msg = addr_message(nl::RTM_NEWADDR, flags, ifindex, addr, prefix_len);
        self.ack(
            &format!("ip addr add {addr}/{prefix_len} dev {ifindex}"),
            msg,
        )
    }

    /// `ip addr del ADDR/LEN dev IFINDEX`.
    pub fn addr_del(&mut self, ifindex: u32, addr: IpAddr, prefix_len: u8) -> io::Result<()> {
        let flags = nl::NLM_F_REQUEST | nl::NLM_F_ACK;
        let msg = addr_message(nl::RTM_DELADDR, flags, ifindex, addr, prefix_len);
        self.ack(
            &format!("ip addr del {addr}/{prefix_len} dev {ifindex}"),
            msg,
        )
    }
}

/// An address message: `ifaddrmsg` + `IFA_LOCAL` + `IFA_ADDRESS`.
fn addr_message(ty: u16, flags: u16, ifindex: u32, addr: IpAddr, len: u8) -> Vec<u8> {
    let mut m = MsgBuf::new(ty, flags, 0);
    let mut h = [0u8; 8];
    h[0] = Family::of(addr).af();
    h[1] = len;
    h[4..8].copy_from_slice(&ifindex.to_ne_bytes());
    m.push(&h);
    let b = addr_bytes(addr);
    m.attr(IFA_LOCAL, &b);
    m.attr(IFA_ADDRESS, &b);
    m.finish()
}

/// Decodes an `RTM_NEWLINK` payload.
fn parse_link(p: &[u8]) -> Option<Link> {
    let h = p.get(..IFINFOMSG_LEN)?;
    let mut l = Link {
        index: i32::from_ne_bytes(h[4..8].try_into().ok()?) as u32,
        name: String::new(),
        flags: u32::from_ne_bytes(h[8..12].try_into().ok()?),
        mtu: 0,
        txqlen: 0,
    };
    for (ty, a) in nl::attrs(&p[IFINFOMSG_LEN..]) {
        match ty {
            IFLA_IFNAME => l.name = nl::get_str(a),
            IFLA_MTU => l.mtu = nl::get_u32(a)?,
            IFLA_TXQLEN => l.txqlen = nl::get_u32(a)?,
            _ => {}
        }
    }
    Some(l)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn link_up_message_is_byte_exact() {
        let mut m = MsgBuf::new(nl::RTM_NEWLINK, 0x5, 9);
        m.push(&ifinfomsg(3, 1, 1));
        let got = m.finish();
        #[rustfmt::skip]
        let want: Vec<u8> = [
            &[32, 0, 0, 0, 16, 0, 5, 0, 9, 0, 0, 0, 0, 0, 0, 0][..],
            // family 0, pad, type 0, index 3, flags IFF_UP, change IFF_UP
            &[0, 0, 0, 0, 3, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0],
        ]
        .concat();
        if cfg!(target_endian = "little") {
            assert_eq!(got, want);
        }
    }

    #[test]
    fn links_parse() {
        let mut m = MsgBuf::new(nl::RTM_NEWLINK, 0, 0);
        m.push(&ifinfomsg(5, 1, 0));
        m.attr_str(IFLA_IFNAME, "tunvs0");
        m.attr_u32(IFLA_MTU, 1500);
        m.attr_u32(IFLA_TXQLEN, 5000);
        let b = m.finish();
        let l = parse_link(&b[nl::NLMSG_HDRLEN..]).unwrap();
        assert_eq!(
            l,
            Link {
                index: 5,
                name: "tunvs0".into(),
                flags: 1,
                mtu: 1500,
                txqlen: 5000
            }
        );
        assert!(l.is_up());
    }
}
