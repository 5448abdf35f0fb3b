//! STUB — replaced by the MCP implementation.
#![allow(dead_code, clippy::panic)]
use std::sync::Arc;

use serde_json::Value;

use super::{CallResult, Error, ToolInfo};
use crate::cancel::Cancel;
use crate::config::McpServerConfig;

pub struct McpServer {
    name: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServerState {
    Idle,
    Starting,
    Ready,
    Failed,
    Stopped,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ServerStatus {
    pub state: ServerState,
    pub last_error: Option<String>,
    pub restarts: u64,
    pub tool_count: Option<usize>,
}

impl McpServer {
    pub fn new(name: &str, _cfg: McpServerConfig) -> Arc<McpServer> {
        Arc::new(McpServer {
            name: name.to_string(),
        })
    }
    pub fn name(&self) -> &str {
        &self.name
    }
    pub fn tools(&self) -> Result<Arc<Vec<ToolInfo>>, Error> {
        unimplemented!()
    }
    pub fn call_tool(
        &self,
        _tool: &str,
        _arguments: Value,
        _cancel: &Cancel,
    ) -> Result<CallResult, Error> {
        unimplemented!()
    }
    pub fn status(&self) -> ServerStatus {
        unimplemented!()
    }
    pub fn stop(&self) {}
}
