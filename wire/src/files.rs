//! Reading and writing the small PEM and key files kept in a node's state directory.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use super::error::WireError;

/// Who may read a file written by [`write`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Mode {
    /// Mode 0600: keys and secrets.
    Private,
    /// Mode 0644: certificates.
    Public,
}

/// Reads a whole file, naming it in the error.
pub(crate) fn read(path: &Path) -> Result<Vec<u8>, WireError> {
    fs::read(path).map_err(|source| WireError::ReadFile {
        path: path.to_owned(),
        source,
    })
}

/// Reads a whole UTF-8 file, naming it in the error.
pub(crate) fn read_string(path: &Path) -> Result<String, WireError> {
    fs::read_to_string(path).map_err(|source| WireError::ReadFile {
        path: path.to_owned(),
        source,
    })
}

/// Writes a file atomically (a temporary file renamed over it), creating the directory
/// if needed. A private file is never readable by others, not even briefly.
pub(crate) fn write(path: &Path, contents: &[u8], mode: Mode) -> Result<(), WireError> {
    let err = |source| WireError::WriteFile {
        path: path.to_owned(),
        source,
    };
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir).map_err(err)?;
    }
    let mut tmp_name = path.as_os_str().to_owned();
    tmp_name.push(".tmp");
    let tmp = Path::new(&tmp_name);
    let bits = match mode {
        Mode::Private => 0o600,
        Mode::Public => 0o644,
    };
    // A stale temporary file would keep its old mode: start afresh.
    if let Err(e) = fs::remove_file(tmp) {
        if e.kind() != std::io::ErrorKind::NotFound {
            return Err(err(e));
        }
    }
    let mut file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(bits)
        .open(tmp)
        .map_err(err)?;
    file.write_all(contents).map_err(err)?;
    file.sync_all().map_err(err)?;
    fs::rename(tmp, path).map_err(err)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    #[test]
    fn private_files_are_0600_and_overwritten_whole() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/secret.key");
        write(&path, b"first, longer", Mode::Private).unwrap();
        write(&path, b"second", Mode::Private).unwrap();
        assert_eq!(read(&path).unwrap(), b"second");
        let mode = fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn missing_files_are_named_in_the_error() {
        let err = read_string(Path::new("/nonexistent/ca.pem")).unwrap_err();
        assert_eq!(err.to_string(), "could not read /nonexistent/ca.pem");
    }
}
