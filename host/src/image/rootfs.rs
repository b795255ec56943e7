//! Unpacked trees and ext4 root filesystems, cached by manifest digest.

use super::error::{io, ImageError, Result};
use super::process::Users;
use super::spec::Compression;
use super::unpack::{apply_layer_blob, secure_join};
use super::{unique_name, Image, ImageStore, TempPath};
use std::collections::HashSet;
use std::fs;
use std::os::unix::fs::{DirBuilderExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use tracing::info;

const MIB: u64 = 1 << 20;

/// An image's root filesystem, built once per manifest digest and shared
/// read-only: instances run on copies ([`ImageStore::instance_disk`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rootfs {
    /// The ext4 image (`images/rootfs/<hex>.ext4`).
    pub path: PathBuf,
    /// Its size in bytes.
    pub size: u64,
    /// The image's users and groups, for [`super::effective_process`].
    pub users: Users,
}

/// Finds a program on `PATH` or in the sbin directories (which a non-root
/// `PATH` often lacks).
pub fn find_program(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin", "/usr/bin", "/bin"].map(PathBuf::from))
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// Runs a program to completion, turning failure into [`ImageError::Tool`].
pub(crate) fn run(
    program: &'static str,
    package: &'static str,
    args: &[&std::ffi::OsStr],
) -> Result<()> {
    let path = find_program(program).ok_or(ImageError::ToolMissing { program, package })?;
    let output = Command::new(&path)
        .args(args)
        .output()
        .map_err(io("run", &path))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(ImageError::Tool {
            program,
            status: output.status.to_string(),
            stderr: String::from_utf8_lossy(&output.stderr).trim().to_owned(),
        })
    }
}

/// Disk use of a tree as ext4 would need it (4 KiB blocks, hard links
/// counted once) and its number of inodes.
fn measure(root: &Path) -> Result<(u64, u64)> {
    fn walk(
        dir: &Path,
        seen: &mut HashSet<(u64, u64)>,
        bytes: &mut u64,
        inodes: &mut u64,
    ) -> Result<()> {
        for entry in fs::read_dir(dir).map_err(io("read", dir))? {
            let entry = entry.map_err(io("read", dir))?;
            let path = entry.path();
            let m = fs::symlink_metadata(&path).map_err(io("inspect", &path))?;
            if !seen.insert((m.dev(), m.ino())) {
                continue;
            }
            *inodes += 1;
            let ft = m.file_type();
            if ft.is_dir() {
                *bytes += 4096;
                walk(&path, seen, bytes, inodes)?;
            } else if ft.is_file() {
                *bytes += m.len().div_ceil(4096) * 4096;
            } else if ft.is_symlink() && m.len() >= 60 {
                *bytes += 4096;
            }
        }
        Ok(())
    }
    let mut seen = HashSet::new();
    let (mut bytes, mut inodes) = (4096, 1);
    walk(root, &mut seen, &mut bytes, &mut inodes)?;
    Ok((bytes, inodes))
}

impl ImageStore {
    /// Applies the image's layers in order into `dest`, which must not exist
    /// or be empty (see [`super::unpack`] for the rules). Blocking.
    pub fn unpack(&self, image: &Image, dest: &Path) -> Result<()> {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o755)
            .create(dest)
            .map_err(io("create", dest))?;
        let diff_ids = &image.config.rootfs.diff_ids;
        let check_diff_ids = diff_ids.len() == image.manifest.layers.len();
        for (i, layer) in image.manifest.layers.iter().enumerate() {
            let compression = Compression::of_media_type(&layer.media_type).ok_or_else(|| {
                ImageError::UnsupportedLayer {
                    digest: layer.digest.clone(),
                    media_type: layer.media_type.clone(),
                }
            })?;
            let blob = self.blob_path(&layer.digest);
            if !blob.is_file() {
                return Err(ImageError::MissingBlob {
                    digest: layer.digest.clone(),
                });
            }
            let diff_id = diff_ids.get(i).filter(|_| check_diff_ids);
            apply_layer_blob(dest, &blob, compression, diff_id).map_err(|source| {
                ImageError::Unpack {
                    layer: layer.digest.clone(),
                    source,
                }
            })?;
        }
        Ok(())
    }

    /// The image's ext4 root filesystem, built on first use and cached as
    /// `rootfs/<hex>.ext4`: the layers are unpacked into a scratch
    /// directory, then `mkfs.ext4 -q -m 0 -N <inodes> -d <dir> -F <img>
    /// <size>` with size = content + 30% + 64 MiB, rounded up to a MiB.
    /// Builds of the same digest (threads or processes) wait on a lock file
    /// and the result is renamed into place, so the cache never holds a
    /// partial image. Blocking.
    pub fn rootfs(&self, image: &Image) -> Result<Rootfs> {
        self.ensure_dirs()?;
        let hex = image.digest.hex();
        let dir = self.rootfs_dir();
        let img = dir.join(format!("{hex}.ext4"));
        let users_path = dir.join(format!("{hex}.users.json"));
        let lock_path = dir.join(format!("{hex}.lock"));
        let lock = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(io("open", &lock_path))?;
        rustix::fs::flock(&lock, rustix::fs::FlockOperation::LockExclusive)
            .map_err(|e| io("lock", &lock_path)(e.into()))?;
        if !img.is_file() {
            self.build_rootfs(image, &img, &users_path)?;
        }
        let users = fs::read(&users_path).map_err(io("read", &users_path))?;
        let users: Users = serde_json::from_slice(&users).map_err(|source| ImageError::Json {
            what: users_path.display().to_string(),
            source,
        })?;
        let size = fs::metadata(&img).map_err(io("inspect", &img))?.len();
        drop(lock);
        Ok(Rootfs {
            path: img,
            size,
            users,
        })
    }

    fn build_rootfs(&self, image: &Image, img: &Path, users_path: &Path) -> Result<()> {
        let work = TempPath(Some(self.tmp_dir().join(unique_name("rootfs"))));
        let tree = work.path().join("tree");
        self.unpack(image, &tree)?;
        let read = |rel: &str| -> String {
            secure_join(&tree, Path::new(rel))
                .and_then(fs::read)
                .map(|b| String::from_utf8_lossy(&b).into_owned())
                .unwrap_or_default()
        };
        let users = Users::parse(&read("etc/passwd"), &read("etc/group"));
        let (content, inodes) = measure(&tree)?;
        let size = (content + content * 3 / 10 + 64 * MIB).div_ceil(MIB) * MIB;
        let inodes = inodes + inodes * 3 / 10 + 1024;
        let tmp_img = work.path().join("rootfs.ext4");
        run(
            "mkfs.ext4",
            "e2fsprogs",
            &[
                "-q".as_ref(),
                "-m".as_ref(),
                "0".as_ref(),
                "-N".as_ref(),
                inodes.to_string().as_ref(),
                "-d".as_ref(),
                tree.as_os_str(),
                "-F".as_ref(),
                tmp_img.as_os_str(),
                format!("{}k", size / 1024).as_ref(),
            ],
        )?;
        let users_tmp = work.path().join("users.json");
        let users_json = serde_json::to_vec(&users).map_err(|source| ImageError::Json {
            what: "the image's users".into(),
            source,
        })?;
        fs::write(&users_tmp, users_json).map_err(io("write", &users_tmp))?;
        fs::File::open(&tmp_img)
            .and_then(|f| f.sync_all())
            .map_err(io("sync", &tmp_img))?;
        fs::rename(&users_tmp, users_path).map_err(io("rename into place", users_path))?;
        fs::rename(&tmp_img, img).map_err(io("rename into place", img))?;
        info!(digest = %image.digest, size, path = %img.display(), "rootfs built");
        Ok(())
    }

    /// Gives an instance its own writable copy of `rootfs` at `dest`
    /// (`cp --reflink=auto --sparse=always`, via a temp file renamed into
    /// place). Blocking.
    pub fn instance_disk(&self, rootfs: &Rootfs, dest: &Path) -> Result<()> {
        let parent = dest.parent().unwrap_or(Path::new("."));
        fs::create_dir_all(parent).map_err(io("create", parent))?;
        let tmp = TempPath(Some(parent.join(format!(".{}", unique_name("disk")))));
        run(
            "cp",
            "coreutils",
            &[
                "--reflink=auto".as_ref(),
                "--sparse=always".as_ref(),
                rootfs.path.as_os_str(),
                tmp.path().as_os_str(),
            ],
        )?;
        tmp.persist(dest)
    }
}
