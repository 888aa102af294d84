//! The security model of docs/security.md, checked against a real hub: the
//! coordination server refuses clients without the key, state files are
//! owner-only, every listener is on 127.0.0.1, the key's seed never appears
//! in any output or log, an edited nats.conf cannot open the server up, and
//! the HTTP endpoint answers only requests addressed to loopback.

mod support;

use std::collections::{BTreeSet, HashSet};
use std::fs;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use support::{TestWorkspace, stderr, stdout};

fn ports(ws: &TestWorkspace) -> (u16, u16) {
    let (code, status) = ws.status();
    assert_eq!(code, 0, "{status}");
    (
        status["ports"]["repo"].as_u64().unwrap() as u16,
        status["ports"]["coord"].as_u64().unwrap() as u16,
    )
}

/// The coordination key's seed (`nats.seed`).
fn seed(ws: &TestWorkspace) -> String {
    ws.read_state("nats.seed").trim().to_string()
}

#[test]
fn the_coordination_server_refuses_clients_without_the_key() {
    let ws = TestWorkspace::new();
    ws.start();
    let (_, coord) = ports(&ws);
    let seed = seed(&ws);
    let public = nkeys::KeyPair::from_seed(&seed).unwrap().public_key();

    let base = r#""verbose":false,"pedantic":false,"protocol":1"#;
    let refused = [
        format!("{{{base}}}"),
        format!(r#"{{{base},"auth_token":"{}"}}"#, "0".repeat(64)),
        // the seed is no password either
        format!(r#"{{{base},"auth_token":"{seed}"}}"#),
        format!(r#"{{{base},"user":"bones","pass":"{seed}"}}"#),
        // the public key without a signature of this connection's challenge
        format!(r#"{{{base},"nkey":"{public}"}}"#),
        format!(r#"{{{base},"nkey":"{public}","sig":"AAAA"}}"#),
    ];
    for options in &refused {
        let answer = support::nats_handshake(coord, &format!("CONNECT {options}"));
        assert!(
            answer.contains("Authorization Violation"),
            "{options}: {answer}"
        );
    }

    // through a real client library; the control (the key is let in)
    // shows the refusals are real
    let rt = support::runtime();
    let url = format!("nats://127.0.0.1:{coord}");
    rt.block_on(async {
        let anonymous = async_nats::ConnectOptions::new()
            .connection_timeout(Duration::from_secs(5))
            .max_reconnects(Some(1))
            .connect(url.as_str())
            .await;
        assert!(anonymous.is_err(), "a client without the key connected");
        let other = nkeys::KeyPair::new_user().seed().unwrap();
        let wrong = async_nats::ConnectOptions::with_nkey(other)
            .connection_timeout(Duration::from_secs(5))
            .max_reconnects(Some(1))
            .connect(url.as_str())
            .await;
        assert!(wrong.is_err(), "a client with another key connected");
        let right = async_nats::ConnectOptions::with_nkey(seed.clone())
            .connection_timeout(Duration::from_secs(5))
            .connect(url.as_str())
            .await;
        assert!(right.is_ok(), "the key is let in: {right:?}");
    });
}

/// Every path under `dir` (not following links) whose mode gives group or
/// others any access, with that mode.
fn permissive(dir: &Path) -> Vec<(PathBuf, u32)> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(path) = stack.pop() {
        let meta = fs::symlink_metadata(&path).unwrap();
        if meta.file_type().is_symlink() {
            continue;
        }
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            found.push((path.clone(), mode));
        }
        if meta.is_dir() {
            for entry in fs::read_dir(&path).unwrap() {
                stack.push(entry.unwrap().path());
            }
        }
    }
    found.sort();
    found
}

/// Writes a file the way an agent with umask 077 would.
fn write_owner_only(path: &Path, text: &str) {
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .unwrap();
    file.write_all(text.as_bytes()).unwrap();
}

#[test]
fn state_files_are_0600_and_directories_0700_after_a_full_session() {
    // a usual umask: what bones must not rely on
    nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o022));
    let ws = TestWorkspace::new();
    ws.start();
    let wt = PathBuf::from(stdout(&ws.ok(&["swarm", "join", "--slot", "a"])).trim());
    fs::create_dir(wt.join("docs")).unwrap();
    fs::set_permissions(wt.join("docs"), fs::Permissions::from_mode(0o700)).unwrap();
    write_owner_only(&wt.join("docs/new.md"), "new\n");
    ws.ok(&["swarm", "commit", "--slot", "a", "-m", "docs"]);
    let other = PathBuf::from(stdout(&ws.ok(&["swarm", "join", "--slot", "b"])).trim());
    write_owner_only(&other.join("draft.txt"), "unsaved\n");
    ws.ok(&["swarm", "close", "--slot", "b", "--result", "abandon"]);
    let id = stdout(&ws.ok(&["tasks", "create", "t"])).trim().to_string();
    ws.ok(&["tasks", "claim", &id, "--slot", "a"]);
    ws.ok(&["swarm", "sync", "--slot", "a"]);
    ws.ok(&["logs", "--hub", "--last", "1"]);
    // the session left what it should: a checkout, a rescue, a landed commit
    assert!(wt.join("docs/new.md").is_file());
    assert!(
        !ws.hub_git(&["for-each-ref", "refs/bones/rescued"])
            .is_empty()
    );
    assert!(ws.state_dir().join("coord").read_dir().unwrap().count() > 0);

    let found = permissive(&ws.state_dir());
    assert!(
        found.is_empty(),
        "{} paths in the state directory give group or others access:\n{}",
        found.len(),
        found
            .iter()
            .map(|(p, m)| format!("  {m:o} {}", p.display()))
            .collect::<Vec<_>>()
            .join("\n")
    );
    // state left by an earlier version (libgit2's 0755/0644) is made
    // owner-only at the next start
    ws.ok(&["hub", "stop", "--force"]);
    let loosen = |dir: &Path| {
        let status = std::process::Command::new("chmod")
            .args(["-R", "go+rX"])
            .arg(dir)
            .status()
            .unwrap();
        assert!(status.success());
    };
    loosen(&ws.state_dir().join("hub.git"));
    loosen(&wt);
    assert!(permissive(&ws.state_dir()).len() > 10);
    ws.start();
    let found = permissive(&ws.state_dir());
    assert!(found.is_empty(), "after a restart: {found:?}");
}

/// Socket inodes `pid` holds.
fn socket_inodes(pid: u32) -> HashSet<String> {
    fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .filter_map(|e| fs::read_link(e.ok()?.path()).ok())
        .filter_map(|target| {
            let text = target.to_string_lossy().into_owned();
            Some(
                text.strip_prefix("socket:[")?
                    .strip_suffix(']')?
                    .to_string(),
            )
        })
        .collect()
}

/// LISTEN sockets among `inodes`: (table, local address as the kernel
/// writes it, port).
fn listeners(inodes: &HashSet<String>) -> Vec<(String, String, u16)> {
    let mut found = Vec::new();
    for table in ["tcp", "tcp6"] {
        let text = fs::read_to_string(format!("/proc/net/{table}")).unwrap_or_default();
        for line in text.lines().skip(1) {
            let fields: Vec<&str> = line.split_whitespace().collect();
            if fields.len() < 10 || fields[3] != "0A" || !inodes.contains(fields[9]) {
                continue;
            }
            let (addr, port) = fields[1].split_once(':').unwrap();
            found.push((
                table.to_string(),
                addr.to_string(),
                u16::from_str_radix(port, 16).unwrap(),
            ));
        }
    }
    found
}

fn hub_and_server_listeners(ws: &TestWorkspace) -> Vec<(String, String, u16)> {
    let mut inodes = socket_inodes(ws.hub_pid().unwrap());
    inodes.extend(socket_inodes(ws.nats_pid().unwrap()));
    listeners(&inodes)
}

#[test]
fn every_listener_of_the_hub_and_its_server_is_on_127_0_0_1() {
    let ws = TestWorkspace::new();
    ws.start();
    ws.ok(&["swarm", "join", "--slot", "a"]);
    ws.ok(&["tasks", "create", "t"]);
    let (repo, coord) = ports(&ws);
    let found = hub_and_server_listeners(&ws);
    // 127.0.0.1 as /proc/net/tcp writes it (little-endian hex)
    for (table, addr, port) in &found {
        assert_eq!(
            (table.as_str(), addr.as_str()),
            ("tcp", "0100007F"),
            "port {port} listens on {table} {addr}"
        );
    }
    let ports: BTreeSet<u16> = found.iter().map(|(_, _, p)| *p).collect();
    assert_eq!(ports, BTreeSet::from([repo, coord]), "{found:?}");
}

#[test]
fn an_edited_nats_conf_or_seed_cannot_open_the_server_beyond_loopback() {
    let ws = TestWorkspace::new();
    ws.start();
    let (_, coord) = ports(&ws);
    ws.stop();
    let conf = ws.state_dir().join("nats.conf");
    fs::write(
        &conf,
        format!("listen: 0.0.0.0:{coord}\nhttp: 0.0.0.0:8222\njetstream {{}}\n"),
    )
    .unwrap();
    let injected = "abc\"\n}\nlisten: \"0.0.0.0:4222\"\nx {\n";
    fs::write(ws.state_dir().join("nats.seed"), injected).unwrap();
    ws.start();

    let text = fs::read_to_string(&conf).unwrap();
    let listens: Vec<&str> = text.lines().filter(|l| l.contains("listen")).collect();
    assert_eq!(
        listens,
        [format!("listen: \"127.0.0.1:{coord}\"")],
        "{text}"
    );
    assert!(
        !text.contains("0.0.0.0") && !text.contains("http:"),
        "{text}"
    );
    let seed = seed(&ws);
    assert_ne!(seed, injected.trim());
    assert!(
        seed.starts_with("SU") && seed.chars().all(|c| c.is_ascii_alphanumeric()),
        "{seed:?}"
    );
    for (table, addr, port) in hub_and_server_listeners(&ws) {
        assert_eq!(
            (table.as_str(), addr.as_str()),
            ("tcp", "0100007F"),
            "port {port}"
        );
    }
    let anonymous = support::nats_handshake(coord, r#"CONNECT {"verbose":false,"pedantic":false}"#);
    assert!(anonymous.contains("Authorization Violation"), "{anonymous}");
    ws.ok(&["tasks", "list"]);
}

/// A raw HTTP/1.1 GET with the given Host header: (status code, body).
fn http_get(port: u16, path: &str, host: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let code = response
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (code, body)
}

#[test]
fn the_http_endpoint_answers_only_requests_addressed_to_loopback() {
    let ws = TestWorkspace::new();
    ws.start();
    let (repo, _) = ports(&ws);
    for path in ["/.status", "/.leases"] {
        for host in [format!("127.0.0.1:{repo}"), format!("localhost:{repo}")] {
            assert_eq!(http_get(repo, path, &host).0, 200, "{path} {host}");
        }
        // what a page served from evil.example sees after DNS rebinding
        for host in [
            format!("evil.example:{repo}"),
            format!("127.0.0.1.evil.example:{repo}"),
        ] {
            let (code, body) = http_get(repo, path, &host);
            assert_eq!(code, 403, "{path} {host}: {body}");
            assert!(
                !body.contains("trunk_tip") && !body.contains("live"),
                "{body}"
            );
        }
    }
}

/// Keeps a command's stdout and stderr for the final check.
fn keep(outputs: &mut Vec<String>, out: std::process::Output) -> std::process::Output {
    outputs.push(stdout(&out));
    outputs.push(stderr(&out));
    out
}

#[test]
fn the_seed_is_never_printed_or_logged() {
    let ws = TestWorkspace::new();
    let mut outputs = Vec::new();
    keep(&mut outputs, ws.start());
    let token = seed(&ws);
    assert!(token.len() >= 32);
    let public = nkeys::KeyPair::from_seed(&token).unwrap().public_key();
    assert!(
        ws.read_state("nats.conf").contains(&public),
        "the seed read is the server's key"
    );
    let (repo, coord) = ports(&ws);
    for args in [
        vec!["hub", "status"],
        vec!["hub", "status", "--json"],
        vec!["swarm", "join", "--slot", "a", "--json"],
        vec!["tasks", "create", "t", "--json"],
        vec!["tasks", "list", "--json"],
        vec!["tasks", "claim", "--next", "--slot", "a", "--json"],
    ] {
        keep(&mut outputs, ws.ok(&args));
    }
    let wt = ws.state_dir().join("swarm/a/wt");
    fs::write(wt.join("x.txt"), "x\n").unwrap();
    keep(
        &mut outputs,
        ws.ok(&["swarm", "commit", "--slot", "a", "-m", "x", "--json"]),
    );
    keep(&mut outputs, ws.ok(&["swarm", "status", "--json"]));
    // refusals and failures print errors: none may carry the seed
    keep(
        &mut outputs,
        ws.run(&["tasks", "claim", "--next", "--slot", "a"]),
    );
    keep(&mut outputs, ws.run(&["hub", "stop"]));
    let url = ws.read_state("hub-nats-url");
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    fs::write(
        ws.state_dir().join("hub-nats-url"),
        format!("nats://127.0.0.1:{closed}\n"),
    )
    .unwrap();
    let failed = keep(&mut outputs, ws.run(&["tasks", "list"]));
    assert!(!failed.status.success());
    fs::write(ws.state_dir().join("hub-nats-url"), url).unwrap();
    for path in ["/.status", "/.leases"] {
        outputs.push(http_get(repo, path, "127.0.0.1").1);
    }
    // a client that fails authentication makes the server log the attempt
    outputs.push(support::nats_handshake(
        coord,
        r#"CONNECT {"verbose":false}"#,
    ));
    for pid in [ws.hub_pid().unwrap(), ws.nats_pid().unwrap()] {
        // anyone on the machine can read a command line
        outputs.push(fs::read_to_string(format!("/proc/{pid}/cmdline")).unwrap());
        outputs.push(
            String::from_utf8_lossy(&fs::read(format!("/proc/{pid}/environ")).unwrap())
                .into_owned(),
        );
    }
    keep(&mut outputs, ws.ok(&["logs", "--hub"]));
    keep(&mut outputs, ws.ok(&["logs", "--hub", "--json"]));
    keep(&mut outputs, ws.ok(&["hub", "stop", "--force"]));

    for (i, text) in outputs.iter().enumerate() {
        assert!(!text.contains(&token), "output {i} holds the seed:\n{text}");
    }
    let mut files = 0;
    for entry in fs::read_dir(ws.state_dir()).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if name.starts_with("hub.log") || name.starts_with("nats.log") {
            let text = String::from_utf8_lossy(&fs::read(&path).unwrap()).into_owned();
            assert!(!text.contains(&token), "{name} holds the seed");
            files += 1;
        }
    }
    assert!(files >= 2, "hub.log and nats.log were checked");
    assert!(
        fs::read_to_string(ws.state_dir().join("nats.log"))
            .unwrap()
            .contains("authentication error"),
        "the failed login above reached the server"
    );
}

#[test]
fn a_port_another_user_holds_is_never_answered() {
    use std::os::unix::process::CommandExt;
    use std::process::{Command, Stdio};

    let ws = TestWorkspace::new();
    ws.start();
    let (_, coord) = ports(&ws);
    let token = seed(&ws);
    // the binary the hub really runs (PATH may hold a wrapper script)
    let server = fs::read_link(format!("/proc/{}/exe", ws.nats_pid().unwrap())).unwrap();
    let me = nix::unistd::getuid();
    assert_eq!(
        bones::state::ports::loopback_listener_uids(coord),
        [me.as_raw()],
        "the hub's own server is seen as ours"
    );
    ws.stop();
    if !me.is_root() {
        eprintln!("not root: cannot listen as another user; only the reading of /proc was checked");
        return;
    }
    // while the hub is down, another user binds its recorded port with a
    // real NATS server that traces every command it receives
    let dir = tempfile::tempdir().unwrap();
    fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
    let binary = dir.path().join("nats-server");
    fs::copy(&server, &binary).unwrap();
    fs::set_permissions(&binary, fs::Permissions::from_mode(0o755)).unwrap();
    let mut command = Command::new(&binary);
    command
        .args(["-a", "127.0.0.1", "-p", &coord.to_string(), "-V"])
        .current_dir(dir.path())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    // SAFETY: only async-signal-safe calls between fork and exec.
    unsafe {
        command.pre_exec(|| {
            let nobody = 65534;
            nix::unistd::setgroups(&[])?;
            nix::unistd::setgid(nix::unistd::Gid::from_raw(nobody))?;
            nix::unistd::setuid(nix::unistd::Uid::from_raw(nobody))?;
            Ok(())
        });
    }
    let mut impostor = support::KillOnDrop(command.spawn().unwrap());
    let listening = support::wait_until(Duration::from_secs(10), || {
        bones::state::ports::loopback_listener_uids(coord).contains(&65534)
    });
    if !listening {
        let _ = impostor.0.kill();
        let mut log = String::new();
        let _ = impostor.0.stderr.take().unwrap().read_to_string(&mut log);
        panic!("the impostor did not come up: {log}");
    }
    for args in [
        vec!["tasks", "list"],
        vec!["swarm", "status"],
        vec!["tasks", "create", "t"],
    ] {
        // the client's own check; without the opt-out the verb would start
        // a hub of its own on a fresh port instead
        let out = ws
            .command(&args)
            .env("BONES_NO_AUTOSTART", "1")
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1), "{args:?}: {}", stderr(&out));
        assert!(
            stderr(&out).contains("another user (uid 65534)"),
            "{args:?}: {}",
            stderr(&out)
        );
    }
    impostor.0.kill().unwrap();
    let mut seen = String::new();
    impostor
        .0
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut seen)
        .unwrap();
    assert!(
        seen.contains("Server is ready"),
        "its log was captured: {seen}"
    );
    assert!(
        !seen.contains("CONNECT"),
        "a client spoke to the impostor:\n{seen}"
    );
    assert!(!seen.contains(&token));
}
