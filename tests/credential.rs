//! The coordination credential (adr/0010): what another local user can get
//! from the hub's clients, and what it is worth.
//!
//! * When nats-server dies and another user takes its port before the hub
//!   restarts it, no bones client answers that user (the hub's own client
//!   waits and says why in hub.log).
//! * A listener that accepted a connection and went away is still found at
//!   the far end of it, and is not answered either.
//! * An exchange captured on the way to the real server does not open it
//!   again: the key answers one challenge at a time.
//! * A workspace made by an older bones (a token, no key) gets a key at the
//!   next start, and the token stops working.
//!
//! The other user is `nobody` (uid 65534), a real unprivileged process;
//! where this process cannot become it (not root) those tests say so and
//! check nothing.

mod support;

use std::fs;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bones::coord;
use bones::coord::credential;
use bones::coord::credential::Guard;
use support::{Impostor, Signal, TestWorkspace, send_signal, stderr, wait_until};

/// hub.log's WARN that the hub's client found its port held (the hub's
/// own entry, not async-nats's forwarded report of the refused answer).
fn held_warnings(ws: &TestWorkspace) -> usize {
    ws.log_messages()
        .iter()
        .filter(|m| m.starts_with("hub: ") && m.contains("is held by another user (uid 65534)"))
        .count()
}

#[test]
fn a_crashed_servers_port_taken_by_another_user_is_never_answered() {
    let ws = TestWorkspace::new();
    ws.start();
    ws.ok(&["tasks", "create", "before the crash"]);
    let coord = ws.coord_port();
    let Some(mut impostor) = Impostor::race(coord) else {
        return;
    };
    // a crash (the OOM killer, say): the hub restarts its server after a
    // backoff, and the other user binds the port first
    let pid = ws.nats_pid().expect("the coordination server runs");
    send_signal(pid, Signal::SIGKILL);
    assert!(
        wait_until(Duration::from_secs(10), || impostor.holds_port()),
        "the other user never got the port"
    );
    // the hub's client reconnects: it must notice and wait (the WARN), not
    // answer (a CONNECT line at the impostor)
    let settled = wait_until(Duration::from_secs(30), || {
        held_warnings(&ws) > 0 || !impostor.connects().is_empty()
    });
    assert!(
        settled,
        "neither a warning nor an answer:\n{}",
        ws.hub_log()
    );
    // a command now is refused before it connects
    let out = ws.run(&["tasks", "list"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("another user (uid 65534)"),
        "{}",
        stderr(&out)
    );
    impostor.stop();
    let connects = impostor.connects();
    assert!(
        connects.is_empty(),
        "a client answered the other user's listener: {connects:?}"
    );

    // the hub gets its port back once the other user lets go, warned once
    // for the whole episode, and serves on
    assert!(
        wait_until(Duration::from_secs(30), || ws.status().0 == 0),
        "the hub did not come back:\n{}",
        ws.hub_log()
    );
    assert_eq!(held_warnings(&ws), 1, "{}", ws.hub_log());
    let listed = ws.ok(&["tasks", "list", "--json"]);
    assert!(support::stdout(&listed).contains("before the crash"));
    // and nothing it received opens the real server
    for line in impostor.connects() {
        let answer = support::nats_handshake(coord, &line);
        assert_ne!(answer, "PONG", "{line} opened the server");
    }
}

#[test]
fn a_connection_another_user_accepted_is_not_answered_after_its_listener_is_gone() {
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let Some(mut impostor) = Impostor::race_closing_listener(port) else {
        return;
    };
    assert!(wait_until(Duration::from_secs(10), || impostor.holds_port()));
    let tmp = tempfile::tempdir().unwrap();
    let paths = bones::state::Paths::new(&bones::state::workspace::Workspace {
        root: tmp.path().to_path_buf(),
        state_dir: tmp.path().to_path_buf(),
    });
    let (key, _) = credential::ensure(&paths).unwrap();
    // the client alone, without the look before connecting that
    // `coord::connect` takes: the one before answering must hold by itself
    let guard = Guard::new(port);
    let connected = support::runtime().block_on(
        coord::client_options(key, guard.clone())
            .max_reconnects(Some(1))
            .connect(format!("nats://127.0.0.1:{port}").as_str()),
    );
    assert!(connected.is_err(), "connected to the other user");
    assert_eq!(impostor.accepted(), 1);
    assert!(
        !bones::state::ports::loopback_listener_uids(port).contains(&65534),
        "its listener is gone; only the accepted connection is left"
    );
    assert_eq!(guard.refused(), Some(65534));
    impostor.stop();
    assert_eq!(impostor.connects(), Vec::<String>::new());
}

/// A relay of this user between clients and `target`, keeping every byte
/// the clients send.
struct Relay {
    port: u16,
    sent: Arc<Mutex<Vec<u8>>>,
    stop: Arc<AtomicBool>,
}

impl Relay {
    fn start(target: u16) -> Relay {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let sent = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (kept, stopping) = (sent.clone(), stop.clone());
        std::thread::spawn(move || {
            for client in listener.incoming() {
                if stopping.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(client) = client else { return };
                let server = TcpStream::connect(("127.0.0.1", target)).unwrap();
                let (mut from_server, mut to_client) = (server.try_clone().unwrap(), client);
                let mut from_client = to_client.try_clone().unwrap();
                let mut to_server = server;
                let kept = kept.clone();
                std::thread::spawn(move || {
                    let _ = std::io::copy(&mut from_server, &mut to_client);
                    let _ = to_client.shutdown(std::net::Shutdown::Both);
                });
                std::thread::spawn(move || {
                    let mut buf = [0u8; 16 * 1024];
                    while let Ok(n) = from_client.read(&mut buf) {
                        if n == 0 || to_server.write_all(&buf[..n]).is_err() {
                            break;
                        }
                        kept.lock().unwrap().extend_from_slice(&buf[..n]);
                    }
                    let _ = to_server.shutdown(std::net::Shutdown::Both);
                });
            }
        });
        Relay { port, sent, stop }
    }

    fn connect_lines(&self) -> Vec<String> {
        String::from_utf8_lossy(&self.sent.lock().unwrap())
            .lines()
            .filter(|l| l.starts_with("CONNECT "))
            .map(|l| l.trim_end().to_string())
            .collect()
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // wake the accept loop so that it sees the flag
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

#[test]
fn a_captured_answer_does_not_open_the_server_again() {
    let ws = TestWorkspace::new();
    ws.start();
    let coord = ws.coord_port();
    // a bones command's real exchange with the real server, recorded on
    // the way (by this user: the command talks to it)
    let relay = Relay::start(coord);
    let url_file = ws.state_dir().join("hub-nats-url");
    let url = fs::read_to_string(&url_file).unwrap();
    fs::write(&url_file, format!("nats://127.0.0.1:{}\n", relay.port)).unwrap();
    let out = ws.run(&["tasks", "create", "through the relay"]);
    fs::write(&url_file, url).unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let captured = relay.connect_lines();
    assert_eq!(captured.len(), 1, "{captured:?}");
    let connect = &captured[0];
    let seed = ws.read_state("nats.seed");
    assert!(
        connect.contains(r#""nkey":"U"#) && connect.contains(r#""sig":"#),
        "{connect}"
    );
    assert!(!connect.contains(seed.trim()), "{connect}");
    assert!(!connect.contains(r#""auth_token":""#), "{connect}");

    // replayed, it answers a challenge the server no longer asks
    for _ in 0..2 {
        let answer = support::nats_handshake(coord, connect);
        assert!(
            answer.contains("Authorization Violation"),
            "a replayed answer was let in: {answer}"
        );
    }
    let listed = ws.ok(&["tasks", "list", "--json"]);
    assert!(support::stdout(&listed).contains("through the relay"));
}

#[test]
fn a_workspace_of_an_older_bones_moves_from_its_token_to_a_key() {
    let ws = TestWorkspace::new();
    ws.start();
    ws.ok(&["tasks", "create", "made before the move"]);
    let coord = ws.coord_port();
    ws.stop();
    // what an older bones leaves: a token its config names, and no key
    let state = ws.state_dir();
    let token = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
    fs::remove_file(state.join("nats.seed")).unwrap();
    fs::write(state.join("nats.token"), format!("{token}\n")).unwrap();
    fs::set_permissions(state.join("nats.token"), fs::Permissions::from_mode(0o600)).unwrap();
    let conf = fs::read_to_string(state.join("nats.conf")).unwrap();
    let start = conf.find("authorization").unwrap();
    let end = start + conf[start..].find("\n}\n").unwrap() + 3;
    let old = format!(
        "{}authorization {{\n  token: \"{token}\"\n}}\n{}",
        &conf[..start],
        &conf[end..]
    );
    fs::write(state.join("nats.conf"), old).unwrap();

    ws.start();
    assert!(!state.join("nats.token").exists(), "the token was deleted");
    let seed = ws.read_state("nats.seed");
    assert!(seed.starts_with("SU"), "{seed}");
    let mode = fs::metadata(state.join("nats.seed"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    let conf = ws.read_state("nats.conf");
    assert!(!conf.contains(token) && conf.contains("nkey:"), "{conf}");
    assert!(
        ws.log_messages()
            .iter()
            .any(|m| m.contains("nats.token") && m.contains("deleted")),
        "the move is logged:\n{}",
        ws.hub_log()
    );
    // the old token no longer opens the server; bones works with the key,
    // on everything the workspace held
    assert_eq!(ws.coord_port(), coord);
    let base = r#""verbose":false,"pedantic":false,"protocol":1"#;
    let answer = support::nats_handshake(
        coord,
        &format!(r#"CONNECT {{{base},"auth_token":"{token}"}}"#),
    );
    assert!(answer.contains("Authorization Violation"), "{answer}");
    let listed = ws.ok(&["tasks", "list", "--json"]);
    assert!(support::stdout(&listed).contains("made before the move"));
}
