//! Checks that span fields or files: names, IDs, references between files,
//! regions, values that parse but make no sense, and org quotas.

use crate::diagnostic::{Code, Diagnostic};
use crate::ids::{self, Kind};
use crate::quantity::ByteSize;
use crate::schema::{Spec, SCHEMA_VERSION};
use crate::state::DesiredState;
use crate::yaml_pos::{join_key, PositionIndex};
use std::collections::{BTreeMap, HashMap, HashSet};

/// Smallest memory a microVM instance can boot with.
pub const MIN_MEMORY: ByteSize = ByteSize(64 << 20);
/// Smallest volume.
pub const MIN_VOLUME: ByteSize = ByteSize(1 << 20);

/// Places diagnostics in files using their position indexes.
pub struct Checker<'a> {
    indexes: &'a HashMap<String, PositionIndex>,
    diagnostics: &'a mut Vec<Diagnostic>,
    unreadable: HashSet<String>,
}

impl<'a> Checker<'a> {
    /// A checker appending to `diagnostics`.
    pub fn new(
        indexes: &'a HashMap<String, PositionIndex>,
        diagnostics: &'a mut Vec<Diagnostic>,
    ) -> Self {
        Checker {
            indexes,
            diagnostics,
            unreadable: HashSet::new(),
        }
    }

    /// Marks `files` as present but unreadable (not YAML, not UTF-8): their
    /// problem is already reported, and what they would have declared is
    /// unknown, so checks leave out what depends on them (a child of an
    /// unreadable file does not report a missing parent).
    pub fn with_unreadable(mut self, files: impl IntoIterator<Item = String>) -> Self {
        self.unreadable.extend(files);
        self
    }

    /// Whether `file` is present but could not be read (see
    /// [`Checker::with_unreadable`]).
    pub fn is_unreadable(&self, file: &str) -> bool {
        self.unreadable.contains(file)
    }

    /// Whether `file` has a value at exactly `path`.
    pub fn contains(&self, file: &str, path: &str) -> bool {
        self.indexes.get(file).is_some_and(|i| i.contains(path))
    }

    fn push(
        &mut self,
        code: Code,
        file: &str,
        path: &str,
        message: String,
        hint: Option<String>,
        key: bool,
    ) {
        let pos = self
            .indexes
            .get(file)
            .map(|i| if key { i.key(path) } else { i.value(path) })
            .unwrap_or_default();
        let mut d = Diagnostic::file(code, file, message).at(pos, path);
        d.hint = hint;
        self.diagnostics.push(d);
    }

    /// Reports a problem with the value at `path` in `file`.
    pub fn value(
        &mut self,
        code: Code,
        file: &str,
        path: &str,
        message: impl Into<String>,
        hint: Option<String>,
    ) {
        self.push(code, file, path, message.into(), hint, false);
    }

    /// Reports a problem with the key at `path` in `file`.
    pub fn key(
        &mut self,
        code: Code,
        file: &str,
        path: &str,
        message: impl Into<String>,
        hint: Option<String>,
    ) {
        self.push(code, file, path, message.into(), hint, true);
    }

    /// Reports a problem with `file` as a whole.
    pub fn file(
        &mut self,
        code: Code,
        file: &str,
        message: impl Into<String>,
        hint: Option<String>,
    ) {
        let mut d = Diagnostic::file(code, file, message);
        d.hint = hint;
        self.diagnostics.push(d);
    }
}

/// Whether `name` is an RFC 1123 DNS label: 1–63 of `a-z`, `0-9`, `-`, not
/// starting or ending with `-`.
pub fn is_dns_label(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 63
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.starts_with('-')
        && !name.ends_with('-')
}

const DNS_HINT: &str =
    "use 1 to 63 lowercase letters, digits and '-', not starting or ending with '-'";

/// Runs every structural check over the loaded state.
pub fn check(c: &mut Checker<'_>, state: &DesiredState) {
    check_config(c, state);
    check_names_and_ids(c, state);
    check_parents(c, state);
    let regions: HashSet<&str> = state
        .config
        .regions
        .iter()
        .map(|r| r.name.as_str())
        .collect();
    if let Some(defaults) = &state.config.defaults {
        if defaults.id.is_some() {
            c.key(
                Code::InvalidValue,
                "vt.yaml",
                "defaults.id",
                "defaults cannot have an id",
                Some("remove `id:` from defaults".into()),
            );
        }
        check_spec(c, "vt.yaml", "defaults", defaults, &regions);
    }
    for app in &state.apps {
        check_spec(c, &app.file, "", &app.spec, &regions);
    }
    for env in &state.envs {
        check_spec(c, &env.file, "", &env.overrides, &regions);
    }
}

fn check_config(c: &mut Checker<'_>, state: &DesiredState) {
    let config = &state.config;
    match config.version {
        Some(SCHEMA_VERSION) => {}
        Some(v) => c.value(
            Code::UnsupportedVersion,
            "vt.yaml",
            "version",
            format!("schema version {v} is not supported"),
            Some(format!("this vt reads version {SCHEMA_VERSION}")),
        ),
        None if c.contains("vt.yaml", "") => c.value(
            Code::MissingField,
            "vt.yaml",
            "version",
            "vt.yaml has no schema version",
            Some(format!("add `version: {SCHEMA_VERSION}`")),
        ),
        None => {}
    }
    let mut seen = HashSet::new();
    for (i, region) in config.regions.iter().enumerate() {
        let path = format!("regions[{i}].name");
        if !is_dns_label(&region.name) {
            c.value(
                Code::InvalidName,
                "vt.yaml",
                &path,
                format!("region name `{}` is not a DNS label", region.name),
                Some(DNS_HINT.into()),
            );
        }
        if !seen.insert(&region.name) {
            c.value(
                Code::DuplicateName,
                "vt.yaml",
                &path,
                format!("region `{}` is declared twice", region.name),
                None,
            );
        }
    }
}

fn check_names_and_ids(c: &mut Checker<'_>, state: &DesiredState) {
    let mut seen: HashMap<&str, &str> = HashMap::new();
    let names = state
        .orgs
        .iter()
        .map(|o| (Kind::Org, &o.name, &o.id, &o.file));
    let names = names.chain(
        state
            .projects
            .iter()
            .map(|p| (Kind::Project, &p.name, &p.id, &p.file)),
    );
    let names = names.chain(
        state
            .apps
            .iter()
            .map(|a| (Kind::App, &a.name, &a.id, &a.file)),
    );
    let names = names.chain(
        state
            .envs
            .iter()
            .map(|e| (Kind::Env, &e.name, &e.id, &e.file)),
    );
    for (kind, name, id, file) in names {
        if !is_dns_label(name) {
            c.file(
                Code::InvalidName,
                file,
                format!("{kind} name `{name}` (from the path) is not a DNS label"),
                Some(format!(
                    "rename the {}: {DNS_HINT}",
                    if kind == Kind::Env {
                        "file"
                    } else {
                        "directory"
                    }
                )),
            );
        }
        if id.is_empty() {
            c.key(
                Code::MissingId,
                file,
                "id",
                format!("{kind} `{name}` has no id"),
                Some(format!(
                    "add `id: {}` (a fresh ID; IDs are minted once and never changed)",
                    ids::mint(kind)
                )),
            );
            continue;
        }
        if let Err(message) = ids::check(kind, id) {
            c.value(
                Code::InvalidId,
                file,
                "id",
                message,
                Some(format!("IDs look like `{}`", ids::mint(kind))),
            );
        }
        if let Some(first) = seen.insert(id, file) {
            c.value(
                Code::DuplicateId,
                file,
                "id",
                format!("id `{id}` is already used by {first}"),
                Some(
                    "IDs must be unique: mint a new one, e.g. by creating the resource with `vt`"
                        .into(),
                ),
            );
        }
    }
}

fn check_parents(c: &mut Checker<'_>, state: &DesiredState) {
    let orgs: HashSet<&str> = state.orgs.iter().map(|o| o.name.as_str()).collect();
    let projects: HashSet<String> = state.projects.iter().map(|p| p.qualified()).collect();
    let apps: HashSet<String> = state.apps.iter().map(|a| a.qualified()).collect();
    let missing = "references a parent that has no file";
    // A parent whose file is there but does not parse has its own
    // diagnostic; its children are not orphans.
    for p in &state.projects {
        let parent = format!("orgs/{}/org.yaml", p.org);
        if !orgs.contains(p.org.as_str()) && !c.is_unreadable(&parent) {
            c.file(
                Code::DanglingReference,
                &p.file,
                format!("project {missing}: org `{}`", p.org),
                Some(format!(
                    "create orgs/{}/org.yaml (`vt org create {}`)",
                    p.org, p.org
                )),
            );
        }
    }
    for a in &state.apps {
        let parent = format!("orgs/{}/{}/project.yaml", a.org, a.project);
        if !projects.contains(&format!("{}/{}", a.org, a.project)) && !c.is_unreadable(&parent) {
            c.file(
                Code::DanglingReference,
                &a.file,
                format!("app {missing}: project `{}/{}`", a.org, a.project),
                Some(format!("create orgs/{}/{}/project.yaml", a.org, a.project)),
            );
        }
    }
    for e in &state.envs {
        let parent = format!("orgs/{}/app.yaml", e.app_qualified());
        if !apps.contains(&e.app_qualified()) && !c.is_unreadable(&parent) {
            c.file(
                Code::DanglingReference,
                &e.file,
                format!("env {missing}: app `{}`", e.app_qualified()),
                Some(format!(
                    "create orgs/{}/app.yaml (`vt app create {}`)",
                    e.app_qualified(),
                    e.app
                )),
            );
        }
    }
}

/// Field-level checks of one spec layer; `base` is its path in the file.
fn check_spec(c: &mut Checker<'_>, file: &str, base: &str, spec: &Spec, regions: &HashSet<&str>) {
    let at = |path: &str| join_key(base, path);
    if let Some(image) = &spec.image {
        if let Err(why) = check_image(image) {
            c.value(
                Code::InvalidValue,
                file,
                &at("image"),
                format!("`{image}` is not an image reference: {why}"),
                Some("use `registry/name:tag` or `registry/name@sha256:<64 hex>`".into()),
            );
        }
    }
    // With a vt.yaml that does not parse, the declared regions are unknown.
    let regions_known = !c.is_unreadable("vt.yaml");
    for (i, region) in spec.regions.iter().flatten().enumerate() {
        if regions_known && !regions.contains(region.as_str()) {
            let mut known: Vec<_> = regions.iter().copied().collect();
            known.sort_unstable();
            c.value(
                Code::UnknownRegion,
                file,
                &at(&format!("regions[{i}]")),
                format!("region `{region}` is not declared in vt.yaml"),
                Some(format!("declared regions: {}", known.join(", "))),
            );
        }
    }
    for key in spec.env.iter().flat_map(|e| e.keys()) {
        let valid = key
            .chars()
            .next()
            .is_some_and(|ch| ch.is_ascii_alphabetic() || ch == '_')
            && key
                .chars()
                .all(|ch| ch.is_ascii_alphanumeric() || ch == '_');
        if !valid {
            c.key(
                Code::InvalidName,
                file,
                &at(&format!("env.{key}")),
                format!("`{key}` is not a valid environment variable name"),
                Some("use letters, digits and '_', not starting with a digit".into()),
            );
        }
    }
    if let Some(resources) = &spec.resources {
        if resources.cpu.is_some_and(|cpu| cpu.0 == 0) {
            c.value(
                Code::Quantity,
                file,
                &at("resources.cpu"),
                "cpu must be more than 0",
                None,
            );
        }
        if let Some(memory) = resources.memory.filter(|m| *m < MIN_MEMORY) {
            c.value(
                Code::Quantity,
                file,
                &at("resources.memory"),
                format!("memory {memory} is below the {MIN_MEMORY} a microVM needs"),
                None,
            );
        }
    }
    let names = |items: Vec<&str>, list: &str, c: &mut Checker<'_>| {
        let mut seen = HashSet::new();
        for (i, name) in items.into_iter().enumerate() {
            let path = at(&format!("{list}[{i}].name"));
            if list != "secrets" && !is_dns_label(name) {
                c.value(
                    Code::InvalidName,
                    file,
                    &path,
                    format!("name `{name}` is not a DNS label"),
                    Some(DNS_HINT.into()),
                );
            }
            if !seen.insert(name) {
                c.value(
                    Code::DuplicateName,
                    file,
                    &path,
                    format!("`{name}` appears twice in {list}"),
                    None,
                );
            }
        }
    };
    names(
        spec.ports
            .iter()
            .flatten()
            .map(|p| p.name.as_str())
            .collect(),
        "ports",
        c,
    );
    names(
        spec.endpoints
            .iter()
            .flatten()
            .map(|p| p.name.as_str())
            .collect(),
        "endpoints",
        c,
    );
    names(
        spec.volumes
            .iter()
            .flatten()
            .map(|p| p.name.as_str())
            .collect(),
        "volumes",
        c,
    );
    names(
        spec.secrets
            .iter()
            .flatten()
            .map(|p| p.name.as_str())
            .collect(),
        "secrets",
        c,
    );
    for (i, port) in spec.ports.iter().flatten().enumerate() {
        if port.port == 0 {
            c.value(
                Code::InvalidValue,
                file,
                &at(&format!("ports[{i}].port")),
                "port 0 is not a port",
                None,
            );
        }
    }
    for (i, ep) in spec.endpoints.iter().flatten().enumerate() {
        if ep.port == 0 {
            c.value(
                Code::InvalidValue,
                file,
                &at(&format!("endpoints[{i}].port")),
                "port 0 is not a port",
                None,
            );
        }
    }
    for (i, volume) in spec.volumes.iter().flatten().enumerate() {
        if volume.size < MIN_VOLUME {
            c.value(
                Code::Quantity,
                file,
                &at(&format!("volumes[{i}].size")),
                format!(
                    "volume size {} is below the minimum {MIN_VOLUME}",
                    volume.size
                ),
                None,
            );
        }
        check_abs_path(c, file, &at(&format!("volumes[{i}].mount")), &volume.mount);
    }
    for (i, secret) in spec.secrets.iter().flatten().enumerate() {
        check_abs_path(c, file, &at(&format!("secrets[{i}].path")), &secret.path);
        if let Some(signal) = secret
            .signal
            .as_deref()
            .filter(|s| crate::secrets::format::signal_number(s).is_none())
        {
            c.value(
                Code::InvalidValue,
                file,
                &at(&format!("secrets[{i}].signal")),
                format!("`{signal}` is not a signal vt can send"),
                Some(format!(
                    "use one of {}",
                    crate::secrets::format::SIGNALS
                        .iter()
                        .map(|(n, _)| *n)
                        .collect::<Vec<_>>()
                        .join(", ")
                )),
            );
        }
        let pattern = secret.format.as_ref().and_then(|f| f.pattern.as_deref());
        if let Some(Err(e)) = pattern.map(crate::secrets::format::compile_pattern) {
            c.value(
                Code::InvalidValue,
                file,
                &at(&format!("secrets[{i}].format.pattern")),
                format!("invalid pattern: {e}"),
                None,
            );
        }
    }
    if let Some(health) = &spec.health {
        if health
            .timeout
            .zip(health.interval)
            .is_some_and(|(t, i)| t > i)
        {
            c.value(
                Code::InvalidValue,
                file,
                &at("health.timeout"),
                "the health check timeout is longer than its interval",
                None,
            );
        }
        if health.path.as_ref().is_some_and(|p| !p.starts_with('/')) {
            c.value(
                Code::InvalidValue,
                file,
                &at("health.path"),
                "an HTTP path must start with '/'",
                None,
            );
        }
    }
}

fn check_abs_path(c: &mut Checker<'_>, file: &str, path: &str, value: &str) {
    if !value.starts_with('/') || value.split('/').any(|part| part == "..") {
        c.value(
            Code::InvalidValue,
            file,
            path,
            format!("`{value}` is not an absolute path"),
            Some("use an absolute path in the guest, e.g. /data".into()),
        );
    }
}

/// Checks the shape of an OCI image reference.
pub fn check_image(image: &str) -> Result<(), String> {
    let (name_tag, digest) = match image.split_once('@') {
        Some((n, d)) => (n, Some(d)),
        None => (image, None),
    };
    if let Some(digest) = digest {
        let hex = digest
            .strip_prefix("sha256:")
            .ok_or("the digest must start with sha256:")?;
        if hex.len() != 64
            || !hex
                .bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
        {
            return Err("a sha256 digest has 64 lowercase hex digits".into());
        }
    }
    let last_slash = name_tag.rfind('/').map_or(0, |i| i + 1);
    let (name, tag) = match name_tag[last_slash..].rfind(':') {
        Some(i) => (
            &name_tag[..last_slash + i],
            Some(&name_tag[last_slash + i + 1..]),
        ),
        None => (name_tag, None),
    };
    if name.is_empty() || name.split('/').any(str::is_empty) {
        return Err("the repository name is empty".into());
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-/:".contains(&b))
    {
        return Err(
            "the repository name has characters other than lowercase letters, digits and . _ - / :"
                .into(),
        );
    }
    if let Some(tag) = tag {
        if tag.is_empty()
            || tag.len() > 128
            || !tag
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
        {
            return Err("the tag must be 1 to 128 of letters, digits, '.', '_' and '-'".into());
        }
    }
    Ok(())
}

/// Renders a quota amount.
type Show<'a> = &'a dyn Fn(u64) -> String;

/// A sum over an org's envs that stops at overflow: `None` once it no
/// longer fits in a `u64` (reported once, when it happened).
#[derive(Debug, Clone, Copy)]
struct Total(Option<u64>);

impl Default for Total {
    fn default() -> Self {
        Total(Some(0))
    }
}

/// What an org uses, summed over its envs. Counts of things in the files
/// (apps, endpoints) cannot come near 2^64; amounts can.
#[derive(Debug, Default)]
struct Usage {
    apps: u64,
    instances: Total,
    cpu: Total,
    memory: Total,
    volume: Total,
    endpoints: u64,
    ipv4: u64,
}

/// A count of items in memory as a `u64` (never more than `usize` holds).
fn count(n: usize) -> u64 {
    u64::try_from(n).unwrap_or(u64::MAX)
}

/// A cpu amount in millicores, which may exceed what [`crate::Cpu`] holds.
fn show_millicores(m: u64) -> String {
    if m.is_multiple_of(1000) {
        (m / 1000).to_string()
    } else {
        format!("{m}m")
    }
}

/// One quantity an env adds to its org's usage.
struct Amount<'a> {
    /// What it is, for messages (`memory`).
    what: &'a str,
    /// The field that sets it (`resources.memory`).
    field: &'a str,
    /// Per instance, `None` when even that does not fit (a sum of volume sizes).
    each: Option<u64>,
    /// Renders an amount.
    show: Show<'a>,
}

/// Checks each org's quotas against what its envs declare. Totals are
/// computed with checked arithmetic: one that does not fit in a `u64` is an
/// [`Code::QuantityOverflow`] on the env that made it overflow, and its quota
/// is not checked.
pub fn check_quotas(c: &mut Checker<'_>, state: &DesiredState) {
    let mut usage: BTreeMap<&str, Usage> = BTreeMap::new();
    for app in &state.apps {
        let u = usage.entry(&app.org).or_default();
        u.apps = u.apps.saturating_add(1);
    }
    let app_files: HashMap<String, &str> = state
        .apps
        .iter()
        .map(|a| (a.qualified(), a.file.as_str()))
        .collect();
    let show_bytes = |b: u64| ByteSize(b).to_string();
    let plain = |n: u64| n.to_string();
    for env in &state.envs {
        let Some(spec) = &env.effective else { continue };
        let app_file = app_files.get(&env.app_qualified()).copied();
        let u = usage.entry(&env.org).or_default();
        let n = u64::from(spec.instances).checked_mul(count(spec.regions.len()));
        let volume = spec
            .volumes
            .iter()
            .try_fold(0u64, |sum, v| sum.checked_add(v.size.0));
        let amounts = [
            (
                &mut u.instances,
                Amount {
                    what: "number of instances",
                    field: "instances",
                    each: Some(1),
                    show: &plain,
                },
            ),
            (
                &mut u.cpu,
                Amount {
                    what: "cpu",
                    field: "resources.cpu",
                    each: Some(u64::from(spec.cpu.0)),
                    show: &show_millicores,
                },
            ),
            (
                &mut u.memory,
                Amount {
                    what: "memory",
                    field: "resources.memory",
                    each: Some(spec.memory.0),
                    show: &show_bytes,
                },
            ),
            (
                &mut u.volume,
                Amount {
                    what: "volume size",
                    field: "volumes",
                    each: volume,
                    show: &show_bytes,
                },
            ),
        ];
        for (total, amount) in amounts {
            let Some(sum) = total.0 else { continue };
            let env_total = amount.each.zip(n).and_then(|(each, n)| each.checked_mul(n));
            let message = match env_total.map(|t| sum.checked_add(t)) {
                Some(Some(sum)) => {
                    *total = Total(Some(sum));
                    continue;
                }
                Some(None) => format!(
                    "the total {} of org `{}` does not fit in 64 bits once env `{}` is added",
                    amount.what,
                    env.org,
                    env.qualified()
                ),
                None => format!(
                    "the total {} of env `{}` ({} per instance × {} instance(s) × {} region(s)) does not fit in 64 bits",
                    amount.what,
                    env.qualified(),
                    amount.each.map_or("more than 64 bits hold".into(), amount.show),
                    spec.instances,
                    spec.regions.len(),
                ),
            };
            *total = Total(None);
            let (file, path) = source_of(c, &env.file, app_file, amount.field);
            c.value(
                Code::QuantityOverflow,
                file,
                &path,
                message,
                Some(format!(
                    "lower `{}` or `instances`: no fleet has that much",
                    amount.field
                )),
            );
        }
        u.endpoints = u.endpoints.saturating_add(count(spec.endpoints.len()));
        let ipv4 = spec.endpoints.iter().filter(|e| e.ipv4).count();
        u.ipv4 = u.ipv4.saturating_add(count(ipv4));
    }
    for org in &state.orgs {
        let (Some(q), Some(u)) = (&org.spec.quotas, usage.get(org.name.as_str())) else {
            continue;
        };
        let checks: [(&str, Option<u64>, Total, Show<'_>); 7] = [
            (
                "max_apps",
                q.max_apps.map(u64::from),
                Total(Some(u.apps)),
                &plain,
            ),
            (
                "max_instances",
                q.max_instances.map(u64::from),
                u.instances,
                &plain,
            ),
            (
                "max_cpu",
                q.max_cpu.map(|c| u64::from(c.0)),
                u.cpu,
                &show_millicores,
            ),
            (
                "max_memory",
                q.max_memory.map(|m| m.0),
                u.memory,
                &show_bytes,
            ),
            (
                "max_volume_size",
                q.max_volume_size.map(|m| m.0),
                u.volume,
                &show_bytes,
            ),
            (
                "max_endpoints",
                q.max_endpoints.map(u64::from),
                Total(Some(u.endpoints)),
                &plain,
            ),
            (
                "max_ipv4_endpoints",
                q.max_ipv4_endpoints.map(u64::from),
                Total(Some(u.ipv4)),
                &plain,
            ),
        ];
        for (field, limit, Total(used), show) in checks {
            // An overflowed total is already reported.
            let Some(used) = used else { continue };
            if let Some(limit) = limit.filter(|limit| used > *limit) {
                c.value(
                    Code::QuotaExceeded,
                    &org.file,
                    &format!("quotas.{field}"),
                    format!(
                        "org `{}` would use {} against a quota of {}",
                        org.name,
                        show(used),
                        show(limit)
                    ),
                    Some(format!("raise quotas.{field} or scale envs down")),
                );
            }
        }
    }
}

/// The file and field path where an env's `field` is set: the env file, else
/// its app file, else `vt.yaml`'s defaults; the env file when none sets it.
fn source_of<'f>(
    c: &Checker<'_>,
    env_file: &'f str,
    app_file: Option<&'f str>,
    field: &str,
) -> (&'f str, String) {
    let defaults = join_key("defaults", field);
    if c.contains(env_file, field) {
        (env_file, field.into())
    } else if let Some(app_file) = app_file.filter(|f| c.contains(f, field)) {
        (app_file, field.into())
    } else if c.contains("vt.yaml", &defaults) {
        ("vt.yaml", defaults)
    } else {
        (env_file, field.into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dns_labels() {
        assert!(is_dns_label("web-1"));
        assert!(!is_dns_label("Web"));
        assert!(!is_dns_label("-web"));
        assert!(!is_dns_label(""));
        assert!(!is_dns_label(&"a".repeat(64)));
    }

    #[test]
    fn image_references() {
        assert_eq!(check_image("registry.local/web:1"), Ok(()));
        assert_eq!(check_image("localhost:5000/team/web"), Ok(()));
        assert_eq!(
            check_image(&format!("web@sha256:{}", "a".repeat(64))),
            Ok(())
        );
        assert!(check_image("Web:1").is_err());
        assert!(check_image("web:").is_err());
        assert!(check_image("web@sha256:abc").is_err());
        assert!(check_image("").is_err());
    }
}
