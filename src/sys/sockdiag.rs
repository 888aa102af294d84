//! Who holds a local TCP port, asked of the kernel's socket diagnostics
//! (netlink `SOCK_DIAG`, what `ss` uses).
//!
//! Every client checks the owner of the coordination port before it
//! connects and again before it answers the server's challenge (see
//! [`crate::state::ports::foreign_peer`]). Reading `/proc/net/tcp` for that walks
//! the kernel's whole connection table, and so does any dump of connected
//! sockets (the kernel walks every bucket of its connection hash, about a
//! millisecond per address family on a large machine, however few sockets
//! exist). A dump of listening sockets, or the lookup of one connection by
//! its four addresses, is a few microseconds.

use std::io;
use std::os::fd::{AsRawFd, OwnedFd};

use nix::libc;

/// `TCP_LISTEN` in the kernel's state numbering.
pub const TCP_LISTEN: u8 = 10;
/// States whose sockets the kernel reports with uid 0, whoever made them
/// (a half-open connection not yet accepted, a closed connection's
/// remains): `TCP_SYN_RECV`, `TCP_TIME_WAIT`, `TCP_NEW_SYN_RECV`.
pub const UNOWNED_STATES: [u8; 3] = [3, 6, 12];
const SOCK_DIAG_BY_FAMILY: u16 = 20;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const NLMSG_HEADER: usize = 16;
/// `struct inet_diag_req_v2`.
const REQUEST_LEN: usize = 56;
/// `struct inet_diag_msg` up to and including `idiag_inode`.
const MESSAGE_MIN: usize = 72;

/// A TCP socket: its family, state, both ends and owner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Socket {
    pub v6: bool,
    /// The kernel's state number (`TCP_ESTABLISHED` = 1, [`TCP_LISTEN`], ...).
    pub state: u8,
    /// The local address, IPv4 in the first 4 bytes.
    pub addr: [u8; 16],
    pub port: u16,
    /// The remote address (all zero for a listener), IPv4 in the first 4 bytes.
    pub peer_addr: [u8; 16],
    pub peer_port: u16,
    /// The user that created the socket; an accepted connection inherits
    /// its listener's.
    pub uid: u32,
    /// The socket's inode: `socket:[INODE]` in its holders' `/proc/PID/fd`.
    pub inode: u64,
}

impl Socket {
    /// Whether a connection to 127.0.0.1 may reach this socket (or, for a
    /// listener, whether it keeps anyone else from binding
    /// `127.0.0.1:port`): bound to 127.0.0.1 or the wildcard address, as
    /// IPv4, or as IPv6 `::` or IPv4-mapped (`::ffff:127.0.0.1`,
    /// `::ffff:0.0.0.0`). IPv6 loopback `::1` is another address.
    pub fn reaches_loopback_v4(&self) -> bool {
        self.addr == [0; 16] || is_loopback_v4(&self.addr, self.v6) || {
            let mapped_any = [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0, 0, 0, 0];
            self.v6 && self.addr == mapped_any
        }
    }
}

/// Whether `addr` (as [`Socket`] holds it) is 127.0.0.1, as IPv4 or as
/// IPv4-mapped IPv6.
pub fn is_loopback_v4(addr: &[u8; 16], v6: bool) -> bool {
    const MAPPED_LOOPBACK: [u8; 16] = [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 127, 0, 0, 1];
    if v6 {
        *addr == MAPPED_LOOPBACK
    } else {
        addr[..4] == [127, 0, 0, 1]
    }
}

/// Every listening TCP socket (IPv4 and IPv6) in this network namespace.
pub fn listeners() -> io::Result<Vec<Socket>> {
    let socket = open()?;
    let states = 1 << TCP_LISTEN;
    let mut found = dump(&socket, &request(libc::AF_INET as u8, states))?;
    found.extend(dump(&socket, &request(libc::AF_INET6 as u8, states))?);
    Ok(found)
}

/// The socket at `local` whose peer is `remote` (IPv4): the far end of a
/// connection from `remote`, found by a hash lookup in the kernel. When
/// there is no such connection (it closed) the kernel answers with the
/// listener that would take it, if any: an owner of the port all the same.
pub fn find_one(
    local: std::net::SocketAddrV4,
    remote: std::net::SocketAddrV4,
) -> io::Result<Option<Socket>> {
    let socket = open()?;
    let mut request = request(libc::AF_INET as u8, u32::MAX);
    // a lookup, not a dump
    request[6..8].copy_from_slice(&(libc::NLM_F_REQUEST as u16).to_ne_bytes());
    let id = &mut request[NLMSG_HEADER + 8..NLMSG_HEADER + 56];
    id[0..2].copy_from_slice(&local.port().to_be_bytes());
    id[2..4].copy_from_slice(&remote.port().to_be_bytes());
    id[4..8].copy_from_slice(&local.ip().octets());
    id[20..24].copy_from_slice(&remote.ip().octets());
    // INET_DIAG_NOCOOKIE: any socket with these addresses
    id[40..48].copy_from_slice(&[0xff; 8]);
    send(&socket, &request)?;
    let mut buf = vec![0u8; 8 * 1024];
    let n = recv(&socket, &mut buf)?;
    let mut found = Vec::new();
    match parse(&buf[..n], libc::AF_INET as u8, &mut found) {
        Err(err) if err.raw_os_error() == Some(libc::ENOENT) => Ok(None),
        Err(err) => Err(err),
        Ok(_) => Ok(found.pop()),
    }
}

/// A netlink socket to the kernel's socket diagnostics, through `nix`'s
/// safe wrappers, with a receive timeout so that no command hangs on the
/// kernel's answer.
fn open() -> io::Result<OwnedFd> {
    use nix::sys::socket::{
        AddressFamily, SockFlag, SockProtocol, SockType, setsockopt, socket, sockopt,
    };
    let socket = socket(
        AddressFamily::Netlink,
        SockType::Datagram,
        SockFlag::SOCK_CLOEXEC,
        SockProtocol::NetlinkSockDiag,
    )?;
    setsockopt(
        &socket,
        sockopt::ReceiveTimeout,
        &nix::sys::time::TimeVal::new(1, 0),
    )?;
    Ok(socket)
}

/// The request: a netlink header and an `inet_diag_req_v2` asking for the
/// TCP sockets of one family in `states` (a bit per state).
fn request(family: u8, states: u32) -> [u8; NLMSG_HEADER + REQUEST_LEN] {
    let len = NLMSG_HEADER + REQUEST_LEN;
    let mut buf = [0u8; NLMSG_HEADER + REQUEST_LEN];
    buf[0..4].copy_from_slice(&(len as u32).to_ne_bytes());
    buf[4..6].copy_from_slice(&SOCK_DIAG_BY_FAMILY.to_ne_bytes());
    let flags = (libc::NLM_F_REQUEST | libc::NLM_F_DUMP) as u16;
    buf[6..8].copy_from_slice(&flags.to_ne_bytes());
    buf[8..12].copy_from_slice(&1u32.to_ne_bytes()); // sequence
    let req = &mut buf[NLMSG_HEADER..];
    req[0] = family;
    req[1] = libc::IPPROTO_TCP as u8;
    req[4..8].copy_from_slice(&states.to_ne_bytes());
    buf
}

fn dump(socket: &OwnedFd, request: &[u8]) -> io::Result<Vec<Socket>> {
    let family = request[NLMSG_HEADER];
    send(socket, request)?;
    let mut found = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = recv(socket, &mut buf)?;
        if parse(&buf[..n], family, &mut found)? {
            return Ok(found);
        }
    }
}

/// Receives one datagram of answers into `buf`.
fn recv(socket: &OwnedFd, buf: &mut [u8]) -> io::Result<usize> {
    Ok(nix::sys::socket::recv(
        socket.as_raw_fd(),
        buf,
        nix::sys::socket::MsgFlags::empty(),
    )?)
}

/// Sends `request` to the kernel (netlink port 0).
fn send(socket: &OwnedFd, request: &[u8]) -> io::Result<()> {
    use nix::sys::socket::{MsgFlags, NetlinkAddr, sendto};
    sendto(
        socket.as_raw_fd(),
        request,
        &NetlinkAddr::new(0, 0),
        MsgFlags::empty(),
    )?;
    Ok(())
}

/// Parses one datagram of answers into `found`; true at the end of the dump.
fn parse(mut data: &[u8], family: u8, found: &mut Vec<Socket>) -> io::Result<bool> {
    let short = || io::Error::new(io::ErrorKind::InvalidData, "short netlink message");
    while data.len() >= NLMSG_HEADER {
        let len = u32::from_ne_bytes(data[0..4].try_into().map_err(|_| short())?) as usize;
        let kind = u16::from_ne_bytes(data[4..6].try_into().map_err(|_| short())?);
        if len < NLMSG_HEADER || len > data.len() {
            return Err(short());
        }
        let body = &data[NLMSG_HEADER..len];
        match kind {
            NLMSG_DONE => return Ok(true),
            NLMSG_ERROR => {
                let errno = body
                    .get(0..4)
                    .and_then(|b| b.try_into().ok())
                    .map_or(0, i32::from_ne_bytes);
                return Err(io::Error::from_raw_os_error(-errno));
            }
            SOCK_DIAG_BY_FAMILY if body.len() >= MESSAGE_MIN => {
                // struct inet_diag_sockid: sport, dport, src, dst (network order)
                let id = &body[4..52];
                let mut addr = [0u8; 16];
                addr.copy_from_slice(&id[4..20]);
                let mut peer_addr = [0u8; 16];
                peer_addr.copy_from_slice(&id[20..36]);
                found.push(Socket {
                    v6: family == libc::AF_INET6 as u8,
                    state: body[1],
                    addr,
                    port: u16::from_be_bytes([id[0], id[1]]),
                    peer_addr,
                    peer_port: u16::from_be_bytes([id[2], id[3]]),
                    uid: u32::from_ne_bytes(body[64..68].try_into().map_err(|_| short())?),
                    inode: u32::from_ne_bytes(body[68..72].try_into().map_err(|_| short())?).into(),
                });
            }
            _ => {}
        }
        // messages are 4-byte aligned
        let step = (len + 3) & !3;
        data = data.get(step..).unwrap_or_default();
    }
    Ok(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A loopback connection: the listener's address, the client's, and the
    /// sockets that keep it open.
    fn connected_pair() -> (
        std::net::SocketAddrV4,
        std::net::SocketAddrV4,
        (
            std::net::TcpListener,
            std::net::TcpStream,
            std::net::TcpStream,
        ),
    ) {
        let v4 = |addr: std::net::SocketAddr| match addr {
            std::net::SocketAddr::V4(addr) => addr,
            other => panic!("{other}"),
        };
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let server = v4(listener.local_addr().unwrap());
        let client = std::net::TcpStream::connect(server).unwrap();
        let (accepted, _) = listener.accept().unwrap();
        let local = v4(client.local_addr().unwrap());
        (server, local, (listener, client, accepted))
    }

    #[test]
    fn a_listener_of_ours_is_found_with_our_uid() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let all = listeners().unwrap();
        let ours: Vec<&Socket> = all.iter().filter(|l| l.port == port).collect();
        assert_eq!(ours.len(), 1, "{all:?}");
        assert!(!ours[0].v6);
        assert_eq!(&ours[0].addr[..4], &[127, 0, 0, 1]);
        assert_eq!(ours[0].uid, nix::unistd::getuid().as_raw());
    }

    /// The two readers of the kernel's sockets agree, field by field (both
    /// ends, byte order, owner, inode), on a listener and on both ends of a
    /// connection.
    #[test]
    fn netlink_and_the_proc_tables_report_the_same_sockets() {
        let (server, local, _held) = connected_pair();
        let table = crate::sys::proc_net::sockets();
        let in_table = |socket: &Socket| {
            assert!(table.contains(socket), "{socket:?} is not in {table:?}");
        };
        let listening = listeners().unwrap();
        let ours: Vec<&Socket> = listening
            .iter()
            .filter(|s| s.port == server.port())
            .collect();
        assert_eq!(ours.len(), 1, "{listening:?}");
        assert_ne!(ours[0].inode, 0);
        in_table(ours[0]);
        let far = find_one(server, local)
            .unwrap()
            .expect("the accepted socket");
        in_table(&far);
        let near = find_one(local, server).unwrap().expect("the client socket");
        in_table(&near);
        assert_eq!(&near.peer_addr[..4], &[127, 0, 0, 1]);
        assert_eq!(near.peer_port, server.port());
    }

    #[test]
    fn a_connected_socket_is_not_a_listener() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let client = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        let client_port = client.local_addr().unwrap().port();
        let all = listeners().unwrap();
        assert!(all.iter().any(|l| l.port == port));
        assert!(all.iter().all(|l| l.port != client_port));
    }

    #[test]
    fn the_far_end_of_a_connection_is_found_by_its_addresses() {
        let (server, local, _held) = connected_pair();
        let far = find_one(server, local)
            .unwrap()
            .expect("the accepted socket");
        assert_eq!(
            (far.state, far.port, far.peer_port),
            (1, server.port(), local.port())
        );
        assert_eq!(far.uid, nix::unistd::getuid().as_raw());
        // no connection from a port nobody connected from: at most the
        // listener that would take one
        let unused = std::net::SocketAddrV4::new(*local.ip(), local.port().wrapping_add(1).max(1));
        let found = find_one(server, unused).unwrap();
        assert!(
            found.as_ref().is_none_or(|s| s.state == TCP_LISTEN),
            "{found:?}"
        );
    }

    #[test]
    fn garbage_answers_are_errors_not_panics() {
        let mut found = Vec::new();
        assert!(parse(&[0xff; 20], libc::AF_INET as u8, &mut found).is_err());
        assert!(parse(&[1, 2, 3], libc::AF_INET as u8, &mut found).is_ok());
        assert!(found.is_empty());
    }
}
