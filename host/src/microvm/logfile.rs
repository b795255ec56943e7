//! The host's own copy of each instance's log: `instances/<id>/app.log`,
//! rotated at a size limit (one older generation kept, `app.log.1`), and
//! instance directories of stopped instances removed after an age limit.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};
use vt_init::protocol::Stream;

/// Rotate `app.log` when it grows past this.
pub const MAX_LOG_BYTES: u64 = 10 << 20;
/// Remove the directories (logs, console) of instances gone this long.
pub const MAX_AGE: Duration = Duration::from_secs(7 * 24 * 3600);

/// An append-only, size-rotated log file.
#[derive(Debug, Clone)]
pub struct LogFile {
    path: PathBuf,
    max: u64,
}

impl LogFile {
    /// The log of the instance whose directory is `dir`.
    pub fn new(dir: &Path, max: u64) -> LogFile {
        LogFile {
            path: dir.join("app.log"),
            max,
        }
    }

    /// Appends one line (`<unix ms> <stream> <line>`), rotating first when full.
    /// Blocking: call it off the async runtime.
    pub fn append(&self, time: u64, stream: Stream, line: &str) -> std::io::Result<()> {
        if std::fs::metadata(&self.path).is_ok_and(|m| m.len() >= self.max) {
            std::fs::rename(&self.path, self.path.with_extension("log.1"))?;
        }
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)?;
        writeln!(file, "{time} {} {line}", stream.as_str())
    }
}

/// Removes instance directories under `instances` not modified for `max_age`
/// and not in `running`.
pub fn prune(instances: &Path, running: &[String], max_age: Duration) {
    let now = SystemTime::now();
    for entry in std::fs::read_dir(instances).into_iter().flatten().flatten() {
        let name = entry.file_name().to_string_lossy().to_string();
        let old = entry
            .metadata()
            .and_then(|m| m.modified())
            .is_ok_and(|t| now.duration_since(t).unwrap_or_default() > max_age);
        if old && !running.contains(&name) {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rotates_at_the_size_limit() {
        let dir = tempfile::tempdir().expect("tempdir");
        let log = LogFile::new(dir.path(), 64);
        for i in 0..10 {
            log.append(i, Stream::Stdout, "a line of some length")
                .expect("append");
        }
        let current = std::fs::read_to_string(dir.path().join("app.log")).expect("current");
        let older = std::fs::read_to_string(dir.path().join("app.log.1")).expect("rotated");
        assert!(current.len() < 128 && !older.is_empty());
        assert!(current.ends_with("9 stdout a line of some length\n"));
    }

    #[test]
    fn prunes_only_old_stopped_instances() {
        let dir = tempfile::tempdir().expect("tempdir");
        for id in ["ins_1", "ins_2"] {
            std::fs::create_dir_all(dir.path().join(id)).expect("mkdir");
        }
        prune(dir.path(), &["ins_1".into()], Duration::ZERO);
        assert!(dir.path().join("ins_1").exists());
        assert!(!dir.path().join("ins_2").exists());
    }
}
