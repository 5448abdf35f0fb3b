//! Environment variables for config files: where values come from ([`Env`]: process
//! environment > `.env` file > built-ins; [`MapEnv`] for tests) and `${VAR}` expansion in string
//! values.
//!
//! Expansion rules (docs/configuration.md#environment-variables): `${VAR}`; `${VAR:-default}`, where the default applies when VAR is
//! unset *or empty* (POSIX semantics; the original project only applied it when unset); `$$` is
//! a literal `$`; a `$` followed by anything else stays literal. An unterminated `${` or a
//! malformed reference is an error. An unset `${VAR}` without a default expands to "" and is
//! reported as a warning that names the variable and the key path, never a value. Only string
//! values are expanded, never mapping keys. Pure functions; no threads.

use std::collections::HashMap;
use std::path::Path as FsPath;

use serde_yaml::Value as Yaml;

use super::dotenv::{self, is_var_name};
use super::raw::{Path, Problems, key_text};

/// Where `${VAR}` values come from (the process environment, a `.env` file, a test map).
pub trait EnvLookup {
    fn get(&self, name: &str) -> Option<String>;
}

/// The environment of a running proxy: real process variables win over values from a `.env`
/// file, which win over built-ins. The one built-in is `AIPROXY_EXE`, the path of the running
/// binary, so a config can start this binary's demo MCP server (`command: ${AIPROXY_EXE}`,
/// `args: [demo-mcp]`).
#[derive(Clone, Default)]
pub struct Env {
    dotenv: HashMap<String, String>,
    builtins: HashMap<String, String>,
}

/// Names only: `.env` values are secrets.
impl std::fmt::Debug for Env {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut dotenv: Vec<&str> = self.dotenv.keys().map(String::as_str).collect();
        dotenv.sort_unstable();
        f.debug_struct("Env")
            .field("dotenv", &dotenv)
            .field("builtins", &self.builtins)
            .finish()
    }
}

impl Env {
    /// The process environment plus, if `dotenv` is given, the variables of that `.env` file (a
    /// missing or malformed file is an error naming the path and line; values never appear in
    /// it). Which file to use (`--env-file`, else `./.env` if present) is the caller's choice.
    pub fn load(dotenv: Option<&FsPath>) -> Result<Env, String> {
        let vars = match dotenv {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
                dotenv::parse(&text).map_err(|e| format!("{}:{e}", path.display()))?
            }
            None => Vec::new(),
        };
        let mut env = Env::default();
        env.dotenv.extend(vars);
        if let Some(exe) = std::env::current_exe()
            .ok()
            .and_then(|p| p.to_str().map(str::to_string))
        {
            env.builtins.insert("AIPROXY_EXE".into(), exe);
        }
        Ok(env)
    }

    /// Overrides a built-in (tests point `AIPROXY_EXE` at the real binary, not the test runner).
    pub fn with_builtin(mut self, name: &str, value: &str) -> Env {
        self.builtins.insert(name.into(), value.into());
        self
    }
}

impl EnvLookup for Env {
    fn get(&self, name: &str) -> Option<String> {
        // A variable that is set but not valid UTF-8 cannot be expanded into YAML text; it falls
        // through to the next layer as if unset.
        std::env::var(name)
            .ok()
            .or_else(|| self.dotenv.get(name).cloned())
            .or_else(|| self.builtins.get(name).cloned())
    }
}

/// A fixed set of variables, for tests and for callers that already hold the values.
#[derive(Debug, Clone, Default)]
pub struct MapEnv {
    vars: HashMap<String, String>,
}

impl MapEnv {
    pub fn new() -> MapEnv {
        MapEnv::default()
    }

    pub fn with(mut self, name: &str, value: &str) -> MapEnv {
        self.vars.insert(name.into(), value.into());
        self
    }
}

impl<K: Into<String>, V: Into<String>> FromIterator<(K, V)> for MapEnv {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(iter: I) -> MapEnv {
        MapEnv {
            vars: iter
                .into_iter()
                .map(|(k, v)| (k.into(), v.into()))
                .collect(),
        }
    }
}

impl EnvLookup for MapEnv {
    fn get(&self, name: &str) -> Option<String> {
        self.vars.get(name).cloned()
    }
}

/// One expanded string and the variables it referenced that are unset (with no default).
#[derive(Debug, PartialEq)]
pub(super) struct Expanded {
    pub(super) text: String,
    pub(super) unset: Vec<String>,
}

/// Expand `${VAR}`, `${VAR:-default}` and `$$` in one string.
pub(super) fn expand(s: &str, env: &dyn EnvLookup) -> Result<Expanded, String> {
    let mut text = String::with_capacity(s.len());
    let mut unset = Vec::new();
    let mut rest = s;
    while let Some(i) = rest.find('$') {
        text.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        if let Some(r) = after.strip_prefix('$') {
            text.push('$');
            rest = r;
        } else if let Some(r) = after.strip_prefix('{') {
            let Some(end) = r.find('}') else {
                return Err("unterminated '${' (write '$$' for a literal '$')".into());
            };
            let inner = &r[..end];
            let (name, default) = match inner.split_once(":-") {
                Some((name, default)) => (name, Some(default)),
                None => (inner, None),
            };
            if !is_var_name(name) {
                return Err(format!(
                    "invalid reference '${{{inner}}}': expected ${{NAME}} or ${{NAME:-default}}"
                ));
            }
            let value = env.get(name);
            match (value.as_deref(), default) {
                (Some(v), _) if !v.is_empty() => text.push_str(v),
                (_, Some(d)) => text.push_str(d),
                (Some(_), None) => {}
                (None, None) => unset.push(name.to_string()),
            }
            rest = &r[end + 1..];
        } else {
            text.push('$');
            rest = after;
        }
    }
    text.push_str(rest);
    Ok(Expanded { text, unset })
}

/// Expand `${VAR}`, `${VAR:-default}` and `$$` in one string. Errors name the problem; unset
/// variables expand to "" with a warning in the log.
pub fn expand_str(s: &str, env: &dyn EnvLookup) -> Result<String, String> {
    let out = expand(s, env)?;
    for name in &out.unset {
        log::warn!("environment variable {name} is not set; using an empty string");
    }
    Ok(out.text)
}

/// Expand every string value in a parsed document in place. Errors become problems at their
/// path; unset variables become `warnings` (`path: message`) for the caller to log.
pub(super) fn expand_tree(
    problems: &mut Problems,
    warnings: &mut Vec<String>,
    path: &Path,
    v: &mut Yaml,
    env: &dyn EnvLookup,
) {
    match v {
        Yaml::String(s) => match expand(s, env) {
            Ok(out) => {
                for name in out.unset {
                    warnings.push(format!(
                        "{path}: environment variable {name} is not set; using an empty string"
                    ));
                }
                *s = out.text;
            }
            Err(e) => problems.add(path, e),
        },
        Yaml::Sequence(items) => {
            for (i, item) in items.iter_mut().enumerate() {
                expand_tree(problems, warnings, &path.index(i), item, env);
            }
        }
        Yaml::Mapping(m) => {
            for (k, item) in m.iter_mut() {
                let p = path.key(&key_text(k).unwrap_or_default());
                expand_tree(problems, warnings, &p, item, env);
            }
        }
        // Tagged values are rejected by the schema reader; nulls, numbers and booleans have no
        // text to expand.
        Yaml::Tagged(_) | Yaml::Null | Yaml::Bool(_) | Yaml::Number(_) => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env() -> MapEnv {
        MapEnv::new()
            .with("HOST", "example.com")
            .with("EMPTY", "")
            .with("KEY", "sk-1")
    }

    fn ok(s: &str) -> String {
        let out = expand(s, &env()).unwrap();
        assert!(out.unset.is_empty(), "{s}: {:?}", out.unset);
        out.text
    }

    #[test]
    fn variables_and_defaults() {
        assert_eq!(ok("https://${HOST}/v1"), "https://example.com/v1");
        assert_eq!(ok("${HOST}${KEY}"), "example.comsk-1");
        assert_eq!(ok("${HOST:-other}"), "example.com");
        assert_eq!(
            ok("${NOPE:-http://127.0.0.1:11434/v1}"),
            "http://127.0.0.1:11434/v1"
        );
        assert_eq!(ok("${NOPE:-}"), "");
        // POSIX `:-`: an empty variable takes the default too.
        assert_eq!(ok("${EMPTY:-fallback}"), "fallback");
        // Set but empty, no default: "" without a warning (it is set).
        assert_eq!(ok("a${EMPTY}b"), "ab");
        // The default is literal text: no nesting.
        assert_eq!(ok("${NOPE:-$HOST}"), "$HOST");
    }

    #[test]
    fn dollars() {
        assert_eq!(ok("$$"), "$");
        assert_eq!(ok("$${HOST}"), "${HOST}");
        assert_eq!(ok("cost: 5$ or $5 or $HOST"), "cost: 5$ or $5 or $HOST");
        assert_eq!(ok("end$"), "end$");
        assert_eq!(ok("$$$${KEY}"), "$${KEY}");
        assert_eq!(ok("$$${KEY}"), "$sk-1");
        assert_eq!(ok("no dollars"), "no dollars");
        assert_eq!(ok("ünï${KEY}çødé"), "ünïsk-1çødé");
    }

    #[test]
    fn unset_without_default_is_empty_and_reported() {
        let out = expand("Bearer ${TOKEN}", &env()).unwrap();
        assert_eq!(
            out,
            Expanded {
                text: "Bearer ".into(),
                unset: vec!["TOKEN".into()]
            }
        );
    }

    #[test]
    fn malformed_references_are_errors() {
        let unterminated = "unterminated '${' (write '$$' for a literal '$')";
        assert_eq!(expand("${HOST", &env()).unwrap_err(), unterminated);
        assert_eq!(expand("a ${HOST:-x", &env()).unwrap_err(), unterminated);
        assert_eq!(
            expand("${1X}", &env()).unwrap_err(),
            "invalid reference '${1X}': expected ${NAME} or ${NAME:-default}"
        );
        assert_eq!(
            expand("${A-b}", &env()).unwrap_err(),
            "invalid reference '${A-b}': expected ${NAME} or ${NAME:-default}"
        );
        assert!(expand("${}", &env()).is_err());
        assert!(expand("${A:=b}", &env()).is_err());
    }

    #[test]
    fn tree_expands_values_not_keys() {
        let mut doc: Yaml = serde_yaml::from_str(
            "${HOST}: ${HOST}\nlist: ['${KEY}', 3, true, '${TTL:-60}']\nnested: {h: '${MISSING}'}\n",
        )
        .unwrap();
        let mut problems = Problems::default();
        let mut warnings = Vec::new();
        expand_tree(
            &mut problems,
            &mut warnings,
            &Path::root("(top level)"),
            &mut doc,
            &env(),
        );
        let want: Yaml = serde_yaml::from_str(
            "${HOST}: example.com\nlist: [sk-1, 3, true, '60']\nnested: {h: ''}\n",
        )
        .unwrap();
        assert_eq!(doc, want);
        assert!(problems.into_result(()).is_ok());
        assert_eq!(
            warnings,
            ["nested.h: environment variable MISSING is not set; using an empty string"]
        );
    }

    #[test]
    fn tree_errors_carry_their_path() {
        let mut doc: Yaml = serde_yaml::from_str("a: [ok, 'x ${BAD']").unwrap();
        let mut problems = Problems::default();
        let mut warnings = Vec::new();
        expand_tree(
            &mut problems,
            &mut warnings,
            &Path::root("(top level)"),
            &mut doc,
            &env(),
        );
        assert_eq!(
            problems.into_result(()).unwrap_err(),
            ["a[1]: unterminated '${' (write '$$' for a literal '$')"]
        );
    }

    #[test]
    fn env_layers_process_over_dotenv_over_builtins() {
        let path =
            std::env::temp_dir().join(format!("aiproxy-env-test-{}.env", std::process::id()));
        // PATH is set in the test process: the real environment must win over the file.
        std::fs::write(
            &path,
            "PATH=/from/dotenv\nAIPROXY_TEST_ONLY_IN_DOTENV=dotenv-value\nAIPROXY_EXE=/from/dotenv/aiproxy\n",
        )
        .unwrap();
        let env = Env::load(Some(&path)).unwrap();
        std::fs::remove_file(&path).unwrap();
        assert_eq!(env.get("PATH"), std::env::var("PATH").ok());
        assert_eq!(
            env.get("AIPROXY_TEST_ONLY_IN_DOTENV").as_deref(),
            Some("dotenv-value")
        );
        // The .env file wins over the built-in.
        assert_eq!(
            env.get("AIPROXY_EXE").as_deref(),
            Some("/from/dotenv/aiproxy")
        );
        assert_eq!(env.get("AIPROXY_TEST_SURELY_UNSET"), None);
        let dump = format!("{env:?}");
        assert!(dump.contains("AIPROXY_TEST_ONLY_IN_DOTENV") && !dump.contains("dotenv-value"));

        let plain = Env::load(None).unwrap();
        let exe = std::env::current_exe().unwrap();
        assert_eq!(plain.get("AIPROXY_EXE").as_deref(), exe.to_str());
        let overridden = plain.with_builtin("AIPROXY_EXE", "/opt/aiproxy");
        assert_eq!(
            overridden.get("AIPROXY_EXE").as_deref(),
            Some("/opt/aiproxy")
        );
    }

    #[test]
    fn env_load_errors_name_file_and_line() {
        let missing = std::path::Path::new("/nonexistent/aiproxy/.env");
        let err = Env::load(Some(missing)).unwrap_err();
        assert!(
            err.starts_with("cannot read /nonexistent/aiproxy/.env: "),
            "{err}"
        );

        let path = std::env::temp_dir().join(format!("aiproxy-env-bad-{}.env", std::process::id()));
        std::fs::write(&path, "# ok\nA=1\nthis line is wrong\n").unwrap();
        let err = Env::load(Some(&path)).unwrap_err();
        std::fs::remove_file(&path).unwrap();
        assert_eq!(err, format!("{}:3: expected KEY=VALUE", path.display()));
    }

    #[test]
    fn map_env_from_pairs() {
        let env: MapEnv = [("A", "1"), ("B", "")].into_iter().collect();
        assert_eq!(env.get("A").as_deref(), Some("1"));
        assert_eq!(env.get("B").as_deref(), Some(""));
        assert_eq!(env.get("C"), None);
    }
}
