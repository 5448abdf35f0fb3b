//! STUB — the embedded demo config.
use super::EnvLookup;
pub const DEMO_CONFIG_YAML: &str = "";
pub(super) struct DemoEnv {
    exe: String,
}
impl DemoEnv {
    pub(super) fn new(exe: &str) -> Self {
        DemoEnv {
            exe: exe.to_string(),
        }
    }
}
impl EnvLookup for DemoEnv {
    fn get(&self, name: &str) -> Option<String> {
        (name == "AIPROXY_EXE").then(|| self.exe.clone())
    }
}
