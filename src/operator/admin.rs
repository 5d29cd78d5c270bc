//! `mapcache admin`. INTERIM skeleton: see issue #6.

#[derive(clap::Args, Debug)]
pub struct AdminArgs {}

pub fn main(_args: AdminArgs) -> std::process::ExitCode {
    eprintln!("mapcache admin: not built yet (issue #6)");
    std::process::ExitCode::FAILURE
}
