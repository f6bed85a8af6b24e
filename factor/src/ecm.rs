//! Lenstra's elliptic-curve method on Montgomery curves By² = x³ + Ax² + x,
//! in x-only projective coordinates (X:Z) with Suyama's parametrization
//! (group order divisible by 12). Stage 1 multiplies by every prime power up
//! to B1 with the Montgomery ladder; stage 2 is the baby-step/giant-step
//! continuation up to B2 with a wheel of 210, testing [kW]Q = ±[d]Q.

use std::sync::OnceLock;

use crate::arith::{gcd, inv_mont, Monty, Word};

/// Stage 2 never goes beyond this bound (size of the prime bitmap).
pub(crate) const MAX_B2: usize = 1 << 22;
const WHEEL: u64 = 210;
/// Odd d < WHEEL/2 coprime to WHEEL: the baby steps.
const BABY: [u64; 24] = [
    1, 11, 13, 17, 19, 23, 29, 31, 37, 41, 43, 47, 53, 59, 61, 67, 71, 73, 79, 83, 89, 97, 101, 103,
];

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

/// Whether `q` < MAX_B2 is an odd prime.
#[inline]
pub(crate) fn is_odd_prime(bits: &[u64], q: u64) -> bool {
    let i = (q / 2) as usize;
    q & 1 == 1 && bits[i / 64] >> (i % 64) & 1 == 1
}

#[derive(Clone, Copy)]
struct Pt<W> {
    x: W,
    z: W,
}

struct Curve<'m, M: Monty> {
    m: &'m M,
    a24: M::W,
}

impl<M: Monty> Curve<'_, M> {
    #[inline(always)]
    fn dbl(&self, p: Pt<M::W>) -> Pt<M::W> {
        let m = self.m;
        let s = m.sqr(m.add(p.x, p.z));
        let d = m.sqr(m.sub(p.x, p.z));
        let t = m.sub(s, d); // 4XZ
        Pt {
            x: m.mul(s, d),
            z: m.mul(t, m.add(d, m.mul(self.a24, t))),
        }
    }

    /// P + Q given P − Q.
    #[inline(always)]
    fn add(&self, p: Pt<M::W>, q: Pt<M::W>, diff: Pt<M::W>) -> Pt<M::W> {
        let m = self.m;
        let u = m.mul(m.sub(p.x, p.z), m.add(q.x, q.z));
        let v = m.mul(m.add(p.x, p.z), m.sub(q.x, q.z));
        Pt {
            x: m.mul(diff.z, m.sqr(m.add(u, v))),
            z: m.mul(diff.x, m.sqr(m.sub(u, v))),
        }
    }

    /// [k]P by the Montgomery ladder (k ≥ 1).
    fn mul(&self, p: Pt<M::W>, k: u64) -> Pt<M::W> {
        if k == 1 {
            return p;
        }
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
        r0
    }
}

/// Outcome of one curve.
enum Found<W> {
    Factor(W),
    Nothing,
}

fn small<M: Monty>(m: &M, v: u64) -> M::W {
    // v < 2^32 ≤ n for the moduli ECM sees, so v is already reduced.
    m.to_mont(M::W::from_u128(v as u128))
}

/// One curve with Suyama parameter `sigma`, bounds B1 and B2.
fn curve<M: Monty>(m: &M, sigma: u64, b1: u64, b2: u64) -> Found<M::W> {
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
    let c = Curve { m, a24 };
    let mut q = Pt { x: u3, z: v3 };

    // Stage 1: Q = [∏ p^e ≤ B1] P.
    let bits = primes();
    let mut pk = 4u64; // 2^e ≤ B1
    while pk * 2 <= b1 {
        pk *= 2;
    }
    q = c.mul(q, pk);
    let mut p = 3;
    while p <= b1 {
        if is_odd_prime(bits, p) {
            let mut e = p;
            while e * p <= b1 {
                e *= p;
            }
            q = c.mul(q, e);
        }
        p += 2;
    }
    let g = gcd(q.z, n);
    if g != M::W::ONE {
        return if g == n {
            Found::Nothing
        } else {
            Found::Factor(g)
        };
    }

    // Stage 2: primes in (B1, B2] as kW ± d.
    let q2 = c.dbl(q);
    let mut baby = [Pt {
        x: M::W::ZERO,
        z: M::W::ZERO,
    }; 24];
    let (mut prev, mut cur) = (q, c.add(q2, q, q)); // [1]Q, [3]Q
    baby[0] = q;
    let mut bi = 1;
    let mut d = 3;
    while bi < BABY.len() {
        if d == BABY[bi] {
            baby[bi] = cur;
            bi += 1;
        }
        let next = c.add(cur, q2, prev); // [d+2]Q
        prev = cur;
        cur = next;
        d += 2;
    }
    let gw = c.mul(q, WHEEL);
    let k0 = (b1 / WHEEL).max(1);
    let mut g_prev = c.mul(q, (k0 - 1).max(1) * WHEEL);
    let mut g_cur = c.mul(q, k0 * WHEEL);
    if k0 == 1 {
        // Differential addition needs [(k0−1)W]Q; for k0 = 1 that is O, so
        // start one step later with [W]Q and [2W]Q.
        g_prev = gw;
        g_cur = c.dbl(gw);
    }
    let mut k = if k0 == 1 { 2 } else { k0 };
    let mut acc = m.one();
    while k * WHEEL <= b2 + WHEEL {
        let base = k * WHEEL;
        for (i, &dd) in BABY.iter().enumerate() {
            let lo = base - dd;
            let hi = base + dd;
            let want = (lo > b1 && lo <= b2 && is_odd_prime(bits, lo))
                || (hi > b1 && hi <= b2 && is_odd_prime(bits, hi));
            if want {
                let t = m.sub(m.mul(g_cur.x, baby[i].z), m.mul(baby[i].x, g_cur.z));
                acc = m.mul(acc, t);
            }
        }
        let next = c.add(g_cur, gw, g_prev);
        g_prev = g_cur;
        g_cur = next;
        k += 1;
    }
    let g = gcd(acc, n);
    if g != M::W::ONE && g != n {
        Found::Factor(g)
    } else {
        Found::Nothing
    }
}

/// Finds a non-trivial factor of the odd composite `m.n()` (not a prime
/// power), trying curves with growing bounds until one succeeds.
pub(crate) fn find_factor<M: Monty>(m: &M) -> M::W {
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
            if let Found::Factor(g) = curve(m, sigma, b1, b2) {
                return g;
            }
            sigma += 1;
        }
        b1 = (b1 * 3 / 2).min(MAX_B2 as u64 / 60);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::arith::{Mont128, Mont64};

    #[cfg_attr(not(target_arch = "wasm32"), test)]
    #[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
    fn inverse_is_right() {
        let m = Mont64::new(1_000_000_007 * 3);
        for a in [2u64, 5, 7, 123456790] {
            let am = m.to_mont(a);
            let inv = inv_mont(&m, am).expect("coprime");
            assert_eq!(m.mul(am, inv), m.one());
        }
        assert!(matches!(inv_mont(&m, m.to_mont(6)), Err(3)));
    }

    #[cfg_attr(not(target_arch = "wasm32"), test)]
    #[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
    fn splits_semiprimes_of_both_word_sizes() {
        let (p, q) = (4294967291u64, 4294967279u64);
        let m = Mont64::new(p * q);
        let f = find_factor(&m);
        assert!(f == p || f == q, "{f}");
        let (p, q) = (1099511627689u128, 1099511627791u128); // two 40-bit primes
        let m = Mont128::new(p * q);
        let f = find_factor(&m);
        assert!(f == p || f == q, "{f}");
    }
}
