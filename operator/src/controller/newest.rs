//! The newest AurenRuntime this replica knows: the watch cache, unless the cache has not caught
//! up with a version this replica itself got from the API server (its own status write, or a
//! fresh read). Deciding on an older status would undo progress.

use std::sync::Arc;

use kube::ResourceExt;
use kube::api::Api;

use super::{Context, Error};
use crate::api::{AurenRuntime, AurenRuntimeStatus};

/// The cached AurenRuntime, unless the cache has not caught up with a version this replica
/// already got from the API server (its own last status write): then a fresh read. The status is
/// the rollout's memory, and every decision is written back whole, so deciding on an older one
/// would undo progress: after an API server restart, with the watch still backing off, each
/// reconcile re-applied the analysis counters of before the outage until the deadline passed.
pub(super) async fn newest_runtime(
    ctx: &Context,
    ar: Arc<AurenRuntime>,
) -> Result<Arc<AurenRuntime>, Error> {
    let newest = {
        let newest = ctx.newest.lock().ok();
        ar.uid().and_then(|uid| newest?.get(&uid).cloned())
    };
    if !cache_is_behind(&ar, newest.as_ref()) {
        return Ok(ar);
    }
    let ns = ar.namespace().unwrap_or_default();
    let read = Api::<AurenRuntime>::namespaced(ctx.client.clone(), &ns)
        .get(&ar.name_any())
        .await
        .map_err(|source| Error::ReadFailed {
            what: "the AurenRuntime (the cache lags)",
            source,
        })?;
    tracing::debug!(name = %ar.name_any(), namespace = %ns, "cache behind our own write: read afresh");
    ctx.remember_newest(&read);
    Ok(Arc::new(read))
}

/// The newest version of an AurenRuntime this replica got from the API server: its
/// resourceVersion and a digest of its status (the status itself is already in the cache).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct NewestVersion {
    pub(super) resource_version: String,
    pub(super) status_digest: u64,
}

/// A digest of a status, to tell two statuses apart without keeping a copy.
pub(super) fn status_digest(status: Option<&AurenRuntimeStatus>) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    serde_json::to_vec(&status)
        .unwrap_or_default()
        .hash(&mut hasher);
    hasher.finish()
}

/// Whether the cached `ar` is older than `newest` ([`NewestVersion`]: resourceVersion, status digest)
/// this replica saw: another version with another status. (A newer version that only changed the spec keeps
/// the status; the operator is the only writer of the status.)
pub(super) fn cache_is_behind(ar: &AurenRuntime, newest: Option<&NewestVersion>) -> bool {
    newest.is_some_and(|newest| {
        ar.resource_version().as_deref() != Some(newest.resource_version.as_str())
            && status_digest(ar.status.as_ref()) != newest.status_digest
    })
}

impl Context {
    /// Remembers `ar` as the newest version this replica got from the API server.
    pub(super) fn remember_newest(&self, ar: &AurenRuntime) {
        let (Some(uid), Some(version)) = (ar.uid(), ar.resource_version()) else {
            return;
        };
        if let Ok(mut known) = self.newest.lock() {
            let newest = NewestVersion {
                resource_version: version,
                status_digest: status_digest(ar.status.as_ref()),
            };
            known.insert(uid, newest);
        }
    }
}
