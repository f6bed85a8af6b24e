//! `crowdfactor-worker factor`: the same output as GNU coreutils `factor`
//! for every n < 2^128, in input order, optionally on several threads.

use std::io::{self, BufRead, Write};

use crowdfactor_protocol::{format_u128, DecimalBuf};

/// How one input token was understood.
enum Token<'a> {
    Number(u128),
    Invalid(&'a str),
    TooLarge(&'a str),
}

/// GNU accepts optional leading whitespace and one leading `+`, then digits.
fn parse(tok: &str) -> Token<'_> {
    let t = tok.trim_start();
    let digits = t.strip_prefix('+').unwrap_or(t);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Token::Invalid(tok);
    }
    match digits.parse::<u128>() {
        Ok(n) => Token::Number(n),
        Err(_) => Token::TooLarge(tok),
    }
}

/// Formats one input into `out` (a line) or `err` (a message); returns false on invalid input.
fn render(tok: &str, buf: &mut Vec<u128>, out: &mut String, err: &mut String) -> bool {
    use std::fmt::Write as _;
    match parse(tok) {
        Token::Number(n) => {
            buf.clear();
            crowdfactor_factor::factor_into(n, buf);
            push_line(out, n, buf, &mut DecimalBuf::new());
            true
        }
        Token::Invalid(t) => {
            let _ = writeln!(
                err,
                "crowdfactor-worker factor: ‘{t}’ is not a valid positive integer"
            );
            false
        }
        Token::TooLarge(t) => {
            let _ = writeln!(
                err,
                "crowdfactor-worker factor: ‘{t}’ is too large: this factorizer handles numbers below 2^128"
            );
            false
        }
    }
}

/// One output line: `n: f1 f2 …`.
fn push_line(out: &mut String, n: u128, factors: &[u128], dec: &mut DecimalBuf) {
    out.push_str(format_u128(n, dec));
    out.push(':');
    for &f in factors {
        out.push(' ');
        out.push_str(format_u128(f, dec));
    }
    out.push('\n');
}

/// The start and step of `tokens` when they are numbers in arithmetic
/// progression (`seq` output, say) that the engine factors faster all at
/// once, by sieving, than one by one.
fn as_progression(tokens: &[String]) -> Option<(u128, u128)> {
    let number = |t: &String| match parse(t) {
        Token::Number(n) => Some(n),
        _ => None,
    };
    let start = number(tokens.first()?)?;
    let step = number(tokens.get(1)?)?.checked_sub(start)?;
    if step == 0 || !crowdfactor_factor::progression_is_sieved(start, step, tokens.len()) {
        return None;
    }
    // Sieved progressions end below 2^44: no overflow.
    (0u128..)
        .zip(tokens)
        .all(|(i, t)| number(t) == Some(start + i * step))
        .then_some((start, step))
}

/// Factors a batch of tokens on up to `threads` threads; writes results in
/// input order. Returns false if any token was invalid.
fn batch(tokens: &[String], threads: usize, stdout: &mut impl Write) -> io::Result<bool> {
    let parts = threads.clamp(1, tokens.len().max(1));
    let per = tokens.len().div_ceil(parts).max(1);
    let outputs: Vec<(String, String, bool)> = if parts == 1 {
        vec![render_all(tokens)]
    } else {
        std::thread::scope(|s| {
            let handles: Vec<_> = tokens
                .chunks(per)
                .map(|c| s.spawn(move || render_all(c)))
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
                .collect()
        })
    };
    let mut ok = true;
    for (out, err, good) in outputs {
        stdout.write_all(out.as_bytes())?;
        if !err.is_empty() {
            // Keep stderr in step with stdout for interleaved reading.
            stdout.flush()?;
            io::stderr().write_all(err.as_bytes())?;
        }
        ok &= good;
    }
    Ok(ok)
}

fn render_all(tokens: &[String]) -> (String, String, bool) {
    let mut out = String::with_capacity(tokens.len() * 24);
    let mut err = String::new();
    if let Some((start, step)) = as_progression(tokens) {
        let (mut n, mut dec) = (start, DecimalBuf::new());
        crowdfactor_factor::factor_progression(start, step, tokens.len(), |factors| {
            push_line(&mut out, n, factors, &mut dec);
            n += step;
        });
        return (out, err, true);
    }
    let mut buf = Vec::with_capacity(128);
    let mut ok = true;
    for t in tokens {
        // An invalid token reports to stderr; later tokens go on (as GNU does).
        ok &= render(t, &mut buf, &mut out, &mut err);
    }
    (out, err, ok)
}

/// Runs the subcommand; returns the process exit code (0, or 1 after invalid
/// input). The last `literal` numbers came after a `--`.
pub fn run(numbers: &[String], literal: usize, threads: usize) -> u8 {
    // GNU reads `-5` as an (invalid) option and prints nothing; so do we.
    // After `--` it is an invalid number, reported in turn like any other.
    let options = &numbers[..numbers.len().saturating_sub(literal)];
    if let Some(opt) = options.iter().find(|a| a.len() > 1 && a.starts_with('-')) {
        let _ = writeln!(
            io::stderr(),
            "crowdfactor-worker factor: invalid option -- '{}'\nTry 'crowdfactor-worker factor --help' for more information.",
            &opt[1..]
        );
        return 1;
    }
    let stdout = io::stdout();
    let mut stdout = io::BufWriter::with_capacity(1 << 16, stdout.lock());
    let result = if numbers.is_empty() {
        from_stdin(threads, &mut stdout)
    } else {
        batch(numbers, threads, &mut stdout)
    };
    let result = result.and_then(|ok| stdout.flush().map(|()| ok));
    match result {
        Ok(true) => 0,
        Ok(false) => 1,
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => 0,
        Err(e) => {
            let _ = writeln!(io::stderr(), "crowdfactor-worker factor: {e}");
            1
        }
    }
}

fn from_stdin(threads: usize, stdout: &mut impl Write) -> io::Result<bool> {
    // Batches keep memory flat on endless input while giving threads enough
    // work (and a sieved progression enough numbers to pay for its primes).
    const BATCH: usize = 1 << 16;
    let stdin = io::stdin();
    let mut ok = true;
    let mut tokens = Vec::with_capacity(BATCH);
    // At a terminal, answer each line as it is typed, like GNU factor.
    let interactive_lines = io::IsTerminal::is_terminal(&stdin);
    for line in stdin.lock().lines() {
        let line = line?;
        tokens.extend(line.split_ascii_whitespace().map(str::to_owned));
        if tokens.len() >= BATCH || interactive_lines {
            ok &= batch(&tokens, threads, stdout)?;
            tokens.clear();
            if interactive_lines {
                stdout.flush()?;
            }
        }
    }
    ok &= batch(&tokens, threads, stdout)?;
    Ok(ok)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(tok: &str) -> (String, String) {
        let (mut out, mut err) = (String::new(), String::new());
        render(tok, &mut vec![], &mut out, &mut err);
        (out, err)
    }

    #[test]
    fn gnu_formatting() {
        assert_eq!(line("0").0, "0:\n");
        assert_eq!(line("1").0, "1:\n");
        assert_eq!(line("+12").0, "12: 2 2 3\n");
        assert_eq!(line("  0012").0, "12: 2 2 3\n");
        assert!(line("-5")
            .1
            .contains("‘-5’ is not a valid positive integer"));
        assert!(line("5x").1.contains("not a valid positive integer"));
        assert!(line("").1.contains("‘’"));
        assert!(line("340282366920938463463374607431768211456")
            .1
            .contains("too large"));
    }

    /// Runs of numbers in arithmetic progression (sieved all at once) print
    /// what one number at a time prints, whatever the step, start and
    /// thread count; a run with one number out of step is not taken for one.
    #[test]
    fn progressions_print_what_single_numbers_print() {
        let one_by_one = |tokens: &[String]| {
            let (mut out, mut err) = (String::new(), String::new());
            let mut buf = vec![];
            for t in tokens {
                render(t, &mut buf, &mut out, &mut err);
            }
            out
        };
        for (start, step, count) in [
            (1u128, 1u128, 30_000usize),
            (2, 1, 20_000),
            (999_999_999_999, 2, 20_000),
            (1_000_000_000_000, 3, 20_000),
            (17_592_186_044_415 - 2 * 19_999, 2, 20_000),
            (5, 7, 25_000),
        ] {
            let mut tokens: Vec<String> = (0..count as u128)
                .map(|i| (start + i * step).to_string())
                .collect();
            assert_eq!(
                as_progression(&tokens),
                Some((start, step)),
                "{start} {step}"
            );
            for threads in [1, 3] {
                let mut out = vec![];
                assert!(batch(&tokens, threads, &mut out).expect("write"));
                assert_eq!(String::from_utf8(out).expect("utf8"), one_by_one(&tokens));
            }
            // Out of step near the end: factored one by one, still right.
            tokens[count - 2] = (start + step).to_string();
            assert_eq!(as_progression(&tokens), None);
            let (out, _, ok) = render_all(&tokens);
            assert!(ok);
            assert_eq!(out, one_by_one(&tokens));
        }
        // GNU's spellings of numbers in step: printed as the numbers.
        let spelled: Vec<String> = ["+12", " 13", "0014", "15"].map(String::from).to_vec();
        assert_eq!(render_all(&spelled).0, one_by_one(&spelled));
        assert_eq!(
            render_all(&spelled).0,
            "12: 2 2 3\n13: 13\n14: 2 7\n15: 3 5\n"
        );
    }

    #[test]
    fn batches_keep_input_order() {
        let tokens: Vec<String> = (1..=500u32).rev().map(|n| n.to_string()).collect();
        let mut out = vec![];
        assert!(batch(&tokens, 4, &mut out).expect("write"));
        let text = String::from_utf8(out).expect("utf8");
        let firsts: Vec<&str> = text
            .lines()
            .map(|l| l.split(':').next().unwrap_or(""))
            .collect();
        assert_eq!(
            firsts,
            tokens.iter().map(String::as_str).collect::<Vec<_>>()
        );
    }
}
