//! Who holds a local TCP port, asked of the kernel's socket diagnostics
//! (netlink `SOCK_DIAG`, what `ss` uses).
//!
//! Every client checks the owner of the coordination port before it
//! connects and again before it answers the server's challenge (see
//! [`super::ports::foreign_holder`]). Reading `/proc/net/tcp` for that walks
//! the kernel's whole connection table, which on a large machine costs
//! milliseconds per command however few sockets exist; a dump of listening
//! sockets, or of one port's sockets filtered in the kernel, is a few
//! microseconds.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use nix::libc;

/// `TCP_LISTEN` in the kernel's state numbering.
pub const TCP_LISTEN: u8 = 10;
/// States whose sockets the kernel reports with uid 0, whoever made them:
/// `TCP_SYN_RECV` (asking for it also brings the half-open connections not
/// yet accepted, `TCP_NEW_SYN_RECV`), `TCP_TIME_WAIT` (a closed
/// connection's remains) and `TCP_NEW_SYN_RECV` itself.
pub const UNOWNED_STATES: [u8; 3] = [3, 6, 12];
/// `INET_DIAG_REQ_BYTECODE`: the attribute carrying a filter program.
const REQ_BYTECODE: u16 = 1;
/// Filter operations of `struct inet_diag_bc_op`.
const BC_JMP: u8 = 1;
const BC_S_GE: u8 = 2;
const BC_S_LE: u8 = 3;
const BC_D_GE: u8 = 4;
const BC_D_LE: u8 = 5;
const SOCK_DIAG_BY_FAMILY: u16 = 20;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const NLMSG_HEADER: usize = 16;
/// `struct inet_diag_req_v2`.
const REQUEST_LEN: usize = 56;
/// `struct inet_diag_msg` up to and including `idiag_uid`.
const MESSAGE_MIN: usize = 68;

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
}

/// Every listening TCP socket (IPv4 and IPv6) in this network namespace.
pub fn listeners() -> io::Result<Vec<Socket>> {
    let socket = open()?;
    let states = 1 << TCP_LISTEN;
    let mut found = dump(&socket, &request(libc::AF_INET as u8, states, None))?;
    found.extend(dump(&socket, &request(libc::AF_INET6 as u8, states, None))?);
    Ok(found)
}

/// Every TCP socket (IPv4 and IPv6) with `port` at either end, in any state
/// that has an owner (not in [`UNOWNED_STATES`]), filtered by the kernel so
/// the cost does not grow with the machine's connections.
pub fn on_port(port: u16) -> io::Result<Vec<Socket>> {
    let socket = open()?;
    let states = UNOWNED_STATES
        .iter()
        .fold(u32::MAX, |mask, state| mask & !(1u32 << state));
    let filter = port_filter(port);
    let mut found = dump(
        &socket,
        &request(libc::AF_INET as u8, states, Some(&filter)),
    )?;
    found.extend(dump(
        &socket,
        &request(libc::AF_INET6 as u8, states, Some(&filter)),
    )?);
    Ok(found)
}

/// A filter program for `sport == port || dport == port`.
///
/// The kernel runs `struct inet_diag_bc_op`s: each tests the socket and
/// jumps forward by `yes` or `no` bytes; running off the end exactly
/// accepts, jumping 4 bytes past it rejects. A port comparison is two ops,
/// the second carrying the port. Every jump target must lie on the chain of
/// `yes` jumps from the start (the kernel's audit checks it), hence the
/// straight line with one unconditional jump (`JMP` always takes `no`).
fn port_filter(port: u16) -> [u8; 36] {
    fn op(code: u8, yes: u8, no: u16) -> [u8; 4] {
        let no = no.to_ne_bytes();
        [code, yes, no[0], no[1]]
    }
    let arg = op(0, 0, port);
    let program: [[u8; 4]; 9] = [
        op(BC_S_GE, 8, 20), // 0: sport >= port, else try dport at 20
        arg,
        op(BC_S_LE, 8, 12), // 8: sport <= port, else try dport at 20
        arg,
        op(BC_JMP, 4, 20),  // 16: sport matched: jump to the end, accept
        op(BC_D_GE, 8, 20), // 20: dport >= port, else past the end, reject
        arg,
        op(BC_D_LE, 8, 12), // 28: dport <= port (accept), else reject
        arg,
    ];
    let mut out = [0u8; 36];
    for (i, word) in program.iter().enumerate() {
        out[i * 4..i * 4 + 4].copy_from_slice(word);
    }
    out
}

fn open() -> io::Result<OwnedFd> {
    // SAFETY: plain socket(2); the descriptor is owned at once.
    let fd = unsafe {
        libc::socket(
            libc::AF_NETLINK,
            libc::SOCK_DGRAM | libc::SOCK_CLOEXEC,
            libc::NETLINK_SOCK_DIAG,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fd is a fresh descriptor nobody else owns.
    let socket = unsafe { OwnedFd::from_raw_fd(fd) };
    // never hang a command on the kernel's answer
    let timeout = libc::timeval {
        tv_sec: 1,
        tv_usec: 0,
    };
    // SAFETY: setsockopt with a timeval of the size given.
    let rc = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVTIMEO,
            (&timeout as *const libc::timeval).cast(),
            std::mem::size_of::<libc::timeval>() as libc::socklen_t,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(socket)
}

/// The request: a netlink header and an `inet_diag_req_v2` asking for the
/// TCP sockets of one family in `states` (a bit per state), with an
/// optional filter program.
fn request(family: u8, states: u32, filter: Option<&[u8]>) -> Vec<u8> {
    let filter_len = filter.map_or(0, |f| 4 + f.len());
    let len = NLMSG_HEADER + REQUEST_LEN + filter_len;
    let mut buf = vec![0u8; len];
    buf[0..4].copy_from_slice(&(len as u32).to_ne_bytes());
    buf[4..6].copy_from_slice(&SOCK_DIAG_BY_FAMILY.to_ne_bytes());
    let flags = (libc::NLM_F_REQUEST | libc::NLM_F_DUMP) as u16;
    buf[6..8].copy_from_slice(&flags.to_ne_bytes());
    buf[8..12].copy_from_slice(&1u32.to_ne_bytes()); // sequence
    let req = &mut buf[NLMSG_HEADER..];
    req[0] = family;
    req[1] = libc::IPPROTO_TCP as u8;
    req[4..8].copy_from_slice(&states.to_ne_bytes());
    if let Some(filter) = filter {
        let attr = &mut req[REQUEST_LEN..];
        attr[0..2].copy_from_slice(&((4 + filter.len()) as u16).to_ne_bytes());
        attr[2..4].copy_from_slice(&REQ_BYTECODE.to_ne_bytes());
        attr[4..].copy_from_slice(filter);
    }
    buf
}

fn dump(socket: &OwnedFd, request: &[u8]) -> io::Result<Vec<Socket>> {
    let family = request[NLMSG_HEADER];
    // SAFETY: an all-zero sockaddr_nl is valid; the kernel is pid 0.
    let mut kernel: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
    kernel.nl_family = libc::AF_NETLINK as libc::sa_family_t;
    // SAFETY: sendto with a buffer and address of the sizes given.
    let sent = unsafe {
        libc::sendto(
            socket.as_raw_fd(),
            request.as_ptr().cast(),
            request.len(),
            0,
            (&kernel as *const libc::sockaddr_nl).cast(),
            std::mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t,
        )
    };
    if sent < 0 {
        return Err(io::Error::last_os_error());
    }
    let mut found = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        // SAFETY: recv into a buffer of the length given.
        let n = unsafe { libc::recv(socket.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        if parse(&buf[..n as usize], family, &mut found)? {
            return Ok(found);
        }
    }
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
    fn the_sockets_of_one_port_are_both_ends_of_its_connections() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let client = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        let (_server, _) = listener.accept().unwrap();
        let client_port = client.local_addr().unwrap().port();
        // a connection elsewhere must be filtered out by the kernel
        let other = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let _elsewhere = std::net::TcpStream::connect(other.local_addr().unwrap()).unwrap();
        // (a connection between other addresses may share the port number)
        let found: Vec<Socket> = on_port(port)
            .unwrap()
            .into_iter()
            .filter(|s| !s.v6 && s.addr[..4] == [127, 0, 0, 1])
            .collect();
        let me = nix::unistd::getuid().as_raw();
        let mut seen: Vec<(u8, u16, u16)> = found
            .iter()
            .inspect(|s| assert_eq!(s.uid, me, "{s:?}"))
            .map(|s| (s.state, s.port, s.peer_port))
            .collect();
        seen.sort();
        let established = 1;
        let mut want = vec![
            (established, port, client_port),
            (established, client_port, port),
            (TCP_LISTEN, port, 0),
        ];
        want.sort();
        assert_eq!(seen, want, "{found:?}");
    }

    #[test]
    fn garbage_answers_are_errors_not_panics() {
        let mut found = Vec::new();
        assert!(parse(&[0xff; 20], libc::AF_INET as u8, &mut found).is_err());
        assert!(parse(&[1, 2, 3], libc::AF_INET as u8, &mut found).is_ok());
        assert!(found.is_empty());
    }
}
