//! The echo protocol shared by `tcp-echo` (V1 names) and `echo-v2` (V2 names).

use crate::server::{Handler, Read, Stream};
use crate::{shutdown, SHUT_WR};

/// Stop reading a connection while this much echoed data is still unsent.
pub const MAX_PENDING: usize = 1 << 20;
const CHUNK: usize = 64 * 1024;

/// Echoes every byte; after the peer's half-close, drains, shuts down writing and closes.
#[derive(Default)]
pub struct Echo {
    buf: Vec<u8>,
    sent: usize,
    eof: bool,
}

impl Echo {
    fn pending(&self) -> usize {
        self.buf.len() - self.sent
    }
}

impl Handler for Echo {
    fn interest(&self) -> (bool, bool) {
        (
            !self.eof && self.pending() < MAX_PENDING,
            self.pending() > 0,
        )
    }

    fn ready(&mut self, io: &Stream) -> bool {
        while !self.eof && self.pending() < MAX_PENDING {
            match io.recv_into(&mut self.buf, CHUNK) {
                Ok(Read::Data) => {}
                Ok(Read::WouldBlock) => break,
                Ok(Read::Eof) => self.eof = true,
                Err(_) => return false,
            }
        }
        match io.send_from(&self.buf, &mut self.sent) {
            Ok(true) => {
                self.buf.clear();
                self.sent = 0;
            }
            Ok(false) if self.sent > self.buf.len() / 2 => {
                self.buf.drain(..self.sent);
                self.sent = 0;
            }
            Ok(false) => {}
            Err(_) => return false,
        }
        if self.eof && self.pending() == 0 {
            let _ = shutdown(io.fd, SHUT_WR);
            return false;
        }
        true
    }
}
