//! The controller (`mapcache operator`). INTERIM skeleton: see issue #4.

pub mod admin;
pub mod crd;
pub mod maintain;
pub mod node_client;
pub mod rollout;

/// Flags of `mapcache operator`.
#[derive(clap::Args, Debug)]
pub struct OperatorArgs {}

pub fn main(_args: OperatorArgs) -> std::process::ExitCode {
    eprintln!("mapcache operator: not built yet (issue #4)");
    std::process::ExitCode::FAILURE
}
