//! The policy as a document: sections of paragraphs, lists and tables of plain text and code,
//! independent of the format it is rendered to.

/// One piece of inline text. Config-derived strings go in as they are; renderers escape them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Span {
    /// Running text.
    Plain(String),
    /// A name or value from the configuration, shown as code.
    Code(String),
    /// Emphasised text.
    Strong(String),
}

/// A run of spans: a paragraph, a list item or a table cell.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Text(pub Vec<Span>);

impl Text {
    /// Empty text, to build on with [`Text::plain`], [`Text::code`] and [`Text::strong`].
    pub fn new() -> Self {
        Self::default()
    }

    /// Append running text.
    pub fn plain(mut self, text: impl Into<String>) -> Self {
        self.0.push(Span::Plain(text.into()));
        self
    }

    /// Append a config name or value, shown as code.
    pub fn code(mut self, text: impl Into<String>) -> Self {
        self.0.push(Span::Code(text.into()));
        self
    }

    /// Append emphasised text.
    pub fn strong(mut self, text: impl Into<String>) -> Self {
        self.0.push(Span::Strong(text.into()));
        self
    }

    /// The words without markup, e.g. for a terminal summary.
    pub fn to_plain(&self) -> String {
        self.0
            .iter()
            .map(|s| match s {
                Span::Plain(t) | Span::Code(t) | Span::Strong(t) => t.as_str(),
            })
            .collect()
    }
}

impl From<&str> for Text {
    fn from(text: &str) -> Self {
        Text::new().plain(text)
    }
}

impl From<String> for Text {
    fn from(text: String) -> Self {
        Text::new().plain(text)
    }
}

/// A table: header labels (the document's own words) and rows of cells.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Table {
    pub header: Vec<String>,
    pub rows: Vec<Vec<Text>>,
}

/// A bar chart: one bar per label, drawn as inline SVG in HTML and listed in Markdown.
#[derive(Debug, Clone, PartialEq)]
pub struct Bars {
    /// What the bars measure, e.g. "Minutes saved this week".
    pub caption: String,
    /// Label, value (non-negative; negative values draw as an empty bar) and the value as
    /// shown.
    pub bars: Vec<(String, f64, String)>,
}

/// A block of a section.
#[derive(Debug, Clone, PartialEq)]
pub enum Block {
    Paragraph(Text),
    List(Vec<Text>),
    Table(Table),
    Bars(Bars),
}

/// A titled part of the policy.
#[derive(Debug, Clone, PartialEq)]
pub struct Section {
    /// A stable anchor, e.g. `models`.
    pub id: &'static str,
    pub heading: String,
    pub blocks: Vec<Block>,
}

/// The whole policy, ready to render.
#[derive(Debug, Clone, PartialEq)]
pub struct PolicyDocument {
    pub title: String,
    /// What it was generated from, and when.
    pub generated: Text,
    pub sections: Vec<Section>,
    /// The points a reader should know about (also the last section of the document).
    pub gaps: Vec<Text>,
}
