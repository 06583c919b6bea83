//! The body of `POST /v1/chat/completions`, read field by field so that none is dropped:
//! each field of OpenAI's request is either carried to the model (as a field of the
//! engine's request, which the provider puts in its own form or refuses), applied here
//! (`stream`, `stream_options`, `n = 1`, `metadata` and `store`, recorded on the run), or
//! refused with a 400 that names it. A field this gateway does not know is kept as it came,
//! for OpenAI-compatible servers, and refused by every other provider.
//!
//! A plain request (`model`, `messages`, sampling parameters) allocates no extras: they
//! are built only when a field asks for them.

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::Deserialize;
use serde_json::{Map, Value};
use shopfloor_engine::chat::{
    ChatExtras, Image, Message, Part as MessagePart, ResponseFormat, Role, Tool, ToolCall,
    ToolChoice,
};

use crate::error::ApiError;

/// The request body, as OpenAI's SDKs send it.
#[derive(Debug, Default)]
pub(crate) struct ChatBody {
    pub model: String,
    pub messages: Vec<WireMessage>,
    pub stream: bool,
    pub include_usage: bool,
    pub max_tokens: Option<u32>,
    pub max_completion_tokens: Option<u32>,
    pub temperature: Option<f32>,
    pub top_p: Option<f32>,
    pub seed: Option<u64>,
    pub n: Option<u32>,
    /// The legacy `functions` / `function_call` were used: the answer speaks them too.
    pub legacy_functions: bool,
    /// Recorded on the run, never sent: `metadata`, `store`.
    pub recorded: Option<Map<String, Value>>,
    pub extras: Option<Box<ChatExtras>>,
    /// `tools` and `functions` are exclusive; which was given, for the error.
    tools_given: bool,
    /// The first field refused, and why: answered as a 400 with `param` set.
    pub refused: Option<(&'static str, String)>,
}

impl ChatBody {
    fn extras(&mut self) -> &mut ChatExtras {
        self.extras.get_or_insert_with(Default::default)
    }

    fn record(&mut self, field: &str, value: Value) {
        self.recorded
            .get_or_insert_with(Map::new)
            .insert(field.to_string(), value);
    }

    /// The end user the client named (for the caller of the run).
    pub fn user(&self) -> Option<&str> {
        self.extras.as_deref().and_then(|e| e.user.as_deref())
    }

    /// Refuse `field` (the first refusal is the one answered).
    fn refuse(&mut self, field: &'static str, why: impl Into<String>) {
        if self.refused.is_none() {
            self.refused = Some((field, why.into()));
        }
    }

    /// A sampling number inside OpenAI's range for `field`, or refused by name: a value past
    /// the range would reach the model unchecked, and one past `f32` (`1e308`) as `null`.
    fn within(&mut self, field: &'static str, value: Option<f64>) -> Option<f32> {
        let value = value?;
        let (low, high) = match field {
            "temperature" => (0.0, 2.0),
            "top_p" => (0.0, 1.0),
            _ => (-2.0, 2.0),
        };
        match in_range(field, value, low, high) {
            Ok(value) => Some(value),
            Err(why) => {
                self.refuse(field, why);
                None
            }
        }
    }

    /// What is left to check once every field is read: combinations the gateway refuses.
    fn finish(mut self) -> ChatBody {
        let (logprobs, top_logprobs, stops) = match self.extras.as_deref() {
            Some(e) => (
                e.logprobs == Some(true),
                e.top_logprobs.is_some(),
                e.stop.len(),
            ),
            None => return self,
        };
        if logprobs && self.stream {
            self.refuse(
                "logprobs",
                "log probabilities are not passed through streamed answers; ask without stream",
            );
        }
        if top_logprobs && !logprobs {
            self.refuse("top_logprobs", "top_logprobs needs logprobs = true");
        }
        if stops > 4 {
            self.refuse("stop", "at most 4 stop sequences");
        }
        self
    }
}

/// A sampling number of an API's request within `low..=high`, as the `f32` models take, or
/// why not (a value past `f32`, `1e308`, would otherwise reach the model as `null`).
pub(crate) fn in_range(field: &str, value: f64, low: f64, high: f64) -> Result<f32, String> {
    if (low..=high).contains(&value) {
        return Ok(value as f32);
    }
    let shown = if value.abs() < 1e6 {
        value.to_string()
    } else {
        format!("{value:e}")
    };
    Err(format!("{field} = {shown} is not between {low} and {high}"))
}

/// A field name, borrowed from the body where it can be.
struct Key<'de>(Cow<'de, str>);

impl<'de> Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl<'de> Visitor<'de> for KeyVisitor {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a field name")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Owned(v.to_string())))
            }
        }
        deserializer.deserialize_str(KeyVisitor)
    }
}

impl<'de> Deserialize<'de> for ChatBody {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_map(BodyVisitor)
    }
}

struct BodyVisitor;

impl<'de> Visitor<'de> for BodyVisitor {
    type Value = ChatBody;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a Chat Completions request object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<ChatBody, A::Error> {
        let mut body = ChatBody::default();
        let (mut model, mut messages) = (None, None);
        let mut functions: Option<Vec<WireFunctionDef>> = None;
        let mut function_call: Option<Value> = None;
        while let Some(Key(key)) = map.next_key::<Key<'de>>()? {
            match key.as_ref() {
                "model" => model = Some(map.next_value::<String>()?),
                "messages" => messages = Some(map.next_value::<Vec<WireMessage>>()?),
                "stream" => body.stream = map.next_value::<Option<bool>>()?.unwrap_or(false),
                "stream_options" => {
                    if let Some(options) = map.next_value::<Option<StreamOptions>>()? {
                        body.include_usage = options.include_usage.unwrap_or(false);
                    }
                }
                "max_tokens" => body.max_tokens = map.next_value()?,
                "max_completion_tokens" => {
                    body.max_completion_tokens = map.next_value()?;
                    if body.max_completion_tokens.is_some() {
                        body.extras().max_completion_tokens = true;
                    }
                }
                "temperature" => body.temperature = body.within("temperature", map.next_value()?),
                "top_p" => body.top_p = body.within("top_p", map.next_value()?),
                "seed" => body.seed = map.next_value()?,
                "n" => body.n = map.next_value()?,
                "user" => {
                    if let Some(user) = map.next_value::<Option<String>>()? {
                        body.extras().user = Some(user);
                    }
                }
                "stop" => match map.next_value::<Option<Stop>>()? {
                    Some(Stop::One(one)) => body.extras().stop = vec![one],
                    Some(Stop::Many(many)) if !many.is_empty() => body.extras().stop = many,
                    _ => {}
                },
                "presence_penalty" => {
                    if let Some(v) = body.within("presence_penalty", map.next_value()?) {
                        body.extras().presence_penalty = Some(v);
                    }
                }
                "frequency_penalty" => {
                    if let Some(v) = body.within("frequency_penalty", map.next_value()?) {
                        body.extras().frequency_penalty = Some(v);
                    }
                }
                "logit_bias" => {
                    if let Some(v) = map.next_value::<Option<Map<String, Value>>>()? {
                        body.extras().logit_bias = Some(v);
                    }
                }
                "logprobs" => {
                    if let Some(v) = map.next_value::<Option<bool>>()? {
                        body.extras().logprobs = Some(v);
                    }
                }
                "top_logprobs" => {
                    if let Some(v) = map.next_value::<Option<u32>>()? {
                        if v > 20 {
                            body.refuse(
                                "top_logprobs",
                                format!("top_logprobs = {v} is not between 0 and 20"),
                            );
                        }
                        body.extras().top_logprobs = Some(v);
                    }
                }
                "response_format" => {
                    if let Some(format) = map.next_value::<Option<WireResponseFormat>>()? {
                        body.extras().response_format = Some(format.into_format());
                    }
                }
                "tools" => {
                    if let Some(tools) = map.next_value::<Option<Vec<WireTool>>>()? {
                        body.tools_given = true;
                        match tools.into_iter().map(WireTool::into_tool).collect() {
                            Ok(tools) => body.extras().tools = tools,
                            Err(why) => body.refuse("tools", why),
                        }
                    }
                }
                "tool_choice" => {
                    if let Some(choice) = map.next_value::<Option<Value>>()? {
                        match tool_choice(&choice, "function") {
                            Ok(choice) => body.extras().tool_choice = Some(choice),
                            Err(why) => body.refuse("tool_choice", why),
                        }
                    }
                }
                "parallel_tool_calls" => {
                    if let Some(v) = map.next_value::<Option<bool>>()? {
                        body.extras().parallel_tool_calls = Some(v);
                    }
                }
                "functions" => functions = map.next_value()?,
                "function_call" => function_call = map.next_value()?,
                "metadata" => {
                    if let Some(metadata) = map.next_value::<Option<Map<String, Value>>>()? {
                        match metadata.iter().find(|(_, v)| !v.is_string()) {
                            Some((k, _)) => {
                                let why = format!("the value of \"{k}\" is not a string");
                                body.refuse("metadata", why);
                            }
                            None => body.record("metadata", Value::Object(metadata)),
                        }
                    }
                }
                "store" => {
                    if let Some(store) = map.next_value::<Option<bool>>()? {
                        body.record("store", Value::Bool(store));
                    }
                }
                other => {
                    let value: Value = map.next_value()?;
                    // `null` is what SDKs send for "not given".
                    if !value.is_null() {
                        body.extras().passthrough.insert(other.to_string(), value);
                    }
                }
            }
        }
        body.model = model.ok_or_else(|| de::Error::missing_field("model"))?;
        body.messages = messages.ok_or_else(|| de::Error::missing_field("messages"))?;
        if let Some(functions) = functions.filter(|f| !f.is_empty()) {
            if body.tools_given {
                body.refuse("functions", "give tools or the legacy functions, not both");
            }
            body.legacy_functions = true;
            body.extras().tools = functions
                .into_iter()
                .map(WireFunctionDef::into_tool)
                .collect();
        }
        if let Some(call) = function_call.filter(|c| !c.is_null()) {
            if body.tools_given {
                body.refuse(
                    "function_call",
                    "give tool_choice with tools, not the legacy function_call",
                );
            }
            body.legacy_functions = true;
            match tool_choice(&call, "legacy") {
                Ok(choice) => body.extras().tool_choice = Some(choice),
                Err(why) => body.refuse("function_call", why),
            }
        }
        Ok(body.finish())
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct StreamOptions {
    #[serde(default)]
    include_usage: Option<bool>,
    /// Padding against length side channels; this gateway adds none, so either way is kept.
    #[serde(default)]
    #[allow(dead_code)]
    include_obfuscation: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Stop {
    One(String),
    Many(Vec<String>),
}

#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum WireResponseFormat {
    Text,
    JsonObject,
    JsonSchema { json_schema: WireJsonSchema },
}

#[derive(Debug, Deserialize)]
struct WireJsonSchema {
    name: String,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    schema: Option<Value>,
    #[serde(default)]
    strict: Option<bool>,
}

impl WireResponseFormat {
    fn into_format(self) -> ResponseFormat {
        match self {
            WireResponseFormat::Text => ResponseFormat::Text,
            WireResponseFormat::JsonObject => ResponseFormat::JsonObject,
            WireResponseFormat::JsonSchema { json_schema } => ResponseFormat::JsonSchema {
                name: json_schema.name,
                description: json_schema.description,
                schema: json_schema.schema,
                strict: json_schema.strict,
            },
        }
    }
}

#[derive(Debug, Deserialize)]
struct WireTool {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    function: Option<WireFunctionDef>,
}

#[derive(Debug, Deserialize)]
struct WireFunctionDef {
    name: String,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    parameters: Option<Value>,
    #[serde(default)]
    strict: Option<bool>,
}

impl WireTool {
    fn into_tool(self) -> Result<Tool, String> {
        match (self.kind.as_str(), self.function) {
            ("function", Some(function)) => Ok(function.into_tool()),
            ("function", None) => Err("a tool of type function needs its function".into()),
            (kind, _) => Err(format!(
                "tools of type \"{kind}\" are not supported; only function tools are"
            )),
        }
    }
}

impl WireFunctionDef {
    fn into_tool(self) -> Tool {
        Tool {
            name: self.name,
            description: self.description,
            parameters: self.parameters,
            strict: self.strict,
        }
    }
}

/// `tool_choice` (`"auto"`, `"none"`, `"required"`, `{"type":"function","function":{"name"}}`)
/// or the legacy `function_call` (`"auto"`, `"none"`, `{"name"}`).
fn tool_choice(value: &Value, form: &str) -> Result<ToolChoice, String> {
    match value {
        Value::String(s) => match s.as_str() {
            "auto" => Ok(ToolChoice::Auto),
            "none" => Ok(ToolChoice::None),
            "required" if form == "function" => Ok(ToolChoice::Required),
            other => Err(format!("\"{other}\" is not one of auto, none, required")),
        },
        Value::Object(object) => {
            let name = if form == "legacy" {
                object.get("name")
            } else {
                object.get("function").and_then(|f| f.get("name"))
            };
            match (object.get("type").and_then(Value::as_str), name) {
                (Some("function") | None, Some(Value::String(name))) => {
                    Ok(ToolChoice::Named(name.clone()))
                }
                (Some(kind), _) if kind != "function" => Err(format!(
                    "a tool choice of type \"{kind}\" is not supported; only function"
                )),
                _ => Err("a named tool choice needs the function's name".into()),
            }
        }
        _ => Err("expected a string or an object".into()),
    }
}

/// A message as OpenAI's SDKs send it (an assistant message echoed back from an answer
/// included: `refusal`, `audio`, `annotations` as `null` or empty).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct WireMessage {
    role: String,
    #[serde(default)]
    content: Option<Content>,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    tool_calls: Option<Vec<WireToolCall>>,
    #[serde(default)]
    tool_call_id: Option<String>,
    #[serde(default)]
    function_call: Option<WireFunctionCall>,
    #[serde(default)]
    refusal: Option<String>,
    #[serde(default)]
    audio: Option<Value>,
    /// Citations of an earlier answer: what the model was told, not what it is told now.
    #[serde(default)]
    #[allow(dead_code)]
    annotations: Option<Value>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Content {
    Text(String),
    Parts(Vec<Part>),
}

#[derive(Debug, Deserialize)]
struct Part {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    text: Option<String>,
    #[serde(default)]
    image_url: Option<ImageUrl>,
}

/// `image_url`: the URL, or an object with it and a `detail`.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum ImageUrl {
    Url(String),
    Object {
        url: String,
        #[serde(default)]
        detail: Option<String>,
    },
}

/// The largest image a request may carry inline, in bytes of its data URL.
const MAX_DATA_URL: usize = 20 << 20;

/// An image part's URL and detail, checked: an `https://` URL or a base64 `data:image/…` URL.
/// The error says what is wrong, to follow the part's place in the message.
pub(crate) fn image(url: String, detail: Option<String>) -> Result<Image, String> {
    if let Some(detail) = detail.as_deref() {
        if !matches!(detail, "auto" | "low" | "high") {
            return Err(format!(
                ".detail \"{detail}\" is not one of auto, low, high"
            ));
        }
    }
    let image = Image { url, detail };
    if let Some(rest) = image.url.strip_prefix("data:") {
        let Some((media_type, data)) = image.data() else {
            return Err(
                ".url is a data URL without \";base64,\": only base64 data URLs are taken".into(),
            );
        };
        if !media_type.starts_with("image/") || media_type.len() <= "image/".len() {
            let media_type = rest.split([';', ',']).next().unwrap_or_default();
            return Err(format!(
                ".url is a data URL of type \"{media_type}\", not an image"
            ));
        }
        if data.is_empty()
            || !data
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'='))
        {
            return Err(".url is a data URL whose data is not base64".into());
        }
        if image.url.len() > MAX_DATA_URL {
            return Err(format!(
                ".url is a data URL of {} bytes; the most an image may take is {} MiB",
                image.url.len(),
                MAX_DATA_URL >> 20
            ));
        }
        return Ok(image);
    }
    if !image.url.starts_with("https://") || image.url.len() <= "https://".len() {
        let shown: String = image.url.chars().take(40).collect();
        return Err(format!(
            ".url \"{shown}\" is neither an https:// URL nor a data:image/…;base64 URL"
        ));
    }
    Ok(image)
}

#[derive(Debug, Deserialize)]
struct WireToolCall {
    id: String,
    #[serde(rename = "type", default)]
    kind: Option<String>,
    function: WireFunctionCall,
}

#[derive(Debug, Deserialize)]
struct WireFunctionCall {
    name: String,
    #[serde(default)]
    arguments: String,
}

/// The id given to a legacy `function_call`, which has none; the `function` message that
/// answers it refers to it by name.
fn legacy_call_id(name: &str) -> String {
    format!("call_legacy_{name}")
}

/// The messages as the engine takes them; 400 for what this gateway cannot pass on.
pub(crate) fn messages(wire: Vec<WireMessage>) -> Result<Vec<Message>, ApiError> {
    if wire.is_empty() {
        return Err(ApiError::bad_request("messages is empty").param("messages"));
    }
    wire.into_iter()
        .enumerate()
        .map(|(i, m)| {
            message(m).map_err(|why| {
                ApiError::bad_request(format!("messages[{i}]{why}")).param("messages")
            })
        })
        .collect()
}

fn message(m: WireMessage) -> Result<Message, String> {
    let role = match m.role.as_str() {
        "system" | "developer" => Role::System,
        "user" => Role::User,
        "assistant" => Role::Assistant,
        "tool" | "function" => Role::Tool,
        other => {
            return Err(format!(
                ".role \"{other}\" is not supported; use system, developer, user, assistant or tool"
            ))
        }
    };
    if m.audio.as_ref().is_some_and(|a| !a.is_null()) {
        return Err(".audio: audio is not supported by this gateway".into());
    }
    let mut parts = Vec::new();
    let mut content = match m.content {
        Some(Content::Text(text)) => Some(text),
        Some(Content::Parts(wire)) => {
            for (j, part) in wire.into_iter().enumerate() {
                match (part.kind.as_str(), part.text, part.image_url) {
                    ("text", Some(t), _) => parts.push(MessagePart::Text(t)),
                    ("image_url", _, Some(url)) if role == Role::User => {
                        let (url, detail) = match url {
                            ImageUrl::Url(url) => (url, None),
                            ImageUrl::Object { url, detail } => (url, detail),
                        };
                        let image = image(url, detail)
                            .map_err(|why| format!(".content[{j}].image_url{why}"))?;
                        parts.push(MessagePart::Image(image));
                    }
                    ("image_url", _, Some(_)) => {
                        return Err(format!(
                            ".content[{j}] is an image in a {} message; images go in user messages",
                            m.role
                        ))
                    }
                    (kind @ ("text" | "image_url"), _, _) => {
                        return Err(format!(
                            ".content[{j}] is a \"{kind}\" part without its {kind} field"
                        ))
                    }
                    (kind, _, _) => {
                        return Err(format!(
                            ".content[{j}] is a part of type \"{kind}\"; text and image_url parts are supported"
                        ))
                    }
                }
            }
            let joined = Message::with_parts(role, std::mem::take(&mut parts));
            parts = joined.parts;
            Some(joined.content)
        }
        None => None,
    };
    if content.is_none() && role == Role::Assistant {
        content = m.refusal;
    }
    let mut message = Message::new(role, String::new());
    match role {
        Role::Assistant => {
            for call in m.tool_calls.unwrap_or_default() {
                if call.kind.as_deref().is_some_and(|k| k != "function") {
                    return Err(".tool_calls: only function calls are supported".into());
                }
                message.tool_calls.push(ToolCall {
                    id: call.id,
                    name: call.function.name,
                    arguments: call.function.arguments,
                });
            }
            if let Some(call) = m.function_call {
                message.tool_calls.push(ToolCall {
                    id: legacy_call_id(&call.name),
                    name: call.name,
                    arguments: call.arguments,
                });
            }
            if content.is_none() && message.tool_calls.is_empty() {
                return Err(" has no content and no tool_calls".into());
            }
        }
        Role::Tool => {
            message.tool_call_id = match (m.role.as_str(), m.tool_call_id, m.name.as_deref()) {
                ("tool", Some(id), _) => Some(id),
                ("function", _, Some(name)) => Some(legacy_call_id(name)),
                ("tool", None, _) => return Err(" is a tool result without tool_call_id".into()),
                _ => return Err(" is a function result without the function's name".into()),
            };
        }
        Role::System | Role::User => {
            if m.tool_calls.is_some_and(|c| !c.is_empty()) || m.function_call.is_some() {
                return Err(": only assistant messages call tools".into());
            }
        }
    }
    if m.name.is_some() && m.role != "function" {
        return Err(".name: participant names are not supported by this gateway".into());
    }
    message.content = match content {
        Some(text) => text,
        None if role == Role::Assistant => String::new(),
        None => return Err(" has no content".into()),
    };
    message.parts = parts;
    Ok(message)
}
