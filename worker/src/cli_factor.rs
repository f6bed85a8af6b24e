//! `crowdfactor-worker factor`: the same output as GNU coreutils `factor`,
//! in input order, optionally on several threads. The engine takes every
//! n < 2^128; larger numbers go to [`crate::big`].

use std::ffi::OsString;
use std::io::{self, BufRead, Write};

use crowdfactor_protocol::{format_u128, DecimalBuf};
use num_bigint::BigUint;

/// How one input token was understood.
enum Token<'a> {
    Number(u128),
    Invalid(&'a [u8]),
    /// From 2^128 up: its digits.
    Big(&'a [u8]),
}

/// As GNU reads a number: up to a NUL (its tokens are C strings), then
/// optional spaces (` ` only: `\t12` is invalid) and one `+`, then digits.
fn parse(tok: &[u8]) -> Token<'_> {
    let tok = tok.split(|&b| b == 0).next().unwrap_or_default();
    let t = &tok[tok.iter().take_while(|&&b| b == b' ').count()..];
    let digits = t.strip_prefix(b"+").unwrap_or(t);
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return Token::Invalid(tok);
    }
    let value = if digits.len() <= 19 {
        // Cannot overflow a u64: the common case, in one-word arithmetic.
        Some(u128::from(
            digits
                .iter()
                .fold(0u64, |v, &d| v * 10 + u64::from(d - b'0')),
        ))
    } else {
        digits.iter().try_fold(0u128, |v, &d| {
            v.checked_mul(10)?.checked_add(u128::from(d - b'0'))
        })
    };
    match value {
        Some(n) => Token::Number(n),
        None => Token::Big(digits),
    }
}

/// Formats one input into `out` (a line) or `err` (a message); returns false on invalid input.
fn render(tok: &[u8], exp: bool, buf: &mut Vec<u128>, out: &mut String, err: &mut String) -> bool {
    use std::fmt::Write as _;
    match parse(tok) {
        Token::Number(n) => {
            buf.clear();
            crowdfactor_factor::factor_into(n, buf);
            push_line(out, n, buf, exp, &mut DecimalBuf::new());
            true
        }
        Token::Invalid(t) => {
            let _ = writeln!(
                err,
                "crowdfactor-worker factor: {} is not a valid positive integer",
                gnu_quote(t, utf8_locale())
            );
            false
        }
        Token::Big(digits) => {
            // Digits only, so it parses.
            let n = BigUint::parse_bytes(digits, 10).unwrap_or_default();
            let factors = crate::big::factor(&n);
            push_factors(out, &n, &factors, exp, |out, f| {
                out.push_str(&f.to_string())
            });
            true
        }
    }
}

/// `text` quoted as GNU tools quote it in messages (gnulib's `quote`):
/// ‘…’ in a UTF-8 locale, '…' in any other; C escapes for the backslash
/// and `\a \b \f \n \r \t \v`, a backslash before the closing quote, and
/// three octal digits for each byte of anything else that is not printable
/// (other control characters, U+2028 and U+2029, bytes that are not UTF-8;
/// in other locales every byte above 0x7e).
fn gnu_quote(text: &[u8], utf8: bool) -> String {
    use std::fmt::Write as _;
    let (open, close) = if utf8 { ('‘', '’') } else { ('\'', '\'') };
    let mut out = String::with_capacity(text.len() + 8);
    out.push(open);
    let octal = |out: &mut String, bytes: &[u8]| {
        for b in bytes {
            let _ = write!(out, "\\{b:03o}");
        }
    };
    for chunk in text.utf8_chunks() {
        for c in chunk.valid().chars() {
            let printable = if utf8 {
                !c.is_control() && !matches!(c, '\u{2028}' | '\u{2029}')
            } else {
                c.is_ascii() && !c.is_ascii_control()
            };
            let escape = match c {
                '\\' => Some('\\'),
                '\x07' => Some('a'),
                '\x08' => Some('b'),
                '\x0c' => Some('f'),
                '\n' => Some('n'),
                '\r' => Some('r'),
                '\t' => Some('t'),
                '\x0b' => Some('v'),
                c if c == close => Some(c),
                _ => None,
            };
            if let Some(e) = escape {
                out.push('\\');
                out.push(e);
            } else if printable {
                out.push(c);
            } else {
                octal(&mut out, c.encode_utf8(&mut [0; 4]).as_bytes());
            }
        }
        octal(&mut out, chunk.invalid());
    }
    out.push(close);
    out
}

/// Whether GNU tools quote as in a UTF-8 locale here: the first of
/// `LC_ALL`, `LC_CTYPE` and `LANG` that is set and not empty names one
/// (`C.UTF-8`, `en_US.utf8`; GNU would also need it installed).
fn utf8_locale() -> bool {
    static UTF8: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *UTF8.get_or_init(|| {
        ["LC_ALL", "LC_CTYPE", "LANG"]
            .into_iter()
            .find_map(|v| std::env::var_os(v).filter(|l| !l.is_empty()))
            .is_some_and(|l| {
                let l = l.to_string_lossy();
                let codeset = l.split_once('.').map_or("", |(_, c)| c);
                let codeset = codeset.split('@').next().unwrap_or_default();
                codeset.eq_ignore_ascii_case("utf-8") || codeset.eq_ignore_ascii_case("utf8")
            })
    })
}

/// GNU factor's token delimiters on standard input: space, tab and newline
/// only, so the `\r` of a CRLF line ends up in its token (then invalid).
fn is_delimiter(b: &u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n')
}

/// One output line: `n: f1 f2 …`, or with `exp` (GNU's `--exponents`)
/// each prime once with its exponent when above 1: `72: 2^3 3^2`.
fn push_line(out: &mut String, n: u128, factors: &[u128], exp: bool, dec: &mut DecimalBuf) {
    push_factors(out, &n, factors, exp, |out, &f| {
        out.push_str(format_u128(f, dec));
    });
}

/// [`push_line`] for numbers of any type, each written by `write`.
fn push_factors<T: PartialEq>(
    out: &mut String,
    n: &T,
    factors: &[T],
    exp: bool,
    mut write: impl FnMut(&mut String, &T),
) {
    write(out, n);
    out.push(':');
    let mut rest = factors;
    while let [f, ..] = rest {
        let e = if exp {
            rest.iter().take_while(|&g| g == f).count()
        } else {
            1
        };
        out.push(' ');
        write(out, f);
        if e > 1 {
            use std::fmt::Write as _;
            let _ = write!(out, "^{e}");
        }
        rest = &rest[e..];
    }
    out.push('\n');
}

/// The start and step of `tokens` when they are numbers in arithmetic
/// progression (`seq` output, say) that the engine factors faster all at
/// once, by sieving, than one by one.
fn sieved_progression<T: AsRef<[u8]>>(tokens: &[T]) -> Option<(u128, u128)> {
    let numbers = tokens.iter().map_while(|t| match parse(t.as_ref()) {
        Token::Number(n) => Some(n),
        _ => None,
    });
    // The first two numbers tell whether the engine would sieve this many:
    // when it would not, the rest need not be read twice.
    let mut first = numbers.clone();
    let (a, b) = (first.next()?, first.next()?);
    if !crowdfactor_factor::progression_is_sieved(a, b.checked_sub(a)?, tokens.len()) {
        return None;
    }
    let (start, step, count) = crowdfactor_factor::as_progression(numbers)?;
    (count == tokens.len()).then_some((start, step))
}

/// Factors a batch of tokens on up to `threads` threads; writes results in
/// input order. Returns false if any token was invalid.
fn batch<T: AsRef<[u8]> + Sync>(
    tokens: &[T],
    exp: bool,
    threads: usize,
    stdout: &mut impl Write,
) -> io::Result<bool> {
    let parts = threads.clamp(1, tokens.len().max(1));
    let per = tokens.len().div_ceil(parts).max(1);
    let outputs: Vec<(String, String, bool)> = if parts == 1 {
        vec![render_all(tokens, exp)]
    } else {
        std::thread::scope(|s| {
            let handles: Vec<_> = tokens
                .chunks(per)
                .map(|c| s.spawn(move || render_all(c, exp)))
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

fn render_all<T: AsRef<[u8]>>(tokens: &[T], exp: bool) -> (String, String, bool) {
    let mut out = String::with_capacity(tokens.len() * 24);
    let mut err = String::new();
    if let Some((start, step)) = sieved_progression(tokens) {
        let (mut n, mut dec) = (start, DecimalBuf::new());
        crowdfactor_factor::factor_progression(start, step, tokens.len(), |factors| {
            push_line(&mut out, n, factors, exp, &mut dec);
            n += step;
        });
        return (out, err, true);
    }
    let mut buf = Vec::with_capacity(128);
    let mut ok = true;
    for t in tokens {
        // An invalid token reports to stderr; later tokens go on (as GNU does).
        ok &= render(t.as_ref(), exp, &mut buf, &mut out, &mut err);
    }
    (out, err, ok)
}

/// Runs the subcommand; returns the process exit code (0, or 1 after invalid
/// input). The last `literal` numbers came after a `--`; `exp`: print
/// repeated primes once with an exponent.
pub fn run(numbers: &[OsString], literal: usize, exp: bool, threads: usize) -> u8 {
    // As GNU, bytes as given: an argument need not be UTF-8 to be reported.
    let numbers: Vec<&[u8]> = numbers.iter().map(|a| a.as_encoded_bytes()).collect();
    // GNU reads `-5` as an (invalid) option and prints nothing; so do we.
    // After `--` it is an invalid number, reported in turn like any other.
    let options = &numbers[..numbers.len().saturating_sub(literal)];
    if let Some(opt) = options.iter().find(|a| a.len() > 1 && a[0] == b'-') {
        // getopt names the first letter it does not know.
        let letter = String::from_utf8_lossy(&opt[1..])
            .chars()
            .next()
            .unwrap_or('-');
        let _ = writeln!(
            io::stderr(),
            "crowdfactor-worker factor: invalid option -- '{letter}'\nTry 'crowdfactor-worker factor --help' for more information."
        );
        return 1;
    }
    let stdout = io::stdout();
    let mut stdout = io::BufWriter::with_capacity(1 << 16, stdout.lock());
    let result = if numbers.is_empty() {
        from_stdin(exp, threads, &mut stdout)
    } else {
        batch(&numbers, exp, threads, &mut stdout)
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

fn from_stdin(exp: bool, threads: usize, stdout: &mut impl Write) -> io::Result<bool> {
    let stdin = io::stdin();
    // At a terminal, answer each line as it is typed, like GNU factor.
    if io::IsTerminal::is_terminal(&stdin) {
        let mut ok = true;
        for line in stdin.lock().split(b'\n') {
            let line = line?;
            ok &= batch(&tokens(&line), exp, threads, stdout)?;
            stdout.flush()?;
        }
        return Ok(ok);
    }
    // Otherwise in blocks of about this many bytes, split into tokens in
    // place (no allocation per number): enough work for the threads and for
    // a sieved progression to pay for its primes, and flat memory on
    // endless input.
    const BLOCK: usize = 1 << 20;
    in_blocks(&mut stdin.lock(), BLOCK, exp, threads, stdout)
}

/// Factors the tokens of `input` read in blocks of about `size` bytes.
fn in_blocks(
    input: &mut impl BufRead,
    size: usize,
    exp: bool,
    threads: usize,
    stdout: &mut impl Write,
) -> io::Result<bool> {
    let mut block: Vec<u8> = Vec::with_capacity(size + 4096);
    let mut ok = true;
    loop {
        // At least one byte more than last time: a block may be one token.
        let want = size.max(block.len() + 1);
        let filled = fill(input, &mut block, want)?;
        // Up to the last delimiter (all of it at the end of input): a token
        // cut by the block's end waits for the next block.
        let cut = if filled {
            block.iter().rposition(is_delimiter).map_or(0, |i| i + 1)
        } else {
            block.len()
        };
        if cut > 0 || !filled {
            ok &= batch(&tokens(&block[..cut]), exp, threads, stdout)?;
            block.drain(..cut);
        }
        if !filled {
            return Ok(ok);
        }
    }
}

/// The tokens of `text` (see [`is_delimiter`]), borrowed.
fn tokens(text: &[u8]) -> Vec<&[u8]> {
    text.split(is_delimiter).filter(|t| !t.is_empty()).collect()
}

/// Reads from `input` until `block` holds at least `want` bytes; false at
/// the end of input.
fn fill(input: &mut impl BufRead, block: &mut Vec<u8>, want: usize) -> io::Result<bool> {
    while block.len() < want {
        let available = match input.fill_buf() {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if available.is_empty() {
            return Ok(false);
        }
        let n = available.len();
        block.extend_from_slice(available);
        input.consume(n);
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(tok: &str) -> (String, String) {
        let (mut out, mut err) = (String::new(), String::new());
        render(tok.as_bytes(), false, &mut vec![], &mut out, &mut err);
        (out, err)
    }

    #[test]
    fn gnu_formatting() {
        assert_eq!(line("0").0, "0:\n");
        assert_eq!(line("1").0, "1:\n");
        assert_eq!(line("+12").0, "12: 2 2 3\n");
        assert_eq!(line("  0012").0, "12: 2 2 3\n");
        let quoted = |t: &str| gnu_quote(t.as_bytes(), utf8_locale());
        assert!(line("-5")
            .1
            .contains(&format!("{} is not a valid positive integer", quoted("-5"))));
        assert!(line("5x").1.contains("not a valid positive integer"));
        assert!(line("").1.contains(&quoted("")));
        // From 2^128 up, as GNU: 2^128 itself, and 2^128 + 2 read as GNU
        // reads it, into primes below 2^128.
        assert_eq!(
            line("340282366920938463463374607431768211456").0,
            format!(
                "340282366920938463463374607431768211456:{}\n",
                " 2".repeat(128)
            )
        );
        let (out, err) = line(" +000340282366920938463463374607431768211458");
        assert!(err.is_empty(), "{err}");
        let (n, factors) = out.trim_end().split_once(": ").expect("n: factors");
        assert_eq!(n, "340282366920938463463374607431768211458");
        let factors: Vec<u128> = factors
            .split(' ')
            .map(|f| f.parse().expect("a factor"))
            .collect();
        assert!(factors.is_sorted() && factors.iter().all(|&f| crowdfactor_factor::is_prime(f)));
        let product = factors
            .iter()
            .map(|&f| BigUint::from(f))
            .product::<BigUint>();
        assert_eq!(product.to_string(), n);
        // Around the one-word fast path (19 digits) and 2^128: the value
        // read back from the line, times its factors, is the input.
        for input in [
            "9999999999999999999",
            "18446744073709551615",
            "18446744073709551617",
            "340282366920938463463374607431768211455",
            "0000000000000000000000000000000000000000000097",
        ] {
            let (out, err) = line(input);
            assert!(err.is_empty(), "{err}");
            let (n, factors) = out.trim_end().split_once(':').expect("n: factors");
            assert_eq!(n.parse::<u128>(), input.parse::<u128>());
            let product = factors
                .split_whitespace()
                .map(|f| f.parse::<u128>().expect("a factor"))
                .product::<u128>();
            assert_eq!(Some(product), n.parse().ok(), "{out}");
        }
        assert!(line("1x").1.contains(&quoted("1x")));
        assert!(line("\u{e9}").1.contains(&quoted("\u{e9}")));
        // Only spaces before a number, as GNU: other whitespace is part of it.
        for invalid in ["\t12", "\r12", "12\r", "12 ", "\n12", "1 2"] {
            assert!(line(invalid).0.is_empty(), "{invalid:?}");
        }
        // A token ends at a NUL, as GNU's C strings do.
        assert_eq!(line("12\0x").0, "12: 2 2 3\n");
        assert!(line("\0").1.contains(&quoted("")));
    }

    /// What GNU coreutils 9.1 `factor` prints for these tokens, under
    /// `LC_ALL=C.UTF-8` and `LC_ALL=C`.
    #[test]
    fn messages_quote_as_gnu_does() {
        for (text, utf8, c) in [
            (&b"abc"[..], "‘abc’", "'abc'"),
            (b"12\r", "‘12\\r’", "'12\\r'"),
            (
                b"\t\n\x0b\x0c\x07\x08",
                "‘\\t\\n\\v\\f\\a\\b’",
                "'\\t\\n\\v\\f\\a\\b'",
            ),
            (b"a\\b", "‘a\\\\b’", "'a\\\\b'"),
            (
                b"x\x01y\x1b\x7f",
                "‘x\\001y\\033\\177’",
                "'x\\001y\\033\\177'",
            ),
            (b"a'b", "‘a'b’", "'a\\'b'"),
            (
                "q’q‘".as_bytes(),
                "‘q\\’q‘’",
                "'q\\342\\200\\231q\\342\\200\\230'",
            ),
            ("é".as_bytes(), "‘é’", "'\\303\\251'"),
            (b"\xff\xc3", "‘\\377\\303’", "'\\377\\303'"),
            // C1 controls and the line and paragraph separators are not printable.
            (
                "\u{85}\u{a0}\u{2028}".as_bytes(),
                "‘\\302\\205\u{a0}\\342\\200\\250’",
                "'\\302\\205\\302\\240\\342\\200\\250'",
            ),
            (b"", "‘’", "''"),
        ] {
            assert_eq!(gnu_quote(text, true), utf8, "{text:?}");
            assert_eq!(gnu_quote(text, false), c, "{text:?}");
        }
    }

    /// Runs of numbers in arithmetic progression (sieved all at once) print
    /// what one number at a time prints, whatever the step, start and
    /// thread count; a run with one number out of step is not taken for one.
    #[test]
    fn progressions_print_what_single_numbers_print() {
        let one_by_one = |tokens: &[String], exp: bool| {
            let (mut out, mut err) = (String::new(), String::new());
            let mut buf = vec![];
            for t in tokens {
                render(t.as_bytes(), exp, &mut buf, &mut out, &mut err);
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
                sieved_progression(&tokens),
                Some((start, step)),
                "{start} {step}"
            );
            for threads in [1, 3] {
                let mut out = vec![];
                assert!(batch(&tokens, false, threads, &mut out).expect("write"));
                assert_eq!(
                    String::from_utf8(out).expect("utf8"),
                    one_by_one(&tokens, false)
                );
            }
            // Out of step near the end: factored one by one, still right.
            tokens[count - 2] = (start + step).to_string();
            assert_eq!(sieved_progression(&tokens), None);
            let (out, _, ok) = render_all(&tokens, false);
            assert!(ok);
            assert_eq!(out, one_by_one(&tokens, false));
            // In step but for a last token that is no number: not sieved.
            tokens[count - 2] = (start + (count as u128 - 2) * step).to_string();
            tokens[count - 1] = "x".into();
            assert_eq!(sieved_progression(&tokens), None);
            assert_eq!(
                sieved_progression(&tokens[..count - 1]),
                Some((start, step))
            );
            // Constant or falling: not a progression.
            let same = vec![start.to_string(); count];
            assert_eq!(sieved_progression(&same), None);
            let falling: Vec<String> = tokens[..count - 1].iter().rev().cloned().collect();
            assert_eq!(sieved_progression(&falling), None);
        }
        // GNU's spellings of numbers in step: printed as the numbers.
        let spelled: Vec<String> = ["+12", " 13", "0014", "15"].map(String::from).to_vec();
        assert_eq!(render_all(&spelled, false).0, one_by_one(&spelled, false));
        assert_eq!(
            render_all(&spelled, false).0,
            "12: 2 2 3\n13: 13\n14: 2 7\n15: 3 5\n"
        );
    }

    /// Tokens cut by a block's end, runs of whitespace of every kind, a
    /// token longer than a block, invalid bytes and no final newline: the
    /// same lines and messages as the whole input at once.
    #[test]
    fn stdin_blocks_split_nowhere_inside_a_number() {
        let text: &[u8] = b"12  999999999999\t1000000000001\r\n\n 97 x\xff7 \
            0000000000000000000000000000000000000000000000000000000000000012 18446744073709551617\x0b5 6";
        let (expected, _, _) = render_all(&tokens(text), false);
        for size in [1, 2, 3, 7, 16, 1 << 20] {
            let mut out = vec![];
            let ok =
                in_blocks(&mut io::Cursor::new(text), size, false, 2, &mut out).expect("write");
            assert!(!ok, "x\\xff7 is invalid");
            assert_eq!(
                String::from_utf8(out).expect("utf8"),
                expected,
                "blocks of {size}"
            );
        }
    }

    /// `--exponents` (GNU coreutils 9.3 and later): each prime once, `^e`
    /// above 1; sieved progressions print the same.
    #[test]
    fn exponents_print_each_prime_once() {
        let exp = |tok: &str| {
            let (mut out, mut err) = (String::new(), String::new());
            render(tok.as_bytes(), true, &mut vec![], &mut out, &mut err);
            out
        };
        assert_eq!(exp("72"), "72: 2^3 3^2\n");
        assert_eq!(exp("1024"), "1024: 2^10\n");
        assert_eq!(exp("30"), "30: 2 3 5\n");
        assert_eq!(exp("1"), "1:\n");
        assert_eq!(exp("1000000000000"), "1000000000000: 2^12 5^12\n");
        assert_eq!(
            exp("340282366920938463463374607431768211455"),
            "340282366920938463463374607431768211455: 3 5 17 257 641 65537 274177 6700417 67280421310721\n"
        );
        let tokens: Vec<String> = (1..=30_000u32).map(|n| n.to_string()).collect();
        assert!(sieved_progression(&tokens).is_some());
        let sieved = render_all(&tokens, true).0;
        let one_by_one: String = tokens.iter().map(|t| exp(t)).collect();
        assert_eq!(sieved, one_by_one);
        assert!(sieved.contains("\n27648: 2^10 3^3\n"));
    }

    #[test]
    fn batches_keep_input_order() {
        let tokens: Vec<String> = (1..=500u32).rev().map(|n| n.to_string()).collect();
        let mut out = vec![];
        assert!(batch(&tokens, false, 4, &mut out).expect("write"));
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
