//! Compiles the crate's one C file: INCRBYFLOAT's `long double` arithmetic, which Rust has no
//! type for (src/server/commands/long_double.c, wrapped by long_double.rs).

fn main() {
    const SOURCE: &str = "src/server/commands/long_double.c";
    println!("cargo::rerun-if-changed={SOURCE}");
    cc::Build::new()
        .file(SOURCE)
        .warnings(true)
        .extra_warnings(true)
        .compile("mapcache_long_double");
}
