//! Internet checksums: RFC 1071 full sums and RFC 1624 incremental updates.
//!
//! Contract:
//! * Sums are accumulated unfolded in a `u64` ([`sum`], [`pseudo_v4`], [`pseudo_v6`]) and
//!   folded once with [`fold`]; [`checksum`] is the final `!fold(sum)` value of RFC 1071.
//! * Two update flavours, named after the kernel's `tcp_fast_csum_update` /
//!   `tcp_partial_csum_update` pair:
//!   * **fast** — the field holds a final checksum `HC`; after replacing the 16-bit words
//!     `m` by `m'` it becomes `HC' = ~(~HC + ~m + m')` (RFC 1624 eqn. 3). If `HC` was
//!     produced by a full computation, `HC'` is bit-identical to a full recompute.
//!   * **partial** — the field holds a *seed*: the folded, non-complemented pseudo-header
//!     sum that a virtio `NEEDS_CSUM` packet carries. It becomes `S' = fold(S + ~m + m')`.
//!     Only pseudo-header words (addresses, length) belong in a partial update: the ports
//!     lie behind `csum_start` and are summed by whoever completes the checksum.
//! * UDP: a transmitted checksum of 0 means "no checksum" and stays 0; a computed 0 is
//!   sent as 0xFFFF ([`Diff::apply_udp`]). Partial seeds never get this treatment.
//! * Several replacements are best gathered into one [`Diff`] and applied once.
//!
//! Nothing here allocates or panics.

/// Add `data` to the running ones'-complement sum `acc` (big-endian 16-bit words, an odd
/// trailing byte padded with zero). `acc` stays unfolded; call [`fold`] at the end.
///
/// `data` must start on an even offset of the summed region (all callers sum whole
/// headers or whole payloads, so it does).
pub fn sum(data: &[u8], acc: u64) -> u64 {
    let mut acc = acc;
    // 32-bit words: 2^16 ≡ 1 (mod 0xFFFF), so summing big-endian u32s and folding later
    // gives the same result as summing u16s, with half the additions. The u64 cannot
    // overflow for any slice shorter than 2^32 words.
    let mut chunks = data.chunks_exact(4);
    for c in &mut chunks {
        acc += u32::from_be_bytes([c[0], c[1], c[2], c[3]]) as u64;
    }
    let rest = chunks.remainder();
    let mut i = 0;
    while i + 1 < rest.len() {
        acc += u16::from_be_bytes([rest[i], rest[i + 1]]) as u64;
        i += 2;
    }
    if i < rest.len() {
        acc += (rest[i] as u64) << 8;
    }
    acc
}

/// Fold an unfolded sum to 16 bits with end-around carry. The result is 0 only if `acc` is 0.
#[inline]
pub const fn fold(acc: u64) -> u16 {
    let mut s = acc;
    while s >> 16 != 0 {
        s = (s & 0xffff) + (s >> 16);
    }
    s as u16
}

/// The RFC 1071 checksum of `data`: `!fold(sum(data))`.
pub fn checksum(data: &[u8]) -> u16 {
    !fold(sum(data, 0))
}

/// Unfolded sum of the IPv4 pseudo-header (addresses, protocol, L4 length).
#[inline]
pub fn pseudo_v4(src: &[u8; 4], dst: &[u8; 4], proto: u8, l4_len: u32) -> u64 {
    u32::from_be_bytes(*src) as u64
        + u32::from_be_bytes(*dst) as u64
        + proto as u64
        + (l4_len >> 16) as u64
        + (l4_len & 0xffff) as u64
}

/// Unfolded sum of the IPv6 pseudo-header (addresses, upper-layer length, next header).
#[inline]
pub fn pseudo_v6(src: &[u8; 16], dst: &[u8; 16], proto: u8, l4_len: u32) -> u64 {
    sum(src, 0) + sum(dst, 0) + proto as u64 + (l4_len >> 16) as u64 + (l4_len & 0xffff) as u64
}

/// The virtio `NEEDS_CSUM` seed for an IPv4 pseudo-header: `fold(pseudo_v4(..))`.
pub fn seed_v4(src: &[u8; 4], dst: &[u8; 4], proto: u8, l4_len: u32) -> u16 {
    fold(pseudo_v4(src, dst, proto, l4_len))
}

/// The virtio `NEEDS_CSUM` seed for an IPv6 pseudo-header: `fold(pseudo_v6(..))`.
pub fn seed_v6(src: &[u8; 16], dst: &[u8; 16], proto: u8, l4_len: u32) -> u16 {
    fold(pseudo_v6(src, dst, proto, l4_len))
}

/// True if the IPv4 header `hdr` (exactly IHL*4 bytes) carries a valid header checksum.
pub fn ipv4_header_ok(hdr: &[u8]) -> bool {
    fold(sum(hdr, 0)) == 0xffff
}

/// An accumulated RFC 1624 difference: the sum of `~m + m'` over every replaced word.
///
/// Build it with the `u16`/`addr4`/`addr16` steps, then apply it to a checksum field with
/// [`Diff::apply_fast`], [`Diff::apply_partial`] or [`Diff::apply_udp`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Diff(u64);

impl Diff {
    /// An empty difference (applying it leaves a checksum's value unchanged).
    #[inline]
    pub const fn new() -> Self {
        Diff(0)
    }

    /// Record that the 16-bit word `old` was replaced by `new`.
    #[inline]
    pub const fn u16(self, old: u16, new: u16) -> Self {
        Diff(self.0 + (!old) as u64 + new as u64)
    }

    /// Record that the 32-bit field (an IPv4 address) `old` was replaced by `new`.
    #[inline]
    pub const fn addr4(self, old: [u8; 4], new: [u8; 4]) -> Self {
        Diff(self.0 + (!u32::from_be_bytes(old)) as u64 + u32::from_be_bytes(new) as u64)
    }

    /// Record that the 128-bit field (an IPv6 address) `old` was replaced by `new`.
    #[inline]
    pub const fn addr16(self, old: [u8; 16], new: [u8; 16]) -> Self {
        let o = u128::from_be_bytes(old);
        let n = u128::from_be_bytes(new);
        let no = !o;
        Diff(
            self.0
                + (no >> 96) as u32 as u64
                + (no >> 64) as u32 as u64
                + (no >> 32) as u32 as u64
                + no as u32 as u64
                + (n >> 96) as u32 as u64
                + (n >> 64) as u32 as u64
                + (n >> 32) as u32 as u64
                + n as u32 as u64,
        )
    }

    /// Fast update of a final checksum: `~(~check + diff)` (RFC 1624 eqn. 3).
    #[inline]
    pub const fn apply_fast(self, check: u16) -> u16 {
        !fold((!check) as u64 + self.0)
    }

    /// Partial update of a pseudo-header seed: `fold(seed + diff)`.
    #[inline]
    pub const fn apply_partial(self, seed: u16) -> u16 {
        fold(seed as u64 + self.0)
    }

    /// Fast update of a UDP checksum: 0 ("none") stays 0, a result of 0 is sent as 0xFFFF.
    #[inline]
    pub const fn apply_udp(self, check: u16) -> u16 {
        if check == 0 {
            return 0;
        }
        match self.apply_fast(check) {
            0 => 0xffff,
            c => c,
        }
    }
}

/// Fast update of a final checksum after one 16-bit word changed from `old` to `new`.
#[inline]
pub const fn fast_update16(check: u16, old: u16, new: u16) -> u16 {
    Diff::new().u16(old, new).apply_fast(check)
}

/// Fast update of a final checksum after a 32-bit field (IPv4 address) changed.
#[inline]
pub const fn fast_update32(check: u16, old: [u8; 4], new: [u8; 4]) -> u16 {
    Diff::new().addr4(old, new).apply_fast(check)
}

/// Fast update of a final checksum after a 128-bit field (IPv6 address) changed.
#[inline]
pub const fn fast_update128(check: u16, old: [u8; 16], new: [u8; 16]) -> u16 {
    Diff::new().addr16(old, new).apply_fast(check)
}

/// Partial update of a pseudo-header seed after one 16-bit word changed.
#[inline]
pub const fn partial_update16(seed: u16, old: u16, new: u16) -> u16 {
    Diff::new().u16(old, new).apply_partial(seed)
}

/// Partial update of a pseudo-header seed after a 32-bit field (IPv4 address) changed.
#[inline]
pub const fn partial_update32(seed: u16, old: [u8; 4], new: [u8; 4]) -> u16 {
    Diff::new().addr4(old, new).apply_partial(seed)
}

/// Partial update of a pseudo-header seed after a 128-bit field (IPv6 address) changed.
#[inline]
pub const fn partial_update128(seed: u16, old: [u8; 16], new: [u8; 16]) -> u16 {
    Diff::new().addr16(old, new).apply_partial(seed)
}

#[cfg(test)]
mod test {
    use super::*;
    use crate::util::Rng;

    /// Reference: sum 16-bit words one by one, the RFC 1071 way.
    fn naive_sum(data: &[u8]) -> u64 {
        let mut acc = 0u64;
        for pair in data.chunks(2) {
            let hi = pair[0] as u64;
            let lo = pair.get(1).copied().unwrap_or(0) as u64;
            acc += (hi << 8) | lo;
        }
        acc
    }

    fn random_bytes(rng: &mut Rng, len: usize) -> Vec<u8> {
        (0..len).map(|_| rng.next_u32() as u8).collect()
    }

    // RFC 1071 §3 example: 00 01 f2 03 f4 f5 f6 f7 sums to 0xddf2.
    static RFC1071_BYTES: [u8; 8] = [0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7];

    // A real IPv4 header (wikipedia example), checksum 0xb861 at offset 10.
    static IPV4_HEADER: [u8; 20] = [
        0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0xb8, 0x61, 0xc0, 0xa8, 0x00,
        0x01, 0xc0, 0xa8, 0x00, 0xc7,
    ];

    #[test]
    fn test_rfc1071_example() {
        assert_eq!(fold(sum(&RFC1071_BYTES, 0)), 0xddf2);
        assert_eq!(checksum(&RFC1071_BYTES), !0xddf2);
    }

    #[test]
    fn test_ipv4_header() {
        assert!(ipv4_header_ok(&IPV4_HEADER));
        let mut h = IPV4_HEADER;
        h[10] = 0;
        h[11] = 0;
        assert_eq!(checksum(&h), 0xb861);
        h[15] ^= 1;
        assert!(!ipv4_header_ok(&h));
    }

    #[test]
    fn test_fold_edges() {
        assert_eq!(fold(0), 0);
        assert_eq!(fold(0xffff), 0xffff);
        assert_eq!(fold(0x1_0000), 1);
        assert_eq!(fold(0x1_fffe), 0xffff);
        assert_eq!(fold(u64::MAX), 0xffff);
    }

    #[test]
    fn sum_matches_naive_for_all_lengths() {
        let mut rng = Rng::seeded(1);
        for len in 0..200 {
            let d = random_bytes(&mut rng, len);
            assert_eq!(fold(sum(&d, 0)), fold(naive_sum(&d)), "len {len}");
        }
        let big = vec![0xffu8; 65535];
        assert_eq!(fold(sum(&big, 0)), fold(naive_sum(&big)));
    }

    #[test]
    fn pseudo_headers_match_byte_sums() {
        let mut rng = Rng::seeded(2);
        for _ in 0..1000 {
            let s4: [u8; 4] = rng.next_u32().to_be_bytes();
            let d4: [u8; 4] = rng.next_u32().to_be_bytes();
            let len = rng.next_u32() & 0x1_ffff;
            let proto = rng.next_u32() as u8;
            let mut ph = Vec::new();
            ph.extend_from_slice(&s4);
            ph.extend_from_slice(&d4);
            ph.extend_from_slice(&[0, proto]);
            ph.extend_from_slice(&(len as u16).to_be_bytes());
            let want = fold(naive_sum(&ph) + (len >> 16) as u64);
            assert_eq!(seed_v4(&s4, &d4, proto, len), want);

            let s6: [u8; 16] =
                (rng.next_u64() as u128 | ((rng.next_u64() as u128) << 64)).to_be_bytes();
            let d6: [u8; 16] =
                (rng.next_u64() as u128 | ((rng.next_u64() as u128) << 64)).to_be_bytes();
            let mut ph = Vec::new();
            ph.extend_from_slice(&s6);
            ph.extend_from_slice(&d6);
            ph.extend_from_slice(&len.to_be_bytes());
            ph.extend_from_slice(&[0, 0, 0, proto]);
            assert_eq!(seed_v6(&s6, &d6, proto, len), fold(naive_sum(&ph)));
        }
    }

    /// A random "segment": `words` holds the data; the checksum is over all of it with the
    /// checksum field (word 0) zero, like a transport header.
    fn full(data: &[u8]) -> u16 {
        let mut d = data.to_vec();
        d[0] = 0;
        d[1] = 0;
        checksum(&d)
    }

    #[test]
    fn fast_update_equals_full_recompute() {
        let mut rng = Rng::seeded(3);
        for round in 0..20_000 {
            let len = 2 + 2 * rng.below(40) as usize + 16;
            let mut d = random_bytes(&mut rng, len);
            let c = full(&d);
            d[0..2].copy_from_slice(&c.to_be_bytes());
            let kind = round % 3;
            // replace a 16/32/128-bit field at an even offset >= 2
            let width = [2usize, 4, 16][kind];
            let choices = (len - width - 2) / 2 + 1;
            let off = 2 + 2 * rng.below(choices as u32) as usize;
            let old = d[off..off + width].to_vec();
            let mut new = random_bytes(&mut rng, width);
            if rng.below(8) == 0 {
                new = old.clone(); // no-op replacement
            }
            d[off..off + width].copy_from_slice(&new);
            let c2 = match kind {
                0 => fast_update16(
                    c,
                    u16::from_be_bytes([old[0], old[1]]),
                    u16::from_be_bytes([new[0], new[1]]),
                ),
                1 => fast_update32(c, old[..].try_into().unwrap(), new[..].try_into().unwrap()),
                _ => fast_update128(c, old[..].try_into().unwrap(), new[..].try_into().unwrap()),
            };
            assert_eq!(c2, full(&d), "round {round}");
        }
    }

    #[test]
    fn fast_update_hits_zero_sum_edge() {
        // Construct data whose new checksum is exactly 0x0000 and 0xffff-equivalent cases.
        let mut rng = Rng::seeded(4);
        let mut seen_zero = 0;
        for _ in 0..200_000 {
            let mut d = random_bytes(&mut rng, 8);
            let c = full(&d);
            d[0..2].copy_from_slice(&c.to_be_bytes());
            let old = u16::from_be_bytes([d[2], d[3]]);
            // choose `new` so that the new full checksum is 0 about every 64k tries: force it
            let rest = fold(sum(&d[4..], 0));
            // new word making the data sum 0xffff: new = ~rest (ones' complement)
            let new = if rng.below(2) == 0 {
                !rest
            } else {
                rng.next_u32() as u16
            };
            d[2..4].copy_from_slice(&new.to_be_bytes());
            let want = full(&d);
            if want == 0 {
                seen_zero += 1;
            }
            assert_eq!(fast_update16(c, old, new), want);
            // UDP semantics: computed 0 becomes 0xffff
            let udp_want = if want == 0 { 0xffff } else { want };
            let udp_c = if c == 0 { 0xffff } else { c };
            assert_eq!(Diff::new().u16(old, new).apply_udp(udp_c), udp_want);
        }
        assert!(seen_zero > 0);
        assert_eq!(
            Diff::new().u16(1, 2).apply_udp(0),
            0,
            "UDP 0 means no checksum"
        );
    }

    #[test]
    fn partial_update_equals_recomputed_seed() {
        let mut rng = Rng::seeded(5);
        for _ in 0..20_000 {
            let s4 = rng.next_u32().to_be_bytes();
            let d4 = rng.next_u32().to_be_bytes();
            let n4 = rng.next_u32().to_be_bytes();
            let len = rng.below(65536);
            let seed = seed_v4(&s4, &d4, 6, len);
            assert_eq!(partial_update32(seed, d4, n4), seed_v4(&s4, &n4, 6, len));
            assert_eq!(partial_update32(seed, s4, n4), seed_v4(&n4, &d4, 6, len));
            let nl = rng.below(65536);
            assert_eq!(
                partial_update16(seed, len as u16, nl as u16),
                seed_v4(&s4, &d4, 6, nl)
            );

            let r = |rng: &mut Rng| {
                (rng.next_u64() as u128 | ((rng.next_u64() as u128) << 64)).to_be_bytes()
            };
            let (s6, d6, n6) = (r(&mut rng), r(&mut rng), r(&mut rng));
            let seed = seed_v6(&s6, &d6, 17, len);
            assert_eq!(partial_update128(seed, d6, n6), seed_v6(&s6, &n6, 17, len));
            assert_eq!(partial_update128(seed, s6, n6), seed_v6(&n6, &d6, 17, len));
        }
    }

    #[test]
    fn diff_accumulates_several_fields() {
        let mut rng = Rng::seeded(6);
        for _ in 0..5_000 {
            let mut d = random_bytes(&mut rng, 40);
            let c = full(&d);
            d[0..2].copy_from_slice(&c.to_be_bytes());
            let old_a: [u8; 4] = d[4..8].try_into().unwrap();
            let old_b: [u8; 16] = d[8..24].try_into().unwrap();
            let old_p = u16::from_be_bytes([d[24], d[25]]);
            let new_a = rng.next_u32().to_be_bytes();
            let new_b: [u8; 16] = random_bytes(&mut rng, 16).try_into().unwrap();
            let new_p = rng.next_u32() as u16;
            d[4..8].copy_from_slice(&new_a);
            d[8..24].copy_from_slice(&new_b);
            d[24..26].copy_from_slice(&new_p.to_be_bytes());
            let diff = Diff::new()
                .addr4(old_a, new_a)
                .addr16(old_b, new_b)
                .u16(old_p, new_p);
            assert_eq!(diff.apply_fast(c), full(&d));
        }
    }
}
