//! Gives `libbgjob.so` a soname, as every installed shared library has, so a program linked
//! against one version keeps finding a compatible one. The rule is cargo-c's (so
//! `cargo cinstall` and `make install` agree): `0.MINOR` before 1.0, `MAJOR` after.
//!
//! The header is not generated here: `make header` regenerates `include/bgjob.h` with
//! cbindgen (`tests/header.rs`, which also fails `make test` while the committed header is
//! stale). A build script with cbindgen among its dependencies made every switch between
//! `cargo build`, `cargo test` and maturin rebuild the library (their feature sets differ).

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
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
