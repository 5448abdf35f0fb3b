//! The tool's own time: `aiproxy demo-mcp` spawned directly and `tools/call echo` timed over
//! its stdio, so the tool-loop overhead can be stated without the tool's share. Each request
//! line goes out in one `write` (as the gateway writes them), so the subtracted tool time
//! holds no extra system calls or partial reads on the server side.
//!
//! Thread model: the driver thread only; the child's stdout is read with a reader thread so
//! every wait has a deadline.

use std::io::{self, BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

/// Sorted round-trip times (µs) of `n` sequential echo calls, after `warm` unrecorded ones.
pub fn echo_round_trips(aiproxy: &Path, warm: usize, n: usize) -> io::Result<Vec<u32>> {
    let mut child = Command::new(aiproxy)
        .arg("demo-mcp")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()?;
    let mut stdin = child
        .stdin
        .take()
        .ok_or_else(|| io::Error::other("no stdin"))?;
    let stdout = child
        .stdout
        .take()
        .ok_or_else(|| io::Error::other("no stdout"))?;
    let (tx, rx) = mpsc::sync_channel::<String>(16);
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { return };
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    let mut send = |msg: Value| -> io::Result<()> {
        let mut line = msg.to_string().into_bytes();
        line.push(b'\n');
        stdin.write_all(&line)
    };
    let wait_for = |id: u64| -> io::Result<()> {
        loop {
            let line = rx
                .recv_timeout(Duration::from_secs(10))
                .map_err(|_| io::Error::other("demo-mcp did not answer"))?;
            let v: Value = serde_json::from_str(&line).unwrap_or(Value::Null);
            if v["id"] == json!(id) {
                return Ok(());
            }
        }
    };
    send(
        json!({"jsonrpc":"2.0","id":1,"method":"initialize","params":
        {"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"bench","version":"0"}}}),
    )?;
    wait_for(1)?;
    send(json!({"jsonrpc":"2.0","method":"notifications/initialized"}))?;
    let mut out = Vec::with_capacity(n);
    for i in 0..warm + n {
        let id = 10 + i as u64;
        let t = Instant::now();
        send(json!({"jsonrpc":"2.0","id":id,"method":"tools/call",
            "params":{"name":"echo","arguments":{"text":"ping"}}}))?;
        wait_for(id)?;
        if i >= warm {
            out.push(u32::try_from(t.elapsed().as_micros()).unwrap_or(u32::MAX));
        }
    }
    drop(stdin);
    let _ = child.kill();
    let _ = child.wait();
    out.sort_unstable();
    Ok(out)
}
