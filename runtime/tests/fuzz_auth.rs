#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test-only code
//! Property-based fuzzing of webhook signature checks (`X-Auren-Timestamp`,
//! `X-Auren-Signature`): `SignatureVerifier::verify` and `sign`.

use std::collections::BTreeMap;

use auren_runtime::api::auth::{AuthError, SignatureVerifier, sign};
use auren_runtime::ingest::Device;
use hmac::{Hmac, Mac};
use proptest::prelude::*;
use sha2::Sha256;

/// The shared fuzzing settings (`auren_testkit::fuzz_config`), failures kept in
/// `proptest-regressions/fuzz_auth.txt`.
fn config(cases: u32) -> ProptestConfig {
    auren_testkit::fuzz_config(cases, "proptest-regressions/fuzz_auth.txt")
}

const TOLERANCE: u64 = 300;
const NOW: i64 = 1_795_000_000;

fn device() -> impl Strategy<Value = Device> {
    prop::sample::select(Device::ALL.to_vec())
}

fn secret() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(any::<u8>(), 1..80)
}

fn verifier(device: Device, secret: &[u8]) -> SignatureVerifier {
    let mut secrets = BTreeMap::new();
    secrets.insert(device, secret.to_vec());
    SignatureVerifier::new(secrets, TOLERANCE, true)
}

/// The HMAC the sender must have used, computed independently of `auth.rs`.
fn expected_mac(secret: &[u8], timestamp: &str, body: &[u8]) -> Vec<u8> {
    let mut m = Hmac::<Sha256>::new_from_slice(secret).unwrap();
    m.update(timestamp.as_bytes());
    m.update(b".");
    m.update(body);
    m.finalize().into_bytes().to_vec()
}

/// Header text as it can reach the handler: anything printable, near-misses of the real
/// formats, and unicode.
fn header_text() -> impl Strategy<Value = String> {
    prop_oneof![
        ".{0,80}",
        "[ \t]*[+-]?[0-9]{0,25}[ \t]*",
        "[ \t]*(sha256=|SHA256=|sha256:|md5=|)[0-9a-fA-F]{0,70}[ \t]*",
        "sha256=[0-9a-f]{64}",
        Just(String::new()),
    ]
}

/// One byte of `text` replaced by a different byte; `None` when that is no longer UTF-8 (the
/// HTTP layer then sees no usable header at all).
fn change_one_byte(text: &str, at: prop::sample::Index, to: u8) -> Option<String> {
    let mut bytes = text.as_bytes().to_vec();
    let i = at.index(bytes.len());
    bytes[i] = if bytes[i] == to {
        to.wrapping_add(1)
    } else {
        to
    };
    String::from_utf8(bytes).ok()
}

proptest! {
    #![proptest_config(config(512))]

    /// Arbitrary timestamp and signature headers (present or not) never panic, and `verify`
    /// accepts exactly when the timestamp is in the window and the signature is the HMAC of
    /// `"{timestamp}.{body}"` under the device's secret (`sha256=` and the hex digits in any
    /// case). Half the cases carry the real signature for their timestamp, so acceptance is
    /// exercised as much as refusal.
    #[test]
    fn headers_pass_exactly_when_they_carry_the_mac(
        device in device(), secret in secret(),
        ts in prop::option::of(prop_oneof![
            header_text(),
            (-(TOLERANCE as i64) - 5..=(TOLERANCE as i64) + 5).prop_map(|skew| (NOW + skew).to_string()),
        ]),
        sig in prop::option::of(header_text()),
        sign_it in any::<bool>(), upper in any::<bool>(),
        body in prop::collection::vec(any::<u8>(), 0..64),
        now in prop_oneof![4 => Just(NOW), 1 => any::<i64>()],
    ) {
        let real = ts.as_deref().and_then(|t| t.trim().parse::<i64>().ok())
            .filter(|_| sign_it)
            .map(|t| sign(&secret, t, &body))
            .map(|s| if upper { s.to_ascii_uppercase() } else { s });
        let sig = real.or(sig);
        let v = verifier(device, &secret);
        let outcome = v.verify(device, ts.as_deref(), sig.as_deref(), &body, now);
        if let Err(e) = &outcome {
            prop_assert!(!e.to_string().is_empty());
        }
        let carries_the_mac = || -> Option<bool> {
            let ts = ts.as_deref()?.trim();
            let value: i64 = ts.parse().ok()?;
            let (algorithm, hex_part) = sig.as_deref()?.trim().split_once('=')?;
            let mac = hex::decode(hex_part).ok()?;
            Some(now.abs_diff(value) <= TOLERANCE
                && algorithm.eq_ignore_ascii_case("sha256")
                && mac == expected_mac(&secret, ts, &body))
        };
        prop_assert_eq!(outcome.is_ok(), carries_the_mac().unwrap_or(false),
                        "ts {:?} sig {:?} now {}: {:?}", ts, sig, now, outcome);
    }

    /// A signature made with the right secret over the body verifies for any timestamp within
    /// the window (either side of now, bounds included), also with the whitespace a proxy may
    /// add around header values.
    #[test]
    fn the_right_signature_verifies(
        device in device(), secret in secret(),
        body in prop::collection::vec(any::<u8>(), 0..512),
        skew in -(TOLERANCE as i64)..=(TOLERANCE as i64),
        pad in "[ \t]{0,2}",
    ) {
        let ts = NOW + skew;
        let sig = sign(&secret, ts, &body);
        let mac = expected_mac(&secret, &ts.to_string(), &body);
        prop_assert_eq!(&sig, &format!("sha256={}", hex::encode(mac)));
        let v = verifier(device, &secret);
        prop_assert_eq!(v.verify(device, Some(&ts.to_string()), Some(&sig), &body, NOW), Ok(()));
        let (ts_padded, sig_padded) = (format!("{pad}{ts}{pad}"), format!("{pad}{sig}{pad}"));
        prop_assert_eq!(v.verify(device, Some(&ts_padded), Some(&sig_padded), &body, NOW), Ok(()));
    }

    /// Changing any single byte of the body, the timestamp header or the signature header makes
    /// verification fail. (A case flip of a letter in the signature names the same algorithm
    /// and bytes, so it is not a change of the signature and is skipped.)
    #[test]
    fn any_single_byte_change_fails(
        device in device(), secret in secret(),
        body in prop::collection::vec(any::<u8>(), 1..256),
        skew in -(TOLERANCE as i64)..=(TOLERANCE as i64),
        at in any::<prop::sample::Index>(), to in any::<u8>(),
        which in 0..3u8,
    ) {
        let v = verifier(device, &secret);
        let ts = (NOW + skew).to_string();
        let sig = sign(&secret, NOW + skew, &body);
        match which {
            0 => {
                let mut changed = body.clone();
                let i = at.index(changed.len());
                changed[i] = if changed[i] == to { to.wrapping_add(1) } else { to };
                prop_assert_eq!(v.verify(device, Some(&ts), Some(&sig), &changed, NOW),
                                Err(AuthError::Mismatch));
            }
            1 => {
                let changed = change_one_byte(&ts, at, to);
                let outcome = v.verify(device, changed.as_deref(), Some(&sig), &body, NOW);
                prop_assert!(outcome.is_err(), "{changed:?} passed");
            }
            _ => {
                let changed = change_one_byte(&sig, at, to);
                let same_bytes = changed.as_deref().is_some_and(|c| c.eq_ignore_ascii_case(&sig));
                prop_assume!(!same_bytes);
                let outcome = v.verify(device, Some(&ts), changed.as_deref(), &body, NOW);
                prop_assert!(outcome.is_err(), "{changed:?} passed");
            }
        }
    }

    /// A timestamp outside the window fails as stale even when the signature over it is right,
    /// for any distance up to the whole i64 range (no overflow).
    #[test]
    fn timestamps_outside_the_window_are_stale(
        device in device(), secret in secret(),
        body in prop::collection::vec(any::<u8>(), 0..64),
        (now, ts) in ((TOLERANCE + 1)..=u64::MAX, any::<bool>()).prop_flat_map(|(beyond, later)| {
            // `now` leaves room for `ts = now ± beyond` inside i64.
            let room = i128::from(beyond);
            let (lo, hi) = if later {
                (i128::from(i64::MIN), i128::from(i64::MAX) - room)
            } else {
                (i128::from(i64::MIN) + room, i128::from(i64::MAX))
            };
            (i64::try_from(lo).unwrap()..=i64::try_from(hi).unwrap()).prop_map(move |now| {
                let ts = if later { i128::from(now) + room } else { i128::from(now) - room };
                (now, i64::try_from(ts).unwrap())
            })
        }),
    ) {
        let sig = sign(&secret, ts, &body);
        let v = verifier(device, &secret);
        prop_assert_eq!(v.verify(device, Some(&ts.to_string()), Some(&sig), &body, now),
                        Err(AuthError::Stale(TOLERANCE)));
    }

    /// Another device's secret, or a device without a secret, never verifies.
    #[test]
    fn only_the_devices_own_secret_verifies(
        device in device(), offset in 1usize..Device::ALL.len(), secret in secret(),
        at in any::<prop::sample::Index>(), flip in 1..=u8::MAX,
        body in prop::collection::vec(any::<u8>(), 0..64),
    ) {
        let index = Device::ALL.iter().position(|d| *d == device).unwrap();
        let other = Device::ALL[(index + offset) % Device::ALL.len()];
        // Same length, one byte different. (Appending a zero byte would not do: HMAC pads short
        // keys with zeros, so `[0]` and `[0, 0]` are the same key.)
        let mut other_secret = secret.clone();
        other_secret[at.index(secret.len())] ^= flip;
        let mut secrets = BTreeMap::new();
        secrets.insert(device, secret.clone());
        secrets.insert(other, other_secret.clone());
        let v = SignatureVerifier::new(secrets, TOLERANCE, true);
        let ts = NOW.to_string();
        let foreign = sign(&other_secret, NOW, &body);
        prop_assert_eq!(v.verify(device, Some(&ts), Some(&foreign), &body, NOW),
                        Err(AuthError::Mismatch));
        let alone = verifier(other, &other_secret);
        let own = sign(&secret, NOW, &body);
        prop_assert_eq!(alone.verify(device, Some(&ts), Some(&own), &body, NOW),
                        Err(AuthError::NoSecret(device.as_str())));
    }
}
