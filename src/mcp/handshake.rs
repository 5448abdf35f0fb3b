//! Starting a session: connect, find out which protocol era the server speaks, and run that
//! era's opening.
//!
//! Legacy revisions (2024-11-05 … 2025-11-25): `initialize` (never cancelled, lifecycle.mdx)
//! then `notifications/initialized`. Stateless 2026-07-28: no opening at all; with
//! [`Era::Auto`] a `server/discover` probe decides (versioning.mdx "Backwards compatibility":
//! a `DiscoverResult` or a recognised modern error means modern; any other error, an HTTP error
//! without a JSON-RPC body, or no answer within a short time means legacy). The probe is
//! skipped on legacy HTTP+SSE, which only exists in the legacy era.
//!
//! Runs on the caller's thread; every wait is bounded by the start deadline.

use std::time::{Duration, Instant};

use super::Error;
use super::client::{RequestError, Session, SessionInfo};
use super::era::{self, Era, Probe};
use super::protocol;
use super::transport::{Grace, Inbound, Transport};
use std::sync::Arc;

/// The longest the `server/discover` probe may take: a legacy server that ignores unknown
/// requests costs this much on every start, so it is short, and at most a third of the
/// start budget so `initialize` keeps the rest.
const PROBE_MAX: Duration = Duration::from_secs(3);

impl Session {
    /// Connect, settle the era and run its opening, all before `deadline`. Every failure is an
    /// [`Error::Start`] and leaves nothing running.
    pub fn start(
        name: &str,
        connect: impl FnOnce(Arc<dyn Inbound>) -> Result<Box<dyn Transport>, String>,
        deadline: Instant,
        era: Era,
    ) -> Result<Session, Error> {
        let session = Session::connect(name, connect)?;
        let t0 = Instant::now();
        let modern_ok = session.transport.supports_modern();
        let probe = match era {
            Era::Legacy => Probe::Legacy("configured".into()),
            Era::Auto if !modern_ok => Probe::Legacy("transport".into()),
            Era::Modern if !modern_ok => {
                session.transport.close(Grace::QUICK);
                return Err(Error::Start(
                    "the 2026-07-28 revision cannot run over legacy HTTP+SSE".into(),
                ));
            }
            Era::Modern => Probe::Modern {
                version: era::MODERN_VERSION,
                server_name: None,
                server_version: None,
            },
            Era::Auto => session.probe(deadline, t0)?,
        };
        // A fixed or learned era skips `server/discover`: the server was not asked who it is.
        let asked = !matches!(era, Era::Modern);
        let info = match probe {
            Probe::Modern {
                version,
                server_name,
                server_version,
            } => SessionInfo {
                protocol_version: version.to_string(),
                modern: true,
                server_name,
                server_version,
            },
            Probe::Legacy(why) => {
                log::debug!(
                    "{}mcp[{name}]: using initialize ({why})",
                    crate::mcp::logctx::prefix()
                );
                session.initialize(deadline, t0)?
            }
            // `probe` settles retries itself; an unsettled one would mean legacy.
            Probe::Retry(_) => session.initialize(deadline, t0)?,
        };
        session
            .transport
            .session_ready(&info.protocol_version, deadline);
        let server = match (&info.server_name, &info.server_version) {
            (None, None) if !asked => "not asked (era already known)".to_string(),
            (n, v) => format!(
                "{} {}",
                n.as_deref().unwrap_or("(unnamed)"),
                v.as_deref().unwrap_or("(no version)")
            ),
        };
        log::info!(
            "{}mcp[{name}]: session ready (protocol {}{}, server {server})",
            crate::mcp::logctx::prefix(),
            info.protocol_version,
            if info.modern { ", stateless" } else { "" },
        );
        session.set_info(info);
        Ok(session)
    }

    /// Ask `server/discover` in the modern envelope and classify the answer.
    fn probe(&self, deadline: Instant, t0: Instant) -> Result<Probe, Error> {
        let now = Instant::now();
        let budget = deadline.saturating_duration_since(now) / 3;
        let limit = now + budget.min(PROBE_MAX);
        let mut version = era::MODERN_VERSION;
        for retried in [false, true] {
            let params = era::with_meta(None, version);
            let probe = match self.request_once("server/discover", Some(params), limit, None) {
                Ok(result) => era::probe_result(&result),
                Err(RequestError::Rejected(e)) => era::probe_error(&e, retried),
                Err(
                    RequestError::Failed(Error::Timeout) | RequestError::NotSent(Error::Timeout),
                ) => Probe::Legacy("no answer to server/discover".into()),
                Err(
                    RequestError::Failed(Error::Protocol(m))
                    | RequestError::NotSent(Error::Protocol(m)),
                ) => Probe::Legacy(m),
                Err(e) => return Err(self.start_error("server/discover", e.into_error(), t0)),
            };
            match probe {
                Probe::Retry(v) => version = v,
                other => return Ok(other),
            }
        }
        Ok(Probe::Legacy("version negotiation did not settle".into()))
    }

    /// The legacy opening: `initialize`, check the chosen version, `notifications/initialized`.
    fn initialize(&self, deadline: Instant, t0: Instant) -> Result<SessionInfo, Error> {
        let reply = self.request_once(
            "initialize",
            Some(protocol::initialize_params()),
            deadline,
            None,
        );
        let result = match reply {
            Ok(result) => result,
            Err(RequestError::Rejected(e)) if era::modern_refusal(&e).is_some() => {
                let version = era::modern_refusal(&e).unwrap_or(era::MODERN_VERSION);
                log::debug!(
                    "{}mcp[{}]: initialize refused as modern; using {version}",
                    crate::mcp::logctx::prefix(),
                    self.name
                );
                return Ok(SessionInfo {
                    protocol_version: version.to_string(),
                    modern: true,
                    server_name: None,
                    server_version: None,
                });
            }
            Err(e) => return Err(self.start_error("initialize", e.into_error(), t0)),
        };
        let init = protocol::parse_initialize(&result)
            .map_err(|e| self.start_error("initialize", e, t0))?;
        self.transport.negotiated(&init.protocol_version);
        self.notify("notifications/initialized", None)
            .map_err(|e| self.start_error("initialized", e, t0))?;
        Ok(SessionInfo {
            protocol_version: init.protocol_version,
            modern: false,
            server_name: init.server_name,
            server_version: init.server_version,
        })
    }

    /// A start failure as a useful message; the half-started server is stopped quickly.
    fn start_error(&self, step: &str, e: Error, t0: Instant) -> Error {
        let e = match e {
            // A write to a child that just exited fails before the reader has described the
            // exit (status, stderr); that description is the useful message, so wait for it.
            Error::Closed(raw) => {
                let limit = Instant::now() + Duration::from_secs(1);
                let mut reason = self.closed_reason();
                while reason.is_none() && self.transport.pid().is_some() && Instant::now() < limit {
                    std::thread::sleep(Duration::from_millis(10));
                    reason = self.closed_reason();
                }
                Error::Closed(reason.unwrap_or(raw))
            }
            other => other,
        };
        let tail = self.transport.stderr_tail();
        self.transport.close(Grace::QUICK);
        let msg = match e {
            Error::Timeout => format!("no answer to {step} after {} ms", t0.elapsed().as_millis()),
            Error::Closed(reason) => reason,
            Error::Rpc { code, message } => format!("{step} refused: error {code}: {message}"),
            Error::Protocol(m) => format!("{step}: {m}"),
            Error::Start(m) => m,
            Error::Cancelled => format!("{step} cancelled"),
            Error::Stopped(status) => format!("server stopped ({status})"),
            e @ Error::TooLarge(_) => format!("{step}: {e}"),
        };
        match tail {
            Some(t) if !msg.contains(&t) => Error::Start(format!("{msg}; stderr: {t}")),
            _ => Error::Start(msg),
        }
    }
}
