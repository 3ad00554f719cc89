//! Typed errors shared by the node agent and the service proxy.

use std::path::PathBuf;

/// Errors of the node agent and the service proxy.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    #[error("kubeconfig: {0}")]
    KubeConfig(#[from] kube::config::KubeconfigError),
    #[error("client setup: {0}")]
    InferConfig(#[from] kube::config::InferConfigError),
    #[error("I/O on {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("image config {path}: {source}")]
    ImageConfig {
        path: PathBuf,
        #[source]
        source: serde_yaml::Error,
    },
    #[error("json: {0}")]
    Json(#[from] serde_json::Error),
    #[error("no free address left in {0}")]
    AddressesExhausted(String),
    #[error("signal: {0}")]
    Signal(#[from] nix::Error),
    #[error("{0}")]
    Invalid(String),
}

impl Error {
    /// Wraps an I/O error with the path it happened on.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io {
            path: path.into(),
            source,
        }
    }
}

/// Result with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
