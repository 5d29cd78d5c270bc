//! The one `mapcache` binary: engine node, operator, CRD generator and admin client.

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "mapcache",
    version,
    about = "In-memory caches on a Go-classic hash-map engine, run by a Kubernetes operator"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a cache node: the engine behind the Redis protocol, plus the admin HTTP API.
    Serve(mapcache::server::ServeArgs),
    /// Run the Kubernetes operator that reconciles MapCache resources.
    Operator(mapcache::operator::OperatorArgs),
    /// Print the MapCache CustomResourceDefinition as YAML.
    Crd,
    /// Operate a cache by hand: drain, checklist, stats, compact.
    Admin(mapcache::operator::admin::AdminArgs),
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve(args) => mapcache::server::main(args),
        Command::Operator(args) => mapcache::operator::main(args),
        Command::Crd => {
            print!("{}", mapcache::operator::crd::crd_yaml());
            std::process::ExitCode::SUCCESS
        }
        Command::Admin(args) => mapcache::operator::admin::main(args),
    }
}
