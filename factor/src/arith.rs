//! Montgomery arithmetic in a half word (`u32`), one word (`u64`) and two
//! words (`u128`), behind one trait so the primality and factoring
//! algorithms are written once. The half word is for moduli below 2^32: on
//! wasm32, which has no 64×64→128 multiply, its products are one `i64.mul`
//! instead of four. For the same reason wasm32 multiplies two-word residues
//! digit by digit: three 30-bit digits for moduli below 2^90 ([`Mont90`]),
//! three 32-bit ones below 2^96 ([`Mont96`]), four 30-bit ones below 2^120
//! ([`Mont120`]), four 32-bit ones above.

/// The integer operations the generic algorithms need.
pub(crate) trait Word: Copy + Eq + Ord + core::fmt::Debug {
    const ZERO: Self;
    const ONE: Self;
    const TWO: Self;
    const BITS: u32;
    fn tz(self) -> u32;
    fn lz(self) -> u32;
    fn shr(self, k: u32) -> Self;
    fn wsub(self, o: Self) -> Self;
    fn wadd(self, o: Self) -> Self;
    fn rem(self, o: Self) -> Self;
    /// Truncating conversion (callers pass values that fit).
    fn from_u128(x: u128) -> Self;
    fn bit(self, i: u32) -> bool;
    fn to_u128(self) -> u128;
    /// self/2 mod the odd `n`, for self < 2n: (self + n)/2 when self is odd,
    /// without a branch.
    fn half_mod(self, n: Self) -> Self;
    fn is_square(self) -> bool;
}

macro_rules! impl_word {
    ($t:ty) => {
        impl Word for $t {
            const ZERO: Self = 0;
            const ONE: Self = 1;
            const TWO: Self = 2;
            const BITS: u32 = <$t>::BITS;
            #[inline(always)]
            fn tz(self) -> u32 {
                self.trailing_zeros()
            }
            #[inline(always)]
            fn lz(self) -> u32 {
                self.leading_zeros()
            }
            #[inline(always)]
            fn shr(self, k: u32) -> Self {
                self >> k
            }
            #[inline(always)]
            fn wsub(self, o: Self) -> Self {
                self.wrapping_sub(o)
            }
            #[inline(always)]
            fn wadd(self, o: Self) -> Self {
                self.wrapping_add(o)
            }
            #[inline(always)]
            fn rem(self, o: Self) -> Self {
                self % o
            }
            #[inline(always)]
            fn from_u128(x: u128) -> Self {
                x as $t
            }
            #[inline(always)]
            fn bit(self, i: u32) -> bool {
                (self >> i) & 1 == 1
            }
            #[inline(always)]
            fn to_u128(self) -> u128 {
                self as u128
            }
            #[inline(always)]
            fn half_mod(self, n: Self) -> Self {
                (self >> 1) + (((n >> 1) + 1) & (self & 1).wrapping_neg())
            }
            #[inline(always)]
            fn is_square(self) -> bool {
                let r = self.isqrt();
                r * r == self
            }
        }
    };
}
impl_word!(u32);
impl_word!(u64);
impl_word!(u128);

/// Binary GCD.
#[inline]
pub(crate) fn gcd<W: Word>(mut a: W, mut b: W) -> W {
    if a == W::ZERO {
        return b;
    }
    if b == W::ZERO {
        return a;
    }
    let shift = (a.to_u128() | b.to_u128()).trailing_zeros();
    a = a.shr(a.tz());
    loop {
        b = b.shr(b.tz());
        if a > b {
            core::mem::swap(&mut a, &mut b);
        }
        b = b.wsub(a);
        if b == W::ZERO {
            break;
        }
    }
    // `a` is the odd part of the gcd; restore the common power of two.
    W::from_u128(a.to_u128() << shift)
}

/// Arithmetic modulo an odd n > 1 in Montgomery form (x ↦ x·R mod n).
pub(crate) trait Monty: Copy {
    type W: Word;
    fn n(&self) -> Self::W;
    /// 1 in Montgomery form.
    fn one(&self) -> Self::W;
    fn mul(&self, a: Self::W, b: Self::W) -> Self::W;
    fn add(&self, a: Self::W, b: Self::W) -> Self::W;
    fn sub(&self, a: Self::W, b: Self::W) -> Self::W;
    /// Plain residue (< n) to Montgomery form.
    fn to_mont(&self, x: Self::W) -> Self::W;
    /// a / 2 mod n.
    fn half(&self, a: Self::W) -> Self::W;
    /// R² mod n (plain).
    fn r2(&self) -> Self::W;

    #[inline(always)]
    fn sqr(&self, a: Self::W) -> Self::W {
        self.mul(a, a)
    }

    #[inline(always)]
    fn neg(&self, a: Self::W) -> Self::W {
        self.sub(Self::W::ZERO, a)
    }

    /// base^e with base in Montgomery form.
    fn pow(&self, base: Self::W, e: Self::W) -> Self::W {
        if e == Self::W::ZERO {
            return self.one();
        }
        let top = Self::W::BITS - 1 - e.lz();
        let mut x = base;
        for i in (0..top).rev() {
            x = self.sqr(x);
            if e.bit(i) {
                x = self.mul(x, base);
            }
        }
        x
    }

    /// 2^e: a doubling (one modular add) replaces each multiply by the base,
    /// a third less work than [`Monty::pow`] for the base-2 strong test.
    fn pow2(&self, e: Self::W) -> Self::W {
        let mut x = self.one();
        if e == Self::W::ZERO {
            return x;
        }
        let top = Self::W::BITS - 1 - e.lz();
        x = self.add(x, x);
        for i in (0..top).rev() {
            x = self.sqr(x);
            if e.bit(i) {
                x = self.add(x, x);
            }
        }
        x
    }
}

/// Inverse of `a` (Montgomery form) modulo n, in Montgomery form; or the
/// non-trivial gcd(a, n) when there is none.
pub(crate) fn inv_mont<M: Monty>(m: &M, a: M::W) -> Result<M::W, M::W> {
    let n = m.n();
    if a == M::W::ZERO {
        return Err(n);
    }
    // Binary inversion on plain residues, x1·a ≡ u and x2·a ≡ v (mod n),
    // u and v odd after each step; it ends at u = v = gcd(a, n), so no
    // separate gcd pass. Swapping to keep u ≥ v (instead of branching on
    // which is larger) leaves no unpredictable branch but the halvings'.
    let (mut u, mut v) = (a, n);
    let (mut x1, mut x2) = (M::W::ONE, M::W::ZERO);
    for _ in 0..u.tz() {
        x1 = m.half(x1);
    }
    u = u.shr(u.tz());
    while u != v {
        if u < v {
            core::mem::swap(&mut u, &mut v);
            core::mem::swap(&mut x1, &mut x2);
        }
        u = u.wsub(v);
        x1 = m.sub(x1, x2);
        let t = u.tz();
        u = u.shr(t);
        for _ in 0..t {
            x1 = m.half(x1);
        }
    }
    if u != M::W::ONE {
        return Err(u);
    }
    // y = (aR)⁻¹ = a⁻¹R⁻¹ (plain); a⁻¹R = y·R² = mont_mul(y, R³).
    let r3 = m.mul(m.r2(), m.r2());
    Ok(m.mul(x1, r3))
}

/// Inverse of an odd `n` modulo 2^64 (Newton: each step doubles the correct bits).
#[inline]
pub(crate) const fn inv64(n: u64) -> u64 {
    let mut inv = n; // correct to 3 bits: n·n ≡ 1 (mod 8)
    let mut i = 0;
    while i < 5 {
        inv = inv.wrapping_mul(2u64.wrapping_sub(n.wrapping_mul(inv)));
        i += 1;
    }
    inv
}

/// Inverse of an odd `n` modulo 2^128.
#[inline]
pub(crate) const fn inv128(n: u128) -> u128 {
    let mut inv = n;
    let mut i = 0;
    while i < 6 {
        inv = inv.wrapping_mul(2u128.wrapping_sub(n.wrapping_mul(inv)));
        i += 1;
    }
    inv
}

/// a·b as (low, high) 64-bit words.
#[cfg(not(narrow_mul))]
#[inline(always)]
fn mul_wide64(a: u64, b: u64) -> (u64, u64) {
    let t = a as u128 * b as u128;
    (t as u64, (t >> 64) as u64)
}

/// a·b as (low, high) 64-bit words. wasm32 has no 64×64→128 multiply (unless
/// built with the wide-arithmetic proposal) and compiles a u128 product to a
/// call of a general 128×128-bit routine; four 32×32→64 products inline are
/// much cheaper there.
#[cfg(narrow_mul)]
#[inline(always)]
fn mul_wide64(a: u64, b: u64) -> (u64, u64) {
    mul_wide64_halves(a, b)
}

/// a² as (low, high) 64-bit words.
#[cfg(not(narrow_mul))]
#[inline(always)]
fn sqr_wide64(a: u64) -> (u64, u64) {
    mul_wide64(a, a)
}

/// a² as (low, high) 64-bit words: on wasm32 three 32×32→64 products, the
/// cross product counted twice (squarings are a third of ECM's products and
/// most of a Miller–Rabin test's).
#[cfg(narrow_mul)]
#[inline(always)]
fn sqr_wide64(a: u64) -> (u64, u64) {
    sqr_wide64_halves(a)
}

/// [`sqr_wide64`] from 32-bit halves (used on wasm32; tested everywhere).
#[cfg_attr(not(any(narrow_mul, test)), allow(dead_code))]
#[inline(always)]
fn sqr_wide64_halves(a: u64) -> (u64, u64) {
    const LO: u64 = 0xffff_ffff;
    let (a0, a1) = (a & LO, a >> 32);
    let (p00, p01, p11) = (a0 * a0, a0 * a1, a1 * a1);
    // Below 2^32 + 2·2^32: no overflow.
    let mid = (p00 >> 32) + 2 * (p01 & LO);
    (
        (p00 & LO) | (mid << 32),
        p11 + 2 * (p01 >> 32) + (mid >> 32),
    )
}

/// [`mul_wide64`] from 32-bit halves (used on wasm32; tested everywhere).
#[cfg_attr(not(any(narrow_mul, test)), allow(dead_code))]
#[inline(always)]
fn mul_wide64_halves(a: u64, b: u64) -> (u64, u64) {
    const LO: u64 = 0xffff_ffff;
    let (a0, a1) = (a & LO, a >> 32);
    let (b0, b1) = (b & LO, b >> 32);
    let (p00, p01, p10, p11) = (a0 * b0, a0 * b1, a1 * b0, a1 * b1);
    // Three terms below 2^32 each: no overflow.
    let mid = (p00 >> 32) + (p01 & LO) + (p10 & LO);
    (
        (p00 & LO) | (mid << 32),
        p11 + (p01 >> 32) + (p10 >> 32) + (mid >> 32),
    )
}

/// The high word of m·n given its low word `lo` and n's 32-bit halves, from
/// three 32×32→64 products instead of four: the low product m0·n0 only
/// carries its high half h into the middle column, and that column's low 32
/// bits are known (bits 32–63 of `lo`), so h = those bits − the other two
/// terms, mod 2^32 (h < 2^32). Used on wasm32 where `lo` comes free with
/// Montgomery reduction (m·n ≡ t mod 2^64); tested everywhere.
#[cfg_attr(not(any(narrow_mul, test)), allow(dead_code))]
#[inline(always)]
fn mul_hi_given_lo(m: u64, (n0, n1): (u64, u64), lo: u64) -> u64 {
    const LO: u64 = 0xffff_ffff;
    let (m0, m1) = (m & LO, m >> 32);
    let (p01, p10, p11) = (m0 * n1, m1 * n0, m1 * n1);
    let side = (p01 & LO) + (p10 & LO);
    let mid = side + ((lo >> 32).wrapping_sub(side) & LO);
    p11 + (p01 >> 32) + (p10 >> 32) + (mid >> 32)
}

/// The [`Monty`] methods that read the same for every exactly reduced
/// Montgomery type, one word or two; the type supplies `mul_word`.
macro_rules! word_monty {
    ($mont:ty, $w:ty $(, sqr = $sqr:ident)?) => {
        impl Monty for $mont {
            type W = $w;
            #[inline(always)]
            fn n(&self) -> $w {
                self.n
            }
            #[inline(always)]
            fn one(&self) -> $w {
                self.one
            }
            #[inline(always)]
            fn mul(&self, a: $w, b: $w) -> $w {
                self.mul_word(a, b)
            }
            $(
                #[inline(always)]
                fn sqr(&self, a: $w) -> $w {
                    self.$sqr(a)
                }
            )?
            #[inline(always)]
            fn add(&self, a: $w, b: $w) -> $w {
                let (s, c) = a.overflowing_add(b);
                if c || s >= self.n {
                    s.wrapping_sub(self.n)
                } else {
                    s
                }
            }
            #[inline(always)]
            fn sub(&self, a: $w, b: $w) -> $w {
                let (d, borrow) = a.overflowing_sub(b);
                if borrow {
                    d.wrapping_add(self.n)
                } else {
                    d
                }
            }
            #[inline(always)]
            fn to_mont(&self, x: $w) -> $w {
                self.mul(x, self.r2)
            }
            #[inline(always)]
            fn r2(&self) -> $w {
                self.r2
            }
            #[inline(always)]
            fn half(&self, a: $w) -> $w {
                a.half_mod(self.n)
            }
        }
    };
}

/// Montgomery arithmetic modulo an odd 32-bit n > 1 (R = 2^32).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Mont32 {
    n: u32,
    ninv: u32,
    one: u32,
    r2: u32,
}

impl Mont32 {
    pub(crate) fn new(n: u32) -> Self {
        debug_assert!(n & 1 == 1 && n > 1);
        // 2^32 mod n == (2^32 − n) mod n.
        let one = n.wrapping_neg() % n;
        let mut m = Mont32 {
            n,
            ninv: inv64(u64::from(n)) as u32,
            one,
            r2: 0,
        };
        // R² mod n is 2^32 in Montgomery form: square 2 five times.
        m.r2 = (0..5).fold(m.add(one, one), |x, _| m.mul(x, x));
        m
    }

    /// hi(t) and hi(m·n) for t = a·b, m = t·n⁻¹ mod R, as in
    /// [`Mont64::redc_halves`].
    #[inline(always)]
    fn redc_halves(&self, a: u32, b: u32) -> (u32, u32) {
        let t = u64::from(a) * u64::from(b);
        let m = (t as u32).wrapping_mul(self.ninv);
        (
            (t >> 32) as u32,
            ((u64::from(m) * u64::from(self.n)) >> 32) as u32,
        )
    }

    #[inline(always)]
    fn mul_word(&self, a: u32, b: u32) -> u32 {
        let (hi, mn_hi) = self.redc_halves(a, b);
        let (d, borrow) = hi.overflowing_sub(mn_hi);
        if borrow {
            d.wrapping_add(self.n)
        } else {
            d
        }
    }

    /// a·b·R⁻¹ in (0, 2n) for a, b < 2n < 2^31, as [`Mont64::mul_lazy`].
    #[inline(always)]
    fn mul_lazy(&self, a: u32, b: u32) -> u32 {
        let (hi, mn_hi) = self.redc_halves(a, b);
        (hi + self.n) - mn_hi
    }
}

word_monty!(Mont32, u32);

/// Montgomery arithmetic modulo an odd 64-bit n > 1.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Mont64 {
    n: u64,
    ninv: u64,
    one: u64,
    r2: u64,
    /// n's 32-bit halves, for [`Mont64::mul_hi_n`] on wasm32.
    #[cfg(narrow_mul)]
    n_halves: (u64, u64),
}

impl Mont64 {
    pub(crate) fn new(n: u64) -> Self {
        debug_assert!(n & 1 == 1 && n > 1);
        // 2^64 mod n == (2^64 − n) mod n; no 128-bit division (a library
        // call on wasm32, and on native too).
        let one = n.wrapping_neg() % n;
        let mut m = Mont64 {
            n,
            ninv: inv64(n),
            one,
            r2: 0,
            // Where the Mont64 is built in the same function that uses it
            // (the primality tests), LLVM still sees that the halves come
            // from n and fuses the product again; black_box hides that.
            #[cfg(narrow_mul)]
            n_halves: core::hint::black_box((n & 0xffff_ffff, n >> 32)),
        };
        m.r2 = if cfg!(narrow_mul) {
            // R·2^64 mod n by 64 doublings: on wasm32 LLVM turns each
            // squaring below into a __multi3 call.
            (0..64).fold(one, |r, _| m.add(r, r))
        } else {
            // 2^64 in Montgomery form: square 2 six times.
            (0..6).fold(m.add(one, one), |x, _| m.mul(x, x))
        };
        m
    }

    /// The high word of m·n, whose low word is `lo`.
    #[cfg(not(narrow_mul))]
    #[inline(always)]
    fn mul_hi_n(&self, m: u64, _lo: u64) -> u64 {
        mul_wide64(m, self.n).1
    }

    /// The high word of m·n from n's stored halves. Computed from `n` in
    /// place, LLVM recognizes the high-half-of-a-product pattern, turns it
    /// back into a 128-bit multiply, and wasm32 makes that a call of
    /// `__multi3` (a quarter of the run time in the profile); halves loaded
    /// from memory do not match the pattern.
    #[cfg(narrow_mul)]
    #[inline(always)]
    fn mul_hi_n(&self, m: u64, lo: u64) -> u64 {
        mul_hi_given_lo(m, self.n_halves, lo)
    }

    /// hi(t) and hi(m·n) for t = (lo, hi), m = t·n⁻¹ mod R: with the low words
    /// equal, t·R⁻¹ ≡ (t − m·n)/R = hi(t) − hi(m·n) (mod n), which lies in
    /// (−n, n) for t < n·R.
    #[inline(always)]
    fn redc_halves(&self, (lo, hi): (u64, u64)) -> (u64, u64) {
        (hi, self.mul_hi_n(lo.wrapping_mul(self.ninv), lo))
    }

    /// t·R⁻¹ mod n for t = (lo, hi) < n·R.
    #[inline(always)]
    fn redc(&self, t: (u64, u64)) -> u64 {
        let (hi, mn_hi) = self.redc_halves(t);
        let (d, borrow) = hi.overflowing_sub(mn_hi);
        if borrow {
            d.wrapping_add(self.n)
        } else {
            d
        }
    }

    #[inline(always)]
    fn mul_word(&self, a: u64, b: u64) -> u64 {
        self.redc(mul_wide64(a, b))
    }

    #[inline(always)]
    fn sqr_word(&self, a: u64) -> u64 {
        self.redc(sqr_wide64(a))
    }

    /// t·R⁻¹ in (0, 2n) for t < 4n² < n·R, n < 2^62 ([`Mont64Lazy`]): hi < n
    /// and hi − hi(m·n) + n lies in (0, 2n).
    #[inline(always)]
    fn redc_lazy(&self, t: (u64, u64)) -> u64 {
        let (hi, mn_hi) = self.redc_halves(t);
        (hi + self.n) - mn_hi
    }

    /// a·b·R⁻¹ in (0, 2n) for a, b < 2n ([`Mont64::redc_lazy`]).
    #[inline(always)]
    fn mul_lazy(&self, a: u64, b: u64) -> u64 {
        self.redc_lazy(mul_wide64(a, b))
    }

    /// a²·R⁻¹ in (0, 2n) for a < 2n ([`Mont64::redc_lazy`]).
    #[inline(always)]
    fn sqr_lazy(&self, a: u64) -> u64 {
        self.redc_lazy(sqr_wide64(a))
    }
}

word_monty!(Mont64, u64, sqr = sqr_word);

/// Arithmetic modulo an odd n < 2^50 on plain residues (R = 1), the
/// quotient of each product estimated in double precision: on wasm32 a
/// product is two `i64.mul` and two `f64.mul` instead of nine `i64.mul` and
/// their carries (node, `tune` classes: seed job 12–16 % faster, 24+24-bit
/// semiprimes 7–28 %). Natively it loses to [`Mont64Lazy`] (seed job 2.4 vs
/// 1.5 µs), so only wasm32 uses it.
#[derive(Clone, Copy, Debug)]
pub(crate) struct ModF64 {
    n: u64,
    inv: f64,
    /// 1 and R² mod n (both 1), for [`ModF64Lazy`].
    one: u64,
    r2: u64,
}

impl ModF64 {
    /// For odd n with 1 < n < 2^50.
    pub(crate) fn new(n: u64) -> Self {
        debug_assert!(n < 1 << 50);
        ModF64 {
            n,
            inv: 1.0 / n as f64,
            one: 1,
            r2: 1,
        }
    }

    /// a·b − q·n with q the nearest integer to the double-precision
    /// a·b/n, for a·b < 2^50·n: three roundings leave a·b/n off by less
    /// than 3·2^−53·2^50 < 1/2, so q is within 1 of the exact quotient and
    /// the remainder lies in (−n, n), exact in wrapping arithmetic. Adding
    /// 1.5·2^52 rounds to an integer and leaves it in the low bits (on
    /// wasm32 cheaper than a saturating float-to-int conversion, and one
    /// correction instead of two after truncation).
    #[inline(always)]
    fn rem_near(&self, a: u64, b: u64) -> i64 {
        const ROUND: f64 = (3u64 << 51) as f64;
        let x = (a as i64 as f64) * (b as i64 as f64) * self.inv + ROUND;
        let q = x.to_bits().wrapping_sub(ROUND.to_bits());
        a.wrapping_mul(b).wrapping_sub(q.wrapping_mul(self.n)) as i64
    }

    /// a·b mod n in (0, 2n) for a, b < 2n and n < 2^48, so that
    /// a·b < 4n² ≤ 2^50·n ([`ModF64Lazy`]).
    #[inline(always)]
    fn mul_lazy(&self, a: u64, b: u64) -> u64 {
        debug_assert!(self.n < 1 << 48 && a < 2 * self.n && b < 2 * self.n);
        (self.rem_near(a, b) + self.n as i64) as u64
    }
}

impl Monty for ModF64 {
    type W = u64;
    #[inline(always)]
    fn n(&self) -> u64 {
        self.n
    }
    #[inline(always)]
    fn one(&self) -> u64 {
        1
    }
    #[inline(always)]
    fn mul(&self, a: u64, b: u64) -> u64 {
        let r = self.rem_near(a, b);
        (if r < 0 { r + self.n as i64 } else { r }) as u64
    }
    #[inline(always)]
    fn add(&self, a: u64, b: u64) -> u64 {
        let s = a + b;
        if s >= self.n {
            s - self.n
        } else {
            s
        }
    }
    #[inline(always)]
    fn sub(&self, a: u64, b: u64) -> u64 {
        let (d, borrow) = a.overflowing_sub(b);
        if borrow {
            d.wrapping_add(self.n)
        } else {
            d
        }
    }
    #[inline(always)]
    fn to_mont(&self, x: u64) -> u64 {
        x
    }
    #[inline(always)]
    fn r2(&self) -> u64 {
        1
    }
    #[inline(always)]
    fn half(&self, a: u64) -> u64 {
        a.half_mod(self.n)
    }
}

/// A single-word Montgomery type with lazy reduction for n < R/4: residues
/// are kept in [0, 2n) instead of [0, n), so a product needs no final
/// conditional correction (one step shorter on the dependency chains rho and
/// ECM are made of). Equal residues can differ by n here, so these types are
/// only for code that looks at results through gcd with n (finding
/// factors), never `==`. The inner type supplies `mul_lazy`.
macro_rules! lazy_monty {
    ($(#[$doc:meta])* $lazy:ident, $mont:ty, $w:ty $(, sqr = $sqr:ident)? $(, bits = $bits:expr)?) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug)]
        pub(crate) struct $lazy {
            m: $mont,
            twice_n: $w,
        }

        impl $lazy {
            /// For odd n with 1 < n < R/4.
            pub(crate) fn new(n: $w) -> Self {
                debug_assert!(n < 1 << (<$w>::BITS - 2));
                $(debug_assert!(n < 1 << $bits);)?
                $lazy {
                    m: <$mont>::new(n),
                    twice_n: 2 * n,
                }
            }
        }

        impl Monty for $lazy {
            type W = $w;
            #[inline(always)]
            fn n(&self) -> $w {
                self.m.n
            }
            #[inline(always)]
            fn one(&self) -> $w {
                self.m.one
            }
            #[inline(always)]
            fn mul(&self, a: $w, b: $w) -> $w {
                self.m.mul_lazy(a, b)
            }
            $(
                #[inline(always)]
                fn sqr(&self, a: $w) -> $w {
                    self.m.$sqr(a)
                }
            )?
            #[inline(always)]
            fn add(&self, a: $w, b: $w) -> $w {
                let s = a + b;
                if s >= self.twice_n {
                    s - self.twice_n
                } else {
                    s
                }
            }
            #[inline(always)]
            fn sub(&self, a: $w, b: $w) -> $w {
                let (d, borrow) = a.overflowing_sub(b);
                if borrow {
                    d.wrapping_add(self.twice_n)
                } else {
                    d
                }
            }
            #[inline(always)]
            fn to_mont(&self, x: $w) -> $w {
                self.mul(x, self.m.r2)
            }
            #[inline(always)]
            fn r2(&self) -> $w {
                self.m.r2
            }
            #[inline(always)]
            fn half(&self, a: $w) -> $w {
                // Below 2n still.
                a.half_mod(self.m.n)
            }
        }
    };
}

lazy_monty!(
    /// [`Mont32`] with lazy reduction, for n < 2^30.
    Mont32Lazy,
    Mont32,
    u32
);
lazy_monty!(
    /// [`ModF64`] with lazy reduction, for n < 2^48.
    ModF64Lazy,
    ModF64,
    u64
);
lazy_monty!(
    /// [`Mont64`] with lazy reduction, for n < 2^62.
    Mont64Lazy,
    Mont64,
    u64,
    sqr = sqr_lazy
);
lazy_monty!(
    /// [`Mont90`] with lazy reduction, for n < 2^88: no comparison of two
    /// 64-bit words and borrow after each product on wasm32.
    Mont90Lazy,
    Mont90,
    u128,
    bits = 88
);
lazy_monty!(
    /// [`Mont96`] with lazy reduction, for n < 2^94.
    Mont96Lazy,
    Mont96,
    u128,
    bits = 94
);
lazy_monty!(
    /// [`Mont120`] with lazy reduction, for n < 2^118.
    Mont120Lazy,
    Mont120,
    u128,
    bits = 118
);
lazy_monty!(
    /// [`Mont128`] with lazy reduction, for n < 2^126.
    Mont128Lazy,
    Mont128,
    u128
);

/// Full 128×128 → 256-bit product as (low, high).
#[inline(always)]
pub(crate) fn mul_wide(a: u128, b: u128) -> (u128, u128) {
    let (a0, a1) = (a as u64, (a >> 64) as u64);
    let (b0, b1) = (b as u64, (b >> 64) as u64);
    let wide = |x, y| {
        let (lo, hi) = mul_wide64(x, y);
        lo as u128 | (hi as u128) << 64
    };
    let p00 = wide(a0, b0);
    let p01 = wide(a0, b1);
    let p10 = wide(a1, b0);
    let p11 = wide(a1, b1);
    let mid = (p00 >> 64) + (p01 as u64 as u128) + (p10 as u64 as u128);
    let lo = (p00 as u64 as u128) | (mid << 64);
    let hi = p11 + (p01 >> 64) + (p10 >> 64) + (mid >> 64);
    (lo, hi)
}

/// a·b mod 2^128 from one wide and two low 64-bit products (what native code
/// does anyway; on wasm32 a u128 product is a library call).
#[inline(always)]
fn mul_lo128(a: u128, b: u128) -> u128 {
    let (a0, a1) = (a as u64, (a >> 64) as u64);
    let (b0, b1) = (b as u64, (b >> 64) as u64);
    let (lo, hi) = mul_wide64(a0, b0);
    let hi = hi
        .wrapping_add(a0.wrapping_mul(b1))
        .wrapping_add(a1.wrapping_mul(b0));
    lo as u128 | (hi as u128) << 64
}

/// The low L digits of B bits of x, least significant first.
#[inline(always)]
fn digits<const L: usize, const B: u32>(x: u128) -> [u64; L] {
    core::array::from_fn(|j| (x >> (B * j as u32)) as u64 & ((1 << B) - 1))
}

/// a·b·2^(−32·L) mod n for a, b < n < 2^(32·L), L ≤ 4 (with `LAZY`, in
/// [0, 2n) for a, b < 2n and 4n ≤ 2^(32·L)), by word-by-word
/// Montgomery multiplication (CIOS) in 32-bit digits, given n's digits and
/// −n⁻¹ mod 2^32: every product is one `i64.mul` on wasm32, where a 64×64 →
/// 128-bit product is four of them plus carries.
#[inline(always)]
fn mul_cios32<const L: usize, const LAZY: bool>(
    a: u128,
    b: u128,
    n: u128,
    nd: [u64; L],
    ninv: u64,
) -> u128 {
    const LO: u64 = 0xffff_ffff;
    let a: [u64; L] = digits::<L, 32>(a);
    let b: [u64; L] = digits::<L, 32>(b);
    // t < 2n: L digits and a carry bit in t[L].
    let mut t = [0u64; 5];
    for bi in b {
        // t += a·b_i; each step ≤ (2^32 − 1)² + 2(2^32 − 1) < 2^64.
        let mut c = 0;
        for j in 0..L {
            let s = t[j] + a[j] * bi + c;
            t[j] = s & LO;
            c = s >> 32;
        }
        let s = t[L] + c;
        let (top, over) = (s & LO, s >> 32);
        // t = (t + m·n) / 2^32 with m making the low digit vanish.
        let m = (t[0] * ninv) & LO;
        let mut c = (t[0] + m * nd[0]) >> 32;
        for j in 1..L {
            let s = t[j] + m * nd[j] + c;
            t[j - 1] = s & LO;
            c = s >> 32;
        }
        let s = top + c;
        t[L - 1] = s & LO;
        t[L] = over + (s >> 32);
    }
    let r = (0..L).fold(0u128, |r, j| r | (t[j] as u128) << (32 * j));
    if LAZY {
        // Below 2n ≤ 2^(32·L − 1): no carry out of the top digit.
        debug_assert!(t[L] == 0);
        r
    } else if L < 4 {
        // The carry fits in the word.
        let r = r | (t[L] as u128).wrapping_shl(32 * L as u32);
        if r >= n {
            r - n
        } else {
            r
        }
    } else if t[L] != 0 || r >= n {
        // r + 2^128 − n, or r − n.
        r.wrapping_sub(n)
    } else {
        r
    }
}

/// −n⁻¹ mod 2^32 for odd n.
fn neg_inv32(n: u128) -> u64 {
    u64::from((inv64(n as u64) as u32).wrapping_neg())
}

/// Montgomery arithmetic modulo an odd n < 2^96 with R = 2^96, in three
/// 32-bit digits: on wasm32 (without the wide-arithmetic proposal) a
/// product is 21 `i64.mul` instead of [`Mont128`]'s 36. Used there from
/// 2^90 ([`Mont90`] below, the same products without a carry after each;
/// four 30-bit digits cost more than this up to 2^96: 48+48-bit semiprimes
/// 8.9–12.9 ms against 10.6–15.0 under node, alternating). Not used
/// natively, where `Mont128`'s 64-bit products are cheaper.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Mont96 {
    n: u128,
    one: u128,
    r2: u128,
    digits: ([u64; 3], u64),
}

impl Mont96 {
    pub(crate) fn new(n: u128) -> Self {
        debug_assert!(n & 1 == 1 && n > 1 && n >> 96 == 0);
        let one = (1u128 << 96) % n;
        let mut m = Mont96 {
            n,
            one,
            r2: 0,
            // black_box: see Mont64::new.
            digits: core::hint::black_box((digits::<_, 32>(n), neg_inv32(n))),
        };
        m.r2 = (0..96).fold(one, |r, _| m.add(r, r));
        m
    }
}

impl Mont96 {
    #[inline(always)]
    fn mul_word(&self, a: u128, b: u128) -> u128 {
        mul_cios32::<3, false>(a, b, self.n, self.digits.0, self.digits.1)
    }

    /// a·b/R in [0, 2n) for a, b < 2n, when 4n ≤ R.
    #[inline(always)]
    fn mul_lazy(&self, a: u128, b: u128) -> u128 {
        mul_cios32::<3, true>(a, b, self.n, self.digits.0, self.digits.1)
    }
}

word_monty!(Mont96, u128);

/// a·b·2^(−B·L) mod n, in [0, 2n), for n < 2^(B·L) ≤ 2^127 and a, b below
/// 2^(B·L) with a·b < n·2^(B·L) (a, b < n; or a, b < 2n when 4n ≤ 2^(B·L)), by
/// Montgomery multiplication (CIOS) in L digits of B ≤ 30 bits. A product of
/// two digits is below 2^(2B), so the at most 2L that meet in one digit add
/// up without carrying (2L·2^(2B) < 2^64): a digit of b costs 2L
/// multiply-adds, the reduction digit and one carry, against
/// [`mul_cios32`]'s carry after every product.
#[inline(always)]
fn mul_cios_lazy<const L: usize, const B: u32>(a: u128, b: u128, nd: [u64; L], ninv: u64) -> u128 {
    let mask: u64 = (1 << B) - 1;
    let a: [u64; L] = digits::<L, B>(a);
    let mut t = [0u64; L];
    for bi in digits::<L, B>(b) {
        for j in 0..L {
            t[j] += a[j] * bi;
        }
        // t + m·n ≡ 0 mod 2^B; then t /= 2^B, the low digit's carry into
        // the next.
        // The low B bits of a product depend only on the factors' low B bits.
        let m = t[0].wrapping_mul(ninv) & mask;
        let c = (t[0] + m * nd[0]) >> B;
        for j in 1..L {
            t[j - 1] = t[j] + m * nd[j];
        }
        t[0] += c;
        t[L - 1] = 0;
    }
    // The value is below 2n < 2^(B·L + 1): carry it into place.
    let mut r = 0u128;
    let mut c = 0;
    for (j, &d) in t.iter().enumerate() {
        let s = d + c;
        r |= u128::from(s & mask) << (B * j as u32);
        c = s >> B;
    }
    r | u128::from(c) << (B * L as u32)
}

/// Montgomery arithmetic modulo an odd n < 2^(B·L) ≤ 2^127 with
/// R = 2^(B·L), in L digits of B bits ([`mul_cios_lazy`]): on wasm32
/// (without the wide-arithmetic proposal) cheaper than 32-bit digits, which
/// carry after every product. Not used natively, where [`Mont128`]'s 64-bit
/// products are cheaper.
#[derive(Clone, Copy, Debug)]
pub(crate) struct MontDigits<const L: usize, const B: u32> {
    n: u128,
    one: u128,
    r2: u128,
    digits: ([u64; L], u64),
}

/// Three 30-bit digits, for n < 2^90: on wasm32 40+40-bit semiprimes
/// 2.02–2.22 → 1.86–1.89 ms and 44+45-bit 6.95–7.33 → 4.77–5.06 ms against
/// [`Mont96`]'s 32-bit digits (node, alternating).
pub(crate) type Mont90 = MontDigits<3, 30>;

/// Four 30-bit digits, for n < 2^120.
pub(crate) type Mont120 = MontDigits<4, 30>;

impl<const L: usize, const B: u32> MontDigits<L, B> {
    const BITS: u32 = {
        // 2L products of two digits and L carries stay below 2^64; the
        // result, below 2n, fits a u128.
        assert!(B <= 30 && 2 * L as u64 * (1 << (2 * B)) <= 1 << 63 && B * L as u32 <= 127);
        B * L as u32
    };

    #[inline(always)]
    fn mul_word(&self, a: u128, b: u128) -> u128 {
        let r = self.mul_lazy(a, b);
        if r >= self.n {
            r - self.n
        } else {
            r
        }
    }

    /// a·b/R in [0, 2n) for a, b < 2n, when 4n ≤ R.
    #[inline(always)]
    fn mul_lazy(&self, a: u128, b: u128) -> u128 {
        mul_cios_lazy::<L, B>(a, b, self.digits.0, self.digits.1)
    }
}

word_monty!(Mont90, u128);
word_monty!(Mont120, u128);

impl<const L: usize, const B: u32> MontDigits<L, B>
where
    Self: Monty<W = u128>,
{
    pub(crate) fn new(n: u128) -> Self {
        debug_assert!(n & 1 == 1 && n > 1 && n >> Self::BITS == 0);
        let one = (1u128 << Self::BITS) % n;
        let mut m = MontDigits {
            n,
            one,
            r2: 0,
            // black_box: see Mont64::new.
            digits: core::hint::black_box((digits::<L, B>(n), neg_inv32(n) & ((1 << B) - 1))),
        };
        m.r2 = (0..Self::BITS).fold(one, |r, _| m.add(r, r));
        m
    }
}

/// `$body` with `$m` bound to a two-word Montgomery form for the odd n > 1:
/// on wasm32 the narrowest digit form that holds n ([`Mont90`], [`Mont96`],
/// [`Mont120`], each measured cheaper than the next below its bound),
/// natively [`Mont128`]. One choice for factoring and primality alike.
macro_rules! with_two_word_monty {
    ($n:expr, |$m:ident| $body:expr) => {{
        let n: u128 = $n;
        if cfg!(narrow_mul) && n >> 90 == 0 {
            let $m = &$crate::arith::Mont90::new(n);
            $body
        } else if cfg!(narrow_mul) && n >> 96 == 0 {
            let $m = &$crate::arith::Mont96::new(n);
            $body
        } else if cfg!(narrow_mul) && n >> 120 == 0 {
            let $m = &$crate::arith::Mont120::new(n);
            $body
        } else {
            let $m = &$crate::arith::Mont128::new(n);
            $body
        }
    }};
}
pub(crate) use with_two_word_monty;

/// Montgomery arithmetic modulo an odd 128-bit n > 1.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Mont128 {
    n: u128,
    ninv: u128,
    one: u128,
    r2: u128,
    /// n's 32-bit digits and −n⁻¹ mod 2^32, for [`mul_cios32`] on wasm32.
    #[cfg(narrow_mul)]
    digits: ([u64; 4], u64),
}

impl Mont128 {
    pub(crate) fn new(n: u128) -> Self {
        debug_assert!(n & 1 == 1 && n > 1);
        // 2^128 mod n == (2^128 − n) mod n.
        let one = 0u128.wrapping_sub(n) % n;
        let ninv = inv128(n);
        let mut m = Mont128 {
            n,
            ninv,
            one,
            r2: 0,
            // black_box: see Mont64::new.
            #[cfg(narrow_mul)]
            digits: core::hint::black_box((digits::<_, 32>(n), neg_inv32(n))),
        };
        let mut r2 = one;
        for _ in 0..128 {
            r2 = m.add(r2, r2);
        }
        m.r2 = r2;
        m
    }

    /// a·b·2^−128 mod n with 64-bit products (what `mul` is natively).
    #[cfg_attr(narrow_mul, allow(dead_code))]
    #[inline(always)]
    fn redc_product(&self, a: u128, b: u128) -> u128 {
        let (lo, hi) = mul_wide(a, b);
        self.redc(lo, hi)
    }

    /// hi(t) and hi(m·n) for t = (lo, hi), m = t·n⁻¹ mod R (as
    /// [`Mont64::redc_halves`]).
    #[inline(always)]
    fn redc_halves(&self, lo: u128, hi: u128) -> (u128, u128) {
        let (_, mn_hi) = mul_wide(mul_lo128(lo, self.ninv), self.n);
        (hi, mn_hi)
    }

    #[inline(always)]
    fn redc(&self, lo: u128, hi: u128) -> u128 {
        let (hi, mn_hi) = self.redc_halves(lo, hi);
        let (d, borrow) = hi.overflowing_sub(mn_hi);
        if borrow {
            d.wrapping_add(self.n)
        } else {
            d
        }
    }
}

impl Mont128 {
    #[cfg(not(narrow_mul))]
    #[inline(always)]
    fn mul_word(&self, a: u128, b: u128) -> u128 {
        self.redc_product(a, b)
    }
    #[cfg(narrow_mul)]
    #[inline(always)]
    fn mul_word(&self, a: u128, b: u128) -> u128 {
        mul_cios32::<4, false>(a, b, self.n, self.digits.0, self.digits.1)
    }

    /// a·b/R in [0, 2n) for a, b < 2n, when 4n ≤ R: (a·b − m·n)/R + n,
    /// without looking at the borrow.
    #[cfg(not(narrow_mul))]
    #[inline(always)]
    fn mul_lazy(&self, a: u128, b: u128) -> u128 {
        let (lo, hi) = mul_wide(a, b);
        let (hi, mn_hi) = self.redc_halves(lo, hi);
        hi.wrapping_sub(mn_hi).wrapping_add(self.n)
    }
    #[cfg(narrow_mul)]
    #[inline(always)]
    fn mul_lazy(&self, a: u128, b: u128) -> u128 {
        mul_cios32::<4, true>(a, b, self.n, self.digits.0, self.digits.1)
    }
}

word_monty!(Mont128, u128);

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg_attr(not(target_arch = "wasm32"), test)]
    #[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
    fn wide_products_from_halves_are_exact() {
        let mut rng = fastrand::Rng::with_seed(3);
        for _ in 0..100_000 {
            let (a, b) = (rng.u64(..) >> rng.u32(0..64), rng.u64(..));
            let t = a as u128 * b as u128;
            assert_eq!(mul_wide64_halves(a, b), (t as u64, (t >> 64) as u64));
            let t = a as u128 * a as u128;
            assert_eq!(sqr_wide64_halves(a), (t as u64, (t >> 64) as u64));
        }
        assert_eq!(mul_wide64_halves(u64::MAX, u64::MAX), (1, u64::MAX - 1));
        assert_eq!(sqr_wide64_halves(u64::MAX), (1, u64::MAX - 1));
    }

    #[cfg_attr(not(target_arch = "wasm32"), test)]
    #[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
    fn high_words_from_the_low_word_are_exact() {
        let mut rng = fastrand::Rng::with_seed(5);
        let halves = |n: u64| (n & 0xffff_ffff, n >> 32);
        let edges = [0, 1, u64::MAX, u64::MAX - 1, 1 << 32, (1 << 32) - 1];
        let pairs = edges
            .iter()
            .flat_map(|&m| edges.iter().map(move |&n| (m, n)))
            .chain((0..100_000).map(|_| (rng.u64(..) >> rng.u32(0..64), rng.u64(..))));
        for (m, n) in pairs.collect::<Vec<_>>() {
            let t = m as u128 * n as u128;
            assert_eq!(
                mul_hi_given_lo(m, halves(n), t as u64),
                (t >> 64) as u64,
                "{m}·{n}"
            );
        }
    }

    #[cfg_attr(not(target_arch = "wasm32"), test)]
    #[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
    fn low_128_bit_products_are_exact() {
        let mut rng = fastrand::Rng::with_seed(4);
        for _ in 0..100_000 {
            let (a, b) = (rng.u128(..) >> rng.u32(0..128), rng.u128(..));
            assert_eq!(mul_lo128(a, b), a.wrapping_mul(b));
        }
    }

    #[cfg_attr(not(target_arch = "wasm32"), test)]
    #[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
    fn mont32_matches_plain_modmul() {
        let mut rng = fastrand::Rng::with_seed(3);
        for i in 0..20_000 {
            // Odd moduli of every size, the largest ones included.
            let n = if i < 8 {
                u32::MAX - 2 * i
            } else {
                rng.u32(3..) | 1
            };
            let m = Mont32::new(n);
            let (a, b) = (rng.u32(..n), rng.u32(..n));
            let want = ((u64::from(a) * u64::from(b)) % u64::from(n)) as u32;
            let got = m.mul(m.to_mont(a), m.to_mont(b));
            assert_eq!(got, m.to_mont(want), "n={n} a={a} b={b}");
            assert_eq!(
                m.add(m.to_mont(a), m.to_mont(b)),
                m.to_mont(((u64::from(a) + u64::from(b)) % u64::from(n)) as u32)
            );
            assert_eq!(
                m.sub(m.to_mont(a), m.to_mont(b)),
                m.to_mont(((u64::from(a) + u64::from(n) - u64::from(b)) % u64::from(n)) as u32)
            );
            assert_eq!(m.half(m.add(m.to_mont(a), m.to_mont(a))), m.to_mont(a));
        }
    }

    #[cfg_attr(not(target_arch = "wasm32"), test)]
    #[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
    fn mont64_matches_plain_modmul() {
        let mut rng = fastrand::Rng::with_seed(1);
        for _ in 0..20_000 {
            let n = rng.u64(3..) | 1;
            let m = Mont64::new(n);
            let (a, b) = (rng.u64(..n), rng.u64(..n));
            let want = ((a as u128 * b as u128) % n as u128) as u64;
            let got = m.mul(m.to_mont(a), m.to_mont(b));
            assert_eq!(got, m.to_mont(want), "n={n} a={a} b={b}");
        }
    }

    #[cfg_attr(not(target_arch = "wasm32"), test)]
    #[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
    fn mont128_matches_u64_reference_on_small_moduli_and_identities_on_large() {
        let mut rng = fastrand::Rng::with_seed(2);
        for _ in 0..5_000 {
            let n = (rng.u64(3..) | 1) as u128;
            let m = Mont128::new(n);
            let (a, b) = (rng.u128(..n), rng.u128(..n));
            let want = (a * b) % n;
            assert_eq!(m.mul(m.to_mont(a), m.to_mont(b)), m.to_mont(want));
        }
        for _ in 0..5_000 {
            let n = rng.u128((1 << 100)..) | 1;
            let m = Mont128::new(n);
            let a = rng.u128(..n);
            let am = m.to_mont(a);
            // (a + a) == 2a and a·1 == a and a·2 == a + a
            let two = m.to_mont(2);
            assert_eq!(m.mul(am, m.one()), am);
            assert_eq!(m.mul(am, two), m.add(am, am));
            assert_eq!(m.half(m.add(am, am)), am);
            assert_eq!(m.add(m.sub(am, two), two), am);
        }
    }

    #[cfg_attr(not(target_arch = "wasm32"), test)]
    #[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
    fn mul_wide_is_exact() {
        let mut rng = fastrand::Rng::with_seed(3);
        for _ in 0..10_000 {
            let (a, b) = (rng.u128(..), rng.u128(..));
            let r = schoolbook(a, b);
            let want_lo = r[0] as u128 | (r[1] as u128) << 64;
            let want_hi = r[2] as u128 | (r[3] as u128) << 64;
            assert_eq!(mul_wide(a, b), (want_lo, want_hi));
        }
        assert_eq!(mul_wide(u128::MAX, u128::MAX), (1, u128::MAX - 1));
    }

    #[cfg_attr(not(target_arch = "wasm32"), test)]
    #[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
    fn double_precision_quotients_give_exact_residues() {
        let mut rng = fastrand::Rng::with_seed(17);
        let moduli: Vec<u64> = [
            (1u64 << 50) - 27,
            (1 << 50) - 1,
            (1 << 49) + 1,
            3,
            1_000_000_007,
        ]
        .into_iter()
        .chain((0..200).map(|i| rng.u64(3..1 << (20 + i % 31)) | 1))
        .collect();
        for n in moduli {
            let m = ModF64::new(n);
            let wide = |x: u128| (x % u128::from(n)) as u64;
            for (a, b) in [(0, 0), (n - 1, n - 1), (1, n - 1), (n - 1, n - 2)]
                .into_iter()
                .chain((0..500).map(|_| (rng.u64(..n), rng.u64(..n))))
            {
                let (a1, b1) = (u128::from(a), u128::from(b));
                assert_eq!(m.mul(a, b), wide(a1 * b1), "{a}·{b} mod {n}");
                assert_eq!(m.add(a, b), wide(a1 + b1), "{a}+{b} mod {n}");
                assert_eq!(
                    m.sub(a, b),
                    wide(a1 + u128::from(n) - b1),
                    "{a}−{b} mod {n}"
                );
                assert_eq!(wide(u128::from(m.half(a)) * 2), a, "{a}/2 mod {n}");
            }
        }
    }

    #[cfg_attr(not(target_arch = "wasm32"), test)]
    #[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
    fn lazy_reduction_stays_below_2n_and_agrees_mod_n() {
        /// Every operation on residues in [0, 2n), chained, against the
        /// reduced type; results compared mod n.
        fn check<L: Monty, M: Monty<W = L::W>>(lazy: &L, exact: &M, rng: &mut fastrand::Rng) {
            let n = exact.n().to_u128();
            let below_2n = |x: L::W| {
                assert!(x.to_u128() < 2 * n, "{x:?} ≥ 2·{n}");
                x.to_u128() % n
            };
            let (mut x, mut y) = (lazy.one(), exact.one());
            for i in 0..2000u64 {
                let v = L::W::from_u128(rng.u128(..) % n);
                let (lv, ev) = (lazy.to_mont(v), exact.to_mont(v));
                (x, y) = match i % 4 {
                    0 => (lazy.mul(x, lv), exact.mul(y, ev)),
                    1 => (lazy.add(x, lv), exact.add(y, ev)),
                    2 => (lazy.sub(x, lv), exact.sub(y, ev)),
                    _ => (lazy.half(lazy.mul(x, x)), exact.half(exact.mul(y, y))),
                };
                assert_eq!(below_2n(x), y.to_u128(), "step {i} mod {n}");
            }
        }
        let mut rng = fastrand::Rng::with_seed(13);
        for n in [(1u64 << 62) - 57, (1 << 62) - 1, 3, 1_000_000_007] {
            check(&Mont64Lazy::new(n), &Mont64::new(n), &mut rng);
        }
        for n in [(1u64 << 48) - 59, (1 << 48) - 1, 3, 1_000_000_007] {
            check(&ModF64Lazy::new(n), &ModF64::new(n), &mut rng);
        }
        for n in [(1u32 << 30) - 35, (1 << 30) - 1, 3, 65_537] {
            check(&Mont32Lazy::new(n), &Mont32::new(n), &mut rng);
        }
        for _ in 0..50 {
            let n = rng.u64(3..1 << 62) | 1;
            check(&Mont64Lazy::new(n), &Mont64::new(n), &mut rng);
            let n = rng.u32(3..1 << 30) | 1;
            check(&Mont32Lazy::new(n), &Mont32::new(n), &mut rng);
            let n = rng.u64(3..1 << 48) | 1;
            check(&ModF64Lazy::new(n), &ModF64::new(n), &mut rng);
        }
        // Two words: each digit form up to its bound, and Mont128.
        let top = |bits: u32| (1u128 << bits) - 1;
        for n in [top(88), top(88) - 2, (1 << 64) + 1, 3] {
            check(&Mont90Lazy::new(n), &Mont90::new(n), &mut rng);
        }
        for n in [top(94), top(94) - 2, (1 << 88) + 1, 3] {
            check(&Mont96Lazy::new(n), &Mont96::new(n), &mut rng);
        }
        for n in [top(118), top(118) - 2, (1 << 96) + 1, 3] {
            check(&Mont120Lazy::new(n), &Mont120::new(n), &mut rng);
        }
        for n in [top(126), top(126) - 2, (1 << 120) + 1, (1 << 64) + 1, 3] {
            check(&Mont128Lazy::new(n), &Mont128::new(n), &mut rng);
        }
        for _ in 0..20 {
            let mut odd = |lo: u32, hi: u32| rng.u128(1 << lo..1 << hi) | 1;
            let (a, b, c, d) = (odd(2, 88), odd(88, 94), odd(94, 118), odd(64, 126));
            check(&Mont90Lazy::new(a), &Mont90::new(a), &mut rng);
            check(&Mont96Lazy::new(b), &Mont96::new(b), &mut rng);
            check(&Mont120Lazy::new(c), &Mont120::new(c), &mut rng);
            check(&Mont128Lazy::new(d), &Mont128::new(d), &mut rng);
        }
    }

    #[cfg_attr(not(target_arch = "wasm32"), test)]
    #[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
    fn cios_in_32_bit_digits_agrees_with_mont128() {
        let mut rng = fastrand::Rng::with_seed(7);
        // Moduli just below 2^128 and 2^96 make the carry digit matter.
        let moduli: Vec<u128> = [
            u128::MAX,
            (1 << 127) + 1,
            (1 << 64) + 13,
            3 << 80 | 1,
            (1 << 96) - 1,
            (1 << 96) - 3,
            (1 << 90) - 1,
            (1 << 89) + 1,
            (1 << 120) - 1,
            (1 << 119) + 1,
            (1 << 120) - 3,
        ]
        .into_iter()
        .chain((0..600).map(|i| rng.u128(3..) >> (i % 3 * 8 + i % 2 * 32) | 1))
        .collect();
        for n in moduli {
            let m = Mont128::new(n);
            let m96 = (n >> 96 == 0).then(|| Mont96::new(n));
            let m90 = (n >> 90 == 0).then(|| Mont90::new(n));
            let m120 = (n >> 120 == 0).then(|| Mont120::new(n));
            for (a, b) in [(0, 0), (n - 1, n - 1), (1, n - 1)]
                .into_iter()
                .chain((0..50).map(|_| (rng.u128(..n), rng.u128(..n))))
            {
                let want = m.redc_product(a, b);
                let got = mul_cios32::<4, false>(a, b, n, digits::<4, 32>(n), neg_inv32(n));
                assert_eq!(got, want, "{a}·{b} mod {n}");
                // Same residue a·b mod n out of either Montgomery form.
                let want = m.mul(m.mul(m.to_mont(a), m.to_mont(b)), 1);
                if let Some(m96) = &m96 {
                    let (am, bm) = (m96.to_mont(a), m96.to_mont(b));
                    let product = m96.mul(am, bm);
                    assert!(am < n && bm < n && product < n, "{a}·{b} mod {n}");
                    assert_eq!(m96.mul(product, 1), want, "{a}·{b} mod {n}");
                }
                if let Some(m90) = &m90 {
                    let (am, bm) = (m90.to_mont(a), m90.to_mont(b));
                    let product = m90.mul(am, bm);
                    assert!(am < n && bm < n && product < n, "{a}·{b} mod {n}");
                    assert_eq!(m90.mul(product, 1), want, "{a}·{b} mod {n}");
                }
                if let Some(m120) = &m120 {
                    let (am, bm) = (m120.to_mont(a), m120.to_mont(b));
                    let product = m120.mul(am, bm);
                    assert!(am < n && bm < n && product < n, "{a}·{b} mod {n}");
                    assert_eq!(m120.mul(product, 1), want, "{a}·{b} mod {n}");
                }
            }
        }
    }

    /// Schoolbook 2×2-limb product, four 64-bit limbs little-endian.
    fn schoolbook(a: u128, b: u128) -> [u64; 4] {
        let (a, b) = ([a as u64, (a >> 64) as u64], [b as u64, (b >> 64) as u64]);
        let mut res = [0u64; 4];
        for i in 0..2 {
            let mut carry = 0u128;
            for j in 0..2 {
                let t = a[i] as u128 * b[j] as u128 + res[i + j] as u128 + carry;
                res[i + j] = t as u64;
                carry = t >> 64;
            }
            res[i + 2] = carry as u64;
        }
        res
    }

    #[cfg_attr(not(target_arch = "wasm32"), test)]
    #[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
    fn inverses_mod_2_64_are_exact() {
        let mut rng = fastrand::Rng::with_seed(64);
        let odd = (0..100_000).map(|_| rng.u64(..) | 1);
        for n in (1..=1001u64)
            .step_by(2)
            .chain([u64::MAX, u64::MAX - 2, 1 << 63 | 1])
            .chain(odd)
        {
            assert_eq!(n.wrapping_mul(inv64(n)), 1, "{n}");
        }
    }

    #[cfg_attr(not(target_arch = "wasm32"), test)]
    #[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
    fn gcd_works() {
        assert_eq!(gcd(12u64, 18), 6);
        assert_eq!(gcd(0u64, 5), 5);
        assert_eq!(gcd(7u128, 0), 7);
        assert_eq!(gcd(1u128 << 100, 1 << 90), 1 << 90);
        assert_eq!(
            gcd(3u128 * 5 * 7 * (1 << 20), 5 * 7 * 11 * (1 << 3)),
            35 * 8
        );
    }
}
