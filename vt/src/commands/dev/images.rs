//! The images of a repository's `images/` directory, built without docker
//! and pushed to `vt dev`'s own registry (Debian's `docker-registry` on
//! loopback): `images/<name>/image.yaml` says how to run it and which files
//! of this machine to copy in, `images/<name>/rootfs/` holds its files. Each
//! build is pushed as `<registry>/<name>:dev` and pinned by digest for the
//! controller ([`vt_fleet::controller::git_source::IMAGE_PINS_FILE`]), so a
//! rebuilt image is a new release. Builds are reproducible: unchanged files
//! give the same digest, and no new release.

use super::state::DevDir;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::{Duration, Instant};
use vt_fleet::controller::git_source::IMAGE_PINS_FILE;
use vt_host::image::build::{build_image_with, push, BuildOptions, Stamp};
use vt_host::image::ImageConfig;

/// The tag every build is pushed as.
const TAG: &str = "dev";

/// `images/<name>/image.yaml`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ImageFile {
    /// The executable and its fixed arguments.
    #[serde(default)]
    entrypoint: Option<Vec<String>>,
    /// Default arguments.
    #[serde(default)]
    cmd: Option<Vec<String>>,
    /// Environment variables.
    #[serde(default)]
    env: BTreeMap<String, String>,
    /// Working directory.
    #[serde(default)]
    workdir: Option<String>,
    /// User (`name`, `uid`, `uid:gid`).
    #[serde(default)]
    user: Option<String>,
    /// Files of this machine copied into the image.
    #[serde(default)]
    copy: Vec<CopyFile>,
    /// Symbolic links in the image: path → target.
    #[serde(default)]
    links: BTreeMap<String, String>,
}

/// One file copied in.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CopyFile {
    /// Absolute path on this machine.
    from: PathBuf,
    /// Absolute path in the image.
    to: String,
}

impl ImageFile {
    fn config(&self) -> ImageConfig {
        ImageConfig {
            entrypoint: self.entrypoint.clone(),
            cmd: self.cmd.clone(),
            env: (!self.env.is_empty())
                .then(|| self.env.iter().map(|(k, v)| format!("{k}={v}")).collect()),
            working_dir: self.workdir.clone(),
            user: self.user.clone(),
            ..ImageConfig::default()
        }
    }
}

/// A built and pushed image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Built {
    /// `images/<name>`.
    pub name: String,
    /// Where it was pushed, `<registry>/<name>:dev`.
    pub reference: String,
    /// Its manifest's digest.
    pub digest: String,
    /// Whether the digest differs from the one pinned before.
    pub changed: bool,
    /// How long building and pushing took.
    pub took: Duration,
}

/// Builds the repository's images and keeps the pins file.
#[derive(Debug)]
pub struct Builder {
    root: PathBuf,
    dev: DevDir,
    registry: SocketAddr,
    pins: BTreeMap<String, String>,
}

impl Builder {
    /// A builder for the repository at `root`, pushing to `registry`.
    pub fn new(root: &Path, dev: &DevDir, registry: SocketAddr) -> Builder {
        let pins = std::fs::read(pins_file(dev))
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default();
        Builder {
            root: root.to_path_buf(),
            dev: dev.clone(),
            registry,
            pins,
        }
    }

    /// The names of the repository's images (`images/<name>/image.yaml`).
    pub fn names(root: &Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(root.join("images"))
            .into_iter()
            .flatten()
            .flatten()
            .filter(|e| e.path().join("image.yaml").is_file())
            .filter_map(|e| e.file_name().to_str().map(str::to_string))
            .collect();
        names.sort();
        names
    }

    /// Builds `images/<name>`, pushes it and pins its digest.
    pub fn build(&mut self, name: &str) -> Result<Built, String> {
        let _span = tracing::info_span!("image", name).entered();
        let started = Instant::now();
        let dir = self.root.join("images").join(name);
        let yaml = dir.join("image.yaml");
        let file: ImageFile = std::fs::read_to_string(&yaml)
            .map_err(|e| format!("cannot read {}: {e}", yaml.display()))
            .and_then(|text| {
                serde_yaml::from_str(&text).map_err(|e| format!("{}: {e}", yaml.display()))
            })?;
        let scratch = self.dev.build(name);
        let (staged, layout) = (scratch.join("files"), scratch.join("layout"));
        for d in [&staged, &layout] {
            let _ = std::fs::remove_dir_all(d);
        }
        std::fs::create_dir_all(&staged).map_err(|e| format!("{}: {e}", staged.display()))?;
        stage(&file, &staged)?;
        let rootfs = dir.join("rootfs");
        let mut layers = vec![staged.as_path()];
        if rootfs.is_dir() {
            layers.push(&rootfs);
        }
        let options = BuildOptions {
            stamp: Stamp::Reproducible,
            ..BuildOptions::default()
        };
        build_image_with(&layout, TAG, &layers, &file.config(), &options)
            .map_err(|e| format!("cannot build images/{name}: {e}"))?;
        let reference = format!("{}/{name}:{TAG}", self.registry);
        let digest = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| e.to_string())?
            .block_on(push(&layout, TAG, &reference))
            .map_err(|e| format!("cannot push {reference}: {e}"))?
            .to_string();
        let changed = self.pins.get(&reference) != Some(&digest);
        if changed {
            self.pins.insert(reference.clone(), digest.clone());
            self.save_pins()
                .map_err(|e| format!("cannot write the image pins: {e}"))?;
        }
        tracing::info!(%reference, %digest, changed, "built");
        Ok(Built {
            name: name.to_string(),
            reference,
            digest,
            changed,
            took: started.elapsed(),
        })
    }

    fn save_pins(&self) -> std::io::Result<()> {
        let path = pins_file(&self.dev);
        let tmp = path.with_extension("json.tmp");
        std::fs::write(
            &tmp,
            serde_json::to_vec_pretty(&self.pins).map_err(std::io::Error::other)?,
        )?;
        std::fs::rename(tmp, path)
    }

    /// Rebuilds an image whenever a file under its directory changes (after
    /// 100 ms of quiet), handing each outcome to `out` until it returns
    /// false. The watcher must be kept alive.
    pub fn watch(
        mut self,
        out: impl Fn(Result<Built, String>) -> bool + Send + 'static,
    ) -> Result<notify::RecommendedWatcher, String> {
        use notify::Watcher;
        let images = self.root.join("images");
        let (tx, rx) = mpsc::channel::<PathBuf>();
        let mut watcher = notify::recommended_watcher(move |e: notify::Result<notify::Event>| {
            // Reads (the builds' own among them) change nothing.
            if let Some(event) = e
                .ok()
                .filter(|e| !matches!(e.kind, notify::EventKind::Access(_)))
            {
                for path in event.paths {
                    let _ = tx.send(path);
                }
            }
        })
        .map_err(|e| e.to_string())?;
        watcher
            .watch(&images, notify::RecursiveMode::Recursive)
            .map_err(|e| format!("cannot watch {}: {e}", images.display()))?;
        std::thread::spawn(move || {
            while let Ok(first) = rx.recv() {
                let mut changed = std::collections::BTreeSet::new();
                let mut next = Some(first);
                while let Some(path) = next {
                    changed.extend(image_of(&images, &path));
                    next = rx.recv_timeout(Duration::from_millis(100)).ok();
                }
                for name in changed {
                    if images.join(&name).join("image.yaml").is_file() && !out(self.build(&name)) {
                        return;
                    }
                }
            }
        });
        Ok(watcher)
    }
}

fn pins_file(dev: &DevDir) -> PathBuf {
    dev.fleet().join(IMAGE_PINS_FILE)
}

/// The image a changed path belongs to: the first component under `images`.
fn image_of(images: &Path, path: &Path) -> Option<String> {
    path.strip_prefix(images)
        .ok()?
        .components()
        .next()
        .and_then(|c| c.as_os_str().to_str())
        .map(str::to_string)
}

/// Copies `copy` files and makes `links` under `staged`.
fn stage(file: &ImageFile, staged: &Path) -> Result<(), String> {
    let inside = |path: &str| {
        let rel = path.trim_start_matches('/');
        if rel.is_empty() || rel.split('/').any(|c| c == "..") {
            Err(format!("`{path}` is not a path in the image"))
        } else {
            Ok(staged.join(rel))
        }
    };
    let parent = |to: &Path| {
        to.parent()
            .map_or(Ok(()), std::fs::create_dir_all)
            .map_err(|e| format!("{}: {e}", to.display()))
    };
    for c in &file.copy {
        let to = inside(&c.to)?;
        parent(&to)?;
        std::fs::copy(&c.from, &to).map_err(|e| {
            format!(
                "cannot copy {} into the image: {e}{}",
                c.from.display(),
                if c.from == Path::new("/bin/busybox") {
                    " (install busybox-static: `just setup`)"
                } else {
                    ""
                }
            )
        })?;
    }
    for (path, target) in &file.links {
        let at = inside(path)?;
        parent(&at)?;
        std::os::unix::fs::symlink(target, &at).map_err(|e| format!("{}: {e}", at.display()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_files_stage_copies_and_links_inside_the_image() {
        let dir = tempfile::tempdir().expect("tempdir");
        let source = dir.path().join("tool");
        std::fs::write(&source, "#!/bin/sh\n").expect("write");
        let file: ImageFile = serde_yaml::from_str(&format!(
            "entrypoint: [/bin/sh, /start.sh]\nenv:\n  PATH: /bin\ncopy:\n- from: {}\n  to: /bin/tool\nlinks:\n  /bin/sh: tool\n",
            source.display()
        ))
        .expect("parse");
        let config = file.config();
        assert_eq!(config.env, Some(vec!["PATH=/bin".to_string()]));
        assert_eq!(
            config.entrypoint,
            Some(vec!["/bin/sh".to_string(), "/start.sh".to_string()])
        );
        let staged = dir.path().join("staged");
        stage(&file, &staged).expect("stage");
        assert_eq!(
            std::fs::read_link(staged.join("bin/sh")).expect("link"),
            Path::new("tool")
        );
        assert!(staged.join("bin/tool").is_file());

        let escape: ImageFile =
            serde_yaml::from_str("links:\n  /../x: y\n").expect("parse the escape");
        assert!(stage(&escape, &staged).is_err());
        assert!(serde_yaml::from_str::<ImageFile>("entrypint: [x]\n").is_err());
        assert_eq!(
            image_of(Path::new("/r/images"), Path::new("/r/images/web/rootfs/x")),
            Some("web".to_string())
        );
        assert_eq!(
            image_of(Path::new("/r/images"), Path::new("/r/other")),
            None
        );
    }
}
