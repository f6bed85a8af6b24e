//! Exact factorization of integers below 2^128.
//!
//! Pure Rust, no I/O, no threads, no allocation besides the returned vector
//! (and, once per process, a 256 KiB bitmap of primes below 2^22 that ECM and
//! `is_prime` share); the same source builds for native targets and
//! `wasm32-unknown-unknown`.
//!
//! Pipeline for one number: strip powers of two; trial division by the odd
//! primes below 1024 (a u64) or 4096 (larger) using multiplication by
//! precomputed inverses (no division instruction); then every remaining
//! cofactor is tested for primality (base-2 strong test plus a pseudoprime
//! table below 2^32, BPSW above) and composites are split with perfect-power
//! checks, Pollard–Brent rho and ECM in half-word (`u32`, moduli below 2^32),
//! one-word (`u64`) or two-word (`u128`) Montgomery arithmetic.
//!
//! [`verify`] checks one claimed factorization (one primality test per
//! distinct factor); [`verify_progression`] checks a whole arithmetic
//! progression's at once, with a sieve instead of the primality tests where
//! that is cheaper (a coordinator's range chunks).
//!
//! ```
//! use crowdfactor_factor::{factor, verify};
//! let f = factor(999_999_999_999);
//! assert_eq!(f, vec![3, 3, 3, 7, 11, 13, 37, 101, 9901]);
//! assert!(verify(999_999_999_999, &f).is_ok());
//! ```

mod arith;
mod ecm;
mod field;
/// Which Lucas chain (PRAC) ECM's stage 1 uses for each prime: the rules,
/// their costs and the choice of the cheapest starting ratio. Shared with
/// the build script (`include!`d there), which makes the table of choices
/// for every stage-1 prime (up to `RATIO_BOUND`) at build time: choosing costs
/// ten trial chains per prime, which the curves paid again and again beyond
/// a small run-time table (a quarter of the time of 64+64-bit semiprimes).
/// Integer code apart from one rounding of a product of two doubles, which
/// IEEE 754 makes the same on every target: the table built on the build
/// machine is the one the code would choose on the target.
mod prac;
mod prime;
mod progression;
mod rho;
mod small;

use arith::{ModF64, ModF64Lazy, Mont32, Mont32Lazy, Mont64, Mont64Lazy, Word};
use prime::Expect;
pub use prime::{is_prime, is_prime_u64};
pub use progression::{
    as_progression, factor_progression, factor_progression_resuming, progression_is_sieved,
    verify_progression, verify_progression_resuming, verify_progression_without_largest,
    SieveResume,
};

/// Builds the engine's lookup tables and runs its methods once, so that the
/// first number a worker factors does not pay for them: ~10 ms natively, and
/// ~45 ms as wasm, where the browser also compiles each function on its first
/// call. Workers call it while they connect. Cheap after the first call.
pub fn warm_up() {
    ecm::warm_up();
    // 2^64 + 1 (two words), a 60-bit and a 92-bit semiprime.
    for n in [
        (1u128 << 64) + 1,
        1_000_000_007 * 1_000_000_009,
        ((1 << 61) - 1) * ((1 << 31) - 1),
    ] {
        let mut out = Vec::new();
        factor_into(std::hint::black_box(n), &mut out);
        std::hint::black_box(out);
    }
}

/// The prime factors of `n`, ascending, with multiplicity.
/// `factor(0)` and `factor(1)` are empty (as GNU `factor` prints `0:` and `1:`).
pub fn factor(n: u128) -> Vec<u128> {
    let mut out = Vec::new();
    factor_into(n, &mut out);
    out
}

/// The prime factors of a 64-bit `n`, ascending, with multiplicity.
pub fn factor_u64(n: u64) -> Vec<u64> {
    let mut out = Vec::new();
    factor_u64_into(n, &mut out);
    out
}

/// Appends the prime factors of `n` (ascending) to `out`, so a caller can
/// reuse one buffer for many numbers.
pub fn factor_into(n: u128, out: &mut Vec<u128>) {
    if n <= u64::MAX as u128 {
        return factor_u64_into(n as u64, out);
    }
    let start = out.len();
    let tz = n.trailing_zeros();
    out.extend(core::iter::repeat_n(2, tz as usize));
    let mut n = n >> tz;
    for d in &small::ODD_PRIMES {
        if n <= u64::MAX as u128 {
            break;
        }
        while n.wrapping_mul(d.inv128) <= d.lim128 {
            n = n.wrapping_mul(d.inv128);
            out.push(d.p.into());
        }
    }
    if n <= u64::MAX as u128 {
        factor_u64_into(n as u64, out);
    } else {
        split_u128(n, out, Expect::Either);
    }
    out[start..].sort_unstable();
}

/// Appends the prime factors of a 64-bit `n` (ascending) to `out`.
pub fn factor_u64_into<T: From<u64> + Ord>(n: u64, out: &mut Vec<T>) {
    if n < 2 {
        return;
    }
    let start = out.len();
    let tz = n.trailing_zeros();
    for _ in 0..tz {
        out.push(2.into());
    }
    let mut n = n >> tz;
    // Eight primes at a time: one test whether any divides (independent
    // multiplications, no branch per prime), the slow path only on a hit.
    const BLOCK: usize = 8;
    let mut i = 0;
    while i < TD64_ODD {
        let p = u64::from(small::ODD_PRIMES[i].p);
        if p * p > n {
            break;
        }
        let end = (i + BLOCK).min(TD64_ODD);
        let block = &small::ODD64[i..end];
        if block
            .iter()
            .fold(false, |hit, d| hit | (n.wrapping_mul(d.inv) <= d.lim))
        {
            for (k, d) in block.iter().enumerate() {
                while n.wrapping_mul(d.inv) <= d.lim {
                    n = n.wrapping_mul(d.inv);
                    out.push(u64::from(small::ODD_PRIMES[i + k].p).into());
                }
            }
        }
        i = end;
    }
    if n > 1 {
        split_u64(n, out, TD64_SQ, Expect::Either);
    }
    out[start..].sort_unstable();
}

/// Factors an odd n > 1 with no prime factor below √`sq` (so n < `sq` is
/// prime), where √`sq` is where trial division stopped.
fn split_u64<T: From<u64>>(n: u64, out: &mut Vec<T>, sq: u64, expect: Expect) {
    if n < sq || prime::is_prime_odd_u64_exact(n, expect) {
        out.push(n.into());
        return;
    }
    let r = n.isqrt();
    if r * r == n {
        split_u64(r, out, sq, Expect::Prime);
        split_u64(r, out, sq, Expect::Prime);
        return;
    }
    // Lazy reduction where n leaves room for it (below a quarter of R).
    let d = match u32::try_from(n) {
        Ok(n) if n < 1 << 30 => u64::from(find_factor(&Mont32Lazy::new(n))),
        Ok(n) => u64::from(find_factor(&Mont32::new(n))),
        Err(_) if cfg!(narrow_mul) && n < 1 << 48 => find_factor(&ModF64Lazy::new(n)),
        Err(_) if cfg!(narrow_mul) && n < 1 << 50 => find_factor(&ModF64::new(n)),
        Err(_) if n < 1 << 62 => find_factor(&Mont64Lazy::new(n)),
        Err(_) => find_factor(&Mont64::new(n)),
    };
    split_u64(d, out, sq, Expect::Prime);
    split_u64(n / d, out, sq, Expect::Prime);
}

/// Factors an odd n > 1 with no prime factor below `small::LIMIT`.
fn split_u128(n: u128, out: &mut Vec<u128>, expect: Expect) {
    if n <= u64::MAX as u128 {
        return split_u64(n as u64, out, small::LIMIT_SQ, expect);
    }
    if prime::is_prime_odd_u128(n, expect) {
        out.push(n);
        return;
    }
    let r = n.isqrt();
    if r * r == n {
        split_u128(r, out, Expect::Prime);
        split_u128(r, out, Expect::Prime);
        return;
    }
    if let Some(c) = icbrt_exact(n) {
        for _ in 0..3 {
            split_u128(c, out, Expect::Prime);
        }
        return;
    }
    // Lazy reduction where n leaves room for it (below a quarter of R): no
    // comparison and correction after each product, one step less on rho's
    // and ECM's chains (README, "Engine speed"). On wasm32 each lazy digit
    // form up to its room, chosen as measured against its neighbours under
    // node: three 30-bit digits below 2^88, three 32-bit ones below 2^94,
    // four 30-bit ones below 2^118 (3–5 % faster than three 32-bit digits
    // reduced exactly from 2^94), four 32-bit ones below 2^126; the exact
    // forms of `with_two_word_monty` in the gaps. ECM's curves run in signed
    // 29-bit digits instead (`field::Digits`) below 2^83 (three) and from
    // 2^94 to 2^112 (four), where that measured faster under node and in
    // Chromium.
    let narrow = cfg!(narrow_mul);
    let d = match n.ilog2() {
        ..83 if narrow => find_factor_in_digits::<_, 3>(&arith::Mont90Lazy::new(n)),
        ..88 if narrow => find_factor(&arith::Mont90Lazy::new(n)),
        ..94 if narrow => find_factor(&arith::Mont96Lazy::new(n)),
        ..112 if narrow => find_factor_in_digits::<_, 4>(&arith::Mont120Lazy::new(n)),
        ..118 if narrow => find_factor(&arith::Mont120Lazy::new(n)),
        120..126 if narrow => find_factor(&arith::Mont128Lazy::new(n)),
        ..126 if !narrow => find_factor(&arith::Mont128Lazy::new(n)),
        // 118..120 on wasm32; from 2^126 everywhere (lazy reduction needs
        // n < R/4).
        _ if narrow && n >> 120 == 0 => find_factor(&arith::Mont120::new(n)),
        _ => find_factor(&arith::Mont128::new(n)),
    };
    split_u128(d, out, Expect::Prime);
    split_u128(n / d, out, Expect::Prime);
}

/// Trial division of a u64 stops below this bound (the u128 path goes on to
/// `small::LIMIT`): past it, Pollard rho finds the rare factor in a few dozen
/// steps for less than dividing by the remaining primes costs every number
/// (measured on 999999999999 + 2i: 1.50–1.55 µs against 1.61–1.62 µs with
/// 4096).
const TD64_BOUND: usize = 1 << 10;
const TD64_ODD: usize = small::count_odd_primes(TD64_BOUND);
const TD64_SQ: u64 = (TD64_BOUND * TD64_BOUND) as u64;

/// Rho iterations tried before switching to ECM. Below 2^44 every factor has
/// at most 22 bits and rho (about 2^(bits/2) steps) beats a first ECM curve;
/// above, a factor rho finds in a few hundred steps is the exception, and
/// the steps spent before giving up cost more than they save (measured:
/// 4096 steps doubled the time for 64-bit semiprimes).
const RHO_BUDGET: u64 = 1 << 12;
const RHO_BUDGET_LARGE: u64 = 1 << 6;
const RHO_FULL_BITS: u32 = 44;

/// A non-trivial factor of the odd composite `m.n()`, which is neither a
/// square nor a cube and has no prime factor below `small::LIMIT`.
fn find_factor<M: arith::Monty>(m: &M) -> M::W {
    rho::brent(m, rho_budget(m)).unwrap_or_else(|| ecm::find_factor(m))
}

/// [`find_factor`] with ECM's curves in L signed digits ([`field::Digits`]).
fn find_factor_in_digits<M: arith::Monty<W = u128>, const L: usize>(m: &M) -> u128 {
    rho::brent(m, rho_budget(m))
        .unwrap_or_else(|| ecm::find_factor_in(m, &field::Digits::<L>::new(m)))
}

fn rho_budget<M: arith::Monty>(m: &M) -> u64 {
    if M::W::BITS - m.n().lz() <= RHO_FULL_BITS {
        RHO_BUDGET
    } else {
        RHO_BUDGET_LARGE
    }
}

/// The integer cube root of n if n is a perfect cube.
fn icbrt_exact(n: u128) -> Option<u128> {
    // f64 is accurate to far better than ±1 for cube roots below 2^43.
    let r = (n as f64).cbrt().round() as u128;
    (r.saturating_sub(1)..=r + 1).find(|&c| c.checked_pow(3) == Some(n))
}

/// Why a claimed factorization is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    /// 0 has no prime factorization.
    #[error("0 has no prime factorization")]
    Zero,
    /// The factors are not in ascending order.
    #[error("factors are not in ascending order")]
    NotSorted,
    /// The product of the factors does not fit below 2^128.
    #[error("the product of the factors exceeds 2^128")]
    Overflow,
    /// The product of the factors is not n.
    #[error("the product of the factors is {product}, not {n}")]
    WrongProduct {
        /// The number.
        n: u128,
        /// What the factors multiply to.
        product: u128,
    },
    /// A factor is not prime.
    #[error("{0} is not prime")]
    NotPrime(u128),
    /// The factors listed (all but the largest, left for the reader to
    /// restore) multiply to a number that does not divide n.
    #[error("the product of the factors is {product}, which does not divide {n}")]
    NotADivisor {
        /// The number.
        n: u128,
        /// What the listed factors multiply to.
        product: u128,
    },
}

/// Checks that `factors` is the prime factorization of `n`: ascending, their
/// product is `n`, and each is prime. Costs one primality test per distinct
/// factor, far less than factoring.
pub fn verify(n: u128, factors: &[u128]) -> Result<(), VerifyError> {
    if n == 0 {
        return Err(VerifyError::Zero);
    }
    if factors.windows(2).any(|w| w[0] > w[1]) {
        return Err(VerifyError::NotSorted);
    }
    // Below 2^64 (most results) the product is first tried in u64 arithmetic.
    let narrow = || {
        factors
            .iter()
            .try_fold(1u64, |acc, &f| acc.checked_mul(u64::try_from(f).ok()?))
    };
    let product = match (n <= u64::MAX as u128).then(narrow).flatten() {
        Some(p) => u128::from(p),
        None => factors
            .iter()
            .try_fold(1u128, |acc, &f| acc.checked_mul(f))
            .ok_or(VerifyError::Overflow)?,
    };
    if product != n {
        return Err(VerifyError::WrongProduct { n, product });
    }
    all_prime(factors)
}

/// Whether each of `factors` (ascending) is prime; equal neighbours are
/// tested once.
fn all_prime(factors: &[u128]) -> Result<(), VerifyError> {
    let mut last = 0;
    for &f in factors {
        if f != last && !is_prime(f) {
            return Err(VerifyError::NotPrime(f));
        }
        last = f;
    }
    Ok(())
}

/// [`verify`] for a factorization written without its largest factor, as
/// workers send them from protocol 5 on: `listed` is the rest, ascending,
/// and the largest is n divided by their product (none when that quotient
/// is 1, as for n = 1). Checks that the product divides n, that the
/// quotient is at least the last listed factor, and that every factor is
/// prime.
///
/// ```
/// use crowdfactor_factor::{verify_without_largest, VerifyError};
/// assert!(verify_without_largest(12, &[2, 2]).is_ok()); // 12 = 2·2·3
/// assert!(verify_without_largest(13, &[]).is_ok());
/// assert_eq!(verify_without_largest(12, &[2]), Err(VerifyError::NotPrime(6)));
/// assert_eq!(
///     verify_without_largest(12, &[5]),
///     Err(VerifyError::NotADivisor { n: 12, product: 5 })
/// );
/// ```
pub fn verify_without_largest(n: u128, listed: &[u128]) -> Result<(), VerifyError> {
    let largest = largest_left_out(n, listed)?;
    if listed
        .last()
        .is_some_and(|&l| largest.is_some_and(|g| g < l))
    {
        return Err(VerifyError::NotSorted);
    }
    all_prime(listed)?;
    match largest {
        Some(g) if listed.last() != Some(&g) && !is_prime(g) => Err(VerifyError::NotPrime(g)),
        _ => Ok(()),
    }
}

/// The factor a list written without its largest one leaves out: n divided
/// by the product of `listed`, `None` when that is 1. An error if the
/// product does not divide n (or n is 0, or the list is out of order).
pub fn largest_left_out(n: u128, listed: &[u128]) -> Result<Option<u128>, VerifyError> {
    if n == 0 {
        return Err(VerifyError::Zero);
    }
    if listed.windows(2).any(|w| w[0] > w[1]) {
        return Err(VerifyError::NotSorted);
    }
    let product = listed
        .iter()
        .try_fold(1u128, |acc, &f| acc.checked_mul(f))
        .ok_or(VerifyError::Overflow)?;
    let not_divisor = VerifyError::NotADivisor { n, product };
    // Below 2^64 (most numbers) in u64 arithmetic: a u128 division is a
    // library call.
    let quotient = match (u64::try_from(n), u64::try_from(product)) {
        (Ok(n64), Ok(p64)) if p64 != 0 && n64 % p64 == 0 => u128::from(n64 / p64),
        (Ok(_), _) => return Err(not_divisor),
        _ if product != 0 && n.is_multiple_of(product) => n / product,
        _ => return Err(not_divisor),
    };
    Ok((quotient > 1).then_some(quotient))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naive(mut n: u64) -> Vec<u64> {
        let mut out = vec![];
        let mut d = 2;
        while d * d <= n {
            while n.is_multiple_of(d) {
                out.push(d);
                n /= d;
            }
            d += 1;
        }
        if n > 1 {
            out.push(n);
        }
        out
    }

    #[cfg_attr(not(target_arch = "wasm32"), test)]
    #[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
    fn small_numbers_match_naive() {
        for n in 1..200_000u64 {
            assert_eq!(factor_u64(n), naive(n), "n={n}");
        }
        assert!(factor(0).is_empty());
        assert!(factor(1).is_empty());
        assert_eq!(factor(2), vec![2]);
    }

    #[cfg_attr(not(target_arch = "wasm32"), test)]
    #[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
    fn random_u64_multiply_back_and_are_prime() {
        let mut rng = fastrand::Rng::with_seed(7);
        for _ in 0..20_000 {
            let n = (rng.u64(1..) >> rng.u32(0..63)).max(1);
            let f = factor(n as u128);
            assert_eq!(verify(n as u128, &f), Ok(()), "n={n} f={f:?}");
        }
    }

    #[cfg_attr(not(target_arch = "wasm32"), test)]
    #[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
    fn random_u128_up_to_96_bits_verify() {
        let mut rng = fastrand::Rng::with_seed(8);
        for _ in 0..2_000 {
            let n = (rng.u128(1..) >> rng.u32(32..127)).max(1);
            let f = factor(n);
            assert_eq!(verify(n, &f), Ok(()), "n={n} f={f:?}");
        }
    }

    #[cfg_attr(not(target_arch = "wasm32"), test)]
    #[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
    fn edge_cases() {
        let p64 = 18446744073709551557u128; // largest prime below 2^64
        let p32 = 4294967291u128; // largest prime below 2^32
        let cases: Vec<(u128, Vec<u128>)> = vec![
            (
                u128::MAX,
                vec![3, 5, 17, 257, 641, 65537, 274177, 6700417, 67280421310721],
            ),
            (1 << 127, vec![2; 127]),
            (p64 * p64, vec![p64, p64]),
            (p32 * p32 * p32, vec![p32, p32, p32]),
            (p32 * p32, vec![p32, p32]),
            (4099 * 4111, vec![4099, 4111]), // just above the trial-division bound
            // Just above and below where trial division of a u64 stops (1024).
            (1031 * 1033, vec![1031, 1033]),
            (1031 * 1031, vec![1031, 1031]),
            (1021 * 1031 * 1031 * 1033, vec![1021, 1031, 1031, 1033]),
            (1031 * p32, vec![1031, p32]),
            (1031 * 4099 * p32, vec![1031, 4099, p32]),
            (4099u128 * 4099 * 4099 * 4111, vec![4099, 4099, 4099, 4111]),
            ((1 << 64) + 13, vec![(1 << 64) + 13]),
            (u64::MAX as u128, vec![3, 5, 17, 257, 641, 65537, 6700417]),
            (999_999_999_999, vec![3, 3, 3, 7, 11, 13, 37, 101, 9901]),
        ];
        for (n, want) in cases {
            assert_eq!(factor(n), want, "n={n}");
        }
    }

    #[cfg_attr(not(target_arch = "wasm32"), test)]
    #[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
    fn semiprimes_of_40_bit_primes() {
        let mut rng = fastrand::Rng::with_seed(9);
        let mut prime = |bits: u32| loop {
            let c = rng.u128((1 << (bits - 1))..(1 << bits)) | 1;
            if is_prime(c) {
                return c;
            }
        };
        for _ in 0..3 {
            let (p, q) = (prime(40), prime(40));
            let mut want = vec![p, q];
            want.sort();
            assert_eq!(factor(p * q), want);
        }
    }

    /// A 28-bit prime times a large one, in each range of sizes that
    /// `split_u128` gives a Montgomery form (or digit field) of its own, on
    /// wasm32 as natively: 83-, 86-, 92-, 100-, 115-, 119-, 124- and 127-bit
    /// products.
    #[cfg_attr(not(target_arch = "wasm32"), test)]
    #[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
    fn a_small_factor_of_every_two_word_size() {
        let mut rng = fastrand::Rng::with_seed(23);
        let mut prime = |lo: u128, hi: u128| loop {
            let c = rng.u128(lo..hi) | 1;
            if is_prime(c) {
                return c;
            }
        };
        for bits in [83u32, 86, 92, 100, 115, 119, 124, 127] {
            let p = prime(1 << 27, 1 << 28);
            // p·q has exactly `bits` bits.
            let q = prime((1 << (bits - 1)) / p + 1, (1 << bits) / p);
            assert_eq!((p * q).ilog2(), bits - 1);
            assert_eq!(factor(p * q), vec![p, q], "{p}·{q}");
        }
    }

    #[cfg_attr(not(target_arch = "wasm32"), test)]
    #[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
    fn verify_rejects_wrong_factorizations() {
        assert_eq!(verify(12, &[2, 2, 3]), Ok(()));
        assert_eq!(verify(1, &[]), Ok(()));
        assert_eq!(verify(0, &[]), Err(VerifyError::Zero));
        assert_eq!(verify(12, &[2, 3, 2]), Err(VerifyError::NotSorted));
        assert_eq!(verify(12, &[3, 4]), Err(VerifyError::NotPrime(4)));
        assert_eq!(
            verify(12, &[2, 2, 2]),
            Err(VerifyError::WrongProduct { n: 12, product: 8 })
        );
        assert_eq!(
            verify(12, &[1 << 100, 1 << 100]),
            Err(VerifyError::Overflow)
        );
        assert_eq!(
            verify(12, &[1 << 40, 1 << 40]),
            Err(VerifyError::WrongProduct {
                n: 12,
                product: 1 << 80
            })
        );
        assert_eq!(
            verify(5, &[]),
            Err(VerifyError::WrongProduct { n: 5, product: 1 })
        );
    }

    /// A list without its largest factor is right exactly when the list
    /// with it restored (n over the product, if above 1) is; a product that
    /// does not divide n is named.
    #[cfg_attr(not(target_arch = "wasm32"), test)]
    #[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
    fn verify_without_largest_agrees_with_verify() {
        let mut rng = fastrand::Rng::with_seed(5);
        let big_prime = (1u128 << 127) - 1;
        let mut numbers: Vec<u128> = vec![1, 2, 3, 4, 12, 97, 1 << 64, big_prime, 2 * big_prime];
        numbers.extend((0..300).map(|_| {
            let bits = rng.u32(2..100);
            rng.u128(1..1 << bits)
        }));
        for n in numbers {
            let whole = factor(n);
            let short = &whole[..whole.len().saturating_sub(1)];
            assert_eq!(verify_without_largest(n, short), Ok(()), "{n} as {short:?}");
            // Wrong ones: a factor dropped (the restored one is composite),
            // one too many, 1 added, the largest kept in the list.
            let mut wrongs: Vec<Vec<u128>> = vec![vec![1], [&[1], short].concat()];
            if let Some((_, rest)) = short.split_first() {
                wrongs.push(rest.to_vec());
            }
            wrongs.push([short, &[3, 3]].concat());
            wrongs.push(whole.clone());
            for w in wrongs {
                let restored = match largest_left_out(n, &w) {
                    Ok(largest) => {
                        let mut r = w.clone();
                        r.extend(largest);
                        verify(n, &r)
                    }
                    Err(e) => Err(e),
                };
                assert_eq!(verify_without_largest(n, &w), restored, "{n} as {w:?}");
            }
        }
        assert_eq!(verify_without_largest(1, &[]), Ok(()));
        assert_eq!(verify_without_largest(0, &[]), Err(VerifyError::Zero));
        assert_eq!(
            verify_without_largest(12, &[2]),
            Err(VerifyError::NotPrime(6))
        );
        assert_eq!(
            verify_without_largest(12, &[3, 2]),
            Err(VerifyError::NotSorted)
        );
        // 75 = 3·5·5: 3 restored after the 5s is out of order.
        assert_eq!(
            verify_without_largest(75, &[5, 5]),
            Err(VerifyError::NotSorted)
        );
        assert_eq!(
            verify_without_largest(75, &[5]),
            Err(VerifyError::NotPrime(15))
        );
        assert_eq!(
            verify_without_largest(12, &[5]),
            Err(VerifyError::NotADivisor { n: 12, product: 5 })
        );
        assert_eq!(
            verify_without_largest(big_prime, &[1 << 100]),
            Err(VerifyError::NotADivisor {
                n: big_prime,
                product: 1 << 100
            })
        );
        assert_eq!(
            verify_without_largest(12, &[1 << 100, 1 << 100]),
            Err(VerifyError::Overflow)
        );
        assert!(verify_without_largest(12, &[0]).is_err());
    }
}

// The unit tests above also run in headless Chromium, in a dedicated worker
// like the volunteer page: `cargo test -p crowdfactor-factor --target wasm32-unknown-unknown`.
#[cfg(all(test, target_arch = "wasm32"))]
wasm_bindgen_test::wasm_bindgen_test_configure!(run_in_dedicated_worker);
