//! Port resolution and the URL files `hub-repo-url` and `hub-nats-url`.
//!
//! A restart re-binds the ports recorded in the URL files, so agents that
//! cached a URL keep working (Go #157). When a recorded port is now held by
//! another process, the hub picks a fresh one, rewrites the file and logs a
//! WARN instead of failing (decision 5). A port given by flag is the
//! operator's explicit wish: if it is taken, that is an error.

use std::io;
use std::net::{Ipv4Addr, SocketAddrV4, TcpListener};

use super::log::HubLog;
use super::paths::Paths;
use crate::fsutil;

/// The two ports a hub listens on, both on 127.0.0.1.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ports {
    /// HTTP endpoint (`/.status`), the "repo" port.
    pub repo: u16,
    /// The coordination server's client port.
    pub coord: u16,
}

/// Ports requested on the command line (`None` = choose).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PortRequest {
    pub repo: Option<u16>,
    pub coord: Option<u16>,
}

/// Why ports could not be chosen.
#[derive(Debug, thiserror::Error)]
pub enum PortError {
    #[error(
        "{what} port {port} was requested with a flag but 127.0.0.1:{port} is already in use; pick another port or stop the process holding it"
    )]
    Taken { what: &'static str, port: u16 },
    #[error("--repo-port and --coord-port must differ (both are {0})")]
    Same(u16),
    #[error("cannot find a free port on 127.0.0.1: {0}")]
    NoFreePort(io::Error),
    #[error("cannot write {path}: {source}")]
    Write {
        path: String,
        #[source]
        source: io::Error,
    },
}

/// The port of a URL file's content when it is exactly what the hub writes:
/// `<scheme>://127.0.0.1:PORT` (a trailing `/` and surrounding whitespace
/// allowed), with a port above 0. Anything else, another host included, is
/// `None`: a client that connected where an edited URL file points would
/// hand the workspace token to that host.
pub fn parse_loopback_url(url: &str, scheme: &str) -> Option<u16> {
    let rest = url
        .trim()
        .strip_prefix(scheme)?
        .strip_prefix("://127.0.0.1:")?;
    let port = rest.strip_suffix('/').unwrap_or(rest);
    // the form bones writes only: digits without a leading zero
    if port.is_empty() || port.starts_with('0') || !port.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    port.parse::<u16>().ok().filter(|p| *p > 0)
}

/// The owners (uids) of the sockets that would accept a connection to
/// `127.0.0.1:port`: listeners on 127.0.0.1, on the wildcard address, or
/// on IPv6 `::`/`::ffff:127.0.0.1`, asked of the kernel's socket
/// diagnostics (else read from `/proc/net/tcp{,6}`). Empty when nothing
/// listens there or neither can be read.
///
/// A client checks this before it sends the workspace token: while the
/// hub is down, any local user may bind its recorded port and would
/// otherwise receive the token from the next `bones` command.
pub fn loopback_listener_uids(port: u16) -> Vec<u32> {
    match super::sockdiag::listeners() {
        Ok(all) => all
            .iter()
            .filter(|l| l.port == port && reaches_loopback(l))
            .map(|l| l.uid)
            .collect(),
        // no netlink (a sandbox may forbid it): the slower tables
        Err(_) => loopback_listener_uids_from_proc(port),
    }
}

/// Whether a connection to 127.0.0.1 may reach this listener.
fn reaches_loopback(l: &super::sockdiag::Listener) -> bool {
    const MAPPED_LOOPBACK: [u8; 16] = [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 127, 0, 0, 1];
    if l.v6 {
        l.addr == [0; 16] || l.addr == MAPPED_LOOPBACK
    } else {
        l.addr[..4] == [127, 0, 0, 1] || l.addr[..4] == [0, 0, 0, 0]
    }
}

/// [`loopback_listener_uids`] from `/proc/net/tcp{,6}`.
fn loopback_listener_uids_from_proc(port: u16) -> Vec<u32> {
    let mut uids = Vec::new();
    for (table, v6) in [("/proc/net/tcp", false), ("/proc/net/tcp6", true)] {
        if let Ok(text) = std::fs::read_to_string(table) {
            uids.extend(listener_uids_in(&text, v6, port));
        }
    }
    uids
}

/// [`loopback_listener_uids`] for one table's text.
pub fn listener_uids_in(table: &str, v6: bool, port: u16) -> Vec<u32> {
    const V4: [&str; 2] = ["0100007F", "00000000"];
    const V6: [&str; 2] = [
        "00000000000000000000000000000000",
        "0000000000000000FFFF00000100007F",
    ];
    let wanted = format!("{port:04X}");
    table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            // sl local rem st tx:rx tr:when retrnsmt uid ...
            let (addr, local_port) = fields.get(1)?.split_once(':')?;
            let listening = fields.get(3)? == &"0A";
            let reaches = if v6 {
                V6.contains(&addr)
            } else {
                V4.contains(&addr)
            };
            (listening && reaches && local_port.eq_ignore_ascii_case(&wanted))
                .then(|| fields.get(7)?.parse().ok())
                .flatten()
        })
        .collect()
}

/// `http://127.0.0.1:PORT`
pub fn repo_url(port: u16) -> String {
    format!("http://127.0.0.1:{port}")
}

/// `nats://127.0.0.1:PORT`
pub fn nats_url(port: u16) -> String {
    format!("nats://127.0.0.1:{port}")
}

fn bind(port: u16) -> io::Result<TcpListener> {
    TcpListener::bind(SocketAddrV4::new(Ipv4Addr::LOCALHOST, port))
}

/// Chooses both ports and rewrites both URL files.
///
/// Each chosen port is held by a listener until both are chosen, so the two
/// can never be the same port.
pub fn resolve(paths: &Paths, request: PortRequest, log: &HubLog) -> Result<Ports, PortError> {
    if let (Some(r), Some(c)) = (request.repo, request.coord)
        && r == c
    {
        return Err(PortError::Same(r));
    }
    let mut held = Vec::new();
    let mut choose = |what: &'static str, flag: Option<u16>, file: &std::path::Path| {
        if let Some(port) = flag.filter(|p| *p > 0) {
            let listener = bind(port).map_err(|_| PortError::Taken { what, port })?;
            held.push(listener);
            return Ok(port);
        }
        let scheme = if what == "repo" { "http" } else { "nats" };
        let recorded = fsutil::read_trimmed(file)
            .ok()
            .flatten()
            .and_then(|url| parse_loopback_url(&url, scheme));
        if let Some(port) = recorded
            && let Ok(listener) = bind(port)
        {
            held.push(listener);
            return Ok(port);
        }
        let listener = bind(0).map_err(PortError::NoFreePort)?;
        let port = listener.local_addr().map_err(PortError::NoFreePort)?.port();
        held.push(listener);
        if let Some(old) = recorded {
            log.warn(format!(
                "hub: recorded {what} port {old} is in use by another process; using {port} instead"
            ));
        }
        Ok(port)
    };
    let repo = choose("repo", request.repo, &paths.repo_url_file)?;
    let coord = choose("coord", request.coord, &paths.nats_url_file)?;
    drop(held);
    write_url_files(paths, Ports { repo, coord })?;
    Ok(Ports { repo, coord })
}

fn write_url_files(paths: &Paths, ports: Ports) -> Result<(), PortError> {
    for (path, url) in [
        (&paths.repo_url_file, repo_url(ports.repo)),
        (&paths.nats_url_file, nats_url(ports.coord)),
    ] {
        fsutil::write_private_if_changed(path, format!("{url}\n").as_bytes()).map_err(
            |source| PortError::Write {
                path: path.display().to_string(),
                source,
            },
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_loopback_urls_name_a_port_to_connect_to() {
        assert_eq!(
            parse_loopback_url("nats://127.0.0.1:4222\n", "nats"),
            Some(4222)
        );
        assert_eq!(
            parse_loopback_url("nats://127.0.0.1:4222/", "nats"),
            Some(4222)
        );
        for bad in [
            "nats://10.0.0.1:4222",
            "nats://127.0.0.2:4222",
            "nats://localhost:4222",
            "nats://127.0.0.1.evil.example:4222",
            "nats://user:pw@127.0.0.1:4222",
            "nats://127.0.0.1:0",
            "nats://127.0.0.1:+4222",
            "nats://127.0.0.1:04222",
            "nats://127.0.0.1:4222/x",
            "http://127.0.0.1:4222",
            "garbage",
            "",
        ] {
            assert_eq!(parse_loopback_url(bad, "nats"), None, "{bad}");
        }
    }

    #[test]
    fn finds_who_listens_where_loopback_connections_land() {
        let v4 = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 1 1
   1: 00000000:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000    65534        0 2 1
   2: 0A000001:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000    7        0 3 1
   3: 0100007F:1F90 0100007F:9999 01 00000000:00000000 00:00000000 00000000    8        0 4 1
   4: 0100007F:1F91 00000000:0000 0A 00000000:00000000 00:00000000 00000000    9        0 5 1
garbage line
";
        assert_eq!(listener_uids_in(v4, false, 8080), [1000, 65534]);
        let v6 = "  sl  local_address remote_address st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000000000000000000000000000:1F90 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000    42        0 1 1
   1: 00000000000000000000000001000000:1F90 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000    43        0 2 1
";
        assert_eq!(listener_uids_in(v6, true, 8080), [42]);
        assert!(listener_uids_in("", false, 8080).is_empty());
    }

    proptest::proptest! {
        #[test]
        fn any_table_text_is_read_without_panic(text in "(?s).{0,400}", port in proptest::prelude::any::<u16>()) {
            let _ = listener_uids_in(&text, false, port);
            let _ = listener_uids_in(&text, true, port);
        }

        #[test]
        fn a_loopback_url_round_trips(port in 1u16..) {
            proptest::prop_assert_eq!(parse_loopback_url(&nats_url(port), "nats"), Some(port));
            proptest::prop_assert_eq!(parse_loopback_url(&repo_url(port), "http"), Some(port));
        }

        // near misses of the accepted form, so that both branches are taken
        #[test]
        fn whatever_is_accepted_points_at_loopback(
            text in r"\s?(nats|http|natss)://(127\.0\.0\.1|127\.0\.0\.2|localhost|10\.0\.0\.1|127\.0\.0\.1\.evil)(:[0-9]{0,6})?/?[a-z]{0,2}\s?"
        ) {
            if let Some(port) = parse_loopback_url(&text, "nats") {
                proptest::prop_assert_eq!(text.trim().trim_end_matches('/'), nats_url(port));
            }
        }
    }
}
