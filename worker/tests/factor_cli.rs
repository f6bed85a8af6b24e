//! `crowdfactor-worker factor` against GNU coreutils `factor`, byte for byte.
#![allow(clippy::unwrap_used)]

use std::collections::HashMap;
use std::io::Write;
use std::process::{Command, Output, Stdio};

fn run(cmd: &mut Command, stdin: impl AsRef<[u8]>) -> Output {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut pipe = child.stdin.take().unwrap();
    let input = stdin.as_ref().to_owned();
    let writer = std::thread::spawn(move || pipe.write_all(&input));
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
    // 0: as many threads as cores.
    for threads in ["1", "2", "3", "0"] {
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
        // After `--`, `-5` is a number (an invalid one), not an option.
        vec!["7", "--", "-5", "9"],
        vec!["-5", "--", "7"],
        vec!["5x"],
        vec![""],
        // Unknown options: GNU's message and status, nothing factored.
        vec!["-x", "12"],
        vec!["12", "--nope"],
    ] {
        let (a, b) = (ours(&args, ""), gnu(&args, ""));
        assert_eq!(a.stdout, b.stdout, "{args:?}");
        assert_eq!(a.status.code(), b.status.code(), "{args:?}");
        let err = String::from_utf8_lossy(&a.stderr);
        assert!(
            err.contains("is not a valid positive integer")
                || err.contains("invalid option")
                || err.contains("unrecognized option '--nope'"),
            "{args:?}: {err}"
        );
    }
    let (a, b) = (ours(&[], "4 x -3 6\n"), gnu(&[], "4 x -3 6\n"));
    assert_eq!((a.stdout, a.status.code()), (b.stdout, b.status.code()));
}

/// Bytes GNU does not take for delimiters (only space, tab and newline) or
/// digits: CRLF line ends, other whitespace, NULs, bytes that are not
/// UTF-8, backslashes and quote characters — in a UTF-8 locale and in the C
/// locale, on standard input and as arguments. The same output, the same
/// messages (their quoting included) and the same status as GNU.
#[test]
fn odd_bytes_are_read_and_quoted_as_gnu_does() {
    use std::os::unix::ffi::OsStrExt;
    let stdin: &[u8] =
        b"12\r\n13\r\n\r\n 14\t15\x0b16\x0c17\n18\x0019 \x00 \x07 \xff\xc3 a\\b q'q \
        \xe2\x80\x98\xe2\x80\x99 \xc3\xa9 \xc2\x85 \xe2\x80\xa8 +20 ++21 0x10 \x7f\n";
    let args: [&[u8]; 13] = [
        b"12\r",
        b" 12",
        b" +12",
        b"\t12",
        b"12 ",
        b"\n12",
        b"\x0c12",
        b"1 2",
        b"\xff",
        b"a'b",
        "\u{2019}\u{e9}".as_bytes(),
        b"\\",
        b"7",
    ];
    let args = args.map(std::ffi::OsStr::from_bytes);
    for locale in ["C.UTF-8", "C"] {
        let program = env!("CARGO_BIN_EXE_crowdfactor-worker");
        let ours_with = |args: &[&std::ffi::OsStr], stdin: &[u8]| {
            run(
                Command::new(program)
                    .arg("factor")
                    .args(args)
                    .env("LC_ALL", locale),
                stdin,
            )
        };
        let gnu_with = |args: &[&std::ffi::OsStr], stdin: &[u8]| {
            run(
                Command::new("factor").args(args).env("LC_ALL", locale),
                stdin,
            )
        };
        for (a, b) in [
            (ours_with(&[], stdin), gnu_with(&[], stdin)),
            (ours_with(&args, b""), gnu_with(&args, b"")),
        ] {
            assert_eq!(
                String::from_utf8_lossy(&a.stdout),
                String::from_utf8_lossy(&b.stdout),
                "{locale}"
            );
            assert_eq!(a.status.code(), b.status.code(), "{locale}");
            let ours_err = a
                .stderr
                .split(|&c| c == b'\n')
                .map(|l| l.strip_prefix(b"crowdfactor-worker ").unwrap_or(l));
            let gnu_err = b.stderr.split(|&c| c == b'\n');
            assert!(
                ours_err.eq(gnu_err),
                "{locale}:\n{}\n{}",
                String::from_utf8_lossy(&a.stderr),
                String::from_utf8_lossy(&b.stderr)
            );
        }
    }
}

/// `-h`/`--exponents` as GNU coreutils 9.3 and later have it (this
/// machine's GNU factor may predate it): the lines of plain output with
/// each run of a repeated prime written once as `p^e`.
#[test]
fn exponents_write_repeated_primes_once() {
    let inputs = edge_cases();
    let plain = ours(&[], &inputs.join("\n"));
    for flag in ["-h", "--exponents"] {
        let out = ours(&[flag], &inputs.join("\n"));
        assert_eq!(out.status.code(), Some(0));
        let lines = String::from_utf8(out.stdout).unwrap();
        let plain = String::from_utf8(plain.stdout.clone()).unwrap();
        assert_eq!(lines.lines().count(), plain.lines().count());
        for (e, p) in lines.lines().zip(plain.lines()) {
            let (n, factors) = e.split_once(':').unwrap();
            let expanded: Vec<String> = factors
                .split_whitespace()
                .flat_map(|f| {
                    let (p, k) = f.split_once('^').unwrap_or((f, "1"));
                    let k: usize = k.parse().unwrap();
                    assert!(k >= 1 && (k > 1) == f.contains('^'), "{e}");
                    std::iter::repeat_n(p.to_owned(), k)
                })
                .collect();
            let primes: Vec<&str> = factors
                .split_whitespace()
                .map(|f| f.split('^').next().unwrap())
                .collect();
            assert!(primes.windows(2).all(|w| w[0] != w[1]), "{e}");
            let rebuilt = format!(
                "{n}:{}",
                expanded.iter().map(|f| format!(" {f}")).collect::<String>()
            );
            assert_eq!(rebuilt, p);
        }
    }
    let out = ours(&["-h", "72", "1024"], "");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "72: 2^3 3^2\n1024: 2^10\n"
    );
}

#[test]
fn thread_counts_past_the_limit_are_refused() {
    for args in [
        vec!["factor", "--threads", "1025", "6"],
        vec!["--threads", "5000"],
    ] {
        let out = run(
            Command::new(env!("CARGO_BIN_EXE_crowdfactor-worker")).args(&args),
            "",
        );
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("1024"),
            "{out:?}"
        );
    }
}

#[test]
fn names_the_coordinator_would_alter_are_refused() {
    let long = "n".repeat(crowdfactor_protocol::MAX_NAME_CHARS + 1);
    for (name, says) in [
        (long.as_str(), "65 characters long"),
        ("lab\tpc", "control character"),
        ("lab\u{1b}[31mpc", "control character"),
    ] {
        let out = run(
            Command::new(env!("CARGO_BIN_EXE_crowdfactor-worker")).args(["--name", name]),
            "",
        );
        assert_eq!(out.status.code(), Some(2), "{name:?}");
        assert!(
            String::from_utf8_lossy(&out.stderr).contains(says),
            "{name:?}: {out:?}"
        );
    }
}

/// The coordinator given both as SERVER and as `--server`: refused, saying
/// so, before any connection (nothing listens at either).
#[test]
fn a_coordinator_named_twice_is_refused() {
    let out = run(
        Command::new(env!("CARGO_BIN_EXE_crowdfactor-worker")).args([
            "127.0.0.1:1",
            "--server",
            "127.0.0.1:2",
        ]),
        "",
    );
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("given twice"),
        "{out:?}"
    );
}

/// A random prime of `bits` bits.
fn random_prime(rng: &mut fastrand::Rng, bits: u32) -> u128 {
    loop {
        let c = rng.u128((1 << (bits - 1))..(1 << bits)) | 1;
        if crowdfactor_factor::is_prime(c) {
            return c;
        }
    }
}

/// 10^5 generated inputs across size classes, through the CLI on 2 threads,
/// against GNU factor: every line identical, in input order.
#[test]
fn differential_against_gnu_on_100k_generated_inputs() {
    let mut rng = fastrand::Rng::with_seed(0xC0FFEE);
    let prime = random_prime;
    let mut numbers: Vec<u128> = Vec::with_capacity(100_000);
    // The classic seed job's class.
    numbers.extend((0..36_000u128).map(|i| 999_999_999_999 + 2 * i));
    // Uniform random below 2^64, of every bit length.
    numbers.extend((0..44_000).map(|_| (rng.u64(1..) >> rng.u32(0..63)) as u128));
    // Semiprimes of two primes of 17..32 bits (just above trial division up to 2^64).
    for _ in 0..8_000 {
        let bits = rng.u32(14..=32);
        numbers.push(prime(&mut rng, bits) * prime(&mut rng, bits));
    }
    // 65..128-bit numbers: a smooth-ish part times a large prime.
    for _ in 0..6_000 {
        let small = rng.u128(1..1 << 30);
        let bits = rng.u32(40..=96);
        let big = prime(&mut rng, bits);
        numbers.push(small.saturating_mul(big).max(1));
    }
    // Prime squares and cubes (GNU needs ~40 ms for each large one, so few of those).
    for i in 0..3_000 {
        let bits = if i % 100 == 0 {
            rng.u32(27..=42)
        } else {
            rng.u32(13..=26)
        };
        let p = prime(&mut rng, bits);
        numbers.push(p * p);
        numbers.push(p * p * p);
    }
    for k in [32u32, 64] {
        for d in 0..600u128 {
            numbers.push((1u128 << k) - 1 - d);
            numbers.push((1u128 << k) + d);
        }
    }
    // Near 2^96 and 2^128 only the primes: GNU needs minutes for some of
    // the composites there (hard cofactors), which is not what we test.
    // GNU also proves each such prime by factoring n - 1, so keep them few.
    for k in [96u32, 127] {
        let near = (0..3000u128).flat_map(|d| [(1u128 << k) - 1 - d, (1u128 << k) + d]);
        numbers.extend(near.filter(|&n| crowdfactor_factor::is_prime(n)).take(30));
    }
    numbers.extend(
        (0..3000u128)
            .map(|d| u128::MAX - 2 * d)
            .filter(|&n| crowdfactor_factor::is_prime(n))
            .take(20),
    );
    numbers.extend([u128::MAX, u128::MAX - 1, 1, 2, 3]);
    assert!(numbers.len() >= 100_000, "{}", numbers.len());
    let tokens: Vec<String> = numbers.iter().map(u128::to_string).collect();
    same_as_gnu_on_stdin(&tokens, "inputs");
}

/// `tokens` a line each on standard input to ours (2 threads) and GNU:
/// the same lines, in input order; prints both times.
fn same_as_gnu_on_stdin(tokens: &[String], what: &str) {
    let input: String = tokens.iter().map(|t| format!("{t}\n")).collect();
    let t = std::time::Instant::now();
    let a = ours(&["--threads", "2"], &input);
    let ours_time = t.elapsed();
    let t = std::time::Instant::now();
    let b = gnu(&[], &input);
    eprintln!(
        "{} {what}: crowdfactor {ours_time:?} (2 threads), GNU factor {:?}",
        tokens.len(),
        t.elapsed()
    );
    let err = String::from_utf8_lossy(&a.stderr);
    assert_eq!(a.status.code(), Some(0), "{err}");
    assert_same_as_gnu(&a.stdout, &b.stdout, tokens);
}

/// Numbers from 2^128 up (GNU takes any size): powers of 2 and 10, products
/// of primes below 2^24 with a prime below 2^96, of one of 34–38 bits with
/// one of 96, primes above 2^128 alone and times small primes — every line as GNU's, in order. GNU proves each
/// prime it prints by factoring p − 1, so the primes above 2^128 are made
/// with a smooth p − 1, where that proof is quick. Not here: squares of
/// primes above 2^128, which GNU 9.1 runs rho on without end (we find the
/// root; the unit tests of `big` have them).
#[test]
fn numbers_from_2_to_the_128_up_match_gnu() {
    use num_bigint::BigUint;
    let mut rng = fastrand::Rng::with_seed(0x1_0000);
    let prime = |rng: &mut fastrand::Rng, bits: u32| BigUint::from(random_prime(rng, bits));
    let two_128 = BigUint::from(1u32) << 128u32;
    let mut numbers: Vec<BigUint> = Vec::new();
    numbers.extend((128..=200u32).step_by(9).map(|k| BigUint::from(1u32) << k));
    numbers.extend((39..=60u32).step_by(3).map(|k| BigUint::from(10u32).pow(k)));
    numbers.push(&two_128 + 2u32);
    while numbers.len() < 150 {
        let bits = rng.u32(40..=96);
        let mut n = prime(&mut rng, bits);
        while n < two_128 {
            let bits = rng.u32(8..=24);
            n *= prime(&mut rng, bits);
        }
        numbers.push(n);
    }
    // Where rho does the work: a prime of 34–38 bits times one of 96.
    for _ in 0..6 {
        let bits = rng.u32(34..=38);
        numbers.push(prime(&mut rng, bits) * prime(&mut rng, 96));
    }
    // p = 2s + 1 with s a product of primes below 2^32, p prime by Fermat
    // (base 2 and 3: GNU checks it again).
    let mut big_primes = Vec::new();
    while big_primes.len() < 8 {
        let mut s = BigUint::from(2u32);
        while s.bits() < 129 + u64::from(rng.u32(0..40)) {
            let bits = rng.u32(16..=32);
            s *= prime(&mut rng, bits);
        }
        let p = s + 1u32;
        let one = BigUint::from(1u32);
        let p1 = &p - 1u32;
        if [2u32, 3]
            .iter()
            .all(|&b| BigUint::from(b).modpow(&p1, &p) == one)
        {
            big_primes.push(p);
        }
    }
    for p in &big_primes {
        numbers.push(p.clone());
        numbers.push(p * 3u32 * 65_537u32 * prime(&mut rng, 24));
    }
    let tokens: Vec<String> = numbers.iter().map(BigUint::to_string).collect();
    same_as_gnu_on_stdin(&tokens, "inputs from 2^128 up");
    // As arguments too; with `-h` (newer than this GNU) each prime once, as
    // `p^e` when repeated: the same primes as the plain lines.
    let argv: Vec<&str> = tokens.iter().take(40).map(String::as_str).collect();
    let (a, b) = (ours(&argv, ""), gnu(&argv, ""));
    assert_eq!(a.status.code(), Some(0));
    assert_same_as_gnu(&a.stdout, &b.stdout, &tokens[..40]);
    let exp = ours(&[&["-h"], &argv[..]].concat(), "");
    let (exp, plain) = (
        String::from_utf8(exp.stdout).unwrap(),
        String::from_utf8(a.stdout).unwrap(),
    );
    assert_eq!(exp.lines().count(), plain.lines().count());
    for (e, p) in exp.lines().zip(plain.lines()) {
        let expanded: String = e
            .split(' ')
            .flat_map(|f| {
                let (f, k) = f.split_once('^').unwrap_or((f, "1"));
                std::iter::repeat_n(f, k.parse().unwrap())
            })
            .collect::<Vec<_>>()
            .join(" ");
        assert_eq!(expanded, p);
        assert!(e.len() < p.len() || !e.contains('^'), "{e}");
    }
}
