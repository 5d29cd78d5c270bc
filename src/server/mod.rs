//! The cache node (`mapcache serve`). INTERIM skeleton: see issue #3.

/// Flags of `mapcache serve`.
#[derive(clap::Args, Debug)]
pub struct ServeArgs {}

pub fn main(_args: ServeArgs) -> std::process::ExitCode {
    eprintln!("mapcache serve: not built yet (issue #3)");
    std::process::ExitCode::FAILURE
}
