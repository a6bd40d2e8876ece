//! Generates `include/bgjob.h` from the C ABI in `src/ffi/` with cbindgen.
//!
//! The header is checked in. A build writes the fresh header to `$OUT_DIR/bgjob.h` only, and
//! rewrites the committed `include/bgjob.h` just when asked (`BGJOB_UPDATE_HEADER=1`, which
//! `make header` sets): so `tests/header.rs` compares the committed header, not one this
//! very build just rewrote, and a stale header fails `make test`.

use std::path::PathBuf;

include!("src/ffi/header_config.rs");

/// Gives `libbgjob.so` a soname, as every installed shared library has, so a program
/// linked against one version keeps finding a compatible one. The rule is cargo-c's (so
/// `cargo cinstall` and `make install` agree): `0.MINOR` before 1.0, `MAJOR` after.
fn set_soname() {
    if std::env::var("CARGO_CFG_TARGET_OS").as_deref() != Ok("linux") {
        return;
    }
    let major = std::env::var("CARGO_PKG_VERSION_MAJOR").expect("cargo sets it");
    let minor = std::env::var("CARGO_PKG_VERSION_MINOR").expect("cargo sets it");
    let sover = if major == "0" {
        format!("0.{minor}")
    } else {
        major
    };
    println!("cargo:rustc-cdylib-link-arg=-Wl,-soname,libbgjob.so.{sover}");
}

fn main() {
    println!("cargo:rerun-if-changed=src");
    println!("cargo:rerun-if-changed=cbindgen.toml");
    println!("cargo:rerun-if-env-changed=BGJOB_UPDATE_HEADER");
    let crate_dir = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets it"));
    let version = std::env::var("CARGO_PKG_VERSION").expect("cargo sets it");
    set_soname();
    let config = header_config(&crate_dir, &version);
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
