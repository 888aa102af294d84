//! The stop signals, SIGINT, SIGTERM and SIGHUP, caught in one place and
//! always through tokio's signal handling (which installs a minimal handler
//! that only records the signal; no hand-written `sigaction`).
//!
//! All three mean "finish what you are doing and stop": the hub drains,
//! a follower (`bones feed --follow`, `bones logs --follow`) saves its place
//! and exits 0. Before a handler is installed the default action (exit)
//! applies, which is right for a command that has nothing to finish yet.

use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};

use tokio::signal::unix::{Signal, SignalKind, signal};

/// The three stop signals, caught from [`StopSignals::install`] on.
/// Needs a tokio runtime with I/O enabled.
pub struct StopSignals {
    int: Signal,
    term: Signal,
    hup: Signal,
}

impl StopSignals {
    /// Catches SIGINT, SIGTERM and SIGHUP from now on; a signal that
    /// arrives before [`recv`](Self::recv) is kept for it.
    pub fn install() -> io::Result<StopSignals> {
        Ok(StopSignals {
            int: signal(SignalKind::interrupt())?,
            term: signal(SignalKind::terminate())?,
            hup: signal(SignalKind::hangup())?,
        })
    }

    /// Completes at the next stop signal.
    pub async fn recv(&mut self) {
        tokio::select! {
            _ = self.int.recv() => {}
            _ = self.term.recv() => {}
            _ = self.hup.recv() => {}
        }
    }
}

/// Completes at the first stop signal; never, when the signals cannot be
/// caught (the default action, exit, then applies).
pub async fn stopped() {
    match StopSignals::install() {
        Ok(mut signals) => signals.recv().await,
        Err(_) => std::future::pending().await,
    }
}

/// For synchronous code: a flag that turns true at the first stop signal,
/// caught from when this returns. The signals are awaited on a thread of
/// their own with a one-thread runtime, started at the first call; later
/// calls return the same flag. `None` when they cannot be caught (the
/// default action, exit, then applies).
pub fn stop_flag() -> Option<Arc<AtomicBool>> {
    static FLAG: OnceLock<Option<Arc<AtomicBool>>> = OnceLock::new();
    FLAG.get_or_init(|| {
        let flag = Arc::new(AtomicBool::new(false));
        let set = Arc::clone(&flag);
        let (installed, result) = std::sync::mpsc::sync_channel(1);
        std::thread::Builder::new()
            .name("stop-signals".into())
            .spawn(move || {
                let runtime = match tokio::runtime::Builder::new_current_thread()
                    .enable_io()
                    .build()
                {
                    Ok(runtime) => runtime,
                    Err(_) => {
                        let _ = installed.send(false);
                        return;
                    }
                };
                runtime.block_on(async move {
                    let Ok(mut signals) = StopSignals::install() else {
                        let _ = installed.send(false);
                        return;
                    };
                    let _ = installed.send(true);
                    signals.recv().await;
                    set.store(true, Ordering::Relaxed);
                });
            })
            .ok()?;
        result.recv().ok().filter(|ok| *ok).map(|_| flag)
    })
    .clone()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A stop signal sent to this process sets the flag instead of ending
    /// the process (the test binary would die of SIGHUP's default action).
    #[test]
    fn a_stop_signal_sets_the_flag() {
        let flag = stop_flag().expect("the stop signals can be caught");
        assert!(stop_flag().is_some_and(|again| Arc::ptr_eq(&again, &flag)));
        nix::sys::signal::raise(nix::sys::signal::Signal::SIGHUP).unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while !flag.load(Ordering::Relaxed) {
            assert!(
                std::time::Instant::now() < deadline,
                "the flag was not set within 10 s of SIGHUP"
            );
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
    }
}
