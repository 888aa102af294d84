//! A minimal HTTP/1.0 GET for asking the hub on 127.0.0.1 (`/.status`,
//! `/.leases`).
//!
//! The CLI only ever asks its own hub one question on loopback; a full HTTP
//! client would cost start-up time on every `bones hub status` for nothing.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::time::Duration;

use super::status::StatusReport;

/// What a probe of `/.status` found.
#[derive(Debug)]
pub enum Probe {
    /// The endpoint answered with a report (any HTTP status).
    Answered {
        http_status: u16,
        report: Box<StatusReport>,
    },
    /// Something answered, but not with a bones status report.
    Foreign(String),
    /// Nothing answered.
    Unreachable(String),
}

/// GETs `/.status` from `127.0.0.1:port`, giving up after `timeout`.
pub fn status(port: u16, timeout: Duration) -> Probe {
    match get(port, "/.status", timeout) {
        Err(err) => Probe::Unreachable(err.to_string()),
        Ok((http_status, body)) => match serde_json::from_slice::<StatusReport>(&body) {
            Ok(report) => Probe::Answered {
                http_status,
                report: Box::new(report),
            },
            Err(_) => Probe::Foreign(format!(
                "127.0.0.1:{port} answered HTTP {http_status} but not with a bones status report"
            )),
        },
    }
}

/// Why the hub did not tell its live leases.
#[derive(Debug, thiserror::Error)]
pub enum LeasesError {
    #[error(transparent)]
    Get(#[from] std::io::Error),
    #[error("127.0.0.1:{port} answered HTTP {code} without JSON")]
    NotJson {
        port: u16,
        code: u16,
        #[source]
        source: serde_json::Error,
    },
    /// The hub answered with an error; its text.
    #[error("{0}")]
    Refused(String),
    #[error("127.0.0.1:{port} answered without a lease list")]
    NoList { port: u16 },
}

/// GETs `/.leases`: the slots the hub sees holding live leases.
pub fn live_leases(port: u16, timeout: Duration) -> Result<Vec<String>, LeasesError> {
    let (code, body) = get(port, "/.leases", timeout)?;
    let value: serde_json::Value = serde_json::from_slice(&body)
        .map_err(|source| LeasesError::NotJson { port, code, source })?;
    if code != 200 {
        return Err(LeasesError::Refused(
            value["error"]
                .as_str()
                .unwrap_or("unknown error")
                .to_string(),
        ));
    }
    value["live"]
        .as_array()
        .map(|slots| {
            slots
                .iter()
                .filter_map(|s| s.as_str().map(str::to_string))
                .collect()
        })
        .ok_or(LeasesError::NoList { port })
}

fn get(port: u16, path: &str, timeout: Duration) -> std::io::Result<(u16, Vec<u8>)> {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let mut stream = TcpStream::connect_timeout(&addr, timeout)?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    // one write: `write!` on a bare stream sends each piece as its own
    // segment, and the server waits for the rest
    let request = format!("GET {path} HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\n\r\n");
    stream.write_all(request.as_bytes())?;
    let response = read_response(&mut stream)?;
    let split =
        head_end(&response).ok_or_else(|| std::io::Error::other("malformed HTTP response"))?;
    let head = String::from_utf8_lossy(&response[..split]);
    let code = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse::<u16>().ok())
        .ok_or_else(|| std::io::Error::other("malformed HTTP status line"))?;
    Ok((code, response[split + 4..].to_vec()))
}

/// Reads a response up to the end its `content-length` gives, or to the
/// end of the stream without one: the server's close of the connection
/// came a millisecond after the body (strace of `hub stop`, which waited
/// for it on every stop).
fn read_response(stream: &mut TcpStream) -> std::io::Result<Vec<u8>> {
    const MAX: usize = 1 << 20;
    let mut response = Vec::with_capacity(4096);
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(split) = head_end(&response)
            && let Some(length) = content_length(&response[..split])
            && response.len() >= split + 4 + length
        {
            response.truncate(split + 4 + length);
            return Ok(response);
        }
        let n = stream.read(&mut chunk)?;
        if n == 0 {
            return Ok(response);
        }
        response.extend_from_slice(&chunk[..n]);
        if response.len() > MAX {
            return Err(std::io::Error::other("HTTP response larger than 1 MiB"));
        }
    }
}

/// Where the head of a response ends (its blank line).
fn head_end(response: &[u8]) -> Option<usize> {
    response.windows(4).position(|w| w == b"\r\n\r\n")
}

/// The `content-length` a response head gives, if any.
fn content_length(head: &[u8]) -> Option<usize> {
    String::from_utf8_lossy(head).lines().find_map(|line| {
        let (name, value) = line.split_once(':')?;
        name.trim()
            .eq_ignore_ascii_case("content-length")
            .then(|| value.trim().parse().ok())?
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    /// Serves `response` to one connection, then keeps it open until the
    /// client closes: a read that waited for the server's close would hang
    /// (the read timeout then fails the test instead).
    fn serve_once(response: &'static [u8]) -> u16 {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        let port = listener.local_addr().unwrap().port();
        std::thread::spawn(move || {
            let (mut conn, _) = listener.accept().unwrap();
            let mut request = [0u8; 1024];
            let _ = conn.read(&mut request);
            conn.write_all(response).unwrap();
            let _ = conn.read(&mut request); // until the client closes
        });
        port
    }

    #[test]
    fn a_response_ends_at_its_content_length_without_waiting_for_the_close() {
        let port = serve_once(b"HTTP/1.0 200 OK\r\nContent-Length: 12\r\n\r\n{\"live\":[]}\n");
        let (code, body) = get(port, "/.leases", Duration::from_secs(5)).unwrap();
        assert_eq!(code, 200);
        assert_eq!(body, b"{\"live\":[]}\n");
    }

    #[test]
    fn content_length_is_read_from_the_head_whatever_its_case() {
        assert_eq!(
            content_length(b"HTTP/1.0 200 OK\r\ncontent-length: 7"),
            Some(7)
        );
        assert_eq!(content_length(b"HTTP/1.0 200 OK\r\nX-Other: 7"), None);
        assert_eq!(head_end(b"HTTP/1.0 200 OK\r\n\r\nbody"), Some(15));
    }
}
