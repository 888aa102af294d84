//! hub.log receives what the hub's libraries report: a coordination server
//! killed under the hub's own client shows as async-nats's disconnect, a
//! WARN entry, and its reconnect as INFO.

mod support;

use std::time::Duration;

use support::{Signal, TestWorkspace, send_signal, wait_until};

/// The hub.log entries whose `msg` starts with `prefix`, as (level, msg).
fn entries_from(ws: &TestWorkspace, prefix: &str) -> Vec<(String, String)> {
    ws.hub_log()
        .lines()
        .filter_map(|line| {
            let v: serde_json::Value = serde_json::from_str(line).ok()?;
            let msg = v["msg"].as_str()?;
            msg.starts_with(prefix).then(|| {
                (
                    v["level"].as_str().unwrap_or_default().to_string(),
                    msg.to_string(),
                )
            })
        })
        .collect()
}

#[test]
fn a_lost_coordination_server_shows_as_the_nats_clients_warning_in_hub_log() {
    let ws = TestWorkspace::new();
    ws.start();
    let first = ws.nats_pid().expect("the coordination server runs");
    assert!(
        entries_from(&ws, "async_nats: event: disconnected").is_empty(),
        "{}",
        ws.hub_log()
    );
    send_signal(first, Signal::SIGKILL);
    assert!(
        wait_until(Duration::from_secs(20), || {
            entries_from(&ws, "async_nats: event: connected").len() >= 2
        }),
        "the hub's client did not report its reconnect:\n{}",
        ws.hub_log()
    );
    let disconnects = entries_from(&ws, "async_nats: event: disconnected");
    assert!(
        disconnects.iter().any(|(level, _)| level == "WARN"),
        "{disconnects:?}\n{}",
        ws.hub_log()
    );
    ws.stop();
    assert!(ws.processes().is_empty());
}
