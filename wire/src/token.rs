//! Join tokens: what `vt fleet token create --role host|edge` prints and what a new host
//! or edge presents, once, to get its certificate.
//!
//! A token reads `vtj_<claims>.<tag>`: `<claims>` is the base64url (no padding) of a JSON
//! [`Claims`] object (role, expiry, nonce and the CA fingerprint the new node pins), and
//! `<tag>` the base64url of HMAC-SHA256 over `vtj_<claims>`, keyed with a 32-byte secret
//! kept in the controller's state directory. Only that controller can mint or verify one;
//! anyone holding it can read its claims, so the node can learn which CA to pin.

use std::fmt;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use super::ca::Fingerprint;
use super::error::WireError;
use super::files::{self, Mode};
use super::role::Role;

/// File name of the join-token secret in the controller's state directory, mode 0600.
pub const TOKEN_SECRET_FILE: &str = "join-token.key";

/// What every join token starts with.
const PREFIX: &str = "vtj_";

/// The controller's secret key for minting and verifying join tokens.
pub struct TokenSecret([u8; 32]);

impl TokenSecret {
    /// A fresh random secret.
    pub fn generate() -> Result<Self, WireError> {
        let mut bytes = [0u8; 32];
        getrandom::fill(&mut bytes).map_err(WireError::Random)?;
        Ok(TokenSecret(bytes))
    }

    /// Loads `join-token.key` from the controller's state directory, creating it (mode
    /// 0600) on first use.
    pub fn load_or_create(dir: &Path) -> Result<Self, WireError> {
        let path = dir.join(TOKEN_SECRET_FILE);
        if !path.exists() {
            let secret = Self::generate()?;
            files::write(&path, &secret.0, Mode::Private)?;
            return Ok(secret);
        }
        let bytes = files::read(&path)?;
        let bytes = <[u8; 32]>::try_from(bytes.as_slice()).map_err(|_| {
            WireError::TokenSecret(format!(
                "{} holds {} bytes, not 32",
                path.display(),
                bytes.len()
            ))
        })?;
        Ok(TokenSecret(bytes))
    }

    fn mac(&self, message: &[u8]) -> Result<Hmac<Sha256>, WireError> {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.0)
            .map_err(|e| WireError::TokenSecret(e.to_string()))?;
        mac.update(message);
        Ok(mac)
    }
}

impl fmt::Debug for TokenSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TokenSecret(..)")
    }
}

/// What a join token says. Readable by anyone who holds the token; trustworthy only
/// after [`Token::verify`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Claims {
    /// The role the token lets a node enrol as (host or edge).
    pub role: Role,
    /// Expiry, in seconds since 1970.
    pub expires: u64,
    /// Random bytes (base64url) that make every token unique.
    pub nonce: String,
    /// The fleet CA's fingerprint, which the enrolling node pins.
    pub ca: Fingerprint,
    /// The only name a node may enrol under with this token, if bound.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Where the controller listens for hosts and edges (QUIC), so that a
    /// node needs the token alone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub controller: Option<std::net::SocketAddr>,
}

/// What a token may carry besides its role and expiry.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Binding {
    /// Bind the token to this node name.
    pub name: Option<String>,
    /// The controller's QUIC address, for the node to dial.
    pub controller: Option<std::net::SocketAddr>,
}

/// A join token: its text and the claims read from it.
#[derive(Clone)]
pub struct Token {
    text: String,
    claims: Claims,
}

impl Token {
    /// Mints a token for `role` (host or edge) that expires `ttl` after `now`,
    /// carrying `binding`.
    pub fn mint(
        role: Role,
        ttl: Duration,
        now: SystemTime,
        ca: Fingerprint,
        binding: &Binding,
        secret: &TokenSecret,
    ) -> Result<Token, WireError> {
        if role == Role::Controller {
            return Err(WireError::TokenForController);
        }
        let mut nonce = [0u8; 16];
        getrandom::fill(&mut nonce).map_err(WireError::Random)?;
        let claims = Claims {
            role,
            expires: unix_secs(now)?.saturating_add(ttl.as_secs()),
            nonce: URL_SAFE_NO_PAD.encode(nonce),
            ca,
            name: binding.name.clone(),
            controller: binding.controller,
        };
        let json = serde_json::to_vec(&claims).map_err(WireError::Encode)?;
        let signed = format!("{PREFIX}{}", URL_SAFE_NO_PAD.encode(json));
        let tag = secret.mac(signed.as_bytes())?.finalize().into_bytes();
        Ok(Token {
            text: format!("{signed}.{}", URL_SAFE_NO_PAD.encode(tag)),
            claims,
        })
    }

    /// Reads a token's claims without verifying it (a node does this to learn which CA
    /// to pin; only the controller can verify).
    pub fn parse(text: &str) -> Result<Token, WireError> {
        let text = text.trim();
        let (signed, _tag) = text
            .split_once('.')
            .ok_or(WireError::TokenMalformed("it has no '.' before its tag"))?;
        let payload = signed
            .strip_prefix(PREFIX)
            .ok_or(WireError::TokenMalformed("it does not start with vtj_"))?;
        let json = URL_SAFE_NO_PAD
            .decode(payload)
            .map_err(|_| WireError::TokenMalformed("its claims are not base64url"))?;
        let claims = serde_json::from_slice(&json)
            .map_err(|_| WireError::TokenMalformed("its claims are not the expected JSON"))?;
        Ok(Token {
            text: text.to_owned(),
            claims,
        })
    }

    /// Checks the token's tag under `secret` (in constant time), then that it is for
    /// `role` and has not expired at `now`.
    pub fn verify(
        &self,
        secret: &TokenSecret,
        role: Role,
        now: SystemTime,
    ) -> Result<(), WireError> {
        let (signed, tag) = self
            .text
            .split_once('.')
            .ok_or(WireError::TokenMalformed("it has no '.' before its tag"))?;
        let tag = URL_SAFE_NO_PAD
            .decode(tag)
            .map_err(|_| WireError::TokenMalformed("its tag is not base64url"))?;
        secret
            .mac(signed.as_bytes())?
            .verify_slice(&tag)
            .map_err(|_| WireError::TokenForged)?;
        if self.claims.role != role {
            return Err(WireError::TokenWrongRole {
                token: self.claims.role,
                wanted: role,
            });
        }
        if unix_secs(now)? >= self.claims.expires {
            return Err(WireError::TokenExpired {
                expired_at: self.claims.expires,
            });
        }
        Ok(())
    }

    /// What the token says (unverified until [`Token::verify`] succeeds).
    pub fn claims(&self) -> &Claims {
        &self.claims
    }

    /// The token's text, to print or send.
    pub fn as_str(&self) -> &str {
        &self.text
    }
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The text is a bearer secret: show only the claims.
        f.debug_struct("Token")
            .field("claims", &self.claims)
            .finish_non_exhaustive()
    }
}

/// Seconds since 1970.
fn unix_secs(t: SystemTime) -> Result<u64, WireError> {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .map_err(|_| WireError::ClockBeforeEpoch)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const HOUR: Duration = Duration::from_secs(3600);

    fn fixture() -> (TokenSecret, SystemTime, Token) {
        let secret = TokenSecret::generate().unwrap();
        let now = UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let token = Token::mint(
            Role::Host,
            HOUR,
            now,
            Fingerprint([7; 32]),
            &Binding::default(),
            &secret,
        )
        .unwrap();
        (secret, now, token)
    }

    #[test]
    fn a_minted_token_verifies_and_parses_back() {
        let (secret, now, token) = fixture();
        assert!(token.as_str().starts_with("vtj_"));
        token.verify(&secret, Role::Host, now).unwrap();
        let parsed = Token::parse(token.as_str()).unwrap();
        assert_eq!(parsed.claims(), token.claims());
        assert_eq!(parsed.claims().ca, Fingerprint([7; 32]));
        parsed.verify(&secret, Role::Host, now + HOUR / 2).unwrap();
    }

    #[test]
    fn expired_tokens_are_refused() {
        let (secret, now, token) = fixture();
        let err = token.verify(&secret, Role::Host, now + HOUR).unwrap_err();
        assert_eq!(
            err.to_string(),
            "the join token expired at unix time 1800003600"
        );
    }

    #[test]
    fn tokens_for_another_role_are_refused() {
        let (secret, now, token) = fixture();
        let err = token.verify(&secret, Role::Edge, now).unwrap_err();
        assert_eq!(err.to_string(), "the join token is for role host, not edge");
        let err = Token::mint(
            Role::Controller,
            HOUR,
            now,
            Fingerprint([0; 32]),
            &Binding::default(),
            &secret,
        )
        .unwrap_err();
        assert!(matches!(err, WireError::TokenForController), "{err}");
    }

    #[test]
    fn altered_or_foreign_tokens_are_refused() {
        let (secret, now, token) = fixture();
        let other = TokenSecret::generate().unwrap();
        assert!(matches!(
            token.verify(&other, Role::Host, now),
            Err(WireError::TokenForged)
        ));

        // Same tag, claims rewritten to another role and a later expiry.
        let (_, tag) = token.as_str().split_once('.').unwrap();
        let mut claims = token.claims().clone();
        claims.role = Role::Edge;
        claims.expires += 1_000_000;
        let json = serde_json::to_vec(&claims).unwrap();
        let forged = format!("vtj_{}.{tag}", URL_SAFE_NO_PAD.encode(json));
        let forged = Token::parse(&forged).unwrap();
        assert!(matches!(
            forged.verify(&secret, Role::Edge, now),
            Err(WireError::TokenForged)
        ));
    }

    #[test]
    fn malformed_tokens_say_what_is_wrong() {
        for (text, why) in [
            ("hello", "it has no '.' before its tag"),
            ("abc.def", "it does not start with vtj_"),
            ("vtj_!!!.def", "its claims are not base64url"),
            ("vtj_e30.def", "its claims are not the expected JSON"),
        ] {
            let err = Token::parse(text).unwrap_err();
            assert_eq!(
                err.to_string(),
                format!("the join token is malformed: {why}")
            );
        }
    }

    #[test]
    fn the_secret_is_created_once_then_reused() {
        let dir = tempfile::tempdir().unwrap();
        let first = TokenSecret::load_or_create(dir.path()).unwrap();
        let second = TokenSecret::load_or_create(dir.path()).unwrap();
        assert_eq!(first.0, second.0);
        std::fs::write(dir.path().join(TOKEN_SECRET_FILE), b"short").unwrap();
        let err = TokenSecret::load_or_create(dir.path()).unwrap_err();
        assert!(err.to_string().ends_with("holds 5 bytes, not 32"), "{err}");
    }
}
