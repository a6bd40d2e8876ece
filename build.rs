//! Generates `include/bgjob.h` from the C ABI in `src/ffi/` with cbindgen.
//!
//! The header is checked in. Outside CI the build rewrites it when it changed, so a
//! developer's header is always current; in CI (`CI` set) the build leaves it alone and
//! `tests/header.rs` fails if the committed header is stale.

use std::path::PathBuf;

fn main() {
    println!("cargo:rerun-if-changed=src");
    println!("cargo:rerun-if-changed=cbindgen.toml");
    println!("cargo:rerun-if-env-changed=CI");
    let crate_dir = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets it"));
    let config = cbindgen::Config::from_file(crate_dir.join("cbindgen.toml"))
        .expect("cbindgen.toml is valid");
    let bindings = match cbindgen::generate_with_config(&crate_dir, config) {
        Ok(b) => b,
        Err(e) => {
            // A syntax error in the crate is reported better by rustc than by cbindgen.
            println!("cargo:warning=cbindgen could not generate bgjob.h: {e}");
            return;
        }
    };
    let out = PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets it")).join("bgjob.h");
    bindings.write_to_file(&out);
    if std::env::var_os("CI").is_none() {
        bindings.write_to_file(crate_dir.join("include/bgjob.h"));
    }
}
