//! The hub process itself: bring-up, serving, and the drained shutdown
//! (its order: [`super::services`]).
//!
//! Bring-up order matters for speed and for truth: the coordination server
//! is spawned first (it is the slowest part), the repository is opened or
//! seeded and the HTTP endpoint bound while it boots, and `hub: ready` is
//! logged only once JetStream answers. `/.status` answers 503 until then.

use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::RwLock;
use tokio_util::sync::CancellationToken;

use super::http::{self, StatusSource};
use super::services::Services;
use crate::coord;
use crate::coord::credential;
use crate::coord::credential::Key;
use crate::hub::server::Supervisor;
use crate::hub::{HubError, StartOptions, damage, lander, projector, storage, watcher};
use crate::oplog::HubLog;
use crate::state::lock::WorkspaceLock;
use crate::state::paths::Paths;
use crate::state::ports::Ports;
use crate::state::record::{HubRecord, StateDirId};
use crate::state::registry;
use crate::sys::fsutil;
use crate::sys::process;
use crate::trunk::repo;

/// Runs the hub in this process until SIGINT, SIGTERM or SIGHUP.
///
/// `lock` is held until the hub is ready, so concurrent starters wait and
/// then find this hub running.
pub(super) fn foreground(
    paths: &Paths,
    ports: Ports,
    opts: &StartOptions,
    lock: Option<WorkspaceLock>,
    log: HubLog,
) -> Result<(), HubError> {
    let pid = std::process::id();
    let start_time = process::own_start_time();
    log.info(format!(
        "hub: starting (pid={pid}, repo-port={}, coord-port={})",
        ports.repo, ports.coord
    ));
    install_panic_hook(log.clone());
    // the libraries' own reports (a lost coordination server, a slow
    // consumer) go to hub.log; only the hub installs this, never a CLI
    crate::oplog::forward::Forward::install(log.clone());
    let started = Instant::now();
    let result = bring_up(paths, ports, start_time, &log).and_then(|server| {
        let served = serve(paths, ports, opts, lock, &log, started, &server);
        let Server { supervisor, .. } = server;
        // a hub that never became ready has no one to drain for: a server
        // that ignores SIGTERM must not outlive a failed start
        let grace = match &served {
            Ok(Served {
                stopping,
                ready: true,
            }) => opts
                .drain_timeout
                .saturating_sub(stopping.elapsed())
                .max(Duration::from_millis(100)),
            _ => FAILED_START_GRACE.min(opts.drain_timeout),
        };
        let coord_clean = supervisor.stop(grace);
        let _ = HubRecord::remove(paths);
        registry::unregister(pid, start_time);
        match served {
            Ok(Served { ready: true, .. }) if !coord_clean => {
                Err(HubError::DrainTimeout(opts.drain_timeout))
            }
            Ok(_) if !coord_clean => Err(HubError::DrainTimeout(grace)),
            Ok(_) => Ok(()),
            Err(err) => Err(err),
        }
    });
    match &result {
        Ok(()) => log.info("hub: stopped"),
        Err(HubError::DrainTimeout(d)) => log.error(
            "hub: stopped with drain error",
            format!("shutdown exceeded {d:?}"),
        ),
        Err(err) => {
            let _ = HubRecord::remove(paths);
            registry::unregister(pid, start_time);
            log.error("hub: bring-up failed", err.to_string())
        }
    }
    result
}

/// How long the coordination server of a hub that never became ready gets
/// to exit after SIGTERM before it is killed.
pub(super) const FAILED_START_GRACE: Duration = Duration::from_secs(2);

/// How [`serve`] ended: when the stop began, and whether the hub had been
/// ready (else there was nothing to drain).
struct Served {
    stopping: Instant,
    ready: bool,
}

/// The coordination server as the hub runs it.
struct Server {
    supervisor: Supervisor,
    /// Its key, read (or made) once at bring-up.
    key: Key,
}

/// Prepares state, spawns the coordination server, records this process
/// as the hub and opens (or seeds) the repository.
fn bring_up(
    paths: &Paths,
    ports: Ports,
    start_time: u64,
    log: &HubLog,
) -> Result<Server, HubError> {
    let binary = crate::hub::server::find_nats_server()?;
    fsutil::ensure_private_dir(&paths.coord_dir)
        .map_err(HubError::io("cannot create", &paths.coord_dir))?;
    let (key, origin) = credential::ensure(paths)?;
    if origin == credential::Origin::ReplacedToken {
        log.warn(format!(
            "hub: the coordination server now admits the nkey in {} instead of the token; {} was deleted (clients outside bones: see docs/security.md)",
            paths.nats_seed.display(),
            paths.nats_token.display()
        ));
    }
    crate::hub::server::write_config(paths, ports.coord, &key)?;
    // the coordination server boots while the rest is done: it is the
    // slowest part of a start
    let supervisor = Supervisor::start(binary, paths, log.clone())?;
    if let Err(err) = write_record(paths, ports, start_time, log) {
        supervisor.stop(FAILED_START_GRACE);
        return Err(err);
    }
    tighten_old_state(paths, log);
    repo::clear_stale_trunk_lock(&paths.hub_repo);
    match repo::open_or_seed(&paths.hub_repo, &paths.root) {
        Ok(Some(seeded)) => {
            log.info(repo::seeded_message(&seeded));
            Ok(Server { supervisor, key })
        }
        Ok(None) => Ok(Server { supervisor, key }),
        Err(err) => {
            supervisor.stop(FAILED_START_GRACE);
            Err(err.into())
        }
    }
}

/// Records this process as the hub (`hub.json`, `hub.pid`).
fn write_record(
    paths: &Paths,
    ports: Ports,
    start_time: u64,
    log: &HubLog,
) -> Result<(), HubError> {
    let record = HubRecord {
        pid: std::process::id(),
        start_time,
        repo_port: ports.repo,
        coord_port: ports.coord,
        version: env!("CARGO_PKG_VERSION").to_string(),
        started_at: crate::sys::clock::utc_now_rfc3339(),
        state_dir: Some(
            StateDirId::of(&paths.state_dir)
                .map_err(HubError::io("cannot read", &paths.state_dir))?,
        ),
    };
    record
        .write(paths)
        .map_err(HubError::io("cannot write", &paths.hub_pid))?;
    // so that it can be found (`bones hub status --all`) and stopped
    // (`bones hub reap`) once its state directory is gone
    if let Err(err) = registry::register(paths, &record) {
        log.warn(format!("hub: not in the registry of hubs: {err}"));
    }
    Ok(())
}

/// State written by an earlier version, before the hub and the slot verbs
/// ran with umask 077, may give group and others read access (libgit2's
/// 0755/0644): made owner-only here, once. The state directory itself was
/// always 0700, so nobody else could reach it in the meantime.
fn tighten_old_state(paths: &Paths, log: &HubLog) {
    let slots = crate::swarm::slot::on_disk(paths)
        .into_iter()
        .map(|name| crate::swarm::slot::SlotDir::new(paths, &name).wt);
    for dir in std::iter::once(paths.hub_repo.clone()).chain(slots) {
        if let Err(err) = fsutil::make_owner_only(&dir) {
            log.warn(format!(
                "hub: cannot make {} owner-only: {err}",
                dir.display()
            ));
        }
    }
}

/// Serves until a stop signal; returns when the HTTP server has drained,
/// with the instant the stop began and whether the hub had been ready.
fn serve(
    paths: &Paths,
    ports: Ports,
    opts: &StartOptions,
    lock: Option<WorkspaceLock>,
    log: &HubLog,
    started: Instant,
    server: &Server,
) -> Result<Served, HubError> {
    let Server { supervisor, key } = server;
    // before the runtime's threads and the listener: every descriptor the
    // process opens from here on counts against the raised limit
    let http_limits = http::Limits::for_descriptors(http::raise_descriptor_limit());
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(HubError::Runtime)?;
    runtime.block_on(async {
        let mut stop = crate::sys::signals::StopSignals::install().map_err(HubError::Runtime)?;
        let listener = tokio::net::TcpListener::bind((Ipv4Addr::LOCALHOST, ports.repo))
            .await
            .map_err(|source| HubError::Bind {
                port: ports.repo,
                source,
            })?;
        let source = Arc::new(StatusSource {
            started,
            pid: std::process::id(),
            repo_port: ports.repo,
            coord_port: ports.coord,
            hub_repo: paths.hub_repo.clone(),
            coord: RwLock::new(None),
            storage: Arc::default(),
            state_dir: paths.state_dir.clone(),
            coord_dir: paths.coord_dir.clone(),
        });
        let (shutdown_tx, mut shutdown_rx) = tokio::sync::watch::channel(false);
        let ui = super::ui::router(paths.clone(), source.clone(), shutdown_rx.clone()).map_err(
            |source| HubError::UiKey {
                path: paths.ui_key.clone(),
                source,
            },
        )?;
        let server = tokio::spawn(http::serve(
            listener,
            http::router(source.clone(), ui),
            http_limits,
            async move {
                let _ = shutdown_rx.wait_for(|stop| *stop).await;
            },
        ));

        // the hub's own client, lander included: its reconnects after a
        // crash of the server are guarded, and logged when refused
        let guard = credential::Guard::logging(ports.coord, log.clone());
        let ready = tokio::select! {
            ready = coord::wait_ready(key, &guard, opts.ready_timeout, &paths.nats_log, || supervisor.first_exit()) => Some(ready),
            _ = stop.recv() => None,
        };
        let mut services = Services::default();
        let client = match ready {
            Some(Ok(client)) => {
                let js = async_nats::jetstream::new(client.clone());
                // set up side by side: each is a few round trips to the
                // server. The store's first look is made before ready, so a
                // start over a damaged store says so at once.
                let mut store = damage::Watch::new(paths, js.clone(), log.clone());
                let (lander, projector, feed, ()) = tokio::join!(
                    lander::spawn(
                        client.clone(),
                        paths.hub_repo.clone(),
                        log.clone(),
                        services.token()
                    ),
                    projector::spawn(js.clone(), log.clone(), services.token()),
                    ensure_feed(&js, log),
                    store.check(),
                );
                feed.map_err(service("knowledge feed"))?;
                let lander = lander.map_err(service("landing service"))?;
                // the projector says why as text
                let projector = projector.map_err(service("task projector"))?;
                services.using_coord("landing service", lander);
                services.using_coord("task projector", projector);
                services.using_coord(
                    "lease watcher",
                    watcher::spawn(js.clone(), paths.clone(), log.clone(), services.token()),
                );
                services.looking(
                    "log rotation",
                    tokio::spawn(rotate_log_when_due(log.clone(), services.token())),
                );
                services.looking(
                    "disk watch",
                    storage::spawn(
                        paths,
                        log.clone(),
                        source.storage.clone(),
                        supervisor.restarter(),
                        js.clone(),
                        services.token(),
                    ),
                );
                services.looking("store damage watch", store.spawn(services.token()));
                log.info("hub: ready");
                // only now may /.status say ok: a detached start returns on it
                *source.coord.write().await = Some(js);
                drop(lock);
                if opts.detached_child {
                    tell_starter_ready();
                }
                stop.recv().await;
                Some(client)
            }
            Some(Err(err)) => {
                let _ = shutdown_tx.send(true);
                let _ = server.await;
                return Err(err.into());
            }
            None => None,
        };

        log.info("hub: stopping");
        let stopping = Instant::now();
        let deadline = tokio::time::Instant::now() + opts.drain_timeout;
        let _ = shutdown_tx.send(true);
        let drained = async {
            if client.is_none() {
                return true; // never ready: nothing was started
            }
            // each service that uses the server has its last answers and
            // acknowledgements on it before it ends
            services
                .drain(deadline, log, async { supervisor.begin_stop() })
                .await
        };
        let (drained, http) = tokio::join!(drained, tokio::time::timeout_at(deadline, server));
        if http.is_err() || !drained {
            return Err(HubError::DrainTimeout(opts.drain_timeout));
        }
        Ok(Served {
            stopping,
            ready: client.is_some(),
        })
    })
}

/// What a detached hub writes to its starter once ready (see `detach`).
pub(super) const READY_LINE: &[u8] = b"ready";

/// A hub service, `what`, that did not start, keeping why.
fn service<E>(what: &'static str) -> impl FnOnce(E) -> HubError
where
    E: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    move |err| HubError::Service {
        what,
        source: err.into(),
    }
}

/// Tells the starter of a detached hub that it is ready: [`READY_LINE`] on
/// stdout, the starter's pipe. Stdout then goes to `/dev/null`, so nothing
/// written later meets a pipe nobody reads any more.
fn tell_starter_ready() {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(READY_LINE);
    let _ = out.write_all(b"\n");
    let _ = out.flush();
    if let Ok(null) = std::fs::OpenOptions::new().write(true).open("/dev/null") {
        let _ = nix::unistd::dup2_stdout(&null);
    }
}

/// Creates the knowledge feed's stream, or brings its retention in line
/// with this hub's environment (`BONES_FEED_MAX_AGE`, `BONES_FEED_MAX_MSGS`),
/// so the feed exists before any agent shares or follows.
async fn ensure_feed(
    js: &async_nats::jetstream::Context,
    log: &HubLog,
) -> Result<(), crate::feed::FeedError> {
    let retention = crate::feed::Retention::from_env()?;
    let changed = crate::feed::Feed::ensure(js, &retention).await?;
    if changed {
        log.info(format!(
            "hub: knowledge feed retention: {}",
            retention.describe()
        ));
    }
    Ok(())
}

/// How often the hub checks hub.log's size between its own entries.
const LOG_SIZE_CHECK: Duration = Duration::from_secs(1);

/// CLIs append to hub.log but never rotate it (only the hub does, see
/// `hub::log`); the hub's own entries rotate it, and this check rotates
/// what CLIs appended while the hub wrote nothing.
async fn rotate_log_when_due(log: HubLog, stop: CancellationToken) {
    let mut tick = tokio::time::interval(LOG_SIZE_CHECK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        // a stat, and rarely a rename chain of at most 100 files: no
        // slower than the entries every task writes inline
        log.rotate_if_due();
    }
}

/// A panic in the hub becomes an ERROR entry, so the operator sees it in
/// `bones logs --hub` rather than in a terminal that no longer exists.
fn install_panic_hook(log: HubLog) {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        log.error("hub: panic", info.to_string());
        default(info);
    }));
}
