//! User-space segmentation of TCP GSO super-packets (design: "Offload first" — header
//! growth cannot pass through the virtio header, so a super-packet that must be
//! encapsulated is cut into MSS-sized segments first), and completing a virtio
//! partial checksum.
//!
//! Contract:
//! * [`segment_tcp`] writes the segments into a [`SegmentBuf`] allocated once and
//!   reused: no allocation per packet. Each segment is a complete IP packet with
//!   [`SEG_HEADROOM`] free bytes in front of it, so outer headers (and a virtio or
//!   Ethernet header) can be prepended in place.
//! * Segments are what the kernel's `tcp_gso_segment` / `inet_gso_segment` /
//!   `ipv6_gso_segment` produce: all headers copied (IP options, IPv6 extension
//!   headers and TCP options included); IPv4 total length and header checksum, IPv4 ID
//!   incremented per segment; IPv6 payload length; TCP sequence number advanced by the
//!   MSS; FIN and PSH only on the last segment, CWR only on the first. The TCP checksum
//!   is computed in full ([`SegCsum::Full`]) or left as the pseudo-header seed
//!   ([`SegCsum::Partial`]) for a receiver that completes it.
//! * Only TCP: tunvs does not enable UDP segmentation offload on its device.
//! * Nothing panics, whatever the input; on error the buffer holds no segments.

use super::csum::{checksum, fold, pseudo_v4, pseudo_v6, sum};
use super::nat::put16;
use super::parse::{arr16, arr4, be16, ipv4_field, ipv6_field, l4_field, PacketInfo, PROTO_UDP};
use super::parse::{TCP_CWR, TCP_FIN, TCP_PSH};

/// Free bytes kept in front of every segment (virtio 10 + Ethernet 14 + the largest
/// outer header, IPv6 included, fit).
pub const SEG_HEADROOM: usize = 96;
/// Most segments one super-packet may be cut into.
pub const MAX_SEGMENTS: usize = 2048;
/// Bytes of segment storage: a 64 KiB payload plus headroom and up to 160 bytes of
/// copied headers for [`MAX_SEGMENTS`] segments.
pub const SEG_BUF_BYTES: usize = 65536 + MAX_SEGMENTS * (SEG_HEADROOM + 160);

/// Why a super-packet could not be segmented.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum GsoError {
    /// Not TCP (or no TCP header was parsed).
    NotTcp,
    /// The segment size (`gso_size`) is 0.
    ZeroMss,
    /// More segments, or more bytes, than the [`SegmentBuf`] holds.
    NoRoom,
}

impl GsoError {
    /// Counter name.
    pub const fn name(self) -> &'static str {
        match self {
            GsoError::NotTcp => "gso_not_tcp",
            GsoError::ZeroMss => "gso_zero_mss",
            GsoError::NoRoom => "gso_no_room",
        }
    }
}

impl std::fmt::Display for GsoError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::error::Error for GsoError {}

/// How segment checksums are left.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SegCsum {
    /// Computed in full (the receiver verifies it).
    Full,
    /// The pseudo-header seed, to be completed from the L4 header on.
    Partial,
}

/// A fixed area of frames, each with headroom in front: the segments of one
/// super-packet. Allocated once; [`SegmentBuf::clear`] forgets the frames.
#[derive(Debug, Clone)]
pub struct SegmentBuf {
    data: Box<[u8]>,
    frames: Box<[(u32, u32)]>,
    n: usize,
    used: usize,
}

impl Default for SegmentBuf {
    fn default() -> Self {
        SegmentBuf::new()
    }
}

impl SegmentBuf {
    /// A buffer for the segments of any 64 KiB super-packet (about 570 KiB).
    pub fn new() -> Self {
        SegmentBuf::with_capacity(SEG_BUF_BYTES, MAX_SEGMENTS)
    }

    /// A buffer of `bytes` bytes holding at most `frames` frames.
    pub fn with_capacity(bytes: usize, frames: usize) -> Self {
        SegmentBuf {
            data: vec![0u8; bytes].into_boxed_slice(),
            frames: vec![(0, 0); frames].into_boxed_slice(),
            n: 0,
            used: 0,
        }
    }

    /// Forget every frame.
    pub fn clear(&mut self) {
        self.n = 0;
        self.used = 0;
    }

    /// Number of frames.
    pub fn len(&self) -> usize {
        self.n
    }

    /// True if there are no frames.
    pub fn is_empty(&self) -> bool {
        self.n == 0
    }

    /// Frame `i` (empty if out of range).
    pub fn frame(&self, i: usize) -> &[u8] {
        match self.frames[..self.n].get(i) {
            Some(&(s, e)) => &self.data[s as usize..e as usize],
            None => &[],
        }
    }

    /// Frame `i`, writable (empty if out of range).
    pub fn frame_mut(&mut self, i: usize) -> &mut [u8] {
        match self.frames[..self.n].get(i) {
            Some(&(s, e)) => &mut self.data[s as usize..e as usize],
            None => &mut [],
        }
    }

    /// Grow frame `i` by `n` bytes at the front (into its headroom); returns the new
    /// frame, or `None` (nothing changes) when the headroom is too small.
    pub fn prepend(&mut self, i: usize, n: usize) -> Option<&mut [u8]> {
        let (s, e) = *self.frames[..self.n].get(i)?;
        let floor = self.floor(i);
        let s = (s as usize).checked_sub(n).filter(|&s| s >= floor)?;
        self.frames[i].0 = s as u32;
        Some(&mut self.data[s..e as usize])
    }

    /// Drop `n` bytes from the front of frame `i`.
    pub fn advance(&mut self, i: usize, n: usize) {
        if let Some(f) = self.frames[..self.n].get_mut(i) {
            f.0 = (f.0 + n as u32).min(f.1);
        }
    }

    /// The frames, in order.
    pub fn iter(&self) -> impl Iterator<Item = &[u8]> {
        self.frames[..self.n]
            .iter()
            .map(|&(s, e)| &self.data[s as usize..e as usize])
    }

    /// The lowest start frame `i` may have (the end of the previous frame).
    fn floor(&self, i: usize) -> usize {
        if i == 0 {
            0
        } else {
            self.frames[i - 1].1 as usize
        }
    }

    /// Append a frame of `len` bytes (after [`SEG_HEADROOM`]); returns it.
    pub fn push(&mut self, len: usize) -> Option<&mut [u8]> {
        if self.n >= self.frames.len() {
            return None;
        }
        let start = self.used.checked_add(SEG_HEADROOM)?;
        let end = start.checked_add(len)?;
        if end > self.data.len() {
            return None;
        }
        self.frames[self.n] = (start as u32, end as u32);
        self.n += 1;
        self.used = end;
        Some(&mut self.data[start..end])
    }
}

/// Cut the TCP super-packet `pkt` (parsed as `info`) into segments of at most `mss`
/// payload bytes, written into `out` (cleared first). Returns the number of segments.
pub fn segment_tcp(
    pkt: &[u8],
    info: &PacketInfo,
    mss: u16,
    csum: SegCsum,
    out: &mut SegmentBuf,
) -> Result<usize, GsoError> {
    out.clear();
    if !info.is_tcp() || !info.has_l4() || info.is_fragment {
        return Err(GsoError::NotTcp);
    }
    if mss == 0 {
        return Err(GsoError::ZeroMss);
    }
    let mss = mss as usize;
    let hdrs = info.payload_off();
    let Some(pkt) = pkt.get(..info.total_len) else {
        return Err(GsoError::NotTcp);
    };
    if hdrs > pkt.len() {
        return Err(GsoError::NotTcp);
    }
    let (head, payload) = pkt.split_at(hdrs);
    let nseg = payload.len().div_ceil(mss).max(1);
    if nseg > out.frames.len() {
        return Err(GsoError::NoRoom);
    }
    let l4 = info.l4_off;
    let seq0 = u32::from_be_bytes(arr4(head, l4 + 4));
    let flags0 = head[l4 + l4_field::TCP_FLAGS];
    let id0 = if info.v6 { 0 } else { be16(head, 4) };
    for i in 0..nseg {
        let chunk = &payload[(i * mss).min(payload.len())..((i + 1) * mss).min(payload.len())];
        let len = hdrs + chunk.len();
        let Some(seg) = out.push(len) else {
            out.clear();
            return Err(GsoError::NoRoom);
        };
        seg[..hdrs].copy_from_slice(head);
        seg[hdrs..].copy_from_slice(chunk);
        let mut flags = flags0;
        if i + 1 < nseg {
            flags &= !(TCP_FIN | TCP_PSH);
        }
        if i > 0 {
            flags &= !TCP_CWR;
        }
        seg[l4 + l4_field::TCP_FLAGS] = flags;
        seg[l4 + 4..l4 + 8].copy_from_slice(&seq0.wrapping_add((i * mss) as u32).to_be_bytes());
        let tcp_len = (len - l4) as u32;
        let pseudo = if info.v6 {
            put16(seg, ipv6_field::PAYLOAD_LEN, (len - ipv6_field::LEN) as u16);
            pseudo_v6(
                &arr16(seg, ipv6_field::SRC),
                &arr16(seg, ipv6_field::DST),
                info.proto,
                tcp_len,
            )
        } else {
            put16(seg, ipv4_field::TOTAL_LEN, len as u16);
            put16(seg, 4, id0.wrapping_add(i as u16));
            put16(seg, ipv4_field::CHECKSUM, 0);
            let c = checksum(&seg[..l4]);
            put16(seg, ipv4_field::CHECKSUM, c);
            pseudo_v4(
                &arr4(seg, ipv4_field::SRC),
                &arr4(seg, ipv4_field::DST),
                info.proto,
                tcp_len,
            )
        };
        let at = l4 + l4_field::TCP_CHECKSUM;
        match csum {
            SegCsum::Partial => put16(seg, at, fold(pseudo)),
            SegCsum::Full => {
                put16(seg, at, 0);
                let c = !fold(sum(&seg[l4..], pseudo));
                put16(seg, at, c);
            }
        }
    }
    Ok(nseg)
}

/// Complete a virtio partial checksum in place, as the kernel's `skb_checksum_help`:
/// the L4 checksum field holds the pseudo-header seed; sum from the L4 header to the
/// end of the packet and store the complement (a UDP 0 is sent as 0xFFFF). Returns
/// false, changing nothing, if `info` has no L4 checksum inside `pkt`.
pub fn complete_checksum(pkt: &mut [u8], info: &PacketInfo) -> bool {
    if !info.has_l4() || info.csum_off + 2 > info.total_len || info.total_len > pkt.len() {
        return false;
    }
    let c = !fold(sum(&pkt[info.l4_off..info.total_len], 0));
    let c = if c == 0 && info.proto == PROTO_UDP {
        0xffff
    } else {
        c
    };
    put16(pkt, info.csum_off, c);
    true
}

#[cfg(test)]
mod test {
    use super::*;
    use crate::packet::parse::{parse_ip, TCP_ACK, TCP_ECE};
    use crate::packet::testutil::*;
    use std::net::SocketAddr;

    fn sa(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn segments_equal_packets_built_from_scratch() {
        for (c, v) in [
            ("10.0.0.2:40000", "207.175.44.110:8080"),
            ("[2001:db8::10]:40000", "[2001:db8::1]:80"),
        ] {
            let payload: Vec<u8> = (0..3001u32).map(|i| (i * 7) as u8).collect();
            let flags = TCP_ACK | TCP_PSH | TCP_FIN | TCP_CWR | TCP_ECE;
            let opts = [1u8, 1, 8, 10, 0, 0, 0, 1, 0, 0, 0, 2];
            let mut big = tcp_packet(sa(c), sa(v), flags, 1000, 77, &opts, &payload);
            let hdr = to_partial(&mut big, 1000);
            let info = parse_ip(&big).unwrap();
            let mut out = SegmentBuf::new();
            let n = segment_tcp(&big, &info, hdr.gso_size, SegCsum::Full, &mut out).unwrap();
            assert_eq!(n, 4);
            for i in 0..n {
                let lo = i * 1000;
                let hi = (lo + 1000).min(payload.len());
                let mut f = flags;
                if i < 3 {
                    f &= !(TCP_FIN | TCP_PSH);
                }
                if i > 0 {
                    f &= !TCP_CWR;
                }
                let ip = {
                    let mut h = ip_headers(sa(c).ip(), sa(v).ip(), 64);
                    if let etherparse::IpHeaders::Ipv4(h4, _) = &mut h {
                        h4.identification = 0x1c46 + i as u16;
                    }
                    h
                };
                let want = tcp_packet_with(
                    ip,
                    tcp_header(40000, sa(v).port(), f, 1000 + lo as u32, 77, &opts),
                    &payload[lo..hi],
                );
                assert_eq!(out.frame(i), &want[..], "segment {i} of {c}");
                assert!(l4_checksum_ok(out.frame(i)));
            }
            // Partial: the seed of each segment.
            segment_tcp(&big, &info, 1000, SegCsum::Partial, &mut out).unwrap();
            for i in 0..n {
                let f = out.frame(i).to_vec();
                let at = l4_csum_offset(&f);
                assert_eq!(u16::from_be_bytes([f[at], f[at + 1]]), pseudo_seed(&f));
            }
        }
    }

    #[test]
    fn small_packet_is_one_segment_and_headroom_is_kept() {
        let mut p = tcp_packet(sa("1.1.1.1:1"), sa("2.2.2.2:2"), TCP_ACK, 5, 6, &[], b"ab");
        let full = p.clone();
        to_partial(&mut p, 1448);
        let info = parse_ip(&p).unwrap();
        let mut out = SegmentBuf::new();
        assert_eq!(segment_tcp(&p, &info, 1448, SegCsum::Full, &mut out), Ok(1));
        assert_eq!(out.frame(0), &full[..]);
        let f = out.prepend(0, SEG_HEADROOM).unwrap();
        assert_eq!(&f[SEG_HEADROOM..], &full[..]);
        assert!(out.prepend(0, 1).is_none());
        out.advance(0, SEG_HEADROOM);
        assert_eq!(out.frame(0), &full[..]);
        assert_eq!(out.iter().count(), 1);
        assert!(out.frame(1).is_empty());
    }

    #[test]
    fn refusals() {
        let u = udp_packet(sa("1.1.1.1:1"), sa("2.2.2.2:2"), b"abc");
        let info = parse_ip(&u).unwrap();
        let mut out = SegmentBuf::new();
        assert_eq!(
            segment_tcp(&u, &info, 100, SegCsum::Full, &mut out),
            Err(GsoError::NotTcp)
        );
        let t = tcp_packet(
            sa("1.1.1.1:1"),
            sa("2.2.2.2:2"),
            TCP_ACK,
            1,
            1,
            &[],
            &[0; 500],
        );
        let info = parse_ip(&t).unwrap();
        assert_eq!(
            segment_tcp(&t, &info, 0, SegCsum::Full, &mut out),
            Err(GsoError::ZeroMss)
        );
        let mut small = SegmentBuf::with_capacity(4096, 4);
        assert_eq!(
            segment_tcp(&t, &info, 100, SegCsum::Full, &mut small),
            Err(GsoError::NoRoom)
        );
        assert!(small.is_empty());
        let mut tiny = SegmentBuf::with_capacity(300, 10);
        assert_eq!(
            segment_tcp(&t, &info, 100, SegCsum::Full, &mut tiny),
            Err(GsoError::NoRoom)
        );
        assert!(tiny.is_empty());
        assert_eq!(segment_tcp(&t, &info, 100, SegCsum::Full, &mut out), Ok(5));
    }

    #[test]
    fn complete_partial_checksums() {
        for full in [
            tcp_packet(
                sa("1.1.1.1:1"),
                sa("2.2.2.2:2"),
                TCP_ACK,
                1,
                1,
                &[],
                b"hello",
            ),
            udp_packet(sa("[2001:db8::1]:1"), sa("[2001:db8::2]:2"), b"hello!"),
        ] {
            let mut p = full.clone();
            to_partial(&mut p, 0);
            let info = parse_ip(&p).unwrap();
            assert!(complete_checksum(&mut p, &info));
            assert_eq!(p, full);
        }
    }
}
