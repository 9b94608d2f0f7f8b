//! Hash helpers shared by the hashing schedulers (spec §2.7, §2.8, §2.11).
//!
//! * `hash_32`: the kernel's multiplicative "golden ratio" hash (`GOLDEN_RATIO_32`),
//!   used by sh, dh and the lblc/lblcr cache buckets.
//! * `addr_fold`: an address as one host-order `u32`; IPv6 folds its four
//!   32-bit words with XOR (byte order commutes with XOR, so folding
//!   big-endian words equals "XOR network words, then ntohl").
//! * `hsiphash_u32`: hsiphash of one 4-byte value as 64-bit kernels compute it,
//!   i.e. SipHash-1-3 with 64-bit key words and the result cut to 32 bits (§2.11).
//! * `hash_input`: which address and port sh/mh hash for a flow (source side,
//!   the other side for ICMP-embedded headers, port only with `SVC_F_SCHED2`).
//! * `table_lookup`: the sh/mh table lookup with the `-fallback` probe.

use std::net::IpAddr;
use std::sync::Arc;

use super::FlowInfo;
use crate::service::Dest;
use crate::service::SVC_F_SCHED2;

/// The kernel's `GOLDEN_RATIO_32`.
const GOLDEN_RATIO_32: u32 = 0x61C8_8647;

/// `hash_32(val, bits)`: the top `bits` bits of `val * GOLDEN_RATIO_32 mod 2^32`.
#[inline]
pub fn hash_32(val: u32, bits: u32) -> u32 {
    debug_assert!((1..=32).contains(&bits));
    val.wrapping_mul(GOLDEN_RATIO_32) >> (32 - bits)
}

/// An address as a host-order `u32` (IPv6: XOR of its four 32-bit words).
#[inline]
pub fn addr_fold(addr: IpAddr) -> u32 {
    match addr {
        IpAddr::V4(a) => u32::from(a),
        IpAddr::V6(a) => {
            let o = a.octets();
            let w = |i: usize| u32::from_be_bytes([o[i], o[i + 1], o[i + 2], o[i + 3]]);
            w(0) ^ w(4) ^ w(8) ^ w(12)
        }
    }
}

/// The address and port sh/mh hash for `flow` under service flags `svc_flags`.
///
/// The port is used only with `sh-port`/`mh-port` (`SVC_F_SCHED2`) and only for
/// TCP, UDP and SCTP; everything else hashes port 0, as the kernel does.
#[inline]
pub fn hash_input(flow: &FlowInfo, svc_flags: u32) -> (IpAddr, u16) {
    let addr = if flow.inverse { flow.daddr } else { flow.saddr };
    let port = if svc_flags & SVC_F_SCHED2 != 0 && matches!(flow.proto, 6 | 17 | 132) {
        if flow.inverse {
            flow.dport
        } else {
            flow.sport
        }
    } else {
        0
    };
    (addr, port)
}

/// A 64-bit SipHash key (the kernel's `hsiphash_key_t` on 64-bit machines).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SipKey(pub u64, pub u64);

#[inline(always)]
fn sipround(v: &mut [u64; 4]) {
    v[0] = v[0].wrapping_add(v[1]);
    v[1] = v[1].rotate_left(13);
    v[1] ^= v[0];
    v[0] = v[0].rotate_left(32);
    v[2] = v[2].wrapping_add(v[3]);
    v[3] = v[3].rotate_left(16);
    v[3] ^= v[2];
    v[0] = v[0].wrapping_add(v[3]);
    v[3] = v[3].rotate_left(21);
    v[3] ^= v[0];
    v[2] = v[2].wrapping_add(v[1]);
    v[1] = v[1].rotate_left(17);
    v[1] ^= v[2];
    v[2] = v[2].rotate_left(32);
}

/// hsiphash of the 4 bytes of `v` in little-endian order (what the kernel hashes on
/// x86 when it passes `&v, sizeof(v)`): one compression round, three finalisation
/// rounds, output folded to 32 bits.
#[inline]
pub fn hsiphash_u32(v: u32, key: SipKey) -> u32 {
    let mut s = [
        0x736f_6d65_7073_6575 ^ key.0,
        0x646f_7261_6e64_6f6d ^ key.1,
        0x6c79_6765_6e65_7261 ^ key.0,
        0x7465_6462_7974_6573 ^ key.1,
    ];
    // The length (4) goes into the top byte of the last (and only) message word.
    let b = (4u64 << 56) | v as u64;
    s[3] ^= b;
    sipround(&mut s);
    s[0] ^= b;
    s[2] ^= 0xff;
    sipround(&mut s);
    sipround(&mut s);
    sipround(&mut s);
    (s[0] ^ s[1] ^ s[2] ^ s[3]) as u32
}

/// The lookup sh and mh share (spec §2.7, §2.11): `key(offset)` is the table
/// index for a probe offset and `entry(index)` the destination index stored
/// there (out of range for an empty entry). The entry at `key(0)` is the pick
/// if it is schedulable; an empty entry means no destination. With the
/// fallback flag, probe `key((off + key(0)) % n)` for `off` in `0..n` (the
/// kernel's quirk: the offset is added to the first key, not to 0) and take
/// the first schedulable destination, stopping at an empty entry.
pub fn table_lookup(
    dests: &[Arc<Dest>],
    n: usize,
    fallback: bool,
    key: impl Fn(u32) -> usize,
    entry: impl Fn(usize) -> usize,
) -> Option<usize> {
    // Outer None: empty entry; inner None: occupied but not schedulable.
    let usable = |k: usize| -> Option<Option<usize>> {
        let i = entry(k);
        Some(dests.get(i)?.is_schedulable().then_some(i))
    };
    let h = key(0);
    let first = usable(h)?;
    if first.is_some() || !fallback {
        return first;
    }
    for off in 0..n {
        if let Some(i) = usable(key(((off + h) % n) as u32))? {
            return Some(i);
        }
    }
    None
}

#[cfg(test)]
mod test {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    #[test]
    fn hsiphash_matches_kernel_test_vector() {
        // lib/test_siphash.c: key bytes 00..0f, input 00 01 02 03 (spec §2.11).
        let key = SipKey(0x0706_0504_0302_0100, 0x0f0e_0d0c_0b0a_0908);
        assert_eq!(
            hsiphash_u32(u32::from_le_bytes([0, 1, 2, 3]), key),
            0x88d3_8328
        );
    }

    #[test]
    fn hash_32_is_top_bits_of_golden_product() {
        assert_eq!(hash_32(0, 8), 0);
        assert_eq!(hash_32(1, 8), 0x61);
        assert_eq!(hash_32(1, 10), 0x61C8_8647 >> 22);
        // 2 * 0x61C88647 = 0xC3910C8E
        assert_eq!(hash_32(2, 8), 0xC3);
        assert_eq!(hash_32(3, 32), 0x61C8_8647u32.wrapping_mul(3));
    }

    #[test]
    fn addr_fold_v4_and_v6() {
        assert_eq!(
            addr_fold(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2))),
            0x0a00_0002
        );
        let a: Ipv6Addr = "2001:db8::1".parse().unwrap();
        assert_eq!(addr_fold(IpAddr::V6(a)), 0x2001_0db8 ^ 1);
    }

    #[test]
    fn hash_input_port_only_with_flag_and_l4() {
        let mut f = FlowInfo {
            proto: 6,
            saddr: IpAddr::V4(Ipv4Addr::new(1, 2, 3, 4)),
            sport: 1000,
            daddr: IpAddr::V4(Ipv4Addr::new(5, 6, 7, 8)),
            dport: 80,
            inverse: false,
        };
        assert_eq!(hash_input(&f, 0), (f.saddr, 0));
        assert_eq!(hash_input(&f, SVC_F_SCHED2), (f.saddr, 1000));
        f.inverse = true;
        assert_eq!(hash_input(&f, SVC_F_SCHED2), (f.daddr, 80));
        f.proto = 1;
        assert_eq!(hash_input(&f, SVC_F_SCHED2), (f.daddr, 0));
    }
}
