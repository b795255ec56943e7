//! Who may join the fleet, and who may hold a session with it.
//!
//! Every enrolled host and edge has a [`NodeRecord`] naming its current
//! certificate by fingerprint. A join token's nonce is recorded when it is
//! used ([`UsedJoin`]), so a token joins once; a name that is enrolled
//! cannot be enrolled again until an operator removes it; a session is
//! accepted only from the certificate on record, and never from a revoked
//! node. The rules are [`decide_join`] and [`decide_session`], functions of
//! what is recorded; the controller keeps the records.

use super::Controller;
use serde::{Deserialize, Serialize};
use vt_plan::events::{kind, Event};
use vt_plan::Millis;
use vt_wire::Role;

/// Store key prefix of node records (`node/<role>/<name>`).
const NODES: &str = "node/";
/// Store key prefix of used join tokens (`join/<nonce>`).
const JOINS: &str = "join/";

/// An enrolled host or edge.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeRecord {
    /// Host or edge.
    pub role: Role,
    /// Its name (a DNS label).
    pub name: String,
    /// The SHA-256 fingerprint (hex) of the certificate it was issued.
    pub fingerprint: String,
    /// When it enrolled.
    pub enrolled: Millis,
    /// When its certificate expires.
    pub expires: Millis,
    /// When an operator revoked it, if one did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoked: Option<Millis>,
}

/// A join token that was used.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UsedJoin {
    /// Who used it.
    pub role: Role,
    /// The name it enrolled.
    pub name: String,
    /// When.
    pub at: Millis,
    /// When the token expires (after that the record can go: the token is
    /// refused as expired anyway).
    pub expires: Millis,
}

/// A verified join token's request: the token is genuine, unexpired and of
/// the right role, and a certificate was made for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Join<'a> {
    /// Host or edge.
    pub role: Role,
    /// The name asked for.
    pub name: &'a str,
    /// The token's nonce.
    pub nonce: &'a str,
    /// When the token expires.
    pub token_expires: Millis,
    /// The new certificate's fingerprint (hex).
    pub fingerprint: &'a str,
    /// When the new certificate expires.
    pub cert_expires: Millis,
}

/// Why a join is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JoinRefusal {
    /// The token was used before.
    #[error(
        "this join token was used already (by {role} {name}): mint a new one with \
         `vt fleet token create --role {role}`"
    )]
    Reused {
        /// Who used it.
        role: Role,
        /// The name it enrolled.
        name: String,
    },
    /// The name is enrolled (possibly by someone else holding a token).
    #[error(
        "{role} {name} is enrolled already: pick another name, or remove it first \
         (`vt {role}s remove {name}`)"
    )]
    NameTaken {
        /// Host or edge.
        role: Role,
        /// The name.
        name: String,
    },
    /// The records cannot be read (a join is not worth a guess).
    #[error("the controller cannot read its records of joins: {0}")]
    Unreadable(String),
}

/// Why a session is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SessionRefusal {
    /// No record of the node: never enrolled here, or removed.
    #[error("{role} {name} is not enrolled (removed?): join again with a new token")]
    NotEnrolled {
        /// Host or edge.
        role: Role,
        /// The name.
        name: String,
    },
    /// An operator revoked it.
    #[error("{role} {name} was revoked")]
    Revoked {
        /// Host or edge.
        role: Role,
        /// The name.
        name: String,
    },
    /// It presents a certificate other than the one on record (the name was
    /// removed and enrolled again).
    #[error(
        "{role} {name} presents a certificate the fleet no longer knows (enrolled again since?)"
    )]
    Superseded {
        /// Host or edge.
        role: Role,
        /// The name.
        name: String,
    },
}

/// A node an operator named that has no record.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("no {role} named {name} is enrolled")]
pub struct NoSuchNode {
    /// Host or edge.
    pub role: Role,
    /// The name.
    pub name: String,
}

/// Whether `join` may enrol, given the record of its token's nonce and of
/// its name.
pub fn decide_join(
    join: &Join<'_>,
    used: Option<&UsedJoin>,
    existing: Option<&NodeRecord>,
) -> Result<(), JoinRefusal> {
    if let Some(used) = used {
        return Err(JoinRefusal::Reused {
            role: used.role,
            name: used.name.clone(),
        });
    }
    if existing.is_some() {
        return Err(JoinRefusal::NameTaken {
            role: join.role,
            name: join.name.to_string(),
        });
    }
    Ok(())
}

/// Whether a node presenting the certificate `fingerprint` may hold a
/// session, given its record.
pub fn decide_session(
    role: Role,
    name: &str,
    fingerprint: &str,
    record: Option<&NodeRecord>,
) -> Result<(), SessionRefusal> {
    let (role, name) = (role, name.to_string());
    match record {
        None => Err(SessionRefusal::NotEnrolled { role, name }),
        Some(r) if r.revoked.is_some() => Err(SessionRefusal::Revoked { role, name }),
        Some(r) if r.fingerprint != fingerprint => Err(SessionRefusal::Superseded { role, name }),
        Some(_) => Ok(()),
    }
}

fn node_key(role: Role, name: &str) -> String {
    format!("{NODES}{role}/{name}")
}

impl Controller {
    /// Enrols `join` if [`decide_join`] allows it: records the token as used
    /// and the node with its certificate (`node.enrolled`); a refusal is a
    /// `node.refused` event. The records are read from the store: flush
    /// before the next join.
    pub fn admit_join(&mut self, join: &Join<'_>, now: Millis) -> Result<(), JoinRefusal> {
        let used = self
            .store
            .get::<UsedJoin>(&format!("{JOINS}{}", join.nonce));
        let existing = self
            .store
            .get::<NodeRecord>(&node_key(join.role, join.name));
        let decided = match (used, existing) {
            (Ok(used), Ok(existing)) => decide_join(join, used.as_ref(), existing.as_ref()),
            // Unreadable records refuse: a join is not worth a guess.
            (Err(e), _) | (_, Err(e)) => Err(JoinRefusal::Unreadable(e.to_string())),
        };
        if let Err(refusal) = &decided {
            self.journal.emit(
                Event::new(kind::NODE_REFUSED, now, format!("join refused: {refusal}"))
                    .host(join.name),
            );
            return decided;
        }
        self.journal.put(
            format!("{JOINS}{}", join.nonce),
            &UsedJoin {
                role: join.role,
                name: join.name.to_string(),
                at: now,
                expires: join.token_expires,
            },
        );
        self.journal.put(
            node_key(join.role, join.name),
            &NodeRecord {
                role: join.role,
                name: join.name.to_string(),
                fingerprint: join.fingerprint.to_string(),
                enrolled: now,
                expires: join.cert_expires,
                revoked: None,
            },
        );
        self.journal.emit(
            Event::new(
                kind::NODE_ENROLLED,
                now,
                format!("{} {} enrolled with a join token", join.role, join.name),
            )
            .host(join.name),
        );
        Ok(())
    }

    /// Whether the node `role`/`name` presenting the certificate
    /// `fingerprint` may hold a session ([`decide_session`]).
    pub fn check_session(
        &self,
        role: Role,
        name: &str,
        fingerprint: &str,
    ) -> Result<(), SessionRefusal> {
        let record = self
            .store
            .get::<NodeRecord>(&node_key(role, name))
            .ok()
            .flatten();
        decide_session(role, name, fingerprint, record.as_ref())
    }

    /// Records `role`/`name`'s renewed certificate (`fingerprint`, expiring
    /// at `expires`): it is the one its sessions are accepted from now on.
    /// `node.renewed`. A revoked node is not renewed.
    pub fn renewed_node(
        &mut self,
        role: Role,
        name: &str,
        (fingerprint, expires): (&str, Millis),
        now: Millis,
    ) -> Result<(), SessionRefusal> {
        let record = self.node_record(role, name).ok();
        let mut record = match record {
            Some(r) if r.revoked.is_none() => r,
            Some(_) => {
                return Err(SessionRefusal::Revoked {
                    role,
                    name: name.to_string(),
                })
            }
            None => {
                return Err(SessionRefusal::NotEnrolled {
                    role,
                    name: name.to_string(),
                })
            }
        };
        record.fingerprint = fingerprint.to_string();
        record.expires = expires;
        self.journal.put(node_key(role, name), &record);
        self.journal.emit(
            Event::new(
                kind::NODE_RENEWED,
                now,
                format!("{role} {name} renewed its certificate"),
            )
            .host(name),
        );
        Ok(())
    }

    /// Revokes a node: its sessions are refused from now on (the daemon
    /// ends the open one). `node.revoked`.
    pub fn revoke_node(&mut self, role: Role, name: &str, now: Millis) -> Result<(), NoSuchNode> {
        let mut record = self.node_record(role, name)?;
        if record.revoked.is_none() {
            record.revoked = Some(now);
            self.journal.put(node_key(role, name), &record);
            self.journal.emit(
                Event::new(
                    kind::NODE_REVOKED,
                    now,
                    format!("{role} {name} revoked: its sessions are refused"),
                )
                .host(name),
            );
        }
        Ok(())
    }

    /// Removes a node's record, so that its name can be enrolled again;
    /// its certificate is refused from now on. `node.removed`.
    pub fn remove_node(&mut self, role: Role, name: &str, now: Millis) -> Result<(), NoSuchNode> {
        self.node_record(role, name)?;
        self.journal.delete(node_key(role, name));
        self.journal.emit(
            Event::new(
                kind::NODE_REMOVED,
                now,
                format!(
                    "{role} {name} removed: its certificate is refused and the name can join again"
                ),
            )
            .host(name),
        );
        Ok(())
    }

    /// Every enrolled node, by role and name.
    pub fn nodes(&self) -> Vec<NodeRecord> {
        self.store
            .scan::<NodeRecord>(NODES)
            .map(|all| all.into_iter().map(|(_, r)| r).collect())
            .unwrap_or_default()
    }

    /// Forgets used join tokens that have expired (they are refused as
    /// expired anyway).
    pub(super) fn forget_expired_joins(&mut self, now: Millis) {
        let expired: Vec<String> = self
            .store
            .scan::<UsedJoin>(JOINS)
            .map(|all| {
                all.into_iter()
                    .filter(|(_, used)| used.expires < now)
                    .map(|(key, _)| key)
                    .collect()
            })
            .unwrap_or_default();
        for key in expired {
            self.journal.delete(key);
        }
    }

    /// The record of `role`/`name`.
    pub fn node_record(&self, role: Role, name: &str) -> Result<NodeRecord, NoSuchNode> {
        self.store
            .get::<NodeRecord>(&node_key(role, name))
            .ok()
            .flatten()
            .ok_or_else(|| NoSuchNode {
                role,
                name: name.to_string(),
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn join<'a>(name: &'a str, nonce: &'a str) -> Join<'a> {
        Join {
            role: Role::Host,
            name,
            nonce,
            token_expires: 10_000,
            fingerprint: "aa",
            cert_expires: 99_000,
        }
    }

    fn record(name: &str, fingerprint: &str, revoked: Option<Millis>) -> NodeRecord {
        NodeRecord {
            role: Role::Host,
            name: name.into(),
            fingerprint: fingerprint.into(),
            enrolled: 1,
            expires: 99_000,
            revoked,
        }
    }

    #[test]
    fn a_token_joins_once_and_a_name_once() {
        assert_eq!(decide_join(&join("h1", "n1"), None, None), Ok(()));
        let used = UsedJoin {
            role: Role::Host,
            name: "h1".into(),
            at: 5,
            expires: 10_000,
        };
        let reused = decide_join(&join("h2", "n1"), Some(&used), None).expect_err("reused");
        assert!(
            reused.to_string().contains("used already (by host h1)"),
            "{reused}"
        );
        let taken = decide_join(&join("h1", "n2"), None, Some(&record("h1", "aa", None)));
        assert_eq!(
            taken,
            Err(JoinRefusal::NameTaken {
                role: Role::Host,
                name: "h1".into()
            })
        );
        assert!(taken
            .expect_err("taken")
            .to_string()
            .contains("`vt hosts remove h1`"));
    }

    #[test]
    fn only_the_certificate_on_record_of_an_unrevoked_node_holds_a_session() {
        let ok = record("h1", "aa", None);
        assert_eq!(decide_session(Role::Host, "h1", "aa", Some(&ok)), Ok(()));
        assert!(matches!(
            decide_session(Role::Host, "h1", "bb", Some(&ok)),
            Err(SessionRefusal::Superseded { .. })
        ));
        assert!(matches!(
            decide_session(Role::Host, "h1", "aa", Some(&record("h1", "aa", Some(7)))),
            Err(SessionRefusal::Revoked { .. })
        ));
        assert!(matches!(
            decide_session(Role::Host, "h1", "aa", None),
            Err(SessionRefusal::NotEnrolled { .. })
        ));
    }
}
