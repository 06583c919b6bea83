//! Project folders for tests and benchmarks: `shopfloor.toml` with models served by a
//! [`FakeServer`](crate::FakeServer), and workflow files, written the way a user writes them.
//!
//! ```no_run
//! use shopfloor_testkit::{write_project, OpenAiModel, WorkflowToml};
//! # fn demo(dir: &std::path::Path, base_url: &str) {
//! let config = OpenAiModel::new("fake", base_url).classes(&["internal"]).to_string();
//! let triage = WorkflowToml::new(&["subject"], "Subject: {{ subject }}")
//!     .then("[output]\nlabels = [\"billing\", \"bug\"]\n[route]\nmodels = [\"fake\"]\n");
//! write_project(dir, &config, &[("triage", &triage)]);
//! # }
//! ```

use std::fmt;
use std::path::Path;

/// Write `shopfloor.toml` (`config`) and `workflows/NAME.toml` for each `(NAME, text)` into
/// `dir`, creating the folders.
pub fn write_project(dir: &Path, config: &str, workflows: &[(&str, &str)]) {
    std::fs::create_dir_all(dir.join("workflows")).expect("create the workflows folder");
    std::fs::write(dir.join("shopfloor.toml"), config).expect("write shopfloor.toml");
    for (name, text) in workflows {
        std::fs::write(dir.join(format!("workflows/{name}.toml")), text)
            .expect("write a workflow file");
    }
}

/// Append `text` to the file at `path` (a model table added to a written config, say).
pub fn append(path: &Path, text: &str) {
    let before = std::fs::read_to_string(path).expect("read the file to append to");
    std::fs::write(path, format!("{before}\n{text}")).expect("write the appended file");
}

/// A `[models.NAME]` table of kind `openai-compatible`; `Display` writes it as TOML.
#[derive(Debug, Clone)]
pub struct OpenAiModel {
    name: String,
    model: String,
    base_url: String,
    classes: Vec<String>,
    lines: Vec<String>,
}

impl OpenAiModel {
    /// Model `name` at `base_url`, vendor model id `m`, allowed `public` and `internal` data.
    pub fn new(name: &str, base_url: &str) -> Self {
        Self {
            name: name.into(),
            model: "m".into(),
            base_url: base_url.into(),
            classes: vec!["public".into(), "internal".into()],
            lines: Vec::new(),
        }
    }

    /// The vendor's model id sent on the wire.
    pub fn id(mut self, model: &str) -> Self {
        self.model = model.into();
        self
    }

    /// The data classes the model may see.
    pub fn classes(mut self, classes: &[&str]) -> Self {
        self.classes = classes.iter().map(|c| c.to_string()).collect();
        self
    }

    /// Dollars per million input and output tokens.
    pub fn price(self, input_per_mtok: f64, output_per_mtok: f64) -> Self {
        self.line(&format!(
            "price = {{ input_per_mtok = {input_per_mtok:?}, output_per_mtok = {output_per_mtok:?} }}"
        ))
    }

    /// Any other `key = value` line of the table, e.g. `on_premises = true`.
    pub fn line(mut self, line: &str) -> Self {
        self.lines.push(line.into());
        self
    }
}

impl fmt::Display for OpenAiModel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let classes: Vec<String> = self.classes.iter().map(|c| format!("{c:?}")).collect();
        writeln!(f, "[models.{}]", self.name)?;
        writeln!(f, "provider = \"openai-compatible\"")?;
        writeln!(f, "model = {:?}", self.model)?;
        writeln!(f, "base_url = {:?}", self.base_url)?;
        writeln!(f, "data_classes = [{}]", classes.join(", "))?;
        for line in &self.lines {
            writeln!(f, "{line}")?;
        }
        Ok(())
    }
}

/// The head of a draft workflow file over `internal` data: its input schema (required string
/// fields) and prompt; [`then`](Self::then) adds the rest (`[output]`, `[route]`, `[eval]`).
#[derive(Debug, Clone)]
pub struct WorkflowToml {
    head: Vec<String>,
    fields: Vec<String>,
    system: Option<String>,
    user: String,
}

impl WorkflowToml {
    /// A workflow whose input has the required string `fields` and whose user prompt is `user`.
    pub fn new(fields: &[&str], user: &str) -> Self {
        Self {
            head: Vec::new(),
            fields: fields.iter().map(|f| f.to_string()).collect(),
            system: None,
            user: user.into(),
        }
    }

    /// A top-level `key = value` line (`description = "…"`, `risk = "high"`).
    pub fn line(mut self, line: &str) -> Self {
        self.head.push(line.into());
        self
    }

    /// The system prompt.
    pub fn system(mut self, system: &str) -> Self {
        self.system = Some(system.into());
        self
    }

    /// The whole file: this head, then `rest`.
    pub fn then(&self, rest: &str) -> String {
        let required: Vec<String> = self.fields.iter().map(|f| format!("{f:?}")).collect();
        let properties: Vec<String> = self
            .fields
            .iter()
            .map(|f| format!("{f} = {{ type = \"string\" }}"))
            .collect();
        let mut text = String::new();
        for line in &self.head {
            text.push_str(line);
            text.push('\n');
        }
        text.push_str("stage = \"draft\"\ndata_class = \"internal\"\n[input]\n");
        text.push_str(&format!(
            "schema = {{ type = \"object\", required = [{}], properties = {{ {} }} }}\n[prompt]\n",
            required.join(", "),
            properties.join(", ")
        ));
        if let Some(system) = &self.system {
            text.push_str(&format!("system = {system:?}\n"));
        }
        text.push_str(&format!("user = {:?}\n", self.user));
        text.push_str(rest);
        text
    }
}

/// Assert that every one of `expected` is in `text`, naming the first one missing.
#[track_caller]
pub fn assert_contains(text: &str, expected: &[&str]) {
    for expected in expected {
        assert!(text.contains(expected), "missing {expected:?} in:\n{text}");
    }
}
