fn main() {
    eprintln!("local-cluster: not built yet (issue #5)");
    std::process::exit(1);
}
