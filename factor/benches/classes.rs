//! Speed per input class: this engine natively, the same engine as wasm
//! (node, via web/pkg), and GNU coreutils `factor` on the same numbers in the
//! same run. Prints ns/number and ratios. Not a test: nothing here asserts a
//! speed.
//!
//! `cargo bench -p crowdfactor-factor --bench classes [-- --quick] [--gnu-budget SECS]`
//! (`scripts/bench.sh` builds the wasm first and runs this).
#![allow(clippy::print_stdout, clippy::unwrap_used)]

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Instant;

use crowdfactor_factor::{factor, is_prime};

struct Class {
    name: &'static str,
    /// Reference CPU time per number from the issue (GNU factor 9.1, best C++ micro-ECM), ns.
    gnu_ref_ns: f64,
    cpp_ref_ns: f64,
    count: usize,
    make: fn(&mut fastrand::Rng, usize) -> Vec<u128>,
}

fn prime(rng: &mut fastrand::Rng, bits: u32) -> u128 {
    loop {
        let c = rng.u128((1 << (bits - 1))..(1 << bits)) | 1;
        if is_prime(c) {
            return c;
        }
    }
}

fn semiprimes(rng: &mut fastrand::Rng, count: usize, bits: u32) -> Vec<u128> {
    (0..count)
        .map(|_| prime(rng, bits) * prime(rng, bits))
        .collect()
}

fn classes(quick: bool) -> Vec<Class> {
    let q = |full: usize, small: usize| if quick { small } else { full };
    vec![
        Class {
            name: "999999999999 + 2i (seed job)",
            gnu_ref_ns: 4.7e3,
            cpp_ref_ns: 1.5e3,
            count: q(200_000, 2000),
            make: |_, n| (0..n as u128).map(|i| 999_999_999_999 + 2 * i).collect(),
        },
        Class {
            name: "uniform random 64-bit",
            gnu_ref_ns: 42e3,
            cpp_ref_ns: 9.2e3,
            count: q(50_000, 500),
            make: |r, n| (0..n).map(|_| (r.u64(..) | 1) as u128).collect(),
        },
        Class {
            name: "semiprime 32+32 bits",
            gnu_ref_ns: 1.0e6,
            cpp_ref_ns: 85e3,
            count: q(2000, 20),
            make: |r, n| semiprimes(r, n, 32),
        },
        Class {
            name: "semiprime 40+40 bits",
            gnu_ref_ns: 32e6,
            cpp_ref_ns: 2.0e6,
            count: q(200, 4),
            make: |r, n| semiprimes(r, n, 40),
        },
        Class {
            name: "semiprime 48+48 bits",
            gnu_ref_ns: 0.49e9,
            cpp_ref_ns: 8.5e6,
            count: q(50, 2),
            make: |r, n| semiprimes(r, n, 48),
        },
        Class {
            name: "semiprime 56+56 bits",
            gnu_ref_ns: 9.0e9,
            cpp_ref_ns: 73e6,
            count: q(20, 1),
            make: |r, n| semiprimes(r, n, 56),
        },
        Class {
            name: "semiprime 64+64 bits",
            gnu_ref_ns: 330e9,
            cpp_ref_ns: 0.19e9,
            count: q(6, 1),
            make: |r, n| semiprimes(r, n, 64),
        },
    ]
}

fn native_ns(numbers: &[u128]) -> f64 {
    let mut best = f64::INFINITY;
    let runs = if numbers.len() >= 1000 { 3 } else { 1 };
    for _ in 0..runs {
        let t = Instant::now();
        let mut total = 0usize;
        for &n in numbers {
            total += factor(n).len();
        }
        std::hint::black_box(total);
        best = best.min(t.elapsed().as_nanos() as f64 / numbers.len() as f64);
    }
    best
}

fn write_numbers(numbers: &[u128]) -> std::path::PathBuf {
    let path = std::env::temp_dir().join(format!("crowdfactor-bench-{}.txt", std::process::id()));
    let mut f = std::io::BufWriter::new(std::fs::File::create(&path).unwrap());
    for n in numbers {
        writeln!(f, "{n}").unwrap();
    }
    f.flush().unwrap();
    path
}

/// GNU factor's wall time per number (its start-up subtracted), and whether it agrees with us.
fn gnu_ns(numbers: &[u128]) -> Option<(f64, bool)> {
    let startup = {
        let t = Instant::now();
        Command::new("factor")
            .arg("1")
            .stdout(Stdio::null())
            .status()
            .ok()?;
        t.elapsed().as_nanos() as f64
    };
    let path = write_numbers(numbers);
    let t = Instant::now();
    let out = Command::new("factor")
        .stdin(std::fs::File::open(&path).ok()?)
        .output()
        .ok()?;
    let ns = (t.elapsed().as_nanos() as f64 - startup).max(1.0) / numbers.len() as f64;
    let _ = std::fs::remove_file(&path);
    let text = String::from_utf8_lossy(&out.stdout);
    let gnu: std::collections::HashMap<&str, &str> =
        text.lines().filter_map(|l| l.split_once(':')).collect();
    let agree = numbers.iter().all(|&n| {
        let ours: Vec<String> = factor(n).iter().map(|f| f.to_string()).collect();
        gnu.get(n.to_string().as_str())
            .map(|g| g.split_whitespace().collect::<Vec<_>>().join(" "))
            == Some(ours.join(" "))
    });
    Some((ns, agree))
}

fn wasm_ns(numbers: &[u128]) -> Option<f64> {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
    let script = format!("{root}/scripts/bench-wasm.mjs");
    if !std::path::Path::new(&format!("{root}/web/pkg/crowdfactor_wasm_bg.wasm")).exists() {
        return None;
    }
    let path = write_numbers(numbers);
    let runs = if numbers.len() >= 1000 { "3" } else { "1" };
    let out = Command::new("node")
        .arg(&script)
        .arg(&path)
        .arg(runs)
        .output()
        .ok()?;
    let _ = std::fs::remove_file(&path);
    let text = String::from_utf8_lossy(&out.stdout);
    let v = text
        .split("\"ns_per_number\":")
        .nth(1)?
        .split([',', '}'])
        .next()?
        .trim()
        .parse()
        .ok()?;
    Some(v)
}

fn fmt_ns(ns: f64) -> String {
    match ns {
        x if x >= 1e9 => format!("{:.2} s", x / 1e9),
        x if x >= 1e6 => format!("{:.2} ms", x / 1e6),
        x if x >= 1e3 => format!("{:.2} µs", x / 1e3),
        x => format!("{x:.0} ns"),
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let quick = args.iter().any(|a| a == "--quick");
    let budget_s: f64 = args
        .iter()
        .position(|a| a == "--gnu-budget")
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(if quick { 2.0 } else { 30.0 });
    println!("crowdfactor factor engine, single thread; GNU factor run on the same numbers (budget {budget_s} s per class)");
    println!(
        "{:<30} {:>7} {:>11} {:>11} {:>11} {:>9} {:>11} {:>10} {:>10}",
        "class",
        "count",
        "native",
        "wasm(node)",
        "GNU",
        "GNU/ours",
        "C++ ref",
        "ours/C++",
        "wasm/nat"
    );
    let mut rng = fastrand::Rng::with_seed(20261128);
    for class in classes(quick) {
        let numbers = (class.make)(&mut rng, class.count);
        let native = native_ns(&numbers);
        let wasm = wasm_ns(&numbers);
        let gnu_n = ((budget_s * 1e9 / class.gnu_ref_ns) as usize).min(numbers.len());
        let gnu = if gnu_n >= 1 {
            gnu_ns(&numbers[..gnu_n])
        } else {
            None
        };
        let gnu_col = match gnu {
            Some((ns, true)) => fmt_ns(ns),
            Some((ns, false)) => format!("{} MISMATCH", fmt_ns(ns)),
            None => format!("({} ref)", fmt_ns(class.gnu_ref_ns)),
        };
        let gnu_ratio = gnu.map_or(class.gnu_ref_ns, |g| g.0) / native;
        println!(
            "{:<30} {:>7} {:>11} {:>11} {:>11} {:>8.1}x {:>11} {:>9.2}x {:>9.2}x",
            class.name,
            numbers.len(),
            fmt_ns(native),
            wasm.map_or("-".into(), fmt_ns),
            gnu_col,
            gnu_ratio,
            fmt_ns(class.cpp_ref_ns),
            native / class.cpp_ref_ns,
            wasm.map_or(f64::NAN, |w| w / native),
        );
    }
    println!("GNU/ours > 1: faster than GNU factor. ours/C++ <= 1: at or below the micro-ECM reference (from the issue, same machine class).");
}
