//! The dashboard's HTTP side: the embedded page, the board as JSON, Server-Sent Events fed by
//! one kube watch, and (only with `--allow-actions`) the controls of `kubectl auren`.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{Path, Request, State};
use axum::http::HeaderValue;
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use futures::{Stream, StreamExt};
use kube::api::Api;
use kube::runtime::{WatchStreamExt, watcher};
use sha2::{Digest, Sha256};
use tokio::sync::{Mutex, watch};

use super::view::{Board, BoardView, control_named};
use super::{AllowedHosts, DashboardError};
use crate::controls::request_control;
use auren_operator::api::AurenRuntime;

/// The header the page sends with an action, holding the dashboard's token. A cross-site form
/// or link cannot set a header, and a peer on the network (the dashboard listening beyond
/// loopback) does not know the token: only the page opened by the printed URL can act.
pub const TOKEN_HEADER: &str = "x-auren-dashboard-token";
/// Length of the token (alphanumeric: ~190 bits).
const TOKEN_LEN: usize = 32;

const INDEX_HTML: &str = include_str!("page/index.html");
const APP_JS: &str = include_str!("page/app.js");

/// What the handlers share: the board (fed by the watch) and the settings.
#[derive(Clone)]
pub struct Dashboard {
    board: Arc<Mutex<Board>>,
    updates: watch::Sender<Arc<BoardView>>,
    scope: String,
    actions: Option<kube::Client>,
    hosts: Arc<AllowedHosts>,
    token: Arc<str>,
}

impl Dashboard {
    /// A dashboard of `scope`; `actions` is the client the controls use, `None` when read-only.
    /// Each dashboard draws its own random token ([`Dashboard::token`]).
    pub fn new(scope: &str, actions: Option<kube::Client>) -> Dashboard {
        use rand::distr::{Alphanumeric, SampleString};
        let board = Board::default();
        let (updates, _) = watch::channel(Arc::new(board.view(scope, actions.is_some())));
        Dashboard {
            board: Arc::new(Mutex::new(board)),
            updates,
            scope: scope.to_owned(),
            actions,
            hosts: Arc::new(AllowedHosts::default()),
            token: Alphanumeric
                .sample_string(&mut rand::rng(), TOKEN_LEN)
                .into(),
        }
    }

    /// The token an action must carry in [`TOKEN_HEADER`]; printed once, in the page's URL.
    pub fn token(&self) -> &str {
        &self.token
    }

    /// The dashboard answering requests for `hosts` only (loopback by default).
    pub fn answering(self, hosts: AllowedHosts) -> Dashboard {
        Dashboard {
            hosts: Arc::new(hosts),
            ..self
        }
    }

    /// Applies one watch event and publishes the new board to every open page.
    pub async fn apply(&self, event: watcher::Event<AurenRuntime>) {
        let mut board = self.board.lock().await;
        board.apply(event);
        let view = board.view(&self.scope, self.actions.is_some());
        self.updates.send_if_modified(|current| {
            let changed = **current != view;
            if changed {
                *current = Arc::new(view);
            }
            changed
        });
    }

    /// Follows `api` with one watch until it ends (it retries with backoff on its own).
    pub async fn follow(self, api: Api<AurenRuntime>) {
        let mut events = watcher(api, watcher::Config::default())
            .default_backoff()
            .boxed();
        while let Some(event) = events.next().await {
            match event {
                Ok(event) => self.apply(event).await,
                Err(e) => eprintln!("dashboard: watch of AurenRuntimes: {e}"),
            }
        }
    }

    /// The routes of the dashboard.
    pub fn router(self) -> Router {
        Router::new()
            .route("/", get(index))
            .route("/app.js", get(app_js))
            .route("/api/runtimes", get(snapshot))
            .route("/api/events", get(events))
            .route("/api/runtimes/{namespace}/{name}/{action}", post(act))
            .route_layer(middleware::from_fn_with_state(self.clone(), for_this_host))
            .layer(middleware::map_response(never_framed))
            .with_state(self)
    }

    /// Whether `header` is this dashboard's token. Compared as digests: the time taken says
    /// nothing about how much of the token a guess got right.
    fn holds_token(&self, header: &HeaderValue) -> bool {
        Sha256::digest(header.as_bytes()) == Sha256::digest(self.token.as_bytes())
    }
}

/// No page may frame the dashboard (a framed page could be overlaid to trick a click on its
/// buttons), and the token in its URL is never sent on as a Referer.
async fn never_framed(mut response: Response) -> Response {
    let headers = response.headers_mut();
    let never = [
        (header::CONTENT_SECURITY_POLICY, "frame-ancestors 'none'"),
        (header::X_FRAME_OPTIONS, "DENY"),
        (header::REFERRER_POLICY, "no-referrer"),
    ];
    for (name, value) in never {
        headers.insert(name, HeaderValue::from_static(value));
    }
    response
}

/// Refuses a request whose `Host` is not one the dashboard answers to (DNS rebinding).
async fn for_this_host(
    State(d): State<Dashboard>,
    request: Request,
    next: Next,
) -> Result<Response, DashboardError> {
    let host = (request.headers().get(header::HOST))
        .and_then(|h| h.to_str().ok())
        .unwrap_or_default();
    if !d.hosts.allows(host) {
        return Err(DashboardError::ForeignHost(host.to_owned()));
    }
    Ok(next.run(request).await)
}

async fn index() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        INDEX_HTML,
    )
}

async fn app_js() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
        APP_JS,
    )
}

async fn snapshot(State(d): State<Dashboard>) -> axum::Json<BoardView> {
    axum::Json(BoardView::clone(&d.updates.borrow()))
}

/// The board now, then again on every change, as `board` events.
async fn events(State(d): State<Dashboard>) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let rx = d.updates.subscribe();
    let stream = futures::stream::unfold((rx, true), |(mut rx, first)| async move {
        if !first {
            rx.changed().await.ok()?;
        }
        let view = rx.borrow_and_update().clone();
        Some((board_event(&view), (rx, false)))
    });
    Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
}

fn board_event(view: &BoardView) -> Result<Event, Infallible> {
    let data = serde_json::to_string(view).unwrap_or_else(|_| "{}".to_owned());
    Ok(Event::default().event("board").data(data))
}

/// `POST /api/runtimes/{namespace}/{name}/{promote|abort|retry}`: what `kubectl auren
/// <action> <name> -n <namespace>` does.
async fn act(
    State(d): State<Dashboard>,
    Path((namespace, name, action)): Path<(String, String, String)>,
    headers: HeaderMap,
) -> Result<Response, DashboardError> {
    let client = d.actions.clone().ok_or(DashboardError::ActionsNotAllowed)?;
    let token = headers
        .get(TOKEN_HEADER)
        .ok_or(DashboardError::ForeignRequest)?;
    if !d.holds_token(token) {
        return Err(DashboardError::WrongToken);
    }
    let control = control_named(&action).ok_or(DashboardError::UnknownAction(action))?;
    if !d.board.lock().await.contains(&namespace, &name) {
        return Err(DashboardError::UnknownRuntime { namespace, name });
    }
    let api = Api::<AurenRuntime>::namespaced(client, &namespace);
    let value = request_control(&api, &name, control)
        .await
        .map_err(DashboardError::Kube)?;
    let body = serde_json::json!({"annotation": control.annotation(), "value": value});
    Ok((StatusCode::ACCEPTED, axum::Json(body)).into_response())
}
