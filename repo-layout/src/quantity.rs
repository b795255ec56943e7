//! Quantities written by people: sizes (`256Mi`), cpu amounts (`0.5`, `500m`)
//! and durations (`10s`). Each parses from a YAML string or number and writes
//! back in a canonical form, so a write → load round trip keeps the value.

use schemars::{json_schema, JsonSchema, Schema, SchemaGenerator};
use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize, Serializer};
use std::borrow::Cow;
use std::fmt;

/// The words that start every quantity parse error; the loader uses them to
/// classify a deserialization failure as [`crate::Code::Quantity`].
pub(crate) const KINDS: [&str; 3] = ["size", "cpu", "duration"];

fn error(kind: &str, input: &str, expected: &str) -> String {
    format!("invalid {kind} `{input}`: {expected}")
}

/// Parses the whole number `digits` of `input`; one that is all digits but
/// does not fit in a `u64` is `too_large`, anything else not a number is
/// `expected`.
fn whole(
    kind: &str,
    input: &str,
    digits: &str,
    expected: &str,
    too_large: &str,
) -> Result<u64, String> {
    digits.parse().map_err(|_| {
        let all_digits = !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit());
        error(kind, input, if all_digits { too_large } else { expected })
    })
}

/// Why a size is too large.
const SIZE_TOO_LARGE: &str = "too large: a size must fit in 64 bits (at most 16777215Ti)";
/// Why a cpu amount is too large.
const CPU_TOO_LARGE: &str = "too large: at most 4294967 cores (4294967295m)";
/// Why a duration is too large.
const DURATION_TOO_LARGE: &str =
    "too large: a duration must fit in 64 bits of milliseconds (at most 213503982334d)";

const SIZE_UNITS: [(&str, u64); 8] = [
    ("Ti", 1 << 40),
    ("Gi", 1 << 30),
    ("Mi", 1 << 20),
    ("Ki", 1 << 10),
    ("T", 1_000_000_000_000),
    ("G", 1_000_000_000),
    ("M", 1_000_000),
    ("K", 1_000),
];

/// A size in bytes, written as `256Mi`, `1Gi`, `500M` or a plain byte count.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ByteSize(pub u64);

impl ByteSize {
    /// Parses `256Mi`, `1G`, `1024`.
    pub fn parse(input: &str) -> Result<Self, String> {
        let s = input.trim();
        let expected = "expected a whole number with an optional unit Ki, Mi, Gi, Ti, K, M, G or T (e.g. 256Mi)";
        let (digits, multiplier) = SIZE_UNITS
            .iter()
            .find_map(|(unit, m)| s.strip_suffix(unit).map(|d| (d, *m)))
            .unwrap_or((s, 1));
        let n = whole("size", input, digits, expected, SIZE_TOO_LARGE)?;
        n.checked_mul(multiplier)
            .map(ByteSize)
            .ok_or_else(|| error("size", input, SIZE_TOO_LARGE))
    }

    /// Mebibytes, rounded up.
    pub fn mib(self) -> u64 {
        self.0.div_ceil(1 << 20)
    }
}

impl fmt::Display for ByteSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let binary = &SIZE_UNITS[..4];
        match binary
            .iter()
            .find(|(_, m)| self.0 != 0 && self.0.is_multiple_of(*m))
        {
            Some((unit, m)) => write!(f, "{}{unit}", self.0 / m),
            None => write!(f, "{}", self.0),
        }
    }
}

/// A cpu amount in thousandths of a core, written as `0.5`, `2` or `500m`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Cpu(pub u32);

impl Cpu {
    /// Parses `0.5`, `2`, `250m`.
    pub fn parse(input: &str) -> Result<Self, String> {
        let s = input.trim();
        let expected = "expected cores as a number (0.5, 2) or millicores (500m)";
        if let Some(m) = s.strip_suffix('m') {
            let millis = whole("cpu", input, m, expected, CPU_TOO_LARGE)?;
            return u32::try_from(millis)
                .map(Cpu)
                .map_err(|_| error("cpu", input, CPU_TOO_LARGE));
        }
        let cores: f64 = s
            .parse()
            .ok()
            .filter(|c: &f64| !c.is_nan())
            .ok_or_else(|| error("cpu", input, expected))?;
        if cores < 0.0 {
            return Err(error("cpu", input, "out of range: cpu cannot be negative"));
        }
        let millis = cores * 1000.0;
        if millis > f64::from(u32::MAX) {
            return Err(error("cpu", input, CPU_TOO_LARGE));
        }
        if (millis - millis.round()).abs() > 1e-6 {
            return Err(error("cpu", input, "finer than a millicore"));
        }
        Ok(Cpu(millis.round() as u32))
    }
}

impl fmt::Display for Cpu {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_multiple_of(1000) {
            write!(f, "{}", self.0 / 1000)
        } else {
            write!(f, "{}m", self.0)
        }
    }
}

const DURATION_UNITS: [(&str, u64); 5] = [
    ("d", 86_400_000),
    ("h", 3_600_000),
    ("ms", 1),
    ("m", 60_000),
    ("s", 1_000),
];

/// A duration in milliseconds, written as `500ms`, `10s`, `5m`, `2h` or `30d`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Duration(pub u64);

impl Duration {
    /// Parses `500ms`, `10s`, `5m`, `2h`, `30d`.
    pub fn parse(input: &str) -> Result<Self, String> {
        let s = input.trim();
        let expected = "expected a whole number with a unit ms, s, m, h or d (e.g. 10s)";
        let (digits, multiplier) = DURATION_UNITS
            .iter()
            .find_map(|(unit, m)| s.strip_suffix(unit).map(|d| (d, *m)))
            .ok_or_else(|| error("duration", input, expected))?;
        let n = whole("duration", input, digits, expected, DURATION_TOO_LARGE)?;
        n.checked_mul(multiplier)
            .map(Duration)
            .ok_or_else(|| error("duration", input, DURATION_TOO_LARGE))
    }

    /// The duration as a `std::time::Duration`.
    pub fn as_std(self) -> std::time::Duration {
        std::time::Duration::from_millis(self.0)
    }
}

impl fmt::Display for Duration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let order = ["d", "h", "m", "s", "ms"];
        let unit = order
            .iter()
            .filter_map(|u| DURATION_UNITS.iter().find(|(n, _)| n == u))
            .find(|(_, m)| self.0.is_multiple_of(*m) && (self.0 != 0 || *m == 1000))
            .unwrap_or(&("ms", 1));
        write!(f, "{}{}", self.0 / unit.1, unit.0)
    }
}

/// Accepts a YAML string or number and hands its text to `parse`.
struct QuantityVisitor<T>(fn(&str) -> Result<T, String>);

impl<T> Visitor<'_> for QuantityVisitor<T> {
    type Value = T;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string or number")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<T, E> {
        (self.0)(v).map_err(E::custom)
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<T, E> {
        self.visit_str(&v.to_string())
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<T, E> {
        self.visit_str(&v.to_string())
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<T, E> {
        self.visit_str(&v.to_string())
    }
}

macro_rules! quantity_serde {
    ($ty:ident, $example:literal, $description:literal) => {
        impl<'de> Deserialize<'de> for $ty {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                d.deserialize_any(QuantityVisitor($ty::parse))
            }
        }

        impl Serialize for $ty {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_str(self)
            }
        }

        impl JsonSchema for $ty {
            fn schema_name() -> Cow<'static, str> {
                stringify!($ty).into()
            }

            fn json_schema(_: &mut SchemaGenerator) -> Schema {
                json_schema!({
                    "type": ["string", "number"],
                    "description": $description,
                    "examples": [$example],
                })
            }
        }
    };
}

quantity_serde!(
    ByteSize,
    "256Mi",
    "A size: a whole number with an optional unit Ki, Mi, Gi, Ti, K, M, G or T."
);
quantity_serde!(
    Cpu,
    "0.5",
    "Cpu cores as a number (0.5, 2) or millicores (500m)."
);
quantity_serde!(
    Duration,
    "10s",
    "A duration: a whole number with a unit ms, s, m, h or d."
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_and_print_canonically() {
        assert_eq!(ByteSize::parse("256Mi"), Ok(ByteSize(256 << 20)));
        assert_eq!(ByteSize::parse("1G"), Ok(ByteSize(1_000_000_000)));
        assert_eq!(ByteSize::parse("1024"), Ok(ByteSize(1024)));
        assert_eq!(ByteSize(1 << 30).to_string(), "1Gi");
        assert_eq!(ByteSize(1500).to_string(), "1500");
        assert!(ByteSize::parse("12Zb").is_err());
        assert!(ByteSize::parse("99999999999Ti").is_err());
        assert!(ByteSize::parse("-1Mi").is_err());
    }

    #[test]
    fn quantities_too_large_for_their_type_are_errors() {
        fn too_large<T>(r: Result<T, String>) -> bool {
            r.is_err_and(|e| e.contains("too large"))
        }
        assert!(too_large(ByteSize::parse("99999999999Ti")));
        assert!(too_large(ByteSize::parse("16777216Ti")));
        assert_eq!(
            ByteSize::parse("16777215Ti"),
            Ok(ByteSize(16_777_215 << 40))
        );
        assert!(too_large(ByteSize::parse("18446744073709551616")));
        assert!(too_large(ByteSize::parse("99999999999999999999999Mi")));
        assert_eq!(
            ByteSize::parse("18446744073709551615"),
            Ok(ByteSize(u64::MAX))
        );
        assert!(too_large(Cpu::parse("4294968")));
        assert!(too_large(Cpu::parse("1e300")));
        assert!(too_large(Cpu::parse("inf")));
        assert!(too_large(Cpu::parse("4294967296m")));
        assert!(too_large(Cpu::parse("99999999999999999999999m")));
        assert_eq!(Cpu::parse("4294967295m"), Ok(Cpu(u32::MAX)));
        assert_eq!(Cpu::parse("4294967"), Ok(Cpu(4_294_967_000)));
        assert!(too_large(Duration::parse("213503982335d")));
        assert!(too_large(Duration::parse("99999999999999999999ms")));
        assert_eq!(
            Duration::parse("213503982334d"),
            Ok(Duration(213_503_982_334 * 86_400_000))
        );
    }

    #[test]
    fn cpu_parses_cores_and_millicores() {
        assert_eq!(Cpu::parse("0.5"), Ok(Cpu(500)));
        assert_eq!(Cpu::parse("250m"), Ok(Cpu(250)));
        assert_eq!(Cpu::parse("2"), Ok(Cpu(2000)));
        assert_eq!(Cpu(2000).to_string(), "2");
        assert_eq!(Cpu(250).to_string(), "250m");
        assert!(Cpu::parse("0.0001").is_err());
        assert!(Cpu::parse("lots").is_err());
        assert!(Cpu::parse("-1").is_err());
    }

    #[test]
    fn durations_parse_and_print_canonically() {
        assert_eq!(Duration::parse("10s"), Ok(Duration(10_000)));
        assert_eq!(Duration::parse("500ms"), Ok(Duration(500)));
        assert_eq!(Duration::parse("2m"), Ok(Duration(120_000)));
        assert_eq!(Duration(120_000).to_string(), "2m");
        assert_eq!(Duration(1500).to_string(), "1500ms");
        assert_eq!(Duration(0).to_string(), "0s");
        assert!(Duration::parse("10").is_err());
    }
}
