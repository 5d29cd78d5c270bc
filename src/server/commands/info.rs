//! INFO, as Redis 7's `genRedisInfoString`: the sections asked for, each `# Name` then
//! `field:value` lines, separated by a blank line. Redis's field names, order and number formats
//! for what the node has; fields for what it has not (replication offsets, AOF, allocator
//! internals) are left out rather than made up; the node's own fields start with `mapcache_`.

use std::fmt::Write as _;
use std::sync::atomic::Ordering;

use bytes::Bytes;

use super::connection::REDIS_COMPAT_VERSION;
use super::{Ctx, stat_name};
use crate::server::counters::Totals;
use crate::server::process::{self, CpuTime, human_bytes};
use crate::server::resp::Reply;
use crate::server::state::{NodeState, NodeStats};

/// Every section, in Redis's order.
const SECTIONS: [Section; 13] = [
    Section::Server,
    Section::Clients,
    Section::Memory,
    Section::Persistence,
    Section::Stats,
    Section::Replication,
    Section::Cpu,
    Section::Modules,
    Section::Commandstats,
    Section::Errorstats,
    Section::Latencystats,
    Section::Cluster,
    Section::Keyspace,
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Section {
    Server,
    Clients,
    Memory,
    Persistence,
    Stats,
    Replication,
    Cpu,
    /// Redis's `module_list`: the modules loaded (none).
    Modules,
    Commandstats,
    Errorstats,
    /// Per-command latency percentiles (p50, p99, p99.9 of each command's calls).
    Latencystats,
    Cluster,
    Keyspace,
}

impl Section {
    fn name(self) -> &'static str {
        match self {
            Section::Server => "server",
            Section::Clients => "clients",
            Section::Memory => "memory",
            Section::Persistence => "persistence",
            Section::Stats => "stats",
            Section::Replication => "replication",
            Section::Cpu => "cpu",
            Section::Modules => "modules",
            Section::Commandstats => "commandstats",
            Section::Errorstats => "errorstats",
            Section::Latencystats => "latencystats",
            Section::Cluster => "cluster",
            Section::Keyspace => "keyspace",
        }
    }

    fn title(self) -> &'static str {
        match self {
            Section::Server => "Server",
            Section::Clients => "Clients",
            Section::Memory => "Memory",
            Section::Persistence => "Persistence",
            Section::Stats => "Stats",
            Section::Replication => "Replication",
            Section::Cpu => "CPU",
            Section::Modules => "Modules",
            Section::Commandstats => "Commandstats",
            Section::Errorstats => "Errorstats",
            Section::Latencystats => "Latencystats",
            Section::Cluster => "Cluster",
            Section::Keyspace => "Keyspace",
        }
    }

    /// In `INFO` and `INFO default` (Redis's default sections).
    fn is_default(self) -> bool {
        !matches!(self, Section::Commandstats | Section::Latencystats)
    }
}

/// The sections `INFO <args>` asks for, as Redis 7's `genInfoSectionDict`: none given or
/// `default` is the default sections; `all` and `everything` every section (`everything` would
/// add the sections modules make, and there are none); any other word names one section, in
/// any case, and words that name none are ignored. Several may be given; the output follows
/// Redis's order whatever theirs.
fn wanted_sections(args: &[Bytes]) -> Vec<Section> {
    let words: Vec<Vec<u8>> = args.iter().map(|a| a.to_ascii_lowercase()).collect();
    let named = |word: &[u8]| words.iter().any(|w| w == word);
    let all = named(b"all") || named(b"everything");
    let default = words.is_empty() || named(b"default");
    SECTIONS
        .into_iter()
        .filter(|s| all || (default && s.is_default()) || named(s.name().as_bytes()))
        .collect()
}

pub fn info(ctx: &mut Ctx<'_, '_>, args: &[Bytes]) -> Reply {
    let node = ctx.node;
    let sections = wanted_sections(&args[1..]);
    let needs_stats = sections.iter().any(|s| {
        matches!(s, Section::Memory | Section::Stats | Section::Keyspace | Section::Clients)
    });
    // Each shard's lock through the context: inside EXEC the transaction holds them all.
    let stats = needs_stats.then(|| {
        let shards = 0..node.store.shard_count();
        node.stats_of(shards.map(|i| ctx.lock_shard(i).map().stats()).collect())
    });
    let counted = node.counted_since_reset();
    let mut out = String::new();
    for (n, section) in sections.into_iter().enumerate() {
        if n > 0 {
            out.push_str("\r\n");
        }
        let _ = write!(out, "# {}\r\n", section.title());
        let report = Report { ctx, stats: stats.as_ref(), counted: &counted, out: &mut out };
        report.section(section);
    }
    Reply::Verbatim(out)
}

/// What one INFO reply is made from.
struct Report<'a, 'c, 'n> {
    ctx: &'a Ctx<'c, 'n>,
    /// The store's figures, taken once for the reply (for the sections that need them).
    stats: Option<&'a NodeStats>,
    /// The counters since the last `CONFIG RESETSTAT`.
    counted: &'a Totals,
    out: &'a mut String,
}

impl Report<'_, '_, '_> {
    fn line(&mut self, field: &str, value: impl std::fmt::Display) {
        let _ = write!(self.out, "{field}:{value}\r\n");
    }

    fn section(mut self, section: Section) {
        match section {
            Section::Server => self.server(),
            Section::Clients => self.clients(),
            Section::Memory => self.memory(),
            Section::Persistence => self.persistence(),
            Section::Stats => self.stats_section(),
            Section::Replication => {
                self.line("role", "master");
                self.line("connected_slaves", 0);
            }
            Section::Cpu => self.cpu(),
            Section::Modules => {}
            Section::Latencystats => self.latencystats(),
            Section::Commandstats => self.commandstats(),
            Section::Errorstats => self.errorstats(),
            Section::Cluster => self.line("cluster_enabled", 0),
            Section::Keyspace => self.keyspace(),
        }
    }

    fn node(&self) -> &NodeState {
        self.ctx.node
    }

    fn server(&mut self) {
        let node = self.node();
        let uptime = node.started.elapsed().as_secs();
        let port = self.ctx.task.local.map_or(0, |a| a.port());
        let now_us = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_micros());
        let executable = std::env::current_exe().map(|p| p.display().to_string());
        let run_id = node.run_id.clone();
        self.line("redis_version", REDIS_COMPAT_VERSION);
        self.line("mapcache_version", env!("CARGO_PKG_VERSION"));
        self.line("redis_git_sha1", "00000000");
        self.line("redis_git_dirty", 0);
        self.line("redis_mode", "standalone");
        self.line("os", process::os_description());
        self.line("arch_bits", usize::BITS);
        self.line("monotonic_clock", "POSIX clock_gettime");
        self.line("multiplexing_api", if cfg!(target_os = "linux") { "epoll" } else { "kqueue" });
        self.line("process_id", std::process::id());
        self.line("run_id", run_id);
        self.line("tcp_port", port);
        self.line("server_time_usec", now_us);
        self.line("uptime_in_seconds", uptime);
        self.line("uptime_in_days", uptime / 86_400);
        // Active expiry samples every 100 ms: Redis's default `hz`.
        self.line("hz", 10);
        self.line("configured_hz", 10);
        self.line("lru_clock", (now_us / 1_000_000) & ((1 << 24) - 1));
        self.line("executable", executable.unwrap_or_default());
        self.line("config_file", "");
    }

    fn clients(&mut self) {
        let node = self.node();
        let connections = node.tasks.snapshot();
        let connected = node.tasks.connections();
        let max_input = connections.iter().map(|t| t.query_buffer().0).max().unwrap_or(0);
        let max_output = connections.iter().map(|t| t.output_buffer()).max().unwrap_or(0);
        self.line("connected_clients", connected);
        self.line("cluster_connections", 0);
        self.line("client_recent_max_input_buffer", max_input);
        self.line("client_recent_max_output_buffer", max_output);
        self.line("blocked_clients", 0);
        self.line("tracking_clients", 0);
        self.line("clients_in_timeout_table", 0);
    }

    fn memory(&mut self) {
        let Some(stats) = self.stats else {
            return;
        };
        let used = stats.memory_bytes as u64;
        let peak = self.node().counters.note_memory(used);
        let rss = process::rss_bytes();
        let dataset = used.saturating_sub(stats.bytes_allocated as u64);
        let system = process::total_system_memory();
        let percent = |part: u64, whole: u64| {
            if whole == 0 { 0.0 } else { part as f64 * 100.0 / whole as f64 }
        };
        let fragmentation = if used == 0 { 0.0 } else { rss as f64 / used as f64 };
        self.line("used_memory", used);
        self.line("used_memory_human", human_bytes(used));
        self.line("used_memory_rss", rss);
        self.line("used_memory_rss_human", human_bytes(rss));
        self.line("used_memory_peak", peak);
        self.line("used_memory_peak_human", human_bytes(peak));
        self.line("used_memory_peak_perc", format!("{:.2}%", percent(used, peak)));
        self.line("used_memory_overhead", stats.bytes_allocated);
        self.line("used_memory_dataset", dataset);
        self.line("used_memory_dataset_perc", format!("{:.2}%", percent(dataset, used)));
        self.line("total_system_memory", system);
        self.line("total_system_memory_human", human_bytes(system));
        self.line("maxmemory", stats.maxmemory);
        self.line("maxmemory_human", human_bytes(stats.maxmemory));
        self.line("maxmemory_policy", stats.eviction_policy);
        self.line("mem_fragmentation_ratio", format!("{fragmentation:.2}"));
        self.line("mem_fragmentation_bytes", rss as i64 - used as i64);
        self.line("mem_allocator", "libc");
        self.line("mapcache_bytes_allocated", stats.bytes_allocated);
    }

    fn persistence(&mut self) {
        let node = self.node();
        let last = node.last_snapshot.lock().clone();
        let saving = node.snapshot_lock.try_lock().is_err();
        let generation = node.snapshot_generation.load(Ordering::Relaxed);
        self.line("loading", u8::from(!node.is_ready()));
        self.line("rdb_bgsave_in_progress", u8::from(saving));
        self.line("rdb_last_save_time", last.map_or(0, |s| s.written_at.as_second()));
        self.line("aof_enabled", 0);
        self.line("mapcache_snapshot_generation", generation);
    }

    fn stats_section(&mut self) {
        let node = self.node();
        let store = &node.store;
        let connections = node.total_connections.load(Ordering::Relaxed);
        // Redis counts the clients protected mode refused here (and those past maxclients,
        // which this node has no limit for).
        let rejected = node.metrics.protected_mode_rejections.get();
        let rejected = rejected.saturating_sub(node.rejected_at_reset.load(Ordering::Relaxed));
        // Redis 7.4's names for the clients closed at their buffer limits.
        let since_reset = |counter: u64, at_reset: &std::sync::atomic::AtomicU64| {
            counter.saturating_sub(at_reset.load(Ordering::Relaxed))
        };
        let metrics = &node.metrics;
        let query = since_reset(
            metrics.query_buffer_limit_disconnections.get(),
            &node.query_limit_closed_at_reset,
        );
        let output = since_reset(
            metrics.output_buffer_limit_disconnections.get(),
            &node.output_limit_closed_at_reset,
        );
        let rates = node.counters.rates();
        let expired = store.expired_total.get();
        let expired = expired.saturating_sub(store.expired_at_reset.load(Ordering::Relaxed));
        let evicted = store.evicted_total.get();
        let evicted = evicted.saturating_sub(store.evicted_at_reset.load(Ordering::Relaxed));
        let kbps = |bytes_per_sec: u64| format!("{:.2}", bytes_per_sec as f64 / 1024.0);
        let counted = self.counted;
        self.line("total_connections_received", connections);
        self.line("total_commands_processed", counted.calls());
        self.line("instantaneous_ops_per_sec", rates.ops_per_sec);
        self.line("total_net_input_bytes", counted.net_input_bytes);
        self.line("total_net_output_bytes", counted.net_output_bytes);
        self.line("instantaneous_input_kbps", kbps(rates.input_bytes_per_sec));
        self.line("instantaneous_output_kbps", kbps(rates.output_bytes_per_sec));
        self.line("rejected_connections", rejected);
        self.line("expired_keys", expired);
        self.line("evicted_keys", evicted);
        self.line("keyspace_hits", counted.keyspace_hits);
        self.line("keyspace_misses", counted.keyspace_misses);
        self.line("pubsub_channels", 0);
        self.line("pubsub_patterns", 0);
        self.line("total_error_replies", counted.error_replies);
        self.line("total_reads_processed", counted.reads);
        self.line("total_writes_processed", counted.writes);
        self.line("client_query_buffer_limit_disconnections", query);
        self.line("client_output_buffer_limit_disconnections", output);
        if let Some(stats) = self.stats {
            self.line("mapcache_tombstones", stats.tombstones);
            self.line("mapcache_tombstone_ratio", format!("{:.4}", stats.tombstone_ratio));
        }
    }

    fn cpu(&mut self) {
        let own = process::cpu_self();
        let children = process::cpu_children();
        self.line("used_cpu_sys", CpuTime::seconds_text(own.sys_us));
        self.line("used_cpu_user", CpuTime::seconds_text(own.user_us));
        self.line("used_cpu_sys_children", CpuTime::seconds_text(children.sys_us));
        self.line("used_cpu_user_children", CpuTime::seconds_text(children.user_us));
    }

    /// Redis's `cmdstat_<name>:calls=..,usec=..,usec_per_call=%.2f,rejected_calls=..,failed_calls=..`
    /// for every command called, rejected or failed since the last reset (in table order;
    /// Redis's follows its hash table).
    fn commandstats(&mut self) {
        let counted = self.counted;
        for (slot, c) in counted.commands.iter().enumerate().filter(|(_, c)| c.any()) {
            let per_call = if c.calls == 0 { 0.0 } else { c.usec as f64 / c.calls as f64 };
            let _ = write!(
                self.out,
                "cmdstat_{}:calls={},usec={},usec_per_call={per_call:.2},rejected_calls={},failed_calls={}\r\n",
                stat_name(slot),
                c.calls,
                c.usec,
                c.rejected,
                c.failed,
            );
        }
    }

    /// `latency_percentiles_usec_<cmd>:p50=..,p99=..,p99.9=..`, for every command with calls since
    /// the last reset, in commandstats' order, as Redis 7 prints them.
    fn latencystats(&mut self) {
        let node = self.ctx.node;
        let counters = &node.counters;
        for (slot, c) in self.counted.commands.iter().enumerate() {
            if c.calls == 0 {
                continue;
            }
            let Some([p50, p99, p999]) = counters.latency_percentiles(slot as u16) else {
                continue;
            };
            let _ = write!(
                self.out,
                "latency_percentiles_usec_{}:p50={p50:.3},p99={p99:.3},p99.9={p999:.3}\r\n",
                stat_name(slot),
            );
        }
    }

    /// `errorstat_<CODE>:count=..`, codes in byte order as Redis lists them.
    fn errorstats(&mut self) {
        let counted = self.counted;
        for (code, count) in &counted.errors {
            let _ =
                write!(self.out, "errorstat_{}:count={count}\r\n", String::from_utf8_lossy(code));
        }
    }

    fn keyspace(&mut self) {
        let Some(stats) = self.stats else {
            return;
        };
        if stats.keys > 0 {
            let store = &self.node().store;
            let (expires, avg_ttl) = (store.ttl_keys_unlocked(), store.avg_ttl_ms());
            let keys = stats.keys;
            self.line("db0", format!("keys={keys},expires={expires},avg_ttl={avg_ttl}"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn titles(args: &[&str]) -> Vec<&'static str> {
        let args: Vec<Bytes> = args.iter().map(|a| Bytes::copy_from_slice(a.as_bytes())).collect();
        wanted_sections(&args).into_iter().map(Section::title).collect()
    }

    /// Checked against redis-server 7.0.15's `INFO <args>` section headers.
    #[test]
    fn sections_are_chosen_as_redis_chooses_them() {
        let default = [
            "Server",
            "Clients",
            "Memory",
            "Persistence",
            "Stats",
            "Replication",
            "CPU",
            "Modules",
            "Errorstats",
            "Cluster",
            "Keyspace",
        ];
        assert_eq!(titles(&[]), default);
        assert_eq!(titles(&["default"]), default);
        let all = SECTIONS.map(Section::title);
        assert_eq!(titles(&["all"]), all);
        assert_eq!(titles(&["everything"]), all);
        assert_eq!(titles(&["ALL", "cpu"]), all);
        assert_eq!(titles(&["cpu"]), ["CPU"]);
        assert_eq!(titles(&["cpu", "nosuch"]), ["CPU"]);
        assert_eq!(titles(&["nosuch"]), Vec::<&str>::new());
        assert_eq!(titles(&["CPU", "server"]), ["Server", "CPU"]);
        let mut with_stats = default.to_vec();
        with_stats.insert(8, "Commandstats");
        assert_eq!(titles(&["default", "commandstats"]), with_stats);
    }
}
