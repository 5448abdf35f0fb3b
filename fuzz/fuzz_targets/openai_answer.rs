//! libFuzzer entry point for [`aiproxy_fuzz::openai_answer`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| aiproxy_fuzz::openai_answer(data));
