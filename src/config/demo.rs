//! STUB — the embedded demo config.
pub const DEMO_CONFIG_YAML: &str = "";
