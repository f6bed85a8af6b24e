//! The wasm factorizer in headless Chromium, inside a dedicated Web Worker
//! (where the page runs it). Run with
//! `cargo test -p crowdfactor-wasm --target wasm32-unknown-unknown`.
#![cfg(target_arch = "wasm32")]

use crowdfactor_protocol::{ClientMessage, DEFAULT_MAX_MESSAGE_BYTES};
use wasm_bindgen_test::*;

wasm_bindgen_test_configure!(run_in_dedicated_worker);

#[wasm_bindgen_test]
fn factors_a_chunk_and_answers_with_a_result_frame() {
    let assign = r#"{"type":"assign","chunk_id":5,"job_id":"1","numbers":["999999999999","340282366920938463463374607431768211455","1"]}"#;
    let out = crowdfactor_wasm::factor_assignment(assign).expect("factors");
    let ClientMessage::Result(r) =
        ClientMessage::decode(&out, DEFAULT_MAX_MESSAGE_BYTES).expect("decodes")
    else {
        panic!("not a result frame: {out}");
    };
    assert_eq!(r.chunk_id, 5);
    let numbers = [999_999_999_999, u128::MAX, 1];
    assert_eq!(r.factors.len(), numbers.len());
    // Protocol 5: each list without its largest factor.
    for (&n, f) in numbers.iter().zip(r.factors.iter()) {
        crowdfactor_factor::verify_without_largest(n, f).expect("verified");
    }
    assert_eq!(r.factors.get(1).map(<[u128]>::len), Some(8));
    assert_eq!(r.factors.get(2), Some(&[][..]));
}

#[wasm_bindgen_test]
fn rejects_frames_that_are_not_assignments() {
    assert!(crowdfactor_wasm::factor_assignment(r#"{"type":"idle"}"#).is_err());
    assert!(crowdfactor_wasm::factor_assignment("garbage").is_err());
}

#[wasm_bindgen_test]
fn builds_protocol_frames() {
    let hello = crowdfactor_wasm::hello_message(4, 2, "test", None, None);
    assert!(hello.contains(r#""kind":"browser""#), "{hello}");
    assert!(!hello.contains("name"), "{hello}");
    let named = crowdfactor_wasm::hello_message(4, 2, "test", None, Some("Ada".into()));
    assert!(named.contains(r#""name":"Ada""#), "{named}");
    // A blank name is none.
    let blank = crowdfactor_wasm::hello_message(4, 2, "test", None, Some(String::new()));
    assert!(!blank.contains("name"), "{blank}");
    assert_eq!(
        crowdfactor_wasm::rename_message("Ada \"L\""),
        r#"{"type":"rename","name":"Ada \"L\""}"#
    );
    assert_eq!(
        crowdfactor_wasm::ack_message(7.0),
        r#"{"type":"ack","chunk_id":7}"#
    );
    assert_eq!(
        crowdfactor_wasm::release_message(&[1.0, 2.0]),
        r#"{"type":"release","chunk_ids":[1,2]}"#
    );
}

#[wasm_bindgen_test]
fn semiprime_and_prime_square_near_2_64() {
    let p = 18446744073709551557u128;
    assert_eq!(crowdfactor_factor::factor(p * p), vec![p, p]);
    let (a, b) = (4294967291u128, 4294967279u128);
    assert_eq!(crowdfactor_factor::factor(a * b), vec![b, a]);
}

#[wasm_bindgen_test]
fn a_chunk_factored_in_slices_gives_the_same_frame() {
    let assign = r#"{"type":"assign","chunk_id":9,"job_id":"1","numbers":["12","1000000000001","97","1","340282366920938463463374607431768211455"]}"#;
    let mut job = crowdfactor_wasm::ChunkJob::new(assign, None).expect("assign");
    assert_eq!(job.total(), 5);
    assert!(!job.step(2));
    assert!(!job.step(2));
    assert!(job.step(2));
    let whole = crowdfactor_wasm::factor_assignment(assign).expect("whole");
    let stepped = job.finish(1.5);
    assert_eq!(
        stepped,
        whole.replace("\"}", "\",\"compute_us\":1500}"),
        "same results, plus the elapsed time"
    );
}

/// A range chunk (sieved where the slice is long enough) gives `factor`'s
/// lists (without each largest factor), factored whole or in slices of any
/// size.
#[wasm_bindgen_test]
fn a_range_chunk_gives_factors_lists_whole_or_in_slices() {
    let (start, count) = (999_999_999_999u128, 30_000u32);
    let assign = format!(
        r#"{{"type":"assign","chunk_id":3,"job_id":"1","numbers":{{"start":"{start}","step":"2","count":{count}}}}}"#
    );
    let whole = crowdfactor_wasm::factor_assignment(&assign).expect("whole");
    let ClientMessage::Result(r) =
        ClientMessage::decode(&whole, DEFAULT_MAX_MESSAGE_BYTES).expect("decodes")
    else {
        panic!("not a result frame");
    };
    for (i, f) in r.factors.iter().enumerate() {
        let whole = crowdfactor_factor::factor(start + 2 * i as u128);
        assert_eq!(f, &whole[..whole.len() - 1], "without the largest factor");
    }
    let mut job = crowdfactor_wasm::ChunkJob::new(&assign, None).expect("assign");
    for slice in [1000, 20_000] {
        assert!(!job.step(slice));
    }
    assert!(job.step(20_000));
    assert_eq!(
        job.finish(2.0),
        whole.replace("\"}", "\",\"compute_us\":2000}")
    );
}

/// Only the runs the page gives are factored (the page answers the rest of
/// the chunk from kept lists): their lists come in order, a range's runs
/// sieved, however the slices fall across the runs' ends.
#[wasm_bindgen_test]
fn a_chunk_factored_in_runs_gives_the_runs_lists() {
    let (start, count) = (999_999_999_999u128, 30_000u32);
    let assign = format!(
        r#"{{"type":"assign","chunk_id":4,"job_id":"1","numbers":{{"start":"{start}","step":"2","count":{count}}}}}"#
    );
    let runs = [(0u32, 5000u32), (12_000, 7000), (29_990, 10)];
    let flat: Vec<u32> = runs.iter().flat_map(|&(at, n)| [at, n]).collect();
    let want: Vec<u32> = runs.iter().flat_map(|&(at, n)| at..at + n).collect();
    for slice in [1, 4000, 7000, 40_000] {
        let mut job = crowdfactor_wasm::ChunkJob::new(&assign, Some(flat.clone())).expect("runs");
        assert_eq!(job.total(), 12_010);
        let mut steps = 0;
        while !job.step(slice) {
            steps += 1;
            assert!(steps <= 12_010, "no end in sight");
        }
        let ClientMessage::Result(r) =
            ClientMessage::decode(&job.finish(1.0), DEFAULT_MAX_MESSAGE_BYTES).expect("decodes")
        else {
            panic!("not a result frame");
        };
        assert_eq!(r.factors.len(), want.len(), "slices of {slice}");
        for (f, &i) in r.factors.iter().zip(&want) {
            let whole = crowdfactor_factor::factor(start + 2 * u128::from(i));
            assert_eq!(
                f,
                &whole[..whole.len() - 1],
                "number {i}, slices of {slice}"
            );
        }
    }
    // A list's runs alike.
    let list =
        r#"{"type":"assign","chunk_id":5,"job_id":"1","numbers":["12","97","1000000000001","15"]}"#;
    let mut job = crowdfactor_wasm::ChunkJob::new(list, Some(vec![1, 1, 3, 1])).expect("runs");
    assert!(job.step(10));
    let frame = job.finish(0.0);
    assert!(
        frame.contains(r#""factors":";3""#),
        "97 is prime (its list left out), 15 = 3·5: {frame}"
    );
    // Runs that are no runs of the chunk are refused.
    for bad in [
        vec![0],
        vec![0, 0],
        vec![2, 1, 1, 1],
        vec![3, 2],
        vec![0, 2, 1, 1],
    ] {
        assert!(
            crowdfactor_wasm::ChunkJob::new(list, Some(bad.clone())).is_err(),
            "{bad:?}"
        );
    }
}
