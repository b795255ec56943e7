//! What runs in the guest: the image config's entrypoint, cmd, env, working
//! directory and user, with the app manifest's overrides applied and the
//! user resolved through the image's own `/etc/passwd` and `/etc/group`.

use super::spec::ImageConfig;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// `PATH` when neither the image nor the manifest sets one (Docker's default).
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// The process vt-init starts in the guest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Process {
    /// Executable and arguments; never empty.
    pub argv: Vec<String>,
    /// Environment.
    pub env: BTreeMap<String, String>,
    /// Absolute working directory.
    pub workdir: String,
    /// User ID.
    pub uid: u32,
    /// Primary group ID.
    pub gid: u32,
}

/// Why the process cannot be resolved.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProcessError {
    /// Neither the image nor the manifest says what to run.
    #[error("the image has no entrypoint or cmd and the manifest sets no command or args")]
    NoCommand,
    /// The user name is not in the image's `/etc/passwd`.
    #[error("user `{0}` is not in the image's /etc/passwd")]
    UnknownUser(String),
    /// The group name is not in the image's `/etc/group`.
    #[error("group `{0}` is not in the image's /etc/group")]
    UnknownGroup(String),
    /// The image's `User` is malformed.
    #[error("the image's user `{0}` is not `user`, `uid`, `user:group` or `uid:gid`")]
    BadUser(String),
}

/// One `/etc/passwd` line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PasswdEntry {
    /// Login name.
    pub name: String,
    /// User ID.
    pub uid: u32,
    /// Primary group ID.
    pub gid: u32,
    /// Home directory.
    pub home: String,
}

/// One `/etc/group` line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupEntry {
    /// Group name.
    pub name: String,
    /// Group ID.
    pub gid: u32,
}

/// An image's users and groups, from its `/etc/passwd` and `/etc/group`
/// (either may be missing: then only numeric IDs resolve).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Users {
    /// Users, in file order.
    pub passwd: Vec<PasswdEntry>,
    /// Groups, in file order.
    pub groups: Vec<GroupEntry>,
}

impl Users {
    /// Parses the two files' text; malformed lines are skipped, as libc does.
    pub fn parse(passwd: &str, group: &str) -> Self {
        let fields = |line: &str| -> Option<Vec<String>> {
            let line = line.trim_end_matches('\r');
            if line.is_empty() || line.starts_with('#') {
                return None;
            }
            Some(line.split(':').map(str::to_owned).collect())
        };
        let passwd = passwd
            .lines()
            .filter_map(fields)
            .filter_map(|f| {
                Some(PasswdEntry {
                    name: f.first()?.clone(),
                    uid: f.get(2)?.parse().ok()?,
                    gid: f.get(3)?.parse().ok()?,
                    home: f.get(5).cloned().unwrap_or_default(),
                })
            })
            .collect();
        let groups = group
            .lines()
            .filter_map(fields)
            .filter_map(|f| {
                Some(GroupEntry {
                    name: f.first()?.clone(),
                    gid: f.get(2)?.parse().ok()?,
                })
            })
            .collect();
        Self { passwd, groups }
    }

    fn user(&self, name: &str) -> Option<&PasswdEntry> {
        self.passwd.iter().find(|e| e.name == name)
    }

    fn uid(&self, uid: u32) -> Option<&PasswdEntry> {
        self.passwd.iter().find(|e| e.uid == uid)
    }

    fn group(&self, name: &str) -> Option<&GroupEntry> {
        self.groups.iter().find(|e| e.name == name)
    }

    /// Resolves an image `User` value (`""`, `name`, `uid`, `name:group`,
    /// `uid:gid`, mixed) to `(uid, gid, home)` like Docker and runc: a
    /// numeric user not in passwd is allowed (gid 0 unless given), a name
    /// must exist; a group name must exist, a numeric gid need not.
    pub fn resolve(&self, spec: &str) -> Result<(u32, u32, Option<String>), ProcessError> {
        let (user, group) = match spec.split_once(':') {
            Some((u, g)) => (u, Some(g)),
            None => (spec, None),
        };
        if user.is_empty() && group.is_some() {
            return Err(ProcessError::BadUser(spec.to_owned()));
        }
        let entry = if user.is_empty() {
            self.uid(0)
        } else if let Ok(uid) = user.parse::<u32>() {
            self.uid(uid)
        } else {
            Some(
                self.user(user)
                    .ok_or_else(|| ProcessError::UnknownUser(user.to_owned()))?,
            )
        };
        let uid = match user.parse::<u32>() {
            Ok(uid) => uid,
            Err(_) => entry.map_or(0, |e| e.uid),
        };
        let gid = match group {
            None => entry.map_or(0, |e| e.gid),
            Some("") => return Err(ProcessError::BadUser(spec.to_owned())),
            Some(g) => match g.parse::<u32>() {
                Ok(gid) => gid,
                Err(_) => {
                    self.group(g)
                        .ok_or_else(|| ProcessError::UnknownGroup(g.to_owned()))?
                        .gid
                }
            },
        };
        let home = entry.map(|e| e.home.clone()).filter(|h| !h.is_empty());
        Ok((uid, gid, home))
    }
}

/// The process an instance runs: the image's config with the manifest's
/// overrides, Kubernetes-style:
///
/// - `command` replaces the entrypoint and `args` replace cmd; a `command`
///   without `args` drops the image's cmd too (it belonged to the old
///   entrypoint);
/// - `env` is the image's, then the manifest's on top (same key wins);
///   `PATH` defaults to [`DEFAULT_PATH`] and `HOME` to the user's home
///   (or `/`) when neither sets them, as Docker does;
/// - the working directory is the image's (default `/`);
/// - the user is resolved through `users` (see [`Users::resolve`]).
pub fn effective_process(
    config: &ImageConfig,
    command: Option<&[String]>,
    args: Option<&[String]>,
    env: &BTreeMap<String, String>,
    users: &Users,
) -> Result<Process, ProcessError> {
    let entrypoint = match command {
        Some(c) => c.to_vec(),
        None => config.entrypoint.clone().unwrap_or_default(),
    };
    let cmd = match (args, command) {
        (Some(a), _) => a.to_vec(),
        (None, Some(_)) => Vec::new(),
        (None, None) => config.cmd.clone().unwrap_or_default(),
    };
    let argv: Vec<String> = entrypoint.into_iter().chain(cmd).collect();
    if argv.is_empty() || argv[0].is_empty() {
        return Err(ProcessError::NoCommand);
    }
    let (uid, gid, home) = users.resolve(config.user.as_deref().unwrap_or(""))?;
    let mut merged = BTreeMap::new();
    for entry in config.env.iter().flatten() {
        match entry.split_once('=') {
            Some((k, v)) => merged.insert(k.to_owned(), v.to_owned()),
            None => merged.insert(entry.clone(), String::new()),
        };
    }
    merged.extend(env.iter().map(|(k, v)| (k.clone(), v.clone())));
    merged
        .entry("PATH".to_owned())
        .or_insert_with(|| DEFAULT_PATH.to_owned());
    merged
        .entry("HOME".to_owned())
        .or_insert_with(|| home.unwrap_or_else(|| "/".to_owned()));
    let workdir = match config.working_dir.as_deref() {
        None | Some("") => "/".to_owned(),
        Some(w) if w.starts_with('/') => w.to_owned(),
        Some(w) => format!("/{w}"),
    };
    Ok(Process {
        argv,
        env: merged,
        workdir,
        uid,
        gid,
    })
}
