//! cargo-fuzz target: libFuzzer's bytes, decoded into a sequence of C-ABI calls
//! (`ops_from_bytes`), run against the reference model of `tests/fuzz_api.rs`, which checks
//! every promise after each call. A broken promise panics (libFuzzer saves the input as a
//! crash); `BGJOB_FUZZ_REPLAY=<crash file> cargo test --release --test fuzz_api byte`
//! replays it without libFuzzer. From the repository root (a stable toolchain needs
//! RUSTC_BOOTSTRAP=1; the corpus directory is optional):
//!
//!     RUSTC_BOOTSTRAP=1 cargo fuzz run api /tmp/bgjob-corpus -- -max_total_time=600 \
//!         -max_len=200 -len_control=0 -detect_leaks=0
//!
//! `-detect_leaks=0`: libFuzzer's leak check between inputs runs while bgjob's worker
//! threads live and reports their in-flight thread-start boxes and thread-local error
//! strings as leaks (valgrind finds none in the same input); `make sanitize` checks leaks.
#![no_main]

// Only the driver is used here: the proptest half of the file is dead code in this crate.
#[allow(dead_code, unused_imports)]
#[path = "../../tests/fuzz_api.rs"]
mod fuzz_api;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let ops = fuzz_api::ops_from_bytes(data);
    if let Err(e) = fuzz_api::run_case(&ops) {
        panic!("a promise broken by {ops:#?}\n{e}");
    }
});
