//! Outbound notifications, the pure part: where a [`Notice`] goes, its body in each format,
//! its deterministic id and the signature of the body. The controller's notifier sends them.
//!
//! Bodies carry only what the status already shows (phase, reason, message, release hashes and
//! images); the Secret's URL and key never enter a body.

use serde_json::json;
use sha2::{Digest, Sha256};

use crate::api::{NotificationFormat, NotificationsSpec, RevisionRef};
use crate::rollout::Notice;

pub use auren_contract::headers::{SIGNATURE, TIMESTAMP};

pub mod receivers;

/// Key of the notification Secret holding the receiver's URL.
pub const URL_KEY: &str = "url";
/// Key of the notification Secret holding the HMAC-SHA256 signing key (optional).
pub const HMAC_KEY: &str = "hmacKey";
/// Content type of a CloudEvents 1.0 structured-mode JSON body.
pub const CLOUDEVENTS_CONTENT_TYPE: &str = "application/cloudevents+json";
const JSON_CONTENT_TYPE: &str = "application/json";

/// The AurenRuntime a notice is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subject {
    pub namespace: String,
    pub name: String,
    pub uid: String,
}

/// Where a notice goes: a Secret (URL and key) and the body format.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Destination {
    pub namespace: String,
    pub secret: String,
    pub format: NotificationFormat,
}

/// The AurenRuntime's own `spec.notifications`, else the operator's default, else nowhere.
pub fn destination(
    namespace: &str,
    spec: Option<&NotificationsSpec>,
    default: Option<&Destination>,
) -> Option<Destination> {
    match spec {
        Some(spec) => Some(Destination {
            namespace: namespace.to_owned(),
            secret: spec.secret_ref.name.clone(),
            format: spec.format,
        }),
        None => default.cloned(),
    }
}

/// The same for every delivery of one transition (retries, a second operator replica), and
/// different for any other: receivers drop duplicates by it.
pub fn id(subject: &Subject, notice: &Notice) -> String {
    let release = notice.release.as_ref().map_or("", |r| r.hash.as_str());
    let key = format!(
        "{}/{}/{}|{}|{}|{}|{}|{}",
        subject.namespace,
        subject.name,
        subject.uid,
        notice.kind.as_str(),
        notice.phase.as_str(),
        notice.reason,
        release,
        notice.at.0.as_millisecond(),
    );
    hex::encode(&Sha256::digest(key.as_bytes())[..16])
}

/// The body of `notice` in `format`, and its content type.
pub fn body(
    format: NotificationFormat,
    subject: &Subject,
    notice: &Notice,
) -> (&'static str, Vec<u8>) {
    let value = match format {
        NotificationFormat::CloudEvents => cloud_event(subject, notice),
        NotificationFormat::Slack => json!({ "text": slack_text(subject, notice) }),
    };
    let content_type = match format {
        NotificationFormat::CloudEvents => CLOUDEVENTS_CONTENT_TYPE,
        NotificationFormat::Slack => JSON_CONTENT_TYPE,
    };
    (content_type, value.to_string().into_bytes())
}

fn cloud_event(subject: &Subject, notice: &Notice) -> serde_json::Value {
    json!({
        "specversion": "1.0",
        "id": id(subject, notice),
        "source": format!(
            "/apis/auren.io/v1alpha1/namespaces/{}/aurenruntimes/{}",
            subject.namespace, subject.name
        ),
        "type": notice.kind.event_type(),
        "subject": notice.release.as_ref().map(|r| r.hash.clone()),
        "time": notice.at.0.to_string(),
        "datacontenttype": JSON_CONTENT_TYPE,
        "data": {
            "namespace": subject.namespace,
            "name": subject.name,
            "kind": notice.kind.as_str(),
            "phase": notice.phase.as_str(),
            "previousPhase": notice.previous_phase.map(|p| p.as_str()),
            "reason": notice.reason,
            "message": notice.message,
            "release": notice.release.as_ref().map(revision),
            "stable": notice.stable.as_ref().map(revision),
        },
    })
}

fn revision(r: &RevisionRef) -> serde_json::Value {
    json!({ "hash": r.hash, "image": r.image })
}

fn slack_text(subject: &Subject, notice: &Notice) -> String {
    let from = notice.previous_phase.map_or("none", |p| p.as_str());
    let release = notice
        .release
        .as_ref()
        .map(|r| format!(" release {} ({})", r.hash, r.image))
        .unwrap_or_default();
    let text = format!(
        "AurenRuntime {}/{}: {}{release}, phase {from} -> {} ({}): {}",
        subject.namespace,
        subject.name,
        notice.kind.as_str(),
        notice.phase.as_str(),
        notice.reason,
        notice.message
    );
    slack_escaped(&text)
}

/// Slack reads `<...>` in message text as a link or mention (`<!channel>`, `<https://x|y>`)
/// and `&` as the start of an entity; a message or image name taken from the cluster must not
/// ping a channel or forge a link, so these three are escaped (`&` first).
fn slack_escaped(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// `sha256=<hex HMAC-SHA256 of "{timestamp}.{body}">`: the runtime's webhook scheme.
pub use auren_contract::signature::sign as signature;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{Phase, SecretRef};
    use crate::rollout::NoticeKind;
    use hmac::{Hmac, Mac};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
    use k8s_openapi::jiff::Timestamp;

    fn subject() -> Subject {
        Subject {
            namespace: "auren".into(),
            name: "wearables".into(),
            uid: "0f1e2d3c".into(),
        }
    }

    fn rolled_back() -> Notice {
        Notice {
            kind: NoticeKind::RolledBack,
            phase: Phase::RolledBack,
            previous_phase: Some(Phase::Analyzing),
            reason: "AnalysisFailed".into(),
            message: "release b2 rolled back: error-ratio = 0.2".into(),
            release: Some(RevisionRef {
                hash: "b2".into(),
                image: "auren/runtime:v3".into(),
            }),
            stable: Some(RevisionRef {
                hash: "a1".into(),
                image: "auren/runtime:v2".into(),
            }),
            at: Time(Timestamp::from_second(1_790_000_000).unwrap()),
        }
    }

    fn parsed(format: NotificationFormat) -> (&'static str, serde_json::Value) {
        let (content_type, bytes) = body(format, &subject(), &rolled_back());
        (content_type, serde_json::from_slice(&bytes).unwrap())
    }

    #[test]
    fn a_cloud_event_is_structured_mode_1_0() {
        let (content_type, event) = parsed(NotificationFormat::CloudEvents);
        assert_eq!(content_type, "application/cloudevents+json");
        for attribute in ["specversion", "id", "source", "type"] {
            assert!(event[attribute].is_string(), "{attribute} is required");
        }
        assert_eq!(event["specversion"], "1.0");
        assert_eq!(event["type"], "io.auren.rollout.rolledback");
        assert_eq!(
            event["source"],
            "/apis/auren.io/v1alpha1/namespaces/auren/aurenruntimes/wearables"
        );
        assert_eq!(event["time"], "2026-09-21T14:13:20Z");
        assert_eq!(event["subject"], "b2");
        assert_eq!(event["datacontenttype"], "application/json");
        assert_eq!(event["data"]["phase"], "RolledBack");
        assert_eq!(event["data"]["previousPhase"], "Analyzing");
        assert_eq!(event["data"]["reason"], "AnalysisFailed");
        assert_eq!(event["data"]["release"]["image"], "auren/runtime:v3");
        assert_eq!(event["data"]["stable"]["hash"], "a1");
        assert_eq!(event["id"], id(&subject(), &rolled_back()));
    }

    #[test]
    fn a_slack_body_is_only_text() {
        let (content_type, body) = parsed(NotificationFormat::Slack);
        assert_eq!(content_type, "application/json");
        let object = body.as_object().unwrap();
        assert_eq!(object.len(), 1, "{body}");
        let text = body["text"].as_str().unwrap();
        assert!(
            text.starts_with("AurenRuntime auren/wearables: RolledBack release b2"),
            "{text}"
        );
        assert!(
            text.contains("Analyzing -&gt; RolledBack (AnalysisFailed)"),
            "{text}"
        );
    }

    #[test]
    fn slack_text_escapes_ampersand_and_angle_brackets() {
        let mut notice = rolled_back();
        notice.message = "<!channel> see <https://evil.example|the fix> &amp; more".into();
        let (_, body) = body(NotificationFormat::Slack, &subject(), &notice);
        let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
        let text = body["text"].as_str().unwrap();
        assert!(
            text.ends_with(
                "&lt;!channel&gt; see &lt;https://evil.example|the fix&gt; &amp;amp; more"
            ),
            "{text}"
        );
        assert!(!text.contains('<') && !text.contains('>'), "{text}");
        assert!(
            text.contains("phase Analyzing -&gt; RolledBack"),
            "the arrow is escaped too: {text}"
        );
    }

    #[test]
    fn the_id_is_stable_for_one_transition_and_differs_for_another() {
        let n = rolled_back();
        assert_eq!(id(&subject(), &n), id(&subject(), &n.clone()));
        assert_eq!(id(&subject(), &n).len(), 32);
        let mut later = n.clone();
        later.at = Time(Timestamp::from_second(1_790_000_001).unwrap());
        assert_ne!(id(&subject(), &n), id(&subject(), &later));
        let mut other = subject();
        other.uid = "recreated".into();
        assert_ne!(id(&subject(), &n), id(&other, &n));
    }

    #[test]
    fn the_signature_is_hmac_sha256_over_timestamp_dot_body() {
        // RFC 4231 test case 2: key "Jefe", data "what do ya want for nothing?".
        let signed = signature(b"Jefe", 0, b"what do ya want for nothing?");
        assert_ne!(signed, "", "any key length is accepted");
        let mut mac = Hmac::<Sha256>::new_from_slice(b"Jefe").unwrap();
        mac.update(b"0.what do ya want for nothing?");
        let expected = hex::encode(mac.finalize().into_bytes());
        assert_eq!(signed, format!("sha256={expected}"));
        let rfc = signature(b"Jefe", 0, b"x");
        assert_ne!(rfc, signed, "the body is signed");
        assert_ne!(
            signature(b"Jefe", 1, b"what do ya want for nothing?"),
            signed,
            "the timestamp is signed"
        );
    }

    #[test]
    fn the_secret_never_enters_a_body() {
        for format in [NotificationFormat::CloudEvents, NotificationFormat::Slack] {
            let (_, bytes) = body(format, &subject(), &rolled_back());
            let text = String::from_utf8(bytes).unwrap();
            assert!(!text.contains("hmac") && !text.contains("http"), "{text}");
        }
    }

    #[test]
    fn the_resources_own_setting_wins_over_the_default_and_nothing_is_sent_unasked() {
        let default = Destination {
            namespace: "auren-system".into(),
            secret: "team-hooks".into(),
            format: NotificationFormat::Slack,
        };
        assert_eq!(destination("apps", None, None), None);
        assert_eq!(
            destination("apps", None, Some(&default)),
            Some(default.clone())
        );
        let own = NotificationsSpec {
            secret_ref: SecretRef {
                name: "hooks".into(),
            },
            format: NotificationFormat::CloudEvents,
        };
        assert_eq!(
            destination("apps", Some(&own), Some(&default)),
            Some(Destination {
                namespace: "apps".into(),
                secret: "hooks".into(),
                format: NotificationFormat::CloudEvents,
            })
        );
    }
}
