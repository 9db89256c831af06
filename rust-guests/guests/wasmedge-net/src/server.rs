//! A single-threaded, level-triggered `poll_oneoff` loop over one non-blocking listener and
//! its connections. Each poll subscribes the listener (FD_READ) and every connection for what
//! its handler currently wants, so an idle server blocks instead of spinning.

use crate::{close, Poll, Result, E_AGAIN};
use std::collections::HashMap;

/// The socket calls a server uses; lets the same loop run on the V1 or the V2 names.
pub struct StreamApi {
    /// Accepts one connection and returns it non-blocking (`Err(E_AGAIN)` when none is pending).
    pub accept: fn(u32) -> Result<u32>,
    pub recv: fn(u32, &mut [u8]) -> Result<usize>,
    pub send: fn(u32, &[u8]) -> Result<usize>,
}

impl StreamApi {
    /// The plain (V1) names: `sock_accept` + non-blocking switch, `sock_recv`, `sock_send`.
    pub const V1: StreamApi = StreamApi {
        accept: crate::accept_nonblocking,
        recv: crate::recv,
        send: crate::send,
    };
}

/// One accepted, non-blocking connection as seen by a handler.
pub struct Stream<'a> {
    pub fd: u32,
    api: &'a StreamApi,
}

/// What a read attempt produced.
pub enum Read {
    Data,
    WouldBlock,
    Eof,
}

impl Stream<'_> {
    /// Receives up to `max` bytes appended to `buf`. Errors other than AGAIN are returned.
    pub fn recv_into(&self, buf: &mut Vec<u8>, max: usize) -> Result<Read> {
        let len = buf.len();
        buf.resize(len + max, 0);
        let res = (self.api.recv)(self.fd, &mut buf[len..]);
        buf.truncate(len + *res.as_ref().unwrap_or(&0));
        match res {
            Ok(0) => Ok(Read::Eof),
            Ok(_) => Ok(Read::Data),
            Err(E_AGAIN) => Ok(Read::WouldBlock),
            Err(e) => Err(e),
        }
    }

    /// Sends as much of `buf[*sent..]` as the socket takes, advancing `*sent`.
    /// Returns true when everything is sent.
    pub fn send_from(&self, buf: &[u8], sent: &mut usize) -> Result<bool> {
        while *sent < buf.len() {
            match (self.api.send)(self.fd, &buf[*sent..]) {
                Ok(0) | Err(E_AGAIN) => return Ok(false),
                Ok(n) => *sent += n,
                Err(e) => return Err(e),
            }
        }
        Ok(true)
    }
}

/// Per-connection protocol logic.
pub trait Handler {
    /// (wants FD_READ, wants FD_WRITE) for the next poll; (false, false) closes the connection.
    fn interest(&self) -> (bool, bool);
    /// Does all I/O possible now (read until AGAIN, write until AGAIN). `false` closes.
    fn ready(&mut self, io: &Stream) -> bool;
}

/// Whether to poll the way tokio_wasi on mio_wasi 0.8.7 does (env `POLL_STYLE=mio-0.8.7`):
/// every source subscribed for FD_WRITE then FD_READ on every poll with one userdata, events
/// delivered only to a handler that wants that direction, any event error fatal. Idle
/// keep-alive connections are always writable, so this is the pattern that makes a strictly
/// level-triggered host spin; the tests use it to measure the host's answer.
fn mio_style() -> bool {
    std::env::var("POLL_STYLE").map_or(false, |v| v == "mio-0.8.7")
}

fn wanted<H: Handler>(handler: Option<&H>, readable: bool, flags: u16) -> bool {
    let (r, w) = handler.map_or((false, false), |h| h.interest());
    flags & crate::EVENT_FD_READWRITE_HANGUP != 0 || if readable { r } else { w }
}

/// Runs forever: accepts until AGAIN when the listener is readable, calls `new_conn` for each
/// connection, drives handlers on readiness and closes finished connections
/// (`sock_shutdown(fd, 3)` + `fd_close`).
pub fn serve<H: Handler>(listener: u32, api: &StreamApi, mut new_conn: impl FnMut(u32) -> H) -> ! {
    let mut conns: HashMap<u32, H> = HashMap::new();
    let mut poll = Poll::new();
    let mio = mio_style();
    loop {
        poll.clear();
        if mio {
            poll.write(listener, listener as u64);
        }
        poll.read(listener, listener as u64);
        for (&fd, h) in &conns {
            let (r, w) = h.interest();
            if w || mio {
                poll.write(fd, fd as u64);
            }
            if r || mio {
                poll.read(fd, fd as u64);
            }
        }
        let events = match poll.wait() {
            Ok(events) => events,
            Err(e) => crate::exit_failed("poll_oneoff", e),
        };
        // Connections first, accepts last, so a stale event can never reach a reused fd.
        let mut accept_ready = false;
        let mut last = None;
        for ev in events {
            if mio && ev.error != 0 {
                // What tokio_wasi does with any event error.
                panic!("unexpected error when polling the I/O driver: errno {}", ev.error);
            }
            let fd = ev.userdata as u32;
            let readable = ev.kind == crate::EVENTTYPE_FD_READ;
            if fd == listener {
                accept_ready |= readable;
                continue;
            }
            if mio && !wanted(conns.get(&fd), readable, ev.flags) {
                continue; // tokio wakes only the tasks waiting for this direction
            }
            if last == Some(fd) {
                continue; // read and write readiness of one connection: one `ready` call
            }
            last = Some(fd);
            if let Some(h) = conns.get_mut(&fd) {
                let keep = h.ready(&Stream { fd, api }) && h.interest() != (false, false);
                if !keep {
                    conns.remove(&fd);
                    close(fd);
                }
            }
        }
        while accept_ready {
            match (api.accept)(listener) {
                Ok(fd) => {
                    conns.insert(fd, new_conn(fd));
                }
                Err(E_AGAIN) => accept_ready = false,
                Err(e) => {
                    eprintln!("accept failed: errno {}", e);
                    accept_ready = false;
                }
            }
        }
    }
}
