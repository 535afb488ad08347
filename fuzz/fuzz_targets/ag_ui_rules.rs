//! Fuzz target: [`wsc_tests::fuzz::ag_ui_rules`] on arbitrary bytes.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| wsc_tests::fuzz::ag_ui_rules(data));
