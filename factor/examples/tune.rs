//! Quick per-class timings for tuning the engine's parameters (best of 5,
//! single thread): `cargo run --release -p crowdfactor-factor --example tune
//! [CLASS]`. The full benchmark with GNU factor and wasm is `benches/classes.rs`.
#![allow(clippy::print_stdout, reason = "a command-line report")]

use crowdfactor_factor::{
    factor, factor_progression, factor_progression_resuming, is_prime, verify, verify_progression,
    verify_progression_resuming, SieveResume,
};
use std::time::Instant;

/// Nanoseconds per number of one run of `run` over `count` numbers.
fn ns_per_number(count: usize, run: impl FnOnce()) -> f64 {
    let t = Instant::now();
    run();
    t.elapsed().as_secs_f64() * 1e9 / count as f64
}

fn prime(rng: &mut fastrand::Rng, bits: u32) -> u64 {
    loop {
        let p = rng.u64((1 << (bits - 1))..(1u64 << bits)) | 1;
        if is_prime(p as u128) {
            return p;
        }
    }
}

fn main() {
    let mut rng = fastrand::Rng::with_seed(42);
    let mut classes: Vec<(&str, Vec<u128>)> = vec![];
    classes.push((
        "random64",
        (0..4000)
            .map(|_| (rng.u64(1u64 << 63..) | 1) as u128)
            .collect(),
    ));
    for bits in [24u32, 28, 32] {
        let v = (0..400)
            .map(|_| prime(&mut rng, bits) as u128 * prime(&mut rng, bits) as u128)
            .collect();
        classes.push((["semi24", "semi28", "semi32"][(bits as usize - 24) / 4], v));
    }
    classes.push((
        "semi64",
        (0..12)
            .map(|_| prime(&mut rng, 63) as u128 * prime(&mut rng, 63) as u128)
            .collect(),
    ));
    classes.push((
        "r2^64",
        (0..3000u128).map(|i| (1u128 << 64) + 1 + 2 * i).collect(),
    ));
    classes.push((
        "seed",
        (0..20000u128).map(|i| 999_999_999_999 + 2 * i).collect(),
    ));
    classes.push((
        "random90",
        (0..500).map(|_| (rng.u128(..) >> 38) | 1).collect(),
    ));
    // Last, so the classes above keep their numbers.
    classes.push((
        "semi56",
        (0..20)
            .map(|_| prime(&mut rng, 56) as u128 * prime(&mut rng, 56) as u128)
            .collect(),
    ));
    let only = std::env::args().nth(1);
    if only.as_deref() == Some("dump") {
        // `tune dump CLASS`: the class's numbers, one per line (for the wasm
        // timing script, scripts/bench-wasm.mjs).
        let want = std::env::args().nth(2);
        for (name, nums) in &classes {
            if want.as_deref() == Some(*name) {
                for n in nums {
                    println!("{n}");
                }
            }
        }
        return;
    }
    if only.as_deref() == Some("is_prime") {
        // Primality of primes (the most expensive answer) and of products of
        // two primes (what a cofactor that needs splitting costs), 33 to 64
        // bits.
        let primes: Vec<u128> = (0..20_000)
            .map(|i| prime(&mut rng, 33 + i % 31) as u128)
            .collect();
        let composites: Vec<u128> = (0..20_000)
            .map(|i| {
                let bits = 17 + i % 16;
                prime(&mut rng, bits) as u128 * prime(&mut rng, bits) as u128
            })
            .collect();
        for (what, numbers, want) in [("prime", &primes, true), ("composite", &composites, false)] {
            let mut best = f64::MAX;
            for _ in 0..5 {
                best = best.min(ns_per_number(numbers.len(), || {
                    let all = numbers.iter().all(|&n| is_prime(n) == want);
                    assert!(all);
                }));
            }
            println!("is_prime   {best:8.1} ns per {what} of 33-64 bits");
        }
        return;
    }
    if only.as_deref() == Some("warm") {
        // `tune warm`: what warm_up costs in a fresh process, then again.
        for _ in 0..2 {
            let t = Instant::now();
            crowdfactor_factor::warm_up();
            println!("warm_up {:.2} ms", t.elapsed().as_secs_f64() * 1e3);
        }
        return;
    }
    if only.as_deref() == Some("progression") {
        // Factoring a range as a worker does with a range chunk: sieved as a
        // progression (factor_progression) against number by number.
        for (start, count) in [
            (999_999_999_999u128, 2_500usize),
            (999_999_999_999, 10_000),
            (999_999_999_999, 44_620),
            (999_999_999_999, 100_000),
            (1u128 << 43, 10_000),
            (1u128 << 43, 100_000),
        ] {
            let (mut each, mut prog) = (f64::MAX, f64::MAX);
            for _ in 0..5 {
                let mut sum = 0u128;
                each = each.min(ns_per_number(count, || {
                    for i in 0..count as u128 {
                        sum = sum.wrapping_add(factor(start + 2 * i)[0]);
                    }
                }));
                prog = prog.min(ns_per_number(count, || {
                    factor_progression(start, 2, count, |l| {
                        sum = sum.wrapping_add(l.first().copied().unwrap_or(1));
                    });
                }));
                std::hint::black_box(sum);
            }
            println!("factor from {start} × {count:6}: {each:7.1} ns per number one by one, {prog:6.1} ns as a progression");
        }
        // 10^6 numbers from the seed in chunks, as one worker thread gets a
        // range job's chunks (`gap` 1: every other chunk, as each of two
        // threads does): each chunk's sieve fresh, or resumed from the one
        // before it.
        for (chunk, gap) in [(44_620usize, 0usize), (44_620, 1), (16_384, 0), (65_536, 0)] {
            let (total, start) = (1_000_000usize, 999_999_999_999u128);
            let (mut fresh, mut resumed) = (f64::MAX, f64::MAX);
            let chunks: Vec<usize> = (0..total).step_by(chunk).step_by(gap + 1).collect();
            let numbers: usize = chunks.iter().map(|&at| chunk.min(total - at)).sum();
            for _ in 0..5 {
                let mut sum = 0u128;
                fresh = fresh.min(ns_per_number(numbers, || {
                    for &at in &chunks {
                        factor_progression(start + 2 * at as u128, 2, chunk.min(total - at), |l| {
                            sum = sum.wrapping_add(l.first().copied().unwrap_or(1));
                        });
                    }
                }));
                let mut resume = SieveResume::default();
                resumed = resumed.min(ns_per_number(numbers, || {
                    for &at in &chunks {
                        let first = start + 2 * at as u128;
                        factor_progression_resuming(
                            first,
                            2,
                            chunk.min(total - at),
                            &mut resume,
                            |l| {
                                sum = sum.wrapping_add(l.first().copied().unwrap_or(1));
                            },
                        );
                    }
                }));
                std::hint::black_box(sum);
            }
            println!("factor 10^6 from {start} in chunks of {chunk} (every {}): {fresh:5.1} ns per number fresh, {resumed:5.1} resumed", gap + 1);
        }
        return;
    }
    if only.as_deref() == Some("verify") {
        // The coordinator's check of a range chunk: one verify per number
        // against verify_progression (a sieve when the chunk is long enough).
        for (start, count) in [
            (999_999_999_999u128, 1_000usize),
            (999_999_999_999, 5_000),
            (999_999_999_999, 10_000),
            (999_999_999_999, 30_000),
            (999_999_999_999, 100_000),
            (1u128 << 43, 100_000),
        ] {
            let lists: Vec<Vec<u128>> = (0..count as u128).map(|i| factor(start + 2 * i)).collect();
            let (mut each, mut prog) = (f64::MAX, f64::MAX);
            for _ in 0..5 {
                each = each.min(ns_per_number(count, || {
                    let ok = lists
                        .iter()
                        .enumerate()
                        .all(|(i, l)| verify(start + 2 * i as u128, l).is_ok());
                    assert!(ok);
                }));
                prog = prog.min(ns_per_number(count, || {
                    assert!(verify_progression(start, 2, lists.iter().map(|l| &l[..])).is_ok());
                }));
            }
            println!("verify from {start} × {count:6}: {each:6.1} ns per number one by one, {prog:6.1} ns as a progression");
        }
        // A range job's chunks checked one after another (the 10^6 job's
        // first chunks are 6,400 numbers, the rest 44,620): each sieve from
        // scratch, or resuming where the one before stopped (the first one
        // of each run seeding the rest).
        let (start, total) = (999_999_999_999u128, 44_620usize * 8);
        let lists: Vec<Vec<u128>> = (0..total as u128).map(|i| factor(start + 2 * i)).collect();
        // As protocol 5 sends them (and the coordinator checks them): each
        // list without its largest factor.
        let short: Vec<&[u128]> = lists
            .iter()
            .map(|l| &l[..l.len().saturating_sub(1)])
            .collect();
        for chunk in [1_000, 2_000, 6_400, 44_620] {
            let chunks = total / chunk;
            let mut best = [f64::MAX; 3];
            for _ in 0..5 {
                for (way, best) in best.iter_mut().enumerate() {
                    let mut resume = SieveResume::default();
                    let t = ns_per_number(chunk * chunks, || {
                        for (k, part) in lists.chunks_exact(chunk).enumerate() {
                            let from = start + 2 * (k * chunk) as u128;
                            let whole = part.iter().map(|l| &l[..]);
                            let verdict = match way {
                                0 => verify_progression(from, 2, whole),
                                1 => {
                                    verify_progression_resuming(from, 2, whole, false, &mut resume)
                                }
                                _ => {
                                    let part = short[k * chunk..][..part.len()].iter().copied();
                                    verify_progression_resuming(from, 2, part, true, &mut resume)
                                }
                            };
                            assert!(verdict.is_ok());
                        }
                    });
                    *best = best.min(t);
                }
            }
            let [fresh, resumed, resumed_short] = best;
            println!("verify from {start}, {chunks} chunks of {chunk} one after another: {fresh:6.1} ns per number each sieve afresh, {resumed:6.1} ns resuming, {resumed_short:6.1} ns resuming the lists without their largest factors");
        }
        return;
    }
    for (name, nums) in &classes {
        if only.as_deref().is_some_and(|o| o != *name) {
            continue;
        }
        let mut best = f64::MAX;
        for _ in 0..5 {
            let ns = ns_per_number(nums.len(), || {
                let mut s = 0u128;
                for &n in nums {
                    s = s.wrapping_add(factor(n)[0]);
                }
                std::hint::black_box(s);
            });
            best = best.min(ns / 1e3);
        }
        println!("{name:10} {best:8.2} µs");
    }
}
