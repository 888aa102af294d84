//! `hub stop` refuses while slots hold live leases in `bones-swarm-sessions`.
//! Slots come later; the leases are written through the library here.

mod support;

use bones::lease::{self, Lease};
use support::{TestWorkspace, alive, stderr};
use time::OffsetDateTime;

fn write_lease(ws: &TestWorkspace, slot: &str, renewed: OffsetDateTime, ttl_s: u64) {
    support::runtime().block_on(async {
        let js = ws.jetstream().await;
        let at = bones::sys::clock::format_rfc3339(renewed);
        lease::put(
            &js,
            &Lease {
                slot: slot.to_string(),
                agent_id: format!("agent-{slot}"),
                task_id: Some("bn-1".into()),
                host: "test".into(),
                started_at: at.clone(),
                last_renewed: at,
                ttl_s,
                pid: None,
                pid_start: None,
            },
        )
        .await
        .unwrap();
    });
}

#[test]
fn stop_refuses_with_live_leases_and_names_the_slots() {
    let ws = TestWorkspace::new();
    ws.start();
    let pid = ws.hub_pid().unwrap();
    let now = OffsetDateTime::now_utc();
    write_lease(&ws, "beta", now, 300);
    write_lease(&ws, "alpha", now, 300);
    write_lease(&ws, "expired", now - time::Duration::minutes(10), 300);

    let out = ws.run(&["hub", "stop"]);
    assert_eq!(out.status.code(), Some(4), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("alpha, beta"), "{err}");
    assert!(
        !err.contains("expired"),
        "an expired lease does not block: {err}"
    );
    assert!(err.contains("--force"), "{err}");
    assert!(alive(pid), "nothing was touched");
    assert_eq!(ws.hub_pid(), Some(pid));

    let out = ws.ok(&["hub", "stop", "--force"]);
    assert!(stderr(&out).contains("stopped"));
    assert!(!alive(pid));
}

#[test]
fn stop_proceeds_when_every_lease_has_expired() {
    let ws = TestWorkspace::new();
    ws.start();
    write_lease(
        &ws,
        "old",
        OffsetDateTime::now_utc() - time::Duration::hours(1),
        60,
    );
    ws.ok(&["hub", "stop"]);
    assert!(ws.hub_pid().is_none());
}

#[test]
fn leases_survive_a_restart() {
    let ws = TestWorkspace::new();
    ws.start();
    write_lease(&ws, "keeper", OffsetDateTime::now_utc(), 300);
    ws.ok(&["hub", "stop", "--force"]);
    ws.start();
    let out = ws.run(&["hub", "stop"]);
    assert_eq!(out.status.code(), Some(4), "the lease persisted in coord/");
    assert!(stderr(&out).contains("keeper"));
}
