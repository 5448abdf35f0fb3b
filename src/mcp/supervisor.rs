//! [`Supervisor`]: one configured MCP server as the rest of the proxy sees it.
//!
//! Owns the server's single session: started lazily on first use (spawn or connect, handshake
//! and first `tools/list`, within `startup_timeout`), shared by all requests, restarted on the
//! next use after it dies (child exited, stream closed, HTTP session expired, server
//! unreachable), with a growing, jittered back-off after failed starts so a broken server is not
//! reconnected per request and many servers do not retry in step. Also owns the tool-list cache
//! and the per-server bound on concurrent calls. Each server has its own transport, threads and
//! HTTP agent, so one server's failure never touches another.
//!
//! Thread model: any number of request threads call in. State lives under one small mutex that
//! is never held across I/O: the thread that starts a session marks the state `Starting`,
//! releases the lock, does the handshake, and publishes the result; other threads wait on a
//! condvar in short slices. Replies are delivered by the session's reader thread (`client.rs`).

use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex, RwLock};
use serde_json::Value;

use super::client::{RequestError, Session};
use super::era::Era;
use super::limits::{Slots, jittered};
use super::options::{ClientOptions, ServerState, ServerStatus};
use super::protocol;
use super::redact::{own_secrets, without_stderr};
use super::transport::http::HttpTransport;
use super::transport::sse::SseTransport;
use super::transport::stdio::{StdioSpec, StdioTransport};
use super::transport::{Grace, Inbound, RemoteSpec, Transport};
use super::{CallResult, Error, LeftOut, ToolInfo};
use crate::cancel::Cancel;
use crate::config::{McpServerConfig, McpTransport};
use crate::secret::Secret;

/// Waits for a start in progress wake up this often to check cancel/deadline.
const WAIT_SLICE: Duration = Duration::from_millis(100);
/// First back-off after a failed start; doubled per failure up to `MAX_BACKOFF`.
const FIRST_BACKOFF: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// A long-lived remote stream silent for longer than this (and longer than a call may take) is
/// considered dead.
const MIN_STREAM_IDLE: Duration = Duration::from_secs(300);
/// Reply streams (threads) per remote connection beyond `max_concurrency` (listings, the GET
/// stream), and the overall cap.
const EXTRA_STREAMS: usize = 8;
const MAX_STREAMS: usize = 256;

struct Inner {
    state: ServerState,
    session: Option<Arc<Session>>,
    /// Tools of the current session.
    tools: Option<Arc<Vec<ToolInfo>>>,
    /// The last listing any session gave: still offered while the server is down, so a
    /// restart does not change what the model sees.
    last_tools: Option<Arc<Vec<ToolInfo>>>,
    last_error: Option<String>,
    restarts: u64,
    ever_ready: bool,
    failures: u32,
    retry_at: Option<Instant>,
    /// The era the last good session spoke: later sessions skip the probe (notes A.14: cache
    /// the era per server, re-probe when the assumption fails).
    learned_era: Option<Era>,
}

/// A server's usable tools and the listed ones it does not offer.
pub type Listing = (Arc<Vec<ToolInfo>>, Arc<Vec<LeftOut>>);

/// A configured MCP server with its lazily started, shared session.
pub struct Supervisor {
    name: String,
    cfg: McpServerConfig,
    opts: ClientOptions,
    inner: Mutex<Inner>,
    start_done: Condvar,
    slots: Slots,
    /// Every configured secret value this server's text is scrubbed of (its own env and header
    /// values, plus what [`Supervisor::set_secrets`] adds: backend keys and the like).
    secrets: RwLock<Arc<Vec<String>>>,
}

impl Supervisor {
    pub fn new(name: &str, cfg: McpServerConfig) -> Arc<Supervisor> {
        Supervisor::with_options(name, cfg, ClientOptions::default())
    }

    /// A server that speaks a fixed protocol era instead of detecting it (tests, diagnostics).
    pub fn with_era(name: &str, cfg: McpServerConfig, era: Era) -> Arc<Supervisor> {
        let opts = ClientOptions {
            era,
            ..ClientOptions::default()
        };
        Supervisor::with_options(name, cfg, opts)
    }

    pub fn with_options(name: &str, cfg: McpServerConfig, opts: ClientOptions) -> Arc<Supervisor> {
        let slots = Slots::new(cfg.max_concurrency.max(1));
        let secrets = own_secrets(&cfg);
        Arc::new(Supervisor {
            secrets: RwLock::new(Arc::new(secrets)),
            name: name.to_string(),
            cfg,
            opts,
            inner: Mutex::new(Inner {
                state: ServerState::Idle,
                session: None,
                tools: None,
                last_tools: None,
                last_error: None,
                restarts: 0,
                ever_ready: false,
                failures: 0,
                retry_at: None,
                learned_era: None,
            }),
            start_done: Condvar::new(),
            slots,
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Also mask these configured secret values (backend keys, other servers' headers) in
    /// everything this server's errors, logs and admin status show.
    pub fn set_secrets(&self, extra: &[&str]) {
        let mut all = own_secrets(&self.cfg);
        all.extend(extra.iter().map(|s| s.to_string()));
        all.sort();
        all.dedup();
        *self.secrets.write() = Arc::new(all);
    }

    /// `text` with every configured secret value and credential shape masked
    /// ([`crate::secret::scrub`]): for logs, errors and the admin status.
    pub fn redact(&self, text: &str) -> String {
        let secrets = self.secrets.read().clone();
        let refs: Vec<&str> = secrets.iter().map(String::as_str).collect();
        crate::secret::scrub(text, &refs)
    }

    /// The tool list, fetched again now (after a "tool not found" answer: the server may have
    /// restarted with other tools). Also what the next request offers.
    fn relist(
        &self,
        session: &Arc<Session>,
        deadline: Instant,
        cancel: &Cancel,
    ) -> Option<Arc<Vec<ToolInfo>>> {
        let list = Arc::new(session.list_tools(deadline, Some(cancel)).ok()?);
        let mut g = self.inner.lock();
        if g.session.as_ref().is_some_and(|s| Arc::ptr_eq(s, session)) {
            g.tools = Some(list.clone());
            g.last_tools = Some(list.clone());
        }
        Some(list)
    }

    /// Tools offered from this server (`max_tools`); the tool set leaves the rest out.
    pub fn max_tools(&self) -> usize {
        self.cfg.max_tools
    }

    /// The server's tools (tasks-only tools left out). Starts the session if needed; re-lists
    /// after `notifications/tools/list_changed`.
    pub fn tools(&self) -> Result<Arc<Vec<ToolInfo>>, Error> {
        for attempt in 0..2 {
            let session = self.live_session(None)?;
            {
                let g = self.inner.lock();
                if let (Some(tools), Some(current)) = (&g.tools, &g.session)
                    && Arc::ptr_eq(current, &session)
                    && !session.tools_stale()
                {
                    return Ok(tools.clone());
                }
            }
            let deadline = Instant::now() + self.cfg.startup_timeout;
            match session.list_tools(deadline, None) {
                Ok(list) => {
                    let list = Arc::new(list);
                    let mut g = self.inner.lock();
                    if g.session.as_ref().is_some_and(|s| Arc::ptr_eq(s, &session)) {
                        g.tools = Some(list.clone());
                        g.last_tools = Some(list.clone());
                    }
                    return Ok(list);
                }
                // Listing has no side effects: on a session that died under us, try once more.
                Err(
                    RequestError::NotSent(Error::Closed(_))
                    | RequestError::Failed(Error::Closed(_)),
                ) if attempt == 0 => {}
                Err(e) => return Err(e.into_error()),
            }
        }
        Err(Error::Closed(
            "session died twice while listing tools".into(),
        ))
    }

    /// Call a tool. Bounded by `call_timeout` (including the wait for a concurrency slot) and by
    /// `cancel`. A request that never reached the server (its session was already dead) is
    /// retried once on a fresh session; one that was delivered is never retried.
    pub fn call_tool(
        &self,
        tool: &str,
        arguments: Value,
        cancel: &Cancel,
    ) -> Result<CallResult, Error> {
        let deadline = Instant::now() + self.cfg.call_timeout;
        let _slot = self.slots.acquire(deadline, cancel)?;
        let params = protocol::call_params(tool, arguments);
        let mut relisted = false;
        let mut attempt = 0;
        while attempt < 2 {
            attempt += 1;
            let session = self.live_session(Some(cancel))?;
            let answer = session.call_tool(params.clone(), deadline, cancel);
            // A stale list (a stateless server restarted with other tools): list again once;
            // when the tool is still there, ask again.
            if !relisted && protocol::tool_not_found(&answer) {
                relisted = true;
                log::info!(
                    "{}mcp[{}]: the server does not know {tool}; listing its tools again",
                    crate::mcp::logctx::prefix(),
                    self.name
                );
                if self
                    .relist(&session, deadline, cancel)
                    .is_some_and(|l| l.iter().any(|t| t.name == tool))
                {
                    attempt -= 1;
                    continue;
                }
            }
            match answer {
                Ok(result) => return protocol::parse_call_result(result),
                Err(RequestError::NotSent(e @ Error::Closed(_)))
                    if attempt == 1 && !cancel.is_cancelled() && Instant::now() < deadline =>
                {
                    log::info!(
                        "{}mcp[{}]: session was dead before {tool} was sent ({e}); retrying",
                        crate::mcp::logctx::prefix(),
                        self.name
                    );
                }
                Err(e) => {
                    return Err(match e.into_error() {
                        // The child died under the call: the model gets its exit status only.
                        Error::Closed(_) if session.exit_status().is_some() => {
                            Error::Stopped(session.exit_status().unwrap_or_default())
                        }
                        other => other,
                    });
                }
            }
        }
        Err(Error::Closed(
            "session died twice before the call was sent".into(),
        ))
    }

    /// The server's tools and the listed tools it does not offer (with why), from the current
    /// session's listing (started if needed).
    pub fn listing(&self) -> Result<Listing, Error> {
        let tools = self.tools()?;
        let left_out = self
            .inner
            .lock()
            .session
            .as_ref()
            .map(|s| s.left_out())
            .unwrap_or_default();
        Ok((tools, left_out))
    }

    /// The last tool listing any session of this server gave (also while it is down).
    pub fn last_known_tools(&self) -> Option<Arc<Vec<ToolInfo>>> {
        self.inner.lock().last_tools.clone()
    }

    pub fn status(&self) -> ServerStatus {
        let g = self.inner.lock();
        let live = g.session.as_ref().filter(|s| s.is_open());
        let (state, last_error) = match (g.state, &g.session) {
            (ServerState::Ready, Some(s)) if !s.is_open() => (
                ServerState::Failed,
                // The transport may know it is dead a moment before the reason is composed.
                Some(s.closed_reason().unwrap_or_else(|| "session ended".into())),
            ),
            (state, _) => (state, g.last_error.clone()),
        };
        ServerStatus {
            state,
            last_error: last_error.map(|e| self.redact(&e)),
            restarts: g.restarts,
            tool_count: g.tools.as_ref().map(|t| t.len()),
            pid: live.and_then(|s| s.pid()),
            protocol_version: live
                .and_then(|s| s.info())
                .map(|i| i.protocol_version.clone()),
        }
    }

    /// Stop the server for good: in-flight calls fail with [`Error::Closed`], the child is shut
    /// down (close stdin → SIGTERM → SIGKILL, bounded), later calls fail. Blocks until the child
    /// is gone.
    pub fn stop(&self) {
        let session = {
            let mut g = self.inner.lock();
            g.state = ServerState::Stopped;
            g.tools = None;
            self.start_done.notify_all();
            g.session.take()
        };
        if let Some(s) = session {
            s.close(Grace::NORMAL);
        }
    }

    /// The session, checked with a ping when it has been silent for long; one that does not
    /// answer is closed and replaced.
    fn live_session(&self, cancel: Option<&Cancel>) -> Result<Arc<Session>, Error> {
        let session = self.session(cancel)?;
        match session.check_alive(self.opts.ping_after_idle, self.opts.ping_timeout) {
            Ok(()) => Ok(session),
            Err(e) => {
                log::warn!(
                    "{}mcp[{}]: no answer to a liveness ping ({e}); reconnecting",
                    crate::mcp::logctx::prefix(),
                    self.name
                );
                session.close(Grace::QUICK);
                self.session(cancel)
            }
        }
    }

    /// The live session, starting one if there is none (or it died).
    fn session(&self, cancel: Option<&Cancel>) -> Result<Arc<Session>, Error> {
        // Waiting for someone else's start is bounded by that start's own timeout.
        let wait_limit = Instant::now() + self.cfg.startup_timeout + Duration::from_secs(5);
        let mut dead: Option<Arc<Session>> = None;
        let mut g = self.inner.lock();
        loop {
            match g.state {
                ServerState::Stopped => return Err(Error::Closed("server stopped".into())),
                ServerState::Starting => {
                    if cancel.is_some_and(Cancel::is_cancelled) {
                        return Err(Error::Cancelled);
                    }
                    if Instant::now() >= wait_limit {
                        return Err(Error::Start(
                            "timed out waiting for the server to start".into(),
                        ));
                    }
                    self.start_done.wait_for(&mut g, WAIT_SLICE);
                    parking_lot::MutexGuard::unlocked(&mut g, super::tick_caller);
                    continue;
                }
                _ => {}
            }
            if let Some(s) = &g.session {
                if s.is_open() {
                    return Ok(s.clone());
                }
                g.last_error = s.closed_reason();
                g.tools = None;
                dead = g.session.take();
            }
            if let Some(at) = g.retry_at
                && Instant::now() < at
            {
                let last = g
                    .last_error
                    .clone()
                    .unwrap_or_else(|| "start failed".into());
                return Err(Error::Start(last));
            }
            break;
        }
        g.state = ServerState::Starting;
        let era = match self.opts.era {
            Era::Auto => g.learned_era.unwrap_or(Era::Auto),
            fixed => fixed,
        };
        drop(g);
        // The dead session's transport already shut itself down; releasing it outside the lock
        // keeps even a slow drop away from other callers.
        drop(dead);
        let result = self.start(era);
        let mut g = self.inner.lock();
        self.start_done.notify_all();
        match result {
            Ok((session, tools)) if g.state != ServerState::Stopped => {
                let session = Arc::new(session);
                if g.ever_ready {
                    g.restarts += 1;
                }
                g.ever_ready = true;
                g.learned_era = session
                    .info()
                    .map(|i| if i.modern { Era::Modern } else { Era::Legacy });
                g.state = ServerState::Ready;
                g.failures = 0;
                g.retry_at = None;
                g.last_error = None;
                let tools = Arc::new(tools);
                g.last_tools = Some(tools.clone());
                g.tools = Some(tools);
                g.session = Some(session.clone());
                Ok(session)
            }
            Ok((session, _)) => {
                drop(g);
                session.close(Grace::QUICK);
                Err(Error::Closed("server stopped".into()))
            }
            Err(e) => {
                if g.state != ServerState::Stopped {
                    g.state = ServerState::Failed;
                }
                g.failures = g.failures.saturating_add(1);
                g.learned_era = None;
                let backoff = jittered(
                    FIRST_BACKOFF
                        .saturating_mul(1u32 << g.failures.saturating_sub(1).min(5))
                        .min(MAX_BACKOFF),
                );
                g.retry_at = Some(Instant::now() + backoff);
                let msg = self.redact(&match &e {
                    Error::Start(m) => m.clone(),
                    other => other.to_string(),
                });
                // The server's stderr goes to the debug log only, never to a warn line.
                log::warn!(
                    "{}mcp[{}]: start failed ({}); next attempt in {} ms at the earliest",
                    crate::mcp::logctx::prefix(),
                    self.name,
                    without_stderr(&msg),
                    backoff.as_millis()
                );
                g.last_error = Some(msg);
                Err(e)
            }
        }
    }

    /// Connect, handshake, first tool listing; all within `startup_timeout`.
    fn start(&self, era: Era) -> Result<(Session, Vec<ToolInfo>), Error> {
        let t0 = Instant::now();
        let deadline = t0 + self.cfg.startup_timeout;
        let session = Session::start(
            &self.name,
            |inbound| self.connect(inbound, deadline),
            deadline,
            era,
        )?;
        let tools = session.list_tools(deadline, None).map_err(|e| {
            session.close(Grace::QUICK);
            match e.into_error() {
                Error::Timeout => Error::Start(format!(
                    "no answer to tools/list within the startup timeout ({} ms)",
                    self.cfg.startup_timeout.as_millis()
                )),
                other => Error::Start(format!("tools/list failed: {other}")),
            }
        })?;
        log::info!(
            "{}mcp[{}]: ready with {} tools in {} ms",
            crate::mcp::logctx::prefix(),
            self.name,
            tools.len(),
            t0.elapsed().as_millis()
        );
        Ok((session, tools))
    }

    fn connect(
        &self,
        inbound: Arc<dyn Inbound>,
        deadline: Instant,
    ) -> Result<Box<dyn Transport>, String> {
        match &self.cfg.transport {
            McpTransport::Stdio {
                command,
                args,
                env,
                cwd,
                inherit_env,
            } => {
                let spec = StdioSpec {
                    command,
                    args,
                    env: env
                        .iter()
                        .map(|(k, v)| (k.clone(), v.expose().to_string()))
                        .collect(),
                    cwd: cwd.as_deref(),
                    inherit_env: *inherit_env,
                    secrets: self.secrets.read().as_ref().clone(),
                };
                Ok(Box::new(StdioTransport::spawn(&self.name, &spec, inbound)?))
            }
            McpTransport::Sse { url, headers } => Ok(Box::new(SseTransport::connect(
                &self.name,
                self.remote(url, headers),
                inbound,
                deadline,
            )?)),
            McpTransport::StreamableHttp { url, headers } => Ok(Box::new(HttpTransport::connect(
                &self.name,
                self.remote(url, headers),
                inbound,
            )?)),
        }
    }

    fn remote(
        &self,
        url: &str,
        headers: &std::collections::BTreeMap<String, Secret>,
    ) -> RemoteSpec {
        RemoteSpec {
            url: url.to_string(),
            headers: headers
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            idle: MIN_STREAM_IDLE.max(self.cfg.call_timeout + Duration::from_secs(30)),
            max_streams: (self.cfg.max_concurrency + EXTRA_STREAMS).min(MAX_STREAMS),
            ca_file: self.cfg.ca_file.clone(),
        }
    }
}

impl Drop for Supervisor {
    fn drop(&mut self) {
        self.stop();
    }
}
