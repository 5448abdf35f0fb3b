//! libFuzzer entry point for [`aiproxy_fuzz::anthropic_stream`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| aiproxy_fuzz::anthropic_stream(data));
