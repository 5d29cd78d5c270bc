//! The whole mapcache system on one machine (DESIGN.md section 6, docs/e2e.md).
//!
//! # Layout
//! - `apiserver`: the Kubernetes API-server stand-in (HTTP, storage, watch, apply, GC, eviction)
pub mod apiserver;
