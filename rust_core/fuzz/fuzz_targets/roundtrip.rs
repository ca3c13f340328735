#![no_main]
//! See `pyactors_core_fuzz::roundtrip`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| pyactors_core_fuzz::roundtrip(data));
