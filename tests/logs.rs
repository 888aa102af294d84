//! `bones logs --hub`: reading, filtering and following hub.log.

mod support;

use std::fs::{self, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::process::Stdio;
use std::sync::mpsc;
use std::time::Duration;

use bones::oplog::{HubLog, LogConfig, LogLevel};
use bones::sys::clock::format_rfc3339;
use support::{Signal, TestWorkspace, send_signal, stderr, stdout};
use time::OffsetDateTime;

fn entry(at: OffsetDateTime, level: &str, event: &str, msg: &str) -> String {
    serde_json::json!({"ts": format_rfc3339(at), "level": level, "event": event, "msg": msg})
        .to_string()
}

fn write_lines(ws: &TestWorkspace, name: &str, lines: &[String]) {
    let text: String = lines.iter().map(|l| format!("{l}\n")).collect();
    fs::write(ws.state_dir().join(name), text).unwrap();
}

fn logs(ws: &TestWorkspace, args: &[&str]) -> (Vec<String>, String) {
    let mut all = vec!["logs", "--hub"];
    all.extend_from_slice(args);
    let out = ws.run(&all);
    assert!(out.status.success(), "{args:?}: {}", stderr(&out));
    (
        stdout(&out).lines().map(String::from).collect(),
        stderr(&out),
    )
}

/// A log over three files: 30 entries, one every minute up to now.
fn rotated_log(ws: &TestWorkspace) -> Vec<String> {
    let now = OffsetDateTime::now_utc();
    let lines: Vec<String> = (0..30)
        .map(|i| {
            let at = now - time::Duration::minutes(29 - i);
            let (level, event) = match i % 5 {
                0 => ("ERROR", "error"),
                1 => ("WARN", "rpc"),
                2 => ("DEBUG", "hook"),
                _ => ("INFO", "lifecycle"),
            };
            entry(at, level, event, &format!("entry {i:02}"))
        })
        .collect();
    write_lines(ws, "hub.log.2", &lines[0..10]);
    write_lines(ws, "hub.log.1", &lines[10..20]);
    write_lines(ws, "hub.log", &lines[20..30]);
    lines
}

#[test]
fn json_reads_rotated_files_oldest_first_byte_for_byte() {
    let ws = TestWorkspace::new();
    let lines = rotated_log(&ws);
    let (out, err) = logs(&ws, &["--json"]);
    assert_eq!(out, lines);
    assert!(err.is_empty(), "{err}");
    // unusual but valid JSON is passed through untouched
    let odd = r#"{ "event" : "rpc",  "ts":"2026-01-01T00:00:00Z","level":"info", "msg":"caf\u00e9 ✓", "x":[1 , 2]}"#;
    let mut file = OpenOptions::new()
        .append(true)
        .open(ws.state_dir().join("hub.log"))
        .unwrap();
    writeln!(file, "{odd}").unwrap();
    let (out, _) = logs(&ws, &["--json", "--last", "1"]);
    assert_eq!(out, vec![odd.to_string()]);
}

#[test]
fn never_starts_a_hub_and_is_quiet_without_a_log() {
    let ws = TestWorkspace::new();
    let (out, err) = logs(&ws, &[]);
    assert!(out.is_empty() && err.is_empty());
    assert!(ws.hub_pid().is_none());
    assert!(!ws.state_dir().join("hub.git").exists());
    assert!(ws.processes().is_empty());
}

#[test]
fn reads_a_live_hub_log() {
    let ws = TestWorkspace::new();
    ws.start();
    let (out, _) = logs(&ws, &["--event", "lifecycle"]);
    assert!(out.iter().any(|l| l.contains("hub: ready")), "{out:?}");
    assert!(
        out.iter()
            .all(|l| l.contains("INFO") && l.contains("lifecycle"))
    );
}

#[test]
fn level_is_a_floor() {
    let ws = TestWorkspace::new();
    rotated_log(&ws);
    let (out, _) = logs(&ws, &["--level", "warn", "--json"]);
    assert_eq!(out.len(), 12);
    assert!(
        out.iter()
            .all(|l| l.contains("\"WARN\"") || l.contains("\"ERROR\""))
    );
    let (out, _) = logs(&ws, &["--level", "error", "--json"]);
    assert_eq!(out.len(), 6);
    let (out, _) = logs(&ws, &["--level", "debug", "--json"]);
    assert_eq!(out.len(), 30);
}

#[test]
fn event_is_repeatable() {
    let ws = TestWorkspace::new();
    rotated_log(&ws);
    let (out, _) = logs(&ws, &["--event", "rpc", "--event", "hook", "--json"]);
    assert_eq!(out.len(), 12);
    assert!(
        out.iter()
            .all(|l| l.contains("\"rpc\"") || l.contains("\"hook\""))
    );
}

#[test]
fn since_takes_a_duration_or_a_time() {
    let ws = TestWorkspace::new();
    let lines = rotated_log(&ws);
    let (out, _) = logs(&ws, &["--since", "10m", "--json"]);
    // entries 20..29 are 9..0 minutes old; entry 19 is 10 minutes old give or take a second
    assert!(out.len() == 10 || out.len() == 11, "{}", out.len());
    assert_eq!(out.last(), lines.last());
    let cutoff: serde_json::Value = serde_json::from_str(&lines[25]).unwrap();
    let (out, _) = logs(&ws, &["--since", cutoff["ts"].as_str().unwrap(), "--json"]);
    assert_eq!(out, lines[25..].to_vec());
    let out = ws.run(&["logs", "--hub", "--since", "yesterday"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("RFC 3339"), "{}", stderr(&out));
}

#[test]
fn last_counts_after_filtering() {
    let ws = TestWorkspace::new();
    let lines = rotated_log(&ws);
    let (out, _) = logs(&ws, &["--last", "3", "--json"]);
    assert_eq!(out, lines[27..].to_vec());
    let (out, _) = logs(&ws, &["--last", "2", "--level", "error", "--json"]);
    assert_eq!(out, vec![lines[20].clone(), lines[25].clone()]);
    let (out, _) = logs(&ws, &["--last", "0"]);
    assert!(out.is_empty());
    let (out, _) = logs(&ws, &["--last", "1000", "--json"]);
    assert_eq!(out.len(), 30);
}

#[test]
fn grep_matches_msg_or_err_and_combines_with_other_filters() {
    let ws = TestWorkspace::new();
    let now = OffsetDateTime::now_utc();
    let lines = vec![
        entry(now, "INFO", "lifecycle", "hub: ready"),
        serde_json::json!({"ts": format_rfc3339(now), "level": "WARN", "event": "rpc", "rpc": "tasks.claim", "err": "already claimed by agent-2"}).to_string(),
        entry(now, "ERROR", "lifecycle", "claim store unavailable"),
        entry(now, "INFO", "rpc", "claim ok"),
    ];
    write_lines(&ws, "hub.log", &lines);
    let (out, _) = logs(&ws, &["--grep", "claim", "--json"]);
    assert_eq!(out, lines[1..].to_vec());
    let (out, _) = logs(
        &ws,
        &[
            "--grep", "claim", "--level", "warn", "--event", "rpc", "--json",
        ],
    );
    assert_eq!(out, vec![lines[1].clone()]);
}

#[test]
fn human_lines_are_aligned_and_show_the_set_fields() {
    let ws = TestWorkspace::new();
    let lines = vec![
        r#"{"ts":"2026-11-23T09:43:10Z","level":"INFO","event":"lifecycle","msg":"hub: ready"}"#.to_string(),
        r#"{"ts":"2026-11-23T09:43:11Z","level":"WARN","event":"rpc","rpc":"tasks.claim","agent":"agent-1","task":"bn-7","took_ms":812,"err":"claimed by agent 2"}"#.to_string(),
        "{\"ts\":\"2026-11-23T09:43:12Z\",\"level\":\"INFO\",\"event\":\"lifecycle\",\"msg\":\"evil \\u001b[31m\"}".to_string(),
    ];
    write_lines(&ws, "hub.log", &lines);
    let (out, _) = logs(&ws, &["--utc"]);
    assert_eq!(out[0], "2026-11-23T09:43:10Z  INFO   lifecycle  hub: ready");
    assert_eq!(
        out[1],
        "2026-11-23T09:43:11Z  WARN   rpc        rpc=tasks.claim  agent=agent-1  task=bn-7  took_ms=812  err=\"claimed by agent 2\""
    );
    assert!(
        !out[2].contains('\u{1b}'),
        "no raw escape reaches the terminal: {:?}",
        out[2]
    );
    // local time: same layout, no colour when piped
    let (out, _) = logs(&ws, &[]);
    assert!(
        out[0].ends_with("INFO   lifecycle  hub: ready"),
        "{}",
        out[0]
    );
    assert!(out.iter().all(|l| !l.contains("\u{1b}[")));
}

#[test]
fn bad_lines_are_skipped_and_counted_and_a_torn_tail_is_silent() {
    let ws = TestWorkspace::new();
    let now = OffsetDateTime::now_utc();
    let good = entry(now, "INFO", "lifecycle", "good");
    let mut bytes = Vec::new();
    bytes.extend_from_slice(format!("{good}\n").as_bytes());
    bytes.extend_from_slice(b"plain text from somewhere\n");
    bytes.extend_from_slice(b"\xff\xfe invalid utf-8 \x00 with nul\n");
    bytes.extend_from_slice(b"\n");
    bytes.extend_from_slice(&vec![b'{'; 3 << 20]);
    bytes.extend_from_slice(b"\n");
    bytes.extend_from_slice(format!("{good}\n").as_bytes());
    bytes.extend_from_slice(br#"{"ts":"2026-11-23T09:43:1"#);
    fs::write(ws.state_dir().join("hub.log"), bytes).unwrap();
    let (out, err) = logs(&ws, &["--json"]);
    assert_eq!(out, vec![good.clone(), good]);
    assert_eq!(err.trim(), "bones: skipped 3 malformed lines");
}

#[test]
fn outside_a_workspace_it_names_bones_up() {
    let ws = TestWorkspace::bare_dir();
    let out = ws.run(&["logs", "--hub"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("bones up"));
}

/// Reads the follower's stdout on a thread so the test can wait with a deadline.
fn lines_of(child: &mut std::process::Child) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    let stdout = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

fn expect_line(rx: &mpsc::Receiver<String>, want: &str) {
    let got = rx
        .recv_timeout(Duration::from_secs(10))
        .unwrap_or_else(|_| panic!("no line while waiting for {want:?}"));
    assert!(got.contains(want), "expected {want:?}, got {got:?}");
}

#[test]
fn follow_prints_new_entries_across_a_rotation_exactly_once() {
    let mut ws = TestWorkspace::new();
    let log = HubLog::open(
        ws.state_dir().join("hub.log"),
        LogConfig {
            floor: LogLevel::Info,
            max_size: 400,
            // enough backups that no file is rotated out of existence here
            max_files: 5,
        },
    );
    log.info("before follow");
    let mut child = ws
        .command(&["logs", "--hub", "-f", "--json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    ws.track(child.id());
    let rx = lines_of(&mut child);
    expect_line(&rx, "before follow");

    let mut seen = Vec::new();
    // 400-byte files rotate every few entries, so several rotations
    // happen between two polls of the follower
    for i in 0..12 {
        log.info(format!("entry {i:02}"));
        seen.push(format!("entry {i:02}"));
    }
    assert!(ws.state_dir().join("hub.log.1").exists(), "the log rotated");
    for want in &seen {
        expect_line(&rx, want);
    }
    assert!(
        rx.recv_timeout(Duration::from_millis(300)).is_err(),
        "no entry printed twice"
    );
    send_signal(child.id(), Signal::SIGINT);
    let status = child.wait().unwrap();
    assert!(status.success(), "ends cleanly on SIGINT: {status}");
}

#[test]
fn follow_holds_a_partial_line_until_complete() {
    let mut ws = TestWorkspace::new();
    let path = ws.state_dir().join("hub.log");
    fs::write(&path, "").unwrap();
    let mut child = ws
        .command(&["logs", "--hub", "--follow", "--json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    ws.track(child.id());
    let rx = lines_of(&mut child);
    let line = entry(
        OffsetDateTime::now_utc(),
        "INFO",
        "lifecycle",
        "slowly written",
    );
    let (first, second) = line.split_at(line.len() / 2);
    let mut file = OpenOptions::new().append(true).open(&path).unwrap();
    file.write_all(first.as_bytes()).unwrap();
    file.flush().unwrap();
    assert!(
        rx.recv_timeout(Duration::from_millis(400)).is_err(),
        "a torn line is never printed"
    );
    file.write_all(format!("{second}\n").as_bytes()).unwrap();
    file.flush().unwrap();
    let got = rx.recv_timeout(Duration::from_secs(10)).unwrap();
    assert_eq!(got, line);
    send_signal(child.id(), Signal::SIGTERM);
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
}
