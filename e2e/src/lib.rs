//! The whole mapcache system on one machine, on a real Kubernetes control plane (DESIGN.md
//! section 6, docs/e2e.md).
//!
//! # Layout
//! - `binaries`: where the control plane's binaries are (built by `scripts/k8s-binaries.sh`)
//! - `controlplane`: etcd, kube-apiserver, kube-controller-manager and kube-scheduler as child
//!   processes, with their certificates and an admin kubeconfig
//! - `kubelet`: the process kubelet (the `process-kubelet` binary): a Node whose pods run as
//!   processes, each in a network namespace of its own, and a directory-backed PV provisioner
//! - `cluster`: all of it together (`local-cluster` binary), shared by the scenarios of a test binary
//! - `scenario`: building blocks of the scenario tests (namespace per test, the operator under the
//!   chart's RBAC, apply, waits, Redis access)

pub mod binaries;
pub mod cluster;
pub mod controlplane;
pub mod kubelet;
pub mod scenario;
