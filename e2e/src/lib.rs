//! The whole mapcache system on one machine (DESIGN.md section 6, docs/e2e.md).
//!
//! # Layout
//! - `apiserver`: the Kubernetes API-server stand-in (HTTP, storage, watch, apply, GC, eviction)
//! - `controllers`: StatefulSet, EndpointSlice and PodDisruptionBudget controllers
//! - `kubelet`: the process kubelet (pods as local `mapcache serve` processes on 127.0.X.N)
//! - `cluster`: all of it together, with a kubeconfig on disk (`local-cluster` binary)
//! - `scenario`: building blocks of the scenario tests (environment, operator process, apply, waits)

pub mod apiserver;
pub mod cluster;
pub mod controllers;
pub mod kubelet;
pub mod scenario;
