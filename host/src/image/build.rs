//! Building OCI images from directories into an OCI layout and pushing
//! them to a registry: `vt dev` builds the images of a repository's
//! `images/` this way, and tests build their fixtures with it.
//!
//! Layers are deterministic tars (sorted entries); with
//! [`Stamp::Reproducible`] the same files always give the same digests.

use super::digest::Digest;
use super::registry::{client_for, parse_reference};
use super::spec::{
    Compression, ConfigFile, Descriptor, ImageConfig, Index, Manifest, Platform, RootFs,
    ANNOTATION_REF_NAME, MEDIA_LAYER_GZIP, MEDIA_LAYER_TAR, MEDIA_LAYER_ZSTD, MEDIA_OCI_CONFIG,
    MEDIA_OCI_INDEX, MEDIA_OCI_MANIFEST,
};
use oci_client::secrets::RegistryAuth;
use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

/// How a layer's entries are stamped.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Stamp {
    /// With their owner and mtime on disk.
    #[default]
    AsOnDisk,
    /// Owned by root, mtime 0: the same content always gives the same
    /// digest, whenever and by whomever it is built.
    Reproducible,
}

/// A deterministic tar of `dir`'s contents (not `dir` itself): entries in
/// sorted order with their uid, gid, mode and mtime; symlinks; a second
/// path to an inode already in the tar becomes a hard link; devices and
/// FIFOs with their numbers. Files named `.wh.*` are ordinary files here,
/// which is how whiteouts are written.
pub fn layer_tar(dir: &Path) -> io::Result<Vec<u8>> {
    layer_tar_stamped(dir, Stamp::AsOnDisk)
}

/// [`layer_tar`] with a choice of [`Stamp`].
pub fn layer_tar_stamped(dir: &Path, stamp: Stamp) -> io::Result<Vec<u8>> {
    fn walk(
        root: &Path,
        rel: &Path,
        stamp: Stamp,
        builder: &mut tar::Builder<Vec<u8>>,
        inodes: &mut HashMap<(u64, u64), PathBuf>,
    ) -> io::Result<()> {
        let mut names: Vec<_> = fs::read_dir(root.join(rel))?
            .map(|e| e.map(|e| e.file_name()))
            .collect::<io::Result<_>>()?;
        names.sort();
        for name in names {
            let rel = rel.join(&name);
            let path = root.join(&rel);
            let m = fs::symlink_metadata(&path)?;
            let ft = m.file_type();
            let xattrs = if ft.is_symlink() {
                BTreeMap::new()
            } else {
                xattrs(&path)?
            };
            if !xattrs.is_empty() {
                let mut records = Vec::new();
                for (key, value) in &xattrs {
                    records.extend(pax_record(&format!("SCHILY.xattr.{key}"), value));
                }
                let mut pax = tar::Header::new_gnu();
                pax.set_entry_type(tar::EntryType::XHeader);
                pax.set_mode(0o644);
                pax.set_size(records.len() as u64);
                builder.append_data(&mut pax, "././@PaxHeader", &records[..])?;
            }
            let mut header = tar::Header::new_gnu();
            header.set_mode(m.mode() & 0o7777);
            match stamp {
                Stamp::AsOnDisk => {
                    header.set_uid(u64::from(m.uid()));
                    header.set_gid(u64::from(m.gid()));
                    header.set_mtime(u64::try_from(m.mtime()).unwrap_or(0));
                }
                Stamp::Reproducible => {
                    header.set_uid(0);
                    header.set_gid(0);
                    header.set_mtime(0);
                }
            }
            header.set_size(0);
            if ft.is_dir() {
                header.set_entry_type(tar::EntryType::Directory);
                builder.append_data(&mut header, &rel, io::empty())?;
                walk(root, &rel, stamp, builder, inodes)?;
            } else if ft.is_symlink() {
                header.set_entry_type(tar::EntryType::Symlink);
                builder.append_link(&mut header, &rel, fs::read_link(&path)?)?;
            } else if let Some(first) = inodes.get(&(m.dev(), m.ino())) {
                header.set_entry_type(tar::EntryType::Link);
                builder.append_link(&mut header, &rel, first)?;
            } else if ft.is_file() {
                inodes.insert((m.dev(), m.ino()), rel.clone());
                header.set_entry_type(tar::EntryType::Regular);
                header.set_size(m.len());
                builder.append_data(&mut header, &rel, fs::File::open(&path)?)?;
            } else {
                let kind = if ft.is_char_device() {
                    tar::EntryType::Char
                } else if ft.is_block_device() {
                    tar::EntryType::Block
                } else if ft.is_fifo() {
                    tar::EntryType::Fifo
                } else {
                    continue; // sockets do not go in layers
                };
                header.set_entry_type(kind);
                let dev = m.rdev();
                header.set_device_major(rustix::fs::major(dev))?;
                header.set_device_minor(rustix::fs::minor(dev))?;
                builder.append_data(&mut header, &rel, io::empty())?;
            }
        }
        Ok(())
    }
    let mut builder = tar::Builder::new(Vec::new());
    walk(dir, Path::new(""), stamp, &mut builder, &mut HashMap::new())?;
    builder.into_inner()
}

/// One PAX extended-header record: `<len> <key>=<value>\n`, where the
/// length counts itself.
fn pax_record(key: &str, value: &[u8]) -> Vec<u8> {
    let rest = key.len() + value.len() + 3; // space, '=', newline
    let mut len = rest + 1;
    while len != rest + len.to_string().len() {
        len = rest + len.to_string().len();
    }
    let mut out = format!("{len} {key}=").into_bytes();
    out.extend_from_slice(value);
    out.push(b'\n');
    out
}

/// The extended attributes of `path` (not following a symlink), except
/// `security.selinux`, which belongs to the host.
pub fn xattrs(path: &Path) -> io::Result<BTreeMap<String, Vec<u8>>> {
    let mut out = BTreeMap::new();
    let names = match super::unpack::list_xattrs(path) {
        Ok(names) => names,
        Err(e) if e == rustix::io::Errno::NOTSUP => return Ok(out),
        Err(e) => return Err(e.into()),
    };
    for name in names {
        if name == "security.selinux" {
            continue;
        }
        let size = rustix::fs::lgetxattr_query(path, name.as_str())?;
        let mut value = vec![0u8; size];
        let len = rustix::fs::lgetxattr(path, name.as_str(), &mut value[..])?;
        value.truncate(len);
        out.insert(name, value);
    }
    Ok(out)
}

/// An image written into a layout.
#[derive(Debug, Clone)]
pub struct BuiltImage {
    /// The manifest's digest.
    pub digest: Digest,
    /// Its descriptor (as listed in `index.json`).
    pub descriptor: Descriptor,
    /// The manifest.
    pub manifest: Manifest,
    /// The uncompressed layers' digests.
    pub diff_ids: Vec<Digest>,
}

/// Writes `bytes` as a blob of the layout at `layout` (creating the layout).
pub fn write_blob(layout: &Path, bytes: &[u8]) -> io::Result<Digest> {
    let digest = Digest::of(bytes);
    let dir = layout.join("blobs/sha256");
    fs::create_dir_all(&dir)?;
    fs::write(
        layout.join("oci-layout"),
        br#"{"imageLayoutVersion":"1.0.0"}"#,
    )?;
    fs::write(dir.join(digest.hex()), bytes)?;
    Ok(digest)
}

/// Lists `desc` in the layout's `index.json` under `tag` (replacing the tag).
pub fn tag_in_layout(layout: &Path, tag: &str, desc: &Descriptor) -> io::Result<()> {
    let path = layout.join("index.json");
    let mut index = match fs::read(&path) {
        Ok(bytes) => serde_json::from_slice(&bytes).map_err(io::Error::other)?,
        Err(e) if e.kind() == io::ErrorKind::NotFound => Index {
            schema_version: 2,
            media_type: Some(MEDIA_OCI_INDEX.into()),
            manifests: Vec::new(),
        },
        Err(e) => return Err(e),
    };
    index.manifests.retain(|d| {
        d.annotations
            .as_ref()
            .and_then(|a| a.get(ANNOTATION_REF_NAME))
            .is_none_or(|t| t != tag)
    });
    let mut desc = desc.clone();
    desc.annotations = Some(BTreeMap::from([(
        ANNOTATION_REF_NAME.to_owned(),
        tag.to_owned(),
    )]));
    index.manifests.push(desc);
    fs::write(
        &path,
        serde_json::to_vec_pretty(&index).map_err(io::Error::other)?,
    )
}

/// How [`build_image_with`] builds.
#[derive(Debug, Clone)]
pub struct BuildOptions {
    /// Layer compression.
    pub compression: Compression,
    /// The image's platform.
    pub platform: Platform,
    /// How layer entries are stamped.
    pub stamp: Stamp,
}

impl Default for BuildOptions {
    /// Gzip, linux/amd64, entries as on disk.
    fn default() -> Self {
        BuildOptions {
            compression: Compression::Gzip,
            platform: Platform::linux_amd64(),
            stamp: Stamp::AsOnDisk,
        }
    }
}

/// Builds a linux/amd64 image with one gzip layer per directory (lowest
/// first) and `config` as its run config, tagged `tag` in `layout`.
pub fn build_image(
    layout: &Path,
    tag: &str,
    layers: &[&Path],
    config: &ImageConfig,
) -> io::Result<BuiltImage> {
    build_image_with(layout, tag, layers, config, &BuildOptions::default())
}

/// [`build_image`] with a choice of compression, platform and stamp.
pub fn build_image_with(
    layout: &Path,
    tag: &str,
    layers: &[&Path],
    config: &ImageConfig,
    options: &BuildOptions,
) -> io::Result<BuiltImage> {
    let platform = &options.platform;
    let mut descriptors = Vec::new();
    let mut diff_ids = Vec::new();
    for dir in layers {
        let tar = layer_tar_stamped(dir, options.stamp)?;
        diff_ids.push(Digest::of(&tar));
        let (bytes, media_type) = match options.compression {
            Compression::None => (tar, MEDIA_LAYER_TAR),
            Compression::Gzip => {
                let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
                gz.write_all(&tar)?;
                (gz.finish()?, MEDIA_LAYER_GZIP)
            }
            Compression::Zstd => (zstd::encode_all(&tar[..], 3)?, MEDIA_LAYER_ZSTD),
        };
        let digest = write_blob(layout, &bytes)?;
        descriptors.push(Descriptor {
            media_type: media_type.into(),
            digest,
            size: bytes.len() as u64,
            platform: None,
            annotations: None,
        });
    }
    let config_file = ConfigFile {
        architecture: platform.architecture.clone(),
        os: platform.os.clone(),
        config: Some(config.clone()),
        rootfs: RootFs {
            kind: "layers".into(),
            diff_ids: diff_ids.clone(),
        },
    };
    let config_bytes = serde_json::to_vec(&config_file).map_err(io::Error::other)?;
    let config_digest = write_blob(layout, &config_bytes)?;
    let manifest = Manifest {
        schema_version: 2,
        media_type: Some(MEDIA_OCI_MANIFEST.into()),
        config: Descriptor {
            media_type: MEDIA_OCI_CONFIG.into(),
            digest: config_digest,
            size: config_bytes.len() as u64,
            platform: None,
            annotations: None,
        },
        layers: descriptors,
    };
    let manifest_bytes = serde_json::to_vec(&manifest).map_err(io::Error::other)?;
    let digest = write_blob(layout, &manifest_bytes)?;
    let descriptor = Descriptor {
        media_type: MEDIA_OCI_MANIFEST.into(),
        digest: digest.clone(),
        size: manifest_bytes.len() as u64,
        platform: Some(platform.clone()),
        annotations: None,
    };
    tag_in_layout(layout, tag, &descriptor)?;
    Ok(BuiltImage {
        digest,
        descriptor,
        manifest,
        diff_ids,
    })
}

/// Writes an index over already-built images (each carrying its platform)
/// and tags it `tag`; returns its digest.
pub fn build_index(layout: &Path, tag: &str, images: &[&BuiltImage]) -> io::Result<Digest> {
    let index = Index {
        schema_version: 2,
        media_type: Some(MEDIA_OCI_INDEX.into()),
        manifests: images.iter().map(|i| i.descriptor.clone()).collect(),
    };
    let bytes = serde_json::to_vec(&index).map_err(io::Error::other)?;
    let digest = write_blob(layout, &bytes)?;
    let desc = Descriptor {
        media_type: MEDIA_OCI_INDEX.into(),
        digest: digest.clone(),
        size: bytes.len() as u64,
        platform: None,
        annotations: None,
    };
    tag_in_layout(layout, tag, &desc)?;
    Ok(digest)
}

/// Pushes the image (or index) tagged `tag` in `layout` to `target`
/// (`127.0.0.1:PORT/name:tag`) with oci-client, byte for byte, so digests
/// stay the same. Returns the pushed document's digest.
pub async fn push(layout: &Path, tag: &str, target: &str) -> io::Result<Digest> {
    let reference = parse_reference(target).map_err(io::Error::other)?;
    let client = client_for(reference.resolve_registry(), None);
    let auth = RegistryAuth::Anonymous;
    client
        .store_auth_if_needed(reference.resolve_registry(), &auth)
        .await;
    let index_bytes = fs::read(layout.join("index.json"))?;
    let index: Index = serde_json::from_slice(&index_bytes).map_err(io::Error::other)?;
    let desc = index
        .manifests
        .iter()
        .find(|d| {
            d.annotations
                .as_ref()
                .and_then(|a| a.get(ANNOTATION_REF_NAME))
                .is_some_and(|t| t == tag)
        })
        .ok_or_else(|| io::Error::other(format!("no tag {tag} in {}", layout.display())))?;
    let blob = |d: &Digest| fs::read(layout.join("blobs/sha256").join(d.hex()));
    let err = |e: oci_client::errors::OciDistributionError| io::Error::other(e.to_string());
    let push_manifest = |desc: Descriptor, to: oci_client::Reference| {
        let client = client.clone();
        async move {
            let bytes = blob(&desc.digest)?;
            if desc.media_type == MEDIA_OCI_MANIFEST {
                let manifest: Manifest =
                    serde_json::from_slice(&bytes).map_err(io::Error::other)?;
                for b in std::iter::once(&manifest.config).chain(&manifest.layers) {
                    client
                        .push_blob(&to, blob(&b.digest)?, b.digest.as_str())
                        .await
                        .map_err(err)?;
                }
            }
            let content_type = desc
                .media_type
                .as_str()
                .try_into()
                .map_err(|_| io::Error::other("bad media type"))?;
            client
                .push_manifest_raw(&to, bytes, content_type)
                .await
                .map_err(err)?;
            Ok::<_, io::Error>(())
        }
    };
    if desc.media_type == MEDIA_OCI_INDEX {
        let index: Index =
            serde_json::from_slice(&blob(&desc.digest)?).map_err(io::Error::other)?;
        for child in index.manifests {
            let to = reference.clone_with_digest(child.digest.to_string());
            push_manifest(child, to).await?;
        }
    }
    push_manifest(desc.clone(), reference.clone()).await?;
    Ok(desc.digest.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reproducible_layers_ignore_mtimes_and_owners() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path().join("root");
        fs::create_dir_all(root.join("www")).expect("mkdir");
        let page = root.join("www/index.html");
        fs::write(&page, "hello").expect("write");
        let digest = |stamp| Digest::of(&layer_tar_stamped(&root, stamp).expect("tar"));
        let (before, on_disk) = (digest(Stamp::Reproducible), digest(Stamp::AsOnDisk));
        let later = std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(12345);
        fs::File::options()
            .write(true)
            .open(&page)
            .and_then(|f| f.set_modified(later))
            .expect("touch");
        assert_eq!(digest(Stamp::Reproducible), before);
        assert_ne!(digest(Stamp::AsOnDisk), on_disk);
        fs::write(&page, "changed").expect("write");
        assert_ne!(digest(Stamp::Reproducible), before);
    }
}
