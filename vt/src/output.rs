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
        format!(
            "{{\"code\": \"{}\", \"message\": \"cannot render output: {e}\"}}\n",
            vt_wire::codes::ErrorCode::Internal
        )
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

/// Short options whose value may follow them in the same word (`-ojson`,
/// `-Cdir`, `-mtext`), so a cluster of short flags ends at them.
const SHORTS_WITH_VALUE: [char; 3] = ['o', 'C', 'm'];

/// The output format a command line asks for, read from its words when clap
/// refused it: the last `-o F`, `-oF`, `-o=F`, `--output F` or `--output=F`
/// (also at the end of a cluster like `-fo json`) before `--`, else `env`
/// (`VT_OUTPUT`), else text. An unknown format is text.
pub fn requested_format<S: AsRef<std::ffi::OsStr>>(args: &[S], env: Option<&str>) -> Output {
    use clap::ValueEnum;
    let mut chosen: Option<String> = None;
    let mut words = args.iter().map(|a| a.as_ref().to_string_lossy());
    while let Some(word) = words.next() {
        if word == "--" {
            break;
        }
        if let Some(long) = word.strip_prefix("--") {
            if long == "output" {
                chosen = words.next().map(|w| w.into_owned());
            } else if let Some(value) = long.strip_prefix("output=") {
                chosen = Some(value.to_string());
            }
            continue;
        }
        let Some(cluster) = word.strip_prefix('-') else {
            continue;
        };
        for (at, c) in cluster.char_indices() {
            if !SHORTS_WITH_VALUE.contains(&c) {
                continue;
            }
            if c == 'o' {
                let rest = &cluster[at + 1..];
                let rest = rest.strip_prefix('=').unwrap_or(rest);
                chosen = if rest.is_empty() {
                    words.next().map(|w| w.into_owned())
                } else {
                    Some(rest.to_string())
                };
            }
            break;
        }
    }
    chosen
        .as_deref()
        .or(env)
        .and_then(|f| Output::from_str(f, false).ok())
        .unwrap_or(Output::Text)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_format_is_read_from_the_words_clap_refused() {
        let f = |line: &str, env: Option<&str>| {
            requested_format(&line.split_whitespace().collect::<Vec<_>>(), env)
        };
        assert_eq!(f("vt scale web -o json --instances -1", None), Output::Json);
        assert_eq!(f("vt status --output yaml --bogus", None), Output::Yaml);
        assert_eq!(f("vt status --output=json --bogus", None), Output::Json);
        assert_eq!(f("vt status -ojson --bogus", None), Output::Json);
        assert_eq!(f("vt status -o=yaml --bogus", None), Output::Yaml);
        assert_eq!(f("vt events -fo json --bogus", None), Output::Json);
        assert_eq!(f("vt events -fojson --bogus", None), Output::Json);
        assert_eq!(f("vt -C dir -o json x", None), Output::Json);
        assert_eq!(f("vt -Codir x", None), Output::Text, "`odir` is -C's value");
        assert_eq!(
            f("vt -o json -o text x", None),
            Output::Text,
            "the last one"
        );
        assert_eq!(f("vt exec web -- cat -o json", None), Output::Text);
        assert_eq!(f("vt status --bogus", Some("json")), Output::Json);
        assert_eq!(f("vt status -o text --bogus", Some("json")), Output::Text);
        assert_eq!(f("vt status -o xml --bogus", None), Output::Text);
        assert_eq!(f("vt status -o", None), Output::Text);
    }
}
