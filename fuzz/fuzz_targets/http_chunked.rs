//! libFuzzer entry point for [`aiproxy_fuzz::http_chunked`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| aiproxy_fuzz::http_chunked(data));
