//! One JSON vocabulary (issue 17 point 5): every field name of every
//! `--json` output and hub.log entry of a whole agent loop is listed in
//! docs/json.md, every document carries `schema`, and a failure with
//! `--json` is one JSON error document on stderr with the exit code.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::process::Output;

use support::{TestWorkspace, stderr, stdout};

/// The field names docs/json.md's tables list: every backticked name in
/// the first cell of a table row.
fn documented() -> BTreeSet<String> {
    let doc = fs::read_to_string("docs/json.md").unwrap();
    let mut names = BTreeSet::new();
    for line in doc.lines() {
        let Some(row) = line.strip_prefix('|') else {
            continue;
        };
        let first = row.split('|').next().unwrap_or_default();
        for (i, part) in first.split('`').enumerate() {
            if i % 2 == 1 && !part.is_empty() {
                names.insert(part.to_string());
            }
        }
    }
    assert!(names.len() > 20, "docs/json.md lists no fields: {names:?}");
    names
}

/// Every key of every object in `value`, each with where it was seen.
fn collect(value: &serde_json::Value, from: &str, seen: &mut BTreeMap<String, BTreeSet<String>>) {
    match value {
        serde_json::Value::Object(object) => {
            for (key, inner) in object {
                seen.entry(key.clone())
                    .or_default()
                    .insert(from.to_string());
                collect(inner, from, seen);
            }
        }
        serde_json::Value::Array(items) => {
            for item in items {
                collect(item, from, seen);
            }
        }
        _ => {}
    }
}

/// The JSON documents on stdout: one, or one per line (NDJSON).
fn documents(out: &Output) -> Vec<serde_json::Value> {
    let text = stdout(out);
    if let Ok(one) = serde_json::from_str(&text) {
        return vec![one];
    }
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect()
}

/// Asserts every document has `schema` (on each object of a list).
fn assert_schema(docs: &[serde_json::Value], what: &str) {
    for doc in docs {
        let objects: Vec<&serde_json::Value> = match doc {
            serde_json::Value::Array(items) => items.iter().collect(),
            other => vec![other],
        };
        for object in objects {
            assert_eq!(object["schema"], 1, "{what}: no schema in {object}");
        }
    }
}

#[test]
fn every_field_of_a_whole_agent_loop_is_in_docs_json_md() {
    let ws = TestWorkspace::new();
    let mut seen = BTreeMap::new();
    let mut json = |args: &[&str]| -> Output {
        let out = ws.ok(args);
        let docs = documents(&out);
        assert!(!docs.is_empty(), "{args:?} printed no JSON");
        let what = args.join(" ");
        // `logs --json` passes hub.log's lines through byte for byte: log
        // entries, which carry no schema (docs/json.md)
        if args[0] != "logs" {
            assert_schema(&docs, &what);
        }
        for doc in &docs {
            collect(doc, &what, &mut seen);
        }
        out
    };
    json(&["up", "--json"]);
    ws.start();
    json(&["hub", "status", "--json"]);
    let joined = json(&[
        "swarm", "join", "--slot", "alpha", "--agent", "agent-a", "--json",
    ]);
    let checkout = documents(&joined)[0]["path"].as_str().unwrap().to_string();
    json(&["swarm", "cwd", "--slot", "alpha", "--json"]);
    json(&["swarm", "renew", "--slot", "alpha", "--json"]);
    let created = json(&["tasks", "create", "Write the parser", "--json"]);
    let id = documents(&created)[0]["id"].as_str().unwrap().to_string();
    json(&["tasks", "ready", "--json"]);
    json(&["tasks", "claim", &id, "--slot", "alpha", "--json"]);
    json(&["tasks", "list", "--json"]);
    json(&["tasks", "show", &id, "--json"]);
    fs::write(format!("{checkout}/parser.rs"), "fn parse() {}\n").unwrap();
    json(&[
        "swarm",
        "commit",
        "--slot",
        "alpha",
        "-m",
        "Add the parser",
        "--json",
    ]);
    json(&["swarm", "sync", "--slot", "alpha", "--json"]);
    json(&[
        "tasks", "close", &id, "--slot", "alpha", "--reason", "done", "--json",
    ]);
    json(&[
        "share",
        "--type",
        "learning",
        "--slot",
        "alpha",
        "The parser needs LANG=C",
        "--json",
    ]);
    json(&["feed", "--json"]);
    json(&["feed", "--prime", "--json"]);
    json(&["swarm", "status", "--json"]);
    json(&["prime", "--slot", "alpha", "--json"]);
    json(&["hub", "status", "--all", "--json"]);
    json(&["hub", "reap", "--dry-run", "--json"]);
    json(&["integrate", "claude-code", "--dry-run", "--json"]);
    json(&["swarm", "close", "--slot", "alpha", "--json"]);
    json(&["doctor", "--json"]);
    json(&["logs", "--hub", "--json"]);

    // a failure with --json: one error document on stderr, same exit code
    let out = ws.run(&["tasks", "show", "t-nosuch00", "--json"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stdout(&out).is_empty(), "{}", stdout(&out));
    let lines: Vec<&str> = std::str::from_utf8(&out.stderr).unwrap().lines().collect();
    assert_eq!(lines.len(), 1, "{lines:?}");
    let error: serde_json::Value = serde_json::from_str(lines[0]).unwrap();
    assert_eq!(error["schema"], 1, "{error}");
    assert_eq!(error["error"]["code"], 1, "{error}");
    assert_eq!(error["error"]["kind"], "not_found", "{error}");
    assert!(
        error["error"]["message"]
            .as_str()
            .unwrap()
            .contains("t-nosuch00")
    );
    collect(&error, "an error with --json", &mut seen);
    // a usage error too, though clap refused the command line
    let out = ws.run(&["tasks", "claim", "--json", "--bogus"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let error: serde_json::Value = serde_json::from_slice(&out.stderr)
        .unwrap_or_else(|e| panic!("not one JSON error ({e}): {}", stderr(&out)));
    assert_eq!(error["error"]["kind"], "usage", "{error}");
    assert!(
        error["error"]["hint"].as_str().unwrap().contains("--help"),
        "{error}"
    );

    ws.stop();
    let (_, stopped) = ws.status();
    collect(&stopped, "hub status --json (stopped)", &mut seen);
    for line in ws.hub_log().lines() {
        let entry: serde_json::Value = serde_json::from_str(line).unwrap();
        collect(&entry, "hub.log", &mut seen);
    }
    // the loop wrote the entries the vocabulary names
    let log = ws.hub_log();
    assert!(log.contains("\"rpc\":\"tasks.claim\""), "{log}");
    assert!(log.contains("\"by\":\"alpha\""), "{log}");

    let known = documented();
    let unknown: Vec<String> = seen
        .iter()
        .filter(|(name, _)| !known.contains(*name))
        .map(|(name, from)| {
            format!(
                "{name} (in {})",
                from.iter().cloned().collect::<Vec<_>>().join("; ")
            )
        })
        .collect();
    assert!(
        unknown.is_empty(),
        "fields missing from docs/json.md:\n{}",
        unknown.join("\n")
    );
}

/// The `kind` of a `--json` failure of `bones tasks list`, without
/// starting a hub on demand.
fn failure_kind(ws: &TestWorkspace) -> (Option<i32>, String) {
    let out = ws
        .command(&["tasks", "list", "--json"])
        .env("BONES_NO_AUTOSTART", "1")
        .output()
        .unwrap();
    let error: serde_json::Value = serde_json::from_slice(&out.stderr)
        .unwrap_or_else(|e| panic!("not one JSON error ({e}): {}", stderr(&out)));
    (
        out.status.code(),
        error["error"]["kind"]
            .as_str()
            .unwrap_or_default()
            .to_string(),
    )
}

/// Issue 14: a caller tells a coordination server that does not answer
/// (`timeout`) from no hub at all (`no_hub`); both exit 1.
#[test]
fn a_script_tells_a_silent_hub_from_no_hub() {
    let ws = TestWorkspace::new();
    ws.start();
    let nats = ws.nats_pid().unwrap();
    support::freeze(nats);
    let silent = failure_kind(&ws);
    support::send_signal(nats, support::Signal::SIGCONT);
    assert_eq!(silent, (Some(1), "timeout".to_string()));
    ws.stop();
    assert_eq!(failure_kind(&ws), (Some(1), "no_hub".to_string()));
}
