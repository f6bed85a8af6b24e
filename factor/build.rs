//! Sets `cfg(narrow_mul)` when the target has no 64×64→128-bit multiply:
//! wasm32, unless built with the wide-arithmetic proposal
//! (`RUSTFLAGS="-C target-feature=+wide-arithmetic"`, which rustc does not
//! report to `cfg(target_feature)` while the feature is unstable).
//!
//! Writes `prac_ratios.rs`: ECM's choice of Lucas chain for every stage-1
//! prime, made here once instead of by every curve (see `src/prac.rs`).

use std::io::Write as _;
use std::path::PathBuf;

#[allow(dead_code)]
mod prac {
    include!("src/prac.rs");
}

fn main() {
    println!("cargo::rustc-check-cfg=cfg(narrow_mul)");
    println!("cargo::rerun-if-env-changed=CARGO_ENCODED_RUSTFLAGS");
    println!("cargo::rerun-if-changed=build.rs");
    println!("cargo::rerun-if-changed=src/prac.rs");
    let wasm = std::env::var("CARGO_CFG_TARGET_ARCH").is_ok_and(|a| a == "wasm32");
    let wide =
        std::env::var("CARGO_ENCODED_RUSTFLAGS").is_ok_and(|f| f.contains("+wide-arithmetic"));
    if wasm && !wide {
        println!("cargo::rustc-cfg=narrow_mul");
    }
    write_ratios();
}

/// `RATIOS`: `prac::best_ratio` of each odd prime up to `prac::RATIO_BOUND`.
fn write_ratios() {
    let bound = prac::RATIO_BOUND as usize;
    let mut composite = vec![false; bound + 1];
    let mut ratios = Vec::new();
    for p in (3..=bound).step_by(2) {
        if composite[p] {
            continue;
        }
        for m in (p * p..=bound).step_by(2 * p) {
            composite[m] = true;
        }
        ratios.push(prac::best_ratio(p as u64).to_string());
    }
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    let mut f = std::fs::File::create(out.join("prac_ratios.rs")).expect("create prac_ratios.rs");
    writeln!(
        f,
        "static RATIOS: [u8; {}] = [{}];",
        ratios.len(),
        ratios.join(",")
    )
    .expect("write prac_ratios.rs");
}
