//! libFuzzer entry point for [`aiproxy_fuzz::responses_request`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| aiproxy_fuzz::responses_request(data));
