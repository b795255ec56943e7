//! Applies layer tars to a directory the way `umoci unpack` does (and the
//! OCI image spec's "applying changesets"):
//!
//! - Entry names are cleaned (`./a`, `/a` → `a`); a `..` component is refused.
//! - Every write resolves the entry's parent directory inside the root, as if
//!   the root were `/` (symlinks, absolute ones included, are followed but
//!   can never leave it), and never follows the entry's own last component.
//! - `.wh.<name>` removes `<name>` from lower layers; `.wh..wh..opq` empties
//!   its directory of lower-layer content. What this layer itself created is
//!   kept (umoci's "upper paths"), so entry order within a layer is harmless.
//! - An existing path is replaced unless both it and the entry are
//!   directories (then only the metadata changes).
//! - Hard links point at files of this or lower layers, resolved in the root.
//! - Ownership, mode (setuid, setgid, sticky included), xattrs (PAX
//!   `SCHILY.xattr.*`, replacing what was there) and atime/mtime (PAX
//!   sub-second times honoured) are applied to every entry but hard links; a
//!   directory's times are restored after each change inside it.
//! - Character and block devices and FIFOs are created with mknod; where
//!   that is not permitted (not root) a device is skipped with a warning.
//!   Without root, ownership is not applied either (warned once).

use super::digest::{Digest, Hashing};
use super::spec::Compression;
use rustix::fs::{AtFlags, FileType, Mode, Timespec, Timestamps, XattrFlags, CWD};
use std::collections::{HashSet, VecDeque};
use std::ffi::{OsStr, OsString};
use std::fs::{self, File};
use std::io::{self, BufReader, Read};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};
use tracing::warn;

const WHITEOUT_PREFIX: &[u8] = b".wh.";
const OPAQUE: &[u8] = b".wh..wh..opq";
const XATTR_PREFIX: &str = "SCHILY.xattr.";
/// xattrs the host's security modules own; never cleared or set from a layer.
const IGNORED_XATTRS: [&str; 1] = ["security.selinux"];
const MAX_SYMLINKS: usize = 255;

/// Why a layer cannot be applied.
#[derive(Debug, thiserror::Error)]
pub enum UnpackError {
    /// The tar stream is malformed (or the decompressor failed).
    #[error("the layer is not a readable tar archive")]
    Read(#[source] io::Error),
    /// An entry name has a `..` component.
    #[error("entry `{0}` has a `..` component, which could escape the root")]
    UnsafePath(String),
    /// A non-directory entry for the root itself.
    #[error("entry `{0}` would replace the root directory with a non-directory")]
    RootType(String),
    /// A tar entry type vt does not unpack (GNU sparse files, for example).
    #[error("entry `{entry}` has an unsupported type ({kind})")]
    Unsupported {
        /// The entry's name.
        entry: String,
        /// The tar type.
        kind: String,
    },
    /// A filesystem operation failed.
    #[error("cannot {op} `{entry}`")]
    Io {
        /// What was being done.
        op: &'static str,
        /// The entry's name.
        entry: String,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// The uncompressed layer does not match the config's `diff_ids`.
    #[error("the uncompressed layer hashes to {actual}, not {expected} as the image config says")]
    DiffIdMismatch {
        /// The config's diff ID.
        expected: Digest,
        /// What the layer hashed to.
        actual: Digest,
    },
}

/// Applies a layer blob (a tar, maybe compressed) to `root`, checking the
/// uncompressed stream against `diff_id` when given.
pub fn apply_layer_blob(
    root: &Path,
    blob: &Path,
    compression: Compression,
    diff_id: Option<&Digest>,
) -> Result<(), UnpackError> {
    let file = File::open(blob).map_err(|source| UnpackError::Io {
        op: "open the layer blob",
        entry: blob.display().to_string(),
        source,
    })?;
    let file = BufReader::with_capacity(1 << 16, file);
    let reader: Box<dyn Read> = match compression {
        Compression::None => Box::new(file),
        Compression::Gzip => Box::new(flate2::read::MultiGzDecoder::new(file)),
        Compression::Zstd => Box::new(zstd::Decoder::with_buffer(file).map_err(UnpackError::Read)?),
    };
    let mut hashing = Hashing::new(reader);
    apply_layer(root, &mut hashing)?;
    io::copy(&mut hashing, &mut io::sink()).map_err(UnpackError::Read)?;
    let (actual, _, _) = hashing.finish();
    match diff_id {
        Some(expected) if *expected != actual => Err(UnpackError::DiffIdMismatch {
            expected: expected.clone(),
            actual,
        }),
        _ => Ok(()),
    }
}

/// Applies one uncompressed layer tar to `root` (which must exist).
pub fn apply_layer(root: &Path, reader: impl Read) -> Result<(), UnpackError> {
    let mut archive = tar::Archive::new(reader);
    let mut state = Extractor {
        root: root.to_path_buf(),
        upper: HashSet::new(),
        warned_chown: false,
        warned_xattr: false,
    };
    for entry in archive.entries().map_err(UnpackError::Read)? {
        let mut entry = entry.map_err(UnpackError::Read)?;
        state.entry(&mut entry)?;
    }
    Ok(())
}

/// Cleans an entry name into a root-relative path: drops `/` and `.`,
/// refuses `..`. The empty path is the root.
fn clean(path: &Path) -> Option<PathBuf> {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::RootDir | Component::CurDir => {}
            Component::ParentDir | Component::Prefix(_) => return None,
        }
    }
    Some(out)
}

/// Resolves `rel` under `root` following symlinks as if `root` were `/`:
/// `..` stops at the root, absolute link targets restart from it, and the
/// part of the path that does not exist yet is appended as is.
pub fn secure_join(root: &Path, rel: &Path) -> io::Result<PathBuf> {
    let mut pending: VecDeque<OsString> = VecDeque::new();
    push_components(&mut pending, rel, false);
    let mut resolved = PathBuf::new();
    let mut hops = 0;
    while let Some(c) = pending.pop_front() {
        if c == ".." {
            resolved.pop();
            continue;
        }
        let candidate = root.join(&resolved).join(&c);
        match fs::symlink_metadata(&candidate) {
            Ok(m) if m.file_type().is_symlink() => {
                hops += 1;
                if hops > MAX_SYMLINKS {
                    return Err(io::Error::from_raw_os_error(
                        rustix::io::Errno::LOOP.raw_os_error(),
                    ));
                }
                let target = fs::read_link(&candidate)?;
                if target.has_root() {
                    resolved = PathBuf::new();
                }
                push_components(&mut pending, &target, true);
            }
            _ => resolved.push(&c),
        }
    }
    Ok(root.join(resolved))
}

/// Puts `path`'s components at the front (or back) of `queue`, with `..`
/// kept as the string `..` (a real name can never be that).
fn push_components(queue: &mut VecDeque<OsString>, path: &Path, front: bool) {
    let parts: Vec<OsString> = path
        .components()
        .filter_map(|c| match c {
            Component::Normal(n) => Some(n.to_os_string()),
            Component::ParentDir => Some(OsString::from("..")),
            _ => None,
        })
        .collect();
    if front {
        for p in parts.into_iter().rev() {
            queue.push_front(p);
        }
    } else {
        queue.extend(parts);
    }
}

/// The metadata a tar entry carries.
struct Meta {
    uid: u32,
    gid: u32,
    mode: u32,
    atime: Timespec,
    mtime: Timespec,
    xattrs: Vec<(String, Vec<u8>)>,
}

fn pax_time(value: &str) -> Option<Timespec> {
    let (secs, frac) = match value.split_once('.') {
        Some((s, f)) => (s, f),
        None => (value, ""),
    };
    let tv_sec: i64 = secs.parse().ok()?;
    let digits: String = frac.chars().take(9).collect();
    let mut tv_nsec: i64 = if digits.is_empty() {
        0
    } else {
        digits.parse().ok()?
    };
    for _ in digits.len()..9 {
        tv_nsec *= 10;
    }
    if tv_sec < 0 && tv_nsec > 0 {
        // "-1.5" is 1.5 s before the epoch.
        return Some(Timespec {
            tv_sec: tv_sec - 1,
            tv_nsec: 1_000_000_000 - tv_nsec,
        });
    }
    Some(Timespec { tv_sec, tv_nsec })
}

struct Extractor {
    root: PathBuf,
    /// Root-relative paths this layer created, and their ancestors.
    upper: HashSet<PathBuf>,
    warned_chown: bool,
    warned_xattr: bool,
}

fn io_err<'a>(op: &'static str, entry: &'a str) -> impl FnOnce(io::Error) -> UnpackError + 'a {
    move |source| UnpackError::Io {
        op,
        entry: entry.to_owned(),
        source,
    }
}

fn is_not_found(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::NotFound
        || e.raw_os_error() == Some(rustix::io::Errno::NOTDIR.raw_os_error())
}

fn remove_any(path: &Path) -> io::Result<()> {
    match fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => fs::remove_dir_all(path),
        Ok(_) => fs::remove_file(path),
        Err(e) if is_not_found(&e) => Ok(()),
        Err(e) => Err(e),
    }
}

fn times_of(path: &Path) -> Option<Timestamps> {
    let m = fs::symlink_metadata(path).ok()?;
    Some(Timestamps {
        last_access: Timespec {
            tv_sec: m.atime(),
            tv_nsec: m.atime_nsec(),
        },
        last_modification: Timespec {
            tv_sec: m.mtime(),
            tv_nsec: m.mtime_nsec(),
        },
    })
}

fn set_times(path: &Path, times: &Timestamps) -> io::Result<()> {
    rustix::fs::utimensat(CWD, path, times, AtFlags::SYMLINK_NOFOLLOW).map_err(io::Error::from)
}

impl Extractor {
    fn entry<R: Read>(&mut self, entry: &mut tar::Entry<'_, R>) -> Result<(), UnpackError> {
        let kind = entry.header().entry_type();
        if kind.is_pax_global_extensions() {
            return Ok(());
        }
        let raw = entry.path().map_err(UnpackError::Read)?.into_owned();
        let name = raw.to_string_lossy().into_owned();
        let rel = clean(&raw).ok_or_else(|| UnpackError::UnsafePath(name.clone()))?;
        let meta = self.meta(entry, &name)?;

        let (Some(parent), Some(file)) = (rel.parent(), rel.file_name()) else {
            // The root itself.
            if !kind.is_dir() {
                return Err(UnpackError::RootType(name));
            }
            let root = self.root.clone();
            return self.apply_metadata(&root, &meta, &name);
        };
        let file = file.to_os_string();
        let dir =
            secure_join(&self.root, parent).map_err(io_err("resolve the parent of", &name))?;
        let parent_times = times_of(&dir);
        let result = self.entry_at(entry, &name, &dir, &file, kind, &meta);
        if let Some(times) = parent_times {
            if result.is_ok() {
                set_times(&dir, &times)
                    .map_err(io_err("restore the times of the parent of", &name))?;
            }
        }
        result
    }

    fn meta<R: Read>(
        &mut self,
        entry: &mut tar::Entry<'_, R>,
        name: &str,
    ) -> Result<Meta, UnpackError> {
        let header = entry.header();
        let bad = |what: &str| UnpackError::Unsupported {
            entry: name.to_owned(),
            kind: format!("out-of-range {what}"),
        };
        // Like Go's archive/tar (and so umoci), an empty numeric field is 0.
        let uid = u32::try_from(header.uid().unwrap_or(0)).map_err(|_| bad("uid"))?;
        let gid = u32::try_from(header.gid().unwrap_or(0)).map_err(|_| bad("gid"))?;
        let mode = header.mode().unwrap_or(0);
        let mut mtime = Timespec {
            tv_sec: i64::try_from(header.mtime().unwrap_or(0)).map_err(|_| bad("mtime"))?,
            tv_nsec: 0,
        };
        let mut atime = None;
        let mut xattrs = Vec::new();
        if let Some(exts) = entry.pax_extensions().map_err(UnpackError::Read)? {
            for ext in exts {
                let ext = ext.map_err(UnpackError::Read)?;
                let Ok(key) = ext.key() else { continue };
                if let Some(xattr) = key.strip_prefix(XATTR_PREFIX) {
                    xattrs.push((xattr.to_owned(), ext.value_bytes().to_vec()));
                } else if key == "mtime" {
                    if let Some(t) = ext.value().ok().and_then(pax_time) {
                        mtime = t;
                    }
                } else if key == "atime" {
                    atime = ext.value().ok().and_then(pax_time);
                }
            }
        }
        Ok(Meta {
            uid,
            gid,
            mode,
            atime: atime.unwrap_or(mtime),
            mtime,
            xattrs,
        })
    }

    fn entry_at<R: Read>(
        &mut self,
        entry: &mut tar::Entry<'_, R>,
        name: &str,
        dir: &Path,
        file: &OsStr,
        kind: tar::EntryType,
        meta: &Meta,
    ) -> Result<(), UnpackError> {
        let path = dir.join(file);
        if file.as_bytes().starts_with(WHITEOUT_PREFIX) {
            return self
                .whiteout(dir, file)
                .map_err(io_err("apply the whiteout", name));
        }
        let existing = match fs::symlink_metadata(&path) {
            Ok(m) => Some(m),
            Err(e) if is_not_found(&e) => None,
            Err(e) => return Err(io_err("inspect", name)(e)),
        };
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o755)
            .create(dir)
            .map_err(io_err("create the parent directory of", name))?;
        let keep = existing.as_ref().is_some_and(|m| m.is_dir()) && kind.is_dir();
        if existing.is_some() && !keep {
            remove_any(&path).map_err(io_err("replace", name))?;
        }
        use tar::EntryType as T;
        match kind {
            T::Regular | T::Continuous => {
                let mut out = fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .open(&path)
                    .map_err(io_err("create", name))?;
                io::copy(entry, &mut out).map_err(io_err("write", name))?;
            }
            T::Directory => {
                if !keep {
                    fs::DirBuilder::new()
                        .mode(0o700)
                        .create(&path)
                        .map_err(io_err("create the directory", name))?;
                }
            }
            T::Symlink => {
                let target = entry
                    .link_name()
                    .map_err(UnpackError::Read)?
                    .ok_or_else(|| UnpackError::Unsupported {
                        entry: name.to_owned(),
                        kind: "symlink without a target".into(),
                    })?
                    .into_owned();
                std::os::unix::fs::symlink(&target, &path)
                    .map_err(io_err("create the symlink", name))?;
            }
            T::Link => {
                let target = entry
                    .link_name()
                    .map_err(UnpackError::Read)?
                    .ok_or_else(|| UnpackError::Unsupported {
                        entry: name.to_owned(),
                        kind: "hard link without a target".into(),
                    })?
                    .into_owned();
                let rel = clean(&target).ok_or_else(|| {
                    UnpackError::UnsafePath(target.to_string_lossy().into_owned())
                })?;
                let (Some(tparent), Some(tfile)) = (rel.parent(), rel.file_name()) else {
                    return Err(UnpackError::Unsupported {
                        entry: name.to_owned(),
                        kind: "hard link to the root directory".into(),
                    });
                };
                let tdir = secure_join(&self.root, tparent)
                    .map_err(io_err("resolve the hard link target of", name))?;
                fs::hard_link(tdir.join(tfile), &path)
                    .map_err(io_err("create the hard link", name))?;
            }
            T::Char | T::Block | T::Fifo => {
                let file_type = match kind {
                    T::Char => FileType::CharacterDevice,
                    T::Block => FileType::BlockDevice,
                    _ => FileType::Fifo,
                };
                let header = entry.header();
                let major = header.device_major().ok().flatten().unwrap_or(0);
                let minor = header.device_minor().ok().flatten().unwrap_or(0);
                let made = rustix::fs::mknodat(
                    CWD,
                    &path,
                    file_type,
                    Mode::from_raw_mode(meta.mode & 0o7777),
                    rustix::fs::makedev(major, minor),
                );
                match made {
                    Ok(()) => {}
                    Err(rustix::io::Errno::PERM) if kind != T::Fifo => {
                        warn!(
                            entry = name,
                            "skipping a device node: creating one needs root"
                        );
                        return Ok(());
                    }
                    Err(e) => return Err(io_err("create the device node", name)(e.into())),
                }
            }
            other => {
                return Err(UnpackError::Unsupported {
                    entry: name.to_owned(),
                    kind: format!("{other:?}"),
                })
            }
        }
        if kind != T::Link {
            self.apply_metadata(&path, meta, name)?;
        }
        if let Ok(rel) = path.strip_prefix(&self.root) {
            let mut p = Some(rel);
            while let Some(q) = p.filter(|q| !q.as_os_str().is_empty()) {
                self.upper.insert(q.to_path_buf());
                p = q.parent();
            }
        }
        Ok(())
    }

    /// Removes lower-layer content: `dir/<name>` for `.wh.<name>`, all of
    /// `dir`'s children for the opaque marker; never what this layer made.
    fn whiteout(&self, dir: &Path, file: &OsStr) -> io::Result<()> {
        let opaque = file.as_bytes() == OPAQUE;
        let target = if opaque {
            dir.to_path_buf()
        } else {
            dir.join(OsStr::from_bytes(&file.as_bytes()[WHITEOUT_PREFIX.len()..]))
        };
        match fs::symlink_metadata(&target) {
            Ok(_) => self.remove_lower(&target, opaque),
            Err(e) if is_not_found(&e) => Ok(()),
            Err(e) => Err(e),
        }
    }

    fn remove_lower(&self, path: &Path, keep_self: bool) -> io::Result<()> {
        let rel = path.strip_prefix(&self.root).unwrap_or(path);
        let is_root = rel.as_os_str().is_empty();
        if !keep_self && !is_root && !self.upper.contains(rel) {
            return remove_any(path);
        }
        let meta = fs::symlink_metadata(path)?;
        if meta.is_dir() {
            for child in fs::read_dir(path)? {
                self.remove_lower(&child?.path(), false)?;
            }
        }
        Ok(())
    }

    fn apply_metadata(&mut self, path: &Path, meta: &Meta, name: &str) -> Result<(), UnpackError> {
        let is_symlink = fs::symlink_metadata(path)
            .map_err(io_err("inspect", name))?
            .file_type()
            .is_symlink();
        match std::os::unix::fs::lchown(path, Some(meta.uid), Some(meta.gid)) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::PermissionDenied => {
                if !self.warned_chown {
                    warn!("not running as root: the image's file ownership is not kept");
                    self.warned_chown = true;
                }
            }
            Err(e) => return Err(io_err("change the owner of", name)(e)),
        }
        // After chown, which clears setuid and setgid.
        if !is_symlink {
            fs::set_permissions(path, fs::Permissions::from_mode(meta.mode & 0o7777))
                .map_err(io_err("change the mode of", name))?;
        }
        self.apply_xattrs(path, meta, name)?;
        let times = Timestamps {
            last_access: meta.atime,
            last_modification: meta.mtime,
        };
        set_times(path, &times).map_err(io_err("set the times of", name))
    }

    fn apply_xattrs(&mut self, path: &Path, meta: &Meta, name: &str) -> Result<(), UnpackError> {
        let unsupported = |e: &rustix::io::Errno| {
            *e == rustix::io::Errno::NOTSUP || *e == rustix::io::Errno::PERM
        };
        let existing = match list_xattrs(path) {
            Ok(names) => names,
            Err(e) if unsupported(&e) => Vec::new(),
            Err(e) => return Err(io_err("list the xattrs of", name)(e.into())),
        };
        for old in existing {
            if IGNORED_XATTRS.contains(&old.as_str()) {
                continue;
            }
            match rustix::fs::lremovexattr(path, old.as_str()) {
                Ok(()) => {}
                Err(e) if unsupported(&e) => {}
                Err(e) => return Err(io_err("clear the xattrs of", name)(e.into())),
            }
        }
        for (key, value) in &meta.xattrs {
            if IGNORED_XATTRS.contains(&key.as_str()) {
                continue;
            }
            match rustix::fs::lsetxattr(path, key.as_str(), value, XattrFlags::empty()) {
                Ok(()) => {}
                Err(e) if unsupported(&e) => {
                    if !self.warned_xattr {
                        warn!(entry = name, xattr = key.as_str(), error = %e, "skipping an xattr the unpack directory cannot hold");
                        self.warned_xattr = true;
                    }
                }
                Err(e) => return Err(io_err("set the xattrs of", name)(e.into())),
            }
        }
        Ok(())
    }
}

pub(crate) fn list_xattrs(path: &Path) -> Result<Vec<String>, rustix::io::Errno> {
    let size = rustix::fs::llistxattr_query(path)?;
    if size == 0 {
        return Ok(Vec::new());
    }
    let mut buf = vec![0u8; size + 256];
    let len = rustix::fs::llistxattr(path, &mut buf[..])?;
    buf.truncate(len);
    Ok(buf
        .split(|b| *b == 0)
        .filter(|n| !n.is_empty())
        .map(|n| String::from_utf8_lossy(n).into_owned())
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_unpack_secure_join_stays_in_root() {
        let root = tempfile::tempdir().expect("tempdir");
        let r = root.path();
        fs::create_dir_all(r.join("usr/lib")).expect("mkdir");
        std::os::unix::fs::symlink("/usr/lib", r.join("abs")).expect("symlink");
        std::os::unix::fs::symlink("../../../../..", r.join("up")).expect("symlink");
        std::os::unix::fs::symlink("loop", r.join("loop")).expect("symlink");
        assert_eq!(
            secure_join(r, Path::new("abs/x")).expect("join"),
            r.join("usr/lib/x")
        );
        assert_eq!(
            secure_join(r, Path::new("up/etc")).expect("join"),
            r.join("etc")
        );
        assert_eq!(
            secure_join(r, Path::new("a/b")).expect("join"),
            r.join("a/b")
        );
        assert!(secure_join(r, Path::new("loop/x")).is_err());
    }

    #[test]
    fn image_unpack_refuses_dotdot_and_reads_pax_times() {
        assert!(clean(Path::new("a/../b")).is_none());
        assert_eq!(clean(Path::new("./a/./b/")), Some(PathBuf::from("a/b")));
        assert_eq!(clean(Path::new("/")), Some(PathBuf::new()));
        let t = pax_time("1700000000.25").expect("time");
        assert_eq!((t.tv_sec, t.tv_nsec), (1_700_000_000, 250_000_000));
        let t = pax_time("-1.5").expect("time");
        assert_eq!((t.tv_sec, t.tv_nsec), (-2, 500_000_000));
    }
}
