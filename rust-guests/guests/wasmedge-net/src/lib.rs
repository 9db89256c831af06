//! WasmEdge's socket extension of `wasi_snapshot_preview1`, as our std-only guests use it:
//! raw imports (`sys`), safe wrappers returning WASI errnos, a `poll_oneoff` helper and a small
//! level-triggered server loop (`server`).

pub mod echo;
pub mod server;
pub mod sys;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// A WASI errno (`0` never appears inside `Err`).
pub type Errno = i32;
pub type Result<T> = std::result::Result<T, Errno>;

pub const E_AFNOSUPPORT: Errno = 5;
pub const E_AGAIN: Errno = 6;
pub const E_CONNREFUSED: Errno = 14;
pub const E_CONNRESET: Errno = 15;
pub const E_INPROGRESS: Errno = 26;
pub const E_INTR: Errno = 27;
pub const E_TIMEDOUT: Errno = 73;
pub const E_AINODATA: Errno = 83;

pub const AF_INET4: i32 = 1;
pub const AF_INET6: i32 = 2;
pub const SOCK_DGRAM: i32 = 1;
pub const SOCK_STREAM: i32 = 2;

pub const SHUT_RD: i32 = 1;
pub const SHUT_WR: i32 = 2;
pub const SHUT_RDWR: i32 = 3;

pub const FDFLAGS_NONBLOCK: u16 = 4;

pub const SOL_SOCKET: i32 = 0;
pub const SO_REUSEADDR: i32 = 0;
pub const SO_ERROR: i32 = 2;

pub const EVENTTYPE_CLOCK: u8 = 0;
pub const EVENTTYPE_FD_READ: u8 = 1;
pub const EVENTTYPE_FD_WRITE: u8 = 2;
pub const EVENT_FD_READWRITE_HANGUP: u16 = 1;
pub const CLOCK_MONOTONIC: u64 = 1;

fn check(rc: i32) -> Result<()> {
    if rc == 0 {
        Ok(())
    } else {
        Err(rc)
    }
}

fn family_of(ip: &IpAddr) -> i32 {
    match ip {
        IpAddr::V4(_) => AF_INET4,
        IpAddr::V6(_) => AF_INET6,
    }
}

/// Runs `f` with a V1 `WasiAddress` holding the raw IP (4 or 16 bytes, network order).
fn with_raw_addr<R>(ip: &IpAddr, f: impl FnOnce(*const sys::WasiAddress) -> R) -> R {
    let mut bytes = [0u8; 16];
    let len = match ip {
        IpAddr::V4(a) => {
            bytes[..4].copy_from_slice(&a.octets());
            4
        }
        IpAddr::V6(a) => {
            bytes = a.octets();
            16
        }
    };
    let addr = sys::WasiAddress {
        buf: bytes.as_mut_ptr(),
        buf_len: len,
    };
    f(&addr)
}

/// V2 128-byte address storage: family u16 LE at @0, IP bytes at @2; the port is never inside.
#[repr(C, align(4))]
pub struct AddrStorage(pub [u8; 128]);

impl AddrStorage {
    pub fn new() -> Self {
        AddrStorage([0; 128])
    }

    pub fn from_ip(ip: &IpAddr) -> Self {
        let mut s = Self::new();
        s.0[..2].copy_from_slice(&(family_of(ip) as u16).to_le_bytes());
        match ip {
            IpAddr::V4(a) => s.0[2..6].copy_from_slice(&a.octets()),
            IpAddr::V6(a) => s.0[2..18].copy_from_slice(&a.octets()),
        }
        s
    }

    pub fn ip(&self) -> Option<IpAddr> {
        let b = &self.0;
        match u16::from_le_bytes([b[0], b[1]]) as i32 {
            AF_INET4 => Some(IpAddr::V4(Ipv4Addr::new(b[2], b[3], b[4], b[5]))),
            AF_INET6 => {
                let mut a = [0u8; 16];
                a.copy_from_slice(&b[2..18]);
                Some(IpAddr::V6(Ipv6Addr::from(a)))
            }
            _ => None,
        }
    }

    /// A `WasiAddress` pointing at this storage (`buf_len` 128).
    pub fn wasi(&mut self) -> sys::WasiAddress {
        sys::WasiAddress {
            buf: self.0.as_mut_ptr(),
            buf_len: 128,
        }
    }
}

impl Default for AddrStorage {
    fn default() -> Self {
        Self::new()
    }
}

pub fn open(family: i32, socktype: i32) -> Result<u32> {
    let mut fd = 0u32;
    check(unsafe { sys::sock_open(family, socktype, &mut fd) })?;
    Ok(fd)
}

pub fn open_for(addr: &SocketAddr, socktype: i32) -> Result<u32> {
    open(family_of(&addr.ip()), socktype)
}

pub fn set_reuseaddr(fd: u32) -> Result<()> {
    let on: i32 = 1;
    let p = &on as *const i32 as *const u8;
    check(unsafe { sys::sock_setsockopt(fd as i32, SOL_SOCKET, SO_REUSEADDR, p, 4) })
}

pub fn bind(fd: u32, addr: &SocketAddr) -> Result<()> {
    let port = addr.port() as i32;
    check(with_raw_addr(&addr.ip(), |a| unsafe {
        sys::sock_bind(fd as i32, a, port)
    }))
}

pub fn connect(fd: u32, addr: &SocketAddr) -> Result<()> {
    let port = addr.port() as i32;
    check(with_raw_addr(&addr.ip(), |a| unsafe {
        sys::sock_connect(fd as i32, a, port)
    }))
}

pub fn listen(fd: u32, backlog: i32) -> Result<()> {
    check(unsafe { sys::sock_listen(fd as i32, backlog) })
}

/// V1 accept: the new socket is blocking.
pub fn accept(fd: u32) -> Result<u32> {
    let mut new_fd = 0u32;
    check(unsafe { sys::sock_accept(fd as i32, &mut new_fd) })?;
    Ok(new_fd)
}

/// The type shared by `sock_recv` and `sock_recv_v2`.
type RecvFn = unsafe extern "C" fn(i32, *const sys::Iovec, i32, i32, *mut u32, *mut u32) -> i32;
/// The type shared by `sock_send` and `sock_send_v2`.
type SendFn = unsafe extern "C" fn(i32, *const sys::Ciovec, i32, i32, *mut u32) -> i32;

fn recv_with(call: RecvFn, fd: u32, buf: &mut [u8]) -> Result<usize> {
    let iov = sys::Iovec {
        buf: buf.as_mut_ptr(),
        buf_len: buf.len() as u32,
    };
    let (mut n, mut flags) = (0u32, 0u32);
    check(unsafe { call(fd as i32, &iov, 1, 0, &mut n, &mut flags) })?;
    Ok(n as usize)
}

fn send_with(call: SendFn, fd: u32, buf: &[u8]) -> Result<usize> {
    let iov = sys::Ciovec {
        buf: buf.as_ptr(),
        buf_len: buf.len() as u32,
    };
    let mut n = 0u32;
    check(unsafe { call(fd as i32, &iov, 1, 0, &mut n) })?;
    Ok(n as usize)
}

/// Receives into `buf` (one iovec); `Ok(0)` is orderly EOF.
pub fn recv(fd: u32, buf: &mut [u8]) -> Result<usize> {
    recv_with(sys::sock_recv, fd, buf)
}

/// Sends from `buf` (one iovec); may be partial.
pub fn send(fd: u32, buf: &[u8]) -> Result<usize> {
    send_with(sys::sock_send, fd, buf)
}

/// V1 accept, then non-blocking mode, as wasmedge_wasi_socket's `accept(nonblocking=true)`.
pub fn accept_nonblocking(listener: u32) -> Result<u32> {
    let fd = accept(listener)?;
    match set_nonblocking(fd) {
        Ok(()) => Ok(fd),
        Err(e) => {
            close(fd);
            Err(e)
        }
    }
}

/// 8-param (V2) `sock_recv_from` with a 128-byte address storage: datagram length and sender.
pub fn recv_from(fd: u32, buf: &mut [u8]) -> Result<(usize, SocketAddr)> {
    let iov = sys::Iovec {
        buf: buf.as_mut_ptr(),
        buf_len: buf.len() as u32,
    };
    let mut storage = AddrStorage::new();
    let addr = storage.wasi();
    let (mut port, mut n, mut flags) = (0u32, 0u32, 0u32);
    check(unsafe {
        sys::sock_recv_from(fd as i32, &iov, 1, &addr, 0, &mut port, &mut n, &mut flags)
    })?;
    let ip = storage.ip().unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
    Ok((n as usize, SocketAddr::new(ip, port as u16)))
}

/// `sock_send_to` (7 params) with a raw 4/16-byte address.
pub fn send_to(fd: u32, buf: &[u8], to: &SocketAddr) -> Result<usize> {
    let iov = sys::Ciovec {
        buf: buf.as_ptr(),
        buf_len: buf.len() as u32,
    };
    let port = to.port() as i32;
    let mut n = 0u32;
    check(with_raw_addr(&to.ip(), |a| unsafe {
        sys::sock_send_to(fd as i32, &iov, 1, a, port, 0, &mut n)
    }))?;
    Ok(n as usize)
}

pub fn shutdown(fd: u32, how: i32) -> Result<()> {
    check(unsafe { sys::sock_shutdown(fd as i32, how) })
}

/// Closes a socket the way wasmedge_wasi_socket does: `sock_shutdown(fd, 3)` (result ignored),
/// then `fd_close`.
pub fn close(fd: u32) {
    let _ = shutdown(fd, SHUT_RDWR);
    unsafe { sys::fd_close(fd as i32) };
}

/// `fd_fdstat_get` then `fd_fdstat_set_flags(fd, flags | NONBLOCK)`.
pub fn set_nonblocking(fd: u32) -> Result<()> {
    let mut stat = sys::Fdstat::default();
    check(unsafe { sys::fd_fdstat_get(fd as i32, &mut stat) })?;
    check(unsafe { sys::fd_fdstat_set_flags(fd as i32, (stat.fs_flags | FDFLAGS_NONBLOCK) as i32) })
}

/// The pending socket error (`SO_ERROR`) as a WASI errno, 0 = none.
pub fn socket_error(fd: u32) -> Result<Errno> {
    let mut value: i32 = 0;
    let mut size: u32 = 4;
    let p = &mut value as *mut i32 as *mut u8;
    check(unsafe { sys::sock_getsockopt(fd as i32, SOL_SOCKET, SO_ERROR, p, &mut size) })?;
    Ok(value)
}

type AddrFnV1 = unsafe extern "C" fn(i32, *const sys::WasiAddress, *mut u32, *mut u32) -> i32;

/// V1 get{local,peer}addr: 16-byte buffer; kind 4/1 = IPv4, 6/2 = IPv6.
fn addr_v1(fd: u32, f: AddrFnV1) -> Result<SocketAddr> {
    let mut bytes = [0u8; 16];
    let addr = sys::WasiAddress {
        buf: bytes.as_mut_ptr(),
        buf_len: 16,
    };
    let (mut kind, mut port) = (0u32, 0u32);
    check(unsafe { f(fd as i32, &addr, &mut kind, &mut port) })?;
    let ip = match kind {
        4 | 1 => IpAddr::V4(Ipv4Addr::new(bytes[0], bytes[1], bytes[2], bytes[3])),
        _ => IpAddr::V6(Ipv6Addr::from(bytes)),
    };
    Ok(SocketAddr::new(ip, port as u16))
}

pub fn local_addr(fd: u32) -> Result<SocketAddr> {
    addr_v1(fd, sys::sock_getlocaladdr)
}

pub fn peer_addr(fd: u32) -> Result<SocketAddr> {
    addr_v1(fd, sys::sock_getpeeraddr)
}

pub type Step<T> = std::result::Result<T, (&'static str, Errno)>;

/// Creates a non-blocking TCP listener with the seed's call sequence (spec §8.4):
/// open, SO_REUSEADDR=1, bind (raw address), listen(128), set non-blocking.
/// On failure returns the step name ("socket", "setsockopt", "bind", "listen", "fcntl").
pub fn tcp_listener(addr: &SocketAddr) -> Step<u32> {
    listener_with(addr, open, bind, listen)
}

fn listener_with(
    addr: &SocketAddr,
    open: fn(i32, i32) -> Result<u32>,
    bind: fn(u32, &SocketAddr) -> Result<()>,
    listen: fn(u32, i32) -> Result<()>,
) -> Step<u32> {
    let fd = open(family_of(&addr.ip()), SOCK_STREAM).map_err(|e| ("socket", e))?;
    let steps = || -> Step<()> {
        set_reuseaddr(fd).map_err(|e| ("setsockopt", e))?;
        bind(fd, addr).map_err(|e| ("bind", e))?;
        listen(fd, 128).map_err(|e| ("listen", e))?;
        set_nonblocking(fd).map_err(|e| ("fcntl", e))
    };
    match steps() {
        Ok(()) => Ok(fd),
        Err(err) => {
            close(fd);
            Err(err)
        }
    }
}

/// `tcp_listener`, or print `<step> failed: errno N` to stderr and exit 1.
pub fn tcp_listener_or_exit(addr: &SocketAddr) -> u32 {
    tcp_listener(addr).unwrap_or_else(|(step, e)| exit_failed(step, e))
}

/// Prints `<step> failed: errno N` to stderr and exits 1.
pub fn exit_failed(step: &str, errno: Errno) -> ! {
    eprintln!("{} failed: errno {}", step, errno);
    std::process::exit(1)
}

/// Resolves `host`/`service` with `sock_getaddrinfo` into at most `max` addresses, using
/// guest-preallocated records and the crate's hints (INET4, STREAM, no flags, protocol 0).
pub fn getaddrinfo(host: &str, service: &str, max: usize) -> Result<Vec<SocketAddr>> {
    let node = format!("{}\0", host);
    let service = format!("{}\0", service);
    let hints = sys::Addrinfo {
        ai_flags: 0,
        ai_family: AF_INET4 as u8,
        ai_socktype: SOCK_STREAM as u8,
        ai_protocol: 0,
        ai_addrlen: 0,
        ai_addr: std::ptr::null_mut(),
        ai_canonname: std::ptr::null_mut(),
        ai_canonname_len: 0,
        ai_next: std::ptr::null_mut(),
    };
    let mut data = vec![[0u8; 26]; max];
    let mut names = vec![[0u8; 256]; max];
    let mut addrs: Vec<sys::Sockaddr> = data
        .iter_mut()
        .map(|d| sys::Sockaddr {
            sa_family: 0,
            sa_data_len: 26,
            sa_data: d.as_mut_ptr(),
        })
        .collect();
    let mut infos: Vec<sys::Addrinfo> = addrs
        .iter_mut()
        .zip(names.iter_mut())
        .map(|(a, n)| sys::Addrinfo {
            ai_addr: a,
            ai_canonname: n.as_mut_ptr(),
            ..hints
        })
        .collect();
    for i in 1..max {
        infos[i - 1].ai_next = &mut infos[i];
    }
    let mut res = infos.as_mut_ptr() as u32;
    let mut count = 0u32;
    check(unsafe {
        sys::sock_getaddrinfo(
            node.as_ptr(),
            node.len() as i32,
            service.as_ptr(),
            service.len() as i32,
            &hints,
            &mut res,
            max as i32,
            &mut count,
        )
    })?;
    let mut out = Vec::new();
    let n = (count as usize).min(max);
    for ((info, addr), d) in infos.iter().zip(addrs.iter()).zip(data.iter()).take(n) {
        if info.ai_addrlen == 0 {
            continue;
        }
        let port = u16::from_be_bytes([d[0], d[1]]);
        match addr.sa_family as i32 {
            AF_INET4 => out.push(SocketAddr::new(
                Ipv4Addr::new(d[2], d[3], d[4], d[5]).into(),
                port,
            )),
            AF_INET6 => {
                let mut a = [0u8; 16];
                a.copy_from_slice(&d[6..22]);
                out.push(SocketAddr::new(Ipv6Addr::from(a).into(), port));
            }
            _ => {}
        }
    }
    Ok(out)
}

/// The V2 names, called explicitly (WasmEdge >= 0.12).
pub mod v2 {
    use super::{check, sys, AddrStorage, Result};
    use std::net::SocketAddr;

    pub fn open(family: i32, socktype: i32) -> Result<u32> {
        let mut fd = 0u32;
        check(unsafe { sys::sock_open_v2(family, socktype, &mut fd) })?;
        Ok(fd)
    }

    /// `tcp_listener` on the V2 names (`sock_open_v2`, `sock_bind_v2` with a 128-byte
    /// storage, `sock_listen_v2`).
    pub fn tcp_listener(addr: &SocketAddr) -> super::Step<u32> {
        super::listener_with(addr, open, bind, listen)
    }

    /// `sock_bind_v2` with a 128-byte address storage.
    pub fn bind(fd: u32, addr: &SocketAddr) -> Result<()> {
        let mut storage = AddrStorage::from_ip(&addr.ip());
        let wasi = storage.wasi();
        check(unsafe { sys::sock_bind_v2(fd as i32, &wasi, addr.port() as i32) })
    }

    pub fn listen(fd: u32, backlog: i32) -> Result<()> {
        check(unsafe { sys::sock_listen_v2(fd as i32, backlog) })
    }

    /// `sock_accept_v2(fd, fdflags, *fd)`: `fdflags` (e.g. NONBLOCK) apply to the new socket.
    pub fn accept(fd: u32, fdflags: u16) -> Result<u32> {
        let mut new_fd = 0u32;
        check(unsafe { sys::sock_accept_v2(fd as i32, fdflags as i32, &mut new_fd) })?;
        Ok(new_fd)
    }

    pub fn recv(fd: u32, buf: &mut [u8]) -> Result<usize> {
        super::recv_with(sys::sock_recv_v2, fd, buf)
    }

    pub fn send(fd: u32, buf: &[u8]) -> Result<usize> {
        super::send_with(sys::sock_send_v2, fd, buf)
    }

    type AddrFnV2 = unsafe extern "C" fn(i32, *const sys::WasiAddress, *mut u32) -> i32;

    fn addr(fd: u32, f: AddrFnV2) -> Result<SocketAddr> {
        let mut storage = AddrStorage::new();
        let wasi = storage.wasi();
        let mut port = 0u32;
        check(unsafe { f(fd as i32, &wasi, &mut port) })?;
        let ip = storage.ip().ok_or(super::E_AFNOSUPPORT)?;
        Ok(SocketAddr::new(ip, port as u16))
    }

    pub fn local_addr(fd: u32) -> Result<SocketAddr> {
        addr(fd, sys::sock_getlocaladdr_v2)
    }

    pub fn peer_addr(fd: u32) -> Result<SocketAddr> {
        addr(fd, sys::sock_getpeeraddr_v2)
    }
}

/// A `poll_oneoff` subscription list, rebuilt before every wait (level-triggered).
#[derive(Default)]
pub struct Poll {
    subs: Vec<sys::Subscription>,
    events: Vec<sys::Event>,
}

impl Poll {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn clear(&mut self) {
        self.subs.clear();
    }

    pub fn fd(&mut self, fd: u32, kind: u8, userdata: u64) {
        self.subs.push(sys::Subscription {
            userdata,
            tag: kind,
            fd_or_clock: fd as u64,
            ..Default::default()
        });
    }

    pub fn read(&mut self, fd: u32, userdata: u64) {
        self.fd(fd, EVENTTYPE_FD_READ, userdata);
    }

    pub fn write(&mut self, fd: u32, userdata: u64) {
        self.fd(fd, EVENTTYPE_FD_WRITE, userdata);
    }

    /// A relative MONOTONIC timeout.
    pub fn timeout(&mut self, nanos: u64, userdata: u64) {
        self.subs.push(sys::Subscription {
            userdata,
            tag: EVENTTYPE_CLOCK,
            fd_or_clock: CLOCK_MONOTONIC,
            timeout: nanos,
            ..Default::default()
        });
    }

    /// Blocks until at least one subscription fires; returns the fired events.
    pub fn wait(&mut self) -> Result<&[sys::Event]> {
        self.events.clear();
        self.events.resize(self.subs.len(), sys::Event::default());
        loop {
            let mut n = 0u32;
            let rc = unsafe {
                sys::poll_oneoff(
                    self.subs.as_ptr(),
                    self.events.as_mut_ptr(),
                    self.subs.len() as i32,
                    &mut n,
                )
            };
            match rc {
                0 => return Ok(&self.events[..(n as usize).min(self.subs.len())]),
                E_INTR => continue,
                e => return Err(e),
            }
        }
    }
}

/// Listen address from `[ADDR] [PORT]` (or `ADDR:PORT`, or just `PORT`), else env `PORT`,
/// else 0.0.0.0:8080. Prints usage and exits 2 on bad arguments.
pub fn listen_addr_from_args() -> SocketAddr {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let env_port = std::env::var("PORT").ok();
    match parse_listen_args(&args, env_port.as_deref()) {
        Ok(addr) => addr,
        Err(msg) => {
            let prog = std::env::args().next().unwrap_or_default();
            eprintln!("{}\nusage: {} [ADDR] [PORT]", msg, prog);
            std::process::exit(2)
        }
    }
}

pub fn parse_listen_args(
    args: &[String],
    env_port: Option<&str>,
) -> std::result::Result<SocketAddr, String> {
    let port_of = |s: &str| s.parse::<u16>().map_err(|_| format!("invalid port: {}", s));
    let default_port = match env_port {
        Some(p) if !p.is_empty() => port_of(p)?,
        _ => 8080,
    };
    let any = IpAddr::V4(Ipv4Addr::UNSPECIFIED);
    match args {
        [] => Ok(SocketAddr::new(any, default_port)),
        [a] => {
            if let Ok(sa) = a.parse::<SocketAddr>() {
                Ok(sa)
            } else if let Ok(ip) = a.parse::<IpAddr>() {
                Ok(SocketAddr::new(ip, default_port))
            } else if let Ok(port) = a.parse::<u16>() {
                Ok(SocketAddr::new(any, port))
            } else {
                Err(format!("invalid address: {}", a))
            }
        }
        [a, p] => {
            let ip = a
                .parse::<IpAddr>()
                .map_err(|_| format!("invalid address: {}", a))?;
            Ok(SocketAddr::new(ip, port_of(p)?))
        }
        _ => Err("too many arguments".to_string()),
    }
}

/// Prints `msg` and flushes stdout (the Listening line must reach a pipe at once).
pub fn announce(msg: &str) {
    use std::io::Write;
    let mut out = std::io::stdout();
    let _ = writeln!(out, "{}", msg);
    let _ = out.flush();
}
