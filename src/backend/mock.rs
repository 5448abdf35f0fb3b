//! STUB — deterministic offline model.
use super::{Backend, Error, Turn, TurnRequest, TurnSink};
pub struct MockBackend;
impl Backend for MockBackend {
    fn turn(&self, _req: &TurnRequest<'_>, _sink: &mut dyn TurnSink) -> Result<Turn, Error> {
        Err(Error::Protocol("not implemented".into()))
    }
}
