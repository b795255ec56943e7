//! Typed IDs: a host ID, an instance ID and a volume ID are different things
//! even though each is a string on the wire, so that one cannot be passed
//! where another is expected. Each serializes as its plain string
//! (`#[serde(transparent)]`), borrows as `str` (map lookups by `&str` work),
//! and prints as itself. A release number ([`ReleaseNo`]) is typed the same
//! way: it serializes and prints as its plain number.

use serde::{Deserialize, Serialize};
use std::borrow::Borrow;
use std::fmt;
use std::ops::Deref;

macro_rules! string_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            /// The ID as a string slice.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl Deref for $name {
            type Target = str;
            fn deref(&self) -> &str {
                &self.0
            }
        }

        impl Borrow<str> for $name {
            fn borrow(&self) -> &str {
                &self.0
            }
        }

        impl Borrow<String> for $name {
            fn borrow(&self) -> &String {
                &self.0
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl AsRef<std::path::Path> for $name {
            fn as_ref(&self) -> &std::path::Path {
                std::path::Path::new(&self.0)
            }
        }

        impl From<String> for $name {
            fn from(id: String) -> Self {
                $name(id)
            }
        }

        impl From<&str> for $name {
            fn from(id: &str) -> Self {
                $name(id.to_string())
            }
        }

        impl From<$name> for String {
            fn from(id: $name) -> String {
                id.0
            }
        }

        impl PartialEq<str> for $name {
            fn eq(&self, other: &str) -> bool {
                self.0 == other
            }
        }

        impl PartialEq<&str> for $name {
            fn eq(&self, other: &&str) -> bool {
                self.0 == *other
            }
        }

        impl PartialEq<String> for $name {
            fn eq(&self, other: &String) -> bool {
                &self.0 == other
            }
        }

        impl PartialEq<$name> for str {
            fn eq(&self, other: &$name) -> bool {
                self == other.0
            }
        }

        impl PartialEq<$name> for &str {
            fn eq(&self, other: &$name) -> bool {
                *self == other.0
            }
        }
    };
}

string_id!(
    /// A host's ID: the name it enrolled with (`h1`), unique in the fleet.
    HostId
);
string_id!(
    /// An instance's ID (`ins_000042`), minted by the controller in increasing order.
    InstanceId
);
string_id!(
    /// A volume's ID (`vol_…`), named by workload, volume and slot on its host.
    VolumeId
);

/// A release number of one (app, env): 1, 2, 3, ... Serializes and prints
/// as its plain number.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct ReleaseNo(u64);

impl ReleaseNo {
    /// The first release of an (app, env).
    pub const FIRST: ReleaseNo = ReleaseNo(1);

    /// Release number `n`.
    pub const fn new(n: u64) -> Self {
        ReleaseNo(n)
    }

    /// The number.
    pub const fn get(self) -> u64 {
        self.0
    }

    /// The release after this one.
    pub const fn next(self) -> Self {
        ReleaseNo(self.0 + 1)
    }
}

impl fmt::Display for ReleaseNo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl From<u64> for ReleaseNo {
    fn from(n: u64) -> Self {
        ReleaseNo(n)
    }
}

impl From<ReleaseNo> for u64 {
    fn from(n: ReleaseNo) -> u64 {
        n.0
    }
}

impl PartialEq<u64> for ReleaseNo {
    fn eq(&self, other: &u64) -> bool {
        self.0 == *other
    }
}

impl PartialEq<ReleaseNo> for u64 {
    fn eq(&self, other: &ReleaseNo) -> bool {
        *self == other.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    #[test]
    fn ids_serialize_as_plain_strings_and_look_up_by_str() {
        let id = InstanceId::from("ins_000001");
        assert_eq!(
            serde_json::to_string(&id).unwrap_or_default(),
            "\"ins_000001\""
        );
        let back: InstanceId = serde_json::from_str("\"ins_000001\"").unwrap_or_default();
        assert_eq!(back, id);
        let map = BTreeMap::from([(HostId::from("h1"), 1)]);
        assert_eq!(map.get("h1"), Some(&1));
        assert_eq!(id, "ins_000001");
        assert_eq!(
            format!("{id} on {}", HostId::from("h1")),
            "ins_000001 on h1"
        );
    }

    #[test]
    fn release_numbers_serialize_and_print_as_plain_numbers() {
        let n = ReleaseNo::new(7);
        assert_eq!(serde_json::to_string(&n).unwrap_or_default(), "7");
        let back: ReleaseNo = serde_json::from_str("7").unwrap_or_default();
        assert_eq!(back, n);
        assert_eq!(format!("{n} {:>3}", n.next()), "7   8");
        // Store keys pad it: the same bytes as the plain number's.
        assert_eq!(format!("{:010}", ReleaseNo::new(42)), format!("{:010}", 42));
        assert!(ReleaseNo::FIRST < n);
        assert_eq!(n, 7);
        assert_eq!(7, n);
    }
}
