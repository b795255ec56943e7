//! API tokens: who may call the API, for which org, with which role.
//!
//! A token reads `vtt_<id>_<secret>`; the controller keeps its record under
//! its ID with the SHA-256 of the secret, never the secret. A role is a set
//! of [`Capability`]s ([`Role::capabilities`]); every API route declares the
//! one it needs. An org token sees its org only; the fleet's bootstrap token
//! (`fleet.json`'s `api_token`) and nothing else holds `fleet-admin`.

use super::Controller;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use vt_plan::events::{kind, Event};
use vt_plan::Millis;

/// Store key prefix of token records (`token/<id>`).
const TOKENS: &str = "token/";
/// What every API token's text starts with.
pub const TOKEN_PREFIX: &str = "vtt_";

/// What an API route may need.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Capability {
    /// Read the state of the token's org: status, releases, events, volumes, endpoints.
    Read,
    /// Read the logs of the org's instances.
    Logs,
    /// Run commands in the org's instances.
    Exec,
    /// Destroy the org's volumes.
    VolumesDestroy,
    /// Everything about the fleet itself: hosts, edges, tokens.
    FleetAdmin,
}

/// What a token may do within its org.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Reads.
    Viewer,
    /// Reads, logs, exec.
    Deployer,
    /// Reads, logs, exec, destroying volumes.
    Admin,
}

impl Role {
    /// The capabilities of the role.
    pub fn capabilities(self) -> &'static [Capability] {
        use Capability::*;
        match self {
            Role::Viewer => &[Read],
            Role::Deployer => &[Read, Logs, Exec],
            Role::Admin => &[Read, Logs, Exec, VolumesDestroy],
        }
    }
}

/// A token as the controller keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenRecord {
    /// Its ID (`tok_…`), shown in audit events.
    pub id: String,
    /// The org it may act on.
    pub org: String,
    /// What it may do there.
    pub role: Role,
    /// SHA-256 (hex) of its secret.
    pub hash: String,
    /// When it was created.
    pub created: Millis,
    /// When it expires, if it does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires: Option<Millis>,
    /// When it was revoked, if it was.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoked: Option<Millis>,
}

/// A token's text split into its ID and secret.
pub fn parse_token(text: &str) -> Option<(&str, &str)> {
    let rest = text.strip_prefix(TOKEN_PREFIX)?;
    let (id, secret) = rest.rsplit_once('_')?;
    (id.starts_with("tok") && !secret.is_empty()).then_some((id, secret))
}

/// SHA-256 (hex) of a secret.
pub fn hash_secret(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

/// Why a presented token is not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenRefusal {
    /// Unknown ID, or the secret does not match.
    #[error("unknown API token")]
    Unknown,
    /// Past its expiry.
    #[error("the API token {0} expired")]
    Expired(String),
    /// Revoked by an operator.
    #[error("the API token {0} was revoked")]
    Revoked(String),
}

/// Whether `record` accepts `secret` at `now`.
pub fn check_token(
    record: Option<&TokenRecord>,
    secret: &str,
    now: Millis,
) -> Result<TokenRecord, TokenRefusal> {
    let record = record.ok_or(TokenRefusal::Unknown)?;
    if !vt_wire::constant_time_eq(hash_secret(secret).as_bytes(), record.hash.as_bytes()) {
        return Err(TokenRefusal::Unknown);
    }
    if record.revoked.is_some() {
        return Err(TokenRefusal::Revoked(record.id.clone()));
    }
    if record.expires.is_some_and(|e| e <= now) {
        return Err(TokenRefusal::Expired(record.id.clone()));
    }
    Ok(record.clone())
}

impl Controller {
    /// Records a new token with the secret `secret` (random, made by the
    /// caller); `audit.token.created`.
    pub fn create_token(
        &mut self,
        (id, secret): (&str, &str),
        (org, role): (&str, Role),
        expires: Option<Millis>,
        (by, now): (&str, Millis),
    ) -> TokenRecord {
        let record = TokenRecord {
            id: id.to_string(),
            org: org.to_string(),
            role,
            hash: hash_secret(secret),
            created: now,
            expires,
            revoked: None,
        };
        self.journal.put(format!("{TOKENS}{id}"), &record);
        self.journal.emit(
            Event::new(
                kind::AUDIT_TOKEN_CREATED,
                now,
                format!("token {id} created for org {org} as {role:?} by {by}").to_lowercase(),
            )
            .fields(serde_json::json!({"token": by, "created": id, "org": org})),
        );
        record
    }

    /// The token with ID `id`.
    pub fn token(&self, id: &str) -> Option<TokenRecord> {
        self.store.get(&format!("{TOKENS}{id}")).ok().flatten()
    }

    /// Every token (hashes only).
    pub fn tokens(&self) -> Vec<TokenRecord> {
        self.store
            .scan::<TokenRecord>(TOKENS)
            .map(|all| all.into_iter().map(|(_, t)| t).collect())
            .unwrap_or_default()
    }

    /// Revokes token `id`; `audit.token.revoked`. `None` when there is no
    /// such token.
    pub fn revoke_token(&mut self, id: &str, (by, now): (&str, Millis)) -> Option<TokenRecord> {
        let mut record = self.token(id)?;
        if record.revoked.is_none() {
            record.revoked = Some(now);
            self.journal.put(format!("{TOKENS}{id}"), &record);
            self.journal.emit(
                Event::new(
                    kind::AUDIT_TOKEN_REVOKED,
                    now,
                    format!("token {id} revoked by {by}"),
                )
                .fields(serde_json::json!({"token": by, "revoked": id})),
            );
        }
        Some(record)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(revoked: Option<Millis>, expires: Option<Millis>) -> TokenRecord {
        TokenRecord {
            id: "tok_1".into(),
            org: "acme".into(),
            role: Role::Viewer,
            hash: hash_secret("s3cret"),
            created: 0,
            expires,
            revoked,
        }
    }

    #[test]
    fn tokens_parse_and_only_the_right_secret_of_a_live_token_passes() {
        assert_eq!(parse_token("vtt_tok_1_s3cret"), Some(("tok_1", "s3cret")));
        assert_eq!(parse_token("vta_abc"), None);
        assert_eq!(parse_token("vtt_nope"), None);
        let live = record(None, Some(100));
        assert_eq!(check_token(Some(&live), "s3cret", 50), Ok(live.clone()));
        assert_eq!(
            check_token(Some(&live), "guess", 50),
            Err(TokenRefusal::Unknown)
        );
        assert_eq!(check_token(None, "s3cret", 50), Err(TokenRefusal::Unknown));
        assert!(matches!(
            check_token(Some(&live), "s3cret", 100),
            Err(TokenRefusal::Expired(_))
        ));
        assert!(matches!(
            check_token(Some(&record(Some(7), None)), "s3cret", 50),
            Err(TokenRefusal::Revoked(_))
        ));
    }

    #[test]
    fn roles_grow_by_capability_and_none_is_fleet_admin() {
        use Capability::*;
        assert_eq!(Role::Viewer.capabilities(), [Read]);
        assert!(Role::Deployer.capabilities().contains(&Exec));
        assert!(!Role::Deployer.capabilities().contains(&VolumesDestroy));
        for role in [Role::Viewer, Role::Deployer, Role::Admin] {
            assert!(!role.capabilities().contains(&FleetAdmin));
        }
    }
}
