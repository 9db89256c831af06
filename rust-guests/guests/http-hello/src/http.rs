//! HTTP/1.x request framing and the hello-world replies, without any I/O: bytes in,
//! response bytes out. Host-testable on its own: `rustc --edition 2021 --test src/http.rs`.

use std::io::Write;

/// Longest request head (request line + headers, or a trailer section) accepted.
pub const MAX_HEAD: usize = 64 * 1024;
/// Longest chunk-size line accepted.
const MAX_CHUNK_LINE: usize = 4096;

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Status {
    Ok,
    NotFound,
    MethodNotAllowed,
    BadRequest,
    HeadTooLarge,
}

impl Status {
    fn line_and_body(self) -> (&'static str, &'static str) {
        match self {
            Status::Ok => ("200 OK", "Hello, World!"),
            Status::NotFound => ("404 Not Found", "Not Found"),
            Status::MethodNotAllowed => ("405 Method Not Allowed", "Method Not Allowed"),
            Status::BadRequest => ("400 Bad Request", "Bad Request"),
            Status::HeadTooLarge => (
                "431 Request Header Fields Too Large",
                "Request Header Fields Too Large",
            ),
        }
    }
}

/// The response owed for one request.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Reply {
    pub status: Status,
    pub head_only: bool,
    pub keep_alive: bool,
    pub http10: bool,
}

impl Reply {
    fn error(status: Status) -> Reply {
        Reply {
            status,
            head_only: false,
            keep_alive: false,
            http10: false,
        }
    }

    /// Appends head and body (one buffer, so one `sock_send`).
    pub fn write_to(&self, out: &mut Vec<u8>) {
        let (line, body) = self.status.line_and_body();
        let _ = write!(
            out,
            "HTTP/1.1 {}\r\ncontent-type: text/plain\r\ncontent-length: {}\r\n",
            line,
            body.len()
        );
        if self.status == Status::MethodNotAllowed {
            out.extend_from_slice(b"allow: GET, HEAD\r\n");
        }
        if !self.keep_alive {
            out.extend_from_slice(b"connection: close\r\n");
        } else if self.http10 {
            out.extend_from_slice(b"connection: keep-alive\r\n");
        }
        out.extend_from_slice(b"\r\n");
        if !self.head_only {
            out.extend_from_slice(body.as_bytes());
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum BodyKind {
    None,
    Length(u64),
    Chunked,
}

/// A parsed request head: what to reply and how the body is framed.
#[derive(Debug, PartialEq)]
pub struct Head {
    pub reply: Reply,
    pub body: BodyKind,
    pub expect_continue: bool,
}

fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

fn is_token(s: &[u8]) -> bool {
    !s.is_empty() && s.iter().all(|&b| is_tchar(b))
}

fn trim_ows(mut s: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = s {
        s = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = s {
        s = rest;
    }
    s
}

fn strip_cr(line: &[u8]) -> &[u8] {
    line.strip_suffix(b"\r").unwrap_or(line)
}

fn comma_tokens(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    value
        .split(|&b| b == b',')
        .map(trim_ows)
        .filter(|t| !t.is_empty())
}

/// Parses a complete head (it ends with the empty line). `Err` means 400.
pub fn parse_head(head: &[u8]) -> Result<Head, ()> {
    let mut lines = head.split(|&b| b == b'\n').map(strip_cr);
    let request_line = lines.next().ok_or(())?;
    let mut parts = request_line.split(|&b| b == b' ');
    let (method, target, version) = match (parts.next(), parts.next(), parts.next(), parts.next()) {
        (Some(m), Some(t), Some(v), None) => (m, t, v),
        _ => return Err(()),
    };
    if !is_token(method) || target.is_empty() || target.iter().any(|&b| b <= b' ' || b == 0x7f) {
        return Err(());
    }
    let http10 = match version {
        b"HTTP/1.1" => false,
        b"HTTP/1.0" => true,
        _ => return Err(()),
    };

    let (mut length, mut chunked, mut te_seen) = (None, false, false);
    let (mut close, mut keep_alive, mut expect_continue) = (false, false, false);
    for line in lines {
        if line.is_empty() {
            continue; // the terminating empty line (and the split's empty tail)
        }
        let colon = line.iter().position(|&b| b == b':').ok_or(())?;
        let (name, value) = (&line[..colon], trim_ows(&line[colon + 1..]));
        if !is_token(name) || value.iter().any(|&b| (b < b' ' && b != b'\t') || b == 0x7f) {
            return Err(()); // also rejects obs-fold (a name starting with whitespace)
        }
        let name = name.to_ascii_lowercase();
        match &name[..] {
            b"content-length" => {
                if value.is_empty() || value.len() > 18 || !value.iter().all(u8::is_ascii_digit) {
                    return Err(());
                }
                let n: u64 = std::str::from_utf8(value)
                    .map_err(|_| ())?
                    .parse()
                    .map_err(|_| ())?;
                if matches!(length, Some(old) if old != n) {
                    return Err(());
                }
                length = Some(n);
            }
            b"transfer-encoding" => {
                te_seen = true;
                if let Some(last) = comma_tokens(value).last() {
                    chunked = last.eq_ignore_ascii_case(b"chunked");
                }
            }
            b"connection" => {
                for token in comma_tokens(value) {
                    close |= token.eq_ignore_ascii_case(b"close");
                    keep_alive |= token.eq_ignore_ascii_case(b"keep-alive");
                }
            }
            b"expect" => expect_continue = value.eq_ignore_ascii_case(b"100-continue"),
            _ => {}
        }
    }
    let body = match (te_seen, length) {
        (true, Some(_)) => return Err(()), // ambiguous framing: refuse (request smuggling)
        (true, None) if chunked => BodyKind::Chunked,
        (true, None) => return Err(()),
        (false, Some(n)) => BodyKind::Length(n),
        (false, None) => BodyKind::None,
    };

    let path = target.split(|&b| b == b'?').next().unwrap_or(target);
    // Test hook: a guest started with PANIC_PATH set panics when that path is requested.
    if let Ok(trigger) = std::env::var("PANIC_PATH") {
        if trigger.as_bytes() == path {
            panic!("http-hello: panic requested on {}", trigger);
        }
    }
    let status = match (path, method) {
        (b"/", b"GET" | b"HEAD") => Status::Ok,
        (b"/", _) => Status::MethodNotAllowed,
        _ => Status::NotFound,
    };
    let keep_alive = !close && (!http10 || keep_alive);
    Ok(Head {
        reply: Reply {
            status,
            head_only: method == b"HEAD",
            keep_alive,
            http10,
        },
        body,
        expect_continue: expect_continue && !http10 && body != BodyKind::None,
    })
}

/// End (exclusive) of the head in `buf` (an empty line, CRLF or bare LF), searching from
/// `from` (bytes already searched) so trickled input is scanned once.
fn find_head_end(buf: &[u8], from: usize) -> Option<usize> {
    let start = from.saturating_sub(2);
    for i in start..buf.len() {
        if buf[i] != b'\n' {
            continue;
        }
        match &buf[i + 1..] {
            [b'\n', ..] => return Some(i + 2),
            [b'\r', b'\n', ..] => return Some(i + 3),
            _ => {}
        }
    }
    None
}

/// The next line of `buf` without its line ending, and the bytes it occupies.
fn next_line(buf: &[u8]) -> Option<(&[u8], usize)> {
    let nl = buf.iter().position(|&b| b == b'\n')?;
    Some((strip_cr(&buf[..nl]), nl + 1))
}

fn parse_chunk_size(line: &[u8]) -> Option<u64> {
    let size = trim_ows(line.split(|&b| b == b';').next().unwrap_or(line));
    if size.is_empty() || size.len() > 15 || !size.iter().all(u8::is_ascii_hexdigit) {
        return None;
    }
    u64::from_str_radix(std::str::from_utf8(size).ok()?, 16).ok()
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum State {
    Head,
    Body(u64),
    ChunkSize,
    ChunkData(u64),
    ChunkEnd,
    Trailer,
    /// A closing reply was written: ignore all further input.
    Done,
}

/// One connection's request stream: feed it received bytes, it appends the replies, in
/// request order, once each request (body included) is complete.
pub struct Http {
    state: State,
    scanned: usize,
    reply: Reply,
}

impl Default for Http {
    fn default() -> Self {
        Http {
            state: State::Head,
            scanned: 0,
            reply: Reply::error(Status::BadRequest),
        }
    }
}

impl Http {
    /// True once the connection must close after its output is flushed.
    pub fn done(&self) -> bool {
        self.state == State::Done
    }

    fn fail(&mut self, status: Status, out: &mut Vec<u8>) {
        Reply::error(status).write_to(out);
        self.state = State::Done;
    }

    fn finish_request(&mut self, out: &mut Vec<u8>) {
        self.reply.write_to(out);
        self.state = if self.reply.keep_alive {
            State::Head
        } else {
            State::Done
        };
    }

    /// Consumes what it can of `input`, appending replies to `out`; returns the number of
    /// bytes consumed (the caller keeps the rest and passes it again with more data).
    pub fn feed(&mut self, input: &[u8], out: &mut Vec<u8>) -> usize {
        let mut pos = 0;
        loop {
            let rest = &input[pos..];
            match self.state {
                State::Done => return input.len(),
                State::Head => {
                    if self.scanned == 0 {
                        // Empty lines before a request line are ignored (RFC 9112 §2.2).
                        let blank = rest
                            .iter()
                            .take_while(|&&b| b == b'\r' || b == b'\n')
                            .count();
                        pos += blank;
                        if blank > 0 {
                            continue;
                        }
                    }
                    let end = match find_head_end(rest, self.scanned) {
                        Some(end) if end <= MAX_HEAD => end,
                        Some(_) => {
                            self.fail(Status::HeadTooLarge, out);
                            continue;
                        }
                        None if rest.len() > MAX_HEAD => {
                            self.fail(Status::HeadTooLarge, out);
                            continue;
                        }
                        None => {
                            self.scanned = rest.len();
                            return pos;
                        }
                    };
                    self.scanned = 0;
                    let head = match parse_head(&rest[..end]) {
                        Ok(head) => head,
                        Err(()) => {
                            self.fail(Status::BadRequest, out);
                            continue;
                        }
                    };
                    pos += end;
                    if head.expect_continue {
                        out.extend_from_slice(b"HTTP/1.1 100 Continue\r\n\r\n");
                    }
                    self.reply = head.reply;
                    match head.body {
                        BodyKind::None | BodyKind::Length(0) => self.finish_request(out),
                        BodyKind::Length(n) => self.state = State::Body(n),
                        BodyKind::Chunked => self.state = State::ChunkSize,
                    }
                }
                State::Body(n) | State::ChunkData(n) => {
                    let take = n.min(rest.len() as u64);
                    pos += take as usize;
                    let left = n - take;
                    match (self.state, left) {
                        (State::Body(_), 0) => self.finish_request(out),
                        (_, 0) => self.state = State::ChunkEnd,
                        (State::Body(_), _) => self.state = State::Body(left),
                        _ => self.state = State::ChunkData(left),
                    }
                    if left > 0 {
                        return pos;
                    }
                }
                State::ChunkSize | State::ChunkEnd | State::Trailer => {
                    let limit = if self.state == State::Trailer {
                        MAX_HEAD
                    } else {
                        MAX_CHUNK_LINE
                    };
                    let (line, used) = match next_line(rest) {
                        Some(found) => found,
                        None if rest.len() > limit => {
                            self.fail(Status::BadRequest, out);
                            continue;
                        }
                        None => return pos,
                    };
                    pos += used;
                    match self.state {
                        State::ChunkSize => match parse_chunk_size(line) {
                            Some(0) => self.state = State::Trailer,
                            Some(n) => self.state = State::ChunkData(n),
                            None => self.fail(Status::BadRequest, out),
                        },
                        State::ChunkEnd if line.is_empty() => self.state = State::ChunkSize,
                        State::ChunkEnd => self.fail(Status::BadRequest, out),
                        _ if line.is_empty() => self.finish_request(out),
                        _ => {} // a trailer field: ignored
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const OK: &str =
        "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: 13\r\n\r\nHello, World!";

    fn run(chunks: &[&[u8]]) -> (String, bool) {
        let (mut http, mut buf, mut out) = (Http::default(), Vec::new(), Vec::new());
        for c in chunks {
            buf.extend_from_slice(c);
            let n = http.feed(&buf, &mut out);
            buf.drain(..n);
        }
        (String::from_utf8(out).unwrap(), http.done())
    }

    fn one(req: &str) -> (String, bool) {
        run(&[req.as_bytes()])
    }

    #[test]
    fn get_and_head() {
        assert_eq!(
            one("GET / HTTP/1.1\r\nHost: x\r\n\r\n"),
            (OK.to_string(), false)
        );
        let (out, done) = one("HEAD / HTTP/1.1\r\n\r\n");
        assert_eq!(out, OK.trim_end_matches("Hello, World!"));
        assert!(!done);
        assert!(one("GET /?a=b HTTP/1.1\r\n\r\n")
            .0
            .starts_with("HTTP/1.1 200 OK"));
    }

    #[test]
    fn other_paths_and_methods() {
        let (out, _) = one("GET /x HTTP/1.1\r\n\r\n");
        assert!(
            out.starts_with("HTTP/1.1 404 Not Found\r\n") && out.ends_with("\r\n\r\nNot Found")
        );
        let (out, _) = one("POST / HTTP/1.1\r\ncontent-length: 0\r\n\r\n");
        assert!(out.starts_with("HTTP/1.1 405 ") && out.contains("allow: GET, HEAD\r\n"));
    }

    #[test]
    fn connection_semantics() {
        let (out, done) = one("GET / HTTP/1.0\r\n\r\n");
        assert!(done && out.contains("connection: close\r\n"));
        let (out, done) = one("GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n");
        assert!(!done && out.contains("connection: keep-alive\r\n"));
        let (out, done) =
            one("GET / HTTP/1.1\r\nConnection: foo, close\r\n\r\nGET / HTTP/1.1\r\n\r\n");
        assert!(done && out.matches("200 OK").count() == 1);
    }

    #[test]
    fn pipelined_with_bodies() {
        let req = "POST /a HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello\
                   POST /b HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3;ext=1\r\nabc\r\n10\r\n0123456789abcdef\r\n0\r\nX-T: 1\r\n\r\n\
                   GET / HTTP/1.1\r\n\r\n";
        let expect = |out: &str| {
            let statuses: Vec<&str> = out
                .match_indices("HTTP/1.1 ")
                .map(|(i, _)| &out[i + 9..i + 12])
                .collect();
            assert_eq!(statuses, ["404", "404", "200"], "{}", out);
        };
        expect(&one(req).0);
        // The same, trickled one byte at a time.
        let bytes: Vec<&[u8]> = req.as_bytes().chunks(1).collect();
        let (out, done) = run(&bytes);
        expect(&out);
        assert!(!done);
    }

    #[test]
    fn bare_lf_and_leading_blank_lines() {
        assert_eq!(one("\r\n\r\nGET / HTTP/1.1\nHost: x\n\n").0, OK);
    }

    #[test]
    fn malformed() {
        for req in [
            "GET /\r\n\r\n",
            "GET  / HTTP/1.1\r\n\r\n",
            "GET / HTTP/2.0\r\n\r\n",
            "GET / HTTP/1.1\r\nNo colon\r\n\r\n",
            "GET / HTTP/1.1\r\nBad name: x\r\n\r\n",
            "GET / HTTP/1.1\r\nA: b\r\n folded\r\n\r\n",
            "POST / HTTP/1.1\r\nContent-Length: x\r\n\r\n",
            "POST / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
            "POST / HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n",
            "POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n",
            "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
            "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nabX\r\n",
        ] {
            let (out, done) = one(req);
            assert!(
                out.starts_with("HTTP/1.1 400 Bad Request\r\n"),
                "{:?} -> {:?}",
                req,
                out
            );
            assert!(done && out.contains("connection: close"), "{:?}", req);
        }
    }

    #[test]
    fn head_too_large() {
        let big = format!("GET / HTTP/1.1\r\nX: {}\r\n", "a".repeat(MAX_HEAD));
        let (out, done) = one(&big);
        assert!(out.starts_with("HTTP/1.1 431 ") && done);
        let (out, done) = one("GET / HTTP/1.1\r\nX: aaaa");
        assert!(out.is_empty() && !done);
    }

    #[test]
    fn expect_continue() {
        let (out, _) = one("POST / HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\n");
        assert_eq!(out, "HTTP/1.1 100 Continue\r\n\r\n");
    }
}
