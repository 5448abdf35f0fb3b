//! The `aiproxy` binary: arguments in, exit code out; everything else is in the library.

fn main() {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let args: Vec<String> = std::env::args().skip(1).collect();
    std::process::exit(aiproxy::cli::run(&args));
}
