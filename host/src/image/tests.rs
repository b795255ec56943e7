//! The image module against real tools: Debian's docker-registry, umoci,
//! mkfs.ext4 and debugfs. A missing tool fails the test with a `just setup`
//! hint.

use super::testing::{
    build_image, build_image_with, build_index, push, require, BuildOptions, Registry,
};
use super::*;
use crate::image::spec::Platform;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

fn chown(path: &Path, uid: u32, gid: u32) {
    std::os::unix::fs::lchown(path, Some(uid), Some(gid)).expect("chown (tests run as root)");
}

fn chmod(path: &Path, mode: u32) {
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).expect("chmod");
}

fn write(path: &Path, text: &str) {
    fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
    fs::write(path, text).expect("write");
}

fn mtime(path: &Path, secs: i64) {
    let t = rustix::fs::Timespec {
        tv_sec: secs,
        tv_nsec: 0,
    };
    rustix::fs::utimensat(
        rustix::fs::CWD,
        path,
        &rustix::fs::Timestamps {
            last_access: t,
            last_modification: t,
        },
        rustix::fs::AtFlags::SYMLINK_NOFOLLOW,
    )
    .expect("utimensat");
}

/// Sets every mtime under `dir` (deepest first) so tars are reproducible.
fn settle(dir: &Path, secs: i64) {
    for entry in fs::read_dir(dir).expect("read_dir") {
        let path = entry.expect("entry").path();
        if fs::symlink_metadata(&path).expect("lstat").is_dir() {
            settle(&path, secs);
        }
        mtime(&path, secs);
    }
}

/// Three layers exercising what unpacking must get right.
fn layered_dirs(root: &Path) -> Vec<std::path::PathBuf> {
    let l1 = root.join("l1");
    write(
        &l1.join("etc/passwd"),
        "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000:app:/home/app:/bin/sh\n",
    );
    write(
        &l1.join("etc/group"),
        "root:x:0:\napp:x:1000:\nstaff:x:50:app\n",
    );
    write(&l1.join("etc/hello"), "hello from layer 1\n");
    write(&l1.join("usr/lib/libfoo.so"), "lib v1");
    write(&l1.join("usr/lib/liblong.so"), &"x".repeat(10_000));
    write(&l1.join("gone/file"), "deleted by layer 2");
    write(&l1.join("gone-file"), "deleted by layer 2");
    write(&l1.join("opaque/old"), "hidden by layer 2's opaque marker");
    write(&l1.join("opaque/sub/older"), "also hidden");
    write(&l1.join("home/app/.profile"), "export A=1\n");
    write(&l1.join("bin/tool"), "#!/bin/sh\necho tool\n");
    chmod(&l1.join("bin/tool"), 0o4755);
    fs::create_dir_all(l1.join("tmp")).expect("mkdir");
    chmod(&l1.join("tmp"), 0o1777);
    chown(&l1.join("home/app"), 1000, 1000);
    chown(&l1.join("home/app/.profile"), 1000, 1000);
    chmod(&l1.join("home/app/.profile"), 0o600);
    std::os::unix::fs::symlink("usr/lib", l1.join("lib")).expect("symlink");
    std::os::unix::fs::symlink("/usr/lib/libfoo.so", l1.join("usr/lib/libfoo.so.1"))
        .expect("symlink");
    fs::hard_link(l1.join("etc/hello"), l1.join("etc/hello-link")).expect("hardlink");
    rustix::fs::lsetxattr(
        l1.join("etc/hello"),
        "user.vt.test",
        b"layer-1",
        rustix::fs::XattrFlags::empty(),
    )
    .expect("setxattr");
    rustix::fs::mknodat(
        rustix::fs::CWD,
        l1.join("dev-null"),
        rustix::fs::FileType::CharacterDevice,
        rustix::fs::Mode::from_raw_mode(0o666),
        rustix::fs::makedev(1, 3),
    )
    .expect("mknod (tests run as root)");
    rustix::fs::mknodat(
        rustix::fs::CWD,
        l1.join("fifo"),
        rustix::fs::FileType::Fifo,
        rustix::fs::Mode::from_raw_mode(0o640),
        0,
    )
    .expect("mkfifo");
    settle(&l1, 1_600_000_000);

    let l2 = root.join("l2");
    write(&l2.join(".wh.gone"), "");
    write(&l2.join(".wh.gone-file"), "");
    write(&l2.join("opaque/.wh..wh..opq"), "");
    write(
        &l2.join("opaque/new"),
        "layer 2's own file survives its opaque marker",
    );
    // Written through the `lib` symlink from layer 1.
    write(&l2.join("lib/libbar.so"), "lib via symlink");
    write(&l2.join("usr/lib/libfoo.so"), "lib v2");
    // A hard link to a file of a lower layer.
    write(&l2.join("etc/hello-again"), "");
    fs::create_dir_all(l2.join("srv")).expect("mkdir");
    chown(&l2.join("srv"), 1000, 50);
    chmod(&l2.join("srv"), 0o2750);
    settle(&l2, 1_650_000_000);

    let l3 = root.join("l3");
    write(&l3.join("etc/hello"), "hello from layer 3\n");
    write(&l3.join("home/app/data/state"), "state");
    chown(&l3.join("home/app/data/state"), 1000, 1000);
    fs::create_dir_all(l3.join("home/app")).expect("mkdir");
    chown(&l3.join("home/app"), 1000, 1000);
    chown(&l3.join("home/app/data"), 1000, 1000);
    settle(&l3, 1_700_000_000);
    vec![l1, l2, l3]
}

/// Layer 2's `etc/hello-again` must be a hard link to layer 1's file; the
/// builder only makes links within a layer, so patch the tar by hand.
fn layer2_with_lower_hardlink(dir: &Path) -> Vec<u8> {
    let tar = testing::layer_tar(dir).expect("tar");
    let mut archive = tar::Archive::new(&tar[..]);
    let mut builder = tar::Builder::new(Vec::new());
    for entry in archive.entries().expect("entries") {
        let mut entry = entry.expect("entry");
        let mut header = entry.header().clone();
        let path = entry.path().expect("path").into_owned();
        if path == Path::new("lib") {
            // No directory entry: `lib/libbar.so` goes through layer 1's symlink.
            continue;
        }
        if path == Path::new("etc/hello-again") {
            header.set_entry_type(tar::EntryType::Link);
            header.set_size(0);
            builder
                .append_link(&mut header, &path, "etc/hello-link")
                .expect("link");
        } else if header.entry_type() == tar::EntryType::Symlink {
            let target = entry
                .link_name()
                .expect("link")
                .expect("target")
                .into_owned();
            builder
                .append_link(&mut header, &path, target)
                .expect("symlink");
        } else {
            builder
                .append_data(&mut header, &path, &mut entry)
                .expect("append");
        }
    }
    builder.into_inner().expect("tar")
}

/// Builds the three-layer image into `layout` as `tag`, with layer 2
/// rewritten to hard-link into layer 1.
fn build_layered(work: &Path, layout: &Path, tag: &str, config: &ImageConfig) -> Image {
    let dirs = layered_dirs(work);
    let refs: Vec<&Path> = dirs.iter().map(|d| d.as_path()).collect();
    let built = build_image(layout, tag, &refs, config).expect("build image");
    // Swap layer 2 for the hand-made one and re-tag.
    let tar = layer2_with_lower_hardlink(&dirs[1]);
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    std::io::Write::write_all(&mut gz, &tar).expect("gzip");
    let gz = gz.finish().expect("gzip");
    let mut manifest = built.manifest.clone();
    manifest.layers[1].digest = testing::write_blob(layout, &gz).expect("blob");
    manifest.layers[1].size = gz.len() as u64;
    let config_bytes = fs::read(
        layout
            .join("blobs/sha256")
            .join(manifest.config.digest.hex()),
    )
    .expect("config");
    let mut config_file: ConfigFile = serde_json::from_slice(&config_bytes).expect("config");
    config_file.rootfs.diff_ids[1] = Digest::of(&tar);
    let config_bytes = serde_json::to_vec(&config_file).expect("json");
    manifest.config.digest = testing::write_blob(layout, &config_bytes).expect("blob");
    manifest.config.size = config_bytes.len() as u64;
    let manifest_bytes = serde_json::to_vec(&manifest).expect("json");
    let digest = testing::write_blob(layout, &manifest_bytes).expect("blob");
    let desc = Descriptor {
        media_type: spec::MEDIA_OCI_MANIFEST.into(),
        digest: digest.clone(),
        size: manifest_bytes.len() as u64,
        platform: Some(Platform::linux_amd64()),
        annotations: None,
    };
    testing::tag_in_layout(layout, tag, &desc).expect("tag");
    Image {
        digest,
        manifest,
        config: config_file,
    }
}

fn simple_image(work: &Path, layout: &Path, tag: &str, text: &str) -> testing::BuiltImage {
    let l1 = work.join(format!("{tag}-l1"));
    write(&l1.join("etc/hello"), text);
    write(&l1.join("etc/passwd"), "root:x:0:0:root:/root:/bin/sh\n");
    let l2 = work.join(format!("{tag}-l2"));
    write(&l2.join("bin/app"), "#!/bin/sh\n");
    let config = ImageConfig {
        cmd: Some(vec!["/bin/app".into()]),
        ..ImageConfig::default()
    };
    build_image(layout, tag, &[&l1, &l2], &config).expect("build image")
}

fn tmp_is_empty(store: &ImageStore) -> bool {
    fs::read_dir(store.dir().join("tmp")).map_or(true, |mut d| d.next().is_none())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn image_pull_by_tag_and_by_digest_from_a_loopback_registry() {
    let registry =
        Registry::start().expect("registry (run `just setup` if docker-registry is missing)");
    let work = tempfile::tempdir().expect("tempdir");
    let layout = work.path().join("layout");
    let built = simple_image(work.path(), &layout, "v1", "hi\n");
    let target = registry.reference("apps/web:v1");
    let pushed = push(&layout, "v1", &target).await.expect("push");
    assert_eq!(pushed, built.digest);

    let store = ImageStore::new(work.path().join("images"));
    let resolved = store
        .resolve(&target, &Auth::Anonymous)
        .await
        .expect("resolve");
    assert_eq!(resolved.digest, built.digest);
    assert_eq!(resolved.index_digest, None);
    assert_eq!(
        resolved.pinned(),
        format!("{}/apps/web@{}", registry.host(), built.digest)
    );
    assert!(!store.has_blob(&built.digest), "resolve stores nothing");

    let image = store
        .pull(&target, &Auth::Anonymous)
        .await
        .expect("pull by tag");
    assert_eq!(image.digest, built.digest);
    assert_eq!(image.manifest, built.manifest);
    assert_eq!(image.config.rootfs.diff_ids, built.diff_ids);
    assert_eq!(image.run_config().cmd, Some(vec!["/bin/app".to_owned()]));
    for d in std::iter::once(&image.manifest.config).chain(&image.manifest.layers) {
        let bytes = fs::read(store.blob_path(&d.digest)).expect("stored blob");
        assert_eq!(Digest::of(&bytes), d.digest);
    }

    let fresh = ImageStore::new(work.path().join("images2"));
    let by_digest = fresh
        .pull(&resolved.pinned(), &Auth::Anonymous)
        .await
        .expect("pull by digest");
    assert_eq!(by_digest, image);
    assert_eq!(fresh.image(&built.digest).expect("stored image"), image);
    assert!(tmp_is_empty(&store) && tmp_is_empty(&fresh));

    // Two pulls of the same image at once into one store.
    let racy = ImageStore::new(work.path().join("images3"));
    let (a, b) = tokio::join!(
        racy.pull(&target, &Auth::Anonymous),
        racy.pull(&target, &Auth::Anonymous)
    );
    assert_eq!(a.expect("pull a"), b.expect("pull b"));
    assert!(tmp_is_empty(&racy));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn image_multi_arch_index_resolves_to_linux_amd64() {
    let registry =
        Registry::start().expect("registry (run `just setup` if docker-registry is missing)");
    let work = tempfile::tempdir().expect("tempdir");
    let layout = work.path().join("layout");
    let layer = work.path().join("layer");
    write(&layer.join("etc/arch"), "amd64\n");
    let amd64 = build_image(&layout, "amd64", &[&layer], &ImageConfig::default()).expect("amd64");
    write(&layer.join("etc/arch"), "arm64\n");
    let arm64 = build_image_with(
        &layout,
        "arm64",
        &[&layer],
        &ImageConfig::default(),
        &BuildOptions {
            platform: Platform {
                architecture: "arm64".into(),
                os: "linux".into(),
                variant: Some("v8".into()),
            },
            ..BuildOptions::default()
        },
    )
    .expect("arm64");
    let index = build_index(&layout, "multi", &[&arm64, &amd64]).expect("index");
    let target = registry.reference("multi:1");
    assert_eq!(push(&layout, "multi", &target).await.expect("push"), index);

    let store = ImageStore::new(work.path().join("images"));
    let resolved = store
        .resolve(&target, &Auth::Anonymous)
        .await
        .expect("resolve");
    assert_eq!(resolved.digest, amd64.digest);
    assert_eq!(resolved.index_digest, Some(index));
    let image = store.pull(&target, &Auth::Anonymous).await.expect("pull");
    assert_eq!(image.digest, amd64.digest);
    assert!(!store.has_blob(&arm64.manifest.layers[0].digest));

    // The same choice from the layout on disk.
    let from_layout = ImageStore::new(work.path().join("images2"))
        .from_layout(&layout, "multi")
        .expect("layout");
    assert_eq!(from_layout.digest, amd64.digest);

    // An index without linux/amd64.
    build_index(&layout, "arm-only", &[&arm64]).expect("index");
    let err = store
        .from_layout(&layout, "arm-only")
        .expect_err("no amd64");
    assert!(matches!(err, ImageError::NoPlatform { .. }), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn image_corrupt_registry_blob_is_rejected_and_not_cached() {
    let registry =
        Registry::start().expect("registry (run `just setup` if docker-registry is missing)");
    let work = tempfile::tempdir().expect("tempdir");
    let layout = work.path().join("layout");
    let built = simple_image(work.path(), &layout, "v1", "hi\n");
    let target = registry.reference("corrupt:v1");
    push(&layout, "v1", &target).await.expect("push");
    let layer = built.manifest.layers[1].digest.clone();
    let stored = registry.blob_data_path(&layer);
    let mut bytes = fs::read(&stored).expect("registry blob");
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    fs::write(&stored, bytes).expect("tamper");

    let store = ImageStore::new(work.path().join("images"));
    let err = store
        .pull(&target, &Auth::Anonymous)
        .await
        .expect_err("corrupt blob");
    assert!(
        matches!(&err, ImageError::DigestMismatch { digest, .. } if *digest == layer),
        "{err:?}"
    );
    assert!(err.to_string().contains(layer.as_str()), "{err}");
    assert!(!store.has_blob(&layer), "the corrupt blob must not be kept");
    assert!(
        !store.has_blob(&built.digest),
        "no manifest: the image is not in the store"
    );
    assert!(matches!(
        store.image(&built.digest),
        Err(ImageError::MissingBlob { .. })
    ));
    assert!(tmp_is_empty(&store), "nothing half-written stays");
}

#[test]
fn image_corrupt_layout_blob_is_rejected_and_not_cached() {
    let work = tempfile::tempdir().expect("tempdir");
    let layout = work.path().join("layout");
    let built = simple_image(work.path(), &layout, "v1", "hi\n");
    let layer = built.manifest.layers[0].digest.clone();
    let path = layout.join("blobs/sha256").join(layer.hex());
    let mut bytes = fs::read(&path).expect("blob");
    bytes[0] ^= 1;
    fs::write(&path, bytes).expect("tamper");
    let store = ImageStore::new(work.path().join("images"));
    let err = store.from_layout(&layout, "v1").expect_err("corrupt");
    assert!(
        matches!(&err, ImageError::DigestMismatch { digest, .. } if *digest == layer),
        "{err:?}"
    );
    assert!(
        err.to_string()
            .starts_with(&format!("blob {layer} is corrupt")),
        "{err}"
    );
    assert!(!store.has_blob(&layer) && !store.has_blob(&built.digest));
    assert!(tmp_is_empty(&store));

    let err = store.from_layout(&layout, "v2").expect_err("no such tag");
    assert!(matches!(err, ImageError::TagNotInLayout { .. }), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn image_missing_image_is_not_found() {
    let registry =
        Registry::start().expect("registry (run `just setup` if docker-registry is missing)");
    let work = tempfile::tempdir().expect("tempdir");
    let layout = work.path().join("layout");
    simple_image(work.path(), &layout, "v1", "hi\n");
    push(&layout, "v1", &registry.reference("exists:v1"))
        .await
        .expect("push");
    let store = ImageStore::new(work.path().join("images"));
    for name in [
        "exists:v2",
        "nope:v1",
        "exists@sha256:0000000000000000000000000000000000000000000000000000000000000000",
    ] {
        let reference = registry.reference(name);
        let err = store
            .pull(&reference, &Auth::Anonymous)
            .await
            .expect_err("missing");
        assert!(
            matches!(err, ImageError::NotFound { .. }),
            "{reference}: {err:?}"
        );
        assert_eq!(
            err.to_string(),
            format!("image {reference} was not found in its registry")
        );
    }
    let err = store
        .pull("not a reference", &Auth::Anonymous)
        .await
        .expect_err("invalid");
    assert!(
        matches!(err, ImageError::InvalidReference { .. }),
        "{err:?}"
    );
}

/// One node of a tree, as compared between vt and umoci.
#[derive(Debug, PartialEq, Eq)]
struct Node {
    kind: String,
    mode: u32,
    uid: u32,
    gid: u32,
    mtime: Option<(i64, i64)>,
    xattrs: BTreeMap<String, Vec<u8>>,
}

/// Every path under `root` with type, content or target, mode, owner,
/// mtime (not the root's) and xattrs, plus the groups of hard-linked paths.
fn snapshot(root: &Path) -> (BTreeMap<String, Node>, BTreeSet<Vec<String>>) {
    fn walk(
        root: &Path,
        dir: &Path,
        out: &mut BTreeMap<String, Node>,
        inodes: &mut HashMap<u64, Vec<String>>,
    ) {
        for entry in fs::read_dir(dir).expect("read_dir") {
            let path = entry.expect("entry").path();
            let rel = path
                .strip_prefix(root)
                .expect("rel")
                .to_string_lossy()
                .into_owned();
            let m = fs::symlink_metadata(&path).expect("lstat");
            let ft = m.file_type();
            let kind = if ft.is_dir() {
                "dir".to_owned()
            } else if ft.is_symlink() {
                format!(
                    "symlink -> {}",
                    fs::read_link(&path).expect("readlink").display()
                )
            } else if ft.is_file() {
                format!(
                    "file {:?}",
                    String::from_utf8_lossy(&fs::read(&path).expect("read"))
                )
            } else {
                use std::os::unix::fs::FileTypeExt;
                let what = if ft.is_char_device() {
                    "char"
                } else if ft.is_block_device() {
                    "block"
                } else {
                    "fifo"
                };
                format!(
                    "{what} {}:{}",
                    rustix::fs::major(m.rdev()),
                    rustix::fs::minor(m.rdev())
                )
            };
            if !ft.is_dir() && m.nlink() > 1 {
                inodes.entry(m.ino()).or_default().push(rel.clone());
            }
            out.insert(
                rel,
                Node {
                    kind,
                    mode: if ft.is_symlink() {
                        0
                    } else {
                        m.mode() & 0o7777
                    },
                    uid: m.uid(),
                    gid: m.gid(),
                    mtime: Some((m.mtime(), m.mtime_nsec())),
                    xattrs: testing::xattrs(&path).expect("xattrs"),
                },
            );
            if ft.is_dir() {
                walk(root, &path, out, inodes);
            }
        }
    }
    let mut nodes = BTreeMap::new();
    let mut inodes = HashMap::new();
    walk(root, root, &mut nodes, &mut inodes);
    let links = inodes
        .into_values()
        .map(|mut v| {
            v.sort();
            v
        })
        .collect();
    (nodes, links)
}

#[test]
fn image_unpack_matches_umoci() {
    require(&[("umoci", "umoci")]).expect("umoci");
    let work = tempfile::tempdir().expect("tempdir");
    let layout = work.path().join("layout");
    let image = build_layered(work.path(), &layout, "v1", &ImageConfig::default());

    let store = ImageStore::new(work.path().join("images"));
    let imported = store.from_layout(&layout, "v1").expect("import");
    assert_eq!(imported, image);
    let ours = work.path().join("ours");
    store.unpack(&imported, &ours).expect("unpack");

    let bundle = work.path().join("bundle");
    let out = std::process::Command::new("umoci")
        .arg("unpack")
        .arg("--image")
        .arg(format!("{}:v1", layout.display()))
        .arg(&bundle)
        .output()
        .expect("run umoci");
    assert!(
        out.status.success(),
        "umoci unpack: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let theirs = bundle.join("rootfs");

    let (our_nodes, our_links) = snapshot(&ours);
    let (their_nodes, their_links) = snapshot(&theirs);
    let keys: BTreeSet<_> = our_nodes.keys().chain(their_nodes.keys()).collect();
    let mut diffs = Vec::new();
    for k in keys {
        if our_nodes.get(k) != their_nodes.get(k) {
            diffs.push(format!(
                "{k}:\n  vt:    {:?}\n  umoci: {:?}",
                our_nodes.get(k),
                their_nodes.get(k)
            ));
        }
    }
    assert!(diffs.is_empty(), "trees differ:\n{}", diffs.join("\n"));
    assert_eq!(our_links, their_links);
    assert!(
        our_links.contains(&vec![
            "etc/hello-again".to_owned(),
            "etc/hello-link".to_owned()
        ]),
        "a hard link into a lower layer: {our_links:?}"
    );

    // Spot checks of the semantics themselves, not only agreement.
    let has = |p: &str| fs::symlink_metadata(ours.join(p)).is_ok();
    assert!(!has("gone") && !has("gone-file"), "whiteouts remove");
    assert!(
        !has("opaque/old") && !has("opaque/sub") && has("opaque/new"),
        "opaque dir"
    );
    assert_eq!(
        fs::read_to_string(ours.join("usr/lib/libbar.so")).expect("via symlink"),
        "lib via symlink"
    );
    assert_eq!(
        fs::read_to_string(ours.join("etc/hello-again")).expect("hardlink"),
        "hello from layer 1\n"
    );
    assert_eq!(
        fs::read_to_string(ours.join("etc/hello")).expect("replaced"),
        "hello from layer 3\n"
    );
    assert_eq!(
        fs::symlink_metadata(ours.join("bin/tool"))
            .expect("tool")
            .mode()
            & 0o7777,
        0o4755
    );
    assert_eq!(
        fs::symlink_metadata(ours.join("tmp")).expect("tmp").mode() & 0o7777,
        0o1777
    );
    assert_eq!(
        our_nodes["etc/hello-link"]
            .xattrs
            .get("user.vt.test")
            .map(Vec::as_slice),
        Some(&b"layer-1"[..])
    );
}

#[test]
fn image_unpack_never_writes_outside_the_root() {
    let work = tempfile::tempdir().expect("tempdir");
    let root = work.path().join("root");
    fs::create_dir_all(&root).expect("mkdir");
    let entry = |builder: &mut tar::Builder<Vec<u8>>,
                 path: &str,
                 kind: tar::EntryType,
                 link: Option<&str>,
                 data: &[u8]| {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(kind);
        h.set_mode(0o755);
        h.set_mtime(1_700_000_000);
        h.set_size(data.len() as u64);
        match link {
            Some(target) => builder.append_link(&mut h, path, target).expect("link"),
            None => builder.append_data(&mut h, path, data).expect("data"),
        }
    };
    let mut b = tar::Builder::new(Vec::new());
    entry(
        &mut b,
        "esc",
        tar::EntryType::Symlink,
        Some("/../../outside"),
        b"",
    );
    entry(&mut b, "esc/pwned", tar::EntryType::Regular, None, b"x");
    entry(
        &mut b,
        "rel",
        tar::EntryType::Symlink,
        Some("../../../.."),
        b"",
    );
    entry(&mut b, "rel/etc/pwned", tar::EntryType::Regular, None, b"y");
    let tar = b.into_inner().expect("tar");
    unpack::apply_layer(&root, &tar[..]).expect("apply");
    assert_eq!(
        fs::read_to_string(root.join("outside/pwned")).expect("inside"),
        "x"
    );
    assert_eq!(
        fs::read_to_string(root.join("etc/pwned")).expect("inside"),
        "y"
    );
    assert!(!work.path().join("outside").exists());

    // `..` in a name is refused outright (tar::Builder refuses to write
    // one, so patch the name bytes).
    let mut b = tar::Builder::new(Vec::new());
    entry(&mut b, "aa/evil", tar::EntryType::Regular, None, b"z");
    let mut tar = b.into_inner().expect("tar");
    tar[..2].copy_from_slice(b"..");
    let mut h = tar::Header::new_old();
    h.as_mut_bytes().copy_from_slice(&tar[..512]);
    h.set_cksum();
    tar[..512].copy_from_slice(h.as_bytes());
    let err = unpack::apply_layer(&root, &tar[..]).expect_err("dotdot");
    assert!(
        matches!(err, unpack::UnpackError::UnsafePath(ref p) if p == "../evil"),
        "{err:?}"
    );
    assert!(!work.path().join("evil").exists());
}

#[test]
fn image_zstd_and_plain_layers_unpack() {
    let work = tempfile::tempdir().expect("tempdir");
    let layout = work.path().join("layout");
    let l1 = work.path().join("l1");
    write(&l1.join("a"), "zstd layer");
    let l2 = work.path().join("l2");
    write(&l2.join("b"), "plain layer");
    let store = ImageStore::new(work.path().join("images"));
    for (tag, compression) in [("zstd", Compression::Zstd), ("plain", Compression::None)] {
        build_image_with(
            &layout,
            tag,
            &[&l1, &l2],
            &ImageConfig::default(),
            &BuildOptions {
                compression,
                ..BuildOptions::default()
            },
        )
        .expect("build");
        let image = store.from_layout(&layout, tag).expect("import");
        let dest = work.path().join(tag);
        store.unpack(&image, &dest).expect("unpack");
        assert_eq!(fs::read_to_string(dest.join("a")).expect("a"), "zstd layer");
        assert_eq!(
            fs::read_to_string(dest.join("b")).expect("b"),
            "plain layer"
        );
    }
}

#[test]
fn image_rootfs_is_ext4_cached_by_digest_and_copied_per_instance() {
    require(&[("mkfs.ext4", "e2fsprogs"), ("debugfs", "e2fsprogs")]).expect("e2fsprogs");
    let work = tempfile::tempdir().expect("tempdir");
    let layout = work.path().join("layout");
    let config = ImageConfig {
        user: Some("app:staff".into()),
        entrypoint: Some(vec!["/bin/tool".into()]),
        cmd: Some(vec!["--serve".into()]),
        env: Some(vec!["A=1".into(), "PATH=/bin".into()]),
        working_dir: Some("/home/app".into()),
        ..ImageConfig::default()
    };
    build_layered(work.path(), &layout, "v1", &config);
    let store = ImageStore::new(work.path().join("images"));
    let image = store.from_layout(&layout, "v1").expect("import");

    // Two builds of the same digest at once: one builds, the other waits.
    let (a, b) = std::thread::scope(|s| {
        let a = s.spawn(|| store.rootfs(&image));
        let b = s.spawn(|| store.rootfs(&image));
        (a.join().expect("thread a"), b.join().expect("thread b"))
    });
    let rootfs = a.expect("rootfs a");
    assert_eq!(rootfs, b.expect("rootfs b"));
    assert_eq!(
        rootfs.path,
        store
            .dir()
            .join(format!("rootfs/{}.ext4", image.digest.hex()))
    );
    let built_at = fs::metadata(&rootfs.path)
        .expect("img")
        .modified()
        .expect("mtime");
    assert_eq!(store.rootfs(&image).expect("cached"), rootfs);
    assert_eq!(
        fs::metadata(&rootfs.path)
            .expect("img")
            .modified()
            .expect("mtime"),
        built_at
    );
    assert!(tmp_is_empty(&store));
    assert_eq!(rootfs.size % (1 << 20), 0);
    assert!(rootfs.size >= 64 << 20);

    let debugfs = |img: &Path, request: &str| {
        let out = std::process::Command::new(rootfs::find_program("debugfs").expect("debugfs"))
            .arg("-R")
            .arg(request)
            .arg(img)
            .output()
            .expect("run debugfs");
        assert!(
            out.status.success(),
            "debugfs: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let listing = debugfs(&rootfs.path, "ls -l /");
    for name in [
        "etc", "usr", "bin", "home", "opaque", "srv", "tmp", "lib", "dev-null", "fifo",
    ] {
        assert!(listing.contains(name), "`ls -l /` lacks {name}:\n{listing}");
    }
    assert!(
        !listing.contains("gone"),
        "whiteout in the ext4 image:\n{listing}"
    );
    assert_eq!(
        debugfs(&rootfs.path, "cat /etc/hello"),
        "hello from layer 3\n"
    );
    let tool = debugfs(&rootfs.path, "stat /bin/tool");
    assert!(tool.contains("Mode:  04755"), "{tool}");
    let srv = debugfs(&rootfs.path, "stat /srv");
    assert!(
        srv.contains("User:  1000") && srv.contains("Group:    50"),
        "{srv}"
    );

    // Users from the image's own /etc/passwd and /etc/group.
    let process = effective_process(
        &image.run_config(),
        None,
        None,
        &BTreeMap::new(),
        &rootfs.users,
    )
    .expect("process");
    assert_eq!((process.uid, process.gid), (1000, 50));
    assert_eq!(process.argv, ["/bin/tool", "--serve"]);
    assert_eq!(process.workdir, "/home/app");
    assert_eq!(process.env["HOME"], "/home/app");
    assert_eq!(process.env["PATH"], "/bin");

    let disk = work.path().join("instances/i1/rootfs.ext4");
    store.instance_disk(&rootfs, &disk).expect("instance disk");
    assert_eq!(fs::metadata(&disk).expect("disk").len(), rootfs.size);
    assert_eq!(debugfs(&disk, "cat /etc/hello"), "hello from layer 3\n");
}

#[test]
fn image_process_resolution_honours_the_image_and_manifest_overrides() {
    let users = Users::parse(
        "root:x:0:0:root:/root:/bin/sh\nweb:x:33:34:web:/var/www:/bin/false\nbroken line\n",
        "root:x:0:\nwww:x:34:\nstaff:x:50:web\n",
    );
    let config = ImageConfig {
        user: Some("web".into()),
        entrypoint: Some(vec!["/entry".into(), "--flag".into()]),
        cmd: Some(vec!["serve".into()]),
        env: Some(vec!["A=image".into(), "B=image".into(), "EMPTY".into()]),
        working_dir: Some("srv".into()),
        ..ImageConfig::default()
    };
    let none = BTreeMap::new();
    let p = effective_process(&config, None, None, &none, &users).expect("image only");
    assert_eq!(p.argv, ["/entry", "--flag", "serve"]);
    assert_eq!((p.uid, p.gid), (33, 34));
    assert_eq!(p.workdir, "/srv");
    assert_eq!(p.env["A"], "image");
    assert_eq!(p.env["EMPTY"], "");
    assert_eq!(p.env["HOME"], "/var/www");
    assert_eq!(p.env["PATH"], process::DEFAULT_PATH);

    let args = vec!["migrate".to_owned()];
    let p = effective_process(&config, None, Some(&args), &none, &users).expect("args");
    assert_eq!(p.argv, ["/entry", "--flag", "migrate"]);
    let command = vec!["/bin/sh".to_owned(), "-c".to_owned()];
    let p = effective_process(&config, Some(&command), None, &none, &users).expect("command");
    assert_eq!(p.argv, ["/bin/sh", "-c"], "a command drops the image's cmd");
    let p = effective_process(&config, Some(&command), Some(&args), &none, &users).expect("both");
    assert_eq!(p.argv, ["/bin/sh", "-c", "migrate"]);
    let env = BTreeMap::from([
        ("B".to_owned(), "manifest".to_owned()),
        ("C".to_owned(), "manifest".to_owned()),
    ]);
    let p = effective_process(&config, None, None, &env, &users).expect("env");
    assert_eq!(
        (
            p.env["A"].as_str(),
            p.env["B"].as_str(),
            p.env["C"].as_str()
        ),
        ("image", "manifest", "manifest")
    );

    let with_user = |user: &str| {
        let config = ImageConfig {
            user: Some(user.into()),
            ..config.clone()
        };
        effective_process(&config, None, None, &none, &users).map(|p| (p.uid, p.gid))
    };
    assert_eq!(with_user(""), Ok((0, 0)));
    assert_eq!(with_user("33"), Ok((33, 34)));
    assert_eq!(with_user("4242"), Ok((4242, 0)));
    assert_eq!(with_user("web:staff"), Ok((33, 50)));
    assert_eq!(with_user("web:7"), Ok((33, 7)));
    assert_eq!(with_user("4242:4343"), Ok((4242, 4343)));
    assert_eq!(
        with_user("nobody"),
        Err(ProcessError::UnknownUser("nobody".into()))
    );
    assert_eq!(
        with_user("web:nogroup"),
        Err(ProcessError::UnknownGroup("nogroup".into()))
    );
    assert_eq!(with_user(":1"), Err(ProcessError::BadUser(":1".into())));

    let empty = ImageConfig::default();
    assert_eq!(
        effective_process(&empty, None, None, &none, &users),
        Err(ProcessError::NoCommand)
    );
    let p =
        effective_process(&empty, None, Some(&args), &none, &Users::default()).expect("args only");
    assert_eq!(
        (p.argv, p.uid, p.workdir),
        (vec!["migrate".to_owned()], 0, "/".to_owned())
    );
}
