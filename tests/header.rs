//! The committed `include/bgjob.h` must be exactly what cbindgen generates from the
//! sources now: a stale header misleads every C user.

use std::path::Path;

include!("../src/ffi/header_config.rs");

#[test]
fn committed_header_is_what_cbindgen_generates() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let config = header_config(dir, env!("CARGO_PKG_VERSION"));
    let bindings = cbindgen::generate_with_config(dir, config).expect("cbindgen generates");
    let mut fresh = Vec::new();
    bindings.write(&mut fresh);
    let committed = std::fs::read(dir.join("include/bgjob.h")).expect("include/bgjob.h exists");
    assert!(
        fresh == committed,
        "include/bgjob.h is stale: run `make header` and commit the header"
    );
}

#[test]
fn header_has_the_banner_and_cpp_guards() {
    let text =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("include/bgjob.h"))
            .expect("include/bgjob.h exists");
    assert!(text.contains("do not edit"));
    assert!(text.contains("extern \"C\""));
    assert!(text.contains("#ifndef BGJOB_H"));
}

#[test]
fn version_macros_match_cargo_toml() {
    let text =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("include/bgjob.h"))
            .expect("include/bgjob.h exists");
    for (name, value) in [
        ("BGJOB_VERSION_MAJOR", env!("CARGO_PKG_VERSION_MAJOR")),
        ("BGJOB_VERSION_MINOR", env!("CARGO_PKG_VERSION_MINOR")),
        ("BGJOB_VERSION_PATCH", env!("CARGO_PKG_VERSION_PATCH")),
        (
            "BGJOB_VERSION_STRING",
            concat!("\"", env!("CARGO_PKG_VERSION"), "\""),
        ),
    ] {
        let line = format!("#define {name} {value}\n");
        assert!(
            text.contains(&line),
            "include/bgjob.h lacks `{}`",
            line.trim_end()
        );
    }
}
