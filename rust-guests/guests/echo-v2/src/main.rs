//! TCP echo server on the explicit V2 names: sock_open_v2, sock_bind_v2 (128-byte storage),
//! sock_listen_v2, sock_accept_v2(NONBLOCK), sock_recv_v2/sock_send_v2 and
//! sock_get{local,peer}addr_v2. Usage: echo-v2 [ADDR] [PORT]   (default 0.0.0.0:8080)

use wasmedge_net::echo::Echo;
use wasmedge_net::server::{serve, StreamApi};
use wasmedge_net::{announce, exit_failed, listen_addr_from_args, v2, FDFLAGS_NONBLOCK};

const API: StreamApi = StreamApi {
    accept: accept_nonblocking,
    recv: v2::recv,
    send: v2::send,
};

/// `sock_accept_v2` applies NONBLOCK to the new socket itself.
fn accept_nonblocking(listener: u32) -> wasmedge_net::Result<u32> {
    v2::accept(listener, FDFLAGS_NONBLOCK)
}

fn main() {
    let addr = listen_addr_from_args();
    let fd = v2::tcp_listener(&addr).unwrap_or_else(|(step, e)| exit_failed(step, e));
    let local = v2::local_addr(fd).unwrap_or_else(|e| exit_failed("getlocaladdr", e));
    announce(&format!("Listening on {}", local));
    serve(fd, &API, |conn| {
        match v2::peer_addr(conn) {
            Ok(peer) => eprintln!("peer {}", peer),
            Err(e) => eprintln!("getpeeraddr failed: errno {}", e),
        }
        Echo::default()
    })
}
