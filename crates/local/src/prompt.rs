//! The ChatML chat template SmolLM2 was tuned on.

use shopfloor_providers::{Message, Role};

use crate::tokenizer::Tokenizer;
use crate::LocalError;

/// The system prompt SmolLM2's own chat template adds when a conversation has none; the model
/// was tuned with it.
pub const DEFAULT_SYSTEM_PROMPT: &str =
    "You are a helpful AI assistant named SmolLM, trained by Hugging Face";

/// The end-of-turn token.
pub const IM_END: &str = "<|im_end|>";
/// The end-of-text token, also a stop.
pub const END_OF_TEXT: &str = "<|endoftext|>";

/// A piece of the prompt: template markup, or text that came from a message.
enum Piece<'a> {
    Markup(&'a str),
    Text(&'a str),
}

fn pieces<'a>(messages: &'a [Message], assistant_prefix: Option<&'a str>) -> Vec<Piece<'a>> {
    let mut out = Vec::with_capacity(messages.len() * 3 + 3);
    if messages.first().is_none_or(|m| m.role != Role::System) {
        out.push(Piece::Markup("<|im_start|>system\n"));
        out.push(Piece::Text(DEFAULT_SYSTEM_PROMPT));
        out.push(Piece::Markup("<|im_end|>\n"));
    }
    for message in messages {
        out.push(Piece::Markup(match message.role {
            Role::System => "<|im_start|>system\n",
            Role::User => "<|im_start|>user\n",
            Role::Assistant => "<|im_start|>assistant\n",
            // Refused before a call (`Provider::unsupported`); the template's tool turn if
            // one arrives anyway.
            Role::Tool => "<|im_start|>tool\n",
        }));
        out.push(Piece::Text(&message.content));
        out.push(Piece::Markup("<|im_end|>\n"));
    }
    out.push(Piece::Markup("<|im_start|>assistant\n"));
    if let Some(prefix) = assistant_prefix {
        out.push(Piece::Text(prefix));
    }
    out
}

/// The prompt as text: each message in ChatML, then an open assistant turn and the prefix.
pub fn render_chatml(messages: &[Message], assistant_prefix: Option<&str>) -> String {
    pieces(messages, assistant_prefix)
        .into_iter()
        .map(|p| match p {
            Piece::Markup(s) | Piece::Text(s) => s,
        })
        .collect()
}

/// The prompt's token ids. Markup is matched for special tokens and message text is read
/// literally, so a message cannot forge template turns. Each piece boundary is a pre-tokenizer
/// split anyway (a special token, or a newline before letters), so the ids equal those of
/// [`render_chatml`]'s text tokenized whole, except when a message starts with whitespace (the
/// newline before it would then merge with one space).
pub(crate) fn encode_chatml(
    tokenizer: &Tokenizer,
    messages: &[Message],
    assistant_prefix: Option<&str>,
) -> Result<Vec<u32>, LocalError> {
    let mut ids = Vec::new();
    for piece in pieces(messages, assistant_prefix) {
        match piece {
            Piece::Markup(s) => ids.extend(tokenizer.encode(s)?),
            Piece::Text(s) => ids.extend(tokenizer.encode_literal(s)?),
        }
    }
    Ok(ids)
}

/// The tokens of `choice` as it would continue `assistant_prefix`. Where the two would merge
/// into one token across the boundary, the choice is tokenized on its own instead, so that the
/// prompt stays the same for every choice.
pub(crate) fn encode_choice(
    tokenizer: &Tokenizer,
    assistant_prefix: &str,
    choice: &str,
) -> Result<Vec<u32>, LocalError> {
    if assistant_prefix.is_empty() {
        return tokenizer.encode_literal(choice);
    }
    let prefix = tokenizer.encode_literal(assistant_prefix)?;
    let joined = tokenizer.encode_literal(&format!("{assistant_prefix}{choice}"))?;
    match joined.strip_prefix(prefix.as_slice()) {
        Some(rest) => Ok(rest.to_vec()),
        None => tokenizer.encode_literal(choice),
    }
}
