//! The live view on the hub's HTTP port: one page (HTML, script and style
//! compiled into the binary) that renders [`crate::view`]'s picture of the
//! swarm and follows it through server-sent events.
//!
//! | route | answers |
//! |---|---|
//! | `GET /ui/login?secret=S` | redeems a one-time secret from `bones ui` for a session cookie, then redirects to `/ui` |
//! | `GET /ui` | the page, with the picture rendered on the server (readable without JavaScript) |
//! | `GET /ui/app.js`, `/ui/style.css` | the page's script and style |
//! | `GET /ui/snapshot` | the picture as JSON |
//! | `GET /ui/events` | `text/event-stream`: `snapshot`, then `deltas` (the changes since, at most one frame per [`FRAME_WINDOW`]); `status` (the hub's health) on connect |
//! | `GET /ui/diff/COMMIT` | the diff a trunk commit made, as text, at most [`diff::MAX_DIFF`] bytes |
//!
//! Everything but the login answers 401 without a valid session cookie
//! ([`access`]); the hub's DNS-rebinding guard and connection limits apply
//! as to every route. Read-only: nothing here changes the swarm.

pub mod access;
mod diff;
mod render;

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{Path as UrlPath, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::sse::{Event, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use futures::{Stream, StreamExt};
use tokio::sync::watch;

use super::http::{StatusSource, check};
use crate::state::paths::Paths;
use crate::view::{Connecting, Connector, Delta, Snapshot, Subscription, Update, View};

const INDEX: &str = include_str!("assets/index.html");
const SCRIPT: &str = include_str!("assets/app.js");
const STYLE: &str = include_str!("assets/style.css");

/// The page's policy: its own script, style and connections only, never
/// framed; the login URL's secret is never sent on as a referrer.
const SECURITY_HEADERS: [(header::HeaderName, &str); 4] = [
    (
        header::CONTENT_SECURITY_POLICY,
        "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'",
    ),
    (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
    (header::REFERRER_POLICY, "no-referrer"),
    (header::CACHE_CONTROL, "no-store"),
];

/// How long the server-rendered page waits for the picture's parts to be
/// read before rendering what it has.
const RENDER_WAIT: Duration = Duration::from_secs(2);

/// How long a page waits before opening its event stream again.
const RECONNECT_MS: u64 = 1000;

/// The shortest time between two frames of deltas: the changes of a burst
/// (a landing's log line, lease write, landing and the slots' new standing)
/// go as one frame, and a page gets at most 20 a second however busy the
/// swarm. Well under the 100 ms a landing may take to reach a page.
const FRAME_WINDOW: Duration = Duration::from_millis(50);

/// The most deltas one frame carries.
const FRAME_MOST: usize = 512;

/// What the live view's routes share.
struct Ui {
    view: View,
    sessions: access::Sessions,
    paths: Paths,
    status: Arc<StatusSource>,
    /// Turns true when the hub stops: event streams end then, instead of
    /// holding the HTTP server's drain open.
    stopping: watch::Receiver<bool>,
}

/// Reaches the coordination server through the hub's own connection.
struct HubConnector(Arc<StatusSource>);

impl Connector for HubConnector {
    fn connect(&self) -> Connecting {
        let source = self.0.clone();
        Box::pin(async move {
            source
                .coord
                .read()
                .await
                .clone()
                .ok_or_else(|| "the coordination server is not ready yet".to_string())
        })
    }
}

/// The live view's routes. Fails only when the session key cannot be read
/// or made.
pub fn router(
    paths: Paths,
    status: Arc<StatusSource>,
    stopping: watch::Receiver<bool>,
) -> std::io::Result<Router> {
    let ui = Arc::new(Ui {
        view: View::with_linger(
            paths.clone(),
            HubConnector(status.clone()),
            View::linger_from_env(),
        ),
        sessions: access::Sessions::load_or_create(&paths)?,
        paths,
        status,
        stopping,
    });
    let guarded = Router::new()
        .route("/ui", get(page))
        .route("/ui/", get(page))
        .route("/ui/app.js", get(script))
        .route("/ui/style.css", get(style))
        .route("/ui/snapshot", get(snapshot))
        .route("/ui/events", get(events))
        .route("/ui/diff/{commit}", get(commit_diff))
        .route_layer(axum::middleware::from_fn_with_state(
            ui.clone(),
            require_session,
        ));
    Ok(Router::new()
        .route("/ui/login", get(login))
        .merge(guarded)
        .layer(axum::middleware::from_fn(security_headers))
        .with_state(ui))
}

async fn security_headers(request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    for (name, value) in SECURITY_HEADERS {
        response
            .headers_mut()
            .insert(name, HeaderValue::from_static(value));
    }
    response
}

fn unauthorized(why: &str) -> Response {
    (
        StatusCode::UNAUTHORIZED,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        format!("{why}; run `bones ui` in the workspace and open the URL it prints\n"),
    )
        .into_response()
}

/// Lets a request through only with a valid session cookie.
async fn require_session(State(ui): State<Arc<Ui>>, request: Request, next: Next) -> Response {
    let valid = request
        .headers()
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|h| h.to_str().ok())
        .filter_map(access::cookie_in)
        .any(|value| ui.sessions.verify(value));
    if !valid {
        return unauthorized("this page needs a session");
    }
    next.run(request).await
}

async fn login(State(ui): State<Arc<Ui>>, request: Request) -> Response {
    let secret = request
        .uri()
        .query()
        .unwrap_or_default()
        .split('&')
        .find_map(|pair| pair.strip_prefix("secret="))
        .unwrap_or_default()
        .to_string();
    let paths = ui.paths.clone();
    let redeemed = tokio::task::spawn_blocking(move || access::redeem_login(&paths, &secret))
        .await
        .unwrap_or(false);
    if !redeemed {
        return unauthorized("this login link was used already, has expired, or is not one");
    }
    let cookie = format!(
        "{}={}; HttpOnly; SameSite=Strict; Path=/; Max-Age={}",
        access::COOKIE,
        ui.sessions.issue(),
        access::SESSION_TTL.as_secs()
    );
    (
        StatusCode::SEE_OTHER,
        [
            (header::SET_COOKIE, cookie),
            (header::LOCATION, "/ui".to_string()),
        ],
    )
        .into_response()
}

/// The picture once every part was read (or [`RENDER_WAIT`] passed).
async fn settled(subscription: &mut Subscription) -> Arc<Snapshot> {
    let mut latest = subscription.snapshot();
    let _ = tokio::time::timeout(RENDER_WAIT, async {
        while !latest.is_loaded() {
            if let Update::Snapshot(snapshot) = subscription.next().await {
                latest = snapshot;
            }
        }
    })
    .await;
    subscription.snapshot()
}

async fn page(State(ui): State<Arc<Ui>>) -> Response {
    let mut subscription = ui.view.subscribe();
    let snapshot = settled(&mut subscription).await;
    let body = INDEX.replace("<!--SNAPSHOT-->", &render::page(&snapshot));
    ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], body).into_response()
}

async fn script() -> Response {
    (
        [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
        SCRIPT,
    )
        .into_response()
}

async fn style() -> Response {
    ([(header::CONTENT_TYPE, "text/css; charset=utf-8")], STYLE).into_response()
}

async fn snapshot(State(ui): State<Arc<Ui>>) -> Response {
    let mut subscription = ui.view.subscribe();
    let snapshot = settled(&mut subscription).await;
    axum::Json(&*snapshot).into_response()
}

/// What the event stream sends next.
enum Step {
    Status,
    Updates,
}

async fn events(State(ui): State<Arc<Ui>>) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let subscription = ui.view.subscribe();
    let mut stopping = ui.stopping.clone();
    let sent = tokio::time::Instant::now();
    let stream = futures::stream::unfold(
        (ui, subscription, Step::Updates, sent),
        |(ui, mut subscription, next, mut sent)| async move {
            // the hub's health is checked on connect, and again whenever a
            // part of the picture was read afresh or changed health (the
            // coordination server came up, say): no timer
            let (event, then) = match next {
                Step::Status => {
                    let report = check(&ui.status).await;
                    let event = Event::default()
                        .event("status")
                        .retry(Duration::from_millis(RECONNECT_MS))
                        .json_data(&report)
                        .unwrap_or_default();
                    (event, Step::Updates)
                }
                Step::Updates => match subscription.next().await {
                    Update::Snapshot(snapshot) => {
                        let event = Event::default()
                            .event("snapshot")
                            .id(snapshot.seq.to_string())
                            .json_data(&*snapshot)
                            .unwrap_or_default();
                        (event, Step::Status)
                    }
                    Update::Delta { seq, delta } => {
                        // what else the burst brings goes in the same frame
                        tokio::time::sleep_until(sent + FRAME_WINDOW).await;
                        let mut deltas = vec![(seq, delta)];
                        deltas.extend(subscription.ready_deltas(FRAME_MOST));
                        sent = tokio::time::Instant::now();
                        deltas_event(&deltas)
                    }
                },
            };
            Some((Ok(event), (ui, subscription, then, sent)))
        },
    )
    .take_until(async move {
        let _ = stopping.wait_for(|stop| *stop).await;
    });
    Sse::new(stream)
}

/// One frame of deltas: `[{"seq": N, "delta": {...}}, ...]`, its id the
/// last number; the hub's health follows when a part changed health.
fn deltas_event(deltas: &[(u64, Arc<Delta>)]) -> (Event, Step) {
    let then = if deltas
        .iter()
        .any(|(_, d)| matches!(**d, Delta::Source { .. }))
    {
        Step::Status
    } else {
        Step::Updates
    };
    let last = deltas.last().map_or(0, |(seq, _)| *seq);
    #[derive(serde::Serialize)]
    struct Numbered<'a> {
        seq: u64,
        delta: &'a Delta,
    }
    let body: Vec<Numbered> = deltas
        .iter()
        .map(|(seq, delta)| Numbered { seq: *seq, delta })
        .collect();
    let event = Event::default()
        .event("deltas")
        .id(last.to_string())
        .json_data(body)
        .unwrap_or_default();
    (event, then)
}

async fn commit_diff(State(ui): State<Arc<Ui>>, UrlPath(commit): UrlPath<String>) -> Response {
    let repo = ui.paths.hub_repo.clone();
    let text = tokio::task::spawn_blocking(move || diff::of_commit(&repo, &commit)).await;
    match text {
        Ok(Ok(text)) => {
            ([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], text).into_response()
        }
        Ok(Err(diff::DiffError::NotACommit)) => (
            StatusCode::NOT_FOUND,
            "no such commit in the hub repository\n",
        )
            .into_response(),
        Ok(Err(err)) => (StatusCode::INTERNAL_SERVER_ERROR, format!("{err}\n")).into_response(),
        Err(err) => (StatusCode::INTERNAL_SERVER_ERROR, format!("{err}\n")).into_response(),
    }
}
