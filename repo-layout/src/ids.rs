//! Stable resource IDs: a kind prefix and a lowercase ULID (`app_01j9...`).
//! Minted once when a resource is created, stored in its file, and never
//! changed by a rename. ULIDs sort by creation time.

use std::fmt;

/// The kinds of resource that live in the desired-state repository.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// An organisation: `orgs/<org>/org.yaml`.
    Org,
    /// A project: `orgs/<org>/<project>/project.yaml`.
    Project,
    /// An app: `orgs/<org>/<project>/<app>/app.yaml`.
    App,
    /// An environment of an app: `.../<app>/envs/<env>.yaml`.
    Env,
}

impl Kind {
    /// All kinds, parents first.
    pub const ALL: [Kind; 4] = [Kind::Org, Kind::Project, Kind::App, Kind::Env];

    /// The ID prefix, without the underscore.
    pub fn prefix(self) -> &'static str {
        match self {
            Kind::Org => "org",
            Kind::Project => "prj",
            Kind::App => "app",
            Kind::Env => "env",
        }
    }

    /// The lowercase name used on the command line and in output.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Org => "org",
            Kind::Project => "project",
            Kind::App => "app",
            Kind::Env => "env",
        }
    }

    /// Parses a kind name, accepting plurals (`apps`).
    pub fn parse(s: &str) -> Option<Kind> {
        let singular = s.strip_suffix('s').unwrap_or(s);
        Kind::ALL.into_iter().find(|k| k.as_str() == singular)
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Mints a new ID of the given kind.
pub fn mint(kind: Kind) -> String {
    format!(
        "{}_{}",
        kind.prefix(),
        ulid::Ulid::new().to_string().to_lowercase()
    )
}

/// Checks an ID's shape for a kind; the error says what is wrong.
pub fn check(kind: Kind, id: &str) -> Result<(), String> {
    let prefix = kind.prefix();
    let Some(suffix) = id.strip_prefix(prefix).and_then(|s| s.strip_prefix('_')) else {
        return Err(format!(
            "`{id}` is not a valid {kind} ID: it must start with `{prefix}_`"
        ));
    };
    match ulid::Ulid::from_string(&suffix.to_uppercase()) {
        Ok(_) if suffix.len() == 26 => Ok(()),
        _ => Err(format!(
            "`{id}` is not a valid {kind} ID: `{prefix}_` must be followed by a 26-character ULID"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minted_ids_check_and_sort() {
        let a = mint(Kind::App);
        std::thread::sleep(std::time::Duration::from_millis(2));
        let b = mint(Kind::App);
        assert!(a < b, "{a} sorts before {b}");
        assert_eq!(check(Kind::App, &a), Ok(()));
        assert!(check(Kind::Env, &a).is_err());
        assert!(check(Kind::App, "app_123").is_err());
    }

    #[test]
    fn kinds_parse_plurals() {
        assert_eq!(Kind::parse("apps"), Some(Kind::App));
        assert_eq!(Kind::parse("project"), Some(Kind::Project));
        assert_eq!(Kind::parse("pod"), None);
    }
}
