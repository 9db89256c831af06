//! One blocking socket call bounded by SO_RCVTIMEO / SO_SNDTIMEO (1 s), timed.
//! Usage: sock-timeouts OP [ADDR PORT]
//!   connect ADDR PORT   SO_SNDTIMEO, blocking connect
//!   accept              SO_RCVTIMEO, blocking accept on 127.0.0.1:0 (nobody connects)
//!   recv ADDR PORT      SO_RCVTIMEO, blocking recv on a connection that stays silent
//!   recv_from           SO_RCVTIMEO, blocking recv_from on udp 127.0.0.1:0
//!   send ADDR PORT      SO_SNDTIMEO, blocking 1 MiB sends to a peer that never reads
//!   send_to ADDR PORT   the same through sock_send_to (the address is ignored on TCP)
//!   read ADDR PORT      `recv`, through fd_read (Linux applies the timeouts to read(2) too)
//!   write ADDR PORT     `send`, through fd_write
//! Prints `OP errno=N elapsed_ms=M` for the call that failed (0 if it succeeded).

use std::fs::File;
use std::io::{Read, Write};
use std::mem::ManuallyDrop;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::os::wasi::io::FromRawFd;
use std::time::Instant;
use wasmedge_net::{bind, connect, exit_failed, listen, open, recv, recv_from, send, send_to, sys};
use wasmedge_net::{Errno, Result, AF_INET4, SOCK_DGRAM, SOCK_STREAM, SOL_SOCKET};

const SO_RCVTIMEO: i32 = 11;
const SO_SNDTIMEO: i32 = 12;

fn set_timeout(fd: u32, name: i32, seconds: i64) {
    let timeval: [i64; 2] = [seconds, 0];
    let p = timeval.as_ptr() as *const u8;
    let rc = unsafe { sys::sock_setsockopt(fd as i32, SOL_SOCKET, name, p, 16) };
    if rc != 0 {
        exit_failed("setsockopt", rc);
    }
}

fn any_local() -> SocketAddr {
    SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 0)
}

fn connected(target: &SocketAddr, option: i32) -> u32 {
    let fd = open(AF_INET4, SOCK_STREAM).unwrap_or_else(|e| exit_failed("socket", e));
    connect(fd, target).unwrap_or_else(|e| exit_failed("connect", e));
    set_timeout(fd, option, 1);
    fd
}

/// Runs `call` until it fails; returns the errno and how long the failing call took.
fn until_error<T>(mut call: impl FnMut() -> Result<T>) -> (Errno, u128) {
    loop {
        let start = Instant::now();
        if let Err(e) = call() {
            return (e, start.elapsed().as_millis());
        }
    }
}

/// The socket as a `File`, so that reads and writes go through fd_read / fd_write.
fn as_file(fd: u32) -> ManuallyDrop<File> {
    ManuallyDrop::new(unsafe { File::from_raw_fd(fd as i32) })
}

fn io_errno(e: std::io::Error) -> Errno {
    e.raw_os_error().unwrap_or(-1)
}

fn timed<T>(call: impl FnOnce() -> Result<T>) -> (Errno, u128) {
    let start = Instant::now();
    let errno = call().err().unwrap_or(0);
    (errno, start.elapsed().as_millis())
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let op = args.get(1).map(String::as_str).unwrap_or("");
    let target = || -> SocketAddr {
        let ip: IpAddr = args.get(2).and_then(|a| a.parse().ok()).unwrap_or_else(|| exit_failed("ADDR", 28));
        let port: u16 = args.get(3).and_then(|p| p.parse().ok()).unwrap_or_else(|| exit_failed("PORT", 28));
        SocketAddr::new(ip, port)
    };
    let chunk = vec![7u8; 1 << 20];
    let (errno, elapsed) = match op {
        "connect" => {
            let fd = open(AF_INET4, SOCK_STREAM).unwrap_or_else(|e| exit_failed("socket", e));
            set_timeout(fd, SO_SNDTIMEO, 1);
            timed(|| connect(fd, &target()))
        }
        "accept" => {
            let fd = open(AF_INET4, SOCK_STREAM).unwrap_or_else(|e| exit_failed("socket", e));
            bind(fd, &any_local()).unwrap_or_else(|e| exit_failed("bind", e));
            listen(fd, 16).unwrap_or_else(|e| exit_failed("listen", e));
            set_timeout(fd, SO_RCVTIMEO, 1);
            timed(|| wasmedge_net::accept(fd))
        }
        "recv" => {
            let fd = connected(&target(), SO_RCVTIMEO);
            let mut buf = [0u8; 64];
            timed(|| recv(fd, &mut buf))
        }
        "recv_from" => {
            let fd = open(AF_INET4, SOCK_DGRAM).unwrap_or_else(|e| exit_failed("socket", e));
            bind(fd, &any_local()).unwrap_or_else(|e| exit_failed("bind", e));
            set_timeout(fd, SO_RCVTIMEO, 1);
            let mut buf = [0u8; 64];
            timed(|| recv_from(fd, &mut buf))
        }
        "send" => {
            let fd = connected(&target(), SO_SNDTIMEO);
            until_error(|| send(fd, &chunk))
        }
        "send_to" => {
            let to = target();
            let fd = connected(&to, SO_SNDTIMEO);
            until_error(|| send_to(fd, &chunk, &to))
        }
        "read" => {
            let mut file = as_file(connected(&target(), SO_RCVTIMEO));
            let mut buf = [0u8; 64];
            timed(|| file.read(&mut buf).map_err(io_errno))
        }
        "write" => {
            let mut file = as_file(connected(&target(), SO_SNDTIMEO));
            until_error(|| file.write(&chunk).map_err(io_errno))
        }
        _ => exit_failed("OP (connect, accept, recv, recv_from, send, send_to, read or write)", 28),
    };
    println!("{} errno={} elapsed_ms={}", op, errno, elapsed);
}
