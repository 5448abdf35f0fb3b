//! libFuzzer entry point for [`aiproxy_fuzz::sse_codec`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| aiproxy_fuzz::sse_codec(data));
