//! The engine on any number below 2^64 (and a few bits more): its answer
//! passes `verify`, is sorted, and agrees with `is_prime`.
#![no_main]

use crowdfactor_factor::{factor, is_prime, verify};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: [u8; 9]| {
    let (low, high) = data.split_at(8);
    // Up to 2^66: across the one-word/two-word boundary, still quick.
    let n = u128::from(u64::from_le_bytes(low.try_into().expect("8 bytes")))
        | u128::from(high[0] & 3) << 64;
    let factors = factor(n);
    if n > 1 {
        assert_eq!(verify(n, &factors), Ok(()), "{n} → {factors:?}");
    }
    assert_eq!(is_prime(n), factors.len() == 1 && factors[0] == n, "{n}");
});
