//! The admin token the runtime pods check on their admin API: read from its Secret once and
//! cached; the operator-managed Secret is created when missing; forgotten when a pod refuses it.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, PostParams};
use kube::{Resource, ResourceExt};

use super::{Context, Error, TOKEN_LEN};
use crate::api::AurenRuntime;
use crate::resources::{self, instance_labels};

impl Context {
    fn token_key(ar: &AurenRuntime) -> String {
        let reference = resources::admin_token_ref(ar);
        let ns = ar.namespace().unwrap_or_default();
        format!("{ns}/{}/{}", reference.name, reference.key)
    }

    fn cached_token(&self, ar: &AurenRuntime) -> Option<String> {
        self.tokens.lock().ok()?.get(&Self::token_key(ar)).cloned()
    }

    fn remember_token(&self, ar: &AurenRuntime, token: &str) {
        if let Ok(mut tokens) = self.tokens.lock() {
            tokens.insert(Self::token_key(ar), token.to_owned());
        }
    }

    /// A pod refused the token (the Secret changed): read it again next time.
    pub(super) fn forget_token(&self, ar: &AurenRuntime) {
        if let Ok(mut tokens) = self.tokens.lock() {
            tokens.remove(&Self::token_key(ar));
        }
    }
}

/// The admin token the runtime pods use (cached after the first read); the operator-managed
/// Secret is created when missing.
pub(super) async fn admin_token(
    ctx: &Context,
    ar: &AurenRuntime,
    ns: &str,
) -> Result<String, Error> {
    if let Some(token) = ctx.cached_token(ar) {
        return Ok(token);
    }
    let token = read_admin_token(ctx, ar, ns).await?;
    ctx.remember_token(ar, &token);
    Ok(token)
}

async fn read_admin_token(ctx: &Context, ar: &AurenRuntime, ns: &str) -> Result<String, Error> {
    let reference = resources::admin_token_ref(ar);
    let api = Api::<Secret>::namespaced(ctx.client.clone(), ns);
    let unavailable = |detail: String| Error::AdminTokenUnavailable {
        name: reference.name.clone(),
        detail,
    };
    let found = api
        .get_opt(&reference.name)
        .await
        .map_err(|e| unavailable(e.to_string()))?;
    let secret = match found {
        Some(secret) => secret,
        None if ar.spec.connections.admin_token.is_none() => {
            create_token_secret(&api, ar, &reference.name)
                .await
                .map_err(|e| unavailable(e.to_string()))?
        }
        None => return Err(unavailable("not found".into())),
    };
    let value = secret
        .data
        .as_ref()
        .and_then(|d| d.get(&reference.key))
        .ok_or_else(|| unavailable(format!("no key {}", reference.key)))?;
    String::from_utf8(value.0.clone()).map_err(|_| unavailable("the token is not UTF-8".into()))
}

async fn create_token_secret(
    api: &Api<Secret>,
    ar: &AurenRuntime,
    name: &str,
) -> Result<Secret, kube::Error> {
    use rand::distr::{Alphanumeric, SampleString};
    let token = Alphanumeric.sample_string(&mut rand::rng(), TOKEN_LEN);
    let secret = Secret {
        metadata: ObjectMeta {
            name: Some(name.to_owned()),
            labels: Some(instance_labels(ar)),
            owner_references: ar.controller_owner_ref(&()).map(|o| vec![o]),
            ..Default::default()
        },
        string_data: Some(BTreeMap::from([(
            resources::ADMIN_TOKEN_KEY.to_owned(),
            token,
        )])),
        ..Default::default()
    };
    match api.create(&PostParams::default(), &secret).await {
        // Another reconcile (or replica) created it first: use theirs.
        Err(kube::Error::Api(s)) if s.code == 409 => api.get(name).await,
        other => other,
    }
}
