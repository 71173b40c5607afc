#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| qgoft_fuzz::csv(data));
