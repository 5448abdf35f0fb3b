//! libFuzzer entry point for [`aiproxy_fuzz::config`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| aiproxy_fuzz::config(data));
