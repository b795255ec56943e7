//! Reading a YAML document into a [`serde_yaml::Value`] the way
//! `serde_yaml::from_str` does, except for duplicate mapping keys: serde_yaml
//! fails the whole document on the first one, this reader keeps the first
//! entry, skips the duplicate and records its field path, so the rest of the
//! file is still checked and every duplicate can be reported at its own line.

use crate::yaml_pos::join_key;
use serde::de::{
    self, DeserializeSeed, Deserializer, EnumAccess, IgnoredAny, MapAccess, SeqAccess,
    VariantAccess, Visitor,
};
use serde_yaml::value::{Tag, TaggedValue};
use serde_yaml::{Mapping, Value};
use std::cell::RefCell;
use std::fmt;

/// A document and the field paths of the duplicate keys skipped in it, in
/// document order (a key set three times appears twice).
#[derive(Debug)]
pub struct Document {
    /// The document, first entry of each duplicated key kept.
    pub value: Value,
    /// Field path (`resources.memory`) of each skipped duplicate.
    pub duplicates: Vec<String>,
}

/// Parses `text`, one YAML document; only a syntax error (or a second
/// document) is an error.
pub fn from_str(text: &str) -> Result<Document, serde_yaml::Error> {
    let duplicates = RefCell::new(Vec::new());
    let value = Node {
        at: Step::Root,
        duplicates: &duplicates,
    }
    .deserialize(serde_yaml::Deserializer::from_str(text))?;
    Ok(Document {
        value,
        duplicates: duplicates.into_inner(),
    })
}

/// Where a node sits: a chain of steps up to the root, turned into a path
/// only when a duplicate is found there.
enum Step<'a> {
    Root,
    /// A mapping key that is itself a collection.
    InKey(&'a Step<'a>),
    Key(&'a Value, &'a Step<'a>),
    Index(usize, &'a Step<'a>),
}

impl Step<'_> {
    fn path(&self) -> String {
        match self {
            Step::Root => String::new(),
            Step::InKey(parent) => join_key(&parent.path(), "?"),
            Step::Key(key, parent) => join_key(&parent.path(), &key_text(key)),
            Step::Index(i, parent) => format!("{}[{i}]", parent.path()),
        }
    }
}

/// A mapping key as diagnostics print it.
fn key_text(key: &Value) -> String {
    match key {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        Value::Null => "null".into(),
        Value::Sequence(_) | Value::Mapping(_) | Value::Tagged(_) => "?".into(),
    }
}

/// Deserializes one node (and, through itself, its children).
struct Node<'a> {
    at: Step<'a>,
    duplicates: &'a RefCell<Vec<String>>,
}

impl Node<'_> {
    fn child<'b>(&self, at: Step<'b>) -> Node<'b>
    where
        Self: 'b,
    {
        Node {
            at,
            duplicates: self.duplicates,
        }
    }
}

impl<'de> DeserializeSeed<'de> for Node<'_> {
    type Value = Value;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Node<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any YAML value")
    }

    fn visit_bool<E: de::Error>(self, b: bool) -> Result<Value, E> {
        Ok(Value::Bool(b))
    }

    fn visit_i64<E: de::Error>(self, i: i64) -> Result<Value, E> {
        Ok(Value::Number(i.into()))
    }

    fn visit_u64<E: de::Error>(self, u: u64) -> Result<Value, E> {
        Ok(Value::Number(u.into()))
    }

    fn visit_i128<E: de::Error>(self, i: i128) -> Result<Value, E> {
        // Past 64 bits serde_yaml's own reader fails the whole document; the
        // digits as a string let the field's type say what is wrong
        // (`invalid size ...: too large`).
        Ok(match i64::try_from(i) {
            Ok(i) => Value::Number(i.into()),
            Err(_) => Value::String(i.to_string()),
        })
    }

    fn visit_u128<E: de::Error>(self, u: u128) -> Result<Value, E> {
        Ok(match u64::try_from(u) {
            Ok(u) => Value::Number(u.into()),
            Err(_) => Value::String(u.to_string()),
        })
    }

    fn visit_f64<E: de::Error>(self, f: f64) -> Result<Value, E> {
        Ok(Value::Number(f.into()))
    }

    fn visit_str<E: de::Error>(self, s: &str) -> Result<Value, E> {
        Ok(Value::String(s.to_owned()))
    }

    fn visit_string<E: de::Error>(self, s: String) -> Result<Value, E> {
        Ok(Value::String(s))
    }

    fn visit_unit<E: de::Error>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_none<E: de::Error>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        self.deserialize(deserializer)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(item) =
            seq.next_element_seed(self.child(Step::Index(items.len(), &self.at)))?
        {
            items.push(item);
        }
        Ok(Value::Sequence(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut mapping = Mapping::new();
        while let Some(key) = map.next_key_seed(self.child(Step::InKey(&self.at)))? {
            if mapping.contains_key(&key) {
                self.duplicates
                    .borrow_mut()
                    .push(Step::Key(&key, &self.at).path());
                map.next_value::<IgnoredAny>()?;
            } else {
                let value = map.next_value_seed(self.child(Step::Key(&key, &self.at)))?;
                mapping.insert(key, value);
            }
        }
        Ok(Value::Mapping(mapping))
    }

    fn visit_enum<A: EnumAccess<'de>>(self, data: A) -> Result<Value, A::Error> {
        // serde_yaml hands a `!tag value` node over as an enum.
        let (tag, contents): (String, _) = data.variant()?;
        if tag.is_empty() {
            return Err(de::Error::custom("empty YAML tag is not allowed"));
        }
        let value = contents.newtype_variant_seed(self)?;
        Ok(Value::Tagged(Box::new(TaggedValue {
            tag: Tag::new(tag),
            value,
        })))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_like_serde_yaml() {
        let text = "a: 1\nb: [x, {c: true}]\nd: !tag 2.5\ne: ~\nf: -3\n";
        let doc = from_str(text).expect("valid");
        let expected: Value = serde_yaml::from_str(text).expect("valid");
        assert_eq!(doc.value, expected);
        assert!(doc.duplicates.is_empty());
    }

    #[test]
    fn keeps_the_first_of_duplicate_keys() {
        let text = "a: 1\nb:\n  - {c: 1, c: 2}\na: 2\na: 3\n";
        let doc = from_str(text).expect("valid");
        let expected: Value = serde_yaml::from_str("a: 1\nb:\n  - {c: 1}\n").expect("valid");
        assert_eq!(doc.value, expected);
        assert_eq!(doc.duplicates, ["b[0].c", "a", "a"]);
    }

    #[test]
    fn integers_past_64_bits_are_kept_as_their_digits() {
        let doc =
            from_str("a: 18446744073709551616\nb: -9223372036854775809\nc: 18446744073709551615\n")
                .expect("valid");
        let expected: Value = serde_yaml::from_str(
            "a: '18446744073709551616'\nb: '-9223372036854775809'\nc: 18446744073709551615\n",
        )
        .expect("valid");
        assert_eq!(doc.value, expected);
    }

    #[test]
    fn syntax_errors_and_second_documents_are_errors() {
        assert!(from_str("a: [1\n").is_err());
        assert!(from_str("a: 1\n---\nb: 2\n").is_err());
    }
}
