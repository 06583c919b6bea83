//! The policy document as Markdown (CommonMark with GitHub tables) and as one self-contained HTML
//! page. Every string from the configuration is escaped here, so a model name, owner or
//! description can never add markup, break a table row or inject a script.

use super::{Bars, Block, PolicyDocument, Span, Table, Text};

impl PolicyDocument {
    /// The policy as Markdown, ready to commit or publish.
    pub fn to_markdown(&self) -> String {
        let mut out = format!("# {}\n\n", md_plain(&self.title));
        out.push_str(&md_block_text(&self.generated));
        out.push_str("\n\n");
        for section in &self.sections {
            out.push_str(&format!("## {}\n\n", md_plain(&section.heading)));
            for block in &section.blocks {
                match block {
                    Block::Paragraph(text) => out.push_str(&md_block_text(text)),
                    Block::List(items) => {
                        let lines: Vec<String> = items
                            .iter()
                            .map(|item| format!("- {}", md_block_text(item)))
                            .collect();
                        out.push_str(&lines.join("\n"));
                    }
                    Block::Table(table) => out.push_str(&md_table(table)),
                    Block::Bars(bars) => out.push_str(&md_bars(bars)),
                }
                out.push_str("\n\n");
            }
        }
        let trimmed = out.trim_end().len();
        out.truncate(trimmed);
        out.push('\n');
        out
    }

    /// The policy as one HTML page: inline CSS, no scripts, no external assets.
    pub fn to_html(&self) -> String {
        let mut out = String::from(
            "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
             <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n",
        );
        out.push_str(&format!("<title>{}</title>\n", html_escape(&self.title)));
        out.push_str(&format!("<style>{CSS}</style>\n</head>\n<body>\n<main>\n"));
        out.push_str(&self.to_html_body());
        out.push_str("</main>\n</body>\n</html>\n");
        out
    }

    /// The document's content as HTML, without the page around it (for the dashboard, which
    /// has its own): the title, the contents and every section, escaped as in
    /// [`PolicyDocument::to_html`].
    pub fn to_html_body(&self) -> String {
        let mut out = String::new();
        out.push_str(&format!("<h1>{}</h1>\n", html_escape(&self.title)));
        out.push_str(&format!(
            "<p class=\"generated\">{}</p>\n",
            html_text(&self.generated)
        ));
        out.push_str("<nav>\n<ol>\n");
        for section in &self.sections {
            out.push_str(&format!(
                "<li><a href=\"#{}\">{}</a></li>\n",
                section.id,
                html_escape(&section.heading)
            ));
        }
        out.push_str("</ol>\n</nav>\n");
        for section in &self.sections {
            out.push_str(&format!(
                "<section id=\"{}\">\n<h2>{}</h2>\n",
                section.id,
                html_escape(&section.heading)
            ));
            for block in &section.blocks {
                match block {
                    Block::Paragraph(text) => {
                        out.push_str(&format!("<p>{}</p>\n", html_text(text)));
                    }
                    Block::List(items) => {
                        out.push_str("<ul>\n");
                        for item in items {
                            out.push_str(&format!("<li>{}</li>\n", html_text(item)));
                        }
                        out.push_str("</ul>\n");
                    }
                    Block::Table(table) => out.push_str(&html_table(table)),
                    Block::Bars(bars) => out.push_str(&svg_bars(bars)),
                }
            }
            out.push_str("</section>\n");
        }
        out
    }
}

const CSS: &str = "\
body{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;line-height:1.5;color:#1f2328;\
margin:0;background:#fff}\
main{max-width:64rem;margin:0 auto;padding:2rem 1.5rem 4rem}\
h1{font-size:1.9rem;margin:0 0 .25rem}\
h2{font-size:1.3rem;margin-top:2.25rem;padding-bottom:.25rem;border-bottom:1px solid #d0d7de}\
.generated{color:#59636e;margin-top:0}\
nav ol{columns:2;padding-left:1.25rem}\
table{border-collapse:collapse;width:100%;margin:1rem 0;font-size:.92rem}\
th,td{border:1px solid #d0d7de;padding:.35rem .6rem;text-align:left;vertical-align:top}\
th{background:#f6f8fa}\
code{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;font-size:.88em;\
background:#f6f8fa;padding:.05em .3em;border-radius:4px}\
#open-points li{color:#9a3412}\
@media print{nav{display:none}main{padding:0}}";

/// Text that starts a Markdown block (paragraph or list item): escaped, and kept from being read
/// as a heading, list item or setext underline.
fn md_block_text(text: &Text) -> String {
    let rendered = md_text(text, false).trim_start().to_string();
    let starts_block = rendered.starts_with(['#', '-', '+', '=']);
    if starts_block {
        return format!("\\{rendered}");
    }
    // `1. ` or `1) ` would start an ordered list.
    let digits = rendered.chars().take_while(char::is_ascii_digit).count();
    if digits > 0 && rendered[digits..].starts_with(['.', ')']) {
        return format!("{}\\{}", &rendered[..digits], &rendered[digits..]);
    }
    rendered
}

pub(super) fn md_text(text: &Text, in_table: bool) -> String {
    text.0
        .iter()
        .map(|span| match span {
            Span::Plain(t) => md_plain(t),
            // A pipe inside a code span in a table cell needs `\|`, which breaks again after
            // a backslash in the name; such rare names are shown as escaped plain text.
            Span::Code(t) if in_table && t.contains('|') => md_plain(t),
            Span::Code(t) => md_code(t),
            Span::Strong(t) => {
                let t = one_line(t);
                let t = t.trim();
                if t.is_empty() {
                    String::new()
                } else {
                    format!("**{}**", md_plain(t))
                }
            }
        })
        .collect()
}

/// Whitespace runs (newlines included) become one space: no config string can end a table row
/// or start a block of its own.
fn one_line(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut space = false;
    for c in text.chars() {
        if c.is_whitespace() || c.is_control() {
            if !space {
                out.push(' ');
            }
            space = true;
        } else {
            space = false;
            out.push(c);
        }
    }
    out
}

/// Running text with every character that could become Markdown (or raw HTML) escaped.
pub(super) fn md_plain(text: &str) -> String {
    let text = one_line(text);
    let mut out = String::with_capacity(text.len() + 8);
    for (i, c) in text.char_indices() {
        match c {
            '\\' | '`' | '*' | '_' | '[' | ']' | '<' | '>' | '|' | '~' => {
                out.push('\\');
                out.push(c);
            }
            // Only `&name;` and `&#…;` are entities; a lone `&` (R&D) stays readable.
            '&' if starts_entity(&text[i + 1..]) => out.push_str("\\&"),
            _ => out.push(c),
        }
    }
    out
}

fn starts_entity(rest: &str) -> bool {
    let name = rest
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '#')
        .count();
    name > 0 && rest[name..].starts_with(';')
}

/// A code span long enough to hold any backticks inside it.
pub(super) fn md_code(text: &str) -> String {
    let text = one_line(text);
    if text.is_empty() {
        return String::new();
    }
    let mut longest = 0;
    let mut run = 0;
    for c in text.chars() {
        run = if c == '`' { run + 1 } else { 0 };
        longest = longest.max(run);
    }
    let fence = "`".repeat(longest + 1);
    if text.starts_with(['`', ' ']) || text.ends_with(['`', ' ']) {
        format!("{fence} {text} {fence}")
    } else {
        format!("{fence}{text}{fence}")
    }
}

fn md_bars(bars: &Bars) -> String {
    let mut lines = vec![format!("{}:", md_plain(&bars.caption))];
    lines.extend(
        bars.bars
            .iter()
            .map(|(label, _, shown)| format!("- {}: {}", md_plain(label), md_plain(shown))),
    );
    lines.join("\n")
}

/// A horizontal bar chart as inline SVG: one row a bar, scaled to the largest value.
fn svg_bars(bars: &Bars) -> String {
    const ROW: usize = 26;
    const LABEL: usize = 220;
    const WIDTH: usize = 640;
    let max = bars.bars.iter().map(|b| b.1).fold(0.0_f64, f64::max);
    let height = ROW * bars.bars.len().max(1) + 8;
    let mut out = format!(
        "<figure>\n<svg role=\"img\" aria-label=\"{}\" viewBox=\"0 0 {WIDTH} {height}\" \
         width=\"100%\" xmlns=\"http://www.w3.org/2000/svg\">\n",
        html_escape(&bars.caption)
    );
    for (i, (label, value, shown)) in bars.bars.iter().enumerate() {
        let y = i * ROW + 4;
        let length = if max > 0.0 && *value > 0.0 {
            (value / max * (WIDTH - LABEL - 90) as f64).round() as usize
        } else {
            0
        };
        out.push_str(&format!(
            "<text x=\"0\" y=\"{}\" font-size=\"13\">{}</text>\
             <rect x=\"{LABEL}\" y=\"{y}\" width=\"{length}\" height=\"18\" fill=\"#0969da\"/>\
             <text x=\"{}\" y=\"{}\" font-size=\"13\">{}</text>\n",
            y + 14,
            html_escape(label),
            LABEL + length + 6,
            y + 14,
            html_escape(shown)
        ));
    }
    out.push_str(&format!(
        "</svg>\n<figcaption>{}</figcaption>\n</figure>\n",
        html_escape(&bars.caption)
    ));
    out
}

fn md_table(table: &Table) -> String {
    let row = |cells: Vec<String>| format!("| {} |", cells.join(" | "));
    let mut lines = vec![
        row(table.header.iter().map(|h| md_plain(h)).collect()),
        row(table.header.iter().map(|_| "---".to_string()).collect()),
    ];
    for cells in &table.rows {
        lines.push(row(cells.iter().map(|c| md_text(c, true)).collect()));
    }
    lines.join("\n")
}

fn html_text(text: &Text) -> String {
    text.0
        .iter()
        .map(|span| match span {
            Span::Plain(t) => html_escape(t),
            Span::Code(t) => format!("<code>{}</code>", html_escape(t)),
            Span::Strong(t) => format!("<strong>{}</strong>", html_escape(t)),
        })
        .collect()
}

fn html_table(table: &Table) -> String {
    let mut out = String::from("<table>\n<thead>\n<tr>");
    for h in &table.header {
        out.push_str(&format!("<th scope=\"col\">{}</th>", html_escape(h)));
    }
    out.push_str("</tr>\n</thead>\n<tbody>\n");
    for cells in &table.rows {
        out.push_str("<tr>");
        for cell in cells {
            out.push_str(&format!("<td>{}</td>", html_text(cell)));
        }
        out.push_str("</tr>\n");
    }
    out.push_str("</tbody>\n</table>\n");
    out
}

/// Escape for HTML (and SVG) text and attribute values.
pub fn html_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            _ => out.push(c),
        }
    }
    out
}
