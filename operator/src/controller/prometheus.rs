//! The Prometheus provider: checks with `metric: prometheus` run an instant query
//! (`GET <address>/api/v1/query?query=…`) and take its first sample. `{{revision}}` in the
//! query is replaced by the revision measured (the candidate; the stable release for a
//! baseline). A query answering an empty vector is "no data"; every other failure is a typed
//! [`QueryError`], which the controller also treats as no data (the check's no-data policy
//! decides) after logging it.

use std::time::Duration;

use serde::Deserialize;
use serde_json::Value;

/// How long one query may take before it counts as failed.
pub const QUERY_TIMEOUT: Duration = Duration::from_secs(5);
/// Placeholder replaced by the revision hash.
pub const REVISION_PLACEHOLDER: &str = "{{revision}}";
/// Bytes of an error body kept in the error.
const BODY_EXCERPT: usize = 200;

/// Why a query gave no value.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum QueryError {
    #[error("Prometheus at {address} unreachable: {detail}")]
    Unreachable { address: String, detail: String },
    #[error("Prometheus answered {error_type}: {error}")]
    Rejected { error_type: String, error: String },
    #[error("Prometheus answered HTTP {status}: {body}")]
    Status { status: u16, body: String },
    #[error("the answer is not Prometheus API JSON: {0}")]
    BadJson(String),
    #[error("result type {0} is not supported (use an instant query returning a vector or scalar)")]
    UnsupportedResult(String),
    #[error("sample value {0:?} is not a number")]
    BadValue(String),
}

/// The query with `{{revision}}` replaced.
pub fn substitute(query: &str, revision: &str) -> String {
    query.replace(REVISION_PLACEHOLDER, revision)
}

/// The URL of the instant query endpoint under `address` (trailing slashes ignored).
pub fn endpoint(address: &str) -> String {
    format!("{}/api/v1/query", address.trim_end_matches('/'))
}

/// Runs one instant query; `Ok(None)` when it returns no sample (or a NaN/infinite one).
pub async fn query(
    http: &reqwest::Client,
    address: &str,
    query: &str,
) -> Result<Option<f64>, QueryError> {
    let unreachable = |e: reqwest::Error| QueryError::Unreachable {
        address: address.to_owned(),
        detail: e.to_string(),
    };
    let response = http
        .get(endpoint(address))
        .query(&[("query", query)])
        .timeout(QUERY_TIMEOUT)
        .send()
        .await
        .map_err(unreachable)?;
    let status = response.status().as_u16();
    let body = response.bytes().await.map_err(unreachable)?;
    parse_response(status, &body)
}

/// The Prometheus HTTP API envelope.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Envelope {
    status: String,
    #[serde(default)]
    data: Option<Data>,
    #[serde(default)]
    error_type: Option<String>,
    #[serde(default)]
    error: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Data {
    result_type: String,
    result: Value,
}

/// Reads an answer of `/api/v1/query`: the first sample of a vector or the scalar.
pub fn parse_response(status: u16, body: &[u8]) -> Result<Option<f64>, QueryError> {
    let envelope = match serde_json::from_slice::<Envelope>(body) {
        Ok(envelope) => envelope,
        Err(_) if !(200..300).contains(&status) => {
            return Err(QueryError::Status {
                status,
                body: excerpt(body),
            });
        }
        Err(e) => return Err(QueryError::BadJson(e.to_string())),
    };
    if envelope.status != "success" {
        return Err(QueryError::Rejected {
            error_type: envelope.error_type.unwrap_or_else(|| "error".into()),
            error: envelope.error.unwrap_or_default(),
        });
    }
    if !(200..300).contains(&status) {
        return Err(QueryError::Status {
            status,
            body: excerpt(body),
        });
    }
    let data = envelope
        .data
        .ok_or_else(|| QueryError::BadJson("success without data".into()))?;
    let sample = match data.result_type.as_str() {
        "vector" => first_vector_sample(&data.result)?,
        "scalar" => Some(&data.result),
        other => return Err(QueryError::UnsupportedResult(other.to_owned())),
    };
    sample.map(sample_value).transpose().map(Option::flatten)
}

/// The `[timestamp, "value"]` pair of the first series of a vector, if any.
fn first_vector_sample(result: &Value) -> Result<Option<&Value>, QueryError> {
    let series = result
        .as_array()
        .ok_or_else(|| QueryError::BadJson("vector result is not an array".into()))?;
    let Some(first) = series.first() else {
        return Ok(None);
    };
    first
        .get("value")
        .map(Some)
        .ok_or_else(|| QueryError::BadJson("vector sample without value".into()))
}

/// The value of a `[timestamp, "value"]` pair; NaN and infinities are no data.
fn sample_value(pair: &Value) -> Result<Option<f64>, QueryError> {
    let text = pair
        .as_array()
        .filter(|p| p.len() == 2)
        .and_then(|p| p.get(1))
        .and_then(Value::as_str)
        .ok_or_else(|| QueryError::BadJson(format!("sample {pair} is not [time, \"value\"]")))?;
    let value: f64 = text
        .parse()
        .map_err(|_| QueryError::BadValue(text.to_owned()))?;
    Ok(value.is_finite().then_some(value))
}

fn excerpt(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    text.chars().take(BODY_EXCERPT).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vector(samples: &str) -> String {
        format!(r#"{{"status":"success","data":{{"resultType":"vector","result":[{samples}]}}}}"#)
    }

    #[test]
    fn parses_vectors_scalars_and_empty_results() {
        let series =
            |v: &str| format!(r#"{{"metric":{{"job":"api"}},"value":[1700000000.123,"{v}"]}}"#);
        let two = format!("{},{}", series("0.25"), series("9"));
        let cases: Vec<(&str, String, Option<f64>)> = vec![
            ("one sample", vector(&series("0.031")), Some(0.031)),
            ("first of two", vector(&two), Some(0.25)),
            ("empty vector", vector(""), None),
            (
                "scalar",
                r#"{"status":"success","data":{"resultType":"scalar","result":[1700000000,"42"]}}"#
                    .into(),
                Some(42.0),
            ),
            ("NaN is no data", vector(&series("NaN")), None),
            ("+Inf is no data", vector(&series("+Inf")), None),
            ("exponent", vector(&series("1e-3")), Some(0.001)),
            (
                "warnings are fine",
                r#"{"status":"success","warnings":["w"],"data":{"resultType":"vector","result":[]}}"#
                    .into(),
                None,
            ),
        ];
        for (name, body, expected) in cases {
            assert_eq!(parse_response(200, body.as_bytes()), Ok(expected), "{name}");
        }
    }

    #[test]
    fn every_failure_is_a_typed_error() {
        let rejected =
            r#"{"status":"error","errorType":"bad_data","error":"parse error at char 4"}"#;
        assert_eq!(
            parse_response(400, rejected.as_bytes()),
            Err(QueryError::Rejected {
                error_type: "bad_data".into(),
                error: "parse error at char 4".into(),
            })
        );
        assert!(matches!(
            parse_response(503, b"<html>down</html>"),
            Err(QueryError::Status { status: 503, .. })
        ));
        assert!(matches!(
            parse_response(200, b"{not json"),
            Err(QueryError::BadJson(_))
        ));
        assert!(matches!(
            parse_response(200, br#"{"status":"success"}"#),
            Err(QueryError::BadJson(_))
        ));
        let matrix = r#"{"status":"success","data":{"resultType":"matrix","result":[]}}"#;
        assert_eq!(
            parse_response(200, matrix.as_bytes()),
            Err(QueryError::UnsupportedResult("matrix".into()))
        );
        let text = vector(r#"{"metric":{},"value":[1,"abc"]}"#);
        assert_eq!(
            parse_response(200, text.as_bytes()),
            Err(QueryError::BadValue("abc".into()))
        );
        let no_value = vector(r#"{"metric":{}}"#);
        assert!(matches!(
            parse_response(200, no_value.as_bytes()),
            Err(QueryError::BadJson(_))
        ));
        let number = vector(r#"{"metric":{},"value":[1,2.5]}"#);
        assert!(matches!(
            parse_response(200, number.as_bytes()),
            Err(QueryError::BadJson(_))
        ));
    }

    #[test]
    fn revision_and_endpoint() {
        assert_eq!(
            substitute(
                r#"sum(rate(x{rev="{{revision}}",s=~"5.."}[1m])) / sum(rate(x{rev="{{revision}}"}[1m]))"#,
                "abc123"
            ),
            r#"sum(rate(x{rev="abc123",s=~"5.."}[1m])) / sum(rate(x{rev="abc123"}[1m]))"#
        );
        assert_eq!(substitute("up", "abc"), "up");
        assert_eq!(
            endpoint("http://prom:9090/"),
            "http://prom:9090/api/v1/query"
        );
        assert_eq!(
            endpoint("http://prom:9090/prefix"),
            "http://prom:9090/prefix/api/v1/query"
        );
    }
}
