//! Server-sent events: split a byte stream into event payloads, and drive a protocol-specific
//! parser over them to produce [`StreamEvent`]s.

use std::collections::VecDeque;

use futures::stream::{BoxStream, Stream, StreamExt};
use reqwest::Url;

use crate::{ProviderError, StreamEvent};

/// Splits SSE bytes into the `data` of each event. Lines are only decoded once complete, so a
/// multi-byte character split across network reads is never cut in half.
#[derive(Debug, Default)]
pub(crate) struct SseDecoder {
    line: Vec<u8>,
    data: String,
    has_data: bool,
}

impl SseDecoder {
    /// Feed bytes; returns the data of every event they completed.
    pub(crate) fn push(&mut self, bytes: &[u8]) -> Vec<String> {
        let mut events = Vec::new();
        for &byte in bytes {
            if byte == b'\n' {
                self.end_line(&mut events);
            } else {
                self.line.push(byte);
            }
        }
        events
    }

    fn end_line(&mut self, events: &mut Vec<String>) {
        let line = String::from_utf8_lossy(&self.line);
        let line = line.strip_suffix('\r').unwrap_or(&line);
        if line.is_empty() {
            if self.has_data {
                events.push(std::mem::take(&mut self.data));
                self.has_data = false;
            }
        } else if let Some(value) = line.strip_prefix("data:") {
            if self.has_data {
                self.data.push('\n');
            }
            self.data.push_str(value.strip_prefix(' ').unwrap_or(value));
            self.has_data = true;
        }
        // `event:`, `id:`, `retry:` and `:` comments carry nothing the parsers need: both
        // vendors repeat the event type inside the JSON.
        self.line.clear();
    }
}

/// What a protocol does with each event's data.
pub(crate) trait EventParser: Send + 'static {
    /// Handle one event's data; may produce text deltas and, at the end, [`StreamEvent::Done`].
    fn on_data(&mut self, data: &str) -> Result<Vec<StreamEvent>, ProviderError>;
}

struct Driver<S, P> {
    body: S,
    decoder: SseDecoder,
    parser: P,
    pending: VecDeque<Result<StreamEvent, ProviderError>>,
    finished: bool,
    provider: String,
    url: Url,
}

/// Turn a response body into a stream of events that ends after `Done` or the first error.
/// A body that ends before the parser produced `Done` yields a retryable `Connection` error.
pub(crate) fn drive<S, B, P>(
    provider: &str,
    url: &Url,
    body: S,
    parser: P,
) -> BoxStream<'static, Result<StreamEvent, ProviderError>>
where
    S: Stream<Item = Result<B, reqwest::Error>> + Send + Unpin + 'static,
    B: AsRef<[u8]>,
    P: EventParser,
{
    let driver = Driver {
        body,
        decoder: SseDecoder::default(),
        parser,
        pending: VecDeque::new(),
        finished: false,
        provider: provider.to_owned(),
        url: url.clone(),
    };
    Box::pin(futures::stream::unfold(driver, |mut driver| async move {
        loop {
            if let Some(item) = driver.pending.pop_front() {
                if matches!(item, Ok(StreamEvent::Done { .. }) | Err(_)) {
                    // Nothing after the end or an error is meaningful; stop reading.
                    driver.pending.clear();
                    driver.finished = true;
                }
                return Some((item, driver));
            }
            if driver.finished {
                return None;
            }
            driver.read_more().await;
        }
    }))
}

impl<S, B, P> Driver<S, P>
where
    S: Stream<Item = Result<B, reqwest::Error>> + Unpin,
    B: AsRef<[u8]>,
    P: EventParser,
{
    async fn read_more(&mut self) {
        match self.body.next().await {
            Some(Ok(bytes)) => {
                for data in self.decoder.push(bytes.as_ref()) {
                    match self.parser.on_data(&data) {
                        Ok(events) => self.pending.extend(events.into_iter().map(Ok)),
                        Err(err) => self.pending.push_back(Err(err)),
                    }
                }
            }
            Some(Err(err)) => self.pending.push_back(Err(crate::http::transport_error(
                &self.provider,
                &self.url,
                &err,
            ))),
            None => self.pending.push_back(Err(ProviderError::Connection {
                provider: self.provider.clone(),
                message: format!(
                    "the event stream from {} ended before the answer was complete",
                    self.url
                ),
            })),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_split_across_reads_and_characters_come_out_whole() {
        let mut decoder = SseDecoder::default();
        let bytes =
            "data: {\"t\":\"h€llo\"}\r\n\r\n: comment\nevent: x\ndata: a\ndata: b\n\n".as_bytes();
        let mut events = Vec::new();
        for chunk in bytes.chunks(3) {
            events.extend(decoder.push(chunk));
        }
        assert_eq!(
            events,
            vec!["{\"t\":\"h€llo\"}".to_owned(), "a\nb".to_owned()]
        );
    }
}
