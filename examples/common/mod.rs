//! What the benchmark examples share: a connection to the workspace's
//! server, the median of a round's rates, and CPU time of the hub, its
//! coordination server and the benchmark itself (on a loaded 2-core
//! machine, CPU per operation says more than operations per second).

use std::path::Path;

use async_nats::jetstream;
use bones::state::Paths;

pub type Error = Box<dyn std::error::Error + Send + Sync>;

/// A JetStream context on the running hub's coordination server.
pub async fn connect(paths: &Paths) -> Result<jetstream::Context, Error> {
    Ok(jetstream::new(bones::coord::connect(paths).await?))
}

/// The median (the upper one of an even count).
pub fn median(values: &mut [f64]) -> f64 {
    values.sort_by(|a, b| a.total_cmp(b));
    values[values.len() / 2]
}

/// CPU seconds (user + system) used so far by the hub, its coordination
/// server and this process.
#[derive(Clone, Copy, Default)]
pub struct Cpu {
    hub: f64,
    server: f64,
    this: f64,
}

impl Cpu {
    pub fn now(paths: &Paths) -> Cpu {
        let pid = |path: &Path| {
            std::fs::read_to_string(path)
                .ok()
                .map(|s| s.trim().to_string())
        };
        Cpu {
            hub: pid(&paths.hub_pid).map_or(0.0, |p| cpu_seconds(&p)),
            server: pid(&paths.nats_pid).map_or(0.0, |p| cpu_seconds(&p)),
            this: cpu_seconds("self"),
        }
    }

    /// Microseconds of CPU per operation since `before`: server, hub, this
    /// process.
    pub fn per_op_us(self, before: Cpu, ops: usize) -> (f64, f64, f64) {
        let us = |a: f64, b: f64| (a - b) * 1e6 / ops as f64;
        (
            us(self.server, before.server),
            us(self.hub, before.hub),
            us(self.this, before.this),
        )
    }
}

/// CPU seconds (user + system) used so far by process `pid` (or `self`),
/// all its threads, dead ones included, to the nanosecond: the kernel's CPU
/// clock of the process. `/proc/<pid>/stat` counts in ticks of 10 ms: a
/// coarse sample for a process that runs in bursts of a millisecond (the
/// hub at 10 landings a second).
pub fn cpu_seconds(pid: &str) -> f64 {
    use nix::time::{ClockId, clock_getcpuclockid, clock_gettime};
    let clock = if pid == "self" {
        Ok(ClockId::CLOCK_PROCESS_CPUTIME_ID)
    } else {
        match pid.parse() {
            Ok(pid) => clock_getcpuclockid(nix::unistd::Pid::from_raw(pid)),
            Err(_) => return 0.0,
        }
    };
    clock
        .and_then(clock_gettime)
        .map_or(0.0, |t| t.tv_sec() as f64 + t.tv_nsec() as f64 / 1e9)
}
