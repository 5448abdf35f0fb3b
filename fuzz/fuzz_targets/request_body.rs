//! libFuzzer entry point for [`aiproxy_fuzz::request_body`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| aiproxy_fuzz::request_body(data));
