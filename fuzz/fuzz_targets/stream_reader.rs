//! Fuzz target: [`wsc_tests::fuzz::stream_reader`] on arbitrary bytes.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| wsc_tests::fuzz::stream_reader(data));
