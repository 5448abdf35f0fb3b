//! Start the gateway in-process on `127.0.0.1:0` from YAML text (main listener and admin
//! listener, each on its own free port), and talk to it.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

use aiproxy::app::App;
use aiproxy::config::{self, EnvLookup};
use aiproxy::gateway::routes::Gateway;
use aiproxy::http::Server;
use serde_json::Value;

/// Environment for test configs: `AIPROXY_EXE` is the built binary, plus any extras.
pub struct TestEnv(pub HashMap<String, String>);

impl TestEnv {
    pub fn new() -> Self {
        let mut m = HashMap::new();
        m.insert("AIPROXY_EXE".into(), env!("CARGO_BIN_EXE_aiproxy").into());
        TestEnv(m)
    }
}

impl EnvLookup for TestEnv {
    fn get(&self, name: &str) -> Option<String> {
        self.0.get(name).cloned()
    }
}

pub struct TestGateway {
    pub addr: SocketAddr,
    /// The admin listener (admin API, `/metrics`, `/health`).
    pub admin_addr: SocketAddr,
    pub app: Arc<App>,
    server: Option<Server>,
    admin_server: Option<Server>,
}

impl TestGateway {
    pub fn start(yaml: &str) -> TestGateway {
        let cfg = config::parse(yaml, "test", &TestEnv::new()).unwrap_or_else(|e| panic!("{e}"));
        TestGateway::from_app(cfg.clone(), App::new(cfg))
    }

    /// From YAML, with extra variables in the app's environment (e.g. `ADMIN_API_KEY`).
    pub fn start_with_env(yaml: &str, vars: &[(&str, &str)]) -> TestGateway {
        let mut env = TestEnv::new();
        for (k, v) in vars {
            env.0.insert(k.to_string(), v.to_string());
        }
        let cfg = config::parse(yaml, "test", &env).unwrap_or_else(|e| panic!("{e}"));
        let source = aiproxy::app::Source::detached(Box::new(env), Value::Null);
        TestGateway::from_app(cfg.clone(), App::with_source(cfg, source))
    }

    /// From a config file, with reload and persistence as `aiproxy serve --config` has them.
    pub fn start_file(path: &std::path::Path) -> TestGateway {
        let env = TestEnv::new();
        let (cfg, doc) =
            aiproxy::app::load_with_document(path, &env).unwrap_or_else(|e| panic!("{e}"));
        let source = aiproxy::app::Source::file(path.to_path_buf(), Box::new(env), doc);
        TestGateway::from_app(cfg.clone(), App::with_source(cfg, source))
    }

    fn from_app(cfg: aiproxy::config::Config, app: App) -> TestGateway {
        let limits = aiproxy::cli::limits(&cfg);
        let app = Arc::new(app);
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let gateway = Gateway::new(Arc::clone(&app));
        let admin = Arc::new(gateway.admin_listener());
        let server = Server::start(listener, limits, Arc::new(gateway)).unwrap();
        let admin_listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let admin_server =
            Server::start(admin_listener, aiproxy::cli::admin_limits(&cfg), admin).unwrap();
        TestGateway {
            addr: server.local_addr(),
            admin_addr: admin_server.local_addr(),
            app,
            server: Some(server),
            admin_server: Some(admin_server),
        }
    }

    /// The embedded demo config, as `aiproxy` runs it without a config file.
    pub fn demo() -> TestGateway {
        TestGateway::start(aiproxy::demo::CONFIG_YAML)
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn get(&self, path: &str) -> Response {
        request(self.addr, "GET", path, &[], b"")
    }

    pub fn post_json(&self, path: &str, body: &Value) -> Response {
        request(
            self.addr,
            "POST",
            path,
            &[("Content-Type", "application/json")],
            body.to_string().as_bytes(),
        )
    }

    /// A request to the admin listener as a local client (`Host: 127.0.0.1:<port>`).
    pub fn admin(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Response {
        admin_request(self.admin_addr, method, path, headers, body)
    }

    pub fn chat(&self, body: &Value) -> Response {
        self.post_json("/v1/chat/completions", body)
    }

    /// Open a streaming chat completion; read events with [`SseClient::next_event`].
    pub fn stream(&self, body: &Value) -> SseClient {
        SseClient::open(self.addr, body)
    }
}

impl Drop for TestGateway {
    fn drop(&mut self) {
        if let Some(s) = self.admin_server.take() {
            s.shutdown(Duration::from_secs(2));
            s.join();
        }
        if let Some(s) = self.server.take() {
            s.shutdown(Duration::from_secs(2));
            self.app.stop_mcp_servers();
            s.join();
        }
    }
}

#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// A request to an admin listener as a local client: `Host: <addr>` (a loopback address), the
/// only kind of `Host` it serves without a key.
pub fn admin_request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Response {
    let host = addr.to_string();
    let mut h: Vec<(&str, &str)> = vec![("Host", host.as_str())];
    h.extend_from_slice(headers);
    request(addr, method, path, &h, body)
}

/// One HTTP/1.1 request on a fresh connection (Connection: close), read to the end. Sends
/// `Host: test` unless `headers` has a `Host`.
pub fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Response {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    if !headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("host")) {
        head.push_str("Host: test\r\n");
    }
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    s.write_all(head.as_bytes()).unwrap();
    // The server may answer (413) and close before reading a big body: read the answer anyway.
    let _ = s.write_all(body);
    let mut raw = Vec::new();
    let _ = s.read_to_end(&mut raw);
    parse_response(&raw)
}

fn parse_response(raw: &[u8]) -> Response {
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("no header end");
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut lines = head.split("\r\n");
    let status: u16 = lines
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    let rest = &raw[split + 4..];
    let chunked = headers
        .iter()
        .any(|(k, v)| k.eq_ignore_ascii_case("transfer-encoding") && v.contains("chunked"));
    let body = if chunked {
        dechunk(rest)
    } else {
        rest.to_vec()
    };
    Response {
        status,
        headers,
        body,
    }
}

fn dechunk(mut data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let Some(eol) = data.windows(2).position(|w| w == b"\r\n") else {
            return out;
        };
        let size = usize::from_str_radix(
            String::from_utf8_lossy(&data[..eol])
                .split(';')
                .next()
                .unwrap()
                .trim(),
            16,
        )
        .unwrap();
        if size == 0 {
            return out;
        }
        out.extend_from_slice(&data[eol + 2..eol + 2 + size]);
        data = &data[eol + 2 + size + 2..];
    }
}

/// A raw streaming client that de-chunks as it goes and yields SSE `data:` payloads with the
/// time each arrived.
pub struct SseClient {
    reader: BufReader<TcpStream>,
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub started: Instant,
    /// HTTP chunks read so far (the gateway's writes, as the client sees them).
    pub chunks_read: usize,
    chunked: bool,
    buf: String,
    done: bool,
}

impl SseClient {
    pub fn open(addr: SocketAddr, body: &Value) -> SseClient {
        SseClient::open_at(addr, "/v1/chat/completions", body)
    }

    /// A stream from `POST path`.
    pub fn open_at(addr: SocketAddr, path: &str, body: &Value) -> SseClient {
        let s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
        let body = body.to_string();
        let head = format!(
            "POST {path} HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        (&s).write_all(head.as_bytes()).unwrap();
        let started = Instant::now();
        let mut reader = BufReader::new(s);
        let mut line = String::new();
        reader.read_line(&mut line).unwrap();
        let status = line.split(' ').nth(1).unwrap_or("0").parse().unwrap();
        let mut headers = Vec::new();
        loop {
            line.clear();
            reader.read_line(&mut line).unwrap();
            let l = line.trim_end();
            if l.is_empty() {
                break;
            }
            if let Some((k, v)) = l.split_once(':') {
                headers.push((k.trim().to_string(), v.trim().to_string()));
            }
        }
        let chunked = headers
            .iter()
            .any(|(k, v)| k.eq_ignore_ascii_case("transfer-encoding") && v.contains("chunked"));
        SseClient {
            reader,
            status,
            headers,
            started,
            chunks_read: 0,
            chunked,
            buf: String::new(),
            done: false,
        }
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn fill(&mut self) -> bool {
        if self.done {
            return false;
        }
        if !self.chunked {
            let mut tmp = [0u8; 4096];
            let n = self.reader.read(&mut tmp).unwrap_or(0);
            if n == 0 {
                self.done = true;
                return false;
            }
            self.buf.push_str(&String::from_utf8_lossy(&tmp[..n]));
            return true;
        }
        let mut size_line = String::new();
        if self.reader.read_line(&mut size_line).unwrap_or(0) == 0 {
            self.done = true;
            return false;
        }
        let size = usize::from_str_radix(size_line.trim(), 16).unwrap_or(0);
        if size == 0 {
            self.done = true;
            return false;
        }
        let mut chunk = vec![0u8; size + 2];
        self.reader.read_exact(&mut chunk).unwrap();
        self.chunks_read += 1;
        self.buf.push_str(&String::from_utf8_lossy(&chunk[..size]));
        true
    }

    /// The next SSE block (comments included, as `:`-lines), with its arrival time.
    pub fn next_block(&mut self) -> Option<(String, Duration)> {
        loop {
            if let Some(i) = self.buf.find("\n\n") {
                let block: String = self.buf.drain(..i + 2).collect();
                return Some((block.trim_end().to_string(), self.started.elapsed()));
            }
            if !self.fill() {
                return None;
            }
        }
    }

    /// The next `data:` payload (comments skipped).
    pub fn next_data(&mut self) -> Option<(String, Duration)> {
        while let Some((block, t)) = self.next_block() {
            if let Some(d) = block.strip_prefix("data: ") {
                return Some((d.to_string(), t));
            }
        }
        None
    }

    /// All remaining data payloads.
    pub fn collect(mut self) -> Vec<String> {
        let mut out = Vec::new();
        while let Some((d, _)) = self.next_data() {
            out.push(d);
        }
        out
    }

    pub fn into_stream(self) -> TcpStream {
        self.reader.into_inner()
    }
}

/// Content of a collected stream's chunks, joined.
pub fn stream_text(events: &[String]) -> String {
    events
        .iter()
        .filter(|e| *e != "[DONE]")
        .filter_map(|e| serde_json::from_str::<Value>(e).ok())
        .filter_map(|v| {
            v["choices"][0]["delta"]["content"]
                .as_str()
                .map(String::from)
        })
        .collect()
}
