//! The hub's background services and their drained stop.
//!
//! Every service watches one [`CancellationToken`], and only where it
//! waits, so work under way (a landing, a reap, a projection) finishes
//! whole. A stop is ordered for truth and for speed:
//!
//! 1. every service is told to stop at once;
//! 2. the services whose work under way goes through the coordination
//!    server (the lander, the lease watcher, the task projector) are joined
//!    side by side. An idle one ends as soon as it is told, so a stop with
//!    nothing under way reaches the coordination server at once; a landing
//!    under way still gets its answer out before the server goes;
//! 3. the coordination server is told to stop (it takes longest), and the
//!    services that only look (store damage, disk, log rotation) are
//!    joined while it shuts down.
//!
//! Nothing waits a fixed delay. A service still running at the drain
//! deadline is aborted and logged, so a stuck one costs the drain timeout,
//! never a hung stop.

use futures::future::join_all;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::oplog::HubLog;

/// The hub's background services, each with the name hub.log gives it.
#[derive(Default)]
pub(super) struct Services {
    stop: CancellationToken,
    /// Finish their work with the coordination server up.
    using_coord: Vec<Service>,
    /// Only stop looking; joined while the coordination server shuts down.
    looking: Vec<Service>,
}

struct Service {
    name: &'static str,
    handle: JoinHandle<()>,
}

impl Services {
    /// The token every service watches.
    pub(super) fn token(&self) -> CancellationToken {
        self.stop.clone()
    }

    /// A service whose work under way goes through the coordination server.
    pub(super) fn using_coord(&mut self, name: &'static str, handle: JoinHandle<()>) {
        self.using_coord.push(Service { name, handle });
    }

    /// A service that only looks, and can stop after the coordination
    /// server was told to.
    pub(super) fn looking(&mut self, name: &'static str, handle: JoinHandle<()>) {
        self.looking.push(Service { name, handle });
    }

    /// Tells every service to stop, runs `coord_free` as soon as the
    /// coordination server is needed no more, and returns once every
    /// service has ended; false when one had to be aborted at `deadline`.
    pub(super) async fn drain(
        self,
        deadline: Instant,
        log: &HubLog,
        coord_free: impl Future<Output = ()>,
    ) -> bool {
        self.stop.cancel();
        let first = join(self.using_coord, deadline, log).await;
        coord_free.await;
        let rest = join(self.looking, deadline, log).await;
        first && rest
    }
}

/// Joins `services` side by side until `deadline`; aborts and logs those
/// still running then. Returns whether all ended on their own.
async fn join(services: Vec<Service>, deadline: Instant, log: &HubLog) -> bool {
    let aborts: Vec<_> = services
        .iter()
        .map(|s| (s.name, s.handle.abort_handle()))
        .collect();
    let joined = join_all(
        services
            .into_iter()
            .map(|s| async move { (s.name, s.handle.await) }),
    );
    match tokio::time::timeout_at(deadline, joined).await {
        Ok(results) => {
            for (name, result) in results {
                if let Err(err) = result {
                    log.error(
                        format!("hub: the {name} failed while stopping"),
                        err.to_string(),
                    );
                }
            }
            true
        }
        Err(_) => {
            for (name, abort) in aborts {
                if !abort.is_finished() {
                    abort.abort();
                    log.warn(format!(
                        "hub: the {name} did not stop within the drain timeout; aborted"
                    ));
                }
            }
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::time::Duration;

    use crate::oplog::LogConfig;

    fn log() -> (tempfile::TempDir, HubLog) {
        let tmp = tempfile::tempdir().unwrap();
        let log = HubLog::open(tmp.path().join("hub.log"), LogConfig::default());
        (tmp, log)
    }

    #[tokio::test]
    async fn the_coordination_server_is_freed_once_its_users_have_finished() {
        let (_tmp, log) = log();
        let mut services = Services::default();
        let finished = Arc::new(AtomicBool::new(false));
        let (release_tx, release_rx) = tokio::sync::oneshot::channel::<()>();
        let stop = services.token();
        let done = finished.clone();
        // work under way that outlives the stop signal
        services.using_coord(
            "landing service",
            tokio::spawn(async move {
                stop.cancelled().await;
                let _ = release_rx.await;
                done.store(true, Ordering::SeqCst);
            }),
        );
        let stop = services.token();
        services.looking("disk watch", tokio::spawn(stop.cancelled_owned()));
        let freed_after_work = Arc::new(AtomicBool::new(false));
        let seen = freed_after_work.clone();
        let deadline = Instant::now() + Duration::from_secs(10);
        let drain = tokio::spawn(async move {
            services
                .drain(deadline, &log, async move {
                    seen.store(finished.load(Ordering::SeqCst), Ordering::SeqCst);
                })
                .await
        });
        tokio::task::yield_now().await;
        release_tx.send(()).unwrap();
        assert!(drain.await.unwrap(), "every service ended on its own");
        assert!(
            freed_after_work.load(Ordering::SeqCst),
            "the server was freed before the work under way finished"
        );
    }

    #[tokio::test]
    async fn a_service_that_ignores_the_stop_is_aborted_at_the_deadline_and_logged() {
        let (tmp, log) = log();
        let mut services = Services::default();
        services.looking("store damage watch", tokio::spawn(std::future::pending()));
        let deadline = Instant::now() + Duration::from_millis(50);
        assert!(!services.drain(deadline, &log, async {}).await);
        let written = std::fs::read_to_string(tmp.path().join("hub.log")).unwrap();
        assert!(
            written
                .contains("the store damage watch did not stop within the drain timeout; aborted"),
            "{written}"
        );
    }
}
