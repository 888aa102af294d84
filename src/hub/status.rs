//! The health report served at `GET /.status` and read by `bones hub status`.
//!
//! It checks what it claims (decision 13): `jetstream` is true only when the
//! JetStream API answered this request, `trunk_tip` is read from the
//! repository for this request. It never says "ok" by default.

use serde::{Deserialize, Serialize};

/// Overall verdict: `ok` only when every part works.
pub const STATUS_OK: &str = "ok";
pub const STATUS_DEGRADED: &str = "degraded";

/// Health of one part of the hub.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartHealth {
    pub ok: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl PartHealth {
    pub fn ok() -> PartHealth {
        PartHealth {
            ok: true,
            error: None,
        }
    }

    pub fn failed(error: impl Into<String>) -> PartHealth {
        PartHealth {
            ok: false,
            error: Some(error.into()),
        }
    }
}

/// The parts `/.status` checks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Parts {
    /// The hub repository opens and trunk resolves.
    pub repo: PartHealth,
    /// The coordination server answered a JetStream API request.
    pub coord: PartHealth,
    /// The disk under the state directory takes writes.
    #[serde(default = "PartHealth::ok")]
    pub storage: PartHealth,
    /// No stream of the coordination server went backwards (store damage
    /// the hub found and `bones hub repair store` has not cleared).
    #[serde(default = "PartHealth::ok")]
    pub store: PartHealth,
}

/// Body of `GET /.status`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusReport {
    /// `ok` or `degraded`.
    pub status: String,
    /// When this report was made, UTC RFC 3339.
    pub timestamp: String,
    pub pid: u32,
    pub uptime_s: u64,
    pub version: String,
    pub repo_port: u16,
    pub coord_port: u16,
    /// Full sha of `trunk`, absent when the repository could not be read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trunk_tip: Option<String>,
    /// Whether the JetStream API answered this request.
    pub jetstream: bool,
    pub parts: Parts,
    /// Names of the parts that failed, empty when `status` is `ok`.
    #[serde(default)]
    pub failed: Vec<String>,
}

impl StatusReport {
    pub fn is_ok(&self) -> bool {
        self.status == STATUS_OK
    }

    /// True when the hub serves: every part works, or only the `store`
    /// part fails. That one reports damage already done to the store; the
    /// hub has to run for `bones hub repair store` to undo it, so a start
    /// does not wait for it (nor stop the hub over it).
    pub fn is_ready(&self) -> bool {
        self.is_ok() || (!self.failed.is_empty() && self.failed.iter().all(|part| part == "store"))
    }
}
