//! Helpers shared by the integration tests (each test file is its own crate: `mod common;`).
#![allow(dead_code, clippy::expect_used)] // not every test file uses every helper; a failed expectation is the test failing

use std::path::{Path, PathBuf};

use pyactors_core::Options;

/// Options with 4 KiB segments, so that a few hundred records roll many times.
pub fn small() -> Options {
    Options { segment_bytes: 4096, ..Options::default() }
}

/// A fresh temporary directory named after the test.
pub fn tmp(name: &str) -> tempfile::TempDir {
    tempfile::Builder::new().prefix(name).tempdir().expect("tempdir")
}

/// The `i`-th test payload (compressible text).
pub fn payload(i: u64) -> Vec<u8> {
    format!("message number {i} with some repeated text text text text text text").into_bytes()
}

/// The segment files of `dir`, sorted (oldest first).
pub fn segments(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("dir")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "seg"))
        .collect();
    v.sort();
    v
}
