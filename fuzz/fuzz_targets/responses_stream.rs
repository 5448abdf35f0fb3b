//! libFuzzer entry point for [`aiproxy_fuzz::responses_stream`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| aiproxy_fuzz::responses_stream(data));
