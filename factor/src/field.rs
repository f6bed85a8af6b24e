//! The arithmetic of ECM's curve steps ([`Field`]): any [`Monty`] form as it
//! is ([`AsField`]), and on wasm32 residues kept in signed digits
//! ([`Digits`]).
//!
//! On wasm32 a two-word Montgomery product in digits (`arith::mul_cios_lazy`,
//! `arith::mul_cios32`) splits both u128 factors into digits and joins the
//! result again, and every sum or difference is a comparison of u128s and a
//! correction. Kept in digits from one step to the next, a residue needs
//! neither, and a sum or difference that only ever feeds a product needs no
//! reduction at all: the product takes factors up to 4n when n < R/16, and
//! its result is below 2n in normalized digits again. Old and new build
//! alternating on the same numbers, 40+40-bit semiprimes 16 % faster under
//! node and 21 % in Chromium, 48+48 8 % and 13 %, 56+56 12 % and 13 %.
//! Where the room costs a digit more than the u128 forms have (n from 2^83
//! to 2^94, and from 2^112), the u128 forms stay (the choice is in
//! `split_u128`): the digits were 5–19 % slower there under node, and five
//! digits from 2^118 7 % faster under node but 6 % slower in Chromium.

use crate::arith::{Monty, Word};

/// Arithmetic modulo n in Montgomery form for ECM's curve steps: products,
/// and sums and differences that are only ever factors of a product (a form
/// may leave them unreduced). Residues enter and leave as u128 values of
/// the [`Monty`] form the field was made for ([`Field::lift`],
/// [`Field::lower`]).
pub(crate) trait Field {
    type E: Copy;
    /// 1 in Montgomery form.
    fn one(&self) -> Self::E;
    /// A placeholder value (0).
    fn zero(&self) -> Self::E;
    /// a·b/R, below 2n, for a and b from any method of this trait.
    fn mul(&self, a: Self::E, b: Self::E) -> Self::E;
    #[inline(always)]
    fn sqr(&self, a: Self::E) -> Self::E {
        self.mul(a, a)
    }
    /// a + b for a and b from `mul`, `one` or `lift`; only a factor of `mul`.
    fn add(&self, a: Self::E, b: Self::E) -> Self::E;
    /// a − b (mod n) for a and b from `mul`, `one` or `lift`; only a factor
    /// of `mul`.
    fn sub(&self, a: Self::E, b: Self::E) -> Self::E;
    /// A residue of the [`Monty`] form (below 2n) into this field.
    fn lift(&self, x: u128) -> Self::E;
    /// A residue from `mul` back into the [`Monty`] form (below n).
    fn lower(&self, x: Self::E) -> u128;
}

/// A [`Monty`] form's own arithmetic as a [`Field`].
pub(crate) struct AsField<M>(pub(crate) M);

impl<M: Monty> Field for AsField<M> {
    type E = M::W;
    #[inline(always)]
    fn one(&self) -> M::W {
        self.0.one()
    }
    #[inline(always)]
    fn zero(&self) -> M::W {
        M::W::ZERO
    }
    #[inline(always)]
    fn mul(&self, a: M::W, b: M::W) -> M::W {
        self.0.mul(a, b)
    }
    #[inline(always)]
    fn sqr(&self, a: M::W) -> M::W {
        self.0.sqr(a)
    }
    #[inline(always)]
    fn add(&self, a: M::W, b: M::W) -> M::W {
        self.0.add(a, b)
    }
    #[inline(always)]
    fn sub(&self, a: M::W, b: M::W) -> M::W {
        self.0.sub(a, b)
    }
    #[inline(always)]
    fn lift(&self, x: u128) -> M::W {
        M::W::from_u128(x)
    }
    #[inline(always)]
    fn lower(&self, x: M::W) -> u128 {
        x.to_u128()
    }
}

/// Bits per digit of [`Digits`].
const B: u32 = 29;
const MASK: i64 = (1 << B) - 1;

/// Montgomery arithmetic modulo an odd n < 2^(29·L − 4) with R = 2^(29·L),
/// residues kept in L signed 29-bit digits (least significant first; the
/// top digit holds the rest). A product's result is normalized: every
/// digit but the top one in [0, 2^29), value below 2n. A sum of two such is
/// their digits added (below 4n, digits below 2^30); a difference a − b + 2n
/// digit by digit (in (0, 4n), digits in (−2^29, 2^30)). Products take
/// either: factors below 4n give a·b/R < 16n²/R + n ≤ 2n; at most L products
/// of digits below 2^30 in size and L of the reduction's (below 2^58) meet in
/// one digit, below 5L·2^58 < 2^63 for L ≤ 5 — no carry inside the product
/// but the reduction digit's. Kept in i64s: stored as i32s, which every
/// digit fits, three and four digits measured 0–2 % slower under node and
/// 2–6 % slower in Chromium.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Digits<const L: usize> {
    nd: [i64; L],
    /// −n⁻¹ mod 2^29.
    ninv: i64,
    two_n: [i64; L],
    one: [i64; L],
    /// R_F²/R_M mod n: [`Field::lift`] multiplies by it.
    to_field: [i64; L],
    /// R_M mod n: [`Field::lower`] multiplies by it.
    to_monty: [i64; L],
}

/// `x`'s L digits of 29 bits, the top one holding the rest.
#[inline(always)]
fn split<const L: usize>(x: u128) -> [i64; L] {
    core::array::from_fn(|j| {
        let d = x >> (B * j as u32);
        if j == L - 1 {
            d as i64
        } else {
            d as i64 & MASK
        }
    })
}

/// The same value in normalized digits: each digit's carry (an arithmetic
/// shift: digits may be negative) into the next, the top one holding the
/// rest.
#[inline(always)]
fn carry<const L: usize>(mut x: [i64; L]) -> [i64; L] {
    let mut c = 0;
    for d in &mut x[..L - 1] {
        let s = *d + c;
        *d = s & MASK;
        c = s >> B;
    }
    x[L - 1] += c;
    x
}

/// The value of normalized digits, for values below 2^128.
fn join<const L: usize>(d: [i64; L]) -> u128 {
    d.iter()
        .enumerate()
        .fold(0, |r, (j, &x)| r | (x as u128) << (B * j as u32))
}

/// 2^e mod n for odd n > 1, by doubling (n may be ≥ 2^127).
fn pow2_mod(e: u32, n: u128) -> u128 {
    (0..e).fold(1 % n, |r, _| {
        let (s, over) = r.overflowing_add(r);
        if over || s >= n {
            s.wrapping_sub(n)
        } else {
            s
        }
    })
}

impl<const L: usize> Digits<L> {
    /// Bits of R.
    const BITS: u32 = {
        assert!(L >= 2 && L <= 5);
        B * L as u32
    };

    /// Whether n leaves the room these digits need (n < R/16).
    pub(crate) fn fits(n: u128) -> bool {
        Self::BITS - 4 >= 128 || n >> (Self::BITS - 4) == 0
    }

    /// For the odd n > 1 of the Montgomery form `m` (n < R/16).
    pub(crate) fn new<M: Monty<W = u128>>(m: &M) -> Self {
        let n = m.n();
        debug_assert!(n & 1 == 1 && n > 1 && Self::fits(n));
        let r = pow2_mod(Self::BITS, n);
        Digits {
            // black_box: see Mont64::new.
            nd: core::hint::black_box(split(n)),
            ninv: i64::from(crate::arith::inv64(n as u64) as u32).wrapping_neg() & MASK,
            // 2n in digits: n may be ≥ 2^127.
            two_n: carry(split(n).map(|d| 2 * d)),
            one: split(r),
            // R_F·R_F/R_M: Montgomery's product of the plain R_F with itself.
            to_field: split(m.mul(r, r)),
            to_monty: split(m.one()),
        }
    }
}

impl<const L: usize> Field for Digits<L> {
    type E = [i64; L];

    #[inline(always)]
    fn one(&self) -> [i64; L] {
        self.one
    }

    #[inline(always)]
    fn zero(&self) -> [i64; L] {
        [0; L]
    }

    /// Montgomery multiplication (CIOS), a digit of b at a time.
    #[inline(always)]
    fn mul(&self, a: [i64; L], b: [i64; L]) -> [i64; L] {
        let mut t = [0i64; L];
        for bi in b {
            for j in 0..L {
                t[j] += a[j] * bi;
            }
            // t + m·n ≡ 0 mod 2^29; then t /= 2^29, the low digit's carry
            // into the next (an arithmetic shift: digits may be negative).
            let m = t[0].wrapping_mul(self.ninv) & MASK;
            let c = (t[0] + m * self.nd[0]) >> B;
            for j in 1..L {
                t[j - 1] = t[j] + m * self.nd[j];
            }
            t[0] += c;
            t[L - 1] = 0;
        }
        carry(t)
    }

    /// a·a/R as [`Field::mul`] (the same value), the product first and then
    /// its reduction: each cross product once, doubled (L(L+1)/2 products
    /// instead of L²). With digits below 2^30 in size, a digit of the
    /// product holds at most L/2 doubled cross products (each below 2^61)
    /// and a square (below 2^60), then L of the reduction's (each below
    /// 2^58): below 2^62 + 2^60 + 5·2^58 < 2^63 for L ≤ 5.
    #[inline(always)]
    fn sqr(&self, a: [i64; L]) -> [i64; L] {
        let mut t = [0i64; 10];
        for i in 0..L {
            t[2 * i] += a[i] * a[i];
            let twice = a[i] + a[i];
            for j in i + 1..L {
                t[i + j] += twice * a[j];
            }
        }
        for i in 0..L {
            let m = t[i].wrapping_mul(self.ninv) & MASK;
            t[i + 1] += (t[i] + m * self.nd[0]) >> B;
            for j in 1..L {
                t[i + j] += m * self.nd[j];
            }
        }
        carry(core::array::from_fn(|j| t[L + j]))
    }

    #[inline(always)]
    fn add(&self, a: [i64; L], b: [i64; L]) -> [i64; L] {
        core::array::from_fn(|j| a[j] + b[j])
    }

    #[inline(always)]
    fn sub(&self, a: [i64; L], b: [i64; L]) -> [i64; L] {
        core::array::from_fn(|j| a[j] - b[j] + self.two_n[j])
    }

    fn lift(&self, x: u128) -> [i64; L] {
        self.mul(split(x), self.to_field)
    }

    fn lower(&self, x: [i64; L]) -> u128 {
        // Below 2n, normalized: subtract n once if it is not below n.
        let x = self.mul(x, self.to_monty);
        let y: [i64; L] = carry(core::array::from_fn(|j| x[j] - self.nd[j]));
        if y[L - 1] < 0 {
            join(x)
        } else {
            join(y)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::arith::{Mont120, Mont128, Mont128Lazy, Mont90};

    /// Chains of products, sums and differences in the pattern of ECM's
    /// point steps, in digits and in [`Mont128`], agree mod n: at each digit
    /// count's bound, just below it, and on random moduli.
    #[cfg_attr(not(target_arch = "wasm32"), test)]
    #[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
    fn digit_residues_agree_with_mont128() {
        fn check<const L: usize, M: Monty<W = u128>>(m: &M, rng: &mut fastrand::Rng) {
            let n = m.n();
            let e = Mont128::new(n);
            let f = Digits::<L>::new(m);
            // e's residue in m's form, below n: what `lower` gives.
            let in_m = |x: u128| m.to_mont(e.mul(x, 1)) % n;
            let (mut ex, mut ez) = (e.to_mont(rng.u128(..n)), e.to_mont(rng.u128(..n)));
            let (mut fx, mut fz) = (f.lift(in_m(ex)), f.lift(in_m(ez)));
            for _ in 0..500 {
                // x, z ← (x + z)²·(x − z)², (x·z − (x − z)²)·(z + 1)
                let (s, d) = (f.add(fx, fz), f.sub(fx, fz));
                // A square is the product of the factor with itself, digit
                // for digit (both normalized), for sums and differences.
                assert_eq!(f.sqr(s), f.mul(s, s), "n = {n}");
                assert_eq!(f.sqr(d), f.mul(d, d), "n = {n}");
                let nx = f.mul(f.sqr(s), f.sqr(d));
                let nz = f.mul(f.sub(f.mul(fx, fz), f.sqr(d)), f.add(fz, f.one()));
                let (es, ed) = (e.add(ex, ez), e.sub(ex, ez));
                let enx = e.mul(e.sqr(es), e.sqr(ed));
                let enz = e.mul(e.sub(e.mul(ex, ez), e.sqr(ed)), e.add(ez, e.one()));
                (fx, fz, ex, ez) = (nx, nz, enx, enz);
                assert_eq!(f.lower(fx), in_m(ex), "n = {n}");
                assert_eq!(f.lower(fz), in_m(ez), "n = {n}");
            }
        }
        let mut rng = fastrand::Rng::with_seed(29);
        for bits in [40u32, 82, 83, 95, 111, 112, 120, 126, 127, 128] {
            let top = u128::MAX >> (128 - bits);
            for i in 0..8 {
                // The largest odd n of the size first, then random ones.
                let n = if i == 0 {
                    top
                } else {
                    rng.u128(top / 2..=top) | 1
                };
                match bits {
                    ..=83 => check::<3, _>(&Mont90::new(n), &mut rng),
                    84..=112 => check::<4, _>(&Mont120::new(n), &mut rng),
                    113..=125 => check::<5, _>(&Mont128Lazy::new(n), &mut rng),
                    _ => check::<5, _>(&Mont128::new(n), &mut rng),
                }
            }
        }
    }
}
