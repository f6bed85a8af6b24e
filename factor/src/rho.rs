//! Pollard–Brent rho with batched GCDs, in Montgomery form.
//!
//! Two walks (x² + 1 and x² + 2) run in lockstep: each step of one walk waits
//! on a modular multiplication, so two independent walks take barely longer
//! per step than one, and the first to meet a factor wins.

use crate::arith::{gcd, Monty, Word};

/// Products of this many differences share one GCD.
const BATCH: u64 = 128;

/// One walk's state.
#[derive(Clone, Copy)]
struct Walk<W> {
    c: W,
    x: W,
    y: W,
    ys: W,
    q: W,
}

impl<W: Word> Walk<W> {
    fn new<M: Monty<W = W>>(m: &M, c: u64) -> Self {
        let one = m.one();
        let mut cm = W::ZERO;
        for _ in 0..c {
            cm = m.add(cm, one);
        }
        let two = m.add(one, one);
        Walk {
            c: cm,
            x: two,
            y: two,
            ys: two,
            q: one,
        }
    }

    #[inline(always)]
    fn f<M: Monty<W = W>>(&self, m: &M, v: W) -> W {
        m.add(m.sqr(v), self.c)
    }

    /// After a batch whose product shares all of n: step through the batch
    /// one difference at a time from `ys`.
    fn backtrack<M: Monty<W = W>>(&self, m: &M) -> Option<W> {
        let n = m.n();
        let mut ys = self.ys;
        loop {
            ys = self.f(m, ys);
            let g = gcd(m.sub(self.x, ys), n);
            if g != W::ONE {
                return (g != n).then_some(g);
            }
        }
    }
}

/// Tries to split the odd composite `m.n()` in at most about `budget` steps
/// of each walk. Returns a non-trivial factor, or `None` when the budget runs
/// out or both walks cycle without one.
pub(crate) fn brent<M: Monty>(m: &M, budget: u64) -> Option<M::W> {
    match walk(m, budget, FIRST_GCD) {
        Ok(found) => found,
        // Rare: the first GCD shared all of n. Again with a GCD per block.
        Err(Deferred) => walk(m, budget, 1).unwrap_or(None),
    }
}

/// Brent's blocks of r steps before the first GCD: a GCD costs as much as
/// dozens of steps, and most factors rho finds need more than the first
/// 2·15 (seed job, `tune`: 1.7–1.8 µs → 1.45–1.7 µs a number with 16;
/// 32 and more cost more steps than they save).
const FIRST_GCD: u64 = 16;

/// The first GCD found all of n, and the blocks before it cannot be replayed.
#[derive(Debug, PartialEq)]
struct Deferred;

/// [`brent`] with the first GCD after the block of `first_gcd` steps.
fn walk<M: Monty>(m: &M, budget: u64, first_gcd: u64) -> Result<Option<M::W>, Deferred> {
    let n = m.n();
    let mut w = [Walk::new(m, 1), Walk::new(m, 2)];
    let mut r: u64 = 1;
    // The first GCD covers every block before it: backtracking from the
    // last batch cannot replay those.
    let mut deferred = first_gcd > 1;
    loop {
        for s in &mut w {
            s.x = s.y;
        }
        for _ in 0..r {
            for s in &mut w {
                s.y = s.f(m, s.y);
            }
        }
        let mut k = 0;
        while k < r {
            for s in &mut w {
                s.ys = s.y;
            }
            let lim = BATCH.min(r - k);
            for _ in 0..lim {
                for s in &mut w {
                    s.y = s.f(m, s.y);
                    s.q = m.mul(s.q, m.sub(s.x, s.y));
                }
            }
            k += lim;
            // (The last block within the budget always ends with one.)
            if r < first_gcd && 2 * r <= budget {
                continue;
            }
            // One GCD for both walks; only a hit looks at each.
            if gcd(m.mul(w[0].q, w[1].q), n) != M::W::ONE {
                let mut cycled = 0;
                for s in &w {
                    match gcd(s.q, n) {
                        g if g == M::W::ONE => {}
                        g if g != n => return Ok(Some(g)),
                        _ if deferred => return Err(Deferred),
                        _ => match s.backtrack(m) {
                            Some(g) => return Ok(Some(g)),
                            None => cycled += 1,
                        },
                    }
                }
                if cycled > 0 {
                    // A walk that closed its cycle without a factor is done;
                    // the other is rarely worth continuing alone.
                    return Ok(None);
                }
            }
            deferred = false;
        }
        r <<= 1;
        if r > budget {
            return Ok(None);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::arith::Mont64;

    #[cfg_attr(not(target_arch = "wasm32"), test)]
    #[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
    fn splits_products_of_two_small_primes() {
        for (p, q) in [(4099u64, 4111), (65_537, 65_539), (1_000_003, 1_000_033)] {
            let f = brent(&Mont64::new(p * q), 1 << 16).expect("rho splits it");
            assert!(f == p || f == q, "{p}·{q}: {f}");
        }
    }

    #[cfg_attr(not(target_arch = "wasm32"), test)]
    #[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
    fn a_first_gcd_that_shares_all_of_n_starts_again() {
        // With the first GCD after 4096 steps both walks have met both
        // factors' cycles by then.
        let m = Mont64::new(1031 * 1033);
        assert_eq!(walk(&m, 1 << 12, 1 << 12), Err(Deferred));
        let f = brent(&m, 1 << 12).expect("rho splits it");
        assert!(f == 1031 || f == 1033, "{f}");
        // A budget below the first GCD still ends with one.
        assert_ne!(walk(&m, 1 << 10, 1 << 12), Ok(None));
    }
}
