//! Primality: the strong base-2 test, combined with a table below 2^32 and
//! with the extra strong Lucas test (BPSW) above.
//!
//! Below 2^32: n is prime iff it passes base 2 and is not one of the 2314
//! base-2 strong pseudoprimes there (listed in `spsp2_below_2_32.in`, checked
//! for completeness by a test). Above: BPSW with the extra strong Lucas test,
//! which has no known counterexample and none below 2^64 (checked against
//! the Feitsma–Galway list of base-2 pseudoprimes).

use crate::arith::{ModF64, Mont32, Mont64, Monty, Word};
use crate::small;
use core::hint::select_unpredictable;

/// Strong probable-prime test to base `a` (plain residue, 1 < a < n).
pub(crate) fn sprp<M: Monty>(m: &M, a: M::W) -> bool {
    let n = m.n();
    let nm1 = n.wsub(M::W::ONE);
    let s = nm1.tz();
    let d = nm1.shr(s);
    let one = m.one();
    let minus_one = m.neg(one);
    let x = if a == M::W::TWO {
        m.pow2(d)
    } else {
        m.pow(m.to_mont(a), d)
    };
    strong_end(m, x, s, one, minus_one)
}

/// The strong test's verdict from x = a^d, n − 1 = d·2^s: x ≡ ±1, or
/// x^(2^r) ≡ −1 for some 0 < r < s.
#[inline(always)]
fn strong_end<M: Monty>(m: &M, mut x: M::W, s: u32, one: M::W, minus_one: M::W) -> bool {
    if x == one || x == minus_one {
        return true;
    }
    for _ in 1..s {
        x = m.sqr(x);
        if x == minus_one {
            return true;
        }
        if x == one {
            return false;
        }
    }
    false
}

/// Jacobi symbol (a / n) for odd n > 0.
fn jacobi(a: i64, n: u128) -> i32 {
    // u64 remainders are far cheaper than u128 ones (a library call on wasm32).
    match u64::try_from(n) {
        Ok(n) => jacobi_in(a, n),
        Err(_) => jacobi_in(a, n),
    }
}

/// [`jacobi`] in the word size of `n`.
fn jacobi_in<W: Word>(a: i64, n: W) -> i32 {
    // a < 2^63 fits any word; the residue of a negative a is n − (|a| mod n).
    let r = W::from_u128(u128::from(a.unsigned_abs())).rem(n);
    let mut a = if a < 0 && r != W::ZERO { n.wsub(r) } else { r };
    let mut n = n;
    let low3 = |x: W| x.to_u128() as u8 & 7;
    let mut t = 1;
    while a != W::ZERO {
        let z = a.tz();
        a = a.shr(z);
        if z & 1 == 1 && matches!(low3(n), 3 | 5) {
            t = -t;
        }
        if low3(a) & 3 == 3 && low3(n) & 3 == 3 {
            t = -t;
        }
        core::mem::swap(&mut a, &mut n);
        a = a.rem(n);
    }
    if n == W::ONE {
        t
    } else {
        0
    }
}

/// Extra strong Lucas probable-prime test (Grantham; Baillie's parameters
/// Q = 1 and the first P = 3, 4, 5, … with (P² − 4 / n) = −1). With Q = 1
/// only the V sequence is needed, two multiplications per bit instead of
/// about five for the strong test with Selfridge's parameters. Combined with
/// a base-2 strong test this is the "extra strong" BPSW, which has no known
/// counterexample and none below 2^64.
/// `n` must be odd, > small::LIMIT and not a perfect square.
pub(crate) fn extra_strong_lucas<M: Monty>(m: &M) -> bool {
    let n = m.n();
    let Some(p) = lucas_p(n.to_u128()) else {
        return false;
    };
    let one = m.one();
    let two = m.add(one, one);
    let pm = m.to_mont(M::W::from_u128(p as u128));

    // n + 1 = k·2^s with k odd; n < W::MAX because W::MAX = 2^w − 1 is divisible by 3.
    let np1 = n.wadd(M::W::ONE);
    let s = np1.tz();
    let k = np1.shr(s);

    // (V_j, V_{j+1}) from (V_0, V_1) = (2, P) by the bits of k:
    // V_2j = V_j² − 2, V_2j+1 = V_j·V_j+1 − P.
    let (mut v, mut w) = (two, pm);
    for i in (0..M::W::BITS - k.lz()).rev() {
        let mid = m.sub(m.mul(v, w), pm);
        if k.bit(i) {
            v = mid;
            w = m.sub(m.sqr(w), two);
        } else {
            w = mid;
            v = m.sub(m.sqr(v), two);
        }
    }
    lucas_end(m, v, w, pm, s)
}

/// The extra strong Lucas test's verdict from (V_k, V_k+1), n + 1 = k·2^s:
/// U_k ≡ 0 with V_k ≡ ±2 (U_k ≡ 0 ⇔ 2·V_k+1 ≡ P·V_k, as D·U_k = 2·V_k+1 −
/// P·V_k with D coprime to n), or V_{2^r·k} ≡ 0 for some 0 ≤ r < s − 1.
#[inline(always)]
fn lucas_end<M: Monty>(m: &M, mut v: M::W, w: M::W, pm: M::W, s: u32) -> bool {
    let two = m.add(m.one(), m.one());
    if (v == two || v == m.neg(two)) && m.add(w, w) == m.mul(pm, v) {
        return true;
    }
    for _ in 0..s.saturating_sub(1) {
        if v == M::W::ZERO {
            return true;
        }
        v = m.sub(m.sqr(v), two);
    }
    false
}

/// Primality of any odd n > 61: below 2^32 one Miller–Rabin test to base 2
/// and a look-up in the list of all base-2 strong pseudoprimes below 2^32
/// ([`SPSP2_BELOW_2_32`]); BPSW above.
#[inline]
pub(crate) fn is_prime_odd_u64_exact(n: u64, expect: Expect) -> bool {
    if let Ok(n) = u32::try_from(n) {
        return sprp(&Mont32::new(n), 2) && SPSP2_BELOW_2_32.binary_search(&n).is_err();
    }
    // Double-precision quotients are cheaper where products are narrow
    // (wasm32).
    if cfg!(narrow_mul) && n < 1 << 50 {
        bpsw_as(&ModF64::new(n), expect)
    } else {
        bpsw_as(&Mont64::new(n), expect)
    }
}

/// What a primality test expects to find, which decides how BPSW runs.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Expect {
    /// A cofactor still to be split, as often composite as prime: the
    /// strong test runs first and most composites stop there.
    Either,
    /// A part of a split or a reported factor, nearly always prime: both
    /// halves in one pass ([`bpsw`]; a quarter faster on primes, slower on
    /// composites).
    Prime,
}

/// BPSW for an odd n = `m.n()` > small::LIMIT, scheduled for what
/// `expect`s (the perfect-square test, which the Lucas test needs, only
/// after the strong test where composites are common).
#[inline(always)]
fn bpsw_as<M: Monty>(m: &M, expect: Expect) -> bool {
    let n = m.n();
    match expect {
        Expect::Either => sprp(m, M::W::TWO) && !n.is_square() && extra_strong_lucas(m),
        Expect::Prime => !n.is_square() && bpsw(m),
    }
}

/// The base-2 strong test and the extra strong Lucas test (BPSW) of an odd
/// n = `m.n()` > small::LIMIT that is not a perfect square, in one pass: the
/// two exponentiations are independent chains of multiplications, so run
/// side by side each fills the other's latency. Same answers as [`sprp`] and
/// [`extra_strong_lucas`] one after the other; measured on 33–64-bit
/// numbers (`tune is_prime`): primes 460 ns instead of 620–700, composites
/// 460 ns instead of 260–310 (most fail the strong test alone), hence
/// [`Expect`].
fn bpsw<M: Monty>(m: &M) -> bool {
    let n = m.n();
    let Some(p) = lucas_p(n.to_u128()) else {
        return false;
    };
    let one = m.one();
    let two = m.add(one, one);
    let minus_one = m.neg(one);
    let pm = m.to_mont(M::W::from_u128(p as u128));
    // n − 1 = d·2^s and n + 1 = k·2^t, d and k odd; n < W::MAX (see
    // extra_strong_lucas).
    let nm1 = n.wsub(M::W::ONE);
    let s = nm1.tz();
    let d = nm1.shr(s);
    let np1 = n.wadd(M::W::ONE);
    let t = np1.tz();
    let k = np1.shr(t);
    // x = 2^d (leading zero bits keep x = 1) and (V_j, V_j+1) for j = k
    // (leading zero bits keep (2, P)), both by the bits from the top down.
    let mut x = one;
    let (mut v, mut w) = (two, pm);
    let top = M::W::BITS - d.max(k).lz();
    for i in (0..top).rev() {
        // Selects, not branches: the bits are unpredictable, and a branch
        // would also stop the two chains from overlapping.
        x = m.sqr(x);
        x = select_unpredictable(d.bit(i), m.add(x, x), x);
        let mid = m.sub(m.mul(v, w), pm);
        let kb = k.bit(i);
        let sq = m.sub(m.sqr(select_unpredictable(kb, w, v)), two);
        (v, w) = select_unpredictable(kb, (mid, sq), (sq, mid));
    }
    strong_end(m, x, s, one, minus_one) && lucas_end(m, v, w, pm, t)
}

/// The first P = 3, 4, 5, … with ((P² − 4) / n) = −1, or `None` when some
/// P² − 4 shares a factor with n (so n is composite; n > small::LIMIT).
fn lucas_p(n: u128) -> Option<i64> {
    let mut p: i64 = 3;
    loop {
        match jacobi(p * p - 4, n) {
            -1 => return Some(p),
            0 => return None,
            _ => p += 1,
        }
    }
}

/// Primality of an odd n ≥ 2^64 with no prime factor below small::LIMIT.
#[inline]
pub(crate) fn is_prime_odd_u128(n: u128, expect: Expect) -> bool {
    crate::arith::with_two_word_monty!(n, |m| bpsw_as(m, expect))
}

/// Deterministic primality test for any n < 2^128.
pub fn is_prime(n: u128) -> bool {
    if n < 2 {
        return false;
    }
    if n < small::LIMIT as u128 {
        return small::is_small_prime(n as u64);
    }
    if n & 1 == 0 {
        return false;
    }
    // A few small primes catch most composites cheaply; the tests below are
    // exact for any odd n, so there is no need to divide by all of them
    // (`verify` calls this on every factor a worker reports).
    if n < crate::ecm::MAX_B2 as u128 {
        // The bitmap ECM's stage 2 keeps: a look-up instead of a test.
        return crate::ecm::is_odd_prime(crate::ecm::primes(), n as u64);
    }
    if n <= u64::MAX as u128 {
        let n = n as u64;
        for d in &small::ODD_PRIMES[..QUICK_DIVISORS] {
            if n.wrapping_mul(d.inv64) <= d.lim64 {
                return false;
            }
        }
        return is_prime_odd_u64_exact(n, Expect::Prime);
    }
    for d in &small::ODD_PRIMES[..QUICK_DIVISORS] {
        if n.wrapping_mul(d.inv128) <= d.lim128 {
            return false;
        }
    }
    is_prime_odd_u128(n, Expect::Prime)
}

/// Every odd composite below 2^32 that passes the strong test to base 2
/// (OEIS A001262), ascending. Generated and checked for completeness by the
/// ignored test `spsp2_table_is_complete` (about a minute in release).
const SPSP2_BELOW_2_32: [u32; 2314] = include!("spsp2_below_2_32.in");

/// Small odd primes `is_prime` divides by before its exact test.
const QUICK_DIVISORS: usize = 15;

/// Deterministic primality test for any n < 2^64.
pub fn is_prime_u64(n: u64) -> bool {
    is_prime(n as u128)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::arith::{Mont120, Mont128, Mont90, Mont96};

    fn naive(n: u64) -> bool {
        n >= 2
            && (2..)
                .take_while(|d| d * d <= n)
                .all(|d| !n.is_multiple_of(d))
    }

    /// Every listed number is an odd composite that passes base 2, in order.
    #[cfg_attr(not(target_arch = "wasm32"), test)]
    #[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
    fn spsp2_table_entries_are_base_2_pseudoprimes() {
        assert!(SPSP2_BELOW_2_32.windows(2).all(|w| w[0] < w[1]));
        assert_eq!(SPSP2_BELOW_2_32[0], 2047);
        for &n in &SPSP2_BELOW_2_32 {
            let n = u64::from(n);
            assert!(n & 1 == 1 && sprp(&Mont64::new(n), 2), "{n}");
            let d = (3..).step_by(2).find(|d| n % d == 0 || d * d > n);
            assert!(d.is_some_and(|d| d * d <= n), "{n} is composite");
        }
    }

    /// The BPSW path (used above 2^32) agrees with the exact test below 2^32
    /// on random odd numbers, and the Lucas half rejects every base-2 strong
    /// pseudoprime there.
    #[cfg_attr(not(target_arch = "wasm32"), test)]
    #[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
    fn bpsw_agrees_with_the_exact_test_below_2_32() {
        for &n in &SPSP2_BELOW_2_32 {
            let n = u64::from(n);
            if n > small::LIMIT as u64 {
                assert!(!bpsw_as(&Mont64::new(n), Expect::Either), "{n}");
            }
        }
        let mut rng = fastrand::Rng::with_seed(5);
        let mut primes = 0;
        for _ in 0..200_000 {
            let n = rng.u64(small::LIMIT as u64..1 << 32) | 1;
            let want = is_prime_odd_u64_exact(n, Expect::Either);
            primes += u32::from(want);
            assert_eq!(bpsw_as(&Mont64::new(n), Expect::Either), want, "{n}");
            assert_eq!(bpsw_as(&ModF64::new(n), Expect::Prime), want, "{n}");
        }
        assert!(primes > 5_000, "the sample holds primes");
    }

    #[cfg_attr(not(target_arch = "wasm32"), test)]
    #[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
    fn bpsw_gives_the_same_answer_in_three_and_four_digit_arithmetic() {
        // Products of two primes above 2^40 (some squares), and primes,
        // below 2^96.
        let mut rng = fastrand::Rng::with_seed(9);
        let mut prime = |bits: u32| loop {
            let p = rng.u128(1 << (bits - 1)..1 << bits) | 1;
            if is_prime(p) {
                return p;
            }
        };
        let mut cases = vec![];
        for bits in [41u32, 44, 48] {
            let (p, q) = (prime(bits), prime(bits));
            cases.extend([p * q, p * p, prime(2 * bits)]);
        }
        for n in cases {
            let want = is_prime(n);
            assert_eq!(bpsw_as(&Mont96::new(n), Expect::Either), want, "{n}");
            assert_eq!(bpsw_as(&Mont120::new(n), Expect::Either), want, "{n}");
            if n >> 90 == 0 {
                assert_eq!(bpsw_as(&Mont90::new(n), Expect::Either), want, "{n}");
            }
            assert_eq!(bpsw_as(&Mont128::new(n), Expect::Prime), want, "{n}");
        }
    }

    #[cfg_attr(not(target_arch = "wasm32"), test)]
    #[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
    fn one_pass_bpsw_answers_as_the_two_tests_one_after_the_other() {
        fn check<M: Monty>(m: &M) {
            let want = sprp(m, M::W::TWO) && extra_strong_lucas(m);
            assert_eq!(bpsw(m), want, "{:?}", m.n());
        }
        // Base-2 strong pseudoprimes (the Lucas half must reject them),
        // Lucas pseudoprimes, and random odd non-squares of each word size
        // (primes among them).
        let lucas = [
            5777u64, 10877, 27971, 29681, 30739, 31631, 39059, 72389, 73919, 75077,
        ];
        for n in SPSP2_BELOW_2_32.iter().map(|&n| u64::from(n)).chain(lucas) {
            if n > small::LIMIT as u64 {
                check(&Mont64::new(n));
            }
        }
        let mut rng = fastrand::Rng::with_seed(11);
        for i in 0..20_000u32 {
            let n = rng.u64(small::LIMIT as u64..) >> (i % 40) | 1;
            let r = n.isqrt();
            if n > small::LIMIT as u64 && r * r != n {
                check(&Mont64::new(n));
                if n < 1 << 50 {
                    check(&ModF64::new(n));
                }
            }
            let n = rng.u128(1 << 64..) >> (i % 60) | 1;
            let r = n.isqrt();
            if r * r != n {
                check(&Mont128::new(n));
                if n >> 96 == 0 {
                    check(&Mont96::new(n));
                }
                if n >> 120 == 0 {
                    check(&Mont120::new(n));
                }
                if n >> 90 == 0 {
                    check(&Mont90::new(n));
                }
            }
        }
    }

    /// Extra strong Lucas pseudoprimes (OEIS A217719): composites the Lucas
    /// half alone lets through, which base 2 then rejects. That this
    /// implementation lets exactly these through (and no other odd n in the
    /// range) checks it is the textbook test.
    #[cfg_attr(not(target_arch = "wasm32"), test)]
    #[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
    fn extra_strong_lucas_pseudoprimes_are_the_known_ones() {
        let known = [
            5777u64, 10877, 27971, 29681, 30739, 31631, 39059, 72389, 73919, 75077,
        ];
        let through: Vec<u64> = (small::LIMIT as u64 + 1..=75077)
            .step_by(2)
            .filter(|&n| {
                let r = n.isqrt();
                r * r != n && !is_prime(n.into()) && extra_strong_lucas(&Mont64::new(n))
            })
            .collect();
        assert_eq!(through, known);
    }

    /// Regenerates the pseudoprime list from scratch: every odd n < 2^32 that
    /// passes base 2 but fails base 7 or 61 (bases 2, 7, 61 together are exact
    /// below 4,759,123,141). Writes the list to `$SPSP2_OUT` if set.
    /// `cargo test --release -p crowdfactor-factor spsp2_table_is_complete -- --ignored`
    #[cfg(not(target_arch = "wasm32"))]
    #[test]
    #[ignore = "about a minute in release"]
    fn spsp2_table_is_complete() {
        let threads = std::thread::available_parallelism().map_or(2, |n| n.get()) as u64;
        let span = (1u64 << 32) / threads;
        let found: Vec<u32> = std::thread::scope(|s| {
            let parts: Vec<_> = (0..threads)
                .map(|t| {
                    s.spawn(move || {
                        let mut out = vec![];
                        let lo = (t * span).max(63) | 1;
                        let hi = if t + 1 == threads {
                            1 << 32
                        } else {
                            (t + 1) * span
                        };
                        for n in (lo..hi).step_by(2) {
                            let m = Mont64::new(n);
                            if sprp(&m, 2) && !(sprp(&m, 7) && sprp(&m, 61)) {
                                out.push(n as u32);
                            }
                        }
                        out
                    })
                })
                .collect();
            parts
                .into_iter()
                .flat_map(|p| p.join().expect("generator thread"))
                .collect()
        });
        if let Ok(path) = std::env::var("SPSP2_OUT") {
            let body: Vec<String> = found.iter().map(u32::to_string).collect();
            std::fs::write(path, format!("[\n{},\n]\n", body.join(",\n"))).expect("write");
        }
        assert_eq!(found.len(), 2314, "A001262 has 2314 terms below 2^32");
        assert_eq!(found, SPSP2_BELOW_2_32);
    }

    #[cfg_attr(not(target_arch = "wasm32"), test)]
    #[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
    fn jacobi_small() {
        // (a/n) table checks
        assert_eq!(jacobi(5, 3), -1);
        assert_eq!(jacobi(5, 11), 1);
        assert_eq!(jacobi(-7, 15), 1); // (-7/3)(-7/5) = (2/3)(3/5) = (-1)(-1)
        assert_eq!(jacobi(9, 15), 0);
        let mut rng = fastrand::Rng::with_seed(9);
        for _ in 0..10_000 {
            let n = rng.u64(..) | 1;
            let a = rng.i64(-1000..1000);
            assert_eq!(jacobi_in(a, n), jacobi_in(a, u128::from(n)), "({a}/{n})");
        }
    }

    #[cfg_attr(not(target_arch = "wasm32"), test)]
    #[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
    fn agrees_with_naive_below_two_million() {
        for n in 0..2_000_000u64 {
            assert_eq!(is_prime_u64(n), naive(n), "n={n}");
        }
    }

    #[cfg_attr(not(target_arch = "wasm32"), test)]
    #[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
    fn strong_pseudoprimes_and_carmichaels_are_composite() {
        for n in [
            2047u128,                  // spsp(2)
            3215031751,                // spsp(2,3,5,7)
            2152302898747,             // spsp(2,3,5,7,11)
            3474749660383,             // spsp to bases 2..13
            341550071728321,           // spsp to bases 2..17
            3825123056546413051,       // spsp to bases 2..23
            318665857834031151167461,  // spsp to bases 2..37
            3317044064679887385961981, // spsp to bases 2..41
            561,
            41041,
            825265,
            321197185,
            5394826801,
            232250619601,
            9746347772161,
            1436697831295441,
            60977817398996785,
            7156857700403137441,
            1791562810662585767521,
            87674969936234821377601,
            6553130926752006031481761,
            1590231231043178376951698401,
            // Lucas pseudoprimes (Selfridge) must still fail MR base 2.
            5459,
            5777,
            10877,
            16109,
            18971,
        ] {
            assert!(!is_prime(n), "{n} is composite");
        }
    }

    #[cfg_attr(not(target_arch = "wasm32"), test)]
    #[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
    fn primes_near_powers_of_two() {
        for (n, want) in [
            ((1u128 << 32) - 5, true),
            ((1u128 << 32) + 15, true),
            ((1u128 << 32) + 1, false),
            ((1u128 << 64) - 59, true),
            ((1u128 << 64) + 13, true),
            ((1u128 << 64) - 1, false),
            (u128::MAX - 158, true), // 2^128 − 159
            (u128::MAX, false),
            ((1u128 << 127) - 1, true), // Mersenne M127
            ((1u128 << 89) - 1, true),
            ((1u128 << 61) - 1, true),
        ] {
            assert_eq!(is_prime(n), want, "{n}");
        }
    }

    #[cfg_attr(not(target_arch = "wasm32"), test)]
    #[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
    fn squares_of_primes_are_composite() {
        for p in [4093u128, 65521, 4294967291, 18446744073709551557] {
            assert!(is_prime(p));
            assert!(!is_prime(p * p), "{p}^2");
        }
    }
}
