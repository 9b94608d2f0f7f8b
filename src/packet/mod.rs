//! The packet layer: parse an IP packet read from the device, rewrite it in place, and
//! build the few packets the director originates (ICMP errors).
//!
//! Contract (shared by every submodule, in the smoltcp `wire` tradition):
//! * Parsing checks lengths once ([`parse_ip`]); everything downstream that takes the
//!   resulting [`PacketInfo`] for the same buffer indexes without panicking — and still
//!   bounds-checks, so a mismatched `PacketInfo` gives an error, never a panic.
//! * No allocation on the data path (`parse`, `nat`, `icmp`, `csum`, `vnet`); only
//!   [`testutil`] allocates.
//! * Checksums are updated incrementally (RFC 1624, [`csum`]); whether the L4 field holds a
//!   final checksum or a virtio `NEEDS_CSUM` seed is decided by the caller from the
//!   [`VnetHdr`] and passed in as `l4_partial`, like smoltcp's `ChecksumCapabilities`.
//! * Errors are small `Copy` enums with counter names ([`ParseError`], [`RewriteError`]).
//!
//! Typical NAT fast path:
//! ```
//! use tunvs::packet::{parse_ip, rewrite_dst, testutil, VnetHdr};
//! let mut pkt = testutil::tcp_packet(
//!     "12.0.0.10:40000".parse().unwrap(), "12.0.0.1:80".parse().unwrap(),
//!     tunvs::packet::TCP_SYN, 1, 0, &[], &[]);
//! let hdr = VnetHdr::default(); // as read in front of the packet
//! let info = parse_ip(&pkt).unwrap();
//! let partial = hdr.l4_partial(&info).unwrap();
//! rewrite_dst(&mut pkt, &info, "192.168.168.20".parse().unwrap(), 8080, partial).unwrap();
//! assert!(testutil::l4_checksum_ok(&pkt));
//! ```

pub mod csum;
pub mod decap;
pub mod gso;
pub mod icmp;
pub mod nat;
pub mod parse;
pub mod testutil;
pub mod tunnel;
pub mod vnet;

pub use icmp::{
    build_icmp_error, build_port_unreachable, icmp_checksum_ok, icmp_nat_in, icmp_nat_out,
    parse_icmp_error, EmbeddedInfo, IcmpErrorKind,
};
pub use nat::{decrement_ttl, rewrite_dst, rewrite_src, RewriteError};
pub use parse::{
    parse_ip, parse_ip_frag, PacketInfo, ParseError, PROTO_ICMP, PROTO_ICMPV6, PROTO_SCTP,
    PROTO_TCP, PROTO_UDP, TCP_ACK, TCP_CWR, TCP_ECE, TCP_FIN, TCP_PSH, TCP_RST, TCP_SYN, TCP_URG,
};
pub use vnet::{VnetHdr, VNET_HDR_LEN};
