// Included by the build script as well as compiled as `crate::prac`: no
// inner attributes or doc comments here (`include!` takes items only).

/// The largest B1 ECM uses (`MAX_B2 / 60` there, checked): the table of
/// chain ratios covers every odd prime up to it.
pub(crate) const RATIO_BOUND: u64 = (1 << 22) / 60;

/// r/k ratios PRAC starts from: 1/φ and numbers whose continued fractions
/// differ from 1/φ's in one or two places (so some prime gets a short chain).
pub(crate) const PRAC_V: [f64; 10] = [
    0.618_033_988_749_894_8,
    0.723_606_797_749_979,
    0.580_178_728_295_464_1,
    0.632_839_806_088_706_3,
    0.612_429_949_509_495,
    0.620_181_980_807_415_8,
    0.617_214_616_534_403_9,
    0.618_347_119_656_228,
    0.617_914_406_528_817_9,
    0.618_079_668_469_895_8,
];

/// Field multiplications of a point doubling and of a differential addition.
pub(crate) const DBL_COST: u32 = 5;
pub(crate) const ADD_COST: u32 = 6;

/// The PRAC rule applicable to `(d, e)` with d > e, and its cost: the rules
/// (1–9) of Montgomery's "Evaluating recurrences of form X_{m+n} =
/// f(X_m, X_n, X_{m-n}) via Lucas chains", first that applies.
#[inline(always)]
pub(crate) fn prac_rule(d: u64, e: u64) -> (u8, u32) {
    if d - e <= e / 4 && (d + e).is_multiple_of(3) {
        (1, 3 * ADD_COST)
    } else if d - e <= e / 4 && (d - e).is_multiple_of(6) {
        (2, ADD_COST + DBL_COST)
    } else if d <= 4 * e {
        (3, ADD_COST)
    } else if (d + e).is_multiple_of(2) {
        (4, ADD_COST + DBL_COST)
    } else if d.is_multiple_of(2) {
        (5, ADD_COST + DBL_COST)
    } else if d.is_multiple_of(3) {
        (6, 3 * ADD_COST + DBL_COST)
    } else if (d + e).is_multiple_of(3) {
        (7, 3 * ADD_COST + DBL_COST)
    } else if (d - e).is_multiple_of(3) {
        (8, 3 * ADD_COST + DBL_COST)
    } else {
        // d odd and d + e odd: e is even.
        (9, ADD_COST + DBL_COST)
    }
}

/// The (d, e) PRAC starts from for `k` ≥ 3 with ratio `v`.
pub(crate) fn prac_start(k: u64, v: f64) -> (u64, u64) {
    // Ties to even: one instruction (`roundsd`, wasm's `f64.nearest`)
    // where `round`, ties away from zero, is a call; k·v is never a tie.
    let r = (k as f64 * v).round_ties_even() as u64;
    (k - r, 2 * r - k)
}

/// The next (d, e) after `rule` (d > e).
#[inline(always)]
pub(crate) fn prac_step(rule: u8, d: u64, e: u64) -> (u64, u64) {
    match rule {
        1 => ((2 * d - e) / 3, (2 * e - d) / 3),
        2 | 4 => ((d - e) / 2, e),
        3 => (d - e, e),
        5 => (d / 2, e),
        6 => (d / 3 - e, e),
        7 => ((d - 2 * e) / 3, e),
        8 => ((d - e) / 3, e),
        _ => (d, e / 2),
    }
}

/// Multiplications PRAC needs for `k` with ratio `v` (`u32::MAX` if `v`
/// gives no chain for `k`).
#[cfg_attr(
    not(test),
    allow(dead_code, reason = "the build script chooses; tests check")
)]
pub(crate) fn prac_cost(k: u64, v: f64) -> u32 {
    let (mut d, mut e) = prac_start(k, v);
    if e == 0 || e > k || d == 0 {
        return u32::MAX;
    }
    let mut cost = DBL_COST + ADD_COST;
    while d != e {
        if d < e {
            (d, e) = (e, d);
        }
        let (rule, c) = prac_rule(d, e);
        cost += c;
        (d, e) = prac_step(rule, d, e);
    }
    if d == 1 {
        cost
    } else {
        u32::MAX
    }
}

/// The index in [`PRAC_V`] of the cheapest chain for `p`.
#[cfg_attr(
    not(test),
    allow(dead_code, reason = "the build script chooses; tests check")
)]
pub(crate) fn best_ratio(p: u64) -> u8 {
    (0..PRAC_V.len())
        .min_by_key(|&i| prac_cost(p, PRAC_V[i]))
        .unwrap_or(0) as u8
}
