//! mapcache: a Kubernetes operator for in-memory caches on an embedded Go-classic hash-map engine.
//!
//! # Layout
//! - [`engine`]: the embedded map engine (Go's classic runtime map plus exact tombstones, online
//!   compaction and shrink); no I/O, no async, no Kubernetes.
//! - [`server`]: the cache node (`mapcache serve`): RESP server, admin HTTP, snapshots, drain.
//! - [`operator`]: the controller (`mapcache operator`): CRD types, pure builders, reconcile,
//!   maintenance, rollout, and the `mapcache admin` client.

pub mod engine;
pub mod operator;
pub mod server;
