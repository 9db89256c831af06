//! UDP reverse server written against the socket ABI of wasmedge_wasi_socket 0.4.x: the
//! imports are declared with that crate's types, `sock_recv_from` has 7 parameters, and the
//! sender is read back from the 16-byte buffer as the crate does ({family u16 LE, port u16
//! LE, IPv4 bytes}, IPv4 only when the family is 2), then answered with `sock_send_to`.
//! Usage: udp-reverse-04 [ADDR] [PORT]   (default 0.0.0.0:8080)

use std::net::{Ipv4Addr, SocketAddrV4};

#[repr(C)]
struct WasiAddress {
    buf: *const u8,
    size: usize,
}

#[repr(C)]
struct IovecRead {
    buf: *mut u8,
    size: usize,
}

#[repr(C)]
struct IovecWrite {
    buf: *const u8,
    size: usize,
}

#[link(wasm_import_module = "wasi_snapshot_preview1")]
extern "C" {
    fn sock_open(addr_family: u8, sock_type: u8, fd: *mut u32) -> u32;
    fn sock_bind(fd: u32, addr: *mut WasiAddress, port: u32) -> u32;
    fn sock_recv_from(
        fd: u32,
        buf: *mut IovecRead,
        buf_len: u32,
        addr: *mut u8,
        flags: u16,
        recv_len: *mut usize,
        oflags: *mut usize,
    ) -> u32;
    fn sock_send_to(
        fd: u32,
        buf: *const IovecWrite,
        buf_len: u32,
        addr: *const u8,
        port: u32,
        flags: u16,
        send_len: *mut u32,
    ) -> u32;
}

const INET4: u8 = 1;
const DATAGRAM: u8 = 1;
/// The family value the crate takes as IPv4 in the 16-byte sender buffer (Linux's AF_INET).
const SENDER_AF_INET: u16 = 2;

fn fail(step: &str, errno: u32) -> ! {
    eprintln!("{} failed: errno {}", step, errno);
    std::process::exit(1)
}

/// The sender as crate 0.4.x decodes it; `None` where the crate would make up [::]:port.
fn sender(raw: &[u8; 16]) -> Option<SocketAddrV4> {
    let family = u16::from_le_bytes([raw[0], raw[1]]);
    let port = u16::from_le_bytes([raw[2], raw[3]]);
    (family == SENDER_AF_INET).then(|| SocketAddrV4::new(Ipv4Addr::new(raw[4], raw[5], raw[6], raw[7]), port))
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let ip: Ipv4Addr = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(Ipv4Addr::UNSPECIFIED);
    let port: u16 = args.get(2).and_then(|p| p.parse().ok()).unwrap_or(8080);
    let mut fd = 0u32;
    let rc = unsafe { sock_open(INET4, DATAGRAM, &mut fd) };
    if rc != 0 {
        fail("socket", rc);
    }
    let octets = ip.octets();
    let mut local = WasiAddress { buf: octets.as_ptr(), size: 4 };
    let rc = unsafe { sock_bind(fd, &mut local, port as u32) };
    if rc != 0 {
        fail("bind", rc);
    }
    println!("Listening on udp {}:{}", ip, port);
    let mut data = vec![0u8; 65536];
    loop {
        let raw = [0u8; 16];
        let mut addr = WasiAddress { buf: raw.as_ptr(), size: 16 };
        let mut iov = IovecRead { buf: data.as_mut_ptr(), size: data.len() };
        let (mut n, mut oflags) = (0usize, 0usize);
        let rc = unsafe {
            sock_recv_from(fd, &mut iov, 1, &mut addr as *mut WasiAddress as *mut u8, 0, &mut n, &mut oflags)
        };
        if rc != 0 {
            fail("recv_from", rc);
        }
        let peer = match sender(&raw) {
            Some(peer) => peer,
            None => fail("recv_from sender family", u16::from_le_bytes([raw[0], raw[1]]) as u32),
        };
        data[..n].reverse();
        let to = peer.ip().octets();
        let to_addr = WasiAddress { buf: to.as_ptr(), size: 4 };
        let out = IovecWrite { buf: data.as_ptr(), size: n };
        let mut sent = 0u32;
        let rc = unsafe {
            sock_send_to(fd, &out, 1, &to_addr as *const WasiAddress as *const u8, peer.port() as u32, 0, &mut sent)
        };
        if rc != 0 {
            fail("send_to", rc);
        }
    }
}
