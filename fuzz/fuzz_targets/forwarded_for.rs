//! Fuzz target: [`wsc_tests::fuzz::forwarded_for`] on arbitrary bytes.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| wsc_tests::fuzz::forwarded_for(data));
