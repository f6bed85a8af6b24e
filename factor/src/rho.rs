//! Pollard–Brent rho with batched GCDs, in Montgomery form.

use crate::arith::{gcd, Monty, Word};

/// Products of this many differences share one GCD.
const BATCH: u64 = 128;

/// Tries to split the odd composite `m.n()` with the polynomial x² + c in at
/// most about `budget` iterations. Returns a non-trivial factor, or `None`
/// when the budget runs out or this `c` cycles without one.
pub(crate) fn brent<M: Monty>(m: &M, c: u64, budget: u64) -> Option<M::W> {
    let n = m.n();
    let one = m.one();
    let mut cm = M::W::ZERO;
    for _ in 0..c {
        cm = m.add(cm, one);
    }
    let f = |x: M::W| m.add(m.sqr(x), cm);
    let mut y = m.add(one, one);
    let mut x = y;
    let mut ys = y;
    let mut q = one;
    let mut g = M::W::ONE;
    let mut r: u64 = 1;
    while g == M::W::ONE {
        x = y;
        for _ in 0..r {
            y = f(y);
        }
        let mut k = 0;
        while k < r && g == M::W::ONE {
            ys = y;
            let lim = BATCH.min(r - k);
            for _ in 0..lim {
                y = f(y);
                q = m.mul(q, m.sub(x, y));
            }
            g = gcd(q, n);
            k += lim;
        }
        r <<= 1;
        if g == M::W::ONE && r > budget {
            return None;
        }
    }
    if g == n {
        // The batch overshot: step through it one difference at a time.
        loop {
            ys = f(ys);
            g = gcd(m.sub(x, ys), n);
            if g != M::W::ONE {
                break;
            }
        }
    }
    (g != n).then_some(g)
}
