//! What the fake server answers, and scripted sequences of answers.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use crate::server::ReceivedRequest;

/// One answer of the fake server, including deliberately broken ones.
#[derive(Debug, Clone, PartialEq)]
pub enum Reply {
    /// A JSON body with this status (`Content-Type: application/json`).
    Json(u16, serde_json::Value),
    /// This exact body text with this status, labelled as JSON (for malformed bodies).
    Raw(u16, String),
    /// Status 200 whose headers promise a longer body than is sent; then the connection closes.
    CutOff,
    /// Wait, then answer with the inner reply.
    Delay(Duration, Box<Reply>),
    /// A server-sent event stream: each string is sent as one `data: …` event, in order, as its
    /// own HTTP chunk. Include `[DONE]` yourself where the protocol wants it (see
    /// [`crate::openai_stream`]) so that tests can also leave it out.
    Sse(Vec<String>),
    /// Close the connection without answering.
    Close,
    /// The inner reply with extra response headers (`Retry-After`, …); a `Content-Type` given
    /// here replaces the default one.
    WithHeaders(Vec<(String, String)>, Box<Reply>),
}

impl Reply {
    /// This reply with one more response header.
    pub fn with_header(self, name: impl Into<String>, value: impl Into<String>) -> Reply {
        match self {
            Reply::WithHeaders(mut headers, inner) => {
                headers.push((name.into(), value.into()));
                Reply::WithHeaders(headers, inner)
            }
            other => Reply::WithHeaders(vec![(name.into(), value.into())], Box::new(other)),
        }
    }

    /// This reply, sent after `delay`.
    pub fn delayed(self, delay: Duration) -> Reply {
        Reply::Delay(delay, Box::new(self))
    }
}

/// A handler that answers from a queue of replies in order, then always with a fallback.
///
/// Clones share the queue, so a test can keep one to check [`Script::remaining`].
#[derive(Debug, Clone)]
pub struct Script {
    queue: Arc<Mutex<VecDeque<Reply>>>,
    fallback: Arc<Reply>,
}

impl Script {
    /// Answer with `replies` in order, then with `fallback` forever.
    pub fn new(replies: impl IntoIterator<Item = Reply>, fallback: Reply) -> Script {
        Script {
            queue: Arc::new(Mutex::new(replies.into_iter().collect())),
            fallback: Arc::new(fallback),
        }
    }

    /// The next reply: the head of the queue, or the fallback once it is empty.
    pub fn next_reply(&self) -> Reply {
        // A panicking handler elsewhere must not turn every later request into a panic.
        let mut queue = self.queue.lock().unwrap_or_else(PoisonError::into_inner);
        queue
            .pop_front()
            .unwrap_or_else(|| (*self.fallback).clone())
    }

    /// How many scripted replies have not been used yet.
    pub fn remaining(&self) -> usize {
        self.queue
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    /// This script as a handler for [`crate::FakeServer::start`].
    pub fn handler(&self) -> impl Fn(&ReceivedRequest) -> Reply + Send + Sync + 'static {
        let script = self.clone();
        move |_request| script.next_reply()
    }
}
