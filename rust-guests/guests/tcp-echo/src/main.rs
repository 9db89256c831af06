//! Non-blocking, poll-driven TCP echo server (V1 socket names).
//! Usage: tcp-echo [ADDR] [PORT]   (default 0.0.0.0:8080)

use wasmedge_net::echo::Echo;
use wasmedge_net::server::{serve, StreamApi};
use wasmedge_net::{announce, listen_addr_from_args, local_addr, tcp_listener_or_exit};

fn main() {
    let addr = listen_addr_from_args();
    let listener = tcp_listener_or_exit(&addr);
    announce(&format!(
        "Listening on {}",
        local_addr(listener).unwrap_or(addr)
    ));
    serve(listener, &StreamApi::V1, |_| Echo::default())
}
