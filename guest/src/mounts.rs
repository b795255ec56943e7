//! Filesystems: the initramfs's own (`/proc`, `/sys`, `/dev`, ...), the app's
//! root filesystem at [`ROOT`], and what goes inside it (kernel filesystems,
//! volumes, secret tmpfs directories), plus their teardown at power-off.
//!
//! Paths inside the root filesystem are resolved the way the chrooted app
//! will see them: symlinks in the image (absolute ones included) are followed
//! relative to [`ROOT`], never out into the initramfs.

use crate::sys;
use std::collections::{BTreeMap, VecDeque};
use std::ffi::OsString;
use std::fs::{self, OpenOptions, Permissions};
use std::io::{self, Write as _};
use std::os::unix::fs::{
    DirBuilderExt as _, MetadataExt as _, OpenOptionsExt as _, PermissionsExt,
};
use std::path::{Component, Path, PathBuf};
use std::time::{Duration, Instant};
use vt_init::protocol::{SecretFile, VolumeMount};

/// Where the app's root filesystem is mounted; the app is chrooted into it.
pub const ROOT: &str = "/rootfs";

/// The block device holding the app's root filesystem (ext4).
pub const ROOT_DEVICE: &str = "/dev/vda";

/// How long to wait for a block device to appear after its driver loaded.
const DEVICE_WAIT: Duration = Duration::from_secs(5);

/// Most symlinks followed while resolving one path (as the kernel's limit).
const MAX_SYMLINKS: u32 = 40;

const NOSUID: libc::c_ulong = libc::MS_NOSUID;
const NODEV: libc::c_ulong = libc::MS_NODEV;
const NOEXEC: libc::c_ulong = libc::MS_NOEXEC;

/// Mounts what the init itself needs. Already-mounted ones are fine.
/// Returns one message per failure.
pub fn mount_early() -> Vec<String> {
    let table: [(&str, &str, &str, libc::c_ulong, Option<&str>); 6] = [
        ("proc", "/proc", "proc", NOSUID | NODEV | NOEXEC, None),
        ("sysfs", "/sys", "sysfs", NOSUID | NODEV | NOEXEC, None),
        ("devtmpfs", "/dev", "devtmpfs", NOSUID, Some("mode=0755")),
        (
            "devpts",
            "/dev/pts",
            "devpts",
            NOSUID | NOEXEC,
            Some("mode=0620,ptmxmode=0666"),
        ),
        (
            "tmpfs",
            "/dev/shm",
            "tmpfs",
            NOSUID | NODEV,
            Some("mode=1777"),
        ),
        ("tmpfs", "/run", "tmpfs", NOSUID | NODEV, Some("mode=0755")),
    ];
    let mut errors = Vec::new();
    for (source, target, fstype, flags, data) in table {
        let target = Path::new(target);
        if let Err(e) = fs::create_dir_all(target) {
            errors.push(format!("cannot create {}: {e}", target.display()));
            continue;
        }
        match sys::mount(Some(source), target, Some(fstype), flags, data) {
            Err(e) if e.raw_os_error() != Some(libc::EBUSY) => {
                errors.push(format!(
                    "cannot mount {fstype} on {}: {e}",
                    target.display()
                ));
            }
            _ => {}
        }
    }
    errors
}

/// Waits until `path` exists, up to `timeout`.
pub fn wait_for(path: &Path, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if path.exists() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Checks a path the host gave for inside the root filesystem: absolute,
/// not `/` itself, no `.` or `..` components, no NUL.
pub fn check_path(path: &str) -> Result<(), String> {
    if !path.starts_with('/') {
        return Err(format!("{path:?} is not an absolute path"));
    }
    if path.contains('\0') {
        return Err(format!("{path:?} contains a NUL byte"));
    }
    let mut normal = 0;
    for component in Path::new(path).components() {
        match component {
            Component::RootDir => {}
            Component::Normal(_) => normal += 1,
            _ => return Err(format!("{path:?} has a `.` or `..` component")),
        }
    }
    if normal == 0 {
        return Err(format!("{path:?} is the root directory"));
    }
    Ok(())
}

/// The directory of a secret file, checked: secrets may not sit directly
/// under `/` (its tmpfs would hide the whole image).
pub fn secret_dir(path: &str) -> Result<String, String> {
    check_path(path)?;
    let parent = Path::new(path)
        .parent()
        .and_then(Path::to_str)
        .unwrap_or("/");
    if parent == "/" {
        return Err(format!(
            "secret {path:?} is directly under `/`; put it in a directory such as /run/secrets"
        ));
    }
    Ok(parent.to_string())
}

/// Resolves `path` (absolute, inside the root filesystem) to a path under
/// `root`, following symlinks as the chrooted app would. With `create`,
/// missing directories are made (mode 0755), like `mkdir -p`.
pub fn resolve_in_root(root: &Path, path: &str, create: bool) -> io::Result<PathBuf> {
    let mut pending: VecDeque<OsString> = components(Path::new(path));
    let mut resolved: Vec<OsString> = Vec::new();
    let mut links = 0;
    while let Some(component) = pending.pop_front() {
        if component == ".." {
            resolved.pop();
            continue;
        }
        let mut candidate = root.to_path_buf();
        candidate.extend(&resolved);
        candidate.push(&component);
        match fs::symlink_metadata(&candidate) {
            Ok(meta) if meta.file_type().is_symlink() => {
                links += 1;
                if links > MAX_SYMLINKS {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidInput,
                        format!("too many symlinks resolving {path}"),
                    ));
                }
                let target = fs::read_link(&candidate)?;
                if target.is_absolute() {
                    resolved.clear();
                }
                for part in components(&target).into_iter().rev() {
                    pending.push_front(part);
                }
            }
            Ok(meta) => {
                if !pending.is_empty() && !meta.is_dir() {
                    return Err(io::Error::new(
                        io::ErrorKind::NotADirectory,
                        format!("{} is not a directory", candidate.display()),
                    ));
                }
                resolved.push(component);
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound && create => {
                fs::DirBuilder::new().mode(0o755).create(&candidate)?;
                resolved.push(component);
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => resolved.push(component),
            Err(e) => return Err(e),
        }
    }
    let mut out = root.to_path_buf();
    out.extend(&resolved);
    Ok(out)
}

fn components(path: &Path) -> VecDeque<OsString> {
    path.components()
        .filter_map(|c| match c {
            Component::Normal(name) => Some(name.to_os_string()),
            Component::ParentDir => Some(OsString::from("..")),
            Component::RootDir | Component::CurDir | Component::Prefix(_) => None,
        })
        .collect()
}

/// Whether a freshly made filesystem's root holds nothing but `lost+found`.
fn is_fresh(dir: &Path) -> bool {
    fs::read_dir(dir).is_ok_and(|entries| {
        entries
            .filter_map(Result::ok)
            .all(|entry| entry.file_name() == "lost+found")
    })
}

/// The filesystems mounted under [`ROOT`], in mount order, for teardown.
#[derive(Debug, Default)]
pub struct Mounts {
    /// (path, is a disk filesystem that should be unmounted cleanly)
    stack: Vec<(PathBuf, bool)>,
    /// Secret directories (guest path) and where their tmpfs is mounted.
    secret_dirs: BTreeMap<String, PathBuf>,
}

impl Mounts {
    /// Mounts the root filesystem device at [`ROOT`].
    pub fn mount_root(&mut self) -> Result<(), String> {
        let root = Path::new(ROOT);
        if !wait_for(Path::new(ROOT_DEVICE), DEVICE_WAIT) {
            return Err(format!(
                "root filesystem device {ROOT_DEVICE} did not appear (virtio_blk loaded?)"
            ));
        }
        fs::create_dir_all(root).map_err(|e| format!("cannot create {ROOT}: {e}"))?;
        sys::mount(Some(ROOT_DEVICE), root, Some("ext4"), 0, None)
            .map_err(|e| format!("cannot mount {ROOT_DEVICE} (ext4) on {ROOT}: {e}"))?;
        self.stack.push((root.to_path_buf(), true));
        Ok(())
    }

    /// Mounts `/proc`, `/sys` and `/dev` (with `/dev/pts` and `/dev/shm`)
    /// inside the root filesystem for the app.
    pub fn mount_system(&mut self) -> Result<(), String> {
        let root = Path::new(ROOT);
        let table: [(&str, &str, Option<&str>, libc::c_ulong); 3] = [
            ("/proc", "proc", Some("proc"), NOSUID | NODEV | NOEXEC),
            ("/sys", "sysfs", Some("sysfs"), NOSUID | NODEV | NOEXEC),
            // The same /dev as the init's, so terminals the init opens for
            // exec sessions have their /dev/pts names inside the chroot too.
            ("/dev", "/dev", None, libc::MS_BIND | libc::MS_REC),
        ];
        for (path, source, fstype, flags) in table {
            let target = resolve_in_root(root, path, true)
                .map_err(|e| format!("cannot create {path} in the root filesystem: {e}"))?;
            sys::mount(Some(source), &target, fstype, flags, None)
                .map_err(|e| format!("cannot mount {path} in the root filesystem: {e}"))?;
            self.stack.push((target, false));
        }
        Ok(())
    }

    /// Mounts a volume's device (ext4) at its path inside the root
    /// filesystem. A fresh volume's root directory (nothing but
    /// `lost+found`) takes the owner and mode of the image's directory it
    /// covers, or, where the image has none, belongs to the app's user
    /// (`owner`), so a non-root app can write it.
    pub fn mount_volume(&mut self, volume: &VolumeMount, owner: (u32, u32)) -> Result<(), String> {
        check_path(&volume.mount).map_err(|e| format!("volume mount path: {e}"))?;
        if !volume.device.starts_with("/dev/") {
            return Err(format!(
                "volume device {:?} is not under /dev",
                volume.device
            ));
        }
        let device = Path::new(&volume.device);
        if !wait_for(device, DEVICE_WAIT) {
            return Err(format!("volume device {} did not appear", volume.device));
        }
        let root = Path::new(ROOT);
        let covered = resolve_in_root(root, &volume.mount, false)
            .and_then(fs::metadata)
            .map(|m| (m.uid(), m.gid(), m.mode() & 0o7777))
            .unwrap_or((owner.0, owner.1, 0o755));
        let target = resolve_in_root(root, &volume.mount, true)
            .map_err(|e| format!("cannot create volume mount point {}: {e}", volume.mount))?;
        sys::mount(Some(&volume.device), &target, Some("ext4"), 0, None).map_err(|e| {
            format!(
                "cannot mount volume {} (ext4) on {}: {e}",
                volume.device, volume.mount
            )
        })?;
        self.stack.push((target.clone(), true));
        if is_fresh(&target) {
            let (uid, gid, mode) = covered;
            let _ = std::os::unix::fs::chown(&target, Some(uid), Some(gid));
            let _ = fs::set_permissions(&target, Permissions::from_mode(mode));
        }
        Ok(())
    }

    /// Writes secret files: each directory holding secrets becomes a tmpfs
    /// inside the root filesystem (so secrets never touch a disk), then each
    /// file is created with its mode and owner.
    pub fn write_secrets(&mut self, secrets: &[SecretFile]) -> Result<(), String> {
        let mut dirs: BTreeMap<String, Vec<&SecretFile>> = BTreeMap::new();
        for secret in secrets {
            dirs.entry(secret_dir(&secret.path)?)
                .or_default()
                .push(secret);
        }
        // Sorted: a parent directory is mounted before a nested one.
        for (dir, files) in dirs {
            let target = self.secret_tmpfs(&dir)?;
            for secret in files {
                write_secret(&target, secret)
                    .map_err(|e| format!("cannot write secret {}: {e}", secret.path))?;
            }
        }
        Ok(())
    }

    /// The tmpfs holding the secrets of `dir`, mounted on first use.
    fn secret_tmpfs(&mut self, dir: &str) -> Result<PathBuf, String> {
        if let Some(target) = self.secret_dirs.get(dir) {
            return Ok(target.clone());
        }
        let target = resolve_in_root(Path::new(ROOT), dir, true)
            .map_err(|e| format!("cannot create secret directory {dir}: {e}"))?;
        sys::mount(
            Some("tmpfs"),
            &target,
            Some("tmpfs"),
            NOSUID | NODEV | NOEXEC,
            Some("mode=0755"),
        )
        .map_err(|e| format!("cannot mount a tmpfs for secrets on {dir}: {e}"))?;
        self.stack.push((target.clone(), false));
        self.secret_dirs.insert(dir.to_string(), target.clone());
        Ok(target)
    }

    /// Replaces secret files of the running app: each is written beside its
    /// old version and renamed over it, so the app reads the old or the new
    /// content, never a part. Returns how many were written.
    pub fn update_secrets(&mut self, secrets: &[SecretFile]) -> Result<u32, String> {
        let mut written = 0;
        for secret in secrets {
            let dir = secret_dir(&secret.path)?;
            let target = self.secret_tmpfs(&dir)?;
            replace_secret(&target, secret)
                .map_err(|e| format!("cannot replace secret {}: {e}", secret.path))?;
            written += 1;
        }
        Ok(written)
    }

    /// Unmounts everything under [`ROOT`], newest first, after the app and
    /// every other process are gone. Disk filesystems that stay busy are
    /// remounted read-only so they are clean at power-off.
    pub fn teardown(&mut self) {
        sys::sync();
        while let Some((path, disk)) = self.stack.pop() {
            let flags = if disk { 0 } else { libc::MNT_DETACH };
            if let Err(e) = sys::umount(&path, flags) {
                if disk {
                    let remount =
                        sys::mount(None, &path, None, libc::MS_REMOUNT | libc::MS_RDONLY, None);
                    if let Err(e2) = remount {
                        sys::log(format_args!(
                            "cannot unmount {} ({e}) nor remount it read-only: {e2}",
                            path.display()
                        ));
                    }
                }
            }
        }
        sys::sync();
    }
}

fn write_secret(dir: &Path, secret: &SecretFile) -> io::Result<()> {
    let name = Path::new(&secret.path)
        .file_name()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "no file name"))?;
    write_secret_at(&dir.join(name), secret)
}

/// Writes a new version of a secret file next to it, then renames it over
/// the old one (atomic for readers).
fn replace_secret(dir: &Path, secret: &SecretFile) -> io::Result<()> {
    let name = Path::new(&secret.path)
        .file_name()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "no file name"))?;
    let mut staged = std::ffi::OsString::from(".");
    staged.push(name);
    staged.push(".vt-new");
    let staged = dir.join(staged);
    match fs::remove_file(&staged) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    write_secret_at(&staged, secret)?;
    fs::rename(&staged, dir.join(name)).inspect_err(|_| {
        let _ = fs::remove_file(&staged);
    })
}

fn write_secret_at(path: &Path, secret: &SecretFile) -> io::Result<()> {
    let mode = secret.mode & 0o7777;
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)?;
    file.write_all(&secret.content_b64.0)?;
    std::os::unix::fs::fchown(&file, Some(secret.uid), Some(secret.gid))?;
    // Again after chown (which clears set-id bits) and regardless of umask.
    file.set_permissions(Permissions::from_mode(mode))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    struct TempDir(PathBuf);

    impl TempDir {
        fn new(name: &str) -> Self {
            let dir = std::env::temp_dir().join(format!(
                "vt-init-test-{name}-{}-{}",
                std::process::id(),
                sys::now_ms()
            ));
            fs::create_dir_all(&dir).expect("temp dir");
            TempDir(dir)
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    #[test]
    fn checks_paths() {
        assert!(check_path("/data").is_ok());
        assert!(check_path("/var/lib/app/").is_ok());
        assert!(check_path("data").is_err());
        assert!(check_path("/").is_err());
        assert!(check_path("/a/../etc").is_err());
        assert!(check_path("/a/./b").is_ok(), "std normalises `.` away");
        assert!(check_path("/a\0b").is_err());
    }

    #[test]
    fn secret_dirs() {
        assert_eq!(secret_dir("/run/secrets/db"), Ok("/run/secrets".into()));
        assert!(secret_dir("/db").is_err());
        assert!(secret_dir("relative/db").is_err());
    }

    #[test]
    fn resolves_symlinks_inside_the_root() {
        let tmp = TempDir::new("resolve");
        let root = tmp.0.join("root");
        fs::create_dir_all(root.join("usr/lib")).expect("mkdir");
        fs::create_dir_all(root.join("srv")).expect("mkdir");
        // Absolute and relative links, as images have them.
        symlink("/usr/lib", root.join("lib")).expect("symlink");
        symlink("../srv", root.join("usr/srv")).expect("symlink");
        symlink("/", root.join("usr/up")).expect("symlink");
        symlink("loop", root.join("loop")).expect("symlink");

        let got = resolve_in_root(&root, "/lib/app/data", true).expect("resolves");
        assert_eq!(got, root.join("usr/lib/app/data"));
        assert!(root.join("usr/lib/app/data").is_dir());

        let got = resolve_in_root(&root, "/usr/srv/x", false).expect("resolves");
        assert_eq!(got, root.join("srv/x"));
        assert!(!root.join("srv/x").exists(), "no create, no mkdir");

        // `..` and absolute links never leave the root.
        let got = resolve_in_root(&root, "/usr/up/../../etc", true).expect("resolves");
        assert_eq!(got, root.join("etc"));

        assert!(resolve_in_root(&root, "/loop/x", true).is_err());
        fs::write(root.join("file"), b"").expect("write");
        assert!(resolve_in_root(&root, "/file/x", true).is_err());
    }

    #[test]
    fn writes_secret_files_with_mode() {
        let tmp = TempDir::new("secret");
        let secret = SecretFile {
            path: "/run/secrets/token".into(),
            content_b64: b"s3cret".to_vec().into(),
            mode: 0o640,
            uid: sys_uid(),
            gid: sys_gid(),
        };
        write_secret(&tmp.0, &secret).expect("writes");
        let path = tmp.0.join("token");
        assert_eq!(fs::read(&path).expect("reads"), b"s3cret");
        let meta = fs::metadata(&path).expect("stat");
        assert_eq!(meta.mode() & 0o7777, 0o640);
        assert!(write_secret(&tmp.0, &secret).is_err(), "never overwrites");

        let new = SecretFile {
            content_b64: b"n3w".to_vec().into(),
            mode: 0o400,
            ..secret
        };
        replace_secret(&tmp.0, &new).expect("replaces");
        assert_eq!(fs::read(&path).expect("reads"), b"n3w");
        let meta = fs::metadata(&path).expect("stat");
        assert_eq!(meta.mode() & 0o7777, 0o400);
        let names: Vec<_> = fs::read_dir(&tmp.0)
            .expect("ls")
            .map(|e| e.expect("entry").file_name())
            .collect();
        assert_eq!(names, ["token"], "no staged file is left behind");
    }

    fn sys_uid() -> u32 {
        fs::metadata("/proc/self").map_or(0, |m| m.uid())
    }

    fn sys_gid() -> u32 {
        fs::metadata("/proc/self").map_or(0, |m| m.gid())
    }

    #[test]
    fn fresh_filesystems() {
        let tmp = TempDir::new("fresh");
        assert!(is_fresh(&tmp.0));
        fs::create_dir(tmp.0.join("lost+found")).expect("mkdir");
        assert!(is_fresh(&tmp.0));
        fs::write(tmp.0.join("data"), b"x").expect("write");
        assert!(!is_fresh(&tmp.0));
    }
}
