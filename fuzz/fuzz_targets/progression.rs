//! Range chunks: the sieve (`factor_progression`) gives what `factor` gives
//! number by number, and the coordinator's sieve check (`verify_progression`)
//! refuses a list exactly when `verify` does, with `verify`'s verdict; the
//! same for lists without their largest factors (protocol 5:
//! `verify_progression_without_largest` against `verify_without_largest`),
//! and for the progression checked in two chunks, the second resuming the
//! first one's sieve (`verify_progression_resuming`).
#![no_main]

use crowdfactor_factor::{
    factor, factor_progression, verify, verify_progression, verify_progression_resuming,
    verify_progression_without_largest, verify_without_largest, SieveResume,
};
use libfuzzer_sys::fuzz_target;

fn as_slices(lists: &[Vec<u128>]) -> Vec<&[u128]> {
    lists.iter().map(|l| &l[..]).collect()
}

/// Each list without its last factor.
fn shortened(lists: &[Vec<u128>]) -> Vec<&[u128]> {
    lists
        .iter()
        .map(|l| &l[..l.len().saturating_sub(1)])
        .collect()
}

fuzz_target!(|input: (u64, u8, u16, u16, u16, u8, Vec<u64>)| {
    let (raw_start, shift, raw_step, raw_count, at, how, claim) = input;
    // Numbers of every size below 2^64, most of them small enough for the
    // sieve (below 2^44, and √last small next to the count).
    let start = u128::from(raw_start >> (shift % 64));
    let step = u128::from(raw_step.max(1));
    // Long enough for the sieve below 2^32; shorter above, where each
    // number is factored on its own three times here.
    let count = usize::from(raw_count % if start >> 32 == 0 { 2000 } else { 300 }) + 1;
    let mut lists = Vec::with_capacity(count);
    factor_progression(start, step, count, |l| lists.push(l.to_vec()));
    assert_eq!(lists.len(), count);
    for (i, list) in lists.iter().enumerate() {
        let n = start + step * i as u128;
        assert_eq!(
            list,
            &factor(n),
            "{n} (start {start} step {step} count {count})"
        );
    }
    if start == 0 {
        return; // 0 has no factorization to verify
    }
    assert_eq!(verify_progression(start, step, as_slices(&lists)), Ok(()));
    assert_eq!(
        verify_progression_without_largest(start, step, shortened(&lists)),
        Ok(())
    );
    // One list replaced by a wrong one — near misses a sieve could let
    // through, or anything — and refused exactly as `verify` refuses it.
    let i = usize::from(at) % count;
    let n = start + step * i as u128;
    let list = &mut lists[i];
    match how % 5 {
        // Two factors merged into a composite one: the product still holds.
        0 if list.len() >= 2 => {
            let j = usize::from(how / 5) % (list.len() - 1);
            let merged = list[j] * list[j + 1];
            list.splice(j..j + 2, [merged]);
            list.sort_unstable();
        }
        // The number claimed prime.
        1 => *list = vec![n],
        // Out of order.
        2 => list.reverse(),
        // A factor left out, or one too many.
        3 if how & 128 == 0 => {
            list.pop();
        }
        3 => list.push(u128::from(claim.first().copied().unwrap_or(2))),
        _ => *list = claim.iter().map(|&f| u128::from(f)).collect(),
    }
    let want = verify(n, &lists[i]).map_err(|e| (i, e));
    assert_eq!(
        verify_progression(start, step, as_slices(&lists)),
        want,
        "{n}: {:?}",
        lists[i]
    );
    // In two chunks, the second resuming the first one's sieve: the
    // wrong list is found in its chunk, at its index there.
    let cut = usize::from(claim.len() as u16 ^ at) % count;
    let (first, second) = lists.split_at(cut);
    let mut resume = SieveResume::default();
    let first_verdict =
        verify_progression_resuming(start, step, as_slices(first), false, &mut resume);
    if i < cut {
        assert_eq!(first_verdict, want, "{n} in the first of two chunks");
    } else {
        assert_eq!(first_verdict, Ok(()));
        let from = start + step * cut as u128;
        assert_eq!(
            verify_progression_resuming(from, step, as_slices(second), false, &mut resume),
            want.clone().map_err(|(j, e)| (j - cut, e)),
            "{n} in the second of two chunks, from {from}"
        );
    }
    // The same lists without their last factors: right or wrong as
    // `verify_without_largest` says.
    let short = shortened(&lists);
    let want = verify_without_largest(n, short[i]).map_err(|e| (i, e));
    assert_eq!(
        verify_progression_without_largest(start, step, short.iter().copied()),
        want,
        "{n}: {:?} without its largest factor",
        short[i]
    );
});
