//! Generates `include/bgjob.h` from the C ABI in `src/ffi/` with cbindgen.
//!
//! The header is checked in. A build writes the fresh header to `$OUT_DIR/bgjob.h` only, and
//! rewrites the committed `include/bgjob.h` just when asked (`BGJOB_UPDATE_HEADER=1`, which
//! `make header` sets): so `tests/header.rs` compares the committed header, not one this
//! very build just rewrote, and a stale header fails `make test`.

use std::path::PathBuf;

fn main() {
    println!("cargo:rerun-if-changed=src");
    println!("cargo:rerun-if-changed=cbindgen.toml");
    println!("cargo:rerun-if-env-changed=BGJOB_UPDATE_HEADER");
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
    if std::env::var_os("BGJOB_UPDATE_HEADER").is_some_and(|v| v == "1") {
        bindings.write_to_file(crate_dir.join("include/bgjob.h"));
    }
}
