//! The secret values an MCP server's text is scrubbed of, and the one place its stderr tail
//! is cut off a message meant for a warn-level log line.

use crate::config::{McpServerConfig, McpTransport};

/// A server's own secret values: its env values (stdio) or header values (HTTP).
pub(super) fn own_secrets(cfg: &McpServerConfig) -> Vec<String> {
    match &cfg.transport {
        McpTransport::Stdio { env, .. } => env.values().map(|v| v.expose().to_string()).collect(),
        McpTransport::Sse { headers, .. } | McpTransport::StreamableHttp { headers, .. } => {
            headers
                .values()
                .flat_map(|v| {
                    // `Bearer xyz`: the credential alone is masked too.
                    let v = v.expose();
                    let bare = v.split_once(' ').map(|(_, b)| b.trim().to_string());
                    std::iter::once(v.to_string()).chain(bare)
                })
                .collect()
        }
    }
}

/// A start-failure message without the server's stderr tail (which `handshake` and the stdio
/// transport append as `; stderr: …`): for warn-level log lines.
pub fn without_stderr(msg: &str) -> &str {
    msg.split_once("; stderr: ").map_or(msg, |(head, _)| head)
}
