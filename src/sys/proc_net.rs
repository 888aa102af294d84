//! The kernel's TCP tables as text, `/proc/net/tcp` and `/proc/net/tcp6`:
//! the one reader of them, for when socket diagnostics
//! ([`crate::sys::sockdiag`]) cannot be asked (a sandbox may forbid
//! netlink) and for tests.
//!
//! A row reads `sl local rem st tx:rx tr:when retrnsmt uid timeout inode
//! ...`. Ports and the state are hex numbers; an address is its bytes in
//! network order printed as 32-bit words in the *host's* byte order (one
//! word for IPv4, four for IPv6), so `127.0.0.1` is `0100007F` on a
//! little-endian machine. Comparing the hex text with a constant is right
//! on one byte order only; every address here is decoded to its bytes.

use crate::sys::sockdiag::Socket;

/// The two tables and whether each holds IPv6 sockets.
const TABLES: [(&str, bool); 2] = [("/proc/net/tcp", false), ("/proc/net/tcp6", true)];

/// Every TCP socket (IPv4 and IPv6) in this network namespace; a table
/// that cannot be read adds none.
pub fn sockets() -> Vec<Socket> {
    let mut sockets = Vec::new();
    for (table, v6) in TABLES {
        if let Ok(text) = std::fs::read_to_string(table) {
            sockets.extend(parse(&text, v6));
        }
    }
    sockets
}

/// The sockets of one table's text (`v6` for `tcp6`); the header and any
/// line that does not parse are skipped.
pub fn parse(table: &str, v6: bool) -> Vec<Socket> {
    table
        .lines()
        .skip(1)
        .filter_map(|line| row(line, v6))
        .collect()
}

fn row(line: &str, v6: bool) -> Option<Socket> {
    let fields: Vec<&str> = line.split_whitespace().collect();
    let (addr, port) = end(fields.get(1)?, v6)?;
    let (peer_addr, peer_port) = end(fields.get(2)?, v6)?;
    Some(Socket {
        v6,
        state: u8::from_str_radix(fields.get(3)?, 16).ok()?,
        addr,
        port,
        peer_addr,
        peer_port,
        uid: fields.get(7)?.parse().ok()?,
        inode: fields.get(9)?.parse().ok()?,
    })
}

/// `ADDR:PORT`, both hex.
fn end(field: &str, v6: bool) -> Option<([u8; 16], u16)> {
    let (addr, port) = field.split_once(':')?;
    if port.len() != 4 {
        return None;
    }
    Some((address(addr, v6)?, u16::from_str_radix(port, 16).ok()?))
}

/// The address's bytes in network order, IPv4 in the first 4: each 8-digit
/// word is a `u32` in host order, so its native bytes are the address's.
fn address(hex: &str, v6: bool) -> Option<[u8; 16]> {
    let words = if v6 { 4 } else { 1 };
    if hex.len() != words * 8 {
        return None;
    }
    let mut addr = [0u8; 16];
    for i in 0..words {
        let word = u32::from_str_radix(hex.get(i * 8..i * 8 + 8)?, 16).ok()?;
        addr[i * 4..i * 4 + 4].copy_from_slice(&word.to_ne_bytes());
    }
    Some(addr)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    const V4_HEADER: &str = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n";
    const V6_HEADER: &str = "  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n";

    fn v4(addr: &[u8; 16]) -> Ipv4Addr {
        Ipv4Addr::new(addr[0], addr[1], addr[2], addr[3])
    }

    /// Rows as a little-endian machine prints them, decoded to the
    /// addresses they name: the word `0100007F` is 127.0.0.1, not 1.0.0.127.
    #[cfg(target_endian = "little")]
    #[test]
    fn addresses_are_decoded_from_host_order_words() {
        let table = format!(
            "{V4_HEADER}\
   0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 111 1 0 100 0 0 10 0
   1: 0100000A:C350 0200000A:01BB 01 00000000:00000000 00:00000000 00000000  1001        0 222 1 0 100 0 0 10 0
"
        );
        let found = parse(&table, false);
        assert_eq!(found.len(), 2, "{found:?}");
        let (listener, connection) = (&found[0], &found[1]);
        assert_eq!(v4(&listener.addr), Ipv4Addr::LOCALHOST);
        assert_eq!(listener.addr[4..], [0; 12]);
        assert_eq!((listener.port, listener.state), (8080, 10));
        assert_eq!((listener.uid, listener.inode), (1000, 111));
        assert!(listener.reaches_loopback_v4());
        // a non-loopback row: 10.0.0.1:50000 -> 10.0.0.2:443
        assert_eq!(v4(&connection.addr), Ipv4Addr::new(10, 0, 0, 1));
        assert_eq!(v4(&connection.peer_addr), Ipv4Addr::new(10, 0, 0, 2));
        assert_eq!((connection.port, connection.peer_port), (50000, 443));
        assert_eq!(
            (connection.state, connection.uid, connection.inode),
            (1, 1001, 222)
        );
        assert!(!connection.reaches_loopback_v4());

        let table = format!(
            "{V6_HEADER}\
   0: 00000000000000000000000001000000:1F90 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000    42        0 333 1 0 100 0 0 10 0
   1: 0000000000000000FFFF00000100007F:1F90 0000000000000000FFFF00000100007F:C350 01 00000000:00000000 00:00000000 00000000    43        0 444 1 0 100 0 0 10 0
   2: 00000000000000000000000000000000:1F90 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000    44        0 555 1 0 100 0 0 10 0
   3: B80D0120000000000000000001000000:1F90 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000    45        0 666 1 0 100 0 0 10 0
   4: 0000000000000000FFFF000000000000:1F90 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000    46        0 777 1 0 100 0 0 10 0
"
        );
        let found = parse(&table, true);
        assert_eq!(found.len(), 5, "{found:?}");
        let ip = |s: &Socket| Ipv6Addr::from(s.addr);
        // ::1 is IPv6 loopback, which a connection to 127.0.0.1 never reaches
        assert_eq!(ip(&found[0]), Ipv6Addr::LOCALHOST);
        assert!(!found[0].reaches_loopback_v4());
        // ::ffff:127.0.0.1, both ends
        assert_eq!(ip(&found[1]).to_ipv4_mapped(), Some(Ipv4Addr::LOCALHOST));
        assert_eq!(
            Ipv6Addr::from(found[1].peer_addr).to_ipv4_mapped(),
            Some(Ipv4Addr::LOCALHOST)
        );
        assert_eq!(
            (found[1].port, found[1].peer_port, found[1].inode),
            (8080, 50000, 444)
        );
        assert!(found[1].reaches_loopback_v4());
        // the dual-stack wildcard
        assert_eq!(ip(&found[2]), Ipv6Addr::UNSPECIFIED);
        assert!(found[2].reaches_loopback_v4());
        // a non-loopback row: 2001:db8::1
        assert_eq!(ip(&found[3]), "2001:db8::1".parse::<Ipv6Addr>().unwrap());
        assert!(!found[3].reaches_loopback_v4());
        // the IPv4-mapped wildcard ::ffff:0.0.0.0 takes 127.0.0.1 too
        assert_eq!(ip(&found[4]).to_ipv4_mapped(), Some(Ipv4Addr::UNSPECIFIED));
        assert!(found[4].reaches_loopback_v4());
    }

    #[test]
    fn rows_that_do_not_parse_are_skipped() {
        let table = format!(
            "{V4_HEADER}\
   0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1000
   1: 0100007F 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 1
   2: 0100007F00:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 1
garbage
"
        );
        assert!(parse(&table, false).is_empty());
        assert!(parse("", false).is_empty());
        // a v4 row read as v6 is not an address
        let row = format!(
            "{V4_HEADER}   0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1000 0 1\n"
        );
        assert_eq!(parse(&row, false).len(), 1);
        assert!(parse(&row, true).is_empty());
    }

    #[test]
    fn a_real_listener_is_read_back_as_bound() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let ours: Vec<Socket> = sockets()
            .into_iter()
            .filter(|s| s.port == port && s.state == crate::sys::sockdiag::TCP_LISTEN)
            .collect();
        assert_eq!(ours.len(), 1, "{ours:?}");
        assert!(!ours[0].v6);
        assert_eq!(v4(&ours[0].addr), Ipv4Addr::LOCALHOST);
        assert_eq!(ours[0].uid, nix::unistd::getuid().as_raw());
        assert_ne!(ours[0].inode, 0);
    }

    proptest::proptest! {
        #[test]
        fn any_table_text_is_read_without_panic(text in "(?s).{0,400}") {
            let _ = parse(&text, false);
            let _ = parse(&text, true);
        }
    }
}
