#![no_main]
//! See `pyactors_core_fuzz::decode`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| pyactors_core_fuzz::decode(data));
