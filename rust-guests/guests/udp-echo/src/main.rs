//! Blocking UDP echo server: 8-param (V2) `sock_recv_from`, 7-param `sock_send_to`.
//! Usage: udp-echo [ADDR] [PORT]   (default 0.0.0.0:8080)

use wasmedge_net::{announce, bind, exit_failed, listen_addr_from_args, local_addr, open_for};
use wasmedge_net::{recv_from, send_to, SOCK_DGRAM};
use wasmedge_net::{E_AGAIN, E_CONNREFUSED, E_CONNRESET, E_INTR};

fn main() {
    let addr = listen_addr_from_args();
    let fd = open_for(&addr, SOCK_DGRAM).unwrap_or_else(|e| exit_failed("socket", e));
    bind(fd, &addr).unwrap_or_else(|e| exit_failed("bind", e));
    announce(&format!(
        "Listening on udp {}",
        local_addr(fd).unwrap_or(addr)
    ));
    let mut buf = vec![0u8; 65536];
    loop {
        match recv_from(fd, &mut buf) {
            Ok((n, peer)) => {
                if let Err(e) = send_to(fd, &buf[..n], &peer) {
                    eprintln!("send_to {} failed: errno {}", peer, e);
                }
            }
            // CONNREFUSED/CONNRESET: ICMP errors left over from earlier replies.
            Err(E_AGAIN | E_INTR | E_CONNREFUSED | E_CONNRESET) => {}
            Err(e) => exit_failed("recv_from", e),
        }
    }
}
