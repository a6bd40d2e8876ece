// The cbindgen configuration of include/bgjob.h, shared by build.rs (which writes the
// header) and tests/header.rs (which checks the committed one): both `include!` this file,
// so the two can never build the header differently. It is not a module of the crate.

/// cbindgen.toml, plus the version macros, made from the crate's version so that the
/// header a program compiles against always says which library version it describes.
fn header_config(crate_dir: &std::path::Path, version: &str) -> cbindgen::Config {
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
