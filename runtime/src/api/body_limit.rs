//! Bodies over a route's limit get their 413, not a dropped connection.
//!
//! Refused by its `Content-Length` before a byte of it is read, an oversized body leaves the
//! sender still writing when the server closes the connection. The kernel then answers the
//! unread bytes with a reset, which often destroys the 413 before the sender reads it: the
//! vendor sees a network failure and retries the same body forever. So a body that is over the
//! limit by at most [`READ_AWAY`] is read and thrown away (for at most [`READ_AWAY_TIME`])
//! before the answer; a larger one gets the 413 at once with `Connection: close`.
//!
//! [`limited`] is the one place a route group gets its limit: the extractors' limit
//! (`DefaultBodyLimit`, which still refuses a chunked body without a length) and this check.

use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{HeaderValue, header};
use axum::middleware::{Next, from_fn_with_state};
use axum::response::{IntoResponse, Response};
use futures::StreamExt;

use super::error::ApiError;

/// How far over its limit a body may be and still be read away before the 413.
pub const READ_AWAY: usize = 16 * 1024 * 1024;

/// The longest a refused body is read for.
pub const READ_AWAY_TIME: Duration = Duration::from_secs(10);

/// `routes` taking bodies of at most `limit` bytes.
pub fn limited<S>(routes: Router<S>, limit: usize) -> Router<S>
where
    S: Clone + Send + Sync + 'static,
{
    routes
        .layer(DefaultBodyLimit::max(limit))
        .layer(from_fn_with_state(limit, refuse_oversized))
}

/// Answers 413 to a body whose declared length is over `limit`.
async fn refuse_oversized(State(limit): State<usize>, request: Request, next: Next) -> Response {
    match declared_length(&request) {
        Some(length) if length > limit => refuse(limit, length, request.into_body()).await,
        _ => next.run(request).await,
    }
}

fn declared_length(request: &Request) -> Option<usize> {
    let value = request.headers().get(header::CONTENT_LENGTH)?;
    value.to_str().ok()?.parse().ok()
}

async fn refuse(limit: usize, length: usize, body: Body) -> Response {
    let mut response = ApiError::TooLarge(u64::try_from(limit).unwrap_or(u64::MAX)).into_response();
    if length - limit <= READ_AWAY {
        let _ = tokio::time::timeout(READ_AWAY_TIME, read_away(body)).await;
    } else {
        response
            .headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    response
}

/// Reads `body` to its end (or its first error) and drops what it reads.
async fn read_away(body: Body) {
    let mut stream = body.into_data_stream();
    while let Some(Ok(_)) = stream.next().await {}
}
