//! Secrets: the format of `orgs/<org>/<project>/<app>/envs/<env>.secrets.yaml`,
//! the checks the loader runs on it, and (in [`crypto`]) the age encryption of
//! the values and (in [`edit`]) the changes `vt secrets` makes.
//!
//! A secrets file keeps each secret's name, version and metadata in clear and
//! its value as an ASCII-armored age message, encrypted to the fleet's
//! recipients (`secrets.recipients` in `vt.yaml`) plus the file's own team
//! `recipients`. The version of every secret an env references becomes part of
//! its effective spec, so a new version makes a new release and a commit that
//! restores an old secrets file restores the old version.
//!
//! The loader needs no key: it checks the file's shape and that every
//! referenced secret exists ([`Code::MissingSecret`]). [`check_values`]
//! decrypts with the fleet's keys and checks each value is not empty and
//! matches its declared format; the controller runs it on every commit.

pub mod crypto;
pub mod edit;
pub(crate) mod format;

use crate::diagnostic::{self, Code, Diagnostic};
use crate::effective::{EffectiveSecret, EffectiveSpec};
use crate::schema::OnChange;
use crate::state::{DesiredState, Env};
use crate::validate::Checker;
use crate::Loaded;
use serde::Serialize;
use std::collections::HashSet;

pub use crypto::{seal, CryptoError, Keyring};
pub use format::{
    compile_pattern, is_secret_name, signal_number, Sealed, SecretEntry, SecretValue, SecretsFile,
    ARMOR_BEGIN, DEFAULT_SIGNAL, FILE_VERSION, SIGNALS,
};

/// Path of an env's secrets file, next to its env file.
pub fn file_of(env: &Env) -> String {
    format!(
        "orgs/{}/{}/{}/envs/{}.secrets.yaml",
        env.org, env.project, env.app, env.name
    )
}

/// Checks the shape of every secrets file: its env exists, names are valid
/// and unique, versions start at 1, values are armored age messages,
/// recipients parse.
pub fn check_files(c: &mut Checker<'_>, state: &DesiredState) {
    let fleet = state.config.secrets.iter().flat_map(|s| &s.recipients);
    for (i, r) in fleet.enumerate() {
        if let Err(e) = crypto::parse_recipient(r) {
            c.value(
                Code::InvalidValue,
                "vt.yaml",
                &format!("secrets.recipients[{i}]"),
                e.to_string(),
                Some(
                    "`vt fleet init` and `vt fleet rotate-key` write the fleet's recipient".into(),
                ),
            );
        }
    }
    for file in &state.secrets {
        let name = file.qualified();
        let env_file = format!(
            "orgs/{}/{}/{}/envs/{}.yaml",
            file.org, file.project, file.app, file.env
        );
        // An env file that does not parse has its own diagnostic.
        if !state.envs.iter().any(|e| e.qualified() == name) && !c.is_unreadable(&env_file) {
            c.file(
                Code::DanglingReference,
                &file.file,
                format!("secrets file of env {name}, which does not exist"),
                Some("create the env with `vt env create`, or remove this file".into()),
            );
        }
        if let Some(v) = file.content.version.filter(|v| *v != FILE_VERSION) {
            c.value(
                Code::UnsupportedVersion,
                &file.file,
                "version",
                format!("secrets file version {v} is not supported (this vt reads {FILE_VERSION})"),
                None,
            );
        }
        for (i, r) in file.content.recipients.iter().enumerate() {
            if let Err(e) = crypto::parse_recipient(r) {
                c.value(
                    Code::InvalidValue,
                    &file.file,
                    &format!("recipients[{i}]"),
                    e.to_string(),
                    None,
                );
            }
        }
        let mut seen = HashSet::new();
        for (i, s) in file.content.secrets.iter().enumerate() {
            if !is_secret_name(&s.name) {
                c.value(
                    Code::InvalidName,
                    &file.file,
                    &format!("secrets[{i}].name"),
                    format!("`{}` is not a valid secret name", s.name),
                    Some(
                        "use letters, digits, `_`, `-` and `.`, starting with a letter or digit"
                            .into(),
                    ),
                );
            }
            if !seen.insert(s.name.as_str()) {
                c.value(
                    Code::DuplicateName,
                    &file.file,
                    &format!("secrets[{i}].name"),
                    format!("`{}` appears twice in secrets", s.name),
                    None,
                );
            }
            if s.version == 0 {
                c.value(
                    Code::InvalidValue,
                    &file.file,
                    &format!("secrets[{i}].version"),
                    "versions start at 1",
                    None,
                );
            }
            if !s.value.0.trim_start().starts_with(ARMOR_BEGIN) {
                // Never quote the value: it may be a secret pasted in clear.
                c.value(
                    Code::InvalidValue,
                    &file.file,
                    &format!("secrets[{i}].value"),
                    format!(
                        "the value of secret `{}` is not an armored age message (values are never stored in clear)",
                        s.name
                    ),
                    Some(format!("set it with `vt secrets set APP {} --from-file FILE`", s.name)),
                );
            }
        }
    }
}

/// Fills in the version of every secret each env references, from its
/// secrets file, and reports the ones that file does not have.
pub fn resolve_versions(c: &mut Checker<'_>, state: &mut DesiredState) {
    let secrets = std::mem::take(&mut state.secrets);
    for env in &mut state.envs {
        let file_path = file_of(env);
        let file = secrets.iter().find(|s| s.file == file_path);
        let Some(spec) = env.effective.as_mut() else {
            continue;
        };
        if file.is_none() && c.is_unreadable(&file_path) {
            // The secrets file does not parse (its own diagnostic): what it
            // holds is unknown.
            continue;
        }
        for secret in &mut spec.secrets {
            match file.and_then(|f| f.content.get(&secret.name)) {
                Some(entry) => secret.version = entry.version,
                None => c.file(
                    Code::MissingSecret,
                    &file_path,
                    format!(
                        "app {}/{}/{} env {} references secret `{}` (file {} in the guest), which {file_path} does not have",
                        env.org, env.project, env.app, env.name, secret.name, secret.path
                    ),
                    Some(format!(
                        "set it with `vt secrets set {} {} --env {} --from-file FILE`, or remove the reference",
                        env.app, secret.name, env.name
                    )),
                ),
            }
        }
    }
    state.secrets = secrets;
}

/// Decrypts every secret each env references with `keyring` and checks it is
/// not empty and matches its declared format; each problem becomes a
/// diagnostic naming app, env, secret and file (never the value). Returns how
/// many values were checked.
pub fn check_values(loaded: &mut Loaded, keyring: &Keyring) -> usize {
    let mut found = Vec::new();
    let mut checked = 0;
    for env in &loaded.state.envs {
        let Some(spec) = &env.effective else { continue };
        let Some(file) = loaded.state.secrets_of(env) else {
            continue;
        };
        for secret in &spec.secrets {
            let Some(entry) = file.content.get(&secret.name) else {
                continue;
            };
            checked += 1;
            if let Err(d) = open_checked(env, &file.file, secret, entry, keyring) {
                found.push(*d);
            }
        }
    }
    if !found.is_empty() {
        loaded.diagnostics.extend(found);
        diagnostic::sort(&mut loaded.diagnostics);
    }
    checked
}

/// Decrypts one referenced secret and checks its value.
pub fn open_checked(
    env: &Env,
    file: &str,
    secret: &EffectiveSecret,
    entry: &SecretEntry,
    keyring: &Keyring,
) -> Result<SecretValue, Box<Diagnostic>> {
    let whose = format!(
        "secret `{}` version {} of app {}/{}/{} env {}",
        secret.name, entry.version, env.org, env.project, env.app, env.name
    );
    let path = format!("secrets[{}]", secret.name);
    let value = keyring.open(&entry.value).map_err(|e| {
        Box::new(
            Diagnostic {
                path: path.clone(),
                ..Diagnostic::file(
                    Code::SecretUndecryptable,
                    file,
                    format!("{whose} cannot be decrypted: {e}"),
                )
            }
            .with_hint("encrypt it to the fleet's recipient (`vt secrets set`), or give the controller the matching identity"),
        )
    })?;
    let bad = |message: String| {
        Box::new(Diagnostic {
            path: path.clone(),
            ..Diagnostic::file(Code::SecretFormat, file, message)
        })
    };
    if value.is_empty() {
        return Err(bad(format!("{whose} is empty")));
    }
    if let Some(format) = &secret.format {
        if let Some(min) = format.min_length {
            if value.len() < min as usize {
                return Err(bad(format!(
                    "{whose} is {} bytes long, shorter than its declared min_length {min}",
                    value.len()
                )));
            }
        }
        if let Some(pattern) = &format.pattern {
            match compile_pattern(pattern) {
                Ok(re) if re.is_match(value.expose()) => {}
                Ok(_) => {
                    return Err(bad(format!(
                        "{whose} does not match its declared pattern `{pattern}`"
                    )))
                }
                Err(e) => return Err(bad(format!("invalid pattern `{pattern}`: {e}"))),
            }
        }
    }
    Ok(value)
}

/// A referenced secret whose version changes between two specs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SecretChange {
    /// Secret name.
    pub name: String,
    /// File in the guest.
    pub path: String,
    /// Version before (0: not referenced before).
    pub from: u64,
    /// Version after (0: no longer referenced).
    pub to: u64,
    /// The signal sent instead of a restart, for `on_change: signal`.
    pub signal: Option<String>,
}

/// The secrets whose version (or presence) differs between two specs.
pub fn changed_secrets(old: &EffectiveSpec, new: &EffectiveSpec) -> Vec<SecretChange> {
    let mut out = Vec::new();
    for s in &new.secrets {
        let before = old.secrets.iter().find(|o| o.name == s.name);
        let from = before.map_or(0, |o| o.version);
        if from != s.version || before.is_none_or(|o| o.path != s.path) {
            out.push(SecretChange {
                name: s.name.clone(),
                path: s.path.clone(),
                from,
                to: s.version,
                signal: (s.on_change == OnChange::Signal)
                    .then(|| s.signal.clone().unwrap_or_else(|| DEFAULT_SIGNAL.into())),
            });
        }
    }
    for o in &old.secrets {
        if !new.secrets.iter().any(|s| s.name == o.name) {
            out.push(SecretChange {
                name: o.name.clone(),
                path: o.path.clone(),
                from: o.version,
                to: 0,
                signal: None,
            });
        }
    }
    out
}

/// Whether `new` can be applied to instances running `old` without
/// replacing them: the specs differ only in `instances` and in the versions
/// of secrets declared `on_change: signal`. Returns the changed secrets
/// (empty for a scale-only change), or `None` when instances must be replaced.
pub fn in_place_change(old: &EffectiveSpec, new: &EffectiveSpec) -> Option<Vec<SecretChange>> {
    if old.secrets.len() != new.secrets.len() {
        return None;
    }
    let changes = changed_secrets(old, new);
    if changes
        .iter()
        .any(|c| c.signal.is_none() || c.from == 0 || c.to == 0)
    {
        return None;
    }
    let normalize = |spec: &EffectiveSpec| {
        let mut spec = spec.clone();
        spec.instances = 0;
        for s in &mut spec.secrets {
            s.version = 0;
        }
        spec
    };
    (normalize(old) == normalize(new)).then_some(changes)
}

#[cfg(test)]
mod tests;
