//! `vt secrets list|set|unset|rotate|preview|validate` and `vt fleet
//! rotate-key`: they read and write `envs/<env>.secrets.yaml` in the working
//! tree (never commit: the user reviews and commits, and committing is what
//! deploys). Values never appear on the command line, in the output or in
//! errors: they come from a file or stdin and go straight into age.

use crate::cli::Global;
use crate::client::Client;
use crate::commands::{find_root, load};
use crate::error::{chain, CliError, ErrorCode, Exit};
use crate::output::{self, Table};
use serde::Serialize;
use serde_json::Value;
use std::io::{IsTerminal, Read};
use std::path::{Path, PathBuf};
use vt_repo::secrets::edit::{self, EditError, Stamp};
use vt_repo::secrets::{self, Keyring, SecretValue, SecretsFile};
use vt_repo::{DesiredState, Env, Loaded, Snapshot};

fn usage(message: impl Into<String>) -> CliError {
    CliError::new(Exit::Usage, ErrorCode::Usage, message)
}

impl From<EditError> for CliError {
    fn from(e: EditError) -> Self {
        let message = chain(&e);
        match e {
            EditError::InvalidName(_) => CliError::new(Exit::Usage, ErrorCode::InvalidName, message),
            EditError::Empty(_) => CliError::new(Exit::Usage, ErrorCode::Usage, message),
            EditError::NotFound { .. } => CliError::new(Exit::NotFound, ErrorCode::NotFound, message)
                .hint("list the secrets with `vt secrets list APP`"),
            EditError::Crypto(vt_repo::secrets::CryptoError::NoRecipients) => {
                CliError::new(Exit::Failure, ErrorCode::NoRecipient, message).hint(
                    "run `vt fleet init` for this repository (it writes the fleet's recipient into vt.yaml), or add `secrets: {recipients: [age1...]}` to vt.yaml",
                )
            }
            EditError::Crypto(_) | EditError::Reseal { .. } => {
                CliError::new(Exit::Failure, ErrorCode::Secret, message)
            }
            EditError::Io { .. } => CliError::new(Exit::Failure, ErrorCode::Io, message),
        }
    }
}

/// The env named by APP and `--env` (the app's only env when absent).
fn find_env<'a>(
    state: &'a DesiredState,
    app: &str,
    env: Option<&str>,
) -> Result<&'a Env, CliError> {
    let of_app: Vec<&Env> = state
        .envs
        .iter()
        .filter(|e| {
            let qualified = e.app_qualified();
            qualified == app
                || qualified.ends_with(&format!("/{app}"))
                || state
                    .apps
                    .iter()
                    .any(|a| a.id == app && a.qualified() == qualified)
        })
        .collect();
    if of_app.is_empty() {
        return Err(CliError::new(
            Exit::NotFound,
            ErrorCode::NotFound,
            format!("no app `{app}` with an env"),
        )
        .hint("list them with `vt list env`"));
    }
    let matching: Vec<&Env> = match env {
        Some(name) => of_app
            .into_iter()
            .filter(|e| e.name == name || e.id == name)
            .collect(),
        None => of_app,
    };
    match matching.as_slice() {
        [one] => Ok(one),
        [] => Err(CliError::new(
            Exit::NotFound,
            ErrorCode::NotFound,
            format!("app `{app}` has no env `{}`", env.unwrap_or_default()),
        )
        .hint("list them with `vt list env`")),
        many => Err(CliError::new(
            Exit::Usage,
            ErrorCode::Ambiguous,
            format!(
                "which env? {} match: {}",
                many.len(),
                many.iter()
                    .map(|e| e.qualified())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        )
        .hint("pass --env")),
    }
}

/// The env's secrets file as it is in the working tree, refusing one that
/// exists but does not parse (writing would lose it).
fn secrets_file(
    root: &Path,
    loaded: &Loaded,
    env: &Env,
) -> Result<(String, SecretsFile), CliError> {
    let rel = secrets::file_of(env);
    if let Some(file) = loaded.state.secrets_of(env) {
        return Ok((rel, file.content.clone()));
    }
    if root.join(&rel).exists() {
        let errors: Vec<_> = loaded
            .diagnostics
            .iter()
            .filter(|d| d.file == rel)
            .cloned()
            .collect();
        let mut e = CliError::invalid(errors);
        e.message = format!("{rel} does not parse; fix it first");
        return Err(e);
    }
    Ok((rel, SecretsFile::default()))
}

fn fleet_recipients(state: &DesiredState) -> Vec<String> {
    state
        .config
        .secrets
        .as_ref()
        .map(|s| s.recipients.clone())
        .unwrap_or_default()
}

/// Who is changing a secret: git's `user.name`/`user.email`, else
/// `GIT_AUTHOR_NAME`/`GIT_AUTHOR_EMAIL`.
fn stamp(root: &Path) -> Stamp {
    let from_env = || {
        let name = std::env::var("GIT_AUTHOR_NAME").ok()?;
        let email = std::env::var("GIT_AUTHOR_EMAIL").unwrap_or_default();
        Some(format!("{name} <{email}>"))
    };
    let by = git2::Repository::discover(root)
        .and_then(|r| r.signature())
        .ok()
        .map(|s| format!("{} <{}>", s.name().unwrap_or("?"), s.email().unwrap_or("?")))
        .or_else(from_env);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    Stamp {
        by,
        at: Some(edit::rfc3339(now)),
    }
}

/// Where a new value comes from.
#[derive(Debug, Clone, Default)]
pub struct ValueSource {
    /// `--from-file F`.
    pub file: Option<PathBuf>,
    /// `--from-stdin`.
    pub stdin: bool,
    /// `--generate N` (rotate only).
    pub generate: Option<usize>,
}

fn read_value(source: &ValueSource) -> Result<SecretValue, CliError> {
    let value = match (&source.file, source.stdin, source.generate) {
        (Some(path), false, None) => std::fs::read(path).map(SecretValue::new).map_err(|e| {
            CliError::new(
                Exit::Failure,
                ErrorCode::Io,
                format!("cannot read {}: {e}", path.display()),
            )
        })?,
        (None, _, None) => {
            let mut stdin = std::io::stdin();
            if !source.stdin && stdin.is_terminal() {
                return Err(usage("no value: give --from-file FILE or --from-stdin (values are never taken from the command line)")
                    .hint("printf %s \"$VALUE\" | vt secrets set APP NAME --from-stdin"));
            }
            let mut bytes = Vec::new();
            stdin.read_to_end(&mut bytes).map_err(|e| {
                CliError::new(
                    Exit::Failure,
                    ErrorCode::Io,
                    format!("cannot read stdin: {e}"),
                )
            })?;
            SecretValue::new(bytes)
        }
        (None, false, Some(n)) if (1..=4096).contains(&n) => edit::generate(n)?,
        (None, false, Some(_)) => return Err(usage("--generate takes a length from 1 to 4096")),
        _ => {
            return Err(usage(
                "give only one of --from-file, --from-stdin and --generate",
            ))
        }
    };
    Ok(value)
}

/// What `set`, `rotate` and `unset` report.
#[derive(Serialize)]
struct Changed {
    env: String,
    secret: String,
    version: u64,
    file: String,
    action: &'static str,
}

fn print_changed(global: &Global, changed: &Changed) {
    output::print(global.output, changed, |s| {
        let version = match changed.action {
            "unset" => format!("was version {}", changed.version),
            _ => format!("version {}", changed.version),
        };
        format!(
            "{} secret {} of {}: {version}\n  {}\nnext: review with `vt secrets preview`, then commit: git add {} && git commit\n",
            s.green(changed.action),
            changed.secret,
            changed.env,
            changed.file,
            changed.file
        )
    });
}

/// `vt secrets set APP NAME` and `vt secrets rotate APP NAME`: a new version.
pub fn set(
    global: &Global,
    app: &str,
    env: Option<&str>,
    name: &str,
    source: &ValueSource,
    rotate: bool,
) -> Result<(), CliError> {
    let root = find_root(global)?;
    let loaded = load(global, None)?;
    let target = find_env(&loaded.state, app, env)?;
    let (rel, mut file) = secrets_file(&root, &loaded, target)?;
    if rotate && file.get(name).is_none() {
        return Err(CliError::new(
            Exit::NotFound,
            ErrorCode::NotFound,
            format!("there is no secret `{name}` in {rel} to rotate"),
        )
        .hint("create it with `vt secrets set`"));
    }
    let value = read_value(source)?;
    let version = edit::set(
        &mut file,
        name,
        &value,
        &fleet_recipients(&loaded.state),
        &stamp(&root),
    )?;
    edit::write_file(&root, &rel, &edit::to_text(&file, &target.qualified()))?;
    print_changed(
        global,
        &Changed {
            env: target.qualified(),
            secret: name.into(),
            version,
            file: rel,
            action: if rotate { "rotated" } else { "set" },
        },
    );
    Ok(())
}

/// `vt secrets unset APP NAME`.
pub fn unset(global: &Global, app: &str, env: Option<&str>, name: &str) -> Result<(), CliError> {
    let root = find_root(global)?;
    let loaded = load(global, None)?;
    let target = find_env(&loaded.state, app, env)?;
    let (rel, mut file) = secrets_file(&root, &loaded, target)?;
    let version = edit::unset(&mut file, name, &rel)?;
    edit::write_file(&root, &rel, &edit::to_text(&file, &target.qualified()))?;
    print_changed(
        global,
        &Changed {
            env: target.qualified(),
            secret: name.into(),
            version,
            file: rel,
            action: "unset",
        },
    );
    Ok(())
}

/// One row of `vt secrets list`.
#[derive(Serialize)]
struct Listed {
    env: String,
    name: String,
    version: Option<u64>,
    updated_by: Option<String>,
    updated_at: Option<String>,
    /// Where the env's manifest puts it in the guest, if it references it.
    path: Option<String>,
    on_change: Option<String>,
}

/// `vt secrets list APP [--env E] [--at REV]`: names, versions, who and when; never values.
pub fn list(
    global: &Global,
    app: &str,
    env: Option<&str>,
    at: Option<&str>,
) -> Result<(), CliError> {
    let loaded = load(global, at)?;
    let envs: Vec<&Env> = match env {
        Some(_) => vec![find_env(&loaded.state, app, env)?],
        None => {
            let first = find_env(&loaded.state, app, None).map(|e| vec![e]);
            match first {
                Ok(one) => one,
                Err(e) if e.code == ErrorCode::Ambiguous => loaded
                    .state
                    .envs
                    .iter()
                    .filter(|e| {
                        e.app_qualified().ends_with(&format!("/{app}")) || e.app_qualified() == app
                    })
                    .collect(),
                Err(e) => return Err(e),
            }
        }
    };
    let mut rows = Vec::new();
    for e in envs {
        let refs = e
            .effective
            .as_ref()
            .map(|s| s.secrets.clone())
            .unwrap_or_default();
        let file = loaded.state.secrets_of(e);
        for entry in file
            .map(|f| f.content.secrets.as_slice())
            .unwrap_or_default()
        {
            let r = refs.iter().find(|r| r.name == entry.name);
            rows.push(Listed {
                env: e.qualified(),
                name: entry.name.clone(),
                version: Some(entry.version),
                updated_by: entry.updated_by.clone(),
                updated_at: entry.updated_at.clone(),
                path: r.map(|r| r.path.clone()),
                on_change: r.map(|r| format!("{:?}", r.on_change).to_lowercase()),
            });
        }
        for r in refs
            .iter()
            .filter(|r| file.and_then(|f| f.content.get(&r.name)).is_none())
        {
            rows.push(Listed {
                env: e.qualified(),
                name: r.name.clone(),
                version: None,
                updated_by: None,
                updated_at: None,
                path: Some(r.path.clone()),
                on_change: Some(format!("{:?}", r.on_change).to_lowercase()),
            });
        }
    }
    output::print(global.output, &rows, |s| {
        let mut t = Table::new(&["ENV", "NAME", "VERSION", "UPDATED BY", "UPDATED AT", "PATH"]);
        for r in &rows {
            t.row(vec![
                r.env.clone(),
                r.name.clone(),
                r.version
                    .map_or_else(|| "missing".into(), |v| v.to_string()),
                r.updated_by.clone().unwrap_or_else(|| "-".into()),
                r.updated_at.clone().unwrap_or_else(|| "-".into()),
                r.path.clone().unwrap_or_else(|| "(not referenced)".into()),
            ]);
        }
        t.render(s)
    });
    Ok(())
}

/// The keyring `validate` uses: `--identity FILE`, else the controller's state directory.
fn keyring(identity: Option<&Path>, state_dir: &Path) -> Result<Keyring, CliError> {
    let path = identity.map_or_else(
        || vt_fleet::controller::delivery::identities_path(state_dir),
        Path::to_path_buf,
    );
    let keyring = Keyring::load(&path)
        .map_err(|e| CliError::new(Exit::Failure, ErrorCode::Secret, chain(&e)))?;
    if keyring.is_empty() {
        return Err(CliError::new(
            Exit::NotFound,
            ErrorCode::NoIdentity,
            format!("no age identity in {}", path.display()),
        )
        .hint("pass --identity FILE or --state-dir of the controller (VT_STATE_DIR)"));
    }
    Ok(keyring)
}

/// What `vt secrets validate` prints when all is well.
#[derive(Serialize)]
struct Validated {
    valid: bool,
    secrets: usize,
}

/// `vt secrets validate`: every referenced secret exists, decrypts, is not
/// empty and matches its declared format (and the repository validates).
pub fn validate(
    global: &Global,
    at: Option<&str>,
    identity: Option<&Path>,
    state_dir: &Path,
) -> Result<(), CliError> {
    let mut loaded = load(global, at)?;
    let keyring = keyring(identity, state_dir)?;
    let checked = secrets::check_values(&mut loaded, &keyring);
    if !loaded.is_valid() {
        return Err(CliError::invalid(loaded.diagnostics));
    }
    let result = Validated {
        valid: true,
        secrets: checked,
    };
    output::print(global.output, &result, |s| {
        format!(
            "{} {} secret(s) decrypt and match their formats\n",
            s.green("valid:"),
            result.secrets
        )
    });
    Ok(())
}

/// One env that a pending secret change affects.
#[derive(Serialize)]
struct Affected {
    env: String,
    /// `signal` (files rewritten in place, app signalled), `restart` (a new
    /// release replaces the instances), `add` or `remove` (the env itself).
    effect: &'static str,
    secrets: Vec<secrets::SecretChange>,
    /// Other fields that change in the same spec.
    other_fields: Vec<String>,
    /// Instances per region × regions.
    instances: u32,
    /// The running instances, when a controller is reachable.
    running: Vec<String>,
}

/// `vt secrets preview [APP] [--env E]`: what the working tree's secret
/// changes (against HEAD) would do once committed.
pub fn preview(
    global: &Global,
    app: Option<&str>,
    env: Option<&str>,
    api: &crate::cli::Api,
) -> Result<(), CliError> {
    let root = find_root(global)?;
    let new = load(global, None)?;
    let old = vt_repo::load(&Snapshot::from_git(&root, "HEAD")?);
    let client = Client::from_api(api).ok();
    let mut out = Vec::new();
    for e in &new.state.envs {
        if app.is_some_and(|a| e.app != a && e.app_qualified() != a)
            || env.is_some_and(|n| e.name != n)
        {
            continue;
        }
        let Some(spec) = &e.effective else { continue };
        let before = old
            .state
            .envs
            .iter()
            .find(|o| o.qualified() == e.qualified())
            .and_then(|o| o.effective.as_ref());
        let (effect, changes, other) = match before {
            Some(before) => {
                let changes = secrets::changed_secrets(before, spec);
                if changes.is_empty() {
                    continue;
                }
                let effect = if secrets::in_place_change(before, spec).is_some() {
                    "signal"
                } else {
                    "restart"
                };
                let other: Vec<String> =
                    match (serde_json::to_value(before), serde_json::to_value(spec)) {
                        (Ok(a), Ok(b)) => vt_repo::diff_values(&a, &b)
                            .into_iter()
                            .map(|c| c.path)
                            .filter(|p| !p.starts_with("secrets"))
                            .collect(),
                        _ => Vec::new(),
                    };
                (effect, changes, other)
            }
            None if spec.secrets.is_empty() => continue,
            None => (
                "add",
                secrets::changed_secrets(
                    &vt_repo::EffectiveSpec {
                        secrets: Vec::new(),
                        ..spec.clone()
                    },
                    spec,
                ),
                Vec::new(),
            ),
        };
        let running = client
            .as_ref()
            .and_then(|c| {
                c.get::<Value>(
                    "/v1/status",
                    &[
                        ("app", Some(e.app_qualified())),
                        ("env", Some(e.name.clone())),
                    ],
                )
                .ok()
            })
            .map(|v| {
                v["workloads"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .flat_map(|w| w["instances"].as_array().cloned().unwrap_or_default())
                    .filter_map(|i| {
                        Some(format!(
                            "{} on {} (release {})",
                            i["id"].as_str()?,
                            i["host"].as_str().unwrap_or("?"),
                            i["release"]
                        ))
                    })
                    .collect()
            })
            .unwrap_or_default();
        out.push(Affected {
            env: e.qualified(),
            effect,
            secrets: changes,
            other_fields: other,
            instances: spec.instances * u32::try_from(spec.regions.len()).unwrap_or(1),
            running,
        });
    }
    output::print(global.output, &out, |s| {
        if out.is_empty() {
            return "no pending secret change (working tree vs HEAD)\n".into();
        }
        let mut text = String::new();
        for a in &out {
            let what = match a.effect {
                "signal" => format!(
                    "the {} instance(s) keep running: files rewritten in the guest, then the app is signalled",
                    a.instances
                ),
                "add" => "a new env: its instances start with these files".into(),
                _ => format!(
                    "a new release: the {} instance(s) are replaced (rolled)",
                    a.instances
                ),
            };
            text.push_str(&format!("{} {}: {what}\n", s.bold(&a.env), a.effect));
            for c in &a.secrets {
                let change = match (c.from, c.to) {
                    (0, to) => format!("new, version {to}"),
                    (from, 0) => format!("removed (was version {from})"),
                    (from, to) => format!("version {from} → {to}"),
                };
                let signal = c
                    .signal
                    .as_deref()
                    .map(|sig| format!(", {sig}"))
                    .unwrap_or_default();
                text.push_str(&format!("  {} {}: {change}{signal}\n", c.path, c.name));
            }
            if !a.other_fields.is_empty() {
                text.push_str(&format!("  also changes: {}\n", a.other_fields.join(", ")));
            }
            for r in &a.running {
                text.push_str(&format!("  instance {r}\n"));
            }
        }
        text
    });
    Ok(())
}

/// What `vt fleet rotate-key` reports.
#[derive(Serialize)]
struct Rotated {
    recipient: String,
    files: Vec<String>,
    secrets: usize,
}

/// `vt fleet rotate-key`: a new fleet key; every secrets file re-encrypted to
/// it and vt.yaml pointing at it, in the working tree, for one commit. The
/// controller keeps the old identities, so the old commit keeps working until
/// the new one is applied (and rollbacks past it still decrypt).
pub fn rotate_key(global: &Global, state_dir: &Path) -> Result<(), CliError> {
    let root = find_root(global)?;
    let loaded = load(global, None)?;
    let old = Keyring::load(&vt_fleet::controller::delivery::identities_path(state_dir))
        .map_err(|e| CliError::new(Exit::Failure, ErrorCode::Secret, chain(&e)))?;
    if old.is_empty() && !loaded.state.secrets.is_empty() {
        return Err(CliError::new(
            Exit::NotFound,
            ErrorCode::NoIdentity,
            format!(
                "no fleet identity in {} to decrypt the current secrets",
                state_dir.display()
            ),
        )
        .hint("pass the controller's --state-dir"));
    }
    let recipient = vt_fleet::controller::setup::new_secrets_key(state_dir)
        .map_err(|e| CliError::new(Exit::Failure, ErrorCode::FleetState, chain(&e)))?;
    let fleet = vec![recipient.clone()];
    let mut files = Vec::new();
    let mut count = 0;
    for f in &loaded.state.secrets {
        let mut content = f.content.clone();
        count += edit::reseal_all(&mut content, &f.file, &old, &fleet)?;
        files.push((f.file.clone(), edit::to_text(&content, &f.qualified())));
    }
    let config_path = root.join("vt.yaml");
    let config = std::fs::read_to_string(&config_path).map_err(|e| {
        CliError::new(
            Exit::Failure,
            ErrorCode::Io,
            format!("cannot read {}: {e}", config_path.display()),
        )
    })?;
    files.push((
        "vt.yaml".into(),
        edit::set_config_recipients(&config, &fleet),
    ));
    for (rel, text) in &files {
        edit::write_file(&root, rel, text)?;
    }
    let result = Rotated {
        recipient,
        files: files.into_iter().map(|(f, _)| f).collect(),
        secrets: count,
    };
    output::print(global.output, &result, |s| {
        format!(
            "{} the fleet key: {} secret(s) re-encrypted to {}\n{}\nnext: commit them together: git add -A && git commit -m 'rotate the fleet key'\n",
            s.green("rotated"),
            result.secrets,
            result.recipient,
            result.files.iter().map(|f| format!("  {f}")).collect::<Vec<_>>().join("\n")
        )
    });
    Ok(())
}

/// After `vt fleet init`: writes the fleet's recipient into the repository's
/// `vt.yaml` when the repository is a local working tree. Returns the recipient
/// and whether vt.yaml was written.
pub fn publish_recipient(state_dir: &Path, repo: &str) -> Result<(String, bool), CliError> {
    let keyring = Keyring::load(&vt_fleet::controller::delivery::identities_path(state_dir))
        .map_err(|e| CliError::new(Exit::Failure, ErrorCode::Secret, chain(&e)))?;
    let recipient = keyring.recipients().pop().unwrap_or_default();
    let config = Path::new(repo).join("vt.yaml");
    let written = match std::fs::read_to_string(&config) {
        Ok(text) if !repo.contains("://") => {
            edit::write_file(
                Path::new(repo),
                "vt.yaml",
                &edit::set_config_recipients(&text, std::slice::from_ref(&recipient)),
            )?;
            true
        }
        _ => false,
    };
    Ok((recipient, written))
}
