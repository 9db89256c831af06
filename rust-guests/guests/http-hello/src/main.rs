//! The demo server: `GET /` -> `Hello, World!` over HTTP/1.1 keep-alive, std only.
//! Single-threaded; non-blocking sockets driven by one level-triggered `poll_oneoff` loop.
//! Usage: http-hello [ADDR] [PORT]   (or env PORT; default 0.0.0.0:8080)

mod http;

use http::Http;
use wasmedge_net::server::{serve, Handler, Read, Stream, StreamApi};
use wasmedge_net::{announce, listen_addr_from_args, local_addr, tcp_listener_or_exit};

/// Stop reading (pipelined requests) while this much response data is unsent.
const MAX_PENDING_OUT: usize = 256 * 1024;
const READ_CHUNK: usize = 16 * 1024;

#[derive(Default)]
struct Conn {
    http: Http,
    input: Vec<u8>,
    out: Vec<u8>,
    sent: usize,
    eof: bool,
}

impl Conn {
    fn pending(&self) -> usize {
        self.out.len() - self.sent
    }

    fn wants_read(&self) -> bool {
        !self.eof && !self.http.done() && self.pending() < MAX_PENDING_OUT
    }
}

impl Handler for Conn {
    fn interest(&self) -> (bool, bool) {
        (self.wants_read(), self.pending() > 0)
    }

    fn ready(&mut self, io: &Stream) -> bool {
        while self.wants_read() {
            match io.recv_into(&mut self.input, READ_CHUNK) {
                Ok(Read::Data) => {
                    let used = self.http.feed(&self.input, &mut self.out);
                    self.input.drain(..used);
                }
                Ok(Read::WouldBlock) => break,
                Ok(Read::Eof) => self.eof = true,
                Err(_) => return false, // reset etc.
            }
        }
        match io.send_from(&self.out, &mut self.sent) {
            Ok(true) => {
                self.out.clear();
                self.sent = 0;
            }
            Ok(false) => {}
            Err(_) => return false,
        }
        // Half-closed by the peer or a closing reply: close once everything is sent.
        self.pending() > 0 || !(self.eof || self.http.done())
    }
}

fn main() {
    let addr = listen_addr_from_args();
    let listener = tcp_listener_or_exit(&addr);
    announce(&format!(
        "Listening on http://{}",
        local_addr(listener).unwrap_or(addr)
    ));
    serve(listener, &StreamApi::V1, |_| Conn::default())
}
