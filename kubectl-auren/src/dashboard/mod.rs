//! `kubectl auren dashboard`: a local web page of the AurenRuntimes of a namespace (or all),
//! kept live by one watch and pushed to the page as Server-Sent Events.
//!
//! ```text
//! view    pure: watch events → Board → BoardView (the JSON the page renders)
//! hosts   pure: which Host header a request may name (the DNS-rebinding guard)
//! server  thin: the embedded page, SSE, the controls (only with --allow-actions)
//! page/   index.html and app.js, compiled into the binary; nothing is fetched from the network
//! ```

pub mod hosts;
mod server;
pub mod view;

use std::net::SocketAddr;

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use kube::api::Api;

pub use hosts::AllowedHosts;
pub use server::Dashboard;

use auren_operator::api::AurenRuntime;

/// What can go wrong serving the dashboard or one of its requests.
#[derive(Debug, thiserror::Error)]
pub enum DashboardError {
    #[error(
        "actions are disabled: start the dashboard with --allow-actions to promote, abort or retry"
    )]
    ActionsNotAllowed,
    #[error(
        "missing header x-auren-dashboard-token: actions come from the dashboard's own page, \
         opened by the URL it printed at start (with its ?token=)"
    )]
    ForeignRequest,
    #[error("wrong dashboard token: open the page by the URL the dashboard printed at start")]
    WrongToken,
    #[error(
        "host {0:?} is not this dashboard's: open it by localhost or the address it listens on, \
         or start it with --allow-host <name>"
    )]
    ForeignHost(String),
    #[error("unknown action {0:?}: expected promote, abort or retry")]
    UnknownAction(String),
    #[error("no AurenRuntime {namespace}/{name} on this dashboard")]
    UnknownRuntime { namespace: String, name: String },
    #[error("the API server refused the action: {0}")]
    Kube(#[source] kube::Error),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("serving the dashboard failed: {0}")]
    Serve(#[source] std::io::Error),
}

impl DashboardError {
    fn name(&self) -> &'static str {
        match self {
            DashboardError::ActionsNotAllowed => "ActionsNotAllowed",
            DashboardError::ForeignRequest => "ForeignRequest",
            DashboardError::WrongToken => "WrongToken",
            DashboardError::ForeignHost(_) => "ForeignHost",
            DashboardError::UnknownAction(_) => "UnknownAction",
            DashboardError::UnknownRuntime { .. } => "UnknownRuntime",
            DashboardError::Kube(_) => "ApiServerRefused",
            DashboardError::Bind { .. } => "Bind",
            DashboardError::Serve(_) => "Serve",
        }
    }

    fn status(&self) -> StatusCode {
        match self {
            DashboardError::ActionsNotAllowed
            | DashboardError::ForeignRequest
            | DashboardError::WrongToken
            | DashboardError::ForeignHost(_) => StatusCode::FORBIDDEN,
            DashboardError::UnknownAction(_) | DashboardError::UnknownRuntime { .. } => {
                StatusCode::NOT_FOUND
            }
            DashboardError::Kube(_) => StatusCode::BAD_GATEWAY,
            DashboardError::Bind { .. } | DashboardError::Serve(_) => {
                StatusCode::INTERNAL_SERVER_ERROR
            }
        }
    }
}

impl IntoResponse for DashboardError {
    fn into_response(self) -> Response {
        let body = serde_json::json!({"error": self.name(), "detail": self.to_string()});
        (self.status(), Json(body)).into_response()
    }
}

/// How the dashboard is served.
#[derive(Debug, Clone)]
pub struct Settings {
    pub addr: SocketAddr,
    /// `None`: every namespace.
    pub namespace: Option<String>,
    pub allow_actions: bool,
    /// Host names the page may be opened by besides loopback and `addr` (`--allow-host`).
    pub allowed_hosts: Vec<String>,
}

/// Listens on `settings.addr`, prints the URL, follows the AurenRuntimes and serves until
/// Ctrl-C.
pub async fn serve(client: kube::Client, settings: Settings) -> Result<(), DashboardError> {
    let (api, scope) = match &settings.namespace {
        Some(ns) => (
            Api::<AurenRuntime>::namespaced(client.clone(), ns),
            format!("namespace {ns}"),
        ),
        None => (
            Api::<AurenRuntime>::all(client.clone()),
            "all namespaces".to_owned(),
        ),
    };
    let actions = settings.allow_actions.then_some(client);
    let listener = tokio::net::TcpListener::bind(settings.addr)
        .await
        .map_err(|source| DashboardError::Bind {
            addr: settings.addr,
            source,
        })?;
    let addr = listener.local_addr().map_err(DashboardError::Serve)?;
    let hosts = AllowedHosts::new(addr.ip(), &settings.allowed_hosts);
    let dashboard = Dashboard::new(&scope, actions).answering(hosts);
    let mode = if settings.allow_actions {
        "actions allowed"
    } else {
        "read-only"
    };
    // Printed once: whoever reads this line (the user's terminal) holds the actions.
    println!(
        "AUREN dashboard ({scope}, {mode}): http://{addr}/?token={}",
        dashboard.token()
    );
    tokio::spawn(dashboard.clone().follow(api));
    axum::serve(listener, dashboard.router())
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await
        .map_err(DashboardError::Serve)
}

#[cfg(test)]
mod tests {
    use super::server::TOKEN_HEADER;
    use super::*;
    use axum::body::Body;
    use axum::http::Request;
    use http_body_util::BodyExt;
    use kube::runtime::watcher;
    use serde_json::{Value, json};
    use tower::ServiceExt;

    fn runtime(name: &str, phase: &str) -> AurenRuntime {
        serde_json::from_value(json!({
            "apiVersion": "auren.io/v1alpha1", "kind": "AurenRuntime",
            "metadata": {"name": name, "namespace": "team"},
            "spec": {"image": "auren/runtime:v1"},
            "status": {"phase": phase},
        }))
        .unwrap()
    }

    /// A client that is never reached: every request here is refused before any API call.
    fn unreachable_client() -> kube::Client {
        let config = kube::Config::new("http://127.0.0.1:9".parse().unwrap());
        kube::Client::try_from(config).unwrap()
    }

    async fn dashboard(actions: bool) -> Dashboard {
        let d = Dashboard::new("namespace team", actions.then(unreachable_client));
        d.apply(watcher::Event::Apply(runtime("wearables", "Healthy")))
            .await;
        d
    }

    /// A GET as the browser sends it to the dashboard on localhost.
    fn local_get(uri: &str) -> Request<Body> {
        Request::get(uri)
            .header("host", "localhost:8474")
            .body(Body::empty())
            .unwrap()
    }

    #[tokio::test]
    async fn a_request_for_another_host_is_refused() {
        let d = dashboard(true).await;
        for host in [Some("evil.example:8474"), None] {
            let mut request = Request::get("/api/runtimes");
            if let Some(host) = host {
                request = request.header("host", host);
            }
            let response = (d.clone().router())
                .oneshot(request.body(Body::empty()).unwrap())
                .await
                .unwrap();
            assert_eq!(response.status(), StatusCode::FORBIDDEN, "{host:?}");
            let bytes = response.into_body().collect().await.unwrap().to_bytes();
            let body: Value = serde_json::from_slice(&bytes).unwrap();
            assert_eq!(body["error"], "ForeignHost", "{host:?}");
        }
        let named = d.answering(AllowedHosts::new(
            "10.0.0.5".parse().unwrap(),
            &["dash.internal".to_owned()],
        ));
        let request = Request::get("/api/runtimes").header("host", "dash.internal:8474");
        let response = (named.router())
            .oneshot(request.body(Body::empty()).unwrap())
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
    }

    async fn call(
        d: &Dashboard,
        method: &str,
        uri: &str,
        token: Option<&str>,
    ) -> (StatusCode, Value) {
        let mut request = Request::builder()
            .method(method)
            .uri(uri)
            .header("host", "localhost:8474");
        if let Some(token) = token {
            request = request.header(TOKEN_HEADER, token);
        }
        let response = d
            .clone()
            .router()
            .oneshot(request.body(Body::empty()).unwrap())
            .await
            .unwrap();
        let status = response.status();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        (
            status,
            serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        )
    }

    /// A POST to `uri` with `token` is answered `code` with the error `error`.
    async fn assert_refused(
        d: &Dashboard,
        uri: &str,
        token: Option<&str>,
        code: StatusCode,
        error: &str,
    ) {
        let (status, body) = call(d, "POST", uri, token).await;
        let answer = (status, body["error"].as_str());
        assert_eq!(answer, (code, Some(error)), "{uri} {token:?}");
    }

    #[tokio::test]
    async fn the_page_and_its_script_are_served_from_the_binary() {
        let d = dashboard(false).await;
        let response = d.clone().router().oneshot(local_get("/")).await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        let html = response.into_body().collect().await.unwrap().to_bytes();
        let html = String::from_utf8_lossy(&html);
        assert!(html.contains(r#"<script src="/app.js">"#), "{html}");
        assert!(
            !html.contains("http://") && !html.contains("https://"),
            "nothing from the network"
        );
        let response = d.router().oneshot(local_get("/app.js")).await.unwrap();
        let kind = response.headers()[axum::http::header::CONTENT_TYPE].clone();
        assert!(kind.to_str().unwrap().starts_with("text/javascript"));
    }

    #[tokio::test]
    async fn the_board_is_served_as_json() {
        let (status, body) = call(&dashboard(false).await, "GET", "/api/runtimes", None).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body["scope"], "namespace team");
        assert_eq!(body["actions"], false);
        assert_eq!(body["runtimes"][0]["phase"], "Healthy");
    }

    #[tokio::test]
    async fn actions_are_refused_unless_allowed() {
        let d = dashboard(false).await;
        let token = Some(d.token());
        let (status, body) = call(&d, "POST", "/api/runtimes/team/wearables/abort", token).await;
        assert_eq!(status, StatusCode::FORBIDDEN);
        assert_eq!(body["error"], "ActionsNotAllowed");
        assert!(body["detail"].as_str().unwrap().contains("--allow-actions"));
    }

    #[tokio::test]
    async fn bad_actions_are_told_apart() {
        let d = dashboard(true).await;
        let cases = [
            (
                "/api/runtimes/team/wearables/delete",
                true,
                StatusCode::NOT_FOUND,
                "UnknownAction",
            ),
            (
                "/api/runtimes/team/nosuch/abort",
                true,
                StatusCode::NOT_FOUND,
                "UnknownRuntime",
            ),
            (
                "/api/runtimes/other/wearables/abort",
                true,
                StatusCode::NOT_FOUND,
                "UnknownRuntime",
            ),
        ];
        for (uri, with_token, code, error) in cases {
            let token = with_token.then(|| d.token());
            assert_refused(&d, uri, token, code, error).await;
        }
    }

    #[tokio::test]
    async fn an_action_needs_the_printed_token_on_every_address() {
        let d = dashboard(true).await;
        let other = dashboard(true).await;
        assert_ne!(d.token(), other.token(), "each dashboard draws its own");
        assert_eq!(d.token().len(), 32);
        let abort = "/api/runtimes/team/wearables/abort";
        let cases = [
            (None, StatusCode::FORBIDDEN, "ForeignRequest"),
            (Some(""), StatusCode::FORBIDDEN, "WrongToken"),
            (Some(other.token()), StatusCode::FORBIDDEN, "WrongToken"),
            (Some(&d.token()[..31]), StatusCode::FORBIDDEN, "WrongToken"),
            // Past every check to the API server (unreachable here): the action was accepted.
            (Some(d.token()), StatusCode::BAD_GATEWAY, "ApiServerRefused"),
        ];
        for (token, code, error) in cases {
            assert_refused(&d, abort, token, code, error).await;
        }
    }

    #[tokio::test]
    async fn no_page_may_frame_the_dashboard() {
        let d = dashboard(true).await;
        let requests = [
            local_get("/"),
            local_get("/app.js"),
            local_get("/api/runtimes"),
            Request::post("/api/runtimes/team/wearables/abort")
                .header("host", "localhost:8474")
                .body(Body::empty())
                .unwrap(),
            Request::get("/")
                .header("host", "evil.example")
                .body(Body::empty())
                .unwrap(),
        ];
        for request in requests {
            let uri = request.uri().clone();
            let response = d.clone().router().oneshot(request).await.unwrap();
            let headers = response.headers();
            assert_eq!(
                headers["content-security-policy"], "frame-ancestors 'none'",
                "{uri}"
            );
            assert_eq!(headers["x-frame-options"], "DENY", "{uri}");
            assert_eq!(headers["referrer-policy"], "no-referrer", "{uri}");
        }
    }

    #[tokio::test]
    async fn events_push_the_board_now_and_on_each_change() {
        let d = dashboard(false).await;
        let response = d
            .clone()
            .router()
            .oneshot(local_get("/api/events"))
            .await
            .unwrap();
        let mut body = response.into_body();
        let first = body.frame().await.unwrap().unwrap().into_data().unwrap();
        let first = String::from_utf8_lossy(&first).into_owned();
        assert!(first.starts_with("event: board\n"), "{first}");
        assert!(first.contains(r#""phase":"Healthy""#), "{first}");
        d.apply(watcher::Event::Apply(runtime("wearables", "Progressing")))
            .await;
        let next = body.frame().await.unwrap().unwrap().into_data().unwrap();
        assert!(String::from_utf8_lossy(&next).contains(r#""phase":"Progressing""#));
    }
}
