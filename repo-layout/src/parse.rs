//! Parsing one file of the repository into its schema type, reporting every
//! problem in it at once.
//!
//! serde stops at the first error, so parsing is a loop: deserialize, and on an
//! error record a diagnostic, cut the offending value out of the document and
//! try again. Unknown fields are collected by `serde_ignored` on the way, and
//! the "did you mean" hint comes from the type's JSON Schema. Positions come
//! from [`PositionIndex`], since serde keeps none.

use crate::diagnostic::{Code, Diagnostic};
use crate::quantity;
use crate::yaml_pos::{join_key, PositionIndex};
use crate::yaml_value::{self, Document};
use schemars::JsonSchema;
use serde::de::DeserializeOwned;
use serde_json::Value as Json;
use serde_yaml::Value as Yaml;
use std::collections::HashSet;

/// Most errors reported for a single file before giving up on it.
const MAX_ERRORS_PER_FILE: usize = 50;

/// A parsed file and the positions of its fields.
#[derive(Debug)]
pub struct Parsed<T> {
    /// The file's content.
    pub value: T,
    /// Where each field is.
    pub index: PositionIndex,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Seg {
    Key(String),
    Index(usize),
}

fn format_path(segs: &[Seg]) -> String {
    segs.iter().fold(String::new(), |path, seg| match seg {
        Seg::Key(key) => join_key(&path, key),
        Seg::Index(i) => format!("{path}[{i}]"),
    })
}

fn from_error_path(path: &serde_path_to_error::Path) -> Vec<Seg> {
    use serde_path_to_error::Segment;
    path.iter()
        .filter_map(|seg| match seg {
            Segment::Seq { index } => Some(Seg::Index(*index)),
            Segment::Map { key } => Some(Seg::Key(key.clone())),
            Segment::Enum { variant } => Some(Seg::Key(variant.clone())),
            Segment::Unknown => None,
        })
        .collect()
}

fn from_ignored_path(path: &serde_ignored::Path<'_>) -> Vec<Seg> {
    use serde_ignored::Path;
    match path {
        Path::Root => Vec::new(),
        Path::Seq { parent, index } => {
            let mut segs = from_ignored_path(parent);
            segs.push(Seg::Index(*index));
            segs
        }
        Path::Map { parent, key } => {
            let mut segs = from_ignored_path(parent);
            segs.push(Seg::Key(key.clone()));
            segs
        }
        Path::Some { parent }
        | Path::NewtypeStruct { parent }
        | Path::NewtypeVariant { parent } => from_ignored_path(parent),
    }
}

/// The byte order mark some editors write at the start of a UTF-8 file.
const BOM: &str = "\u{feff}";

/// Splits a leading byte order mark off `text`: (the mark or "", the rest).
/// Line-based editors of layout files keep the mark and edit the rest.
pub(crate) fn split_bom(text: &str) -> (&str, &str) {
    match text.strip_prefix(BOM) {
        Some(rest) => (BOM, rest),
        None => ("", text),
    }
}

/// Parses `text` (the content of `file`) as a `T`, appending every problem
/// found to `diagnostics`. A leading byte order mark is ignored. Returns
/// `None` only when the file is not YAML at all or nothing of it could be
/// read.
pub fn parse_file<T>(file: &str, text: &str, diagnostics: &mut Vec<Diagnostic>) -> Option<Parsed<T>>
where
    T: DeserializeOwned + JsonSchema,
{
    // Editors do not show the mark, so positions count from after it.
    let (_, text) = split_bom(text);
    let syntax_error = |e: crate::yaml_pos::SyntaxError| {
        Diagnostic::file(
            Code::Syntax,
            file,
            format!("the file is not valid YAML: {}", e.message),
        )
        .at(e.position, "")
        .with_hint("check indentation and quoting around this line")
    };
    let (mut doc, duplicates) = match yaml_value::from_str(text) {
        Ok(Document {
            value: Yaml::Null,
            duplicates,
        }) => (Yaml::Mapping(Default::default()), duplicates),
        Ok(Document { value, duplicates }) => (value, duplicates),
        Err(e) => {
            // The position parser words syntax errors better; serde_yaml's
            // own error is the fallback when it finds none.
            if let Err(syntax) = PositionIndex::build(text) {
                diagnostics.push(syntax_error(syntax));
                return None;
            }
            let pos = e.location().map(|l| crate::Position {
                line: l.line(),
                column: l.column(),
            });
            diagnostics.push(
                Diagnostic::file(
                    Code::Syntax,
                    file,
                    format!("the file is not valid YAML: {e}"),
                )
                .at(pos.unwrap_or_default(), ""),
            );
            return None;
        }
    };
    // Positions are read only when a diagnostic needs one.
    let index = PositionIndex::lazy(text);
    duplicate_keys(file, &index, &duplicates, diagnostics);
    // Only needed for "did you mean": built on the first unknown field (it is most of a parse).
    let schema = std::cell::OnceCell::new();
    // Cutting out a bad required value makes serde report it missing next
    // time: one diagnostic per path is enough.
    let mut reported = HashSet::new();
    for _ in 0..MAX_ERRORS_PER_FILE {
        let mut unknown = Vec::new();
        let mut record = |path: serde_ignored::Path<'_>| unknown.push(from_ignored_path(&path));
        let result = serde_path_to_error::deserialize::<_, T>(serde_ignored::Deserializer::new(
            doc.clone(),
            &mut record,
        ));
        match result {
            Ok(value) => {
                for segs in unknown {
                    diagnostics.push(unknown_field(
                        file,
                        &index,
                        schema.get_or_init(|| schemars::schema_for!(T)).as_value(),
                        &segs,
                    ));
                }
                return Some(Parsed { value, index });
            }
            Err(err) => {
                let segs = from_error_path(err.path());
                let found = type_error(file, &index, &segs, &err.inner().to_string());
                if reported.insert(found.path.clone()) {
                    diagnostics.push(found);
                }
                if !remove(&mut doc, &segs) {
                    return None;
                }
            }
        }
    }
    None
}

/// Reports each duplicate key the reader skipped (`skipped`: their paths) at
/// the duplicate's own position.
fn duplicate_keys(
    file: &str,
    index: &PositionIndex,
    skipped: &[String],
    diagnostics: &mut Vec<Diagnostic>,
) {
    if skipped.is_empty() {
        return;
    }
    // The event-level parse finds duplicates by the key's text; only those
    // the reader skipped count (`1` and `"1"` are different keys).
    let mut found: Vec<_> = index.duplicates().iter().map(Some).collect();
    for path in skipped {
        let duplicate = found
            .iter_mut()
            .find(|d| d.is_some_and(|d| &d.path == path))
            .and_then(Option::take);
        let diagnostic = match duplicate {
            Some(d) => Diagnostic::file(
                Code::DuplicateKey,
                file,
                format!(
                    "key `{}` is set twice in the same mapping (first at line {})",
                    d.key, d.first.line
                ),
            )
            .at(d.at, path.clone()),
            None => Diagnostic::file(
                Code::DuplicateKey,
                file,
                "a key is set twice in the same mapping",
            )
            .at(index.key(path), path.clone()),
        };
        diagnostics.push(
            diagnostic.with_hint("remove one of them or merge them (only the first is read)"),
        );
    }
}

fn type_error(file: &str, index: &PositionIndex, segs: &[Seg], message: &str) -> Diagnostic {
    let path = format_path(segs);
    let (code, path, hint) = if let Some(rest) = message.strip_prefix("missing field `") {
        let field = rest.trim_end_matches('`');
        (
            Code::MissingField,
            join_key(&path, field),
            Some(format!("add `{field}:`")),
        )
    } else if quantity::KINDS
        .iter()
        .any(|k| message.starts_with(&format!("invalid {k} ")))
    {
        (Code::Quantity, path, None)
    } else if message.starts_with("invalid value") || message.starts_with("unknown variant") {
        (Code::InvalidValue, path, None)
    } else {
        (Code::Type, path, None)
    };
    let pos = index.value(&path);
    let diagnostic = Diagnostic::file(code, file, message).at(pos, path);
    match hint {
        Some(hint) => diagnostic.with_hint(hint),
        None => diagnostic,
    }
}

fn unknown_field(file: &str, index: &PositionIndex, schema: &Json, segs: &[Seg]) -> Diagnostic {
    let path = format_path(segs);
    let (field, parent) = match segs.split_last() {
        Some((Seg::Key(field), parent)) => (field.clone(), parent),
        _ => (path.clone(), segs),
    };
    let mut known = fields_at(schema, schema, parent);
    known.sort();
    known.dedup();
    let hint = match suggest(&field, &known) {
        Some(best) => format!("did you mean `{best}`?"),
        None if known.is_empty() => "remove this field".to_string(),
        None => format!("known fields here: {}", known.join(", ")),
    };
    Diagnostic::file(Code::UnknownField, file, format!("unknown field `{field}`"))
        .at(index.key(&path), path)
        .with_hint(hint)
}

/// The closest known name to `word`, if any is close enough to be a typo.
pub fn suggest<'a>(word: &str, known: &'a [String]) -> Option<&'a str> {
    known
        .iter()
        .map(|k| (strsim::levenshtein(word, k), k))
        .filter(|(d, k)| *d <= (k.len().max(word.len()) / 3).max(2))
        .min()
        .map(|(_, k)| k.as_str())
}

/// The schema nodes a value at `node` may match: itself (refs followed) and
/// the branches of `anyOf`/`oneOf`/`allOf`.
fn alternatives<'a>(root: &'a Json, node: &'a Json) -> Vec<&'a Json> {
    let node = match node.get("$ref").and_then(Json::as_str) {
        Some(reference) => reference
            .strip_prefix("#")
            .and_then(|pointer| root.pointer(pointer))
            .unwrap_or(node),
        None => node,
    };
    let mut out = vec![node];
    for key in ["anyOf", "oneOf", "allOf"] {
        for branch in node.get(key).and_then(Json::as_array).into_iter().flatten() {
            out.extend(alternatives(root, branch));
        }
    }
    out
}

/// Field names the schema allows at `segs` below `node`.
fn fields_at(root: &Json, node: &Json, segs: &[Seg]) -> Vec<String> {
    alternatives(root, node)
        .into_iter()
        .flat_map(|alt| match segs.split_first() {
            None => alt
                .get("properties")
                .and_then(Json::as_object)
                .map(|props| props.keys().cloned().collect())
                .unwrap_or_default(),
            Some((Seg::Key(key), rest)) => {
                let child = alt
                    .get("properties")
                    .and_then(|p| p.get(key))
                    .or_else(|| alt.get("additionalProperties"));
                child.map(|c| fields_at(root, c, rest)).unwrap_or_default()
            }
            Some((Seg::Index(_), rest)) => alt
                .get("items")
                .map(|c| fields_at(root, c, rest))
                .unwrap_or_default(),
        })
        .collect()
}

/// Cuts the value at `segs` out of `doc`; returns whether anything changed.
fn remove(doc: &mut Yaml, segs: &[Seg]) -> bool {
    let Some((last, parent)) = segs.split_last() else {
        let empty = Yaml::Mapping(Default::default());
        if *doc == empty {
            return false;
        }
        *doc = empty;
        return true;
    };
    let mut node = doc;
    for seg in parent {
        let next = match seg {
            Seg::Key(key) => node.get_mut(key.as_str()),
            Seg::Index(i) => node.get_mut(*i),
        };
        match next {
            Some(next) => node = next,
            None => return false,
        }
    }
    match (node, last) {
        (Yaml::Mapping(map), Seg::Key(key)) => map.remove(key.as_str()).is_some(),
        (Yaml::Sequence(items), Seg::Index(i)) if *i < items.len() => {
            items.remove(*i);
            true
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::Spec;

    fn parse(text: &str) -> (Option<Spec>, Vec<Diagnostic>) {
        let mut diagnostics = Vec::new();
        let parsed = parse_file::<Spec>("app.yaml", text, &mut diagnostics);
        (parsed.map(|p| p.value), diagnostics)
    }

    #[test]
    fn reports_all_errors_in_one_file() {
        let (spec, diags) = parse(
            "imag: web:1\nresources:\n  cpu: lots\n  memroy: 1Gi\ninstances: many\nports:\n  - name: http\n",
        );
        let found: Vec<_> = diags
            .iter()
            .map(|d| (d.code, d.path.as_str(), d.line))
            .collect();
        assert_eq!(
            found,
            [
                (Code::Quantity, "resources.cpu", 3),
                (Code::Type, "instances", 5),
                (Code::MissingField, "ports[0].port", 7),
                (Code::UnknownField, "imag", 1),
                (Code::UnknownField, "resources.memroy", 4),
            ]
        );
        assert_eq!(diags[3].hint.as_deref(), Some("did you mean `image`?"));
        assert_eq!(diags[4].hint.as_deref(), Some("did you mean `memory`?"));
        assert!(spec.is_some());
    }

    #[test]
    fn syntax_errors_have_positions() {
        let (spec, diags) = parse("image: [web\nports: 3\n");
        assert!(spec.is_none());
        assert_eq!(diags[0].code, Code::Syntax);
        assert!(diags[0].line > 0);
    }

    #[test]
    fn duplicate_keys_are_reported_where_they_are() {
        let (spec, diags) = parse(
            "image: web:1\ninstances: 2\nresources:\n  memory: 1Gi\n  memory: 2Gi\ninstances: 3\ncommand: 7\n",
        );
        let found: Vec<_> = diags
            .iter()
            .map(|d| (d.code, d.path.as_str(), d.line, d.column))
            .collect();
        assert_eq!(
            found,
            [
                (Code::DuplicateKey, "resources.memory", 5, 3),
                (Code::DuplicateKey, "instances", 6, 1),
                (Code::Type, "command", 7, 10),
            ]
        );
        assert_eq!(
            diags[1].message,
            "key `instances` is set twice in the same mapping (first at line 2)"
        );
        let spec = spec.expect("the rest of the file is read");
        assert_eq!(spec.instances, Some(2));
        assert_eq!(spec.image.as_deref(), Some("web:1"));
    }

    #[test]
    fn a_byte_order_mark_is_ignored() {
        let (spec, diags) = parse("\u{feff}image: web:1\ninstances: many\n");
        assert_eq!(
            diags
                .iter()
                .map(|d| (d.code, d.line, d.column))
                .collect::<Vec<_>>(),
            [(Code::Type, 2, 12)]
        );
        assert_eq!(spec.and_then(|s| s.image).as_deref(), Some("web:1"));
    }

    #[test]
    fn empty_file_is_an_empty_spec() {
        let (spec, diags) = parse("");
        assert_eq!(spec, Some(Spec::default()));
        assert!(diags.is_empty());
    }
}
