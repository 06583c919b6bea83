//! The HTTP/1.1 server: accept loop, request parsing, reply writing.

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::{JoinHandle, JoinSet};

use crate::reply::Reply;

/// Request heads larger than this are refused: a client that sends more is broken.
const MAX_HEAD_BYTES: usize = 64 * 1024;
/// How many bytes a [`Reply::CutOff`] promises in `Content-Length`.
const CUT_OFF_PROMISED: usize = 4096;
/// What a [`Reply::CutOff`] actually sends: the start of a plausible completion.
const CUT_OFF_BODY: &str = r#"{"id":"chatcmpl-cut","object":"chat.completion","choices":[{"index":0,"message":{"role":"assistant","content":"Hel"#;

/// One request as the fake server received it.
#[derive(Debug, Clone, PartialEq)]
pub struct ReceivedRequest {
    /// `GET`, `POST`, …
    pub method: String,
    /// The request target, e.g. `/v1/chat/completions`.
    pub path: String,
    /// Header names lower-cased, in the order received.
    pub headers: Vec<(String, String)>,
    /// The body parsed as JSON; `Null` when it is empty or not JSON (see `raw_body`).
    pub body: serde_json::Value,
    /// The body bytes as received.
    pub raw_body: Vec<u8>,
}

impl ReceivedRequest {
    /// The value of the first header with this name (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }
}

type Handler = dyn Fn(&ReceivedRequest) -> Reply + Send + Sync;

struct Shared {
    handler: Box<Handler>,
    record: bool,
    count: AtomicUsize,
    connections: AtomicUsize,
    requests: Mutex<Vec<ReceivedRequest>>,
}

/// A running fake upstream on 127.0.0.1; it stops when dropped.
pub struct FakeServer {
    addr: SocketAddr,
    shared: Arc<Shared>,
    accept_task: JoinHandle<()>,
}

impl FakeServer {
    /// Start serving on a free port of 127.0.0.1, answering every request with `handler`.
    /// Every request is kept for [`FakeServer::requests`].
    ///
    /// # Panics
    /// If no port on 127.0.0.1 can be bound: the test cannot run at all then.
    pub async fn start<H>(handler: H) -> FakeServer
    where
        H: Fn(&ReceivedRequest) -> Reply + Send + Sync + 'static,
    {
        Self::start_with(Box::new(handler), true).await
    }

    /// Like [`FakeServer::start`], but keeps only the count of requests, not the requests
    /// themselves: for benchmarks that push many thousands through.
    pub async fn start_without_recording<H>(handler: H) -> FakeServer
    where
        H: Fn(&ReceivedRequest) -> Reply + Send + Sync + 'static,
    {
        Self::start_with(Box::new(handler), false).await
    }

    async fn start_with(handler: Box<Handler>, record: bool) -> FakeServer {
        let listener = TcpListener::bind(("127.0.0.1", 0))
            .await
            .unwrap_or_else(|err| panic!("fake server: cannot bind 127.0.0.1:0: {err}"));
        let addr = listener
            .local_addr()
            .unwrap_or_else(|err| panic!("fake server: no local address: {err}"));
        let shared = Arc::new(Shared {
            handler,
            record,
            count: AtomicUsize::new(0),
            connections: AtomicUsize::new(0),
            requests: Mutex::new(Vec::new()),
        });
        let accept_task = tokio::spawn(accept_loop(listener, Arc::clone(&shared)));
        FakeServer {
            addr,
            shared,
            accept_task,
        }
    }

    /// The address the server listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The base URL a provider should be configured with, e.g. `http://127.0.0.1:PORT/v1`.
    pub fn base_url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }

    /// Every request received so far, in the order their heads and bodies were complete
    /// (empty when started with [`FakeServer::start_without_recording`]).
    pub fn requests(&self) -> Vec<ReceivedRequest> {
        self.shared
            .requests
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// How many requests have been received so far.
    pub fn request_count(&self) -> usize {
        self.shared.count.load(Ordering::SeqCst)
    }

    /// How many TCP connections have been accepted so far (to check that clients keep alive).
    pub fn connection_count(&self) -> usize {
        self.shared.connections.load(Ordering::SeqCst)
    }
}

impl Drop for FakeServer {
    fn drop(&mut self) {
        // The accept task owns the connection tasks' JoinSet, so this ends them too.
        self.accept_task.abort();
    }
}

impl std::fmt::Debug for FakeServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FakeServer")
            .field("addr", &self.addr)
            .field("request_count", &self.request_count())
            .finish()
    }
}

/// A base URL on 127.0.0.1 where nothing listens, for connection-refused tests.
///
/// # Panics
/// If no port on 127.0.0.1 can be bound.
pub fn refused_base_url() -> String {
    let listener = std::net::TcpListener::bind(("127.0.0.1", 0))
        .unwrap_or_else(|err| panic!("cannot bind 127.0.0.1:0: {err}"));
    let addr = listener
        .local_addr()
        .unwrap_or_else(|err| panic!("no local address: {err}"));
    drop(listener);
    format!("http://{addr}/v1")
}

async fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    let mut connections = JoinSet::new();
    loop {
        // Reap finished connections so the set does not grow over a long benchmark.
        while connections.try_join_next().is_some() {}
        match listener.accept().await {
            Ok((stream, _peer)) => {
                shared.connections.fetch_add(1, Ordering::SeqCst);
                connections.spawn(serve_connection(stream, Arc::clone(&shared)));
            }
            // Out of file descriptors and the like: back off instead of spinning.
            Err(_) => tokio::time::sleep(std::time::Duration::from_millis(5)).await,
        }
    }
}

/// A parsed request head: what the server needs to find and frame the body.
struct Head {
    method: String,
    path: String,
    headers: Vec<(String, String)>,
    content_length: usize,
    keep_alive: bool,
}

async fn serve_connection(mut stream: TcpStream, shared: Arc<Shared>) {
    // Errors here are the client's business (it hung up); the server just ends the connection.
    let _ = stream.set_nodelay(true);
    let mut input: Vec<u8> = Vec::with_capacity(8 * 1024);
    let mut output: Vec<u8> = Vec::with_capacity(4 * 1024);
    loop {
        let Ok(Some((head, head_len))) = read_head(&mut stream, &mut input).await else {
            return;
        };
        let total = head_len + head.content_length;
        while input.len() < total {
            match stream.read_buf(&mut input).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
        let raw_body = input[head_len..total].to_vec();
        input.drain(..total);
        let body = serde_json::from_slice(&raw_body).unwrap_or(serde_json::Value::Null);
        let keep_alive = head.keep_alive;
        let request = ReceivedRequest {
            method: head.method,
            path: head.path,
            headers: head.headers,
            body,
            raw_body,
        };
        let reply = (shared.handler)(&request);
        shared.count.fetch_add(1, Ordering::SeqCst);
        if shared.record {
            shared
                .requests
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push(request);
        }
        match write_reply(&mut stream, &mut output, reply, keep_alive).await {
            Ok(true) => {}
            Ok(false) | Err(_) => {
                let _ = stream.shutdown().await;
                return;
            }
        }
    }
}

/// Read until a full request head is buffered; `None` when the client closed between requests.
async fn read_head(
    stream: &mut TcpStream,
    input: &mut Vec<u8>,
) -> io::Result<Option<(Head, usize)>> {
    let mut scanned = 0;
    loop {
        if let Some(end) = find_head_end(input, scanned) {
            return parse_head(&input[..end]).map(|head| Some((head, end)));
        }
        if input.len() > MAX_HEAD_BYTES {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "request head too large",
            ));
        }
        // Resume the search a few bytes back: the terminator may straddle two reads.
        scanned = input.len().saturating_sub(3);
        if stream.read_buf(input).await? == 0 {
            return Ok(None);
        }
    }
}

/// Read one Content-Length-framed HTTP response, head and body, from a blocking keep-alive
/// connection, with `buffer` as scratch space. Panics when the peer closes first or sends more
/// than the one response a client with one request in flight should get: it is for tests and
/// benches that talk raw HTTP to measure the server, not the client.
pub fn read_response(stream: &mut impl std::io::Read, buffer: &mut [u8]) -> Vec<u8> {
    let mut got = Vec::new();
    loop {
        let n = stream.read(buffer).expect("read from the server");
        assert!(n > 0, "the server closed the keep-alive connection");
        got.extend_from_slice(&buffer[..n]);
        let Some(head_end) = find_head_end(&got, 0) else {
            continue;
        };
        let head = String::from_utf8_lossy(&got[..head_end]).to_ascii_lowercase();
        let length: usize = head
            .lines()
            .find_map(|line| line.strip_prefix("content-length:"))
            .and_then(|value| value.trim().parse().ok())
            .expect("a Content-Length framed response");
        if got.len() >= head_end + length {
            assert_eq!(got.len(), head_end + length, "one response per request");
            return got;
        }
    }
}

fn find_head_end(input: &[u8], from: usize) -> Option<usize> {
    input[from..]
        .windows(4)
        .position(|window| window == b"\r\n\r\n")
        .map(|at| from + at + 4)
}

fn parse_head(bytes: &[u8]) -> io::Result<Head> {
    let invalid = |what: &str| io::Error::new(io::ErrorKind::InvalidData, what.to_owned());
    let text = std::str::from_utf8(bytes).map_err(|_| invalid("request head is not UTF-8"))?;
    let mut lines = text.split("\r\n");
    let request_line = lines.next().ok_or_else(|| invalid("empty request"))?;
    let mut parts = request_line.split(' ');
    let (Some(method), Some(path), Some(version)) = (parts.next(), parts.next(), parts.next())
    else {
        return Err(invalid("bad request line"));
    };
    let mut head = Head {
        method: method.to_owned(),
        path: path.to_owned(),
        headers: Vec::new(),
        content_length: 0,
        keep_alive: version != "HTTP/1.0",
    };
    for line in lines.filter(|line| !line.is_empty()) {
        let (name, value) = line
            .split_once(':')
            .ok_or_else(|| invalid("bad header line"))?;
        let name = name.trim().to_ascii_lowercase();
        let value = value.trim();
        match name.as_str() {
            "content-length" => {
                head.content_length = value.parse().map_err(|_| invalid("bad content-length"))?;
            }
            "connection" if value.eq_ignore_ascii_case("close") => head.keep_alive = false,
            "connection" if value.eq_ignore_ascii_case("keep-alive") => head.keep_alive = true,
            "transfer-encoding" => return Err(invalid("chunked request bodies are not supported")),
            _ => {}
        }
        head.headers.push((name, value.to_owned()));
    }
    Ok(head)
}

/// Write `reply`; returns whether the connection may serve another request.
async fn write_reply(
    stream: &mut TcpStream,
    output: &mut Vec<u8>,
    reply: Reply,
    keep_alive: bool,
) -> io::Result<bool> {
    let mut extra: Vec<(String, String)> = Vec::new();
    let mut reply = reply;
    // Unwrap the wrappers iteratively: async recursion would need boxing for no gain.
    loop {
        match reply {
            Reply::Delay(delay, inner) => {
                tokio::time::sleep(delay).await;
                reply = *inner;
            }
            Reply::WithHeaders(headers, inner) => {
                extra.extend(headers);
                reply = *inner;
            }
            _ => break,
        }
    }
    output.clear();
    match reply {
        Reply::Json(status, value) => {
            let body = serde_json::to_vec(&value).map_err(io::Error::other)?;
            write_json(stream, output, status, &extra, &body, keep_alive).await
        }
        Reply::Raw(status, body) => {
            write_json(stream, output, status, &extra, body.as_bytes(), keep_alive).await
        }
        Reply::CutOff => {
            write_head(
                output,
                200,
                "application/json",
                &extra,
                Some(CUT_OFF_PROMISED),
                true,
            );
            output.extend_from_slice(CUT_OFF_BODY.as_bytes());
            stream.write_all(output).await?;
            Ok(false)
        }
        Reply::Sse(events) => {
            write_head(output, 200, "text/event-stream", &extra, None, keep_alive);
            stream.write_all(output).await?;
            for event in events {
                let frame = format!("data: {event}\n\n");
                output.clear();
                output.extend_from_slice(format!("{:x}\r\n", frame.len()).as_bytes());
                output.extend_from_slice(frame.as_bytes());
                output.extend_from_slice(b"\r\n");
                stream.write_all(output).await?;
            }
            stream.write_all(b"0\r\n\r\n").await?;
            Ok(keep_alive)
        }
        Reply::Close => Ok(false),
        Reply::Delay(..) | Reply::WithHeaders(..) => unreachable!("unwrapped above"),
    }
}

/// Status line and headers; `content_length: None` means a chunked body.
/// A complete `application/json` response with `body`; whether the connection stays open.
async fn write_json(
    stream: &mut TcpStream,
    output: &mut Vec<u8>,
    status: u16,
    extra: &[(String, String)],
    body: &[u8],
    keep_alive: bool,
) -> io::Result<bool> {
    write_head(
        output,
        status,
        "application/json",
        extra,
        Some(body.len()),
        keep_alive,
    );
    output.extend_from_slice(body);
    stream.write_all(output).await?;
    Ok(keep_alive)
}

fn write_head(
    output: &mut Vec<u8>,
    status: u16,
    content_type: &str,
    extra: &[(String, String)],
    content_length: Option<usize>,
    keep_alive: bool,
) {
    use std::io::Write;
    // Writing into a Vec cannot fail.
    let _ = write!(output, "HTTP/1.1 {status} {}\r\n", reason(status));
    if !extra
        .iter()
        .any(|(name, _)| name.eq_ignore_ascii_case("content-type"))
    {
        let _ = write!(output, "content-type: {content_type}\r\n");
    }
    match content_length {
        Some(length) => {
            let _ = write!(output, "content-length: {length}\r\n");
        }
        None => {
            output.extend_from_slice(b"transfer-encoding: chunked\r\ncache-control: no-cache\r\n")
        }
    }
    let connection = if keep_alive { "keep-alive" } else { "close" };
    let _ = write!(output, "connection: {connection}\r\n");
    for (name, value) in extra {
        let _ = write!(output, "{name}: {value}\r\n");
    }
    output.extend_from_slice(b"\r\n");
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        408 => "Request Timeout",
        422 => "Unprocessable Entity",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        529 => "Overloaded",
        _ => "Status",
    }
}
