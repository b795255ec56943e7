//! Rendering command results and errors as text, JSON or YAML.
//!
//! Text goes to stdout, errors to stderr; with `--output json|yaml` errors are
//! printed to stdout in the same format as results, so scripts read one stream.

use crate::cli::Output;
use crate::error::CliError;
use serde::Serialize;
use std::io::{IsTerminal, Write};

/// Whether to use colours: only on a terminal, and never with `NO_COLOR`.
fn colour(stream_is_terminal: bool) -> bool {
    stream_is_terminal && std::env::var_os("NO_COLOR").is_none()
}

/// Styles for text output.
#[derive(Debug, Clone, Copy)]
pub struct Style {
    on: bool,
}

impl Style {
    /// Styles for stdout.
    pub fn stdout() -> Self {
        Style {
            on: colour(std::io::stdout().is_terminal()),
        }
    }

    /// Styles for stderr.
    pub fn stderr() -> Self {
        Style {
            on: colour(std::io::stderr().is_terminal()),
        }
    }

    fn paint(self, code: &str, text: &str) -> String {
        if self.on {
            format!("\x1b[{code}m{text}\x1b[0m")
        } else {
            text.to_string()
        }
    }

    /// Bold.
    pub fn bold(self, text: &str) -> String {
        self.paint("1", text)
    }

    /// Red, for errors.
    pub fn red(self, text: &str) -> String {
        self.paint("31", text)
    }

    /// Green, for success.
    pub fn green(self, text: &str) -> String {
        self.paint("32", text)
    }

    /// Dim, for hints and secondary text.
    pub fn dim(self, text: &str) -> String {
        self.paint("2", text)
    }
}

/// A text table whose columns are aligned to their widest cell.
pub struct Table {
    header: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Table {
    /// A table with these column titles.
    pub fn new(header: &[&str]) -> Self {
        Table {
            header: header.iter().map(|h| h.to_string()).collect(),
            rows: Vec::new(),
        }
    }

    /// Adds a row.
    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    /// Renders with the header in bold (on a terminal).
    pub fn render(&self, style: Style) -> String {
        let mut widths: Vec<usize> = self.header.iter().map(|h| h.chars().count()).collect();
        for row in &self.rows {
            for (w, cell) in widths.iter_mut().zip(row) {
                *w = (*w).max(cell.chars().count());
            }
        }
        let line = |cells: &[String]| {
            let padded: Vec<String> = cells
                .iter()
                .zip(&widths)
                .map(|(c, w)| format!("{c:<w$}"))
                .collect();
            padded.join("  ").trim_end().to_string()
        };
        let mut out = style.bold(&line(&self.header));
        for row in &self.rows {
            out.push('\n');
            out.push_str(&line(row));
        }
        out.push('\n');
        out
    }
}

/// Serializes `value` as JSON or YAML.
pub fn structured<T: Serialize>(format: Output, value: &T) -> String {
    let rendered = match format {
        Output::Yaml => serde_yaml::to_string(value).map_err(|e| e.to_string()),
        Output::Json | Output::Text => serde_json::to_string_pretty(value)
            .map(|s| s + "\n")
            .map_err(|e| e.to_string()),
    };
    rendered.unwrap_or_else(|e| {
        format!("{{\"code\": \"E_INTERNAL\", \"message\": \"cannot render output: {e}\"}}\n")
    })
}

/// Prints a result: `text` for text output, `value` serialized otherwise.
pub fn print<T: Serialize>(format: Output, value: &T, text: impl FnOnce(Style) -> String) {
    let out = match format {
        Output::Text => text(Style::stdout()),
        _ => structured(format, value),
    };
    let _ = std::io::stdout().write_all(out.as_bytes());
}

/// Renders validation diagnostics as text, one block each.
pub fn diagnostics_text(diagnostics: &[vt_repo::Diagnostic], style: Style) -> String {
    let mut out = String::new();
    for d in diagnostics {
        let place = if d.line > 0 {
            format!("{}:{}:{}", d.file, d.line, d.column)
        } else {
            d.file.clone()
        };
        let at = if d.path.is_empty() {
            String::new()
        } else {
            format!(" (at `{}`)", d.path)
        };
        out.push_str(&format!(
            "{}: {} {}{at}\n",
            style.bold(&place),
            style.red(&format!("error[{}]", d.code)),
            d.message
        ));
        if let Some(hint) = &d.hint {
            out.push_str(&format!("  {} {hint}\n", style.dim("hint:")));
        }
    }
    out
}

/// Prints an error: text on stderr, or JSON/YAML on stdout.
pub fn print_error(format: Output, error: &CliError) {
    if format != Output::Text {
        let _ = std::io::stdout().write_all(structured(format, error).as_bytes());
        return;
    }
    let style = Style::stderr();
    let mut out = diagnostics_text(&error.errors, style);
    out.push_str(&format!(
        "{} {}\n",
        style.red(&style.bold("error:")),
        error.message
    ));
    if let Some(hint) = &error.hint {
        out.push_str(&format!("  {} {hint}\n", style.dim("hint:")));
    }
    let _ = std::io::stderr().write_all(out.as_bytes());
}
