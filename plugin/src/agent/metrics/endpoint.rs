//! The metrics endpoint: a small HTTP/1.1 server for Prometheus, on one
//! thread of its own that polls the listener and every connection without
//! blocking, so no client (idle, slow, or one of a flood) can delay
//! another's scrape or the agent's own loop, which only shares the numbers
//! with it through a mutex held for the time of a copy.
//!
//! What it does, and the bounds that keep it small (docs/agent.md#metrics):
//! - `GET` and `HEAD` of `/metrics` (and `/`), nothing else: 404 for other
//!   paths, 405 for other methods; nothing is ever written through it.
//! - Request heads of up to [`MAX_HEAD`] bytes (large bearer tokens),
//!   arriving in any number of segments; larger ones get 431 and a close.
//! - Persistent connections (HTTP/1.1, or 1.0 with `keep-alive`), several
//!   requests on one, answered in order.
//! - At most [`MAX_CONNECTIONS`] connections: a new one beyond that closes
//!   the one least recently active (a flood cannot lock a scraper out, and
//!   memory stays bounded: 32 KiB of request and one response each).
//! - A request's head must arrive within [`REQUEST_TIMEOUT`] of its first
//!   byte, a response must drain within [`WRITE_TIMEOUT`], and a
//!   connection idle for [`IDLE_TIMEOUT`] is closed.
//!
//! Hand-written rather than a crate: the binary is over its 2 MiB target
//! already, and a server this narrow is about 300 lines on `poll(2)`
//! (docs/agent.md#metrics has the sizes measured).

use super::Metrics;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsFd;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Connections served at once; one more closes the least recently active.
pub const MAX_CONNECTIONS: usize = 32;
/// The largest request head (request line and headers) read.
pub const MAX_HEAD: usize = 32 * 1024;
/// From a request's first byte to the end of its head.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// For a response to be taken by the client.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// A connection with no request in progress, after its last response (or
/// its accept). Longer than Prometheus' scrape intervals, so its
/// keep-alive connection is kept between scrapes.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(300);
/// After a response that ends the connection, how long what the client
/// still sends is read and dropped before the close, so that the close
/// does not reset the connection before the client read the response.
const LINGER: Duration = Duration::from_secs(2);
/// Accepts per wake-up, so a flood of connects cannot starve the
/// connections already open.
const ACCEPTS_PER_ROUND: usize = 64;

const METRICS_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";
const TEXT_TYPE: &str = "text/plain; charset=utf-8";

/// Serves the metrics on `address` from a thread of its own (which never
/// enters another netns); returns the bound address.
pub fn serve(address: SocketAddr, shared: Arc<Mutex<Metrics>>) -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind(address)?;
    listener.set_nonblocking(true)?;
    let bound = listener.local_addr()?;
    let server = Server {
        listener,
        shared,
        conns: Vec::new(),
        accept_paused_until: None,
        accept_warned: None,
    };
    std::thread::Builder::new()
        .name("metrics".into())
        .spawn(move || server.run())?;
    Ok(bound)
}

/// One request, as far as the answer depends on it.
#[derive(Debug, PartialEq, Eq)]
struct Request {
    method: String,
    /// The path, without a query.
    path: String,
    /// Whether the client wants the connection kept.
    keep_alive: bool,
    /// Whether a body follows (never read: the connection ends after).
    has_body: bool,
}

/// A request that cannot be answered normally: its status line.
#[derive(Debug, PartialEq, Eq)]
enum Refused {
    BadRequest,
    TooLarge,
}

impl Refused {
    fn status(&self) -> &'static str {
        match self {
            Self::BadRequest => "400 Bad Request",
            Self::TooLarge => "431 Request Header Fields Too Large",
        }
    }
}

/// Where the head in `buf` ends (the index after its empty line), once
/// it is complete. Lines may end in CRLF or a bare LF.
fn head_end(buf: &[u8]) -> Option<usize> {
    let mut i = 0;
    while let Some(n) = buf[i..].iter().position(|&b| b == b'\n') {
        let after = i + n + 1;
        match buf.get(after..) {
            Some([b'\n', ..]) => return Some(after + 1),
            Some([b'\r', b'\n', ..]) => return Some(after + 2),
            _ => i = after,
        }
    }
    None
}

fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// Parses a complete head (without the empty line's own bytes mattering).
fn parse_head(head: &[u8]) -> Result<Request, Refused> {
    let text = std::str::from_utf8(head).map_err(|_| Refused::BadRequest)?;
    let mut lines = text.split('\n').map(|l| l.strip_suffix('\r').unwrap_or(l));
    let request_line = lines.next().ok_or(Refused::BadRequest)?;
    let mut parts = request_line.split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(Refused::BadRequest);
    };
    if !is_token(method) || !target.starts_with('/') {
        return Err(Refused::BadRequest);
    }
    let http11 = match version {
        "HTTP/1.1" => true,
        "HTTP/1.0" => false,
        _ => return Err(Refused::BadRequest),
    };
    let mut keep_alive = http11;
    let mut has_body = false;
    for line in lines.take_while(|l| !l.is_empty()) {
        let (name, value) = line.split_once(':').ok_or(Refused::BadRequest)?;
        if !is_token(name) {
            return Err(Refused::BadRequest);
        }
        let value = value.trim();
        if name.eq_ignore_ascii_case("connection") {
            for option in value.split(',').map(str::trim) {
                if option.eq_ignore_ascii_case("close") {
                    keep_alive = false;
                } else if option.eq_ignore_ascii_case("keep-alive") {
                    keep_alive = true;
                }
            }
        } else if name.eq_ignore_ascii_case("content-length") {
            let n: u64 = value.parse().map_err(|_| Refused::BadRequest)?;
            has_body |= n > 0;
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            has_body = true;
        }
    }
    let path = target.split('?').next().unwrap_or(target).to_string();
    Ok(Request {
        method: method.to_string(),
        path,
        keep_alive,
        has_body,
    })
}

/// The response to a request; whether the connection stays open.
fn respond(request: Result<Request, Refused>, shared: &Mutex<Metrics>) -> (Vec<u8>, bool) {
    let request = match request {
        Ok(r) => r,
        Err(refused) => {
            return (
                response(
                    refused.status(),
                    TEXT_TYPE,
                    &[],
                    b"bad request\n",
                    false,
                    false,
                ),
                false,
            )
        }
    };
    // A body is never read, so the connection cannot go on after it.
    let keep = request.keep_alive && !request.has_body;
    let head_only = request.method == "HEAD";
    let bytes = if request.path != "/metrics" && request.path != "/" {
        response(
            "404 Not Found",
            TEXT_TYPE,
            &[],
            b"not found\n",
            head_only,
            keep,
        )
    } else if request.method != "GET" && !head_only {
        response(
            "405 Method Not Allowed",
            TEXT_TYPE,
            &["Allow: GET, HEAD"],
            b"only GET and HEAD\n",
            false,
            keep,
        )
    } else {
        // A poisoned lock still holds the last numbers: serve them.
        let text = shared
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .render();
        response(
            "200 OK",
            METRICS_TYPE,
            &[],
            text.as_bytes(),
            head_only,
            keep,
        )
    };
    (bytes, keep)
}

fn response(
    status: &str,
    content_type: &str,
    extra: &[&str],
    body: &[u8],
    head_only: bool,
    keep: bool,
) -> Vec<u8> {
    let mut out = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n",
        body.len()
    );
    for header in extra {
        out.push_str(header);
        out.push_str("\r\n");
    }
    out.push_str(if keep {
        "Connection: keep-alive\r\n\r\n"
    } else {
        "Connection: close\r\n\r\n"
    });
    let mut out = out.into_bytes();
    if !head_only {
        out.extend_from_slice(body);
    }
    out
}

/// One client connection.
struct Conn {
    stream: TcpStream,
    /// Bytes read and not yet answered.
    input: Vec<u8>,
    /// The response being written, and how much of it is.
    output: Vec<u8>,
    written: usize,
    /// Set when the client said it sends no more.
    eof: bool,
    /// Close once `output` is written.
    close_after: bool,
    /// Once the last response is written and the write side shut: reading
    /// and dropping until this instant, then closed.
    lingering: Option<Instant>,
    /// When the request being read began, or the response being written.
    started: Option<Instant>,
    last_active: Instant,
}

impl Conn {
    fn new(stream: TcpStream, now: Instant) -> Self {
        Self {
            stream,
            input: Vec::new(),
            output: Vec::new(),
            written: 0,
            eof: false,
            close_after: false,
            lingering: None,
            started: None,
            last_active: now,
        }
    }

    fn deadline(&self) -> Instant {
        if let Some(t) = self.lingering {
            return t;
        }
        match self.started {
            Some(t) if !self.output.is_empty() => t + WRITE_TIMEOUT,
            Some(t) => t + REQUEST_TIMEOUT,
            None => self.last_active + IDLE_TIMEOUT,
        }
    }

    fn interest(&self) -> PollFlags {
        if !self.output.is_empty() {
            PollFlags::POLLOUT
        } else {
            PollFlags::POLLIN
        }
    }

    /// Reads what is there, up to a full head; false when the connection
    /// is to be dropped.
    fn read(&mut self, now: Instant) -> bool {
        let mut buf = [0u8; 8192];
        loop {
            if self.lingering.is_some() {
                // Dropped, with no bound on bytes but the linger time.
                match (&self.stream).read(&mut buf) {
                    Ok(0) => return false,
                    Ok(_) => continue,
                    Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                    Err(e) => return e.kind() == ErrorKind::WouldBlock,
                }
            }
            let room = MAX_HEAD.saturating_sub(self.input.len()).min(buf.len());
            if room == 0 || self.eof {
                return true;
            }
            match (&self.stream).read(&mut buf[..room]) {
                Ok(0) => {
                    self.eof = true;
                    return true;
                }
                Ok(n) => {
                    if self.input.is_empty() && self.started.is_none() {
                        self.started = Some(now);
                    }
                    self.input.extend_from_slice(&buf[..n]);
                    self.last_active = now;
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return e.kind() == ErrorKind::WouldBlock,
            }
        }
    }

    /// Answers the next complete request, when no response is pending
    /// (one at a time, so a client that sends many and reads none holds
    /// one response and one head, no more).
    fn answer(&mut self, shared: &Mutex<Metrics>, now: Instant) {
        if !self.output.is_empty() || self.close_after || self.lingering.is_some() {
            return;
        }
        // Empty lines before a request are allowed (RFC 9112, 2.2).
        let blank = self
            .input
            .iter()
            .take_while(|&&b| b == b'\r' || b == b'\n')
            .count();
        self.input.drain(..blank);
        if self.input.is_empty() {
            self.started = None;
            if self.eof {
                self.close_after = true;
            }
            return;
        }
        let (bytes, keep) = match head_end(&self.input) {
            Some(end) => {
                let head: Vec<u8> = self.input.drain(..end).collect();
                respond(parse_head(&head), shared)
            }
            None if self.input.len() >= MAX_HEAD => respond(Err(Refused::TooLarge), shared),
            None => {
                // Half a request, and the client sends no more.
                if self.eof {
                    self.close_after = true;
                }
                return;
            }
        };
        self.output = bytes;
        self.written = 0;
        self.close_after = !keep;
        self.started = Some(now);
    }

    /// Writes what it can of the response; false when the connection is
    /// to be dropped.
    fn write(&mut self, now: Instant) -> bool {
        while self.written < self.output.len() {
            match (&self.stream).write(&self.output[self.written..]) {
                Ok(0) => return false,
                Ok(n) => {
                    self.written += n;
                    self.last_active = now;
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) if e.kind() == ErrorKind::WouldBlock => return true,
                Err(_) => return false,
            }
        }
        self.output = Vec::new();
        self.written = 0;
        // The next request's clock starts with its first byte (or now, for
        // one already read behind this one).
        self.started = (!self.input.is_empty()).then_some(now);
        if self.close_after && self.lingering.is_none() {
            if self.stream.shutdown(Shutdown::Write).is_err() {
                return false;
            }
            self.lingering = Some(now + LINGER);
        }
        true
    }

    /// One round: read, answer, write; false when it is to be dropped.
    fn step(&mut self, readable: bool, shared: &Mutex<Metrics>, now: Instant) -> bool {
        if readable && !self.read(now) {
            return false;
        }
        loop {
            self.answer(shared, now);
            if self.output.is_empty() {
                break;
            }
            if !self.write(now) {
                return false;
            }
            if !self.output.is_empty() {
                // The client's buffer is full: wait for POLLOUT.
                break;
            }
        }
        !(self.close_after && self.lingering.is_none() && self.output.is_empty())
    }
}

struct Server {
    listener: TcpListener,
    shared: Arc<Mutex<Metrics>>,
    conns: Vec<Conn>,
    /// After EMFILE and the like: the listener is left alone until then,
    /// so that a readable listener we cannot accept from does not spin.
    accept_paused_until: Option<Instant>,
    /// When that was last logged: once a minute at most.
    accept_warned: Option<Instant>,
}

impl Server {
    fn run(mut self) {
        loop {
            let now = Instant::now();
            self.conns.retain(|c| c.deadline() > now);
            if self.accept_paused_until.is_some_and(|t| t <= now) {
                self.accept_paused_until = None;
            }
            let wake = self
                .conns
                .iter()
                .map(Conn::deadline)
                .chain(self.accept_paused_until)
                .min();
            let timeout = match wake {
                Some(t) => PollTimeout::try_from(t.saturating_duration_since(now))
                    .unwrap_or(PollTimeout::MAX),
                None => PollTimeout::NONE,
            };
            let listen = self.accept_paused_until.is_none();
            let mut fds: Vec<PollFd> = Vec::with_capacity(self.conns.len() + 1);
            fds.push(PollFd::new(
                self.listener.as_fd(),
                if listen {
                    PollFlags::POLLIN
                } else {
                    PollFlags::empty()
                },
            ));
            fds.extend(
                self.conns
                    .iter()
                    .map(|c| PollFd::new(c.stream.as_fd(), c.interest())),
            );
            match poll(&mut fds, timeout) {
                Ok(_) => {}
                Err(nix::errno::Errno::EINTR) => continue,
                Err(e) => {
                    log::warn!("metrics endpoint: poll: {e}");
                    drop(fds);
                    std::thread::sleep(Duration::from_millis(100));
                    continue;
                }
            }
            let ready: Vec<PollFlags> = fds
                .iter()
                .map(|f| f.revents().unwrap_or(PollFlags::empty()))
                .collect();
            drop(fds);
            let now = Instant::now();
            let mut keep = Vec::with_capacity(self.conns.len());
            for (conn, revents) in self.conns.iter_mut().zip(&ready[1..]) {
                // HUP and ERR are read too: the read says what happened.
                let readable = revents
                    .intersects(PollFlags::POLLIN | PollFlags::POLLHUP | PollFlags::POLLERR)
                    && conn.output.is_empty();
                keep.push(if revents.is_empty() {
                    true
                } else {
                    conn.step(readable, &self.shared, now)
                });
            }
            let mut keep = keep.into_iter();
            self.conns.retain(|_| keep.next().unwrap_or(true));
            if listen && !ready[0].is_empty() {
                self.accept(now);
            }
        }
    }

    fn accept(&mut self, now: Instant) {
        for _ in 0..ACCEPTS_PER_ROUND {
            match self.listener.accept() {
                Ok((stream, _)) => {
                    if stream.set_nonblocking(true).is_err() {
                        continue;
                    }
                    // One write per response; Nagle would hold the next
                    // response of a keep-alive connection for an ACK.
                    let _ = stream.set_nodelay(true);
                    if self.conns.len() >= MAX_CONNECTIONS {
                        self.evict();
                    }
                    self.conns.push(Conn::new(stream, now));
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) if e.kind() == ErrorKind::ConnectionAborted => {}
                Err(e) => {
                    // EMFILE, ENFILE, ENOBUFS: let the process breathe.
                    if self
                        .accept_warned
                        .is_none_or(|t| now.duration_since(t) >= Duration::from_secs(60))
                    {
                        log::warn!(
                            "metrics endpoint: accept: {e}; pausing new connections for 100 ms"
                        );
                        self.accept_warned = Some(now);
                    }
                    self.accept_paused_until = Some(now + Duration::from_millis(100));
                    return;
                }
            }
        }
    }

    /// Closes the connection least recently active, to make room.
    fn evict(&mut self) {
        if let Some((i, _)) = self
            .conns
            .iter()
            .enumerate()
            .min_by_key(|(_, c)| c.last_active)
        {
            self.conns.swap_remove(i);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Request, Refused> {
        let end = head_end(text.as_bytes()).expect("a complete head");
        parse_head(&text.as_bytes()[..end])
    }

    #[test]
    fn heads_end_at_the_empty_line_of_either_kind() {
        assert_eq!(head_end(b"GET / HTTP/1.1\r\nHost: a\r\n"), None);
        assert_eq!(head_end(b"GET / HTTP/1.1\r\n\r\nGET"), Some(18));
        assert_eq!(head_end(b"GET / HTTP/1.1\nHost: a\n\nx"), Some(24));
        assert_eq!(head_end(b""), None);
    }

    #[test]
    fn requests_parse_and_keep_alive_follows_the_version_and_header() {
        let r = parse("GET /metrics?x=1 HTTP/1.1\r\nHost: a\r\nAuthorization: Bearer abc\r\n\r\n")
            .unwrap();
        assert_eq!(
            r,
            Request {
                method: "GET".into(),
                path: "/metrics".into(),
                keep_alive: true,
                has_body: false
            }
        );
        assert!(!parse("GET / HTTP/1.0\r\n\r\n").unwrap().keep_alive);
        assert!(
            parse("GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n")
                .unwrap()
                .keep_alive
        );
        assert!(
            !parse("GET / HTTP/1.1\r\nconnection: TE, close\r\n\r\n")
                .unwrap()
                .keep_alive
        );
        assert!(
            parse("POST /metrics HTTP/1.1\r\nContent-Length: 3\r\n\r\n")
                .unwrap()
                .has_body
        );
        for bad in [
            "GET /metrics\r\n\r\n",
            "GET  /metrics HTTP/1.1\r\n\r\n",
            "GET metrics HTTP/1.1\r\n\r\n",
            "GET /metrics HTTP/2\r\n\r\n",
            "GET /metrics HTTP/1.1\r\nno colon\r\n\r\n",
            "GET /metrics HTTP/1.1\r\nBad Name: x\r\n\r\n",
            "GET /metrics HTTP/1.1\r\nContent-Length: -1\r\n\r\n",
            "G\u{e9}T /metrics HTTP/1.1\r\n\r\n",
        ] {
            assert_eq!(parse(bad), Err(Refused::BadRequest), "{bad:?}");
        }
        assert_eq!(
            parse_head(b"GET /\xff HTTP/1.1\r\n\r\n"),
            Err(Refused::BadRequest)
        );
    }

    #[test]
    fn only_get_and_head_of_the_metrics_are_answered() {
        let shared = Mutex::new(Metrics {
            pairs: 7,
            ..Default::default()
        });
        let text = |req: &str| {
            let (bytes, keep) = respond(parse(req), &shared);
            (String::from_utf8(bytes).unwrap(), keep)
        };
        let (ok, keep) = text("GET /metrics HTTP/1.1\r\n\r\n");
        assert!(keep);
        assert!(ok.starts_with("HTTP/1.1 200 OK\r\n"), "{ok}");
        assert!(ok.contains("\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\n"));
        assert!(ok.ends_with("csum_offload_pairs 7\n") || ok.contains("\ncsum_offload_pairs 7\n"));
        let body = ok.split("\r\n\r\n").nth(1).unwrap();
        assert!(ok.contains(&format!("Content-Length: {}\r\n", body.len())));
        let (head, _) = text("HEAD /metrics HTTP/1.1\r\n\r\n");
        assert!(head.starts_with("HTTP/1.1 200 OK\r\n") && head.ends_with("\r\n\r\n"));
        assert!(head.contains(&format!("Content-Length: {}\r\n", body.len())));
        let (post, keep) = text("POST /metrics HTTP/1.1\r\nContent-Length: 2\r\n\r\n");
        assert!(post.starts_with("HTTP/1.1 405 ") && post.contains("\r\nAllow: GET, HEAD\r\n"));
        assert!(!keep, "a body is never read, so the connection ends");
        let (put, keep) = text("PUT / HTTP/1.1\r\n\r\n");
        assert!(put.starts_with("HTTP/1.1 405 ") && keep);
        assert!(text("GET /healthz HTTP/1.1\r\n\r\n")
            .0
            .starts_with("HTTP/1.1 404 "));
        let (bad, keep) = respond(Err(Refused::TooLarge), &shared);
        assert!(String::from_utf8(bad).unwrap().starts_with("HTTP/1.1 431 ") && !keep);
    }
}
