//! `crowdfactor-worker factor` on numbers from 2^128 up, which GNU `factor`
//! takes too (it is built with GMP): the engine stops below 2^128, so here
//! the primes below 2^16 are divided out, perfect powers taken apart, and
//! what is left split by Pollard–Brent rho and then ECM in multi-word
//! Montgomery arithmetic (GNU has rho only: a 64-bit factor of a 164-bit
//! number takes it minutes, ECM ~1 s). Each part below 2^128 goes to the
//! engine; a part above is called prime after BPSW (a strong test to base 2
//! and a strong Lucas test), as the engine does (GNU proves it prime by
//! factoring p − 1, which can take long too).

use num_bigint::BigUint;
use num_integer::Integer;
use num_traits::{One, ToPrimitive, Zero};

/// The prime factors of `n`, ascending, with multiplicity (none for 0 or 1).
pub fn factor(n: &BigUint) -> Vec<BigUint> {
    let mut primes = Vec::new();
    let mut rest = n.clone();
    if rest.is_zero() {
        return primes;
    }
    let twos = rest.trailing_zeros().unwrap_or(0);
    rest >>= twos;
    primes.extend((0..twos).map(|_| BigUint::from(2u32)));
    // Trial division once, while the rest is above 2^128 (below, the
    // engine's own needs no help): every part split off after it has only
    // factors above 2^16.
    for &p in odd_primes() {
        if rest.bits() <= 128 {
            break;
        }
        while (&rest % p).is_zero() {
            rest /= p;
            primes.push(BigUint::from(p));
        }
    }
    let mut parts = vec![rest];
    while let Some(m) = parts.pop() {
        if let Some(small) = m.to_u128() {
            primes.extend(
                crowdfactor_factor::factor(small)
                    .into_iter()
                    .map(BigUint::from),
            );
        } else if let Some((root, k)) = perfect_power(&m) {
            parts.extend(std::iter::repeat_n(root, k));
        } else if probable_prime(&m) {
            primes.push(m);
        } else {
            let d = split(&m);
            parts.push(&m / &d);
            parts.push(d);
        }
    }
    primes.sort_unstable();
    primes
}

/// The odd primes below 2^16.
fn odd_primes() -> &'static [u64] {
    static ODD_PRIMES: std::sync::OnceLock<Vec<u64>> = std::sync::OnceLock::new();
    ODD_PRIMES.get_or_init(|| primes_to((1 << 16) - 1).split_off(1))
}

/// `m` as `root^k` with `k` > 1 as large as it goes, if it is a perfect power.
/// `m` has no factor below 2^16, so `k` < bits / 16.
fn perfect_power(m: &BigUint) -> Option<(BigUint, usize)> {
    let bits = m.bits();
    // Each prime exponent in turn, on the root found so far: 2^6 is (2^3)^2.
    let mut k = 2u32;
    let mut base = m.clone();
    let mut power = 1usize;
    while u64::from(k) * 16 <= bits {
        let root = base.nth_root(k);
        if root.pow(k) == base {
            base = root;
            power *= k as usize;
            continue; // the same exponent again
        }
        k += if k == 2 { 1 } else { 2 };
    }
    (power > 1).then_some((base, power))
}

/// BPSW for an odd `m` ≥ 2^128 with no factor below 2^16.
fn probable_prime(m: &BigUint) -> bool {
    strong_probable_prime_2(m) && strong_lucas(m)
}

/// The strong (Miller–Rabin) test to base 2.
fn strong_probable_prime_2(m: &BigUint) -> bool {
    let one = BigUint::one();
    let m1 = m - &one;
    let s = m1.trailing_zeros().unwrap_or(0);
    let mut x = BigUint::from(2u32).modpow(&(&m1 >> s), m);
    if x == one || x == m1 {
        return true;
    }
    for _ in 1..s {
        x = &x * &x % m;
        if x == m1 {
            return true;
        }
        if x == one {
            return false;
        }
    }
    false
}

/// The Jacobi symbol (a/m) for odd `m`.
fn jacobi(a: i64, m: &BigUint) -> i32 {
    // (−1/m) = (−1)^((m−1)/2)
    let m_mod8 = (m % 8u32).to_u32().unwrap_or(0);
    let mut sign = if a < 0 && m_mod8 % 4 == 3 { -1 } else { 1 };
    let mut a = a.unsigned_abs();
    let twos = a.trailing_zeros();
    a >>= twos;
    // (2/m) = −1 when m ≡ 3, 5 (mod 8)
    if twos % 2 == 1 && matches!(m_mod8, 3 | 5) {
        sign = -sign;
    }
    if a == 1 {
        return sign;
    }
    // Reciprocity for odd a: (a/m) = (m mod a / a), negated when both are 3 mod 4.
    if a % 4 == 3 && m_mod8 % 4 == 3 {
        sign = -sign;
    }
    let (mut x, mut y) = ((m % a).to_u64().unwrap_or(0), a);
    // The Jacobi symbol of two words, (x/y) for odd y.
    while x != 0 {
        let t = x.trailing_zeros();
        x >>= t;
        if t % 2 == 1 && matches!(y % 8, 3 | 5) {
            sign = -sign;
        }
        if x % 4 == 3 && y % 4 == 3 {
            sign = -sign;
        }
        (x, y) = (y % x, x);
    }
    if y == 1 {
        sign
    } else {
        0
    }
}

/// The strong Lucas test with Selfridge's parameters (method A): P = 1,
/// Q = (1 − D)/4 for the first D of 5, −7, 9, −11, … with (D/m) = −1.
fn strong_lucas(m: &BigUint) -> bool {
    let root = m.sqrt();
    if &root * &root == *m {
        return false; // no such D exists for a square
    }
    let mut d: i64 = 5;
    loop {
        match jacobi(d, m) {
            -1 => break,
            // m has the factor |d| (m is larger than any d tried).
            0 => return false,
            _ => d = if d > 0 { -(d + 2) } else { 2 - d },
        }
    }
    let q = (1 - d) / 4;
    let modular = |v: i64| {
        let magnitude = BigUint::from(v.unsigned_abs()) % m;
        if v < 0 && !magnitude.is_zero() {
            m - magnitude
        } else {
            magnitude
        }
    };
    let (d_mod, q_mod) = (modular(d), modular(q));
    let half = |x: BigUint| if x.is_odd() { (x + m) >> 1 } else { x >> 1 };
    // a − b mod m for a, b below m.
    let sub = |a: BigUint, b: &BigUint| if a >= *b { a - b } else { a + m - b };
    // m + 1 = k·2^s with k odd.
    let m1 = m + 1u32;
    let s = m1.trailing_zeros().unwrap_or(0);
    let k = &m1 >> s;
    // U_1 = 1, V_1 = P = 1, Q^1; then left to right over k's bits.
    let (mut u, mut v, mut qk) = (BigUint::one(), BigUint::one(), q_mod.clone());
    for bit in (0..k.bits() - 1).rev() {
        u = &u * &v % m;
        v = sub(&v * &v % m, &(&qk * 2u32 % m));
        qk = &qk * &qk % m;
        if k.bit(bit) {
            let (pu, pv) = (u, v);
            u = half((&pu + &pv) % m);
            v = half((&d_mod * &pu + &pv) % m);
            qk = &qk * &q_mod % m;
        }
    }
    if u.is_zero() || v.is_zero() {
        return true;
    }
    for _ in 1..s {
        v = sub(&v * &v % m, &(&qk * 2u32 % m));
        if v.is_zero() {
            return true;
        }
        qk = &qk * &qk % m;
    }
    false
}

/// A factor of the odd composite `m` (not a perfect power) other than 1 and
/// `m`: Pollard–Brent rho for the factors below ~2^34, then ECM with B1
/// rising (which GNU does not have: a 64-bit factor of a 164-bit number
/// takes it ~0.5 s instead of rho's minutes, a 70-bit one ~12 s).
fn split(m: &BigUint) -> BigUint {
    let ring = Montgomery::new(m);
    if let Some(d) = brent(&ring, 1, 1 << 17) {
        return d;
    }
    // (B1, curves) as GMP-ECM's table for factors of 15, 20, 25 and 30
    // digits, then the last level again until a curve finds one.
    const LEVELS: [(u64, u32); 5] = [
        (2_000, 25),
        (11_000, 90),
        (50_000, 300),
        (250_000, 700),
        (1_000_000, 1_800),
    ];
    let mut sigma = 6;
    for (level, &(b1, curves)) in LEVELS.iter().enumerate() {
        let primes = primes_to(b1);
        let last = level + 1 == LEVELS.len();
        for _ in 0..curves.saturating_mul(if last { u32::MAX } else { 1 }) {
            sigma += 1;
            if let Some(d) = ecm(&ring, sigma, b1, &primes) {
                return d;
            }
        }
    }
    // Reached after 2^32 curves at the last level only: rho without end.
    (2u64..)
        .find_map(|c| brent(&ring, c, u64::MAX))
        .unwrap_or_else(|| m.clone())
}

/// Stage 2 of [`ecm`] goes up to this many times B1.
const ECM_B2: u64 = 50;

/// The primes up to `limit`.
fn primes_to(limit: u64) -> Vec<u64> {
    let limit = usize::try_from(limit).unwrap_or(usize::MAX);
    let mut composite = vec![false; limit + 1];
    let mut primes = Vec::new();
    for i in 2..=limit {
        if !composite[i] {
            primes.push(i as u64);
            (i.saturating_mul(i)..=limit)
                .step_by(i)
                .for_each(|j| composite[j] = true);
        }
    }
    primes
}

/// A point (X : Z) of a Montgomery curve, in Montgomery form.
type Point = (Vec<u64>, Vec<u64>);

/// One ECM curve (Suyama's, from `sigma`) on `m`: stage 1 to `b1`, stage 2
/// to `ECM_B2`·`b1` over baby steps coprime to 210; a factor other than 1
/// and `m`, if the curve finds one. `primes` reach at least `b1`.
fn ecm(ring: &Montgomery, sigma: u64, b1: u64, primes: &[u64]) -> Option<BigUint> {
    let m = &ring.modulus;
    let proper = |g: BigUint| (!g.is_one() && g != *m).then_some(g);
    // u = σ² − 5, v = 4σ; x0 = u³, z0 = v³, (A + 2)/4 = (v − u)³(3u + v)/(16u³v).
    let sigma = BigUint::from(sigma);
    let (u, v) = (sigma.pow(2) - 5u32, 4u32 * sigma);
    let cube = |x: &BigUint| x.pow(3) % m;
    let diff = (&v + m - &u % m) % m;
    let numerator = cube(&diff) * (3u32 * &u + &v) % m;
    let denominator = 16u32 * cube(&u) * &v % m;
    let Some(inverse) = denominator.modinv(m) else {
        return proper(denominator.gcd(m));
    };
    let curve = Curve {
        ring,
        a24: ring.to_form(&(numerator * inverse % m)),
    };
    let mut q = (ring.to_form(&cube(&u)), ring.to_form(&cube(&v)));
    // Stage 1: each prime to the largest power up to b1.
    for &p in primes.iter().take_while(|&&p| p <= b1) {
        let mut power = p;
        while power * p <= b1 {
            power *= p;
        }
        q = curve.times(&q, power);
    }
    let g = from_limbs(&q.1).gcd(m);
    if !g.is_one() {
        return proper(g);
    }
    // Stage 2: a prime q·D ± j (j < D/2, coprime to D) is found by the
    // cross product of the giant step i·D·Q and the baby step j·Q.
    const D: u64 = 210;
    let double = curve.double(&q);
    let mut babies: Vec<Point> = vec![q.clone()];
    let (mut before, mut at) = (q.clone(), curve.add(&double, &q, &q)); // Q, 3Q
    for j in (3..D / 2).step_by(2) {
        if j % 3 != 0 && j % 5 != 0 && j % 7 != 0 {
            babies.push(at.clone());
        }
        let next = curve.add(&at, &double, &before);
        (before, at) = (at, next);
    }
    let giant = curve.times(&q, D);
    let first = (b1 / D).max(2);
    let (mut previous, mut current) =
        (curve.times(&q, (first - 1) * D), curve.times(&q, first * D));
    let mut product = ring.to_form(&BigUint::one());
    let end = b1 * ECM_B2;
    let mut i = first;
    while i * D < end + D {
        for baby in &babies {
            let cross = ring.sub(
                &ring.product(&current.0, &baby.1),
                &ring.product(&baby.0, &current.1),
            );
            product = ring.product(&product, &cross);
        }
        let next = curve.add(&current, &giant, &previous);
        (previous, current) = (current, next);
        i += 1;
    }
    proper(from_limbs(&product).gcd(m))
}

/// A Montgomery curve's x-only arithmetic, with (A + 2)/4 in Montgomery form.
struct Curve<'a> {
    ring: &'a Montgomery,
    a24: Vec<u64>,
}

impl Curve<'_> {
    /// 2P.
    fn double(&self, p: &Point) -> Point {
        let r = self.ring;
        let (sum, difference) = (r.add(&p.0, &p.1), r.sub(&p.0, &p.1));
        let (s2, d2) = (r.product(&sum, &sum), r.product(&difference, &difference));
        let t = r.sub(&s2, &d2); // 4XZ
        let z = r.product(&t, &r.add(&d2, &r.product(&self.a24, &t)));
        (r.product(&s2, &d2), z)
    }

    /// P + Q, given P − Q.
    fn add(&self, p: &Point, q: &Point, difference: &Point) -> Point {
        let r = self.ring;
        let u = r.product(&r.sub(&p.0, &p.1), &r.add(&q.0, &q.1));
        let v = r.product(&r.add(&p.0, &p.1), &r.sub(&q.0, &q.1));
        let (sum, diff) = (r.add(&u, &v), r.sub(&u, &v));
        (
            r.product(&difference.1, &r.product(&sum, &sum)),
            r.product(&difference.0, &r.product(&diff, &diff)),
        )
    }

    /// kP for k ≥ 1, by Montgomery's ladder.
    fn times(&self, p: &Point, k: u64) -> Point {
        let (mut low, mut high) = (p.clone(), self.double(p));
        for bit in (0..63 - k.leading_zeros()).rev() {
            if k >> bit & 1 == 1 {
                low = self.add(&high, &low, p);
                high = self.double(&high);
            } else {
                high = self.add(&high, &low, p);
                low = self.double(&low);
            }
        }
        low
    }
}

/// One run of Brent's cycle search with the constant `c`, its cycles up to
/// `limit` steps: a proper factor, or `None` when this `c` gives only `m`
/// itself or none within the limit. The values stay in
/// Montgomery form (x ↦ x²/R + c is as good a map), which leaves every
/// gcd with `m` as it is.
fn brent(ring: &Montgomery, c: u64, limit: u64) -> Option<BigUint> {
    const BATCH: u64 = 128;
    let n = ring.m.len();
    let mut y = vec![0; n];
    y[0] = 2;
    let (mut x, mut saved) = (y.clone(), y.clone());
    let mut product = vec![0; n];
    product[0] = 1;
    let (mut next, mut gap) = (vec![0; n], vec![0; n]);
    let (mut scratch, mut product_scratch) = (vec![0; n + 2], vec![0; n + 2]);
    let mut step = |y: &mut Vec<u64>, next: &mut Vec<u64>| {
        ring.mul(y, y, next, &mut scratch);
        ring.add_small(next, c);
        std::mem::swap(y, next);
    };
    let mut g = BigUint::one();
    let mut r = 1u64;
    while g.is_one() {
        if r > limit {
            return None;
        }
        x.copy_from_slice(&y);
        for _ in 0..r {
            step(&mut y, &mut next);
        }
        let mut done = 0;
        while done < r && g.is_one() {
            saved.copy_from_slice(&y);
            for _ in 0..BATCH.min(r - done) {
                step(&mut y, &mut next);
                distance(&x, &y, &mut gap);
                ring.mul(&product, &gap, &mut next, &mut product_scratch);
                std::mem::swap(&mut product, &mut next);
            }
            g = from_limbs(&product).gcd(&ring.modulus);
            done += BATCH;
        }
        r *= 2;
    }
    if g == ring.modulus {
        // The batch overshot (or the product hit 0): retrace it a step at a time.
        loop {
            step(&mut saved, &mut next);
            distance(&x, &saved, &mut gap);
            g = from_limbs(&gap).gcd(&ring.modulus);
            if !g.is_one() {
                break;
            }
        }
    }
    (g != ring.modulus).then_some(g)
}

/// Montgomery arithmetic modulo an odd `m` in its number of 64-bit limbs
/// (least significant first), R = 2^(64·limbs): without an allocation or a
/// division per product, rho's steps are ~10× those of [`BigUint`]'s.
struct Montgomery {
    modulus: BigUint,
    m: Vec<u64>,
    /// −1/m mod 2^64.
    inv: u64,
}

impl Montgomery {
    fn new(m: &BigUint) -> Self {
        let limbs = m.to_u64_digits();
        // Newton's iteration doubles the good low bits: 3 (m·m ≡ 1 mod 8) → 96.
        let mut inv = limbs[0];
        for _ in 0..5 {
            inv = inv.wrapping_mul(2u64.wrapping_sub(limbs[0].wrapping_mul(inv)));
        }
        Montgomery {
            modulus: m.clone(),
            m: limbs,
            inv: inv.wrapping_neg(),
        }
    }

    /// `out` = a·b/R mod m for a, b < m (CIOS); `t` has room for limbs + 2.
    fn mul(&self, a: &[u64], b: &[u64], out: &mut [u64], t: &mut [u64]) {
        // The common sizes with the length a constant, for the compiler to
        // unroll the loops and drop their bounds checks: ~2× on 3 limbs.
        match self.m.len() {
            3 => self.mul_of(3, a, b, out, t),
            4 => self.mul_of(4, a, b, out, t),
            n => self.mul_of(n, a, b, out, t),
        }
    }

    /// [`Montgomery::mul`] with `n` the length of m.
    #[inline(always)]
    fn mul_of(&self, n: usize, a: &[u64], b: &[u64], out: &mut [u64], t: &mut [u64]) {
        let (m, a, b, out, t) = (
            &self.m[..n],
            &a[..n],
            &b[..n],
            &mut out[..n],
            &mut t[..n + 2],
        );
        t.fill(0);
        let wide = |x: u64| u128::from(x);
        for &bi in b {
            let mut carry = 0;
            for j in 0..n {
                let s = wide(t[j]) + wide(a[j]) * wide(bi) + wide(carry);
                (t[j], carry) = (s as u64, (s >> 64) as u64);
            }
            let s = wide(t[n]) + wide(carry);
            (t[n], t[n + 1]) = (s as u64, (s >> 64) as u64);
            let q = t[0].wrapping_mul(self.inv);
            let mut carry = ((wide(t[0]) + wide(q) * wide(m[0])) >> 64) as u64;
            for j in 1..n {
                let s = wide(t[j]) + wide(q) * wide(m[j]) + wide(carry);
                (t[j - 1], carry) = (s as u64, (s >> 64) as u64);
            }
            let s = wide(t[n]) + wide(carry);
            t[n - 1] = s as u64;
            t[n] = t[n + 1] + (s >> 64) as u64;
        }
        // Below 2m: one subtraction at most.
        out.copy_from_slice(&t[..n]);
        if t[n] != 0 || !below(out, m) {
            subtract(out, m);
        }
    }

    /// a·b/R mod m, for a, b < m.
    fn product(&self, a: &[u64], b: &[u64]) -> Vec<u64> {
        let n = self.m.len();
        let (mut out, mut t) = (vec![0; n], vec![0; n + 2]);
        self.mul(a, b, &mut out, &mut t);
        out
    }

    /// a + b mod m, for a, b < m.
    fn add(&self, a: &[u64], b: &[u64]) -> Vec<u64> {
        let mut sum = a.to_vec();
        if add_into(&mut sum, b) || !below(&sum, &self.m) {
            subtract(&mut sum, &self.m);
        }
        sum
    }

    /// a − b mod m, for a, b < m.
    fn sub(&self, a: &[u64], b: &[u64]) -> Vec<u64> {
        let mut difference = a.to_vec();
        if below(a, b) {
            // a + m − b: the sum's carry out and the borrow cancel.
            add_into(&mut difference, &self.m);
        }
        subtract(&mut difference, b);
        difference
    }

    /// x·R mod m, for x < m: x in Montgomery form.
    fn to_form(&self, x: &BigUint) -> Vec<u64> {
        let n = self.m.len();
        let mut limbs = ((x << (64 * n)) % &self.modulus).to_u64_digits();
        limbs.resize(n, 0);
        limbs
    }

    /// `x` = x + c mod m, for x < m and c < m.
    fn add_small(&self, x: &mut [u64], c: u64) {
        let mut carry = c;
        for limb in x.iter_mut() {
            let (sum, over) = limb.overflowing_add(carry);
            *limb = sum;
            carry = u64::from(over);
        }
        if carry != 0 || !below(x, &self.m) {
            subtract(x, &self.m);
        }
    }
}

/// a += b modulo 2^(64·limbs); whether it carried out.
fn add_into(a: &mut [u64], b: &[u64]) -> bool {
    let mut carry = false;
    for (x, &y) in a.iter_mut().zip(b) {
        let (s1, o1) = x.overflowing_add(y);
        let (s2, o2) = s1.overflowing_add(u64::from(carry));
        *x = s2;
        carry = o1 || o2;
    }
    carry
}

/// Whether a < b, limbs least significant first.
fn below(a: &[u64], b: &[u64]) -> bool {
    a.iter().rev().cmp(b.iter().rev()) == std::cmp::Ordering::Less
}

/// a −= b, modulo 2^(64·limbs).
fn subtract(a: &mut [u64], b: &[u64]) {
    let mut borrow = false;
    for (x, &y) in a.iter_mut().zip(b) {
        let (d, o1) = x.overflowing_sub(y);
        let (d, o2) = d.overflowing_sub(u64::from(borrow));
        *x = d;
        borrow = o1 || o2;
    }
}

/// `out` = |a − b|.
fn distance(a: &[u64], b: &[u64], out: &mut [u64]) {
    let (big, small) = if below(a, b) { (b, a) } else { (a, b) };
    out.copy_from_slice(big);
    subtract(out, small);
}

/// The number whose 64-bit limbs (least significant first) these are.
fn from_limbs(limbs: &[u64]) -> BigUint {
    BigUint::new(
        limbs
            .iter()
            .flat_map(|&d| [d as u32, (d >> 32) as u32])
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn big(n: u128) -> BigUint {
        BigUint::from(n)
    }

    /// Whether `m` has an odd prime factor below 2^16.
    fn small_factor(m: &BigUint) -> bool {
        odd_primes().iter().any(|&p| (m % p).is_zero())
    }

    /// The next prime from `n` up, by the engine (below 2^128).
    fn next_prime(mut n: u128) -> u128 {
        while !crowdfactor_factor::is_prime(n) {
            n += 1;
        }
        n
    }

    fn product(factors: &[BigUint]) -> BigUint {
        factors.iter().product()
    }

    /// `factor` of the product of `primes` gives them back, sorted.
    fn round_trip(primes: &[BigUint]) {
        let mut want = primes.to_vec();
        want.sort_unstable();
        assert_eq!(factor(&product(primes)), want);
    }

    #[test]
    fn montgomery_products_are_products_over_r() {
        let mut rng = fastrand::Rng::with_seed(3);
        let random = |rng: &mut fastrand::Rng, limbs: usize| {
            from_limbs(&(0..limbs).map(|_| rng.u64(..)).collect::<Vec<_>>())
        };
        for limbs in [3, 4, 7] {
            for _ in 0..200 {
                // Odd moduli with a top limb of any size, some at the edge.
                let mut m = random(&mut rng, limbs) | BigUint::one();
                if rng.bool() {
                    m |= BigUint::from(u64::MAX) << (64 * (limbs - 1));
                }
                let ring = Montgomery::new(&m);
                let n = ring.m.len();
                let r = BigUint::one() << (64 * n);
                let (a, b) = (random(&mut rng, limbs) % &m, random(&mut rng, limbs) % &m);
                let pad = |x: &BigUint| {
                    let mut l = x.to_u64_digits();
                    l.resize(n, 0);
                    l
                };
                let (mut out, mut t) = (vec![0; n], vec![0; n + 2]);
                ring.mul(&pad(&a), &pad(&b), &mut out, &mut t);
                let got = from_limbs(&out);
                assert!(got < m);
                assert_eq!(got * &r % &m, &a * &b % &m);
                let c = rng.u64(..);
                let mut x = pad(&a);
                ring.add_small(&mut x, c);
                assert_eq!(from_limbs(&x), (&a + c) % &m);
            }
        }
    }

    #[test]
    fn curve_multiples_compose() {
        // k(jP) = (kj)P and (a + b)P from aP, bP and (a − b)P, compared
        // projectively (X1·Z2 = X2·Z1), on a curve modulo a prime above 2^128.
        let m = (BigUint::one() << 130u32) + 1u32;
        let m = (0u32..)
            .map(|i| &m + 2 * i)
            .find(|m| !small_factor(m) && probable_prime(m))
            .expect("a prime");
        let ring = Montgomery::new(&m);
        let curve = Curve {
            ring: &ring,
            a24: ring.to_form(&BigUint::from(123_456_789u32)),
        };
        let p = (
            ring.to_form(&BigUint::from(5u32)),
            ring.to_form(&BigUint::one()),
        );
        let same = |a: &Point, b: &Point| ring.product(&a.0, &b.1) == ring.product(&b.0, &a.1);
        for (j, k) in [
            (1u64, 1u64),
            (2, 3),
            (7, 11),
            (210, 97),
            (65_537, 1_000_003),
        ] {
            assert!(
                same(
                    &curve.times(&curve.times(&p, j), k),
                    &curve.times(&p, j * k)
                ),
                "{j}·{k}"
            );
            let (a, b) = (j + k + 1, k);
            let sum = curve.add(
                &curve.times(&p, a),
                &curve.times(&p, b),
                &curve.times(&p, a - b),
            );
            assert!(same(&sum, &curve.times(&p, a + b)), "{a}+{b}");
        }
        assert!(same(&curve.double(&p), &curve.times(&p, 2)));
    }

    #[test]
    fn ecm_finds_what_rho_would_take_long_over() {
        // A 44–48-bit prime beside one of 100 bits: past rho's 2^17 steps.
        let mut rng = fastrand::Rng::with_seed(44);
        for _ in 0..3 {
            let bits = rng.u32(44..=48);
            let (a, b) = (
                next_prime(rng.u128(1 << (bits - 1)..1 << bits)),
                next_prime(rng.u128(1 << 99..1 << 100)),
            );
            round_trip(&[big(a), big(b)]);
        }
    }

    #[test]
    fn the_jacobi_symbol_agrees_with_eulers_criterion() {
        // For an odd prime p, (a/p) ≡ a^((p−1)/2) (mod p).
        for p in [
            3u128,
            5,
            7,
            11,
            13,
            65_537,
            (1 << 61) - 1,
            next_prime(1 << 100),
        ] {
            let pb = big(p);
            for a in [-11i64, -7, -5, -3, -2, -1, 1, 2, 3, 5, 9, 15, 21, 1 << 40] {
                let residue = (BigUint::from(a.unsigned_abs()) % &pb + &pb) % &pb;
                let residue = if a < 0 {
                    (&pb - residue) % &pb
                } else {
                    residue
                };
                let euler = residue.modpow(&((&pb - 1u32) >> 1), &pb);
                let want = if euler.is_zero() {
                    0
                } else if euler.is_one() {
                    1
                } else {
                    -1
                };
                assert_eq!(jacobi(a, &pb), want, "({a}/{p})");
            }
        }
    }

    #[test]
    fn bpsw_agrees_with_the_engine_across_2_to_the_128() {
        // Both tests on odd numbers between 2^100 and 2^127, where the
        // engine's own BPSW decides: the same answer for each.
        let mut rng = fastrand::Rng::with_seed(128);
        let mut primes = 0;
        for _ in 0..3000 {
            let n = rng.u128((1 << 100)..(1 << 127)) | 1;
            if small_factor(&big(n)) {
                continue;
            }
            let engine = crowdfactor_factor::is_prime(n);
            primes += usize::from(engine);
            assert_eq!(probable_prime(&big(n)), engine, "{n}");
        }
        assert!(primes > 10, "too few primes among the samples: {primes}");
        // Strong pseudoprimes to base 2 that Lucas catches: Carmichael
        // numbers (6k+1)(12k+1)(18k+1) above 2^100.
        let mut caught = 0;
        let mut k = 1u128 << 34;
        while caught < 20 {
            k += 1;
            let (a, b, c) = (6 * k + 1, 12 * k + 1, 18 * k + 1);
            if [a, b, c].iter().all(|&p| crowdfactor_factor::is_prime(p)) {
                let n = big(a) * big(b) * big(c);
                assert!(!probable_prime(&n), "{n}");
                round_trip(&[big(a), big(b), big(c)]);
                caught += 1;
            }
        }
    }

    #[test]
    fn products_above_2_to_the_128_come_apart() {
        let mut rng = fastrand::Rng::with_seed(7);
        let p = |rng: &mut fastrand::Rng, bits: u32| {
            big(next_prime(rng.u128((1 << (bits - 1))..(1 << bits))))
        };
        for _ in 0..12 {
            // Small primes, rho-sized ones and one large prime.
            let mut primes = vec![big(2), big(3), big(65_521), big(65_537)];
            primes.push(p(&mut rng, 24));
            primes.push(p(&mut rng, 30));
            primes.push(p(&mut rng, 120));
            round_trip(&primes);
        }
        // Primes above 2^128: products of two and more of them, and powers.
        let above = |rng: &mut fastrand::Rng| {
            let mut n = (BigUint::one() << 128u32) + big(rng.u128(..1 << 100));
            n |= BigUint::one();
            while !probable_prime(&n) || small_factor(&n) {
                n += 2u32;
            }
            n
        };
        for _ in 0..5 {
            let q = above(&mut rng);
            round_trip(std::slice::from_ref(&q));
            round_trip(&[q.clone(), p(&mut rng, 20), p(&mut rng, 28)]);
            round_trip(&[q.clone(), q.clone()]);
            round_trip(&[q.clone(), q.clone(), q.clone(), big(7)]);
        }
        // Perfect powers of primes that rho would take long over.
        let r = p(&mut rng, 60);
        round_trip(&[r.clone(), r.clone(), r.clone()]);
        round_trip(&vec![big(65_537); 12]);
        let s = p(&mut rng, 40);
        round_trip(&vec![s; 6]);
        // Powers of two and ten, as GNU is often asked.
        assert_eq!(factor(&(BigUint::one() << 300u32)), vec![big(2); 300]);
        let ten = factor(&BigUint::from(10u32).pow(50));
        assert_eq!(ten.iter().filter(|f| **f == big(2)).count(), 50);
        assert_eq!(ten.iter().filter(|f| **f == big(5)).count(), 50);
        assert!(factor(&BigUint::zero()).is_empty());
        assert!(factor(&BigUint::one()).is_empty());
    }
}
