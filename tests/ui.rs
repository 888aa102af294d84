//! The live view: the page in a real headless Chromium follows the swarm
//! without reloading, across a hub restart; its data needs the cookie that
//! `bones ui`'s one-time URL gives; the view model works from a client
//! process. Screenshots go to `target/ui-screenshots/`.

mod support;

use std::path::PathBuf;
use std::time::Duration;

use support::browser::{Browser, http};
use support::{TestWorkspace, commit, join, stdout};

fn screenshots() -> PathBuf {
    std::path::Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .unwrap()
        .join("ui-screenshots")
}

/// `bones ui --json`'s URL.
fn login_url(ws: &TestWorkspace) -> String {
    let out = ws.ok(&["ui", "--json"]);
    let answer: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    answer["url"].as_str().unwrap().to_string()
}

/// A script that is true when `selector` matches an element whose text
/// contains `text`.
fn shows(selector: &str, text: &str) -> String {
    format!(
        "return [...document.querySelectorAll({selector:?})].some(e => e.textContent.includes({text:?}));"
    )
}

#[test]
fn the_page_follows_the_swarm_live_and_across_a_hub_restart() {
    let ws = TestWorkspace::new();
    ws.start();
    let browser = Browser::start();
    browser.goto(&login_url(&ws));
    browser.wait_for(
        "a live connection",
        "return document.getElementById('connection').className === 'live' && !!document.body.dataset.seq;",
    );
    // a reload would lose this
    browser.eval("window.bonesMarker = 'still here'; return true;");
    let dir = screenshots();

    let checkout = join(&ws, "s1", "agent-one", &[]);
    browser.wait_for(
        "the joined slot",
        &shows("#slots tr[data-slot='s1']", "agent-one"),
    );
    browser.wait_for(
        "the slot's clean checkout, level with trunk",
        "const row = document.querySelector(\"#slots tr[data-slot='s1']\"); return !!row && row.querySelector('.changes').textContent === '0' && row.querySelector('.ahead-behind').textContent === '0 / 0';",
    );
    browser.screenshot(&dir, "1-slot-joined");

    // no slot verb says so: the view's slow rescan, while the page is open,
    // finds the edit
    std::fs::write(checkout.join("feature.txt"), "x\n").unwrap();
    browser.wait_for(
        "the slot's uncommitted file",
        "const row = document.querySelector(\"#slots tr[data-slot='s1']\"); return !!row && row.querySelector('.changes').textContent === '1';",
    );
    let out = commit(&ws, "s1", "add the feature file");
    assert!(out.status.success(), "{}", support::stderr(&out));
    browser.wait_for(
        "the landing on trunk, with its subject unquoted",
        &shows("#landings tr td:nth-child(2)", "add the feature file"),
    );
    browser.wait_for(
        "the slot's checkout, committed in full",
        "const row = document.querySelector(\"#slots tr[data-slot='s1']\"); return !!row && row.querySelector('.changes').textContent === '0';",
    );
    assert!(
        !browser
            .eval(&shows("#landings tr", "\"add the feature file\""))
            .as_bool()
            .unwrap()
    );
    browser.screenshot(&dir, "2-landed");

    let id = stdout(&ws.ok(&["tasks", "create", "write the docs"]))
        .trim()
        .to_string();
    browser.wait_for(
        "the new task as ready",
        &shows("[data-column='ready'] li", &id),
    );
    ws.ok(&["tasks", "claim", &id, "--slot", "s1"]);
    browser.wait_for(
        "the claimed task",
        &shows("[data-column='claimed'] li", &id),
    );
    assert!(
        browser
            .eval(&shows("#slots tr[data-slot='s1']", &id))
            .as_bool()
            .unwrap(),
        "the slot row names the task it holds"
    );
    browser.screenshot(&dir, "3-task-claimed");

    ws.ok(&["hub", "stop", "--force"]);
    browser.wait_for(
        "that the connection was lost",
        "return document.getElementById('connection').className === 'connecting';",
    );
    ws.start();
    let away = stdout(&ws.ok(&["tasks", "create", "made while the page was away"]))
        .trim()
        .to_string();
    browser.wait_for(
        "the task made while it was away",
        &shows("[data-column='ready'] li", &away),
    );
    browser.wait_for(
        "a live connection again",
        "return document.getElementById('connection').className === 'live';",
    );
    browser.wait_for(
        "the restarted hub as healthy",
        "return document.getElementById('hub-status').className === 'ok';",
    );
    browser.screenshot(&dir, "4-after-hub-restart");
    assert_eq!(
        browser.eval("return window.bonesMarker || null;"),
        serde_json::json!("still here"),
        "the page was reloaded instead of updated"
    );
}

#[test]
fn data_needs_the_cookie_from_a_one_time_url() {
    let ws = TestWorkspace::new();
    ws.start();
    let port = ws.repo_port();
    for path in [
        "/ui",
        "/ui/snapshot",
        "/ui/events",
        "/ui/app.js",
        "/ui/diff/0123456789012345678901234567890123456789",
    ] {
        let (status, _) = http(port, "GET", path, &[], None);
        assert_eq!(status, 401, "{path} without a cookie");
        let (status, _) = http(
            port,
            "GET",
            path,
            &[("Cookie", "bones_ui=v1.99999999999.00")],
            None,
        );
        assert_eq!(status, 401, "{path} with a forged cookie");
    }
    let (status, _) = http(port, "GET", "/.status", &[], None);
    assert_eq!(status, 200, "/.status stays open");

    let url = login_url(&ws);
    let path = &url[url.find("/ui/login").unwrap()..];
    let answer = raw_get(port, path);
    assert!(answer.starts_with("HTTP/1.1 303"), "{answer}");
    let cookie = answer
        .lines()
        .find_map(|l| l.strip_prefix("set-cookie: "))
        .expect("a session cookie");
    for attribute in ["HttpOnly", "SameSite=Strict", "Path=/"] {
        assert!(cookie.contains(attribute), "{cookie}");
    }
    let session = cookie.split(';').next().unwrap();
    // without JavaScript the page itself is a readable snapshot
    let id = stdout(&ws.ok(&["tasks", "create", "<b>escaped</b> title"]))
        .trim()
        .to_string();
    let (status, page) = http(port, "GET", "/ui", &[("Cookie", session)], None);
    assert_eq!(status, 200);
    assert!(
        page.contains(&format!("data-task=\"{id}\"")),
        "the server-rendered board lacks {id}: {page}"
    );
    assert!(page.contains("&lt;b&gt;escaped&lt;/b&gt; title"), "{page}");
    let (status, body) = http(port, "GET", "/ui/snapshot", &[("Cookie", session)], None);
    assert_eq!(status, 200);
    let snapshot: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert!(snapshot["tasks"].is_object(), "{snapshot}");

    // the secret was good once
    assert!(raw_get(port, path).starts_with("HTTP/1.1 401"));
    // another host name is refused before any of this (DNS rebinding)
    let (status, _) = http(
        port,
        "GET",
        "/ui/snapshot",
        &[("Host", "evil.example")],
        None,
    );
    assert_ne!(status, 200);
}

/// The answer's head and body as text, for reading headers.
fn raw_get(port: u16, path: &str) -> String {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut text = String::new();
    stream.read_to_string(&mut text).unwrap();
    text
}

#[test]
fn a_client_process_builds_the_same_picture_and_stops_when_unwatched() {
    let ws = TestWorkspace::new();
    // landings reach the view even when hub.log does not record them
    ws.ok(&["hub", "start", "--detach", "--log-level", "warn"]);
    let runtime = support::runtime();
    let linger = Duration::from_millis(200);
    let view = bones::view::View::with_linger(
        ws.paths(),
        bones::view::ClientConnector(ws.paths()),
        linger,
    );
    assert!(!view.is_running(), "nothing runs before a subscriber");
    runtime.block_on(async {
        let mut subscription = view.subscribe();
        assert!(view.is_running());
        let checkout = join(&ws, "s2", "agent-two", &[]);
        let seen = tokio::time::timeout(Duration::from_secs(60), async {
            loop {
                subscription.next().await;
                if subscription.snapshot().slots.contains_key("s2") {
                    break;
                }
            }
        })
        .await;
        assert!(seen.is_ok(), "the slot never reached the view");
        let snapshot = subscription.snapshot();
        assert_eq!(
            snapshot.slots["s2"].lease.as_ref().unwrap().agent,
            "agent-two"
        );

        std::fs::write(checkout.join("quiet.txt"), "x\n").unwrap();
        let out = commit(&ws, "s2", "land without a log line");
        assert!(out.status.success(), "{}", support::stderr(&out));
        let landed = tokio::time::timeout(Duration::from_secs(60), async {
            loop {
                let seen = subscription.snapshot().landings.iter().any(|l| {
                    l.slot.as_deref() == Some("s2") && l.subject == "land without a log line"
                });
                if seen {
                    break;
                }
                subscription.next().await;
            }
        })
        .await;
        assert!(landed.is_ok(), "the landing never reached the view");
        assert!(
            !ws.hub_log().contains("landed"),
            "at level warn hub.log records no landing"
        );
    });
    // the last subscriber left: the followers stop after the linger
    let stopped = runtime
        .block_on(async { tokio::time::timeout(Duration::from_secs(30), view.idle()).await });
    assert!(
        stopped.is_ok() && !view.is_running(),
        "the followers still run with no subscriber"
    );
}
