//! Leader election on a `coordination.k8s.io/v1` Lease, so two replicas are safe: only the
//! holder runs the controller. The holder renews every `renew`; another replica takes the
//! lease over only once it has not been renewed for its duration. A holder that cannot renew
//! steps down before its lease could be taken over. Writes use the lease's resourceVersion,
//! so two replicas never both win the same round.

use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::Client;
use kube::api::{Api, ObjectMeta, PostParams};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// Which lease, who we are, and its timing.
#[derive(Debug, Clone)]
pub struct LeaseConfig {
    pub name: String,
    pub namespace: String,
    pub identity: String,
    /// How long a lease holds without renewal.
    pub duration: Duration,
    /// How often the holder renews (and others retry).
    pub renew: Duration,
}

/// The lease spec to write when `me` may hold the lease now; `None` while another holder's
/// lease is still valid.
pub fn claim(
    current: Option<&LeaseSpec>,
    me: &str,
    now: Timestamp,
    duration: Duration,
) -> Option<LeaseSpec> {
    let seconds = i32::try_from(duration.as_secs()).unwrap_or(i32::MAX).max(1);
    let fresh = |transitions: i32| LeaseSpec {
        holder_identity: Some(me.to_owned()),
        lease_duration_seconds: Some(seconds),
        acquire_time: Some(MicroTime(now)),
        renew_time: Some(MicroTime(now)),
        lease_transitions: Some(transitions),
        ..Default::default()
    };
    let Some(current) = current else {
        return Some(fresh(0));
    };
    let transitions = current.lease_transitions.unwrap_or(0);
    match current.holder_identity.as_deref() {
        Some(holder) if holder == me => Some(LeaseSpec {
            renew_time: Some(MicroTime(now)),
            lease_duration_seconds: Some(seconds),
            ..current.clone()
        }),
        Some(holder) if !holder.is_empty() && !expired(current, now) => None,
        _ => Some(fresh(transitions.saturating_add(1))),
    }
}

fn expired(spec: &LeaseSpec, now: Timestamp) -> bool {
    let Some(renewed) = spec.renew_time.as_ref().map(|t| t.0) else {
        return true;
    };
    let held = SignedDuration::from_secs(i64::from(spec.lease_duration_seconds.unwrap_or(0)));
    renewed.checked_add(held).is_ok_and(|until| until <= now)
}

/// Holds (or waits for) the lease until `shutdown`; `leader` says whether we hold it. On
/// shutdown a held lease is released so another replica takes over at once.
pub async fn hold(
    client: Client,
    config: LeaseConfig,
    leader: watch::Sender<bool>,
    shutdown: CancellationToken,
) {
    let api = Api::<Lease>::namespaced(client, &config.namespace);
    let mut last_renewal: Option<tokio::time::Instant> = None;
    let step_down_after = config.duration.saturating_sub(config.renew);
    loop {
        match try_claim(&api, &config).await {
            Ok(true) => last_renewal = Some(tokio::time::Instant::now()),
            Ok(false) => last_renewal = None,
            Err(e) => tracing::warn!(error = %e, lease = %config.name, "lease not renewed"),
        }
        let holding = last_renewal.is_some_and(|at| at.elapsed() < step_down_after);
        let changed = leader.send_if_modified(|was| std::mem::replace(was, holding) != holding);
        if changed {
            tracing::info!(leader = holding, identity = %config.identity, "leadership changed");
        }
        tokio::select! {
            () = shutdown.cancelled() => break,
            () = tokio::time::sleep(config.renew) => {}
        }
    }
    if *leader.borrow() {
        leader.send_replace(false);
        if let Err(e) = release(&api, &config).await {
            tracing::warn!(error = %e, "lease not released");
        }
    }
}

async fn try_claim(api: &Api<Lease>, config: &LeaseConfig) -> Result<bool, kube::Error> {
    let current = api.get_opt(&config.name).await?;
    let spec = current.as_ref().and_then(|l| l.spec.as_ref());
    let Some(next) = claim(spec, &config.identity, Timestamp::now(), config.duration) else {
        return Ok(false);
    };
    let result = match current {
        Some(mut lease) => {
            lease.spec = Some(next);
            api.replace(&config.name, &PostParams::default(), &lease)
                .await
        }
        None => {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(config.name.clone()),
                    ..Default::default()
                },
                spec: Some(next),
            };
            api.create(&PostParams::default(), &lease).await
        }
    };
    match result {
        Ok(_) => Ok(true),
        // Someone else wrote the lease in between: not ours this round.
        Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
        Err(e) => Err(e),
    }
}

async fn release(api: &Api<Lease>, config: &LeaseConfig) -> Result<(), kube::Error> {
    let Some(mut lease) = api.get_opt(&config.name).await? else {
        return Ok(());
    };
    let Some(spec) = lease.spec.as_mut() else {
        return Ok(());
    };
    if spec.holder_identity.as_deref() != Some(config.identity.as_str()) {
        return Ok(());
    }
    spec.holder_identity = None;
    spec.renew_time = None;
    api.replace(&config.name, &PostParams::default(), &lease)
        .await
        .map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEN: Duration = Duration::from_secs(10);

    fn at(secs: i64) -> Timestamp {
        Timestamp::from_second(secs).unwrap()
    }

    #[test]
    fn claims_only_free_own_or_expired_leases() {
        let mine = claim(None, "a", at(100), TEN).unwrap();
        assert_eq!(mine.holder_identity.as_deref(), Some("a"));
        assert_eq!(mine.lease_transitions, Some(0));

        assert!(
            claim(Some(&mine), "b", at(105), TEN).is_none(),
            "still valid"
        );
        let renewed = claim(Some(&mine), "a", at(105), TEN).unwrap();
        assert_eq!(renewed.renew_time, Some(MicroTime(at(105))));
        assert_eq!(renewed.acquire_time, Some(MicroTime(at(100))));

        let taken = claim(Some(&renewed), "b", at(115), TEN).unwrap();
        assert_eq!(taken.holder_identity.as_deref(), Some("b"));
        assert_eq!(taken.lease_transitions, Some(1));

        let released = LeaseSpec {
            holder_identity: None,
            ..taken
        };
        let again = claim(Some(&released), "a", at(116), TEN).unwrap();
        assert_eq!(again.holder_identity.as_deref(), Some("a"));
        assert_eq!(again.lease_transitions, Some(2));
    }
}
