//! Outbound HTTP/1.0 client: `http-get HOST PORT PATH` prints the response body.
//! sock_getaddrinfo -> first IPv4 address -> non-blocking connect (5 s timeout, SO_ERROR)
//! -> send the request -> read to EOF. Failures: `http-get: <step> failed: errno N`, exit 1.

use std::io::Write;
use std::net::SocketAddr;
use wasmedge_net::{close, connect, getaddrinfo, open, recv, send, set_nonblocking, socket_error};
use wasmedge_net::{Errno, Poll, Result, AF_INET4, E_AGAIN, E_AINODATA, E_INPROGRESS};
use wasmedge_net::{EVENTTYPE_FD_READ, EVENTTYPE_FD_WRITE, E_TIMEDOUT, SOCK_STREAM};

const CONNECT_TIMEOUT_NS: u64 = 5_000_000_000;
const IO_TIMEOUT_NS: u64 = 30_000_000_000;

fn fail(step: &str, errno: Errno) -> ! {
    eprintln!("http-get: {} failed: errno {}", step, errno);
    std::process::exit(1)
}

/// Waits until `fd` is ready for `kind` (FD_READ / FD_WRITE); `TIMEDOUT` after `timeout_ns`.
fn wait(fd: u32, kind: u8, timeout_ns: u64) -> Result<()> {
    let mut poll = Poll::new();
    poll.fd(fd, kind, 1);
    poll.timeout(timeout_ns, 0);
    match poll.wait()?.iter().find(|ev| ev.userdata == 1) {
        Some(ev) if ev.error != 0 => Err(ev.error as Errno),
        Some(_) => Ok(()),
        None => Err(E_TIMEDOUT),
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let port = args.get(2).and_then(|p| p.parse::<u16>().ok());
    let (host, port, path) = match (args.len(), port) {
        (4, Some(port)) => (&args[1], port, &args[3]),
        _ => {
            eprintln!("usage: http-get HOST PORT PATH");
            std::process::exit(2)
        }
    };

    let addrs = getaddrinfo(host, &args[2], 10).unwrap_or_else(|e| fail("getaddrinfo", e));
    let ip = match addrs.iter().find(|a| a.is_ipv4()) {
        Some(a) => a.ip(),
        None => fail("getaddrinfo", E_AINODATA),
    };
    let fd = open(AF_INET4, SOCK_STREAM).unwrap_or_else(|e| fail("socket", e));
    set_nonblocking(fd).unwrap_or_else(|e| fail("socket", e));
    match connect(fd, &SocketAddr::new(ip, port)) {
        Ok(()) => {}
        Err(E_INPROGRESS) => {
            wait(fd, EVENTTYPE_FD_WRITE, CONNECT_TIMEOUT_NS).unwrap_or_else(|e| fail("connect", e));
            match socket_error(fd) {
                Ok(0) => {}
                Ok(e) | Err(e) => fail("connect", e),
            }
        }
        Err(e) => fail("connect", e),
    }

    let request = format!("GET {} HTTP/1.0\r\nHost: {}\r\n\r\n", path, host);
    let mut rest = request.as_bytes();
    while !rest.is_empty() {
        match send(fd, rest) {
            Ok(n) => rest = &rest[n..],
            Err(E_AGAIN) => {
                wait(fd, EVENTTYPE_FD_WRITE, IO_TIMEOUT_NS).unwrap_or_else(|e| fail("send", e))
            }
            Err(e) => fail("send", e),
        }
    }

    let (mut response, mut buf) = (Vec::new(), vec![0u8; 64 * 1024]);
    loop {
        match recv(fd, &mut buf) {
            Ok(0) => break,
            Ok(n) => response.extend_from_slice(&buf[..n]),
            Err(E_AGAIN) => {
                wait(fd, EVENTTYPE_FD_READ, IO_TIMEOUT_NS).unwrap_or_else(|e| fail("recv", e))
            }
            Err(e) => fail("recv", e),
        }
    }
    close(fd);

    let body_start = response
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map_or(0, |i| i + 4);
    let mut out = std::io::stdout();
    let _ = out.write_all(&response[body_start..]);
    let _ = out.flush();
}
