//! The live registry: an immutable [`Snapshot`] (config + built backends + MCP servers) behind
//! an `Arc`, swapped atomically when the config changes. A request takes the snapshot once and
//! keeps it to the end, so a change never affects work already running; an MCP server that a
//! new snapshot no longer uses is stopped when the last snapshot holding it is dropped (its
//! in-flight calls complete first). Servers and backends whose config did not change are
//! carried over, keeping their sessions and connection pools; so is the audit log's writer
//! (reopened on every change, for logrotate).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::{Mutex, RwLock};
use serde_json::Value;

use crate::audit::AuditLog;
use crate::auth::Auth;
use crate::backend::{self, Backend};
use crate::config::{self, Config, EnvLookup};
use crate::mcp::Supervisor;

pub struct Snapshot {
    pub config: Arc<Config>,
    /// The `/v1/*` auth chain for this config (the Apiman probe cache carries over).
    pub auth: Auth,
    pub backends: HashMap<String, Arc<dyn Backend>>,
    pub mcp: HashMap<String, Arc<Supervisor>>,
    /// Unix seconds when this config was loaded (the `created` of `/v1/models`).
    pub loaded_at: u64,
    /// The tool audit log (`audit:`); shared with the previous snapshot when its settings are
    /// unchanged (and then reopened, for logrotate).
    pub audit: Option<Arc<AuditLog>>,
}

impl Snapshot {
    /// Build a snapshot, reusing what `previous` already built for unchanged entries.
    pub fn build(config: Config, previous: Option<&Snapshot>) -> Snapshot {
        let unchanged_backend = |name: &str| {
            let prev = previous?;
            (prev.config.backends.get(name) == config.backends.get(name))
                .then(|| prev.backends.get(name).cloned())
                .flatten()
        };
        let backends = config
            .backends
            .iter()
            .map(|(name, cfg)| {
                (
                    name.clone(),
                    unchanged_backend(name).unwrap_or_else(|| backend::build(cfg)),
                )
            })
            .collect();
        let unchanged_mcp = |name: &str| {
            let prev = previous?;
            (prev.config.mcp_servers.get(name) == config.mcp_servers.get(name))
                .then(|| prev.mcp.get(name).cloned())
                .flatten()
        };
        let mcp: HashMap<String, Arc<Supervisor>> = config
            .mcp_servers
            .iter()
            .map(|(name, cfg)| {
                (
                    name.clone(),
                    unchanged_mcp(name).unwrap_or_else(|| Supervisor::new(name, cfg.clone())),
                )
            })
            .collect();
        // Everything an MCP server shows (errors, logs, admin status) is scrubbed of every
        // configured secret, not only its own.
        let secrets = secret_values(&config);
        let refs: Vec<&str> = secrets.iter().map(String::as_str).collect();
        for server in mcp.values() {
            server.set_secrets(&refs);
        }
        let auth = match previous {
            Some(prev) => prev.auth.rebuild(&config),
            None => Auth::from_config(&config),
        };
        let audit = config.audit.as_ref().and_then(|cfg| {
            let prev = previous.and_then(|p| p.audit.as_ref());
            if let Some(prev) = prev.filter(|a| a.config() == cfg) {
                prev.reopen();
                return Some(Arc::clone(prev));
            }
            AuditLog::start(cfg)
                .map_err(|e| log::error!("cannot start the audit log: {e}"))
                .ok()
                .map(Arc::new)
        });
        Snapshot {
            auth,
            audit,
            config: Arc::new(config),
            backends,
            mcp,
            loaded_at: crate::clock::unix_now(),
        }
    }
}

/// Every configured secret value: backend keys and header values, MCP env and header values,
/// proxy keys, the Apiman secret.
fn secret_values(config: &Config) -> Vec<String> {
    use crate::config::McpTransport;
    let mut out: Vec<&crate::secret::Secret> = Vec::new();
    for b in config.backends.values() {
        out.extend(b.api_key.iter());
        out.extend(b.default_headers.values());
    }
    for m in config.mcp_servers.values() {
        match &m.transport {
            McpTransport::Stdio { env, .. } => out.extend(env.values()),
            McpTransport::Sse { headers, .. } | McpTransport::StreamableHttp { headers, .. } => {
                out.extend(headers.values())
            }
        }
    }
    out.extend(config.proxy_api_keys.iter().map(|k| &k.key));
    out.extend(config.apiman.secret.iter());
    out.iter().map(|s| s.expose().to_string()).collect()
}

/// Where the config came from, for reloads, `${VAR}` expansion of admin bodies and persistence.
pub struct Source {
    /// `None` for the embedded demo config (nothing to reload or persist to).
    pub path: Option<PathBuf>,
    pub env: Box<dyn EnvLookup + Send + Sync>,
    /// The document as written (before `${VAR}` expansion), edited by the admin API and written
    /// back when `admin.persist` is on, so references stay references.
    pub document: Value,
    /// Why `document` cannot be written back faithfully (custom YAML tags, a file that did not
    /// parse as a plain document); `admin.persist` then refuses every change with this reason.
    pub persist_blocker: Option<String>,
}

impl Source {
    /// A source without a file (the embedded demo config, tests): nothing to reload or persist.
    pub fn detached(env: Box<dyn EnvLookup + Send + Sync>, document: Value) -> Source {
        Source {
            path: None,
            env,
            document,
            persist_blocker: None,
        }
    }

    /// A config file loaded with [`load_with_document`].
    pub fn file(path: PathBuf, env: Box<dyn EnvLookup + Send + Sync>, doc: Document) -> Source {
        Source {
            path: Some(path),
            env,
            document: doc.value,
            persist_blocker: doc.blocker,
        }
    }
}

/// A config file as written: its tree (before `${VAR}` expansion) and why it cannot be written
/// back faithfully, if so.
#[derive(Debug, Clone)]
pub struct Document {
    pub value: Value,
    pub blocker: Option<String>,
}

pub struct App {
    current: RwLock<Arc<Snapshot>>,
    /// Held by every config change (admin edit, reload) from read to swap, so two changes
    /// never build on the same old snapshot.
    source: Mutex<Source>,
}

impl App {
    /// An app with no file behind it (tests, the demo config).
    pub fn new(config: Config) -> App {
        App::with_source(
            config,
            Source::detached(Box::new(config::MapEnv::new()), Value::Null),
        )
    }

    pub fn with_source(config: Config, source: Source) -> App {
        App {
            current: RwLock::new(Arc::new(Snapshot::build(config, None))),
            source: Mutex::new(source),
        }
    }

    /// Run a config change under the change lock: `change` sees the current snapshot and the
    /// source and returns the new config to swap in, or an error that leaves everything as is.
    pub fn change<T, E>(
        &self,
        change: impl FnOnce(&Snapshot, &mut Source) -> Result<(Config, T), E>,
    ) -> Result<T, E> {
        let mut source = self.source.lock();
        let current = self.snapshot();
        let (config, out) = change(&current, &mut source)?;
        let next = Arc::new(Snapshot::build(config, Some(&current)));
        *self.current.write() = next;
        Ok(out)
    }

    /// A variable from the config's environment (process env > `.env` > built-ins).
    pub fn env_var(&self, name: &str) -> Option<String> {
        self.source.lock().env.get(name)
    }

    /// The config document as written (before `${VAR}` expansion), as admin changes left it.
    pub fn document(&self) -> Value {
        self.source.lock().document.clone()
    }

    pub fn config_path(&self) -> Option<PathBuf> {
        self.source.lock().path.clone()
    }

    /// The snapshot a request works with from start to end.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        Arc::clone(&self.current.read())
    }

    /// Swap in a new config. The old snapshot lives on in requests that hold it.
    pub fn replace(&self, config: Config) {
        let _ = self.change(|_, _| Ok::<_, ()>((config, ())));
    }

    /// Re-read the config file (POST /admin/reload, SIGHUP). An invalid file is refused with its
    /// problems and the running config stays.
    pub fn reload(&self) -> Result<(), config::Error> {
        self.change(|_, source| {
            let Some(path) = source.path.clone() else {
                return Err(config::Error {
                    source: "<embedded demo config>".into(),
                    problems: vec!["there is no config file to reload".into()],
                });
            };
            let (cfg, doc) = load_with_document(&path, source.env.as_ref())?;
            source.document = doc.value;
            source.persist_blocker = doc.blocker;
            Ok((cfg, ()))
        })
    }

    /// Stop every MCP server of the current snapshot (process shutdown).
    pub fn stop_mcp_servers(&self) {
        for server in self.snapshot().mcp.values() {
            server.stop();
        }
    }
}

/// Load a config file and also keep its document as written (for admin edits and persistence).
pub fn load_with_document(
    path: &Path,
    env: &dyn EnvLookup,
) -> Result<(Config, Document), config::Error> {
    let cfg = config::load_file(path, env)?;
    let text = std::fs::read_to_string(path).map_err(|e| config::Error {
        source: path.display().to_string(),
        problems: vec![format!("cannot read file: {e}")],
    })?;
    Ok((cfg, document(&text)))
}

/// The tree of a config file as written, and why it cannot be written back faithfully.
pub fn document(text: &str) -> Document {
    let yaml: serde_yaml::Value = match serde_yaml::from_str(text) {
        Ok(y) => y,
        Err(e) => {
            return Document {
                value: Value::Null,
                blocker: Some(format!("the file does not parse as one YAML document: {e}")),
            };
        }
    };
    if let Some(tag) = first_tag(&yaml) {
        return Document {
            value: Value::Null,
            blocker: Some(format!(
                "the file uses the custom YAML tag {tag}, which aiproxy cannot write back"
            )),
        };
    }
    match serde_json::to_value(&yaml) {
        Ok(value) => Document {
            value,
            blocker: None,
        },
        Err(e) => Document {
            value: Value::Null,
            blocker: Some(format!("the file has values JSON cannot hold: {e}")),
        },
    }
}

/// The first custom tag (`!include`, `!secret`) anywhere in a YAML tree.
fn first_tag(v: &serde_yaml::Value) -> Option<String> {
    match v {
        serde_yaml::Value::Tagged(t) => Some(t.tag.to_string()),
        serde_yaml::Value::Sequence(s) => s.iter().find_map(first_tag),
        serde_yaml::Value::Mapping(m) => m
            .iter()
            .find_map(|(k, v)| first_tag(k).or_else(|| first_tag(v))),
        _ => None,
    }
}
