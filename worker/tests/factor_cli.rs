//! `crowdfactor-worker factor` against GNU coreutils `factor`, byte for byte.
#![allow(clippy::unwrap_used)]

use std::collections::HashMap;
use std::io::Write;
use std::process::{Command, Output, Stdio};

fn run(cmd: &mut Command, stdin: &str) -> Output {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut pipe = child.stdin.take().unwrap();
    let input = stdin.to_owned();
    let writer = std::thread::spawn(move || pipe.write_all(input.as_bytes()));
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap().unwrap();
    out
}

fn ours(args: &[&str], stdin: &str) -> Output {
    run(
        Command::new(env!("CARGO_BIN_EXE_crowdfactor-worker"))
            .arg("factor")
            .args(args),
        stdin,
    )
}

fn gnu(args: &[&str], stdin: &str) -> Output {
    run(Command::new("factor").args(args), stdin)
}

fn edge_cases() -> Vec<String> {
    let p64: u128 = 18446744073709551557;
    let p32: u128 = 4294967291;
    let mut v: Vec<u128> = vec![
        0,
        1,
        2,
        3,
        4,
        97,
        4095,
        4096,
        4097,
        65536,
        999999999999,
        (1 << 32) - 1,
        1 << 32,
        (1 << 32) + 1,
        p32,
        p32 * p32,
        p32 * p32 * p32,
        (1 << 64) - 1,
        1 << 64,
        (1 << 64) + 1,
        p64,
        (1 << 64) + 13,
        4099 * 4111,
        4099 * 4099 * 4099,
        561,
        3215031751,
        3825123056546413051,
        318665857834031151167461,
        (1 << 127) - 1,
        u128::MAX,
        u128::MAX - 158,
        1 << 127,
        p64 * 3,
        (1u128 << 89) - 1,
    ];
    v.extend((0..40u128).map(|i| 999_999_999_999 + 2 * i));
    v.iter().map(u128::to_string).collect()
}

/// Our lines must be GNU's lines, but always in input order: GNU 9.1 sometimes
/// prints a larger number's line early (e.g. 2^127 before 2^127 - 1).
fn assert_same_as_gnu(ours: &[u8], gnu: &[u8], inputs: &[String]) {
    let (ours, gnu) = (String::from_utf8_lossy(ours), String::from_utf8_lossy(gnu));
    let gnu_lines: HashMap<&str, &str> = gnu
        .lines()
        .map(|l| (l.split(':').next().unwrap(), l))
        .collect();
    let our_lines: Vec<&str> = ours.lines().collect();
    assert_eq!(our_lines.len(), gnu.lines().count(), "line count");
    let order: Vec<String> = inputs
        .iter()
        .map(|t| {
            t.trim_start()
                .trim_start_matches('+')
                .trim_start_matches('0')
                .to_owned()
        })
        .map(|t| if t.is_empty() { "0".to_owned() } else { t })
        .collect();
    for (line, want_n) in our_lines.iter().zip(&order) {
        let n = line.split(':').next().unwrap();
        assert_eq!(n, want_n, "output not in input order");
        assert_eq!(Some(line), gnu_lines.get(n), "line for {n}");
    }
}

#[test]
fn arguments_match_gnu_factor() {
    let args = edge_cases();
    let argv: Vec<&str> = args.iter().map(String::as_str).collect();
    let (a, b) = (ours(&argv, ""), gnu(&argv, ""));
    assert_same_as_gnu(&a.stdout, &b.stdout, &args);
    assert_eq!(a.status.code(), Some(0));
}

#[test]
fn stdin_with_threads_matches_gnu_and_keeps_order() {
    let mut input = edge_cases().join("\n");
    input.push_str("\n  +12 0007\t9\n\n");
    for n in (1_000_000u64..1_020_000).rev() {
        input.push_str(&format!("{n} "));
    }
    let b = gnu(&[], &input);
    let tokens: Vec<String> = input.split_ascii_whitespace().map(str::to_owned).collect();
    for threads in ["1", "2", "3"] {
        let a = ours(&["--threads", threads], &input);
        assert_same_as_gnu(&a.stdout, &b.stdout, &tokens);
        assert_eq!(a.status.code(), Some(0));
    }
}

#[test]
fn invalid_input_is_reported_and_the_rest_still_factored() {
    for args in [
        vec!["12", "abc", "9"],
        vec!["-5", "7"],
        vec!["5x"],
        vec![""],
    ] {
        let (a, b) = (ours(&args, ""), gnu(&args, ""));
        assert_eq!(a.stdout, b.stdout, "{args:?}");
        assert_eq!(a.status.code(), b.status.code(), "{args:?}");
        let err = String::from_utf8_lossy(&a.stderr);
        assert!(
            err.contains("is not a valid positive integer") || err.contains("invalid option"),
            "{args:?}: {err}"
        );
    }
    let (a, b) = (ours(&[], "4 x -3 6\n"), gnu(&[], "4 x -3 6\n"));
    assert_eq!((a.stdout, a.status.code()), (b.stdout, b.status.code()));
    let too_big = ours(&["340282366920938463463374607431768211456", "6"], "");
    assert_eq!(too_big.status.code(), Some(1));
    assert_eq!(String::from_utf8_lossy(&too_big.stdout), "6: 2 3\n");
    assert!(String::from_utf8_lossy(&too_big.stderr).contains("below 2^128"));
}
