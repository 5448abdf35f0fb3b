fn main() {
    println!("aiproxy {}", env!("CARGO_PKG_VERSION"));
}
