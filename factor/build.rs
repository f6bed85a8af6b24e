//! Sets `cfg(narrow_mul)` when the target has no 64×64→128-bit multiply:
//! wasm32, unless built with the wide-arithmetic proposal
//! (`RUSTFLAGS="-C target-feature=+wide-arithmetic"`, which rustc does not
//! report to `cfg(target_feature)` while the feature is unstable).

fn main() {
    println!("cargo::rustc-check-cfg=cfg(narrow_mul)");
    println!("cargo::rerun-if-env-changed=CARGO_ENCODED_RUSTFLAGS");
    let wasm = std::env::var("CARGO_CFG_TARGET_ARCH").is_ok_and(|a| a == "wasm32");
    let wide =
        std::env::var("CARGO_ENCODED_RUSTFLAGS").is_ok_and(|f| f.contains("+wide-arithmetic"));
    if wasm && !wide {
        println!("cargo::rustc-cfg=narrow_mul");
    }
}
