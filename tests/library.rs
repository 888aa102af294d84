//! The hub as a library: options, outcomes and the self-signal guard.

mod support;

use bones::hub;
use bones::hub::{HubError, StartOptions, StartOutcome, StopOptions, StopOutcome};
use bones::state::HubRecord;
use support::TestWorkspace;

#[test]
fn library_start_and_stop_report_what_they_did() {
    let ws = TestWorkspace::new();
    if let Some(nats) = support::nats_server() {
        // SAFETY: set once before any thread of this test binary reads it.
        unsafe { std::env::set_var("BONES_NATS_SERVER", nats) };
    }
    let opts = StartOptions {
        detach: true,
        program: Some(support::BONES.into()),
        ..StartOptions::default()
    };
    let outcome = hub::start(&ws.root, &opts).unwrap();
    let StartOutcome::Started { pid, ports } = outcome else {
        panic!("expected Started, got {outcome:?}");
    };
    assert!(hub::is_running(&ws.root));
    assert_eq!(
        hub::repo_url(&ws.root),
        Some(format!("http://127.0.0.1:{}", ports.repo))
    );
    assert_eq!(
        hub::nats_url(&ws.root),
        Some(format!("nats://127.0.0.1:{}", ports.coord))
    );
    assert_eq!(
        hub::hub_repo_path(&ws.root).unwrap(),
        ws.state_dir().join("hub.git")
    );
    match hub::start(&ws.root, &opts).unwrap() {
        StartOutcome::AlreadyRunning(record) => assert_eq!(record.pid, pid),
        other => panic!("expected AlreadyRunning, got {other:?}"),
    }
    let stopped = hub::stop(&ws.root, &StopOptions::default()).unwrap();
    assert_eq!(stopped, StopOutcome::Stopped { pid, killed: false });
    assert!(!hub::is_running(&ws.root));
}

#[test]
fn stop_never_signals_the_calling_process() {
    let ws = TestWorkspace::new();
    let me = std::process::id();
    // this process is the hub: it holds the run lock, as a hub does
    let _run_lock = bones::state::lock::RunLock::try_acquire(&ws.paths().run_lock)
        .unwrap()
        .unwrap();
    let record = HubRecord {
        pid: me,
        start_time: bones::sys::process::own_start_time(),
        repo_port: 1,
        coord_port: 2,
        version: "test".into(),
        started_at: "2026-01-01T00:00:00Z".into(),
        state_dir: Some(bones::state::record::StateDirId::of(&ws.state_dir()).unwrap()),
    };
    record.write(&ws.paths()).unwrap();
    let err = hub::stop(&ws.root, &StopOptions::default()).unwrap_err();
    assert!(
        matches!(err, HubError::SelfSignal(pid) if pid == me),
        "{err}"
    );
    assert!(ws.state_dir().join("hub.pid").exists());
}
