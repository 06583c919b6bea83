//! What every HTTP provider shares: the client, turning transport failures and error statuses
//! into [`ProviderError`]s, and reading `Retry-After`.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use reqwest::header::{HeaderMap, HeaderValue};
use reqwest::{Response, StatusCode, Url};
use serde::de::DeserializeOwned;

use futures::stream::BoxStream;

use crate::sse::{self, EventParser};
use crate::{ChatRequest, ProviderError, StreamEvent};

/// One HTTP endpoint of a provider: the model's config name (for messages), the URL, the key
/// header and a pooled client. What the OpenAI and Anthropic modules share, written once.
pub(crate) struct Endpoint {
    pub(crate) name: String,
    pub(crate) url: Url,
    key: Option<(&'static str, HeaderValue)>,
    headers: &'static [(&'static str, &'static str)],
    client: reqwest::Client,
}

/// How an API key travels: its header and what precedes the key in it (`Bearer `).
pub(crate) struct KeyHeader {
    pub(crate) name: &'static str,
    pub(crate) prefix: &'static str,
}

impl Endpoint {
    /// `{base_url}/{path}` for the model `name`, sending `api_key` in `key` and the fixed
    /// `headers` with every request.
    pub(crate) fn new(
        name: String,
        base_url: &str,
        path: &str,
        api_key: Option<String>,
        key: KeyHeader,
        headers: &'static [(&'static str, &'static str)],
    ) -> Result<Endpoint, ProviderError> {
        let url = endpoint(&name, base_url, path)?;
        let key = api_key
            .map(|api_key| secret_header(&name, key.prefix, &api_key).map(|v| (key.name, v)))
            .transpose()?;
        let client = client(&name)?;
        Ok(Endpoint {
            name,
            url,
            key,
            headers,
            client,
        })
    }

    /// POST `body` as JSON for `chat`; anything but a 2xx status is the matching error.
    pub(crate) async fn post(
        &self,
        chat: &ChatRequest,
        body: &impl serde::Serialize,
    ) -> Result<Response, ProviderError> {
        self.post_traced(chat.traceparent.as_deref(), body).await
    }

    /// The same provider, client and key at `{base_url}/{path}` (a second route of one API).
    pub(crate) fn with_path(&self, base_url: &str, path: &str) -> Result<Endpoint, ProviderError> {
        Ok(Endpoint {
            name: self.name.clone(),
            url: endpoint(&self.name, base_url, path)?,
            key: self.key.clone(),
            headers: self.headers,
            client: self.client.clone(),
        })
    }

    /// POST `body` as JSON with an optional trace context, for requests that are not chat.
    pub(crate) async fn post_traced(
        &self,
        traceparent: Option<&str>,
        body: &impl serde::Serialize,
    ) -> Result<Response, ProviderError> {
        let mut request = self.client.post(self.url.clone()).json(body);
        for (name, value) in self.headers {
            request = request.header(*name, *value);
        }
        if let Some((name, value)) = &self.key {
            request = request.header(*name, value.clone());
        }
        send(&self.name, &self.url, traceparent, request).await
    }

    /// Read a whole 2xx body as `T`; `what` names the expected shape for messages.
    pub(crate) async fn read_json<T: DeserializeOwned>(
        &self,
        response: Response,
        what: &str,
    ) -> Result<T, ProviderError> {
        read_json(&self.name, &self.url, response, what).await
    }

    /// The response body as a stream of events read by `parser`.
    pub(crate) fn events(
        &self,
        response: Response,
        parser: impl EventParser,
    ) -> BoxStream<'static, Result<StreamEvent, ProviderError>> {
        sse::drive(
            &self.name,
            &self.url,
            Box::pin(response.bytes_stream()),
            parser,
        )
    }

    /// A 2xx answer that is not what the API promises.
    pub(crate) fn malformed(&self, message: impl Into<String>) -> ProviderError {
        ProviderError::Malformed {
            provider: self.name.clone(),
            message: message.into(),
        }
    }
}

impl std::fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The key stays out of debug output.
        f.debug_struct("Endpoint")
            .field("name", &self.name)
            .field("url", &self.url.as_str())
            .field("has_api_key", &self.key.is_some())
            .finish()
    }
}

/// How long to wait for a TCP (and TLS) connection before giving up on the attempt.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How much of an unrecognised error body goes into an error message.
const BODY_PREFIX_CHARS: usize = 300;

/// One pooled client per provider instance. There is deliberately no overall timeout: the
/// engine times attempts out by dropping the future.
pub(crate) fn client(provider: &str) -> Result<reqwest::Client, ProviderError> {
    reqwest::Client::builder()
        .tcp_nodelay(true)
        .connect_timeout(CONNECT_TIMEOUT)
        .build()
        .map_err(|err| {
            ProviderError::Config(format!(
                "cannot set up the HTTP client for {provider}: {}",
                error_chain(&err)
            ))
        })
}

/// Parse `{base_url}/{endpoint}`, insisting on http(s) so that a typo fails at startup.
pub(crate) fn endpoint(provider: &str, base_url: &str, path: &str) -> Result<Url, ProviderError> {
    let joined = format!("{}/{path}", base_url.trim_end_matches('/'));
    match Url::parse(&joined) {
        Ok(url) if matches!(url.scheme(), "http" | "https") => Ok(url),
        _ => Err(ProviderError::Config(format!(
            "base_url {base_url:?} of {provider} is not an http(s) URL; \
             write it like \"http://localhost:8000/v1\""
        ))),
    }
}

/// An API key as a header value that is never printed in debug output.
pub(crate) fn secret_header(
    provider: &str,
    prefix: &str,
    key: &str,
) -> Result<HeaderValue, ProviderError> {
    let mut value = HeaderValue::from_str(&format!("{prefix}{key}")).map_err(|_| {
        // Never echo the key: it may be half right.
        ProviderError::Config(format!(
            "the API key for {provider} contains characters that cannot go in an HTTP header; \
             check the environment variable that holds it"
        ))
    })?;
    value.set_sensitive(true);
    Ok(value)
}

/// Send an HTTP request, with its trace context when it has one, and insist on a 2xx status;
/// anything else becomes the matching error.
pub(crate) async fn send(
    provider: &str,
    url: &Url,
    traceparent: Option<&str>,
    request: reqwest::RequestBuilder,
) -> Result<Response, ProviderError> {
    let request = match traceparent {
        Some(traceparent) => request.header("traceparent", traceparent),
        None => request,
    };
    let response = request
        .send()
        .await
        .map_err(|err| transport_error(provider, url, &err))?;
    if response.status().is_success() {
        Ok(response)
    } else {
        Err(status_error(provider, url, response).await)
    }
}

/// Read a whole 2xx body and parse it as `T`; `what` names the expected shape for messages.
pub(crate) async fn read_json<T: DeserializeOwned>(
    provider: &str,
    url: &Url,
    response: Response,
    what: &str,
) -> Result<T, ProviderError> {
    let body = response
        .bytes()
        .await
        .map_err(|err| transport_error(provider, url, &err))?;
    serde_json::from_slice(&body).map_err(|err| ProviderError::Malformed {
        provider: provider.to_owned(),
        message: format!(
            "POST {url} answered 2xx but the body is not {what} ({err}); body starts: {}",
            body_prefix(&body)
        ),
    })
}

/// A failure below HTTP: refused, reset, timed out connecting, or a body that broke off.
pub(crate) fn transport_error(provider: &str, url: &Url, err: &reqwest::Error) -> ProviderError {
    let detail = error_chain(err);
    let message = if err.is_connect() {
        format!(
            "cannot connect to {url}: {detail}; check that the server runs and base_url is right"
        )
    } else if err.is_body() || err.is_decode() {
        format!("the response body from {url} broke off: {detail}")
    } else if err.is_builder() {
        return ProviderError::Config(format!(
            "cannot build a request to {url} for {provider}: {detail}"
        ));
    } else {
        format!("request to {url} failed: {detail}")
    };
    ProviderError::Connection {
        provider: provider.to_owned(),
        message,
    }
}

/// The full cause chain: reqwest's own message alone ("error sending request") hides the cause.
fn error_chain(err: &dyn std::error::Error) -> String {
    let mut message = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if !message.contains(&text) {
            message.push_str(": ");
            message.push_str(&text);
        }
        source = cause.source();
    }
    message
}

/// Turn a non-2xx response into [`ProviderError::Status`] with the vendor's own message.
async fn status_error(provider: &str, url: &Url, response: Response) -> ProviderError {
    let status = response.status();
    let retry_after = retry_after(response.headers(), SystemTime::now());
    let message = match response.bytes().await {
        Ok(body) => error_message(&body, status),
        Err(err) => format!("(error body unreadable: {})", error_chain(&err)),
    };
    let hint = match status.as_u16() {
        401 | 403 => "; check the API key (the variable named by api_key_env)",
        404 => "; check the model id and base_url",
        _ => "",
    };
    ProviderError::Status {
        provider: provider.to_owned(),
        status: status.as_u16(),
        message: format!("{message} (POST {url}){hint}"),
        retry_after,
    }
}

/// The human part of an error body. Covers OpenAI and Anthropic (`error.message`), Ollama-style
/// `{"error": "…"}`, and a bare `message`; otherwise the start of the body as text.
pub(crate) fn error_message(body: &[u8], status: StatusCode) -> String {
    if let Ok(value) = serde_json::from_slice::<serde_json::Value>(body) {
        let candidates = [
            &value["error"]["message"],
            &value["error"],
            &value["message"],
        ];
        if let Some(text) = candidates.iter().find_map(|candidate| candidate.as_str()) {
            return text.to_owned();
        }
    }
    let prefix = body_prefix(body);
    if prefix.is_empty() {
        status.canonical_reason().unwrap_or("no message").to_owned()
    } else {
        prefix
    }
}

/// At most [`BODY_PREFIX_CHARS`] characters of a body, trimmed, for messages.
pub(crate) fn body_prefix(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let trimmed = text.trim();
    match trimmed.char_indices().nth(BODY_PREFIX_CHARS) {
        Some((cut, _)) => format!("{}…", &trimmed[..cut]),
        None => trimmed.to_owned(),
    }
}

/// The wait a server asked for: OpenAI's `retry-after-ms`, else `Retry-After` as seconds or as
/// an HTTP-date (IMF-fixdate) relative to `now`.
pub(crate) fn retry_after(headers: &HeaderMap, now: SystemTime) -> Option<Duration> {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|value| value.to_str().ok())
            .map(str::trim)
    };
    if let Some(millis) = header("retry-after-ms").and_then(|text| text.parse::<f64>().ok()) {
        return Duration::try_from_secs_f64(millis / 1000.0).ok();
    }
    let text = header("retry-after")?;
    if let Ok(seconds) = text.parse::<f64>() {
        return Duration::try_from_secs_f64(seconds).ok();
    }
    let at = parse_http_date(text)?;
    let now = now.duration_since(UNIX_EPOCH).ok()?.as_secs();
    Some(Duration::from_secs(at.saturating_sub(now)))
}

/// Seconds since the Unix epoch of an IMF-fixdate such as `Sun, 06 Nov 1994 08:49:37 GMT`.
/// The obsolete RFC 850 and asctime forms are not accepted; servers stopped sending them.
fn parse_http_date(text: &str) -> Option<u64> {
    let mut fields = text.split_whitespace();
    let _weekday = fields.next()?;
    let day: u64 = fields.next()?.parse().ok()?;
    let month = match fields.next()? {
        "Jan" => 1,
        "Feb" => 2,
        "Mar" => 3,
        "Apr" => 4,
        "May" => 5,
        "Jun" => 6,
        "Jul" => 7,
        "Aug" => 8,
        "Sep" => 9,
        "Oct" => 10,
        "Nov" => 11,
        "Dec" => 12,
        _ => return None,
    };
    let year: u64 = fields.next()?.parse().ok()?;
    let mut clock = fields
        .next()?
        .split(':')
        .map(|part| part.parse::<u64>().ok());
    let (hour, minute, second) = (clock.next()??, clock.next()??, clock.next()??);
    if fields.next()? != "GMT"
        || !(1..=31).contains(&day)
        || year < 1970
        || hour > 23
        || minute > 59
        || second > 60
    {
        return None;
    }
    Some(days_from_civil(year, month, day) * 86_400 + hour * 3600 + minute * 60 + second)
}

/// Days from 1970-01-01 to a proleptic Gregorian date (Howard Hinnant's algorithm), year ≥ 1970.
fn days_from_civil(year: u64, month: u64, day: u64) -> u64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year / 400;
    let year_of_era = year - era * 400;
    let month_index = (month + 9) % 12; // March = 0, so the leap day ends the year
    let day_of_year = (153 * month_index + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.insert(*name, HeaderValue::from_str(value).expect("test header"));
        }
        map
    }

    #[test]
    fn retry_after_reads_seconds_milliseconds_and_dates() {
        let now = UNIX_EPOCH + Duration::from_secs(784_111_777); // Sun, 06 Nov 1994 08:49:37 GMT
        assert_eq!(
            retry_after(&headers(&[("retry-after", "7")]), now),
            Some(Duration::from_secs(7))
        );
        assert_eq!(
            retry_after(
                &headers(&[("retry-after-ms", "1500"), ("retry-after", "9")]),
                now
            ),
            Some(Duration::from_millis(1500))
        );
        assert_eq!(
            retry_after(
                &headers(&[("retry-after", "Sun, 06 Nov 1994 08:50:07 GMT")]),
                now
            ),
            Some(Duration::from_secs(30))
        );
        assert_eq!(
            retry_after(
                &headers(&[("retry-after", "Sun, 06 Nov 1994 08:00:00 GMT")]),
                now
            ),
            Some(Duration::ZERO),
            "a date in the past means: retry now"
        );
        assert_eq!(retry_after(&headers(&[("retry-after", "soon")]), now), None);
        assert_eq!(retry_after(&headers(&[("retry-after", "-3")]), now), None);
        assert_eq!(retry_after(&HeaderMap::new(), now), None);
    }

    #[test]
    fn http_dates_match_known_timestamps() {
        assert_eq!(parse_http_date("Thu, 01 Jan 1970 00:00:00 GMT"), Some(0));
        assert_eq!(
            parse_http_date("Tue, 29 Feb 2000 12:00:00 GMT"),
            Some(951_825_600)
        );
        assert_eq!(
            parse_http_date("Wed, 21 Oct 2015 07:28:00 GMT"),
            Some(1_445_412_480)
        );
        assert_eq!(parse_http_date("Wed, 21 Oct 2015 07:28:00 CET"), None);
    }

    #[test]
    fn error_message_prefers_the_vendor_message() {
        let status = StatusCode::BAD_REQUEST;
        assert_eq!(
            error_message(br#"{"error":{"message":"bad model"}}"#, status),
            "bad model"
        );
        assert_eq!(
            error_message(br#"{"error":"model not found"}"#, status),
            "model not found"
        );
        assert_eq!(
            error_message(b"  <html>oops</html>\n", status),
            "<html>oops</html>"
        );
        assert_eq!(error_message(b"", status), "Bad Request");
        let long = "é".repeat(1000);
        assert_eq!(
            body_prefix(long.as_bytes()).chars().count(),
            BODY_PREFIX_CHARS + 1
        );
    }
}
