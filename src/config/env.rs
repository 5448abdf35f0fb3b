//! STUB — `${VAR}` expansion.
/// Where `${VAR}` values come from (the process environment, a `.env` file, a test map).
pub trait EnvLookup {
    fn get(&self, name: &str) -> Option<String>;
}

/// Expand `${VAR}`, `${VAR:-default}` and `$$` in one string. Errors name the problem.
pub fn expand_str(s: &str, env: &dyn EnvLookup) -> Result<String, String> {
    let _ = env;
    Ok(s.to_string())
}

/// STUB — layered environment.
pub struct Env;
impl Env {
    pub fn load(_dotenv: Option<&std::path::Path>) -> Result<Env, String> {
        Ok(Env)
    }
}
impl EnvLookup for Env {
    fn get(&self, name: &str) -> Option<String> {
        std::env::var(name).ok()
    }
}
