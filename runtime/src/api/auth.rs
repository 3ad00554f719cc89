//! Webhook signatures: HMAC-SHA256 over `"{timestamp}.{body}"`, sent as
//! `X-Auren-Signature: sha256=<hex>` with `X-Auren-Timestamp: <unix seconds>`. The comparison
//! is constant-time and the timestamp must be within the tolerance. Within the tolerance, the
//! [`super::replay`] guard refuses the same signed request a second time.

use std::collections::BTreeMap;

use auren_contract::signature::mac;
use hmac::Mac;

use super::replay::ReplayKey;
use crate::ingest::{Device, SignedOrigin};

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
    /// disabled): what the replay guard remembers and what names the request's events.
    ///
    /// A device without a secret goes through the same steps as one with a secret (a MAC
    /// under a stand-in key), so it is refused at the same point and in about the same time
    /// as a wrong signature; [`AuthError::answer`] then tells both apart from nothing.
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
        let (Some(ts), Some(sig)) = (timestamp, signature) else {
            return Err(AuthError::MissingHeaders);
        };
        let ts_value: i64 = ts.trim().parse().map_err(|_| AuthError::BadTimestamp)?;
        if now_unix.abs_diff(ts_value) > self.tolerance_secs {
            return Err(AuthError::Stale(self.tolerance_secs));
        }
        let expected = parse_signature(sig)?;
        let secret = self.secrets.get(&device);
        let key = secret.map_or(NO_SECRET_STAND_IN, Vec::as_slice);
        let m = mac(key, ts.trim(), body).ok_or(AuthError::Mismatch)?;
        let matches = m.verify_slice(&expected).is_ok();
        match (secret, matches) {
            (None, _) => Err(AuthError::NoSecret(device.as_str())),
            (Some(_), false) => Err(AuthError::Mismatch),
            (Some(_), true) => Ok(Some(Signed::new(device, ts_value, &expected))),
        }
    }
}

/// The key a device without a secret is checked with; the outcome is thrown away.
const NO_SECRET_STAND_IN: &[u8] = b"auren: no secret configured for this device";

impl AuthError {
    /// What the sender is told. A device without a secret reads as a wrong signature, so
    /// nobody can find out which devices are configured.
    pub fn answer(&self) -> String {
        match self {
            AuthError::NoSecret(_) => AuthError::Mismatch.to_string(),
            other => other.to_string(),
        }
    }
}

/// A request whose signature verified.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Signed {
    /// Identifies this signed request (device + MAC), for the replay guard.
    pub key: ReplayKey,
    /// The signed `X-Auren-Timestamp`.
    pub timestamp: i64,
    /// The same request as the name of its events.
    pub origin: SignedOrigin,
}

impl Signed {
    fn new(device: Device, timestamp: i64, mac: &[u8; 32]) -> Self {
        Signed {
            key: ReplayKey::new(device as u8, mac),
            timestamp,
            origin: SignedOrigin {
                device,
                timestamp,
                mac: *mac,
            },
        }
    }
}

/// `sha256=<64 hex digits>`; the algorithm name and the hex digits in either case.
fn parse_signature(header: &str) -> Result<[u8; 32], AuthError> {
    let (algorithm, hex_part) = header
        .trim()
        .split_once('=')
        .ok_or(AuthError::BadSignatureFormat)?;
    if !algorithm.eq_ignore_ascii_case("sha256") {
        return Err(AuthError::BadSignatureFormat);
    }
    let mut bytes = [0u8; 32];
    hex::decode_to_slice(hex_part, &mut bytes).map_err(|_| AuthError::BadSignatureFormat)?;
    Ok(bytes)
}

/// Signs a body the way a sender must: `sha256=<hex>` (used by tests, the demo and load tools).
pub use auren_contract::signature::sign;

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
    fn a_device_without_a_secret_is_answered_like_a_wrong_signature() {
        let v = verifier();
        let now = 1_795_000_000;
        let body = br#"{"a":1}"#;
        let ts = now.to_string();
        let sig = sign(b"s3cret", now, body);
        let unknown = v
            .verify(Device::Whoop, Some(&ts), Some(&sig), body, now)
            .unwrap_err();
        let wrong = v
            .verify(
                Device::Oura,
                Some(&ts),
                Some(&sign(b"x", now, body)),
                body,
                now,
            )
            .unwrap_err();
        assert_eq!(unknown, AuthError::NoSecret("whoop"), "the log may say why");
        assert_eq!(unknown.answer(), wrong.answer(), "the sender may not");
        // Refused at the same step as a configured device: malformed before missing secret.
        assert_eq!(
            v.verify(Device::Whoop, None, None, body, now),
            Err(AuthError::MissingHeaders)
        );
        assert_eq!(
            v.verify(Device::Whoop, Some(&ts), Some("sha1=00"), body, now),
            Err(AuthError::BadSignatureFormat)
        );
    }

    #[test]
    fn the_algorithm_name_and_hex_digits_match_in_any_case() {
        let v = verifier();
        let now = 1_795_000_000;
        let body = br#"{"a":1}"#;
        let sig = sign(b"s3cret", now, body);
        let upper = format!("SHA256={}", sig["sha256=".len()..].to_ascii_uppercase());
        assert_eq!(
            v.verify(
                Device::Oura,
                Some(&now.to_string()),
                Some(&upper),
                body,
                now
            ),
            Ok(())
        );
    }

    #[test]
    fn disabled_only_by_explicit_setting_and_debug_hides_secrets() {
        let off = SignatureVerifier::new(BTreeMap::new(), 300, false);
        assert_eq!(off.verify(Device::Oura, None, None, b"", 0), Ok(()));
        assert!(!format!("{:?}", verifier()).contains("s3cret"));
    }
}
