//! The Prometheus provider end to end against a small Prometheus-API-compatible server started
//! by the test (axum on 127.0.0.1:0): the query travels URL-encoded, the answer is parsed, and
//! every failure is a typed error, never a panic.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use auren_operator::controller::prometheus::{self, QueryError};
use axum::Router;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;

/// Queries received, in order.
type Seen = Arc<Mutex<Vec<String>>>;

/// Canned answers by query text.
async fn answer(
    State(seen): State<Seen>,
    Query(params): Query<HashMap<String, String>>,
) -> impl IntoResponse {
    let query = params.get("query").cloned().unwrap_or_default();
    seen.lock().unwrap().push(query.clone());
    let json = |body: &str| {
        (
            StatusCode::OK,
            [("content-type", "application/json")],
            body.to_owned(),
        )
    };
    match query.as_str() {
        q if q.starts_with("error_ratio{") => json(
            r#"{"status":"success","data":{"resultType":"vector","result":[
                {"metric":{"revision":"abc123"},"value":[1700000000.5,"0.0125"]}]}}"#,
        ),
        "scalar(1)" => {
            json(r#"{"status":"success","data":{"resultType":"scalar","result":[1700000000,"1"]}}"#)
        }
        "absent_series" => {
            json(r#"{"status":"success","data":{"resultType":"vector","result":[]}}"#)
        }
        "garbage" => json("this is not json"),
        "overloaded" => (
            StatusCode::SERVICE_UNAVAILABLE,
            [("content-type", "text/plain")],
            "too many queries".to_owned(),
        ),
        _ => (
            StatusCode::BAD_REQUEST,
            [("content-type", "application/json")],
            r#"{"status":"error","errorType":"bad_data","error":"1:1: parse error"}"#.to_owned(),
        ),
    }
}

async fn serve() -> (String, Seen) {
    let seen: Seen = Arc::default();
    let app = Router::new()
        .route("/api/v1/query", get(answer))
        .with_state(seen.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (format!("http://{addr}"), seen)
}

#[tokio::test]
async fn instant_queries_against_a_prometheus_compatible_server() {
    let (address, seen) = serve().await;
    let http = reqwest::Client::new();
    let query = prometheus::substitute(
        r#"error_ratio{revision="{{revision}}", status=~"5.."}"#,
        "abc123",
    );

    assert_eq!(
        prometheus::query(&http, &address, &query).await,
        Ok(Some(0.0125)),
        "the first sample of a vector"
    );
    assert_eq!(
        seen.lock().unwrap().first().map(String::as_str),
        Some(r#"error_ratio{revision="abc123", status=~"5.."}"#),
        "the query arrives intact (URL-encoded on the way)"
    );
    assert_eq!(
        prometheus::query(&http, &format!("{address}/"), "scalar(1)").await,
        Ok(Some(1.0)),
        "a scalar, with a trailing slash on the address"
    );
    assert_eq!(
        prometheus::query(&http, &address, "absent_series").await,
        Ok(None),
        "an empty vector is no data"
    );
    assert_eq!(
        prometheus::query(&http, &address, "sum(").await,
        Err(QueryError::Rejected {
            error_type: "bad_data".into(),
            error: "1:1: parse error".into(),
        })
    );
    assert!(matches!(
        prometheus::query(&http, &address, "overloaded").await,
        Err(QueryError::Status { status: 503, ref body }) if body == "too many queries"
    ));
    assert!(matches!(
        prometheus::query(&http, &address, "garbage").await,
        Err(QueryError::BadJson(_))
    ));
}

#[tokio::test]
async fn an_unreachable_prometheus_is_an_error_not_a_hang() {
    // A port that was free a moment ago: nothing listens there.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let http = reqwest::Client::new();
    let started = std::time::Instant::now();
    let result = prometheus::query(&http, &format!("http://127.0.0.1:{port}"), "up").await;
    assert!(
        matches!(result, Err(QueryError::Unreachable { .. })),
        "{result:?}"
    );
    assert!(started.elapsed() <= prometheus::QUERY_TIMEOUT + std::time::Duration::from_secs(1));
}
