//! The `aiproxy` binary: arguments in, exit code out; everything else is in the library
//! (logging: [`aiproxy::logging`]).

fn main() {
    aiproxy::logging::init();
    let args: Vec<String> = std::env::args().skip(1).collect();
    std::process::exit(aiproxy::cli::run(&args));
}
