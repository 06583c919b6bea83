//! The fake server over raw TCP: exact bytes on the wire, keep-alive, broken replies, load.

use std::time::{Duration, Instant};

use serde_json::json;
use shopfloor_testkit::{assert_contains, openai_completion, FakeServer, Reply, Script};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

fn post(path: &str, body: &str) -> String {
    format!(
        "POST {path} HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n\
         X-Trace: abc\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

/// Read one response with a Content-Length body; returns the head and the body.
async fn read_response(stream: &mut TcpStream, buffer: &mut Vec<u8>) -> (String, Vec<u8>) {
    let head_end = loop {
        if let Some(at) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
            break at + 4;
        }
        let read = stream.read_buf(buffer).await.expect("read");
        assert!(read > 0, "connection closed before the response head");
    };
    let head = String::from_utf8(buffer[..head_end].to_vec()).expect("UTF-8 head");
    let length: usize = head
        .lines()
        .find_map(|line| line.strip_prefix("content-length: "))
        .expect("content-length")
        .parse()
        .expect("a number");
    while buffer.len() < head_end + length {
        let read = stream.read_buf(buffer).await.expect("read");
        assert!(read > 0, "connection closed inside the body");
    }
    let body = buffer[head_end..head_end + length].to_vec();
    buffer.drain(..head_end + length);
    (head, body)
}

async fn connect(server: &FakeServer) -> TcpStream {
    TcpStream::connect(server.addr()).await.expect("connect")
}

#[tokio::test]
async fn serves_and_records_many_requests_on_one_connection() {
    let server = FakeServer::start(|_| Reply::Json(200, openai_completion("hi", 3, 1))).await;
    assert!(server.base_url().starts_with("http://127.0.0.1:"));
    assert!(server.base_url().ends_with("/v1"));
    let mut stream = connect(&server).await;
    let mut buffer = Vec::new();
    for index in 0..3 {
        let body = format!("{{\"n\":{index}}}");
        stream
            .write_all(post("/v1/chat/completions", &body).as_bytes())
            .await
            .expect("write");
        let (head, body) = read_response(&mut stream, &mut buffer).await;
        assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
        assert!(head.contains("connection: keep-alive"), "{head}");
        let body: serde_json::Value = serde_json::from_slice(&body).expect("JSON");
        assert_eq!(body["choices"][0]["message"]["content"], json!("hi"));
    }
    assert_eq!((server.request_count(), server.connection_count()), (3, 1));
    let requests = server.requests();
    assert_eq!(requests[2].method, "POST");
    assert_eq!(requests[2].path, "/v1/chat/completions");
    assert_eq!(requests[2].header("x-trace"), Some("abc"));
    assert_eq!(requests[2].body, json!({ "n": 2 }));
}

#[tokio::test]
async fn answers_pipelined_requests_in_order() {
    let script = Script::new([Reply::Json(201, json!(1))], Reply::Json(202, json!(2)));
    let server = FakeServer::start(script.handler()).await;
    let mut stream = connect(&server).await;
    let both = format!("{}{}", post("/a", "{}"), post("/b", "not json"));
    stream.write_all(both.as_bytes()).await.expect("write");
    let mut buffer = Vec::new();
    let (first, _) = read_response(&mut stream, &mut buffer).await;
    let (second, _) = read_response(&mut stream, &mut buffer).await;
    assert!(first.starts_with("HTTP/1.1 201"), "{first}");
    assert!(second.starts_with("HTTP/1.1 202"), "{second}");
    let requests = server.requests();
    assert_eq!(requests[1].body, serde_json::Value::Null);
    assert_eq!(requests[1].raw_body, b"not json");
}

/// POST `{}` to `path` on a new connection and read until the server closes it.
async fn post_until_closed(server: &FakeServer, path: &str) -> Vec<u8> {
    let mut stream = connect(server).await;
    stream
        .write_all(post(path, "{}").as_bytes())
        .await
        .expect("write");
    let mut received = Vec::new();
    stream
        .read_to_end(&mut received)
        .await
        .expect("read to the close");
    received
}

#[tokio::test]
async fn cut_off_promises_more_body_than_it_sends_then_closes() {
    let server = FakeServer::start(|_| Reply::CutOff).await;
    let received = post_until_closed(&server, "/v1/chat/completions").await;
    let text = String::from_utf8(received).expect("UTF-8");
    let (head, body) = text.split_once("\r\n\r\n").expect("a head");
    assert!(head.contains("content-length: 4096"), "{head}");
    assert!(body.len() < 4096 && body.starts_with('{'), "{body}");
}

#[tokio::test]
async fn close_hangs_up_without_a_byte() {
    let server = FakeServer::start(|_| Reply::Close).await;
    let received = post_until_closed(&server, "/v1/messages").await;
    assert!(received.is_empty());
    assert_eq!(server.request_count(), 1);
}

#[tokio::test]
async fn delays_and_extra_headers_apply_to_any_reply() {
    let reply = Reply::Raw(429, "{oops".into())
        .with_header("Retry-After", "3")
        .delayed(Duration::from_millis(150));
    let server = FakeServer::start(move |_| reply.clone()).await;
    let mut stream = connect(&server).await;
    let started = Instant::now();
    stream
        .write_all(post("/", "").as_bytes())
        .await
        .expect("write");
    let (head, body) = read_response(&mut stream, &mut Vec::new()).await;
    assert!(started.elapsed() >= Duration::from_millis(150));
    assert!(
        head.starts_with("HTTP/1.1 429 Too Many Requests\r\n"),
        "{head}"
    );
    assert!(head.contains("Retry-After: 3\r\n"), "{head}");
    assert_eq!(body, b"{oops");
}

#[tokio::test]
async fn sse_sends_each_event_as_a_chunk() {
    let server = FakeServer::start(|_| Reply::Sse(vec!["{\"a\":1}".into(), "[DONE]".into()])).await;
    let mut stream = connect(&server).await;
    let request = post("/", "{}").replace("Host: test", "Host: test\r\nConnection: close");
    stream.write_all(request.as_bytes()).await.expect("write");
    let mut received = Vec::new();
    stream
        .read_to_end(&mut received)
        .await
        .expect("read to the close");
    let text = String::from_utf8(received).expect("UTF-8");
    assert_contains(
        &text,
        &[
            "content-type: text/event-stream\r\n",
            "transfer-encoding: chunked\r\n",
        ],
    );
    assert!(
        text.ends_with("\r\n\r\nf\r\ndata: {\"a\":1}\n\n\r\ne\r\ndata: [DONE]\n\n\r\n0\r\n\r\n"),
        "{text:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keeps_up_with_64_concurrent_keep_alive_clients() {
    const CLIENTS: usize = 64;
    const PER_CLIENT: usize = 50;
    let server =
        FakeServer::start_without_recording(|_| Reply::Json(200, openai_completion("ok", 1, 1)))
            .await;
    let addr = server.addr();
    let started = Instant::now();
    let mut clients = Vec::new();
    for _ in 0..CLIENTS {
        clients.push(tokio::spawn(async move {
            let mut stream = TcpStream::connect(addr).await.expect("connect");
            let mut buffer = Vec::new();
            let request = post("/v1/chat/completions", "{\"model\":\"m\"}");
            for _ in 0..PER_CLIENT {
                stream.write_all(request.as_bytes()).await.expect("write");
                let (head, _) = read_response(&mut stream, &mut buffer).await;
                assert!(head.starts_with("HTTP/1.1 200"), "{head}");
            }
        }));
    }
    for client in clients {
        tokio::time::timeout(Duration::from_secs(60), client)
            .await
            .expect("the load finishes within a minute")
            .expect("client task");
    }
    assert_eq!(server.request_count(), CLIENTS * PER_CLIENT);
    assert_eq!(server.connection_count(), CLIENTS);
    assert!(
        server.requests().is_empty(),
        "nothing kept when not recording"
    );
    eprintln!(
        "{} requests in {:?}",
        CLIENTS * PER_CLIENT,
        started.elapsed()
    );
}
