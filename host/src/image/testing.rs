//! Test helpers (compiled for tests and with the `testing` feature): the
//! image builder of [`super::build`], re-exported, and Debian's
//! `docker-registry` on a free loopback port in a scratch directory.
//!
//! Missing programs are errors telling you to run `just setup`; tests
//! should `expect` them so they fail loudly rather than pass silently.

pub use super::build::{
    build_image, build_image_with, build_index, layer_tar, push, tag_in_layout, write_blob, xattrs,
    BuildOptions, BuiltImage, Stamp,
};
use super::digest::Digest;
use super::local_registry::LocalRegistry;
use std::fs;
use std::io;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};

/// A directory removed (recursively) on drop.
#[derive(Debug)]
pub struct ScratchDir(PathBuf);

impl ScratchDir {
    /// A new empty directory under the system temp dir.
    pub fn new(prefix: &str) -> io::Result<Self> {
        let path = std::env::temp_dir().join(super::unique_name(prefix));
        fs::create_dir_all(&path)?;
        Ok(Self(path))
    }

    /// Its path.
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// Fails with a `just setup` hint unless every `(program, package)` is installed.
pub fn require(programs: &[(&str, &str)]) -> io::Result<()> {
    let missing: Vec<String> = programs
        .iter()
        .filter(|(p, _)| super::rootfs::find_program(p).is_none())
        .map(|(p, pkg)| format!("{p} (package {pkg})"))
        .collect();
    if missing.is_empty() {
        Ok(())
    } else {
        Err(io::Error::other(format!(
            "{} not installed: run `just setup`",
            missing.join(", ")
        )))
    }
}

/// A [`LocalRegistry`] on `127.0.0.1:<free port>`, storing in a scratch
/// directory; stopped (and the directory removed) on drop.
#[derive(Debug)]
pub struct Registry {
    // Declared first: the registry stops before its directory goes.
    registry: LocalRegistry,
    _scratch: ScratchDir,
}

impl Registry {
    /// Starts the registry and waits (up to 20 s) for `/v2/` to answer.
    pub fn start() -> io::Result<Self> {
        require(&[("docker-registry", "docker-registry")])?;
        let scratch = ScratchDir::new("vt-registry")?;
        let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let registry =
            LocalRegistry::start(scratch.path(), SocketAddr::from(([127, 0, 0, 1], port)))?;
        Ok(Self {
            registry,
            _scratch: scratch,
        })
    }

    /// `127.0.0.1:PORT`.
    pub fn host(&self) -> String {
        self.registry.addr().to_string()
    }

    /// Where it keeps its repositories (another registry can serve them too).
    pub fn storage(&self) -> PathBuf {
        self.registry.storage()
    }

    /// `127.0.0.1:PORT/<name>`.
    pub fn reference(&self, name: &str) -> String {
        format!("{}/{name}", self.registry.addr())
    }

    /// Where the registry keeps blob `digest`'s bytes (to tamper with in tests).
    pub fn blob_data_path(&self, digest: &Digest) -> PathBuf {
        self.registry
            .storage()
            .join("docker/registry/v2/blobs/sha256")
            .join(&digest.hex()[..2])
            .join(digest.hex())
            .join("data")
    }
}
