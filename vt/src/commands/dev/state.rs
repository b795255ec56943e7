//! Where `vt dev` keeps its state: `<repo>/.vt/dev/`, ignored by git
//! (`.vt/.gitignore` holds `*`) and by the loader (not layout files).
//!
//! ```text
//! .vt/dev/dev.json            what runs: controller URL and token, runtime, hosts, pids
//! .vt/dev/fleet/              the controller's state directory (fleet.json, state.redb, keys, image pins)
//! .vt/dev/hosts/<host>/       each host's state directory (images, instances, volumes)
//! .vt/dev/edge/               the edge's certificate
//! .vt/dev/registry/           docker-registry's storage, config and log
//! .vt/dev/build/<image>/      image builds (OCI layout, staged files)
//! .vt/dev/logs/<process>.log  each process's output, for this run
//! ```

use super::topology::DevHost;
use serde::{Deserialize, Serialize};
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// `dev.json`: what `vt dev` runs, for people and for `vt diff --against dev`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DevFile {
    /// The controller's API, `http://127.0.0.1:PORT`.
    pub controller: String,
    /// Its API token.
    pub token: String,
    /// The hosts' runtime: `microvm` or `sim`.
    pub runtime: String,
    /// The hosts.
    pub hosts: Vec<DevHost>,
    /// The `vt dev` process.
    pub pid: u32,
    /// The processes it started, stopped by the next `vt dev` if it died
    /// without stopping them.
    #[serde(default)]
    pub children: Vec<ChildProcess>,
}

/// A process `vt dev` started.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChildProcess {
    /// `controller`, `dev-1`, `edge`, `registry`.
    pub name: String,
    /// Its pid.
    pub pid: u32,
    /// Its log.
    pub log: PathBuf,
}

/// The state directory of `vt dev` in one repository.
#[derive(Debug, Clone)]
pub struct DevDir {
    dir: PathBuf,
}

impl DevDir {
    /// `<root>/.vt/dev`.
    pub fn new(root: &Path) -> DevDir {
        DevDir {
            dir: root.join(".vt").join("dev"),
        }
    }

    /// The directory itself.
    pub fn path(&self) -> &Path {
        &self.dir
    }

    /// The controller's state directory.
    pub fn fleet(&self) -> PathBuf {
        self.dir.join("fleet")
    }

    /// A host's state directory.
    pub fn host(&self, name: &str) -> PathBuf {
        self.dir.join("hosts").join(name)
    }

    /// The edge's state directory.
    pub fn edge(&self) -> PathBuf {
        self.dir.join("edge")
    }

    /// The registry's directory.
    pub fn registry(&self) -> PathBuf {
        self.dir.join("registry")
    }

    /// Build scratch of image `name`.
    pub fn build(&self, name: &str) -> PathBuf {
        self.dir.join("build").join(name)
    }

    /// The log file of process `name`.
    pub fn log(&self, name: &str) -> PathBuf {
        self.dir.join("logs").join(format!("{name}.log"))
    }

    fn dev_json(&self) -> PathBuf {
        self.dir.join("dev.json")
    }

    /// Creates the directories, and `.vt/.gitignore` so git ignores `.vt/`.
    pub fn prepare(&self) -> io::Result<()> {
        std::fs::create_dir_all(self.dir.join("logs"))?;
        if let Some(vt) = self.dir.parent() {
            let ignore = vt.join(".gitignore");
            if !ignore.exists() {
                std::fs::write(ignore, "# vt's local state (vt dev): never committed\n*\n")?;
            }
        }
        Ok(())
    }

    /// Deletes everything (volumes included); whether there was anything.
    pub fn clean(&self) -> io::Result<bool> {
        match std::fs::remove_dir_all(&self.dir) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// The last `dev.json`, if there is a readable one.
    pub fn read(&self) -> Option<DevFile> {
        let bytes = std::fs::read(self.dev_json()).ok()?;
        serde_json::from_slice(&bytes).ok()
    }

    /// Writes `dev.json` (a new file renamed over the old one).
    pub fn write(&self, file: &DevFile) -> io::Result<()> {
        let tmp = self.dir.join("dev.json.tmp");
        std::fs::write(
            &tmp,
            serde_json::to_vec_pretty(file).map_err(io::Error::other)?,
        )?;
        std::fs::rename(tmp, self.dev_json())
    }
}

fn pid_of(pid: u32) -> Option<rustix::process::Pid> {
    i32::try_from(pid)
        .ok()
        .and_then(rustix::process::Pid::from_raw)
}

/// Whether process `pid` exists and is not a zombie.
fn alive(pid: u32) -> bool {
    let Some(p) = pid_of(pid) else {
        return false;
    };
    rustix::process::test_kill_process(p).is_ok()
        && std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
            // `pid (comm) S ...`: the state follows the last parenthesis.
            stat.rsplit_once(") ")
                .is_some_and(|(_, rest)| !rest.starts_with('Z'))
        })
}

/// Whether process `pid` runs and its command line contains `needle`
/// (a pid alone may have been reused by now).
pub fn runs(pid: u32, needle: &str) -> bool {
    alive(pid)
        && std::fs::read(format!("/proc/{pid}/cmdline"))
            .map(|c| {
                String::from_utf8_lossy(&c)
                    .replace('\0', " ")
                    .contains(needle)
            })
            .unwrap_or(false)
}

/// Sends SIGTERM to `pid`, waits up to `grace` for it to go, then SIGKILL.
/// Whether it had to be killed.
pub fn terminate(pid: u32, grace: Duration) -> bool {
    use rustix::process::{kill_process, Signal};
    let Some(p) = pid_of(pid) else {
        return false;
    };
    let _ = kill_process(p, Signal::TERM);
    let deadline = Instant::now() + grace;
    while Instant::now() < deadline {
        if !alive(pid) {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    kill_process(p, Signal::KILL).is_ok()
}

/// The processes of a previous `vt dev` in `dir` that still run although
/// it does not (it was killed): they are stopped before anything starts,
/// last started first (the edge and hosts before the controller).
pub fn leftovers(previous: &DevFile, dir: &DevDir) -> Vec<ChildProcess> {
    let needle = dir.path().display().to_string();
    previous
        .children
        .iter()
        .rev()
        .filter(|c| runs(c.pid, &needle))
        .cloned()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dev_json_keeps_its_documented_fields() {
        let file = DevFile {
            controller: "http://127.0.0.1:7080".into(),
            token: "vta_x".into(),
            runtime: "microvm".into(),
            hosts: vec![DevHost {
                name: "dev-1".into(),
                region: "local".into(),
                cpu: "2".into(),
                memory: "2Gi".into(),
                tunnel: None,
            }],
            pid: 42,
            children: Vec::new(),
        };
        let json = serde_json::to_value(&file).expect("json");
        assert_eq!(
            json,
            serde_json::json!({
                "controller": "http://127.0.0.1:7080",
                "token": "vta_x",
                "runtime": "microvm",
                "hosts": [{"name": "dev-1", "region": "local", "cpu": "2", "memory": "2Gi"}],
                "pid": 42,
                "children": []
            })
        );
        let dir = tempfile::tempdir().expect("tempdir");
        let dev = DevDir::new(dir.path());
        dev.prepare().expect("prepare");
        assert_eq!(
            std::fs::read_to_string(dir.path().join(".vt/.gitignore"))
                .expect("gitignore")
                .lines()
                .last(),
            Some("*")
        );
        assert!(dev.read().is_none());
        dev.write(&file).expect("write");
        assert_eq!(dev.read(), Some(file));
        assert!(dev.clean().expect("clean") && !dev.path().exists());
        assert!(!dev.clean().expect("clean again"));
    }

    #[test]
    fn only_live_processes_with_the_state_dir_are_leftovers() {
        let dir = tempfile::tempdir().expect("tempdir");
        let dev = DevDir::new(dir.path());
        let mut sleeper = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .expect("sleep");
        let previous = DevFile {
            controller: String::new(),
            token: String::new(),
            runtime: "sim".into(),
            hosts: Vec::new(),
            pid: u32::MAX,
            children: vec![ChildProcess {
                name: "sleep".into(),
                pid: sleeper.id(),
                log: PathBuf::new(),
            }],
        };
        // Until it has exec'd, its command line is this test's.
        let deadline = Instant::now() + Duration::from_secs(5);
        while !runs(sleeper.id(), "sleep 30") {
            assert!(Instant::now() < deadline, "sleep never ran");
            std::thread::sleep(Duration::from_millis(10));
        }
        assert!(
            leftovers(&previous, &dev).is_empty(),
            "not ours: no state dir in its command line"
        );
        assert!(!terminate(sleeper.id(), Duration::from_secs(5)));
        let _ = sleeper.wait();
        assert!(!runs(sleeper.id(), "sleep"));
    }
}
