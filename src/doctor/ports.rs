//! The URL files, `hub-repo-url` and `hub-nats-url`: they outlive the hub
//! so a restart re-binds the same ports and agents that cached a URL keep
//! working (Go #157). A port another process took since then is not fatal
//! (the next start picks a fresh one, decision 5), but every cached URL
//! then leads nowhere: doctor says so before the restart does.
//!
//! Listeners are asked of the kernel (socket diagnostics, else
//! `/proc/net/tcp{,6}`) rather than probed by binding, so doctor never
//! holds a port a starting hub wants.

use std::fs;
use std::path::Path;

use super::{Context, Finding, Report, shell_quote, short_cmdline};
use crate::state::ports;
use crate::state::record;
use crate::state::record::HubState;
use crate::sys::fsutil;
use crate::sys::proc_net;
use crate::sys::sockdiag::{self, Socket, TCP_LISTEN};

/// What the hub serves on a recorded port.
#[derive(Clone, Copy)]
enum Role {
    Repo,
    Coord,
}

pub(super) fn check(ctx: &Context, report: &mut Report) {
    let mut findings = Vec::new();
    let mut details = Vec::new();
    for (role, file) in [
        (Role::Repo, &ctx.paths.repo_url_file),
        (Role::Coord, &ctx.paths.nats_url_file),
    ] {
        let name = file_name(file);
        let Some(text) = fsutil::read_trimmed(file).ok().flatten() else {
            details.push(format!("{name}: none"));
            continue;
        };
        let scheme = match role {
            Role::Repo => "http",
            Role::Coord => "nats",
        };
        // the rule every client applies: loopback only
        let Some(port) = ports::parse_loopback_url(&text, scheme) else {
            findings.push(Finding::warning(
                "url-file-invalid",
                format!(
                    "{} holds {}, not {scheme}://127.0.0.1:PORT",
                    file.display(),
                    crate::sys::shown::shown(&text)
                ),
                format!(
                    "rm {}  # the next hub start picks a free port and rewrites it",
                    shell_quote(file)
                ),
            ));
            details.push(format!("{name}: invalid"));
            continue;
        };
        details.push(format!("{name}: {port}"));
        findings.extend(judge(ctx, role, &name, &text, port));
    }
    report.record("url-files", details.join(", "), findings);
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

fn judge(ctx: &Context, role: Role, name: &str, url: &str, port: u16) -> Option<Finding> {
    if let HubState::Running(hub) = &ctx.hub {
        let serving = match role {
            Role::Repo => hub.repo_port,
            Role::Coord => hub.coord_port,
        };
        return (serving != port).then(|| {
            Finding::warning(
                "url-file-mismatch",
                format!(
                    "{name} says port {port} but the running hub (pid {}) serves on {serving}; agents reading it miss the hub",
                    hub.pid
                ),
                "bones hub stop && bones hub start --detach  # rewrites both URL files".to_string(),
            )
        });
    }
    let inodes = listening_sockets(port);
    if inodes.is_empty() {
        return None;
    }
    let holders = socket_owners(&inodes);
    if holders.iter().any(|pid| ctx.is_ours(*pid)) {
        // this workspace's own orphan: the orphans check reports it
        return None;
    }
    let moves =
        format!("bones hub start --detach  # moves the hub to a free port and rewrites {name}");
    let consequence = format!(
        "the next hub start moves to a fresh port, and agents that cached {url} lose the hub"
    );
    let (holder, fix) = match holders.first().and_then(|pid| ctx.process(*pid)) {
        Some(row) if is_bones(&row.info.cmdline, &row.info.args) => (
            format!(
                "pid {} ({}, of another workspace)",
                row.pid,
                short_cmdline(&row.info.cmdline)
            ),
            moves,
        ),
        Some(row) => (
            format!("pid {} ({})", row.pid, short_cmdline(&row.info.cmdline)),
            format!("{moves}; or free the port: kill {}", row.pid),
        ),
        None => (
            "a process you cannot see".to_string(),
            format!("{moves}; or find the holder: ss -ltnp 'sport = :{port}'"),
        ),
    };
    Some(Finding::warning(
        "port-taken",
        format!("port {port} recorded in {name} is held by {holder}; {consequence}"),
        fix,
    ))
}

/// A hub or a coordination server: killing it would break someone else.
fn is_bones(cmdline: &str, args: &[String]) -> bool {
    record::looks_like_hub(cmdline)
        || args
            .first()
            .is_some_and(|argv0| argv0.rsplit('/').next() == Some("nats-server"))
}

/// Inodes of the TCP sockets listening on `port` on an address that keeps
/// the hub from binding `127.0.0.1:port`.
fn listening_sockets(port: u16) -> Vec<u64> {
    let sockets = sockdiag::listeners().unwrap_or_else(|_| proc_net::sockets());
    blocking_listeners(&sockets, port)
}

/// [`listening_sockets`] for one `/proc/net/tcp{,6}` table's text.
#[cfg(test)]
fn parse_listeners(table: &str, v6: bool, port: u16) -> Vec<u64> {
    blocking_listeners(&proc_net::parse(table, v6), port)
}

fn blocking_listeners(sockets: &[Socket], port: u16) -> Vec<u64> {
    sockets
        .iter()
        .filter(|s| s.state == TCP_LISTEN && s.port == port && s.reaches_loopback_v4())
        .map(|s| s.inode)
        .collect()
}

/// The pids with a descriptor on one of these sockets, lowest first.
fn socket_owners(inodes: &[u64]) -> Vec<u32> {
    let wanted: Vec<String> = inodes.iter().map(|i| format!("socket:[{i}]")).collect();
    let mut owners = Vec::new();
    let Ok(procs) = fs::read_dir("/proc") else {
        return owners;
    };
    for entry in procs.filter_map(Result::ok) {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(fds) = fs::read_dir(entry.path().join("fd")) else {
            continue;
        };
        let holds = fds.filter_map(Result::ok).any(|fd| {
            fs::read_link(fd.path())
                .is_ok_and(|target| wanted.iter().any(|w| target.as_os_str() == w.as_str()))
        });
        if holds {
            owners.push(pid);
        }
    }
    owners.sort_unstable();
    owners
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_listeners_that_block_loopback() {
        // 127.0.0.1:8080 listening, 0.0.0.0:8080 listening, 10.0.0.1:8080
        // listening (does not block loopback), 127.0.0.1:8080 established
        let v4 = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n\
           0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 111 1 0 100 0 0 10 0\n\
           1: 00000000:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 222 1 0 100 0 0 10 0\n\
           2: 0100000A:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 333 1 0 100 0 0 10 0\n\
           3: 0100007F:1F90 0100007F:D431 01 00000000:00000000 00:00000000 00000000     0        0 444 1 0 100 0 0 10 0\n";
        if cfg!(target_endian = "little") {
            assert_eq!(parse_listeners(v4, false, 8080), [111, 222]);
        }
        assert!(parse_listeners(v4, false, 8081).is_empty());
        // [::]:8080 and [::1]:8080 (IPv6 loopback does not block 127.0.0.1)
        let v6 = "  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n\
           0: 00000000000000000000000000000000:1F90 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 555 1 0 100 0 0 10 0\n\
           1: 00000000000000000000000001000000:1F90 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 666 1 0 100 0 0 10 0\n";
        assert_eq!(parse_listeners(v6, true, 8080), [555]);
    }

    #[test]
    fn finds_the_owner_of_a_real_listener() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let inodes = listening_sockets(port);
        assert_eq!(inodes.len(), 1, "{inodes:?}");
        assert_eq!(socket_owners(&inodes), [std::process::id()]);
        drop(listener);
        assert!(listening_sockets(port).is_empty());
    }
}
