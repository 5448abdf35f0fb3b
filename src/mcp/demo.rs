//! STUB — replaced by the MCP implementation.
pub fn run_stdio() -> std::io::Result<()> {
    Ok(())
}
