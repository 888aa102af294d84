//! Port resolution and the URL files `hub-repo-url` and `hub-nats-url`.
//!
//! A restart re-binds the ports recorded in the URL files, so agents that
//! cached a URL keep working (Go #157). When a recorded port is now held by
//! another process, the hub picks a fresh one, rewrites the file and logs a
//! WARN instead of failing (decision 5). A port given by flag is the
//! operator's explicit wish: if it is taken, that is an error.

use std::io;
use std::net::{Ipv4Addr, SocketAddrV4, TcpListener};

use crate::state::paths::Paths;
use crate::sys::proc_net;
use crate::sys::sockdiag::{Socket, TCP_LISTEN, UNOWNED_STATES, is_loopback_v4};

/// `TCP_ESTABLISHED` in the kernel's state numbering.
const TCP_ESTABLISHED: u8 = 1;
use crate::sys::fsutil;

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
/// answer that host's challenge with the workspace key.
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
pub fn loopback_listener_uids(port: u16) -> Vec<u32> {
    let sockets = match crate::sys::sockdiag::listeners() {
        Ok(all) => all,
        // no netlink (a sandbox may forbid it): the slower tables
        Err(_) => proc_net::sockets(),
    };
    listener_uids(&sockets, port)
}

/// [`loopback_listener_uids`] over a list of sockets.
fn listener_uids(sockets: &[Socket], port: u16) -> Vec<u32> {
    sockets
        .iter()
        .filter(|s| s.state == TCP_LISTEN && s.port == port && s.reaches_loopback_v4())
        .map(|s| s.uid)
        .collect()
}

/// Another user listening where a connection to `127.0.0.1:port` would
/// land ([`loopback_listener_uids`]), if any: asked before a client
/// connects. nats-server takes its port again after a crash, and in
/// between any local user may bind it.
pub fn foreign_holder(port: u16) -> Option<u32> {
    let me = nix::unistd::getuid().as_raw();
    loopback_listener_uids(port)
        .into_iter()
        .find(|uid| *uid != me)
}

/// Another user at the far end of this process's connection to
/// `127.0.0.1:port` (a listener that accepted it, whether or not it still
/// listens), or listening there: asked once the server has sent its
/// challenge and before the client answers it. The nkey answer is useless
/// to a listener that keeps it, but a live one could relay the real
/// server's challenge and our answer to log in as us; it never gets one.
/// This also closes the gap between [`foreign_holder`] and the connect.
pub fn foreign_peer(port: u16) -> Option<u32> {
    let me = nix::unistd::getuid().as_raw();
    let own = own_connections_to(port);
    if own.is_empty() {
        // no descriptor to go by (/proc unreadable, say): the listener
        return foreign_holder(port);
    }
    let sockets = far_ends(port, &own, me).unwrap_or_else(|_| proc_net::sockets());
    foreign_holder_in(&sockets, port, me)
}

/// This process's connections from `own` to `127.0.0.1:port`, with the
/// sockets at their far ends: what [`foreign_holder_in`] needs, found
/// without walking the machine's connection table (a dump of connected
/// sockets costs about a millisecond per address family on a large
/// machine, as much as the rest of a command's connect): each far end is
/// one lookup by its four addresses.
fn far_ends(port: u16, own: &[std::net::SocketAddrV4], me: u32) -> std::io::Result<Vec<Socket>> {
    use std::net::SocketAddrV4;
    let mut sockets = Vec::new();
    for &local in own {
        let server = SocketAddrV4::new(Ipv4Addr::LOCALHOST, port);
        if let Some(far) = crate::sys::sockdiag::find_one(server, local)? {
            sockets.push(far);
        }
        let mut addr = [0u8; 16];
        addr[..4].copy_from_slice(&local.ip().octets());
        let mut peer_addr = [0u8; 16];
        peer_addr[..4].copy_from_slice(&Ipv4Addr::LOCALHOST.octets());
        sockets.push(Socket {
            v6: false,
            state: TCP_ESTABLISHED,
            addr,
            port: local.port(),
            peer_addr,
            peer_port: port,
            uid: me,
            // not looked up: only the far end's owner matters
            inode: 0,
        });
    }
    Ok(sockets)
}

/// The local addresses of this process's TCP connections to
/// `127.0.0.1:port`, read from its own descriptors.
fn own_connections_to(port: u16) -> Vec<std::net::SocketAddrV4> {
    use nix::sys::socket::{SockaddrIn, getpeername, getsockname};
    let Ok(fds) = std::fs::read_dir("/proc/self/fd") else {
        return Vec::new();
    };
    fds.filter_map(|entry| {
        let entry = entry.ok()?;
        let target = std::fs::read_link(entry.path()).ok()?;
        if !target
            .as_os_str()
            .as_encoded_bytes()
            .starts_with(b"socket:")
        {
            return None;
        }
        let fd: std::os::fd::RawFd = entry.file_name().to_str()?.parse().ok()?;
        // a descriptor closed (or reused) since the listing only fails
        // here or names another socket: either way not a match below
        let peer: SockaddrIn = getpeername(fd).ok()?;
        if peer.port() != port || peer.ip() != Ipv4Addr::LOCALHOST {
            return None;
        }
        let local: SockaddrIn = getsockname(fd).ok()?;
        Some(std::net::SocketAddrV4::new(local.ip(), local.port()))
    })
    .collect()
}

/// [`foreign_holder`] over a list of sockets.
pub fn foreign_holder_in(sockets: &[Socket], port: u16, me: u32) -> Option<u32> {
    // uid 0 there means "nobody", not root: a bones client run by anyone
    // but root would otherwise refuse a server busy accepting connections
    let owned = || {
        sockets
            .iter()
            .filter(|s| !UNOWNED_STATES.contains(&s.state))
    };
    // the local ports of this user's connections to the port
    let ours: Vec<u16> = owned()
        .filter(|s| s.uid == me && s.peer_port == port && s.state != TCP_LISTEN)
        .filter(|s| is_loopback_v4(&s.peer_addr, s.v6))
        .map(|s| s.port)
        .collect();
    owned()
        .filter(|s| s.uid != me && s.port == port && s.reaches_loopback_v4())
        .find(|s| s.state == TCP_LISTEN || ours.contains(&s.peer_port))
        .map(|s| s.uid)
}

/// [`loopback_listener_uids`] for one `/proc/net/tcp{,6}` table's text.
pub fn listener_uids_in(table: &str, v6: bool, port: u16) -> Vec<u32> {
    listener_uids(&proc_net::parse(table, v6), port)
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
/// can never be the same port. A recorded port found taken is replaced, and
/// `moved` is told in one line for the operator log (this layer sits below
/// the log).
pub fn resolve(
    paths: &Paths,
    request: PortRequest,
    mut moved: impl FnMut(String),
) -> Result<Ports, PortError> {
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
            moved(format!(
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

    fn v4(state: u8, port: u16, peer_port: u16, uid: u32) -> Socket {
        let mut loopback = [0u8; 16];
        loopback[..4].copy_from_slice(&[127, 0, 0, 1]);
        Socket {
            v6: false,
            state,
            addr: loopback,
            port,
            peer_addr: if state == TCP_LISTEN {
                [0; 16]
            } else {
                loopback
            },
            peer_port,
            uid,
            inode: 0,
        }
    }

    #[test]
    fn another_user_holds_a_port_by_listening_or_by_holding_our_connection() {
        const ESTABLISHED: u8 = 1;
        let (port, me, other) = (4222, 1000, 65534);
        // our server, our client, and another user's client of our server
        let normal = [
            v4(TCP_LISTEN, port, 0, me),
            v4(ESTABLISHED, port, 50000, me),
            v4(ESTABLISHED, 50000, port, me),
            v4(ESTABLISHED, 50001, port, other),
            v4(ESTABLISHED, port, 50001, me),
        ];
        assert_eq!(foreign_holder_in(&normal, port, me), None);
        assert_eq!(foreign_holder_in(&[], port, me), None);
        // another user listens
        let listening = [v4(TCP_LISTEN, port, 0, other)];
        assert_eq!(foreign_holder_in(&listening, port, me), Some(other));
        // another user holds the far end of our connection, its listener gone
        let accepted = [
            v4(ESTABLISHED, 50002, port, me),
            v4(ESTABLISHED, port, 50002, other),
        ];
        assert_eq!(foreign_holder_in(&accepted, port, me), Some(other));
        // sockets the kernel reports as root's whoever made them: a
        // half-open connection to our server, a closed one's remains
        let unowned = [
            v4(ESTABLISHED, 50003, port, me),
            v4(12, port, 50003, 0),
            v4(3, port, 50003, 0),
            v4(6, port, 50003, 0),
        ];
        assert_eq!(foreign_holder_in(&unowned, port, me), None);
        // a socket of another user on the port that is no end of ours
        let unrelated = [
            v4(TCP_LISTEN, port, 0, me),
            v4(ESTABLISHED, port, 9999, other),
        ];
        assert_eq!(foreign_holder_in(&unrelated, port, me), None);
        // another port altogether
        assert_eq!(foreign_holder_in(&listening, port + 1, me), None);
    }

    #[test]
    fn reads_both_ends_from_the_proc_tables() {
        let v4 = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   3: 0100007F:1F90 0100007F:9999 01 00000000:00000000 00:00000000 00000000    8        0 4 1
";
        let found = proc_net::parse(v4, false);
        assert_eq!(found, [v4_socket()]);
        fn v4_socket() -> Socket {
            let mut loopback = [0u8; 16];
            loopback[..4].copy_from_slice(&[127, 0, 0, 1]);
            Socket {
                v6: false,
                state: 1,
                addr: loopback,
                port: 8080,
                peer_addr: loopback,
                peer_port: 0x9999,
                uid: 8,
                inode: 4,
            }
        }
        let v6 = "  sl  local_address remote_address st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0000000000000000FFFF00000100007F:1F90 0000000000000000FFFF00000100007F:C350 01 00000000:00000000 00:00000000 00000000    42        0 1 1
";
        let found = proc_net::parse(v6, true);
        assert_eq!(found.len(), 1);
        assert!(is_loopback_v4(&found[0].addr, true), "{found:?}");
        assert_eq!((found[0].port, found[0].peer_port), (8080, 50000));
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
