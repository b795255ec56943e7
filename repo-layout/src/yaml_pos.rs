//! Where each field of a YAML document sits: a map from field path
//! (`ports[1].port`) to the line and column of its key and of its value.
//! serde does not keep positions, so the loader reads them from a second,
//! event-level parse.

use crate::diagnostic::Position;
use std::collections::HashMap;
use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
use yaml_rust2::scanner::Marker;

/// A YAML syntax error with its position.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyntaxError {
    /// What the parser says.
    pub message: String,
    /// Where.
    pub position: Position,
}

/// A mapping key set a second time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Duplicate {
    /// Field path of the key (`resources.memory`).
    pub path: String,
    /// The key as written.
    pub key: String,
    /// Where the duplicate key is.
    pub at: Position,
    /// Where the first occurrence of the key is.
    pub first: Position,
}

/// What the event-level parse finds: each field's key and value positions,
/// and the duplicate keys.
#[derive(Debug, Default)]
struct Positions {
    fields: HashMap<String, (Position, Position)>,
    duplicates: Vec<Duplicate>,
}

/// Positions of every field in a document. A [`PositionIndex::lazy`] one
/// parses its text on the first question: most files are never asked.
/// Of a key set twice in a mapping, the first counts (as when the document
/// is read into a value), and the duplicates are listed apart.
#[derive(Debug, Default)]
pub struct PositionIndex {
    text: String,
    positions: std::cell::OnceCell<Positions>,
}

impl PositionIndex {
    /// Parses `text` and records the position of each field.
    pub fn build(text: &str) -> Result<Self, SyntaxError> {
        let positions = parse(text)?;
        Ok(PositionIndex {
            text: String::new(),
            positions: std::cell::OnceCell::from(positions),
        })
    }

    /// The index of `text`, which is valid YAML, parsed when first asked.
    pub fn lazy(text: &str) -> Self {
        PositionIndex {
            text: text.to_string(),
            positions: std::cell::OnceCell::new(),
        }
    }

    fn positions(&self) -> &Positions {
        self.positions
            .get_or_init(|| parse(&self.text).unwrap_or_default())
    }

    fn fields(&self) -> &HashMap<String, (Position, Position)> {
        &self.positions().fields
    }

    /// Every key set a second (third, ...) time in its mapping, in document
    /// order. Keys inside a duplicate's value are not looked at.
    pub fn duplicates(&self) -> &[Duplicate] {
        &self.positions().duplicates
    }

    /// Position of the key of `path` (of its value for list items), or of its
    /// closest ancestor present in the document.
    pub fn key(&self, path: &str) -> Position {
        self.lookup(path).0
    }

    /// Position of the value of `path`, or of its closest ancestor.
    pub fn value(&self, path: &str) -> Position {
        self.lookup(path).1
    }

    /// Whether the document has a value at exactly `path`.
    pub fn contains(&self, path: &str) -> bool {
        self.fields().contains_key(path)
    }

    fn lookup(&self, path: &str) -> (Position, Position) {
        let mut path = path;
        loop {
            if let Some(found) = self.fields().get(path) {
                return *found;
            }
            match path.rfind(['.', '[']) {
                Some(cut) => path = &path[..cut],
                None if !path.is_empty() => path = "",
                None => {
                    return (
                        Position { line: 1, column: 1 },
                        Position { line: 1, column: 1 },
                    )
                }
            }
        }
    }
}

/// Every field's key and value positions and the duplicate keys, or the
/// syntax error.
fn parse(text: &str) -> Result<Positions, SyntaxError> {
    let mut builder = Builder::default();
    Parser::new_from_str(text)
        .load(&mut builder, false)
        .map_err(|e| SyntaxError {
            message: e.info().to_string(),
            position: position(e.marker()),
        })?;
    Ok(builder.positions)
}

fn position(marker: &Marker) -> Position {
    Position {
        line: marker.line(),
        column: marker.col() + 1,
    }
}

/// Joins a parent path and a map key the way diagnostics print paths.
pub fn join_key(parent: &str, key: &str) -> String {
    if parent.is_empty() {
        key.to_string()
    } else {
        format!("{parent}.{key}")
    }
}

/// The key a mapping is reading the value of.
struct Key {
    text: String,
    at: Position,
    /// The mapping already has this key: its value is not indexed.
    duplicate: bool,
}

enum Frame {
    Map {
        path: String,
        key: Option<Key>,
        /// Scalar keys seen so far, with their positions.
        seen: HashMap<String, Position>,
        /// Inside a duplicate's value: nothing is indexed.
        ignored: bool,
    },
    Seq {
        path: String,
        next: usize,
        ignored: bool,
    },
}

#[derive(Default)]
struct Builder {
    stack: Vec<Frame>,
    positions: Positions,
}

impl Builder {
    /// Called at the start of every node; returns the node's path and
    /// whether it is left out of the index (inside a duplicate's value), or
    /// `None` when the node is a mapping key.
    fn enter(&mut self, key_text: Option<&str>, at: Position) -> Option<(String, bool)> {
        let (path, key_at, ignored) = match self.stack.last_mut() {
            None => (String::new(), at, false),
            Some(Frame::Map {
                key: key @ None,
                path,
                seen,
                ignored,
            }) => {
                let duplicate = match key_text {
                    Some(text) => match seen.get(text) {
                        Some(first) => {
                            if !*ignored {
                                self.positions.duplicates.push(Duplicate {
                                    path: join_key(path, text),
                                    key: text.to_string(),
                                    at,
                                    first: *first,
                                });
                            }
                            true
                        }
                        None => {
                            seen.insert(text.to_string(), at);
                            false
                        }
                    },
                    None => false,
                };
                *key = Some(Key {
                    text: key_text.unwrap_or("?").to_string(),
                    at,
                    duplicate,
                });
                // The parser marks a block mapping after its first key: start
                // it at that key instead.
                if !*ignored {
                    if let Some(map) = self.positions.fields.get_mut(path.as_str()) {
                        map.1 = map.1.min(at);
                        map.0 = map.0.min(at);
                    }
                }
                return None;
            }
            Some(Frame::Map {
                path,
                key: Some(key),
                ignored,
                ..
            }) => (join_key(path, &key.text), key.at, *ignored || key.duplicate),
            Some(Frame::Seq {
                path,
                next,
                ignored,
            }) => {
                *next += 1;
                (format!("{path}[{}]", *next - 1), at, *ignored)
            }
        };
        if !ignored {
            self.positions.fields.insert(path.clone(), (key_at, at));
        }
        Some((path, ignored))
    }

    /// A scalar or alias: a node that starts and ends at once.
    fn leaf(&mut self, key_text: Option<&str>, at: Position) {
        if self.enter(key_text, at).is_some() {
            self.leave();
        }
    }

    /// Called when a node is complete: the enclosing map expects a key again.
    fn leave(&mut self) {
        if let Some(Frame::Map { key, .. }) = self.stack.last_mut() {
            *key = None;
        }
    }
}

impl MarkedEventReceiver for Builder {
    fn on_event(&mut self, event: Event, marker: Marker) {
        let at = position(&marker);
        match event {
            Event::Scalar(value, ..) => self.leaf(Some(&value), at),
            Event::Alias(_) => self.leaf(None, at),
            Event::MappingStart(..) => {
                let (path, ignored) = self.enter(None, at).unwrap_or_else(|| ("?".into(), true));
                self.stack.push(Frame::Map {
                    path,
                    key: None,
                    seen: HashMap::new(),
                    ignored,
                });
            }
            Event::SequenceStart(..) => {
                let (path, ignored) = self.enter(None, at).unwrap_or_else(|| ("?".into(), true));
                self.stack.push(Frame::Seq {
                    path,
                    next: 0,
                    ignored,
                });
            }
            Event::MappingEnd | Event::SequenceEnd => {
                self.stack.pop();
                self.leave();
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn indexes_nested_fields() {
        let text = "id: app_x\nports:\n  - name: http\n    port: 8080\nhealth:\n  interval: 10s\n";
        let index = PositionIndex::build(text).expect("valid yaml");
        assert_eq!(index.key("id"), Position { line: 1, column: 1 });
        assert_eq!(index.value("id"), Position { line: 1, column: 5 });
        assert_eq!(index.key("ports[0].port"), Position { line: 4, column: 5 });
        assert_eq!(index.value("ports[0]"), Position { line: 3, column: 5 });
        assert_eq!(
            index.key("health.interval"),
            Position { line: 6, column: 3 }
        );
        assert_eq!(index.key("health.nope"), Position { line: 5, column: 1 });
    }

    #[test]
    fn lists_duplicate_keys_and_indexes_the_first() {
        let text = "id: a\nresources:\n  memory: 1Gi\n  memory:\n    x: 1\nid: b\nports:\n  - {name: a, name: b}\n";
        let index = PositionIndex::build(text).expect("valid yaml");
        let found: Vec<_> = index
            .duplicates()
            .iter()
            .map(|d| (d.path.as_str(), d.at, d.first.line))
            .collect();
        assert_eq!(
            found,
            [
                ("resources.memory", Position { line: 4, column: 3 }, 3),
                ("id", Position { line: 6, column: 1 }, 1),
                (
                    "ports[0].name",
                    Position {
                        line: 8,
                        column: 15
                    },
                    8
                ),
            ]
        );
        assert_eq!(index.value("id"), Position { line: 1, column: 5 });
        assert_eq!(
            index.value("resources.memory"),
            Position {
                line: 3,
                column: 11
            }
        );
        assert!(!index.contains("resources.memory.x"));
    }

    #[test]
    fn reports_syntax_errors_with_position() {
        let err = PositionIndex::build("a: [1, 2\nb: 3\n").expect_err("invalid yaml");
        assert!(err.position.line >= 1, "{err:?}");
    }
}
