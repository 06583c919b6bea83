//! Provider kinds: the wire protocol (or in-process engine) a model speaks, with one text form
//! and everything config knows of each kind.

crate::text_enum! {
    /// Which wire protocol (or in-process engine) a model speaks.
    pub enum ProviderKind {
        OpenAi => "openai",
        OpenAiCompatible => "openai-compatible",
        Anthropic => "anthropic",
        Local => "local",
        Replay => "replay",
    }
}

/// What the config check and the policy document know of a provider kind.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ProviderFacts {
    /// The environment variable a key is read from when the config names none.
    pub default_api_key_env: Option<&'static str>,
    /// The field a model of this kind cannot work without.
    pub requires: Option<RequiredField>,
    /// Whether its models run inside the organisation unless the config says otherwise.
    pub on_premises: bool,
    /// Where its models run when no `base_url` says, in the policy document's words.
    pub runs_on: &'static str,
}

/// A model field some provider kinds require, with an example for the message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequiredField {
    BaseUrl(&'static str),
    File(&'static str),
}

impl ProviderKind {
    /// Everything config knows of a kind, in one place: a new kind is a variant above, its arm
    /// here, and its module with one line in the providers' registry (`local` is the engine's).
    pub const fn facts(self) -> ProviderFacts {
        const REMOTE: ProviderFacts = ProviderFacts {
            default_api_key_env: None,
            requires: None,
            on_premises: false,
            runs_on: "",
        };
        match self {
            ProviderKind::OpenAi => ProviderFacts {
                default_api_key_env: Some("OPENAI_API_KEY"),
                runs_on: "OpenAI's API",
                ..REMOTE
            },
            ProviderKind::OpenAiCompatible => ProviderFacts {
                requires: Some(RequiredField::BaseUrl("http://127.0.0.1:8000/v1")),
                runs_on: "an OpenAI-compatible server",
                ..REMOTE
            },
            ProviderKind::Anthropic => ProviderFacts {
                default_api_key_env: Some("ANTHROPIC_API_KEY"),
                runs_on: "Anthropic's API",
                ..REMOTE
            },
            ProviderKind::Local => ProviderFacts {
                on_premises: true,
                runs_on: "embedded in shopfloor, on its own CPU",
                ..REMOTE
            },
            ProviderKind::Replay => ProviderFacts {
                requires: Some(RequiredField::File("recordings/ticket-triage.jsonl")),
                runs_on: "recorded answers",
                ..REMOTE
            },
        }
    }

    /// The environment variable a key is read from when the config names none.
    pub fn default_api_key_env(self) -> Option<&'static str> {
        self.facts().default_api_key_env
    }
}
