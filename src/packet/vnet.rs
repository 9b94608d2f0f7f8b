//! The 10-byte `struct virtio_net_hdr` that prefixes every packet on a TUN device opened
//! with `IFF_VNET_HDR` (little-endian, as `TUNSETVNETHDRSZ` 10 gives on x86/arm).
//!
//! Contract:
//! * [`VnetHdr::parse`] and [`VnetHdr::emit`] never panic: short buffers give
//!   [`ParseError::Truncated`].
//! * For a header-only rewrite (NAT) the same header is written back unchanged: `csum_start`
//!   and `hdr_len` do not move and the kernel re-segments GSO packets itself.
//! * When [`VnetHdr::needs_csum`] is set, the L4 checksum field of the packet holds the
//!   folded pseudo-header seed, not a checksum; [`VnetHdr::l4_partial`] checks that the
//!   header points at the L4 checksum [`super::parse_ip`] found and tells the rewrite
//!   functions which checksum update to use.

use super::parse::{PacketInfo, ParseError, PROTO_TCP, PROTO_UDP};

/// Length of the header on the wire.
pub const VNET_HDR_LEN: usize = 10;

/// `flags`: the L4 checksum is partial (a pseudo-header seed); complete it from `csum_start`.
pub const NEEDS_CSUM: u8 = 1;
/// `flags`: the checksum was already verified.
pub const DATA_VALID: u8 = 2;

/// `gso_type`: not a GSO packet.
pub const GSO_NONE: u8 = 0;
/// `gso_type`: TCP over IPv4 segmentation (TSO4).
pub const GSO_TCPV4: u8 = 1;
/// `gso_type`: UDP fragmentation offload (UFO, legacy).
pub const GSO_UDP: u8 = 3;
/// `gso_type`: TCP over IPv6 segmentation (TSO6).
pub const GSO_TCPV6: u8 = 4;
/// `gso_type`: UDP segmentation (USO4/6).
pub const GSO_UDP_L4: u8 = 5;
/// `gso_type` bit: the TCP packet carries ECN (CWR must be cleared after the first segment).
pub const GSO_ECN: u8 = 0x80;

mod field {
    pub const FLAGS: usize = 0;
    pub const GSO_TYPE: usize = 1;
    pub const HDR_LEN: usize = 2;
    pub const GSO_SIZE: usize = 4;
    pub const CSUM_START: usize = 6;
    pub const CSUM_OFFSET: usize = 8;
}

/// A parsed `virtio_net_hdr`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct VnetHdr {
    /// `NEEDS_CSUM` / `DATA_VALID` bits.
    pub flags: u8,
    /// One of the `GSO_*` values, possibly with `GSO_ECN`.
    pub gso_type: u8,
    /// Length of the headers (a hint for GSO packets; 0 otherwise).
    pub hdr_len: u16,
    /// Segment payload size for GSO packets (MSS).
    pub gso_size: u16,
    /// Offset of the L4 header from the start of the IP packet when `NEEDS_CSUM`.
    pub csum_start: u16,
    /// Offset of the checksum field from `csum_start` when `NEEDS_CSUM`.
    pub csum_offset: u16,
}

impl VnetHdr {
    /// Length of the header on the wire.
    pub const LEN: usize = VNET_HDR_LEN;

    /// Decode the 10 wire bytes.
    pub const fn from_bytes(b: [u8; VNET_HDR_LEN]) -> VnetHdr {
        use field as f;
        VnetHdr {
            flags: b[f::FLAGS],
            gso_type: b[f::GSO_TYPE],
            hdr_len: u16::from_le_bytes([b[f::HDR_LEN], b[f::HDR_LEN + 1]]),
            gso_size: u16::from_le_bytes([b[f::GSO_SIZE], b[f::GSO_SIZE + 1]]),
            csum_start: u16::from_le_bytes([b[f::CSUM_START], b[f::CSUM_START + 1]]),
            csum_offset: u16::from_le_bytes([b[f::CSUM_OFFSET], b[f::CSUM_OFFSET + 1]]),
        }
    }

    /// Encode to the 10 wire bytes.
    pub const fn to_bytes(&self) -> [u8; VNET_HDR_LEN] {
        let h = self.hdr_len.to_le_bytes();
        let g = self.gso_size.to_le_bytes();
        let s = self.csum_start.to_le_bytes();
        let o = self.csum_offset.to_le_bytes();
        [
            self.flags,
            self.gso_type,
            h[0],
            h[1],
            g[0],
            g[1],
            s[0],
            s[1],
            o[0],
            o[1],
        ]
    }

    /// Split a frame into its virtio header and the IP packet that follows it.
    pub fn parse(frame: &[u8]) -> Result<(VnetHdr, &[u8]), ParseError> {
        match frame.split_first_chunk::<VNET_HDR_LEN>() {
            Some((h, rest)) => Ok((VnetHdr::from_bytes(*h), rest)),
            None => Err(ParseError::Truncated),
        }
    }

    /// Write the header into the first 10 bytes of `out`; returns the bytes written (10).
    pub fn emit(&self, out: &mut [u8]) -> Result<usize, ParseError> {
        match out.first_chunk_mut::<VNET_HDR_LEN>() {
            Some(h) => {
                *h = self.to_bytes();
                Ok(VNET_HDR_LEN)
            }
            None => Err(ParseError::Truncated),
        }
    }

    /// True if `NEEDS_CSUM` is set: the L4 checksum field holds a pseudo-header seed.
    pub const fn needs_csum(&self) -> bool {
        self.flags & NEEDS_CSUM != 0
    }

    /// True if `DATA_VALID` is set.
    pub const fn data_valid(&self) -> bool {
        self.flags & DATA_VALID != 0
    }

    /// The GSO type without the ECN bit.
    pub const fn gso_kind(&self) -> u8 {
        self.gso_type & !GSO_ECN
    }

    /// True for a GSO super-packet.
    pub const fn is_gso(&self) -> bool {
        self.gso_kind() != GSO_NONE
    }

    /// Check the header against the parsed packet and say whether its L4 checksum is
    /// partial (`Ok(true)`: use the partial update) or final (`Ok(false)`: fast update).
    ///
    /// Errors with [`ParseError::BadVnetHdr`] if `NEEDS_CSUM` does not point at the L4
    /// checksum of `info`, or if the GSO type does not match the packet's family/protocol.
    pub fn l4_partial(&self, info: &PacketInfo) -> Result<bool, ParseError> {
        match self.gso_kind() {
            GSO_NONE => {}
            GSO_TCPV4 if !info.v6 && info.proto == PROTO_TCP => {}
            GSO_TCPV6 if info.v6 && info.proto == PROTO_TCP => {}
            GSO_UDP | GSO_UDP_L4 if info.proto == PROTO_UDP => {}
            _ => return Err(ParseError::BadVnetHdr),
        }
        if !self.needs_csum() {
            return Ok(false);
        }
        let start = self.csum_start as usize;
        if info.has_l4()
            && start == info.l4_off
            && start + self.csum_offset as usize == info.csum_off
        {
            Ok(true)
        } else {
            Err(ParseError::BadVnetHdr)
        }
    }
}

#[cfg(test)]
mod test {
    use super::*;
    use crate::packet::parse::parse_ip;

    // NEEDS_CSUM, TSO4, hdr_len 66, gso_size 1448, csum_start 20, csum_offset 16.
    static HDR_BYTES: [u8; 10] = [0x01, 0x01, 0x42, 0x00, 0xa8, 0x05, 0x14, 0x00, 0x10, 0x00];

    // IPv4 TCP SYN 12.0.0.10:40000 -> 12.0.0.1:80 (20-byte TCP header), checksum field is
    // the pseudo-header seed.
    static TCP_PACKET: [u8; 40] = [
        0x45, 0x00, 0x00, 0x28, 0x00, 0x00, 0x40, 0x00, 0x40, 0x06, 0x22, 0xc6, 0x0c, 0x00, 0x00,
        0x0a, 0x0c, 0x00, 0x00, 0x01, 0x9c, 0x40, 0x00, 0x50, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00,
        0x00, 0x00, 0x50, 0x02, 0xff, 0xff, 0x18, 0x25, 0x00, 0x00,
    ];

    #[test]
    fn test_deconstruct() {
        let h = VnetHdr::from_bytes(HDR_BYTES);
        assert_eq!(h.flags, NEEDS_CSUM);
        assert_eq!(h.gso_type, GSO_TCPV4);
        assert_eq!(h.hdr_len, 66);
        assert_eq!(h.gso_size, 1448);
        assert_eq!(h.csum_start, 20);
        assert_eq!(h.csum_offset, 16);
        assert!(h.needs_csum());
        assert!(!h.data_valid());
        assert!(h.is_gso());
        assert_eq!(h.gso_kind(), GSO_TCPV4);
    }

    #[test]
    fn test_construct() {
        let h = VnetHdr {
            flags: NEEDS_CSUM,
            gso_type: GSO_TCPV4,
            hdr_len: 66,
            gso_size: 1448,
            csum_start: 20,
            csum_offset: 16,
        };
        let mut out = vec![0xa5u8; 12];
        assert_eq!(h.emit(&mut out), Ok(10));
        assert_eq!(&out[..10], &HDR_BYTES[..]);
        assert_eq!(&out[10..], &[0xa5, 0xa5]);
        assert_eq!(h.to_bytes(), HDR_BYTES);
    }

    #[test]
    fn test_parse_splits_frame() {
        let mut frame = HDR_BYTES.to_vec();
        frame.extend_from_slice(&[0x45, 0x00]);
        let (h, rest) = VnetHdr::parse(&frame).unwrap();
        assert_eq!(h, VnetHdr::from_bytes(HDR_BYTES));
        assert_eq!(rest, &[0x45, 0x00]);
        let (_, rest) = VnetHdr::parse(&HDR_BYTES).unwrap();
        assert!(rest.is_empty());
    }

    #[test]
    fn test_impossible_len() {
        for n in 0..VNET_HDR_LEN {
            assert_eq!(VnetHdr::parse(&HDR_BYTES[..n]), Err(ParseError::Truncated));
            let mut out = vec![0xa5u8; n];
            assert_eq!(
                VnetHdr::default().emit(&mut out),
                Err(ParseError::Truncated)
            );
            assert!(out.iter().all(|&b| b == 0xa5));
        }
    }

    #[test]
    fn test_ecn_bit() {
        let h = VnetHdr {
            gso_type: GSO_TCPV6 | GSO_ECN,
            ..Default::default()
        };
        assert_eq!(h.gso_kind(), GSO_TCPV6);
        assert!(h.is_gso());
        assert!(!VnetHdr::default().is_gso());
    }

    #[test]
    fn test_l4_partial() {
        let info = parse_ip(&TCP_PACKET).unwrap();
        let mut h = VnetHdr::from_bytes(HDR_BYTES);
        assert_eq!(h.l4_partial(&info), Ok(true));
        h.csum_offset = 6;
        assert_eq!(h.l4_partial(&info), Err(ParseError::BadVnetHdr));
        h.csum_offset = 16;
        h.csum_start = 0;
        assert_eq!(h.l4_partial(&info), Err(ParseError::BadVnetHdr));
        h.flags = DATA_VALID;
        assert_eq!(h.l4_partial(&info), Ok(false));
        h.gso_type = GSO_TCPV6;
        assert_eq!(h.l4_partial(&info), Err(ParseError::BadVnetHdr));
        h.gso_type = GSO_UDP_L4;
        assert_eq!(h.l4_partial(&info), Err(ParseError::BadVnetHdr));
        assert_eq!(VnetHdr::default().l4_partial(&info), Ok(false));
    }
}
