//! Command line (docs/cli.md): `serve` (default), `check`, `demo-mcp`, `--version`, `--help`.
//! Parsing is hand-written (a handful of flags does not justify a dependency); every command
//! returns an exit code: 0 ok, 1 runtime failure, 2 usage or config error.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::app::{App, Document, Source, load_with_document};
use crate::config::{self, Config, Env, EnvLookup};
use crate::gateway::routes::Gateway;
use crate::http::{Hooks, Limits, Server, TickFn};
use crate::tools::printable;

pub const USAGE: &str = "\
aiproxy — an OpenAI-compatible assistant gateway (LLM + system prompt + MCP tools)

Usage:
  aiproxy [serve] [--config PATH] [--listen HOST:PORT] [--admin-listen HOST:PORT|off]
                  [--env-file PATH]
  aiproxy check [--config PATH] [--env-file PATH] [--connect]
  aiproxy demo-mcp
  aiproxy --version | --help

Config path: --config > $CONFIG_PATH > ./config.yaml; without a file, `serve` runs the
embedded demo config. Listen: --listen > $AIPROXY_LISTEN > server.listen > 127.0.0.1:8000.
Admin listener (admin API, /metrics): --admin-listen > $AIPROXY_ADMIN_LISTEN > admin.listen >
127.0.0.1:8001; `off` disables it.
Environment: --env-file, else ./.env if present; real environment variables win.
Logging: RUST_LOG (default info).";

const DEFAULT_LISTEN: &str = "127.0.0.1:8000";

#[derive(Debug, Default, PartialEq)]
struct Opts {
    config: Option<PathBuf>,
    listen: Option<String>,
    admin_listen: Option<String>,
    env_file: Option<PathBuf>,
    connect: bool,
}

#[derive(Debug, PartialEq)]
enum Command {
    Serve(Opts),
    Check(Opts),
    DemoMcp,
    Version,
    Help,
}

fn parse(args: &[String]) -> Result<Command, String> {
    let mut it = args.iter().peekable();
    let cmd = match it.peek().map(|s| s.as_str()) {
        Some("serve") => {
            it.next();
            "serve"
        }
        Some("check") => {
            it.next();
            "check"
        }
        Some("demo-mcp") => return Ok(Command::DemoMcp),
        Some("--version" | "-V" | "version") => return Ok(Command::Version),
        Some("--help" | "-h" | "help") => return Ok(Command::Help),
        _ => "serve",
    };
    let mut opts = Opts::default();
    while let Some(arg) = it.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f, Some(v.to_string())),
            _ => (arg.as_str(), None),
        };
        let mut value = || {
            inline
                .clone()
                .or_else(|| it.next().cloned())
                .ok_or(format!("{flag} needs a value"))
        };
        match flag {
            "--config" | "-c" => opts.config = Some(PathBuf::from(value()?)),
            "--listen" | "-l" if cmd == "serve" => opts.listen = Some(value()?),
            "--admin-listen" if cmd == "serve" => opts.admin_listen = Some(value()?),
            "--env-file" => opts.env_file = Some(PathBuf::from(value()?)),
            "--connect" if cmd == "check" => opts.connect = true,
            "--help" | "-h" => return Ok(Command::Help),
            other => return Err(format!("unknown argument '{other}' for `{cmd}`")),
        }
    }
    Ok(if cmd == "check" {
        Command::Check(opts)
    } else {
        Command::Serve(opts)
    })
}

/// Entry point for `main`: arguments (without the program name) → exit code.
pub fn run(args: &[String]) -> i32 {
    match parse(args) {
        Ok(Command::Version) => {
            println!("aiproxy {}", env!("CARGO_PKG_VERSION"));
            0
        }
        Ok(Command::Help) => {
            println!("{USAGE}");
            0
        }
        Ok(Command::DemoMcp) => match crate::demo::mcp_server::run_stdio() {
            Ok(()) => 0,
            Err(e) => {
                eprintln!("demo-mcp: {e}");
                1
            }
        },
        Ok(Command::Serve(opts)) => serve(&opts),
        Ok(Command::Check(opts)) => check(&opts),
        Err(e) => {
            eprintln!("aiproxy: {e}\n\n{USAGE}");
            2
        }
    }
}

fn load_env(opts: &Opts) -> Result<Env, String> {
    let dotenv = match &opts.env_file {
        Some(p) if !p.exists() => return Err(format!("env file {} not found", p.display())),
        Some(p) => Some(p.clone()),
        None => Some(PathBuf::from(".env")).filter(|p| p.exists()),
    };
    Env::load(dotenv.as_deref())
}

/// What `serve` and `check` start from.
struct Loaded {
    env: Env,
    config: Config,
    /// `None` for the embedded demo config.
    path: Option<PathBuf>,
    /// The file as written, before `${VAR}` expansion (admin edits and persistence).
    document: Document,
}

/// The environment, then the config read with it (usage and config errors are exit code 2).
fn load(opts: &Opts) -> Result<Loaded, String> {
    let env = load_env(opts)?;
    let (config, path, document) = load_config(opts, &env)?;
    Ok(Loaded {
        env,
        config,
        path,
        document,
    })
}

/// The config and where it came from (`path: None` = the embedded demo config).
fn load_config(opts: &Opts, env: &Env) -> Result<(Config, Option<PathBuf>, Document), String> {
    let explicit = opts.config.clone().or_else(|| {
        env.get("CONFIG_PATH")
            .filter(|p| !p.is_empty())
            .map(PathBuf::from)
    });
    let path = explicit
        .clone()
        .unwrap_or_else(|| PathBuf::from("config.yaml"));
    if path.exists() {
        return load_with_document(&path, env)
            .map(|(cfg, doc)| (cfg, Some(path), doc))
            .map_err(|e| e.to_string());
    }
    if explicit.is_some() {
        return Err(format!("config file {} not found", path.display()));
    }
    // The demo's document as written, so admin responses show its references unexpanded.
    crate::demo::config(env)
        .map(|c| (c, None, crate::app::document(crate::demo::CONFIG_YAML)))
        .map_err(|e| e.to_string())
}

fn serve(opts: &Opts) -> i32 {
    let Loaded {
        env,
        config: cfg,
        path,
        document,
    } = match load(opts) {
        Ok(x) => x,
        Err(e) => {
            eprintln!("aiproxy: {e}");
            return 2;
        }
    };
    let listen = opts
        .listen
        .clone()
        .or_else(|| env.get("AIPROXY_LISTEN").filter(|s| !s.is_empty()))
        .or_else(|| cfg.server.listen.clone())
        .unwrap_or_else(|| DEFAULT_LISTEN.to_string());
    // Bound before anything is logged, so a failure is the one line on stderr.
    let listener = match TcpListener::bind(&listen) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("aiproxy: cannot listen on {listen}: {e}");
            return 1;
        }
    };
    match &path {
        Some(p) => log::info!("config loaded from {}", p.display()),
        None => log::info!(
            "no config file found: running the embedded demo config (assistant 'demo', offline mock model, demo MCP tools)"
        ),
    }
    let limits = limits(&cfg);
    let drain = cfg.server.drain_timeout;
    let admin_listen = admin_listen(opts, &env, &cfg);
    // An admin listener that was asked for must bind; the default one may be taken (a second
    // instance on the same host): then the admin API is reachable with ADMIN_API_KEY only.
    let admin_listener = match &admin_listen {
        AdminListen::Off => None,
        AdminListen::Explicit(addr) | AdminListen::Default(addr) => match TcpListener::bind(addr) {
            Ok(l) => Some(l),
            Err(e) if matches!(admin_listen, AdminListen::Explicit(_)) => {
                eprintln!("aiproxy: cannot listen on {addr} (admin listener): {e}");
                return 1;
            }
            Err(e) => {
                log::warn!(
                    "admin listener not started: cannot listen on {addr}: {e} (set admin.listen or --admin-listen; until then the admin API and /metrics answer on the main port with ADMIN_API_KEY only)"
                );
                None
            }
        },
    };
    let source = match path {
        Some(p) => Source::file(p, Box::new(env), document),
        None => Source::detached(Box::new(env), document.value),
    };
    let app = Arc::new(App::with_source(cfg, source));
    match app.snapshot().auth.provider_names().as_slice() {
        [] => log::warn!(
            "no auth provider configured: /v1/* is open to anyone who can reach this port"
        ),
        names => log::info!("/v1/* auth providers: {}", names.join(", ")),
    }
    if app
        .env_var("ADMIN_API_KEY")
        .is_none_or(|k| k.trim().is_empty())
    {
        log::info!(
            "ADMIN_API_KEY not set: the admin API and /metrics answer local clients of the admin listener only"
        );
    }
    crate::sys::signals::block();
    let gateway = Arc::new(Gateway::new(Arc::clone(&app)));
    let notifier = Arc::new(crate::sd_notify::Notifier::from_env());
    let server = match Server::start_with(
        listener,
        limits,
        Arc::clone(&gateway) as _,
        supervision(&notifier),
    ) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("aiproxy: cannot start the server: {e}");
            return 1;
        }
    };
    let stats = server.stats();
    gateway.metrics().attach_http(Box::new(move || {
        let (in_flight, open_connections, shed) = stats.read();
        crate::metrics::ServerLoad {
            in_flight,
            open_connections,
            shed,
        }
    }));
    log::info!(
        "aiproxy {} listening on http://{}",
        env!("CARGO_PKG_VERSION"),
        server.local_addr()
    );
    let admin_server = match admin_listener {
        Some(l) => match Server::start_with(
            l,
            admin_limits(&app.snapshot().config),
            Arc::new(gateway.admin_listener()),
            admin_supervision(),
        ) {
            Ok(s) => {
                log::info!("admin API and /metrics on http://{}", s.local_addr());
                Some(s)
            }
            Err(e) => {
                eprintln!("aiproxy: cannot start the admin listener: {e}");
                server.shutdown(drain);
                app.stop_mcp_servers();
                server.join();
                return 1;
            }
        },
        None => None,
    };
    notifier.ready();
    let _watcher = crate::watch::spawn(
        &app,
        Arc::clone(gateway.metrics()),
        crate::watch::DEFAULT_INTERVAL,
    )
    .map_err(|e| log::error!("cannot start the config watcher: {e}"))
    .ok();
    while crate::sys::signals::wait() == crate::sys::signals::Signal::Reload {
        let result = app.reload();
        gateway.metrics().config_reload(result.is_ok());
        match result {
            Ok(()) => log::info!("SIGHUP: config reloaded"),
            Err(e) => log::error!("SIGHUP: reload refused, the running config stays: {e}"),
        }
    }
    log::info!(
        "shutting down: draining in-flight requests (up to {}s)",
        drain.as_secs()
    );
    notifier.stopping();
    if let Some(a) = &admin_server {
        a.shutdown(std::time::Duration::from_secs(1));
    }
    let drained = server.shutdown(drain);
    app.stop_mcp_servers();
    server.join();
    if let Some(a) = admin_server {
        a.join();
    }
    if !drained {
        log::warn!("drain timeout reached; remaining requests were cut");
    }
    0
}

/// Where the admin listener binds, and whether that was asked for.
#[derive(Debug, PartialEq)]
enum AdminListen {
    Off,
    /// `--admin-listen`, `AIPROXY_ADMIN_LISTEN` or `admin.listen`: failing to bind is fatal.
    Explicit(String),
    /// [`config::DEFAULT_ADMIN_LISTEN`]: failing to bind is a warning.
    Default(String),
}

fn admin_listen(opts: &Opts, env: &Env, cfg: &Config) -> AdminListen {
    let chosen = opts
        .admin_listen
        .clone()
        .or_else(|| env.get("AIPROXY_ADMIN_LISTEN"))
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .or_else(|| cfg.admin.listen.clone());
    match chosen {
        Some(s) if s.eq_ignore_ascii_case("off") => AdminListen::Off,
        Some(s) => AdminListen::Explicit(s),
        None => AdminListen::Default(config::DEFAULT_ADMIN_LISTEN.to_string()),
    }
}

/// The admin listener's limits: a couple of workers and a small queue; it serves operators and
/// a metrics scraper, never traffic.
pub fn admin_limits(cfg: &Config) -> Limits {
    Limits {
        workers: 2,
        max_in_flight: 8,
        max_connections: 32,
        max_body_bytes: cfg.server.max_body_bytes.min(1024 * 1024),
        idle_timeout: cfg.server.idle_timeout,
        ..Limits::default()
    }
}

/// Exit status when the HTTP poller died: the port no longer accepts, so the process exits at
/// once and its supervisor (systemd `Restart=on-failure`) starts a fresh one.
pub const EXIT_POLLER_DIED: i32 = 70;

/// The server's supervision hooks: the systemd watchdog is fed from the poller loop, and a dead
/// poller ends the process.
fn supervision(notifier: &Arc<crate::sd_notify::Notifier>) -> Hooks {
    let tick = notifier.watchdog_every().map(|every| {
        let n = Arc::clone(notifier);
        (every, Arc::new(move || n.watchdog()) as TickFn)
    });
    Hooks {
        tick,
        poller_died: Some(Arc::new(|why: &str| {
            log::error!("the HTTP poller died ({why}); exiting so the service is restarted");
            std::process::exit(EXIT_POLLER_DIED);
        })),
    }
}

/// The admin listener's hooks: no watchdog (the main poller feeds it), but a dead admin poller
/// ends the process too, so the operator's way in is never silently gone.
fn admin_supervision() -> Hooks {
    Hooks {
        tick: None,
        poller_died: Some(Arc::new(|why: &str| {
            log::error!("the admin HTTP poller died ({why}); exiting so the service is restarted");
            std::process::exit(EXIT_POLLER_DIED);
        })),
    }
}

/// HTTP limits from the `server` config section.
pub fn limits(cfg: &Config) -> Limits {
    let s = &cfg.server;
    Limits {
        workers: s.workers,
        max_in_flight: s.max_in_flight,
        max_connections: s.max_connections,
        max_body_bytes: s.max_body_bytes,
        idle_timeout: s.idle_timeout,
        max_connections_per_ip: s.connections_per_ip(),
        first_byte_timeout: s.first_byte_timeout,
        ..Limits::default()
    }
}

fn check(opts: &Opts) -> i32 {
    let Loaded {
        config: cfg, path, ..
    } = match load(opts) {
        Ok(x) => x,
        Err(e) => {
            eprintln!("aiproxy: {e}");
            return 2;
        }
    };
    let source = path
        .as_deref()
        .map_or("<embedded demo config>".into(), |p: &Path| {
            p.display().to_string()
        });
    println!(
        "{source}: ok ({} assistants, {} backends, {} MCP servers)",
        cfg.assistants.len(),
        cfg.backends.len(),
        cfg.mcp_servers.len()
    );
    if !opts.connect {
        return 0;
    }
    let app = App::new(cfg);
    let snap = app.snapshot();
    let mut failed = false;
    for a in &snap.config.assistants {
        let servers: Vec<_> = a
            .mcp_servers
            .iter()
            .filter_map(|n| snap.mcp.get(n).cloned())
            .collect();
        let set = crate::tools::ToolSet::build(&servers, &a.allowed_tools, &a.denied_tools);
        print!("{}", describe_tools(&a.name, &set));
        // Listed but never offered (task-only tools, invalid annotations): say so.
        for srv in &servers {
            if let Ok((_, left_out)) = srv.listing() {
                for l in left_out.iter() {
                    let tool = l.raw.get("name").and_then(|n| n.as_str()).unwrap_or("?");
                    println!(
                        "  - '{}' / '{}' not offered: {}",
                        printable(srv.name()),
                        printable(tool),
                        printable(&l.reason)
                    );
                }
            }
        }
        for (server, err) in &set.degraded {
            failed = true;
            println!(
                "  ! MCP server '{}' failed: {}",
                printable(server),
                printable(err)
            );
        }
    }
    app.stop_mcp_servers();
    if failed { 1 } else { 0 }
}

/// Rough tokens of a JSON text: about 4 bytes per token for English and JSON punctuation.
fn approx_tokens(bytes: usize) -> usize {
    bytes.div_ceil(4)
}

/// `check --connect` report for one assistant: each tool under the name the model sees, its
/// schema size, and a note when the name is not the plain `<server>__<tool>` (characters
/// replaced, shortened to the 64-character limit, or suffixed because two tools collided).
fn describe_tools(assistant: &str, set: &crate::tools::ToolSet) -> String {
    use crate::tools::naming::{MAX_NAME, sanitize};
    use std::fmt::Write as _;
    let sizes: Vec<usize> = set
        .tools
        .iter()
        .map(|t| serde_json::to_string(t).map_or(0, |s| s.len()))
        .collect();
    let total: usize = sizes.iter().sum();
    let mut out = format!(
        "assistant {assistant}: {} tools, tool schemas ~{} tokens ({total} bytes of JSON)\n",
        set.tools.len(),
        approx_tokens(total)
    );
    let width = set
        .tools
        .iter()
        .map(|t| t.function.name.len())
        .max()
        .unwrap_or(0);
    for (tool, size) in set.tools.iter().zip(sizes) {
        let name = &tool.function.name;
        let note = match set.origin(name) {
            Some((server, original)) => {
                let plain = format!("{}__{}", sanitize(server), sanitize(original));
                // What the server sent may hold terminal escapes: never print it raw.
                let (server, original) = (printable(server), printable(original));
                if *name != plain && plain.len() > MAX_NAME {
                    format!(
                        "  [shortened: '{server}' / '{original}' is {} characters, the limit is {MAX_NAME}]",
                        plain.len()
                    )
                } else if *name != plain {
                    format!(
                        "  [collision: '{plain}' is exposed by several tools; '{server}' / '{original}' got a suffix]"
                    )
                } else if plain != format!("{server}__{original}") {
                    format!(
                        "  [renamed: '{server}' / '{original}' has characters outside [A-Za-z0-9_-]]"
                    )
                } else {
                    String::new()
                }
            }
            None => String::new(),
        };
        let _ = writeln!(
            out,
            "  {name:<width$}  ~{} tokens{note}",
            approx_tokens(size)
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &str) -> Vec<String> {
        s.split_whitespace().map(String::from).collect()
    }

    #[test]
    fn printable_escapes_what_a_terminal_would_interpret() {
        assert_eq!(printable("evil\x1b[31mred\rX"), "evil\\u{1b}[31mred\\rX");
        assert_eq!(printable("a\u{202e}b\\c"), "a\\u{202e}b\\\\c");
        assert_eq!(printable("naïve tool"), "naïve tool");
    }

    #[test]
    fn parses_commands_and_flags() {
        assert_eq!(parse(&args("")).unwrap(), Command::Serve(Opts::default()));
        assert_eq!(parse(&args("--version")).unwrap(), Command::Version);
        assert_eq!(parse(&args("demo-mcp")).unwrap(), Command::DemoMcp);
        let Command::Serve(o) = parse(&args(
            "serve --config c.yaml --listen=0.0.0.0:9 --env-file e",
        ))
        .unwrap() else {
            panic!()
        };
        assert_eq!(o.config, Some(PathBuf::from("c.yaml")));
        assert_eq!(o.listen.as_deref(), Some("0.0.0.0:9"));
        assert_eq!(o.env_file, Some(PathBuf::from("e")));
        let Command::Check(o) = parse(&args("check --connect -c x")).unwrap() else {
            panic!()
        };
        assert!(o.connect);
        assert!(parse(&args("--listen")).is_err());
        assert!(parse(&args("check --listen 1:2")).is_err());
        assert!(parse(&args("check --admin-listen off")).is_err());
        let Command::Serve(o) = parse(&args("--admin-listen off")).unwrap() else {
            panic!()
        };
        assert_eq!(o.admin_listen.as_deref(), Some("off"));
        assert!(parse(&args("serve --bogus")).is_err());
    }
}
