use super::newest::{NewestVersion, cache_is_behind, status_digest};
use super::*;
use crate::resources::fixtures;

fn version(rv: &str, phase: Phase) -> AurenRuntime {
    let mut ar = fixtures::runtime();
    ar.metadata.resource_version = Some(rv.into());
    ar.status = Some(AurenRuntimeStatus {
        phase: Some(phase),
        ..Default::default()
    });
    ar
}

#[test]
fn the_cache_is_behind_only_a_status_this_replica_saw() {
    let written = version("12", Phase::Promoting);
    let seen = NewestVersion {
        resource_version: written.resource_version().unwrap(),
        status_digest: status_digest(written.status.as_ref()),
    };
    assert!(
        !cache_is_behind(&written, None),
        "nothing seen yet: the cache is all we know"
    );
    assert!(!cache_is_behind(&written, Some(&seen)), "the same version");
    assert!(
        cache_is_behind(&version("11", Phase::Analyzing), Some(&seen)),
        "an older status"
    );
    assert!(
        !cache_is_behind(&version("13", Phase::Promoting), Some(&seen)),
        "a newer version with the status we wrote (a spec change)"
    );
}

#[test]
fn the_trigger_stream_never_waits() {
    assert_eq!(NoTriggerBackoff.take(3).max(), Some(Duration::ZERO));
}
