//! STUB — raw → typed.
use super::{Config, EnvLookup};
pub(super) fn parse_and_validate(_text: &str, _env: &dyn EnvLookup) -> Result<Config, Vec<String>> {
    Err(vec!["not implemented".into()])
}
