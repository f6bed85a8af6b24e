//! `verify` on any claim a worker can make — mostly lists whose product is
//! the number, so it gets past the product check — against its definition:
//! accepted exactly when the list is sorted, every factor is prime
//! (`is_prime`, itself checked against `factor` by `factor_u64`) and the
//! product is the number. The same claim read as a list without its
//! largest factor (protocol 5, `verify_without_largest`): accepted exactly
//! when its product divides the number and, with the quotient appended if
//! above 1, it is sorted and all prime.
#![no_main]

use crowdfactor_factor::{is_prime, verify, verify_without_largest};
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
    let whole = product.filter(|&p| p != 0 && n.is_multiple_of(p)).map(|p| {
        let mut w = factors.clone();
        w.extend((n / p > 1).then_some(n / p));
        w
    });
    let sound = n > 0
        && whole
            .is_some_and(|w| w.windows(2).all(|x| x[0] <= x[1]) && w.iter().all(|&f| is_prime(f)));
    assert_eq!(
        verify_without_largest(n, &factors).is_ok(),
        sound,
        "{n} = {factors:?} and the largest?"
    );
});
