//! Small primes and the constants for trial division by multiplication:
//! n is divisible by an odd p iff n·p⁻¹ mod 2^w ≤ ⌊(2^w − 1)/p⌋, and then
//! n·p⁻¹ mod 2^w is the exact quotient. Everything is computed at compile time.

use crate::arith::{inv128, inv64};

/// Trial division covers every prime below this bound.
pub(crate) const LIMIT: usize = 1 << 12;

/// A cofactor with no prime factor below [`LIMIT`] that is smaller than this is prime.
pub(crate) const LIMIT_SQ: u64 = (LIMIT * LIMIT) as u64;

const fn sieve() -> [bool; LIMIT] {
    let mut composite = [false; LIMIT];
    composite[0] = true;
    composite[1] = true;
    let mut i = 2;
    while i * i < LIMIT {
        if !composite[i] {
            let mut j = i * i;
            while j < LIMIT {
                composite[j] = true;
                j += i;
            }
        }
        i += 1;
    }
    composite
}

const COMPOSITE: [bool; LIMIT] = sieve();

/// How many odd primes lie below `bound` (≤ [`LIMIT`]).
pub(crate) const fn count_odd_primes(bound: usize) -> usize {
    let mut c = 0;
    let mut i = 3;
    while i < bound {
        if !COMPOSITE[i] {
            c += 1;
        }
        i += 2;
    }
    c
}

pub(crate) const NUM_ODD: usize = count_odd_primes(LIMIT);

/// One odd prime with its inverses and quotient limits for both word sizes.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Divisor {
    pub p: u32,
    pub inv64: u64,
    pub lim64: u64,
    pub inv128: u128,
    pub lim128: u128,
}

const fn table() -> [Divisor; NUM_ODD] {
    let mut t = [Divisor {
        p: 0,
        inv64: 0,
        lim64: 0,
        inv128: 0,
        lim128: 0,
    }; NUM_ODD];
    let mut i = 3;
    let mut k = 0;
    while i < LIMIT {
        if !COMPOSITE[i] {
            t[k] = Divisor {
                p: i as u32,
                inv64: inv64(i as u64),
                lim64: u64::MAX / i as u64,
                inv128: inv128(i as u128),
                lim128: u128::MAX / i as u128,
            };
            k += 1;
        }
        i += 2;
    }
    t
}

/// The odd primes below [`LIMIT`], ascending.
pub(crate) static ODD_PRIMES: [Divisor; NUM_ODD] = table();

/// The 64-bit inverse and quotient limit of one odd prime.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Div64 {
    pub inv: u64,
    pub lim: u64,
}

const fn table64() -> [Div64; NUM_ODD] {
    let full = table();
    let mut t = [Div64 { inv: 0, lim: 0 }; NUM_ODD];
    let mut k = 0;
    while k < NUM_ODD {
        t[k] = Div64 {
            inv: full[k].inv64,
            lim: full[k].lim64,
        };
        k += 1;
    }
    t
}

/// [`ODD_PRIMES`]' 64-bit inverses and limits alone, same order: trial
/// division of a u64 reads 16 bytes per prime instead of 64, so the whole
/// table (9 KiB) stays in the L1 cache.
pub(crate) static ODD64: [Div64; NUM_ODD] = table64();

/// Whether `n < LIMIT` is prime.
#[inline]
pub(crate) fn is_small_prime(n: u64) -> bool {
    (n as usize) < LIMIT && !COMPOSITE[n as usize]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg_attr(not(target_arch = "wasm32"), test)]
    #[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
    fn table_is_right() {
        assert_eq!(ODD_PRIMES[0].p, 3);
        assert_eq!(NUM_ODD + 1, 564); // π(4096) = 564
        for d in &ODD_PRIMES {
            assert_eq!((d.p as u64).wrapping_mul(d.inv64), 1);
            assert_eq!((d.p as u128).wrapping_mul(d.inv128), 1);
            assert!((2..d.p).take_while(|q| q * q <= d.p).all(|q| d.p % q != 0));
        }
    }
}
