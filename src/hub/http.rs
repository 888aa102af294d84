//! The hub's HTTP endpoint on the repo port (127.0.0.1 only).
//!
//! It serves `GET /.status` (each request checks the parts it reports on)
//! and `GET /.leases` (the slots with live leases, for the stop guard).
//! Both are read-only and carry no secrets (see `docs/security.md` for
//! what they do reveal). The live view of the swarm (`hub::ui`), which
//! does show what agents write, is merged in behind a session cookie.
//!
//! Any local user can connect, so the server bounds what a connection can
//! hold: a request's head must arrive within [`HEADER_TIMEOUT`] (which also
//! ends a kept-alive connection left idle that long), a connection lives at
//! most [`MAX_CONNECTION_TIME`], and at most [`Limits::connections`] are
//! open at once; more are closed as soon as they are accepted. The cap is a
//! quarter of the descriptors the process may open, so the lander, the
//! coordination client and hub.log always find one.

use std::future::Future;
use std::path::PathBuf;
use std::pin::pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, RwLock, Semaphore, watch};

use super::status::{PartHealth, Parts, STATUS_DEGRADED, STATUS_OK, StatusReport};
use super::storage::{self, StorageState};
use crate::hub::damage;
use crate::lease;
use crate::sys::clock::utc_now_rfc3339;
use crate::trunk::repo;

/// What `/.status` needs to know about the hub.
pub struct StatusSource {
    pub started: Instant,
    pub pid: u32,
    pub repo_port: u16,
    pub coord_port: u16,
    pub hub_repo: PathBuf,
    /// Set once the coordination server is ready.
    pub coord: RwLock<Option<async_nats::jetstream::Context>>,
    /// The state directory's disk, as the storage watch last saw it.
    pub storage: Arc<StorageState>,
    pub state_dir: PathBuf,
    /// The JetStream store, where the damage record is kept.
    pub coord_dir: PathBuf,
}

/// How long a health check waits for JetStream before calling it down.
const JETSTREAM_CHECK: Duration = Duration::from_secs(1);

/// The router for the repo port: `/.status`, `/.leases`, and the routes
/// of `more` (the live view, see `hub::ui`), all behind the same guard.
pub fn router(source: Arc<StatusSource>, more: Router) -> Router {
    Router::new()
        .route("/.status", get(status))
        .route("/.leases", get(leases))
        .with_state(source)
        .merge(more)
        .layer(axum::middleware::from_fn(loopback_host_only))
}

/// Refuses requests that name another host than loopback. The listener is
/// on 127.0.0.1, but a web page can still reach it through a name that
/// resolves to 127.0.0.1 (DNS rebinding) and read the answers as its own;
/// browsers always send the name they used, so checking `Host` stops that.
/// A request without `Host` (HTTP/1.0 tools) is not from a browser.
async fn loopback_host_only(
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let host = request.headers().get(axum::http::header::HOST);
    let allowed = host.is_none_or(|h| h.to_str().is_ok_and(is_loopback_host));
    if allowed {
        return next.run(request).await;
    }
    (
        StatusCode::FORBIDDEN,
        axum::Json(serde_json::json!({
            "error": "this endpoint answers only requests for 127.0.0.1 or localhost"
        })),
    )
        .into_response()
}

/// How long a client has to send a request's head, counted from the moment
/// the server is ready for it: on a new connection, and again after each
/// answer on a kept-alive one (so it is also the idle timeout). Every bones
/// client sends its request in one write; before this bound, ~22,000
/// connections that sent half a request and waited took every descriptor
/// the hub had, and every landing failed until they closed.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(5);

/// The longest any connection is kept, whatever it does: a request body or
/// an answer trickled a byte at a time cannot hold a slot for longer. The
/// live view's event stream is closed at this bound too; its page opens a
/// new one at once and is sent a fresh snapshot.
pub const MAX_CONNECTION_TIME: Duration = Duration::from_secs(60);

/// The most connections a hub serves at once, whatever its descriptor
/// limit: far more than status checks and stop guards ever open.
const MAX_CONNECTIONS: u64 = 512;

/// Pause after a failed `accept` (out of descriptors, say), instead of
/// spinning on it; the same pause `axum::serve` makes.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// How many connections the HTTP server holds open at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub connections: usize,
}

impl Limits {
    /// The limits for a process that may open `descriptors` files: a
    /// quarter of them for HTTP (at least one, at most [`MAX_CONNECTIONS`]),
    /// the rest for landing, the coordination client and the logs.
    pub fn for_descriptors(descriptors: u64) -> Limits {
        let connections = (descriptors / 4).clamp(1, MAX_CONNECTIONS);
        Limits {
            connections: connections as usize,
        }
    }
}

/// The most [`raise_descriptor_limit`] raises the soft limit to: some
/// hard limits are near a billion, and children that close every
/// descriptor up to the limit before they exec would crawl.
const RAISED_DESCRIPTORS: u64 = 65_536;

/// Raises this process's soft limit on open files towards its hard limit
/// (the most it may raise it to without privileges; at most
/// [`RAISED_DESCRIPTORS`]) and returns the limit now in force. A hub is one
/// process serving many agents; the default soft limit (often 1024) is
/// meant for programs that open a few files. When the limit cannot be
/// read, assumes the common default of 1024.
pub fn raise_descriptor_limit() -> u64 {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE) else {
        return 1024;
    };
    let wanted = hard.min(RAISED_DESCRIPTORS);
    if soft < wanted && setrlimit(Resource::RLIMIT_NOFILE, wanted, hard).is_ok() {
        return wanted;
    }
    soft
}

/// Serves `router` on `listener` within `limits` until `shutdown` resolves,
/// then lets the requests in flight finish and returns once every
/// connection is closed (the caller bounds that wait with its drain
/// timeout).
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: Limits,
    shutdown: impl Future<Output = ()>,
) {
    let permits = Arc::new(Semaphore::new(limits.connections));
    let (closing_tx, closing_rx) = watch::channel(false);
    let mut shutdown = pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = &mut shutdown => break,
        };
        let stream = match accepted {
            Ok((stream, _)) => stream,
            Err(_) => {
                tokio::time::sleep(ACCEPT_BACKOFF).await;
                continue;
            }
        };
        // over the cap the connection is closed at once: it costs a
        // descriptor for a moment instead of until its client gives up
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            drop(stream);
            continue;
        };
        tokio::spawn(serve_connection(
            stream,
            router.clone(),
            closing_rx.clone(),
            permit,
        ));
    }
    drop(listener);
    let _ = closing_tx.send(true);
    // every connection holds a permit until it is closed
    let _ = permits.acquire_many(limits.connections as u32).await;
}

/// Serves one connection within [`HEADER_TIMEOUT`] and
/// [`MAX_CONNECTION_TIME`]; when `closing` turns true, finishes the request
/// in flight (if any) and closes.
async fn serve_connection(
    stream: TcpStream,
    router: Router,
    mut closing: watch::Receiver<bool>,
    _permit: OwnedSemaphorePermit,
) {
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_TIMEOUT);
    let mut conn =
        pin!(builder.serve_connection(TokioIo::new(stream), TowerToHyperService::new(router)));
    let mut lifetime = pin!(tokio::time::sleep(MAX_CONNECTION_TIME));
    tokio::select! {
        _ = conn.as_mut() => return,
        () = &mut lifetime => return,
        _ = closing.wait_for(|closing| *closing) => {}
    }
    conn.as_mut().graceful_shutdown();
    tokio::select! {
        _ = conn.as_mut() => {}
        () = &mut lifetime => {}
    }
}

/// `127.0.0.1`, `localhost` or `[::1]`, with or without a port.
pub fn is_loopback_host(host: &str) -> bool {
    let name = match host.rsplit_once(':') {
        Some((name, port)) if !name.ends_with(':') && port.bytes().all(|b| b.is_ascii_digit()) => {
            name
        }
        _ => host,
    };
    matches!(
        name.to_ascii_lowercase().as_str(),
        "127.0.0.1" | "localhost" | "[::1]"
    )
}

async fn status(State(source): State<Arc<StatusSource>>) -> impl IntoResponse {
    let report = check(&source).await;
    let code = if report.is_ok() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (code, axum::Json(report))
}

/// The slots holding live leases, for `bones hub stop`'s guard: answered
/// from the hub's own connection, so the guard costs the CLI one loopback
/// request instead of a connection to the coordination server.
async fn leases(State(source): State<Arc<StatusSource>>) -> impl IntoResponse {
    let Some(js) = source.coord.read().await.clone() else {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            axum::Json(serde_json::json!({ "error": "the coordination server is not ready" })),
        );
    };
    match tokio::time::timeout(JETSTREAM_CHECK * 2, lease::live(&js)).await {
        Ok(Ok(live)) => {
            let slots: Vec<&str> = live.iter().map(|l| l.slot()).collect();
            (
                StatusCode::OK,
                axum::Json(serde_json::json!({ "live": slots })),
            )
        }
        Ok(Err(err)) => (
            StatusCode::SERVICE_UNAVAILABLE,
            axum::Json(serde_json::json!({ "error": err.to_string() })),
        ),
        Err(_) => (
            StatusCode::SERVICE_UNAVAILABLE,
            axum::Json(serde_json::json!({ "error": "the sessions bucket did not answer" })),
        ),
    }
}

/// Checks every part now.
pub async fn check(source: &StatusSource) -> StatusReport {
    let hub_repo = source.hub_repo.clone();
    let repo_check = tokio::task::spawn_blocking(move || repo::trunk_tip(&hub_repo));
    let coord = match source.coord.read().await.clone() {
        None => PartHealth::failed("coordination server not ready yet"),
        Some(js) => match tokio::time::timeout(JETSTREAM_CHECK, js.query_account()).await {
            Ok(Ok(_)) => PartHealth::ok(),
            Ok(Err(e)) => PartHealth::failed(format!("JetStream: {e}")),
            Err(_) => PartHealth::failed(format!(
                "JetStream did not answer within {JETSTREAM_CHECK:?}"
            )),
        },
    };
    let (repo_health, trunk_tip) = match repo_check.await {
        Ok(Ok(tip)) => (PartHealth::ok(), Some(tip)),
        Ok(Err(e)) => (PartHealth::failed(e.to_string()), None),
        Err(e) => (
            PartHealth::failed(format!("repository check panicked: {e}")),
            None,
        ),
    };
    let storage = storage_health(source);
    let store = store_health(source);
    let mut failed = Vec::new();
    if !repo_health.ok {
        failed.push("repo".to_string());
    }
    if !coord.ok {
        failed.push("coord".to_string());
    }
    if !storage.ok {
        failed.push("storage".to_string());
    }
    if !store.ok {
        failed.push("store".to_string());
    }
    StatusReport {
        status: if failed.is_empty() {
            STATUS_OK
        } else {
            STATUS_DEGRADED
        }
        .to_string(),
        timestamp: utc_now_rfc3339(),
        pid: source.pid,
        uptime_s: source.started.elapsed().as_secs(),
        version: env!("CARGO_PKG_VERSION").to_string(),
        repo_port: source.repo_port,
        coord_port: source.coord_port,
        trunk_tip,
        jetstream: coord.ok,
        parts: Parts {
            repo: repo_health,
            coord,
            storage,
            store,
        },
        failed,
    }
}

/// Failed while the damage record names a stream that went backwards: the
/// record is read on every request, so a repair shows at once.
fn store_health(source: &StatusSource) -> PartHealth {
    match damage::read_record(&source.coord_dir) {
        Ok(found) if found.is_empty() => PartHealth::ok(),
        Ok(found) => PartHealth::failed(format!(
            "{}; recover with `bones hub repair store`",
            found
                .iter()
                .map(damage::Damage::describe)
                .collect::<Vec<_>>()
                .join("; ")
        )),
        Err(err) => PartHealth::failed(err.to_string()),
    }
}

/// Failed while the storage watch knows writes fail, or when the disk is
/// full right now (between two of its looks).
fn storage_health(source: &StatusSource) -> PartHealth {
    if let Some(problem) = source.storage.problem() {
        return PartHealth::failed(problem);
    }
    match storage::free_bytes(&source.state_dir) {
        Ok(free) if free < storage::FULL_BELOW => PartHealth::failed(format!(
            "the disk holding {} is full ({} free)",
            source.state_dir.display(),
            storage::show_bytes(free)
        )),
        _ => PartHealth::ok(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn only_loopback_names_are_hosts_we_answer() {
        for host in [
            "127.0.0.1",
            "127.0.0.1:8080",
            "localhost:1",
            "LOCALHOST",
            "[::1]:80",
        ] {
            assert!(is_loopback_host(host), "{host}");
        }
        for host in [
            "evil.example",
            "evil.example:8080",
            "127.0.0.1.evil.example",
            "localhost.evil.example:80",
            "127.0.0.2:80",
            "",
        ] {
            assert!(!is_loopback_host(host), "{host}");
        }
    }

    #[test]
    fn http_gets_a_quarter_of_the_descriptors_within_bounds() {
        assert_eq!(Limits::for_descriptors(128).connections, 32);
        assert_eq!(Limits::for_descriptors(20_000).connections, 512);
        assert_eq!(Limits::for_descriptors(3).connections, 1);
    }

    proptest! {
        #[test]
        // near misses of loopback names, so that both branches are taken
        fn an_accepted_host_names_loopback(
            host in r"(127\.0\.0\.1|127\.0\.0\.2|localhost|LOCALHOST|\[::1\]|evil\.example)(\.evil)?(:[0-9]{0,5})?"
        ) {
            if is_loopback_host(&host) {
                let lower = host.to_ascii_lowercase();
                prop_assert!(
                    lower.starts_with("127.0.0.1") || lower.starts_with("localhost") || lower.starts_with("[::1]")
                );
                prop_assert!(!lower.contains(".evil"), "{host}");
            }
        }
    }
}
