//! OCI images on a host: resolve and pull from registries (or import an OCI
//! layout from disk) into a content-addressed store, unpack the layers the
//! way `umoci unpack` does, and build one ext4 root filesystem per image
//! digest, which instances copy.
//!
//! The store lives in the host state directory's `images/`:
//!
//! ```text
//! images/blobs/sha256/<hex>      manifests, configs and layers, verified before they land
//! images/rootfs/<hex>.ext4       root filesystem of manifest <hex>; written last, so its presence means done
//! images/rootfs/<hex>.users.json the image's /etc/passwd and /etc/group, for resolving the process user
//! images/rootfs/<hex>.lock       flock(2) held while that rootfs is built (across processes too)
//! images/tmp/                    downloads and builds in progress; renamed into place when verified
//! ```
//!
//! Every blob is written to `tmp/`, hashed while written, compared with
//! its digest (and size), and only then renamed into `blobs/`; a mismatch
//! removes it and names the digest. An image's manifest is stored after all
//! its blobs, so a stored manifest means a complete image.
//!
//! Rootfs sharing: the cached ext4 image is never written to. Each instance
//! gets its own copy from [`ImageStore::instance_disk`] (`cp --reflink=auto
//! --sparse=always`: a reflink where the filesystem can, else a sparse copy).
//!
//! Registry access is async (oci-client); everything touching the disk
//! heavily (`from_layout`, `unpack`, `rootfs`, `instance_disk`) blocks, so
//! call it from `spawn_blocking` in async code.

pub mod build;
mod digest;
mod error;
pub mod local_registry;
pub mod process;
mod registry;
mod rootfs;
pub mod spec;
pub mod unpack;

#[cfg(any(test, feature = "testing"))]
pub mod testing;
#[cfg(test)]
mod tests;

pub use digest::{Digest, InvalidDigest};
pub use error::{ImageError, Result};
pub use process::{effective_process, Process, ProcessError, Users};
pub use registry::{is_loopback, parse_reference, Auth};
pub use rootfs::{find_program, Rootfs};
pub use spec::{ConfigFile, Descriptor, ImageConfig, Manifest};

use digest::Hashing;
use error::io;
use registry::Remote;
use spec::{Compression, Index, ManifestKind};
use std::fs;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use tracing::{debug, info};

/// The content-addressed image store under a host's state directory.
#[derive(Debug, Clone)]
pub struct ImageStore {
    dir: PathBuf,
    /// CA certificates (PEM) registries are checked with, besides the
    /// system's roots.
    registry_ca: Option<Vec<u8>>,
}

/// What a reference names right now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedImage {
    /// The reference as given.
    pub reference: String,
    /// Registry host (`127.0.0.1:5000`, `index.docker.io`).
    pub registry: String,
    /// Repository (`library/busybox`).
    pub repository: String,
    /// The linux/amd64 image manifest's digest.
    pub digest: Digest,
    /// The multi-platform index's digest, when the reference named one.
    pub index_digest: Option<Digest>,
}

impl ResolvedImage {
    /// `registry/repository@digest`, which always names this exact image.
    pub fn pinned(&self) -> String {
        format!("{}/{}@{}", self.registry, self.repository, self.digest)
    }
}

/// A complete image in the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Image {
    /// The image manifest's digest (the rootfs cache key).
    pub digest: Digest,
    /// The manifest: config and layers.
    pub manifest: Manifest,
    /// The parsed config blob.
    pub config: ConfigFile,
}

impl Image {
    /// How the image says to run it (empty when it says nothing).
    pub fn run_config(&self) -> ImageConfig {
        self.config.config.clone().unwrap_or_default()
    }
}

/// A file in `tmp/` that is removed unless it was renamed into place.
struct TempPath(Option<PathBuf>);

impl TempPath {
    fn path(&self) -> &Path {
        self.0.as_deref().unwrap_or(Path::new(""))
    }

    /// Renames it to `dest`; afterwards nothing is removed.
    fn persist(mut self, dest: &Path) -> Result<()> {
        let Some(path) = self.0.take() else {
            return Ok(());
        };
        fs::rename(&path, dest).map_err(io("rename into place", dest))
    }
}

impl Drop for TempPath {
    fn drop(&mut self) {
        if let Some(path) = self.0.take() {
            let _ = if path.is_dir() {
                fs::remove_dir_all(&path)
            } else {
                fs::remove_file(&path)
            };
        }
    }
}

fn unique_name(prefix: &str) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    format!(
        "{prefix}-{}-{nanos}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

fn json<T: serde::de::DeserializeOwned>(bytes: &[u8], what: impl FnOnce() -> String) -> Result<T> {
    serde_json::from_slice(bytes).map_err(|source| ImageError::Json {
        what: what(),
        source,
    })
}

impl ImageStore {
    /// A store in `dir` (the host state directory's `images/`); created on
    /// first write.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self {
            dir: dir.into(),
            registry_ca: None,
        }
    }

    /// The same store, checking registries' certificates against the CA
    /// bundle `pem` too (a private registry).
    pub fn with_registry_ca(mut self, pem: Vec<u8>) -> Self {
        self.registry_ca = Some(pem);
        self
    }

    /// The store's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Where blob `digest` lives (whether or not it is there).
    pub fn blob_path(&self, digest: &Digest) -> PathBuf {
        self.dir.join("blobs/sha256").join(digest.hex())
    }

    /// Whether blob `digest` is in the store (and so verified).
    pub fn has_blob(&self, digest: &Digest) -> bool {
        self.blob_path(digest).is_file()
    }

    fn tmp_dir(&self) -> PathBuf {
        self.dir.join("tmp")
    }

    fn rootfs_dir(&self) -> PathBuf {
        self.dir.join("rootfs")
    }

    fn ensure_dirs(&self) -> Result<()> {
        for d in [
            self.dir.join("blobs/sha256"),
            self.tmp_dir(),
            self.rootfs_dir(),
        ] {
            fs::create_dir_all(&d).map_err(io("create", &d))?;
        }
        Ok(())
    }

    fn temp_path(&self, prefix: &str) -> TempPath {
        TempPath(Some(self.tmp_dir().join(unique_name(prefix))))
    }

    /// Stores `bytes` as blob `digest` after checking they hash to it.
    fn put_blob(&self, digest: &Digest, bytes: &[u8]) -> Result<()> {
        let actual = Digest::of(bytes);
        if actual != *digest {
            return Err(ImageError::DigestMismatch {
                digest: digest.clone(),
                actual: actual.to_string(),
            });
        }
        if self.has_blob(digest) {
            return Ok(());
        }
        let tmp = self.temp_path("blob");
        let mut file = fs::File::create(tmp.path()).map_err(io("create", tmp.path()))?;
        file.write_all(bytes).map_err(io("write", tmp.path()))?;
        file.sync_all().map_err(io("sync", tmp.path()))?;
        tmp.persist(&self.blob_path(digest))
    }

    /// Renames a downloaded or copied temp file into `blobs/` if it matches
    /// its descriptor; otherwise it is removed and the error names the digest.
    fn commit_blob(
        &self,
        tmp: TempPath,
        desc: &Descriptor,
        actual: Digest,
        len: u64,
    ) -> Result<()> {
        if actual != desc.digest {
            return Err(ImageError::DigestMismatch {
                digest: desc.digest.clone(),
                actual: actual.to_string(),
            });
        }
        if len != desc.size {
            return Err(ImageError::SizeMismatch {
                digest: desc.digest.clone(),
                expected: desc.size,
                actual: len,
            });
        }
        tmp.persist(&self.blob_path(&desc.digest))
    }

    fn read_blob(&self, digest: &Digest) -> Result<Vec<u8>> {
        let path = self.blob_path(digest);
        fs::read(&path).map_err(|source| {
            if source.kind() == std::io::ErrorKind::NotFound {
                ImageError::MissingBlob {
                    digest: digest.clone(),
                }
            } else {
                ImageError::Io {
                    op: "read",
                    path,
                    source,
                }
            }
        })
    }

    /// Resolves `reference` (tag or digest) to the digest of its linux/amd64
    /// image manifest, fetching the manifest (and index) but storing nothing.
    pub async fn resolve(&self, reference: &str, auth: &Auth) -> Result<ResolvedImage> {
        let remote = Remote::new(reference, auth, self.registry_ca.as_deref())?;
        Ok(self.resolve_remote(&remote).await?.0)
    }

    async fn resolve_remote(&self, remote: &Remote) -> Result<(ResolvedImage, Vec<u8>, Manifest)> {
        let (bytes, digest) = remote.manifest(None).await?;
        let kind = |bytes: &[u8], digest: &Digest| {
            ManifestKind::parse(bytes).map_err(|source| ImageError::Json {
                what: format!("manifest {digest} of {}", remote.display),
                source,
            })
        };
        let resolved = |digest: Digest, index_digest: Option<Digest>| ResolvedImage {
            reference: remote.display.clone(),
            registry: remote.reference.resolve_registry().to_owned(),
            repository: remote.reference.repository().to_owned(),
            digest,
            index_digest,
        };
        match kind(&bytes, &digest)? {
            ManifestKind::Image(m) => Ok((resolved(digest, None), bytes, m)),
            ManifestKind::Index(index) => {
                let entry = index.linux_amd64().ok_or_else(|| ImageError::NoPlatform {
                    reference: remote.display.clone(),
                })?;
                let (child, child_digest) = remote.manifest(Some(&entry.digest)).await?;
                match kind(&child, &child_digest)? {
                    ManifestKind::Image(m) => Ok((resolved(child_digest, Some(digest)), child, m)),
                    ManifestKind::Index(_) => Err(ImageError::NotAManifest {
                        what: "the linux/amd64 entry",
                        digest: child_digest,
                    }),
                }
            }
        }
    }

    /// Pulls `reference`: resolves it, then downloads the config and every
    /// layer not already stored, verifying each against its digest and
    /// size, and stores the manifest last.
    pub async fn pull(&self, reference: &str, auth: &Auth) -> Result<Image> {
        let remote = Remote::new(reference, auth, self.registry_ca.as_deref())?;
        let (resolved, bytes, manifest) = self.resolve_remote(&remote).await?;
        check_layers(&manifest)?;
        self.ensure_dirs()?;
        for desc in std::iter::once(&manifest.config).chain(&manifest.layers) {
            if self.has_blob(&desc.digest) {
                continue;
            }
            debug!(digest = %desc.digest, size = desc.size, "downloading blob");
            let tmp = self.temp_path("download");
            let (actual, len) = remote.blob_to(&desc.digest, tmp.path()).await?;
            self.commit_blob(tmp, desc, actual, len)?;
        }
        self.put_blob(&resolved.digest, &bytes)?;
        info!(reference, digest = %resolved.digest, "image pulled");
        self.image(&resolved.digest)
    }

    /// A stored image by manifest digest.
    pub fn image(&self, digest: &Digest) -> Result<Image> {
        let bytes = self.read_blob(digest)?;
        let manifest = match ManifestKind::parse(&bytes).map_err(|source| ImageError::Json {
            what: format!("manifest {digest}"),
            source,
        })? {
            ManifestKind::Image(m) => m,
            ManifestKind::Index(_) => {
                return Err(ImageError::NotAManifest {
                    what: "stored document",
                    digest: digest.clone(),
                })
            }
        };
        let config_bytes = self.read_blob(&manifest.config.digest)?;
        let config: ConfigFile = json(&config_bytes, || {
            format!("image config {}", manifest.config.digest)
        })?;
        Ok(Image {
            digest: digest.clone(),
            manifest,
            config,
        })
    }

    /// Imports the image tagged `tag` (or the manifest with digest `tag`)
    /// from an OCI image layout directory into the store, verifying every
    /// blob. For an index, the linux/amd64 manifest is taken. Blocking.
    pub fn from_layout(&self, layout: &Path, tag: &str) -> Result<Image> {
        let bad = |reason: String| ImageError::Layout {
            dir: layout.to_path_buf(),
            reason,
        };
        let marker = layout.join("oci-layout");
        if !marker.is_file() {
            return Err(bad("it has no `oci-layout` file".into()));
        }
        let index_path = layout.join("index.json");
        let index_bytes = fs::read(&index_path).map_err(io("read", &index_path))?;
        let index: Index = json(&index_bytes, || format!("{}", index_path.display()))?;
        let wanted = Digest::parse(tag).ok();
        let entry = index
            .manifests
            .iter()
            .find(|d| {
                wanted.as_ref() == Some(&d.digest)
                    || d.annotations
                        .as_ref()
                        .and_then(|a| a.get(spec::ANNOTATION_REF_NAME))
                        .is_some_and(|name| name == tag)
            })
            .ok_or_else(|| ImageError::TagNotInLayout {
                dir: layout.to_path_buf(),
                tag: tag.to_owned(),
            })?;
        self.ensure_dirs()?;
        let read_layout_blob = |desc: &Descriptor| -> Result<Vec<u8>> {
            let path = layout.join("blobs/sha256").join(desc.digest.hex());
            let bytes = fs::read(&path).map_err(io("read", &path))?;
            let actual = Digest::of(&bytes);
            if actual != desc.digest {
                return Err(ImageError::DigestMismatch {
                    digest: desc.digest.clone(),
                    actual: actual.to_string(),
                });
            }
            Ok(bytes)
        };
        let mut desc = entry.clone();
        let mut bytes = read_layout_blob(&desc)?;
        let manifest = loop {
            match ManifestKind::parse(&bytes).map_err(|source| ImageError::Json {
                what: format!("manifest {} in {}", desc.digest, layout.display()),
                source,
            })? {
                ManifestKind::Image(m) => break m,
                ManifestKind::Index(i) => {
                    desc = i
                        .linux_amd64()
                        .cloned()
                        .ok_or_else(|| ImageError::NoPlatform {
                            reference: format!("{}:{tag}", layout.display()),
                        })?;
                    bytes = read_layout_blob(&desc)?;
                }
            }
        };
        check_layers(&manifest)?;
        for blob in std::iter::once(&manifest.config).chain(&manifest.layers) {
            if self.has_blob(&blob.digest) {
                continue;
            }
            let src = layout.join("blobs/sha256").join(blob.digest.hex());
            let tmp = self.temp_path("import");
            let mut reader = fs::File::open(&src).map_err(io("open", &src))?;
            let out = fs::File::create(tmp.path()).map_err(io("create", tmp.path()))?;
            let mut out = Hashing::new(out);
            std::io::copy(&mut reader, &mut out).map_err(io("copy", &src))?;
            let (actual, len, file) = out.finish();
            file.sync_all().map_err(io("sync", tmp.path()))?;
            self.commit_blob(tmp, blob, actual, len)?;
        }
        self.put_blob(&desc.digest, &bytes)?;
        info!(layout = %layout.display(), tag, digest = %desc.digest, "image imported");
        self.image(&desc.digest)
    }
}

fn check_layers(manifest: &Manifest) -> Result<()> {
    for layer in &manifest.layers {
        if Compression::of_media_type(&layer.media_type).is_none() {
            return Err(ImageError::UnsupportedLayer {
                digest: layer.digest.clone(),
                media_type: layer.media_type.clone(),
            });
        }
    }
    Ok(())
}
