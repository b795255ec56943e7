//! Who is who in the fleet: roles, node names and the DNS names certificates carry.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// A node name or role that is not valid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    /// A node name is not a DNS label.
    #[error("{0:?} is not a valid node name: use 1 to 63 lowercase letters, digits and '-', not starting or ending with '-'")]
    InvalidName(String),
    /// A role string is not one of the known roles.
    #[error("{0:?} is not a role: expected controller, host or edge")]
    UnknownRole(String),
}

/// The DNS name every controller certificate carries besides its own, so that hosts and
/// edges can dial the controller without knowing its node name.
pub const CONTROLLER_SERVER_NAME: &str = "controller.vt";

/// The part a node plays in the fleet; carried in its certificate.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// The fleet controller.
    Controller,
    /// A host that runs microVMs.
    Host,
    /// An edge node that accepts public traffic.
    Edge,
}

impl Role {
    /// The role's lowercase name, as used in DNS names and tokens.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Controller => "controller",
            Role::Host => "host",
            Role::Edge => "edge",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Role {
    type Err = NameError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "controller" => Ok(Role::Controller),
            "host" => Ok(Role::Host),
            "edge" => Ok(Role::Edge),
            other => Err(NameError::UnknownRole(other.to_owned())),
        }
    }
}

/// A node's identity as its certificate states it: a role and a name.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct PeerId {
    /// The node's role.
    pub role: Role,
    /// The node's name, a DNS label.
    pub name: String,
}

impl PeerId {
    /// Builds an identity, checking that `name` is a DNS label (see [`validate_name`]).
    pub fn new(role: Role, name: &str) -> Result<Self, NameError> {
        validate_name(name)?;
        Ok(PeerId {
            role,
            name: name.to_owned(),
        })
    }

    /// The DNS name `<name>.<role>.vt` that the node's certificate carries; dial a host
    /// or an edge with it as the server name.
    pub fn dns_name(&self) -> String {
        format!("{}.{}.vt", self.name, self.role)
    }

    /// Reads an identity back from a `<name>.<role>.vt` DNS name; `None` for other names.
    pub fn from_dns_name(dns: &str) -> Option<Self> {
        let (name, role) = dns.strip_suffix(".vt")?.split_once('.')?;
        PeerId::new(role.parse().ok()?, name).ok()
    }
}

impl fmt::Display for PeerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.role, self.name)
    }
}

/// Checks that a node name is a DNS label: 1 to 63 lowercase ASCII letters, digits and
/// `-`, neither first nor last.
pub fn validate_name(name: &str) -> Result<(), NameError> {
    let ok = !name.is_empty()
        && name.len() <= 63
        && !name.starts_with('-')
        && !name.ends_with('-')
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(NameError::InvalidName(name.to_owned()))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn dns_names_round_trip() {
        let id = PeerId::new(Role::Host, "node-1").unwrap();
        assert_eq!(id.dns_name(), "node-1.host.vt");
        assert_eq!(PeerId::from_dns_name("node-1.host.vt"), Some(id));
        assert_eq!(PeerId::from_dns_name(CONTROLLER_SERVER_NAME), None);
        assert_eq!(PeerId::from_dns_name("a.b.host.vt"), None);
        assert_eq!(PeerId::from_dns_name("a.nobody.vt"), None);
        assert_eq!(PeerId::from_dns_name("localhost"), None);
    }

    #[test]
    fn names_must_be_dns_labels() {
        for bad in ["", "-a", "a-", "A", "a.b", "a_b", &"x".repeat(64)] {
            assert!(validate_name(bad).is_err(), "{bad:?} should be refused");
        }
        for good in ["a", "node-1", "0", &"x".repeat(63)] {
            assert!(validate_name(good).is_ok(), "{good:?} should be accepted");
        }
    }

    #[test]
    fn roles_parse_and_print() {
        for role in [Role::Controller, Role::Host, Role::Edge] {
            assert_eq!(role.to_string().parse::<Role>().unwrap(), role);
        }
        let err = "admin".parse::<Role>().unwrap_err();
        assert_eq!(
            err.to_string(),
            "\"admin\" is not a role: expected controller, host or edge"
        );
    }
}
