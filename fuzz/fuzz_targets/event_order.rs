//! Fuzz target: [`wsc_tests::fuzz::event_order`] on arbitrary bytes.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| wsc_tests::fuzz::event_order(data));
