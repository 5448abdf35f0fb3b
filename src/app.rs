//! The live registry: an immutable [`Snapshot`] (config + built backends + MCP servers) behind
//! an `Arc`, swapped atomically when the config changes. A request takes the snapshot once and
//! keeps it to the end, so a change never affects work already running; an MCP server that a
//! new snapshot no longer uses is stopped when the last snapshot holding it is dropped (its
//! in-flight calls complete first). Servers and backends whose config did not change are
//! carried over, keeping their sessions and connection pools.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use parking_lot::RwLock;

use crate::backend::{self, Backend};
use crate::config::Config;
use crate::mcp::McpServer;

pub struct Snapshot {
    pub config: Arc<Config>,
    pub backends: HashMap<String, Arc<dyn Backend>>,
    pub mcp: HashMap<String, Arc<McpServer>>,
    /// Unix seconds when this config was loaded (the `created` of `/v1/models`).
    pub loaded_at: u64,
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
        let mcp = config
            .mcp_servers
            .iter()
            .map(|(name, cfg)| {
                (
                    name.clone(),
                    unchanged_mcp(name).unwrap_or_else(|| McpServer::new(name, cfg.clone())),
                )
            })
            .collect();
        Snapshot {
            config: Arc::new(config),
            backends,
            mcp,
            loaded_at: unix_now(),
        }
    }
}

pub struct App {
    current: RwLock<Arc<Snapshot>>,
}

impl App {
    pub fn new(config: Config) -> App {
        App {
            current: RwLock::new(Arc::new(Snapshot::build(config, None))),
        }
    }

    /// The snapshot a request works with from start to end.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        Arc::clone(&self.current.read())
    }

    /// Swap in a new config. The old snapshot lives on in requests that hold it.
    pub fn replace(&self, config: Config) {
        let next = Arc::new(Snapshot::build(config, Some(&self.snapshot())));
        *self.current.write() = next;
    }

    /// Stop every MCP server of the current snapshot (process shutdown).
    pub fn stop_mcp_servers(&self) {
        for server in self.snapshot().mcp.values() {
            server.stop();
        }
    }
}

pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}
