//! The cache node (`mapcache serve`): the engine behind the Redis protocol, plus the admin HTTP
//! API, snapshots and drain. See docs/operations.md and docs/admin-api.md.
//!
//! # Layout
//! - [`resp`]: RESP request parser (multibulk + inline) and reply encoder (RESP2/RESP3).
//! - [`commands`]: the command table and one module per command family.
//! - [`conn`]: one client connection (pipelined read, execute, write).
//! - [`outbuf`]: bounds on replies a client has not read (`client-output-buffer-limit`, the
//!   read pause).
//! - [`io`]: the connection threads (one single-threaded runtime each) connections run on.
//! - [`router`]: key -> shard, with unequal shares so shards do not double together.
//! - [`store`]: the sharded storage, memory accounting, eviction, active expiry, lock profile.
//! - [`tasks`]: the task registry behind the task dump.
//! - [`snapshot`]: the snapshot file format, write + verify, restore.
//! - [`node`]: start, restore, accept, background maintenance, drain.
//! - [`admin`]: the admin HTTP API.
//! - [`auth`]: constant-time secrets, AUTH failure throttling, protected mode.
//! - [`counters`]: what INFO's stats, commandstats and errorstats count (striped, lock-free).
//! - [`slowlog`]: the slow log behind `SLOWLOG`.
//! - [`process`]: the process's memory and CPU time, and the machine, as INFO reports them.
//! - [`metrics`], [`clock`], [`glob`], [`state`]: Prometheus metrics, injectable time, Redis glob
//!   patterns, the shared node state and configuration.

pub mod admin;
pub mod auth;
pub mod clock;
pub mod collections;
pub mod commands;
pub mod conn;
pub mod counters;
pub mod glob;
pub mod io;
pub mod metrics;
pub mod node;
pub mod outbuf;
pub mod process;
pub mod resp;
pub mod router;
pub mod scripting;
pub mod slowlog;
pub mod snapshot;
pub mod spin;
pub mod state;
pub mod store;
pub mod tasks;
pub mod value;

use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

pub use node::{Node, NodeHandle, StartError};
pub use state::Config;
pub use store::EvictionPolicy;

/// How logs are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// Flags of `mapcache serve`. Each is also read from `MAPCACHE_<NAME>`.
#[derive(clap::Args, Debug)]
pub struct ServeArgs {
    /// Address the RESP (Redis protocol) listener binds to.
    #[arg(long, env = "MAPCACHE_BIND", default_value = "127.0.0.1")]
    pub bind: IpAddr,
    /// RESP port; 0 picks a free one (printed at start).
    #[arg(long, env = "MAPCACHE_PORT", default_value_t = 6379)]
    pub port: u16,
    /// Address the admin HTTP API binds to; must be loopback unless an admin token is set.
    #[arg(long, env = "MAPCACHE_ADMIN_BIND", default_value = "127.0.0.1")]
    pub admin_bind: IpAddr,
    /// Admin HTTP port; 0 picks a free one.
    #[arg(long, env = "MAPCACHE_ADMIN_PORT", default_value_t = 9090)]
    pub admin_port: u16,
    /// Seconds an admin connection may take to send a request's headers, counted from when it
    /// opened or from its previous response (so also how long it may sit idle); then it is
    /// closed.
    #[arg(long, env = "MAPCACHE_ADMIN_HEADER_TIMEOUT", default_value_t = 5,
          value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub admin_header_timeout: u64,
    /// Admin connections served at once; one more is answered 503 and closed.
    #[arg(long, env = "MAPCACHE_ADMIN_MAX_CONNECTIONS", default_value_t = 128,
          value_parser = clap::value_parser!(u64).range(1..=65536))]
    pub admin_max_connections: u64,
    /// Redis's protected mode: while on and no password is set (--requirepass /
    /// MAPCACHE_PASSWORD), clients not on the loopback interface are refused with Redis's
    /// -DENIED error. `no` serves them without a password (CONFIG SET protected-mode, too).
    #[arg(
        long,
        env = "MAPCACHE_PROTECTED_MODE",
        value_name = "yes|no",
        default_value = "yes",
        value_parser = parse_yes_no,
        action = clap::ArgAction::Set
    )]
    pub protected_mode: bool,
    /// Number of shards (a power of two, at most 1024).
    #[arg(long, env = "MAPCACHE_SHARDS", default_value_t = 16)]
    pub shards: usize,
    /// Memory limit: bytes, `100mb`, `1gb`, or a Kubernetes quantity like `512Mi`; 0 = unlimited.
    #[arg(long, env = "MAPCACHE_MAXMEMORY", default_value = "0", value_parser = state::parse_memory)]
    pub maxmemory: u64,
    /// What to do when a write would exceed --maxmemory.
    #[arg(long, env = "MAPCACHE_EVICTION_POLICY", value_enum, default_value = "noeviction")]
    pub eviction_policy: EvictionPolicy,
    /// A connection whose unparsed input grows past this is closed (Redis's
    /// client-query-buffer-limit): bytes or a size like `1gb`, at least `1mb`.
    #[arg(
        long,
        env = "MAPCACHE_CLIENT_QUERY_BUFFER_LIMIT",
        default_value = "1gb",
        value_parser = state::parse_query_buffer_limit
    )]
    pub client_query_buffer_limit: usize,
    /// A connection stops taking new commands while more than this many bytes of its replies
    /// wait for the client to read them, and takes them again once the socket has taken those
    /// back below it (see docs/operations.md): bytes or a size like `64mb`; 0 = never pause.
    #[arg(
        long,
        env = "MAPCACHE_MAX_PENDING_REPLY_BYTES",
        default_value = "64mb",
        value_parser = state::parse_pending_reply_bytes
    )]
    pub max_pending_reply_bytes: usize,
    /// Directory for snapshots.
    #[arg(long, env = "MAPCACHE_DATA_DIR", default_value = "./data")]
    pub data_dir: PathBuf,
    /// File holding the admin API bearer token (trailing whitespace ignored).
    #[arg(long, env = "MAPCACHE_ADMIN_TOKEN_FILE")]
    pub admin_token_file: Option<PathBuf>,
    /// Redis AUTH password for the `default` user (prefer the env var MAPCACHE_PASSWORD).
    #[arg(long, env = "MAPCACHE_PASSWORD", hide_env_values = true)]
    pub requirepass: Option<String>,
    /// Threads serving client connections, each with its own single-threaded runtime;
    /// 0 = half the CPUs (at least one), leaving the rest to maintenance, snapshots and clients.
    #[arg(long, env = "MAPCACHE_IO_THREADS", default_value_t = 0)]
    pub io_threads: usize,
    /// Microseconds a busy connection thread polls its sockets before it sleeps, so the next
    /// request finds it awake; it spins only while its idle gaps stay this short. 0 = never,
    /// at most 1000. Default: 50, or 0 when the process may use only one CPU.
    #[arg(long, env = "MAPCACHE_IO_SPIN_US", value_parser = clap::value_parser!(u64).range(0..=1000))]
    pub io_spin_us: Option<u64>,
    /// Log format.
    #[arg(long, env = "MAPCACHE_LOG_FORMAT", value_enum, default_value = "text")]
    pub log_format: LogFormat,
    /// Seconds SIGTERM/SIGINT may take for drain + snapshot: past them the process exits (code
    /// 1) whatever is left unfinished. A second SIGTERM/SIGINT exits at once.
    #[arg(long, env = "MAPCACHE_SHUTDOWN_GRACE", default_value_t = 25)]
    pub shutdown_grace: u64,
}

/// Why `mapcache serve` could not run.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("cannot read admin token file {path}: {source}")]
    TokenFile {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("admin token file {0} is empty")]
    EmptyToken(PathBuf),
    #[error(transparent)]
    Start(#[from] StartError),
    #[error("cannot start the async runtime: {0}")]
    Runtime(#[source] std::io::Error),
}

impl ServeArgs {
    /// The node configuration, reading the token file and env `MAPCACHE_ADMIN_TOKEN`.
    pub fn into_config(self) -> Result<Config, ServeError> {
        let admin_token = match &self.admin_token_file {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|source| ServeError::TokenFile { path: path.clone(), source })?;
                let token = text.trim().to_string();
                if token.is_empty() {
                    return Err(ServeError::EmptyToken(path.clone()));
                }
                Some(token)
            }
            // Trimmed as the file is: a token set with `echo` or from a Secret written with a
            // trailing newline must still match what clients send.
            None => std::env::var("MAPCACHE_ADMIN_TOKEN")
                .ok()
                .map(|t| t.trim().to_string())
                .filter(|t| !t.is_empty()),
        };
        let mut config = Config::for_test(self.data_dir);
        config.bind = self.bind;
        config.port = self.port;
        config.admin_bind = self.admin_bind;
        config.admin_port = self.admin_port;
        config.shards = self.shards;
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        config.io_threads = match self.io_threads {
            0 => default_io_threads(cpus),
            n => n,
        };
        config.io_spin = self.io_spin_us.map_or(default_io_spin(cpus), Duration::from_micros);
        config.maxmemory = self.maxmemory;
        config.eviction_policy = self.eviction_policy;
        config.query_buffer_limit = self.client_query_buffer_limit;
        config.max_pending_reply_bytes = self.max_pending_reply_bytes;
        config.admin_token = admin_token;
        config.requirepass = self.requirepass.filter(|p| !p.is_empty());
        config.protected_mode = self.protected_mode;
        config.admin_header_timeout = Duration::from_secs(self.admin_header_timeout);
        config.admin_max_connections = self.admin_max_connections as usize;
        config.shutdown_grace = Duration::from_secs(self.shutdown_grace);
        config.clock = Arc::new(clock::SystemClock);
        Ok(config)
    }
}

/// `--io-threads 0`: half the CPUs, at least one. A connection thread pinned by its
/// connections should not compete for a core with maintenance, snapshots, or clients on the
/// same machine (docs/operations.md has the measurements behind this).
fn default_io_threads(cpus: usize) -> usize {
    (cpus / 2).max(1)
}

/// `--io-spin-us` when not given: a spinning thread on a single CPU (or a one-CPU quota) would
/// only take time from the threads that bring its next request.
fn default_io_spin(cpus: usize) -> Duration {
    if cpus > 1 { state::DEFAULT_IO_SPIN } else { Duration::ZERO }
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("MAPCACHE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}

pub fn main(args: ServeArgs) -> std::process::ExitCode {
    init_logging(args.log_format);
    match run(args) {
        Ok(code) => code,
        Err(err) => {
            tracing::error!(error = %err, "mapcache serve failed");
            eprintln!("mapcache serve: {err}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run(args: ServeArgs) -> Result<std::process::ExitCode, ServeError> {
    let config = args.into_config()?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(ServeError::Runtime)?;
    runtime.block_on(async move {
        let grace = config.shutdown_grace;
        let handle = Node::start(config).await?;
        println!("listening resp={} admin={}", handle.resp_addr(), handle.admin_addr());
        tracing::info!(resp = %handle.resp_addr(), admin = %handle.admin_addr(), "listening");
        let mut signals = Signals::new();
        let signal = signals.next().await;
        tracing::info!(signal, grace_seconds = grace.as_secs(), "shutting down: drain + snapshot");
        exit_after_grace(grace);
        tokio::spawn(async move {
            let again = signals.next().await;
            tracing::error!(
                signal = again,
                "second signal: exiting now, without finishing drain and snapshot"
            );
            std::process::exit(1);
        });
        match handle.shutdown().await {
            Ok(info) => {
                tracing::info!(path = %info.path, keys = info.keys, "shutdown complete");
                Ok(std::process::ExitCode::SUCCESS)
            }
            Err(err) => {
                tracing::error!(error = %err, "shutdown snapshot failed");
                Ok(std::process::ExitCode::FAILURE)
            }
        }
    })
}

/// `--shutdown-grace` as a hard limit: a thread of its own (so neither a busy runtime nor a
/// snapshot stuck on a slow disk can hold it up) exits the process once the grace has passed.
/// The snapshot it cuts short leaves only a temp file, removed at the next start.
fn exit_after_grace(grace: Duration) {
    let spawned = std::thread::Builder::new().name("mapcache-grace".into()).spawn(move || {
        std::thread::sleep(grace);
        tracing::error!(
            grace_seconds = grace.as_secs(),
            "shutdown did not finish within the grace period; exiting now"
        );
        std::process::exit(1);
    });
    if let Err(err) = spawned {
        tracing::warn!(error = %err, "cannot enforce the shutdown grace period");
    }
}

/// SIGTERM (Kubernetes) and SIGINT (Ctrl-C), listened to from the start so a second one is
/// never missed.
struct Signals {
    #[cfg(unix)]
    listeners: Option<(tokio::signal::unix::Signal, tokio::signal::unix::Signal)>,
}

impl Signals {
    fn new() -> Self {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            let listeners = match (signal(SignalKind::terminate()), signal(SignalKind::interrupt()))
            {
                (Ok(term), Ok(int)) => Some((term, int)),
                _ => None,
            };
            Self { listeners }
        }
        #[cfg(not(unix))]
        Self {}
    }

    /// The next signal's name.
    async fn next(&mut self) -> &'static str {
        #[cfg(unix)]
        if let Some((term, int)) = &mut self.listeners {
            return tokio::select! {
                _ = term.recv() => "SIGTERM",
                _ = int.recv() => "SIGINT",
            };
        }
        let _ = tokio::signal::ctrl_c().await;
        "SIGINT"
    }
}

/// `yes` or `no`, as Redis's boolean parameters.
fn parse_yes_no(text: &str) -> Result<bool, String> {
    match text.to_ascii_lowercase().as_str() {
        "yes" => Ok(true),
        "no" => Ok(false),
        _ => Err(format!("{text:?} is neither yes nor no")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `mapcache serve`'s flags on their own.
    #[derive(clap::Parser)]
    struct Serve {
        #[command(flatten)]
        args: ServeArgs,
    }

    #[test]
    fn io_spin_us_takes_0_to_1000_and_defaults_by_cpu_count() {
        use clap::Parser;
        let parse = |args: &[&str]| Serve::try_parse_from([&["serve"], args].concat());
        let spin = |args: &[&str]| parse(args).unwrap().args.into_config().unwrap().io_spin;
        assert_eq!(spin(&["--io-spin-us", "0"]), Duration::ZERO);
        assert_eq!(spin(&["--io-spin-us", "1000"]), Duration::from_micros(1000));
        let err = parse(&["--io-spin-us", "1001"]).err().unwrap().to_string();
        assert!(err.contains("1001 is not in 0..=1000"), "{err}");
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        assert_eq!(spin(&[]), default_io_spin(cpus));
    }

    #[test]
    fn protected_mode_takes_yes_or_no_and_is_on_by_default() {
        use clap::Parser;
        let parse = |args: &[&str]| Serve::try_parse_from([&["serve"], args].concat());
        let config = |args: &[&str]| parse(args).unwrap().args.into_config().unwrap();
        assert!(config(&[]).protected_mode);
        assert!(!config(&["--protected-mode", "no"]).protected_mode);
        assert!(!config(&["--protected-mode=NO"]).protected_mode);
        assert!(config(&["--protected-mode=yes"]).protected_mode);
        let err = parse(&["--protected-mode=maybe"]).err().unwrap().to_string();
        assert!(err.contains("\"maybe\" is neither yes nor no"), "{err}");
    }

    #[test]
    fn max_pending_reply_bytes_defaults_to_64_mib_and_takes_sizes_and_0() {
        use clap::Parser;
        let parse = |args: &[&str]| Serve::try_parse_from([&["serve"], args].concat());
        let pause = |args: &[&str]| {
            parse(args).unwrap().args.into_config().unwrap().max_pending_reply_bytes
        };
        assert_eq!(pause(&[]), 64 << 20);
        assert_eq!(pause(&["--max-pending-reply-bytes", "1mb"]), 1 << 20);
        assert_eq!(pause(&["--max-pending-reply-bytes=0"]), 0);
        let err = parse(&["--max-pending-reply-bytes=lots"]).err().unwrap().to_string();
        assert!(err.contains("invalid memory size"), "{err}");
    }

    #[test]
    fn admin_limits_default_to_five_seconds_and_128_connections() {
        use clap::Parser;
        let parse = |args: &[&str]| Serve::try_parse_from([&["serve"], args].concat());
        let config = parse(&[]).unwrap().args.into_config().unwrap();
        assert_eq!(config.admin_header_timeout, Duration::from_secs(5));
        assert_eq!(config.admin_max_connections, 128);
        let config = parse(&["--admin-header-timeout=2", "--admin-max-connections=9"]).unwrap();
        let config = config.args.into_config().unwrap();
        assert_eq!(config.admin_header_timeout, Duration::from_secs(2));
        assert_eq!(config.admin_max_connections, 9);
        assert!(parse(&["--admin-header-timeout=0"]).is_err());
        assert!(parse(&["--admin-max-connections=0"]).is_err());
    }

    #[test]
    fn default_io_spin_is_off_on_one_cpu() {
        assert_eq!(default_io_spin(1), Duration::ZERO);
        assert_eq!(default_io_spin(2), state::DEFAULT_IO_SPIN);
        assert_eq!(default_io_spin(64), state::DEFAULT_IO_SPIN);
    }

    #[test]
    fn default_io_threads_is_half_the_cpus_and_at_least_one() {
        assert_eq!(default_io_threads(1), 1);
        assert_eq!(default_io_threads(2), 1);
        assert_eq!(default_io_threads(3), 1);
        assert_eq!(default_io_threads(4), 2);
        assert_eq!(default_io_threads(16), 8);
    }
}
