//! Every input the fuzz targets found a crash with, replayed through the same checks
//! (`rust_core/fuzz/src/lib.rs`, included here) by plain `cargo test`. The inputs are
//! committed under `tests/data/fuzz/<target>/`, named after the bug they found.
#![allow(clippy::expect_used)] // test code: a failed expectation is the test failing

#[path = "../fuzz/src/lib.rs"]
#[allow(dead_code)]
mod checks;

use std::path::PathBuf;

fn replay(target: &str, check: fn(&[u8])) {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/data/fuzz").join(target);
    let mut names: Vec<PathBuf> =
        std::fs::read_dir(&dir).expect("tests/data/fuzz").map(|e| e.expect("entry").path()).collect();
    names.sort();
    for path in names {
        let data = std::fs::read(&path).expect("input");
        eprintln!("replaying {}", path.display());
        check(&data);
    }
}

#[test]
fn decode_crash_inputs_now_pass_the_decode_checks() {
    replay("decode", checks::decode);
}

#[test]
fn roundtrip_crash_inputs_now_pass_the_roundtrip_checks() {
    replay("roundtrip", checks::roundtrip);
}

#[test]
fn open_dir_crash_inputs_now_pass_the_open_dir_checks() {
    replay("open_dir", checks::open_dir);
}
