//! STUB — OpenAI-compatible backend.
#![allow(dead_code)]
use super::{Backend, Error, Turn, TurnRequest, TurnSink};
use crate::config::BackendConfig;
pub struct OpenAiBackend;
impl OpenAiBackend {
    pub fn new(_cfg: &BackendConfig) -> Self {
        OpenAiBackend
    }
}
impl Backend for OpenAiBackend {
    fn turn(&self, _req: &TurnRequest<'_>, _sink: &mut dyn TurnSink) -> Result<Turn, Error> {
        Err(Error::Protocol("not implemented".into()))
    }
}
