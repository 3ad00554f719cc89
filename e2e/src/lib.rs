//! Node side of the local end-to-end Kubernetes: a node agent that runs Pods as
//! local processes ([`agent`]) and a Service proxy on loopback ([`proxy`]).
//!
//! The control plane itself (etcd, kube-apiserver, kube-controller-manager,
//! kube-scheduler v1.20.2) is started by the scripts in `e2e/cluster/`.

pub mod agent;
pub mod error;
pub mod ipalloc;
pub mod proxy;
pub mod telemetry;
pub mod watch;

pub use error::{Error, Result};
