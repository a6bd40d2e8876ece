//! The committed `include/bgjob.h` must be exactly what cbindgen generates from the
//! sources now: a stale header misleads every C user. `make header` runs this test with
//! `BGJOB_UPDATE_HEADER=1`, which rewrites the header instead of comparing.

use std::path::Path;

/// cbindgen.toml, plus the version macros, made from the crate's version so that the
/// header a program compiles against always says which library version it describes.
fn header_config(crate_dir: &Path, version: &str) -> cbindgen::Config {
    let mut config = cbindgen::Config::from_file(crate_dir.join("cbindgen.toml"))
        .expect("cbindgen.toml is valid");
    let mut parts = version.split(['.', '-', '+']);
    let mut next = || parts.next().unwrap_or("0").to_owned();
    let (major, minor, patch) = (next(), next(), next());
    config.after_includes = Some(format!(
        "\n/** The version of the bgjob headers, the same as the crate's (Cargo.toml). Compare\n \
         * with bgjob_version(), the version of the library a program runs against. */\n\
         #define BGJOB_VERSION_MAJOR {major}\n\
         #define BGJOB_VERSION_MINOR {minor}\n\
         #define BGJOB_VERSION_PATCH {patch}\n\
         #define BGJOB_VERSION_STRING \"{version}\"\n\
         /** One number to compare versions with: major * 10000 + minor * 100 + patch. */\n\
         #define BGJOB_VERSION_NUMBER ({major} * 10000 + {minor} * 100 + {patch})"
    ));
    config
}

#[test]
fn committed_header_is_what_cbindgen_generates() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let config = header_config(dir, env!("CARGO_PKG_VERSION"));
    let bindings = cbindgen::generate_with_config(dir, config).expect("cbindgen generates");
    let mut fresh = Vec::new();
    bindings.write(&mut fresh);
    if std::env::var_os("BGJOB_UPDATE_HEADER").is_some_and(|v| v == "1") {
        std::fs::write(dir.join("include/bgjob.h"), &fresh).expect("include/bgjob.h is writable");
        return;
    }
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
