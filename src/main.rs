fn main() -> std::process::ExitCode {
    if std::env::args().nth(1).as_deref() == Some("demo-mcp") {
        return match aiproxy::mcp::demo::run_stdio() {
            Ok(()) => std::process::ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("demo-mcp: {e}");
                std::process::ExitCode::FAILURE
            }
        };
    }
    println!("aiproxy {}", env!("CARGO_PKG_VERSION"));
    std::process::ExitCode::SUCCESS
}
