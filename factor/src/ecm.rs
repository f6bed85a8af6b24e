//! Lenstra's elliptic-curve method on Montgomery curves By² = x³ + Ax² + x,
//! in x-only projective coordinates (X:Z) with Suyama's parametrization
//! (group order divisible by 12). Stage 1 multiplies by every prime power up
//! to B1 with Montgomery's PRAC chains (each prime with the cheapest of ten
//! chain multipliers, chosen at build time: `prac`); stage 2 is the baby-step/giant-step
//! continuation up to B2 with a wheel of 210, testing [kW]Q = ±[d]Q.

use std::sync::OnceLock;

use crate::arith::{gcd, inv_mont, Monty, Word};
use crate::field::{AsField, Field};
use crate::prac::{prac_rule, prac_start, prac_step, PRAC_V, RATIO_BOUND};

/// Stage 2 never goes beyond this bound (size of the prime bitmap).
pub(crate) const MAX_B2: usize = 1 << 22;
const WHEEL: u64 = 210;
/// Odd d < WHEEL/2 coprime to WHEEL: the baby steps.
const BABY: [u64; 24] = [
    1, 11, 13, 17, 19, 23, 29, 31, 37, 41, 43, 47, 53, 59, 61, 67, 71, 73, 79, 83, 89, 97, 101, 103,
];

/// Builds every table below now rather than on first use.
pub(crate) fn warm_up() {
    primes();
    pair_masks();
}

/// Bitmap of odd primes below MAX_B2 (bit i ↔ 2i + 1), built once
/// (256 KiB, a few milliseconds).
pub(crate) fn primes() -> &'static [u64] {
    static BITS: OnceLock<Vec<u64>> = OnceLock::new();
    BITS.get_or_init(|| {
        let odd = MAX_B2 / 2;
        let mut bits = vec![!0u64; odd.div_ceil(64)];
        bits[0] &= !1; // 1 is not prime
        let mut i = 1;
        while (2 * i + 1) * (2 * i + 1) < MAX_B2 {
            if bits[i / 64] >> (i % 64) & 1 == 1 {
                let p = 2 * i + 1;
                let mut j = (p * p) / 2;
                while j < odd {
                    bits[j / 64] &= !(1 << (j % 64));
                    j += p;
                }
            }
            i += 1;
        }
        bits
    })
}

/// For each giant step k of stage 2 (base kW), bit i is set when kW − d or
/// kW + d is prime, d = `BABY[i]`: the baby steps that step pairs with.
/// Built once from [`primes`] (80 KiB), so stage 2 skips straight to them
/// instead of testing 48 candidates per step on hard-to-predict branches.
fn pair_masks() -> &'static [u32] {
    static MASKS: OnceLock<Vec<u32>> = OnceLock::new();
    MASKS.get_or_init(|| {
        let bits = primes();
        // kW + d stays below MAX_B2.
        let steps = (MAX_B2 as u64 - WHEEL) / WHEEL;
        (0..steps)
            .map(|k| {
                let base = k * WHEEL;
                BABY.iter().enumerate().fold(0, |mask, (i, &d)| {
                    let lo = base > d && is_odd_prime(bits, base - d);
                    if lo || is_odd_prime(bits, base + d) {
                        mask | 1 << i
                    } else {
                        mask
                    }
                })
            })
            .collect()
    })
}

/// Whether `q` < MAX_B2 is an odd prime.
#[inline]
pub(crate) fn is_odd_prime(bits: &[u64], q: u64) -> bool {
    let i = (q / 2) as usize;
    q & 1 == 1 && bits[i / 64] >> (i % 64) & 1 == 1
}

/// Every odd prime up to `s`, from the shared bitmap (bit i ↔ 2i + 1; 1 is
/// unset).
pub(crate) fn odd_primes_upto(bits: &[u64], s: u64) -> impl Iterator<Item = u64> + '_ {
    let last_word = (s / 2) as usize / 64;
    bits.iter()
        .enumerate()
        .take(last_word + 1)
        .flat_map(|(w, &b)| {
            core::iter::successors((b != 0).then_some(b), |&b| {
                let rest = b & (b - 1);
                (rest != 0).then_some(rest)
            })
            .map(move |b| (w * 64 + b.trailing_zeros() as usize) as u64 * 2 + 1)
        })
        .take_while(move |&p| p <= s)
}

/// Largest B1 that [`find_factor`] uses.
const MAX_B1: u64 = MAX_B2 as u64 / 60;
const _: () = assert!(MAX_B1 == RATIO_BOUND);

// `RATIOS: [u8; _]`: the index in `PRAC_V` of the cheapest chain
// (`best_ratio`) for each odd prime up to `RATIO_BOUND`, in order; made
// by the build script.
include!(concat!(env!("OUT_DIR"), "/prac_ratios.rs"));

/// The odd primes up to `b1` (at most [`MAX_B1`]), each with the index of
/// its chain ratio in [`PRAC_V`].
fn stage1_chain(b1: u64) -> impl Iterator<Item = (u64, u8)> {
    odd_primes_upto(primes(), b1.min(MAX_B1)).zip(RATIOS.iter().copied())
}

#[derive(Clone, Copy)]
struct Pt<W> {
    x: W,
    z: W,
}

struct Curve<'f, F: Field> {
    f: &'f F,
    a24: F::E,
}

impl<F: Field> Curve<'_, F> {
    /// Whether a point step is a function of its own rather than inlined
    /// into PRAC's rules, the ladder and stage 2: on wasm32 for one-word
    /// residues only. Two-word steps inlined (2026-12-07, old and new build
    /// alternating in one page): Chromium 156 40+40- to 56+56-bit
    /// semiprimes 5–8 % faster, 63+63 and 64+64 2–9 % (noisy), random
    /// 90-bit 3–5 %; Firefox 153 40+40 5 %, 48+48 to 63+63 9–11 %, random
    /// 90-bit 5 %; the wide-arithmetic build in Chromium 48+48 to 63+63
    /// 9–10 %, random 90-bit 5–8 %. One-word forms within 1 % either way,
    /// so they stay apart (the standard build is 1.5 MB instead of 0.73 MB,
    /// 469 KiB by `gzip -9` instead of 267; the wide one 0.49 MB instead of
    /// 0.41). Under node 20 (V8 11.3) the inlined steps are slower — 56+56
    /// 4–7 %, 63+63 18 %, 64+64 30 % — which is why they were out of line
    /// before. Natively, where a product is a few instructions, inlining is
    /// faster (56+56 8 %, 64+64 5 %).
    const APART: bool = cfg!(target_arch = "wasm32") && core::mem::size_of::<F::E>() <= 8;

    #[inline(always)]
    fn dbl(&self, p: Pt<F::E>) -> Pt<F::E> {
        if Self::APART {
            self.dbl_apart(p)
        } else {
            self.dbl_here(p)
        }
    }

    #[inline(never)]
    fn dbl_apart(&self, p: Pt<F::E>) -> Pt<F::E> {
        self.dbl_here(p)
    }

    #[inline(always)]
    fn dbl_here(&self, p: Pt<F::E>) -> Pt<F::E> {
        let f = self.f;
        let s = f.sqr(f.add(p.x, p.z));
        let d = f.sqr(f.sub(p.x, p.z));
        let t = f.sub(s, d); // 4XZ
        Pt {
            x: f.mul(s, d),
            z: f.mul(t, f.add(d, f.mul(self.a24, t))),
        }
    }

    /// P + Q given P − Q.
    #[inline(always)]
    fn add(&self, p: Pt<F::E>, q: Pt<F::E>, diff: Pt<F::E>) -> Pt<F::E> {
        if Self::APART {
            self.add_apart(p, q, diff)
        } else {
            self.add_here(p, q, diff)
        }
    }

    #[inline(never)]
    fn add_apart(&self, p: Pt<F::E>, q: Pt<F::E>, diff: Pt<F::E>) -> Pt<F::E> {
        self.add_here(p, q, diff)
    }

    #[inline(always)]
    fn add_here(&self, p: Pt<F::E>, q: Pt<F::E>, diff: Pt<F::E>) -> Pt<F::E> {
        let f = self.f;
        let u = f.mul(f.sub(p.x, p.z), f.add(q.x, q.z));
        let v = f.mul(f.add(p.x, p.z), f.sub(q.x, q.z));
        Pt {
            x: f.mul(diff.z, f.sqr(f.add(u, v))),
            z: f.mul(diff.x, f.sqr(f.sub(u, v))),
        }
    }

    /// ([k]P, [k+1]P) by the Montgomery ladder (k ≥ 1).
    fn ladder(&self, p: Pt<F::E>, k: u64) -> (Pt<F::E>, Pt<F::E>) {
        let (mut r0, mut r1) = (p, self.dbl(p));
        for i in (0..63 - k.leading_zeros()).rev() {
            if k >> i & 1 == 1 {
                r0 = self.add(r1, r0, p);
                r1 = self.dbl(r1);
            } else {
                r1 = self.add(r0, r1, p);
                r0 = self.dbl(r0);
            }
        }
        (r0, r1)
    }

    /// The baby steps [d]Q, d in [`BABY`], and the giant step [WHEEL]Q, in
    /// two doublings and 35 additions: the odd multiples up to 29 one after
    /// another, each one coprime to 30 beyond as [d − 30]Q + [30]Q, then
    /// [210]Q = 2·([103]Q + [2]Q).
    fn baby_steps(&self, q: Pt<F::E>) -> ([Pt<F::E>; BABY.len()], Pt<F::E>) {
        // [d]Q at index d/2 for odd d ≤ 103 (only those that are needed).
        let mut odd = [q; 52];
        let q2 = self.dbl(q);
        odd[1] = self.add(q2, q, q);
        for i in 2..15 {
            odd[i] = self.add(odd[i - 1], q2, odd[i - 2]);
        }
        let q30 = self.dbl(odd[7]);
        for d in (31..=103usize)
            .step_by(2)
            .filter(|d| !d.is_multiple_of(3) && !d.is_multiple_of(5))
        {
            // ([d − 30]Q) − ([30]Q) = ±[d − 60]Q
            odd[d / 2] = self.add(odd[(d - 30) / 2], q30, odd[d.abs_diff(60) / 2]);
        }
        let gw = self.dbl(self.add(odd[103 / 2], q2, odd[101 / 2]));
        (BABY.map(|d| odd[d as usize / 2]), gw)
    }

    /// [k]P for odd k ≥ 3 by a PRAC chain with ratio `v`. Invariant:
    /// A = [a]P, B = [b]P, C = [a − b]P and k = d·a + e·b; it ends at
    /// d = e = 1 with A + B (x-only addition needs only ±, so swapping A and B
    /// is free).
    fn prac(&self, p: Pt<F::E>, k: u64, v: f64) -> Pt<F::E> {
        let (mut d, mut e) = prac_start(k, v);
        let (mut a, mut b, mut c) = (self.dbl(p), p, p);
        while d != e {
            if d < e {
                (d, e) = (e, d);
                (a, b) = (b, a);
            }
            let (rule, _) = prac_rule(d, e);
            match rule {
                1 => {
                    // A, B ← 2a+b, a+2b
                    let t = self.add(a, b, c);
                    let t2 = self.add(t, a, b);
                    b = self.add(b, t, a);
                    a = t2;
                }
                2 | 4 => {
                    // A, B ← 2a, a+b
                    b = self.add(a, b, c);
                    a = self.dbl(a);
                }
                3 => {
                    // B, C ← a+b, b
                    let t = self.add(b, a, c);
                    c = b;
                    b = t;
                }
                5 => {
                    // A, C ← 2a, 2a−b
                    c = self.add(c, a, b);
                    a = self.dbl(a);
                }
                6 => {
                    // A, B, C ← 3a, 3a+b, b
                    let t1 = self.dbl(a);
                    let t2 = self.add(a, b, c);
                    a = self.add(t1, a, a);
                    let t1 = self.add(t1, t2, c);
                    c = b;
                    b = t1;
                }
                7 => {
                    // A, B ← 3a, 2a+b
                    let t = self.add(a, b, c);
                    b = self.add(t, a, b);
                    let t = self.dbl(a);
                    a = self.add(a, t, a);
                }
                8 => {
                    // A, B, C ← 3a, a+b, 2a−b
                    let t = self.add(a, b, c);
                    c = self.add(a, c, b);
                    b = t;
                    let t = self.dbl(a);
                    a = self.add(a, t, a);
                }
                _ => {
                    // B, C ← 2b, a−2b (C + B with C − B's sum A as "difference")
                    c = self.add(c, b, a);
                    b = self.dbl(b);
                }
            }
            (d, e) = prac_step(rule, d, e);
        }
        self.add(a, b, c)
    }
}

/// Outcome of one curve.
enum Found<W> {
    Factor(W),
    Nothing,
}

fn small<M: Monty>(m: &M, v: u64) -> M::W {
    m.to_mont(M::W::from_u128(u128::from(v) % m.n().to_u128()))
}

/// One curve with Suyama parameter `sigma`, bounds B1 and B2.
///
/// The curve's parameters are set up in `m`; its steps run in `f`, the same
/// n (on wasm32 in digits, `field::Digits`).
fn curve<M: Monty, F: Field>(m: &M, f: &F, sigma: u64, b1: u64, b2: u64) -> Found<M::W> {
    let n = m.n();
    let s = small(m, sigma);
    let u = m.sub(m.sqr(s), small(m, 5));
    let v = m.add(m.add(s, s), m.add(s, s));
    let u3 = m.mul(m.sqr(u), u);
    let v3 = m.mul(m.sqr(v), v);
    let vmu = m.sub(v, u);
    let num = m.mul(m.mul(m.sqr(vmu), vmu), m.add(m.add(m.add(u, u), u), v));
    let den = m.mul(m.mul(u3, v), small(m, 16));
    let a24 = match inv_mont(m, den) {
        Ok(inv) => m.mul(num, inv),
        Err(g) if g != n => return Found::Factor(g),
        Err(_) => return Found::Nothing,
    };
    let c = Curve {
        f,
        a24: f.lift(a24.to_u128()),
    };
    let mut q = Pt {
        x: f.lift(u3.to_u128()),
        z: f.lift(v3.to_u128()),
    };

    // Stage 1: Q = [∏ p^e ≤ B1] P, the power of two by doublings.
    let mut pk = 4u64; // 2^e ≤ B1
    q = c.dbl(c.dbl(q));
    while pk * 2 <= b1 {
        pk *= 2;
        q = c.dbl(q);
    }
    for (p, v) in stage1_chain(b1) {
        let mut e = p;
        loop {
            q = c.prac(q, p, PRAC_V[usize::from(v)]);
            if e * p > b1 {
                break;
            }
            e *= p;
        }
    }
    let g = gcd(M::W::from_u128(f.lower(q.z)), n);
    if g != M::W::ONE {
        return if g == n {
            Found::Nothing
        } else {
            Found::Factor(g)
        };
    }

    // Stage 2: primes in (B1, B2] as kW ± d, found as [kW]Q = ±[d]Q (mod p),
    // i.e. equal x-coordinates X/Z. No inversions: the baby steps get one
    // common denominator Zb and each batch of giant steps one of its own, Zg
    // (see `common_denominator`), so each pair costs a subtraction and the
    // accumulator's multiplication.
    let (baby, gw) = c.baby_steps(q);
    let mut baby_x = [f.zero(); BABY.len()];
    let zb = common_denominator(f, &baby, f.one(), &mut baby_x);
    let bits = primes();
    let masks = pair_masks();
    let reach = BABY[BABY.len() - 1];
    let k0 = (b1 / WHEEL).max(1);
    // [(k0 − 1)W]Q and [k0·W]Q; for k0 = 1 the first is O, never used.
    let (mut g_prev, mut g_cur) = match k0 {
        1 => (gw, gw),
        _ => c.ladder(gw, k0 - 1),
    };
    let mut k = k0;
    let mut acc = f.one();
    let mut giants = [Pt {
        x: f.zero(),
        z: f.zero(),
    }; GIANT_BATCH];
    let mut giant_masks = [0u32; GIANT_BATCH];
    let mut giant_x = [f.zero(); GIANT_BATCH];
    let mut baby_scaled = [f.zero(); BABY.len()];
    while k * WHEEL <= b2 + WHEEL {
        let mut len = 0;
        while len < GIANT_BATCH && k * WHEEL <= b2 + WHEEL {
            let base = k * WHEEL;
            let mask = match masks.get(k as usize) {
                // Every candidate of this step lies inside (B1, B2].
                Some(&mask) if base - reach > b1 && base + reach <= b2 => mask,
                _ => BABY.iter().enumerate().fold(0u32, |mask, (i, &dd)| {
                    let (lo, hi) = (base - dd, base + dd);
                    let want = (lo > b1 && lo <= b2 && is_odd_prime(bits, lo))
                        || (hi > b1 && hi <= b2 && is_odd_prime(bits, hi));
                    mask | u32::from(want) << i
                }),
            };
            if mask != 0 {
                giants[len] = g_cur;
                giant_masks[len] = mask;
                len += 1;
            }
            // [(k+1)W]Q; from [W]Q the difference would be O, so double.
            let next = if k == 1 {
                c.dbl(g_cur)
            } else {
                c.add(g_cur, gw, g_prev)
            };
            g_prev = g_cur;
            g_cur = next;
            k += 1;
        }
        // Xk/Zk = Xd/Zb ⇔ Xk·Zb·∏(other Zg) = Xd·Zg.
        let zg = common_denominator(f, &giants[..len], zb, &mut giant_x[..len]);
        let used = giant_masks[..len].iter().fold(0, |a, &b| a | b);
        for i in set_bits(used) {
            baby_scaled[i] = f.mul(baby_x[i], zg);
        }
        for (&x, &mask) in giant_x[..len].iter().zip(&giant_masks[..len]) {
            for i in set_bits(mask) {
                acc = f.mul(acc, f.sub(x, baby_scaled[i]));
            }
        }
    }
    let g = gcd(M::W::from_u128(f.lower(acc)), n);
    if g != M::W::ONE && g != n {
        Found::Factor(g)
    } else {
        Found::Nothing
    }
}

/// The indices of the set bits of `mask`, lowest first.
fn set_bits(mut mask: u32) -> impl Iterator<Item = usize> {
    core::iter::from_fn(move || {
        let i = mask.trailing_zeros() as usize;
        mask &= mask.wrapping_sub(1);
        (i < 32).then_some(i)
    })
}

/// Giant steps of stage 2 that share one common denominator.
const GIANT_BATCH: usize = 32;

/// Brings the points' x-coordinates X/Z to one denominator without an
/// inversion: writes `scale`·X_i·∏_{j≠i} Z_j to `xs` and returns ∏ Z_j, so
/// X_i/Z_i = xs_i / (`scale`·∏ Z_j). Four multiplications per point (prefix
/// products forwards, suffix products backwards).
fn common_denominator<F: Field>(f: &F, pts: &[Pt<F::E>], scale: F::E, xs: &mut [F::E]) -> F::E {
    let mut prod = f.one();
    for (x, p) in xs.iter_mut().zip(pts) {
        *x = prod;
        prod = f.mul(prod, p.z);
    }
    let mut suffix = scale;
    for (x, p) in xs.iter_mut().zip(pts).rev() {
        *x = f.mul(f.mul(*x, suffix), p.x);
        suffix = f.mul(suffix, p.z);
    }
    prod
}

/// Finds a non-trivial factor of the odd composite `m.n()` (not a prime
/// power), trying curves with growing bounds until one succeeds.
pub(crate) fn find_factor<M: Monty>(m: &M) -> M::W {
    find_factor_in(m, &AsField(*m))
}

/// [`find_factor`] with the curves' steps in `f` (for `m`'s n).
pub(crate) fn find_factor_in<M: Monty, F: Field>(m: &M, f: &F) -> M::W {
    let bits = M::W::BITS - m.n().lz();
    // A factor has at most half the bits; pick B1 for that size (GMP-ECM-like).
    let mut b1: u64 = match bits / 2 {
        0..=20 => 40,
        21..=26 => 80,
        27..=32 => 150,
        33..=38 => 300,
        39..=44 => 600,
        45..=50 => 1200,
        51..=56 => 2500,
        _ => 5000,
    };
    let mut sigma = 6;
    loop {
        for _ in 0..8 {
            let b2 = (b1 * 50).min(MAX_B2 as u64 - WHEEL - 1);
            if let Found::Factor(g) = curve(m, f, sigma, b1, b2) {
                return g;
            }
            sigma += 1;
        }
        b1 = (b1 * 3 / 2).min(MAX_B1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::arith::{
        ModF64, ModF64Lazy, Mont120, Mont128, Mont32, Mont32Lazy, Mont64, Mont64Lazy, Mont90,
        Mont96,
    };
    use crate::field::Digits;
    use crate::prac::{best_ratio, prac_cost};

    #[cfg_attr(not(target_arch = "wasm32"), test)]
    #[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
    fn inverse_is_right() {
        fn check<M: Monty>(m: &M, p: u128) {
            // n = p·q: every a below p·3 not divisible by p or q has an
            // inverse; multiples of p give p (or n for 0).
            for a in (1..2000u128).chain([p - 1, p + 1, 3 * p - 2]) {
                let am = m.to_mont(M::W::from_u128(a));
                match inv_mont(m, am) {
                    // Mod n: lazy types keep residues below 2n.
                    Ok(inv) => {
                        let n = m.n().to_u128();
                        assert_eq!(m.mul(am, inv).to_u128() % n, m.one().to_u128() % n, "{a}");
                    }
                    Err(g) => assert_eq!(m.n().to_u128() % g.to_u128(), 0, "{a}"),
                }
            }
            let pm = m.to_mont(M::W::from_u128(p));
            assert_eq!(inv_mont(m, pm), Err(M::W::from_u128(p)));
            assert_eq!(inv_mont(m, M::W::ZERO), Err(m.n()));
        }
        check(&Mont32::new(65_521 * 65_519), 65_521);
        check(&Mont64::new(1_000_000_007 * 3), 1_000_000_007);
        check(&Mont64Lazy::new(1_000_000_007 * 3), 1_000_000_007);
        check(&ModF64::new(1_000_000_007 * 3), 1_000_000_007);
        check(&ModF64Lazy::new(1_000_000_007 * 3), 1_000_000_007);
        check(&Mont64::new(4_294_967_291 * 4_294_967_279), 4_294_967_291);
        let p = 1_099_511_627_689u128;
        check(&Mont128::new(p * 1_099_511_627_791), p);
        check(&Mont96::new(p * 1_099_511_627_791), p);
        check(&Mont120::new(p * 1_099_511_627_791), p);
        check(&Mont90::new(p * 1_099_511_627_791), p);
        // A 60-bit factor of a 120-bit n.
        let (p, q) = (1_152_921_504_606_846_883u128, 1_152_921_504_606_846_819);
        check(&Mont120::new(p * q), p.min(q));
    }

    /// The build script's table holds one ratio for each odd prime up to
    /// MAX_B1, the one [`best_ratio`] chooses (here, on the target).
    #[cfg_attr(not(target_arch = "wasm32"), test)]
    #[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
    fn the_built_ratio_table_holds_the_cheapest_chains() {
        let bits = primes();
        let primes: Vec<u64> = (3..=MAX_B1)
            .step_by(2)
            .filter(|&p| is_odd_prime(bits, p))
            .collect();
        assert_eq!(RATIOS.len(), primes.len());
        let chain: Vec<(u64, u8)> = stage1_chain(MAX_B1).collect();
        let chosen: Vec<(u64, u8)> = primes.iter().map(|&p| (p, best_ratio(p))).collect();
        assert_eq!(chain, chosen);
        // And the chain stops at b1, wherever it falls.
        for b1 in [3, 4, 5, 100, 8191, 8192, 12_345, MAX_B1 - 1] {
            let last = stage1_chain(b1).last().map(|(p, _)| p);
            assert_eq!(
                last,
                primes.iter().rev().find(|&&p| p <= b1).copied(),
                "{b1}"
            );
        }
    }

    #[cfg_attr(not(target_arch = "wasm32"), test)]
    #[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
    fn prac_chains_keep_their_invariant() {
        // Multiples stand in for points, up to sign as x-only arithmetic
        // sees them: an addition given ±(x − y) yields x + y, given ±(x + y)
        // it yields x − y; anything else is a broken chain. The chain must
        // end at ±k.
        for (k, v) in stage1_chain(MAX_B1) {
            let v = PRAC_V[usize::from(v)];
            assert!(prac_cost(k, v) < u32::MAX, "{k}");
            let (mut d, mut e) = prac_start(k, v);
            let (mut a, mut b, mut c) = (2i64, 1i64, 1i64);
            let add = |x: i64, y: i64, diff: i64| {
                if (x - y).abs() == diff.abs() {
                    x + y
                } else {
                    assert_eq!((x + y).abs(), diff.abs(), "difference for {k}");
                    x - y
                }
            };
            while d != e {
                if d < e {
                    (d, e, a, b) = (e, d, b, a);
                }
                let (rule, _) = prac_rule(d, e);
                (a, b, c) = match rule {
                    1 => {
                        let t = add(a, b, c);
                        (add(t, a, b), add(b, t, a), c)
                    }
                    2 | 4 => (2 * a, add(a, b, c), c),
                    3 => (a, add(b, a, c), b),
                    5 => (2 * a, b, add(c, a, b)),
                    6 => (add(2 * a, a, a), add(2 * a, add(a, b, c), c), b),
                    7 => (add(a, 2 * a, a), add(add(a, b, c), a, b), c),
                    8 => (add(a, 2 * a, a), add(a, b, c), add(a, c, b)),
                    _ => (a, 2 * b, add(c, b, a)),
                };
                (d, e) = prac_step(rule, d, e);
                let (a, b) = (a.unsigned_abs(), b.unsigned_abs());
                assert_eq!(d * a + e * b, k, "invariant for {k}");
                assert_eq!(a.abs_diff(b), c.unsigned_abs(), "C = ±(A − B) for {k}");
            }
            assert_eq!(d, 1, "{k}");
            assert_eq!(add(a, b, c).unsigned_abs(), k);
        }
    }

    /// An arbitrary curve and point in `f` (not checked to lie on it: the
    /// tests compare ways of computing multiples, which agree anyway).
    fn test_curve<F: Field>(f: &F) -> (Curve<'_, F>, Pt<F::E>) {
        let c = Curve {
            f,
            a24: f.lift(123_456_789),
        };
        let p = Pt {
            x: f.lift(987_654_321),
            z: f.lift(5),
        };
        (c, p)
    }

    /// PRAC's chains, the baby steps and the common denominators against
    /// the ladder, in `f`.
    fn steps_agree_with_the_ladder_in<F: Field>(f: &F) {
        let (c, p) = test_curve(f);
        let same = |a: Pt<F::E>, b: Pt<F::E>| f.lower(f.mul(a.x, b.z)) == f.lower(f.mul(b.x, a.z));
        for (k, v) in stage1_chain(MAX_B1).take(300) {
            for v in [PRAC_V[usize::from(v)], PRAC_V[0]] {
                if prac_cost(k, v) == u32::MAX {
                    continue;
                }
                assert!(same(c.prac(p, k, v), c.ladder(p, k).0), "[{k}]P");
            }
        }
        let (baby, gw) = c.baby_steps(p);
        for (&d, &b) in BABY.iter().zip(&baby) {
            assert!(same(b, c.ladder(p, d).0), "[{d}]P");
        }
        assert!(same(gw, c.ladder(p, WHEEL).0), "[{WHEEL}]P");
        let scale = f.lift(77);
        let mut xs = [f.zero(); BABY.len()];
        let prod = common_denominator(f, &baby, scale, &mut xs);
        let den = f.mul(scale, prod);
        for (&x, b) in xs.iter().zip(&baby) {
            assert!(same(Pt { x, z: den }, *b));
        }
    }

    /// In a one-word Montgomery form as it is, and in digits of each count
    /// with n at the top of its range (natively too, where ECM does not use
    /// them).
    #[cfg_attr(not(target_arch = "wasm32"), test)]
    #[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
    fn prac_baby_steps_and_common_denominators_agree_with_the_ladder() {
        steps_agree_with_the_ladder_in(&AsField(Mont64::new(1_000_000_007 * 998_244_353)));
        steps_agree_with_the_ladder_in(&Digits::<3>::new(&Mont90::new((1 << 83) - 1)));
        steps_agree_with_the_ladder_in(&Digits::<4>::new(&Mont120::new((1 << 112) - 3)));
        steps_agree_with_the_ladder_in(&Digits::<5>::new(&Mont128::new(u128::MAX)));
    }

    #[cfg_attr(not(target_arch = "wasm32"), test)]
    #[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
    fn splits_semiprimes_of_every_word_size() {
        let (p, q) = (65521u32, 65519u32);
        let m = Mont32::new(p * q);
        let f = find_factor(&m);
        assert!(f == p || f == q, "{f}");
        let (p, q) = (4294967291u64, 4294967279u64);
        let m = Mont64::new(p * q);
        let f = find_factor(&m);
        assert!(f == p || f == q, "{f}");
        let (p, q) = (16_381u32, 16_369u32);
        let f = find_factor(&Mont32Lazy::new(p * q));
        assert!(f == p || f == q, "{f}");
        let (p, q) = (2_147_483_647u64, 2_147_483_629u64);
        let f = find_factor(&Mont64Lazy::new(p * q));
        assert!(f == p || f == q, "{f}");
        let (p, q) = (33_554_393u64, 33_554_383u64); // two 25-bit primes
        let f = find_factor(&ModF64::new(p * q));
        assert!(f == p || f == q, "{f}");
        let (p, q) = (16_777_213u64, 16_777_199u64); // two 24-bit primes
        let f = find_factor(&ModF64Lazy::new(p * q));
        assert!(f == p || f == q, "{f}");
        let (p, q) = (1099511627689u128, 1099511627791u128); // two 40-bit primes
        let m = Mont128::new(p * q);
        let f = find_factor(&m);
        assert!(f == p || f == q, "{f}");
        let m = Mont96::new(p * q);
        let f = find_factor(&m);
        assert!(f == p || f == q, "{f}");
        let f = find_factor(&Mont120::new(p * q));
        assert!(f == p || f == q, "{f}");
        let f = find_factor(&Mont90::new(p * q));
        assert!(f == p || f == q, "{f}");
        // ECM's steps in digits (what wasm32 uses), of each count.
        let f = find_factor_in(&m, &Digits::<3>::new(&Mont90::new(p * q)));
        assert!(f == p || f == q, "{f}");
        let (p, q) = (72_057_594_037_927_931u128, 72_057_594_037_927_909u128); // 56-bit
        let f = find_factor_in(
            &Mont120::new(p * q),
            &Digits::<4>::new(&Mont120::new(p * q)),
        );
        assert!(f == p || f == q, "{f}");
        let (p, q) = (
            18_446_744_073_709_551_557u128,
            18_446_744_073_709_551_533u128,
        ); // 64-bit
        let f = find_factor_in(
            &Mont128::new(p * q),
            &Digits::<5>::new(&Mont128::new(p * q)),
        );
        assert!(f == p || f == q, "{f}");
    }
}
