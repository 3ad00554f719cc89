//! Webhook signatures: HMAC-SHA256 over `"{timestamp}.{body}"`, sent as
//! `X-Auren-Signature: sha256=<hex>` with `X-Auren-Timestamp: <unix seconds>`. The comparison
//! is constant-time and the timestamp must be within the tolerance. Within the tolerance, the
//! [`super::replay`] guard refuses the same signed request a second time.

use std::collections::BTreeMap;

use hmac::{Hmac, Mac};
use sha2::Sha256;

use super::replay::ReplayKey;
use crate::ingest::Device;

type HmacSha256 = Hmac<Sha256>;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("missing X-Auren-Timestamp or X-Auren-Signature header")]
    MissingHeaders,
    #[error("X-Auren-Timestamp must be unix seconds")]
    BadTimestamp,
    #[error("timestamp outside the allowed window of {0}s (replay?)")]
    Stale(u64),
    #[error("X-Auren-Signature must look like sha256=<64 hex digits>")]
    BadSignatureFormat,
    #[error("signature does not match")]
    Mismatch,
    #[error("no webhook secret configured for {0}")]
    NoSecret(&'static str),
}

/// Checks webhook signatures. Secrets are never printed: `Debug` shows only which devices
/// have one.
#[derive(Clone)]
pub struct SignatureVerifier {
    secrets: BTreeMap<Device, Vec<u8>>,
    tolerance_secs: u64,
    enabled: bool,
}

impl std::fmt::Debug for SignatureVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SignatureVerifier")
            .field("devices", &self.secrets.keys().collect::<Vec<_>>())
            .field("tolerance_secs", &self.tolerance_secs)
            .field("enabled", &self.enabled)
            .finish()
    }
}

impl SignatureVerifier {
    pub fn new(secrets: BTreeMap<Device, Vec<u8>>, tolerance_secs: u64, enabled: bool) -> Self {
        SignatureVerifier {
            secrets,
            tolerance_secs,
            enabled,
        }
    }

    pub fn is_enabled(&self) -> bool {
        self.enabled
    }

    pub fn tolerance_secs(&self) -> u64 {
        self.tolerance_secs
    }

    pub fn verify(
        &self,
        device: Device,
        timestamp: Option<&str>,
        signature: Option<&str>,
        body: &[u8],
        now_unix: i64,
    ) -> Result<(), AuthError> {
        self.verify_signed(device, timestamp, signature, body, now_unix)
            .map(|_| ())
    }

    /// Like [`Self::verify`], and tells which signed request it was (`None` when checks are
    /// disabled): what the replay guard remembers.
    pub fn verify_signed(
        &self,
        device: Device,
        timestamp: Option<&str>,
        signature: Option<&str>,
        body: &[u8],
        now_unix: i64,
    ) -> Result<Option<Signed>, AuthError> {
        if !self.enabled {
            return Ok(None);
        }
        let secret = self
            .secrets
            .get(&device)
            .ok_or(AuthError::NoSecret(device.as_str()))?;
        let (Some(ts), Some(sig)) = (timestamp, signature) else {
            return Err(AuthError::MissingHeaders);
        };
        let ts_value: i64 = ts.trim().parse().map_err(|_| AuthError::BadTimestamp)?;
        if now_unix.abs_diff(ts_value) > self.tolerance_secs {
            return Err(AuthError::Stale(self.tolerance_secs));
        }
        let expected = parse_signature(sig)?;
        let m = mac(secret, ts.trim(), body).ok_or(AuthError::Mismatch)?;
        m.verify_slice(&expected).map_err(|_| AuthError::Mismatch)?;
        Ok(Some(Signed {
            key: ReplayKey::new(device as u8, &expected),
            timestamp: ts_value,
        }))
    }
}

/// A request whose signature verified.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Signed {
    /// Identifies this signed request (device + MAC), for the replay guard.
    pub key: ReplayKey,
    /// The signed `X-Auren-Timestamp`.
    pub timestamp: i64,
}

/// HMAC takes keys of any length, so this is `None` only in theory.
fn mac(secret: &[u8], timestamp: &str, body: &[u8]) -> Option<HmacSha256> {
    let mut m = HmacSha256::new_from_slice(secret).ok()?;
    m.update(timestamp.as_bytes());
    m.update(b".");
    m.update(body);
    Some(m)
}

fn parse_signature(header: &str) -> Result<Vec<u8>, AuthError> {
    let hex_part = header
        .trim()
        .strip_prefix("sha256=")
        .ok_or(AuthError::BadSignatureFormat)?;
    let bytes = hex::decode(hex_part).map_err(|_| AuthError::BadSignatureFormat)?;
    if bytes.len() != 32 {
        return Err(AuthError::BadSignatureFormat);
    }
    Ok(bytes)
}

/// Signs a body the way a sender must: `sha256=<hex>` (used by tests, the demo and load tools).
pub fn sign(secret: &[u8], timestamp: i64, body: &[u8]) -> String {
    mac(secret, &timestamp.to_string(), body)
        .map(|m| format!("sha256={}", hex::encode(m.finalize().into_bytes())))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn verifier() -> SignatureVerifier {
        let mut s = BTreeMap::new();
        s.insert(Device::Oura, b"s3cret".to_vec());
        SignatureVerifier::new(s, 300, true)
    }

    #[test]
    fn only_a_fresh_matching_signature_passes() {
        let v = verifier();
        let now = 1_795_000_000;
        let body = br#"{"a":1}"#;
        let good = sign(b"s3cret", now, body);
        let ts = now.to_string();
        assert_eq!(
            v.verify(Device::Oura, Some(&ts), Some(&good), body, now),
            Ok(())
        );
        assert_eq!(
            v.verify(Device::Oura, Some(&ts), Some(&good), br#"{"a":2}"#, now),
            Err(AuthError::Mismatch)
        );
        assert_eq!(
            v.verify(
                Device::Oura,
                Some(&ts),
                Some(&sign(b"other", now, body)),
                body,
                now
            ),
            Err(AuthError::Mismatch)
        );
        assert_eq!(
            v.verify(Device::Oura, Some(&ts), Some(&good), body, now + 301),
            Err(AuthError::Stale(300))
        );
        assert_eq!(
            v.verify(Device::Oura, None, Some(&good), body, now),
            Err(AuthError::MissingHeaders)
        );
        assert_eq!(
            v.verify(Device::Oura, Some("soon"), Some(&good), body, now),
            Err(AuthError::BadTimestamp)
        );
        assert_eq!(
            v.verify(Device::Oura, Some(&ts), Some("md5=abc"), body, now),
            Err(AuthError::BadSignatureFormat)
        );
        assert_eq!(
            v.verify(Device::Whoop, Some(&ts), Some(&good), body, now),
            Err(AuthError::NoSecret("whoop"))
        );
    }

    #[test]
    fn a_verified_request_is_identified_by_device_and_signature() {
        let v = verifier();
        let now = 1_795_000_000;
        let body = br#"{"a":1}"#;
        let check = |ts: i64, body: &[u8]| {
            let sig = sign(b"s3cret", ts, body);
            v.verify_signed(Device::Oura, Some(&ts.to_string()), Some(&sig), body, now)
                .unwrap()
                .unwrap()
        };
        let first = check(now, body);
        assert_eq!(first.timestamp, now);
        assert_eq!(check(now, body), first, "the same request, the same key");
        assert_ne!(
            check(now - 1, body).key,
            first.key,
            "re-signed later: a new request"
        );
        assert_ne!(check(now, br#"{"a":2}"#).key, first.key);
        let off = SignatureVerifier::new(BTreeMap::new(), 300, false);
        assert_eq!(
            off.verify_signed(Device::Oura, None, None, b"", 0),
            Ok(None)
        );
    }

    #[test]
    fn disabled_only_by_explicit_setting_and_debug_hides_secrets() {
        let off = SignatureVerifier::new(BTreeMap::new(), 300, false);
        assert_eq!(off.verify(Device::Oura, None, None, b"", 0), Ok(()));
        assert!(!format!("{:?}", verifier()).contains("s3cret"));
    }
}
