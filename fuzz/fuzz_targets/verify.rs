//! `verify` on any claim a worker can make — mostly lists whose product is
//! the number, so it gets past the product check — against its definition:
//! accepted exactly when the list is sorted, every factor is prime
//! (`is_prime`, itself checked against `factor` by `factor_u64`) and the
//! product is the number.
#![no_main]

use crowdfactor_factor::{is_prime, verify};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|claim: (Vec<u64>, u8, u64)| {
    let (raw, how, off) = claim;
    // Factors across the 64-bit boundary too, where products overflow.
    let mut factors: Vec<u128> = raw
        .iter()
        .map(|&f| u128::from(f >> (f % 64)) << (how & 1))
        .collect();
    if how & 2 == 0 {
        factors.sort_unstable();
    }
    let product = factors.iter().try_fold(1u128, |a, &f| a.checked_mul(f));
    let n = match (product, how >> 2) {
        (Some(p), 0..=47) => p,
        (Some(p), 48..=55) => p.wrapping_add(u128::from(off % 5)),
        (_, _) => u128::from(off) << (how % 65),
    };
    let sound = n > 0
        && factors.windows(2).all(|w| w[0] <= w[1])
        && factors.iter().all(|&f| is_prime(f))
        && product == Some(n);
    assert_eq!(verify(n, &factors).is_ok(), sound, "{n} = {factors:?}?");
});
