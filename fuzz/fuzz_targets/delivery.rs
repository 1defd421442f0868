#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| conclave_fuzz::delivery::run(data));
