//! Desired-state repositories changed the way people change them: `vt`
//! commands to create resources, file edits, and the real `git` CLI.

use super::{Env, Out, Sandbox};
use std::path::{Path, PathBuf};

/// The env file of the app every test deploys.
pub const ENV_FILE: &str = "orgs/acme/shop/web/envs/prod.yaml";
/// Its app file.
pub const APP_FILE: &str = "orgs/acme/shop/web/app.yaml";
/// Its qualified env name.
pub const WEB_PROD: &str = "acme/shop/web/prod";

/// A git working tree holding a desired-state repository.
#[derive(Debug, Clone)]
pub struct Repo {
    env: Env,
    path: PathBuf,
}

impl Repo {
    /// `vt init NAME` in the sandbox: `vt.yaml` and a first commit, nothing else.
    pub fn init(sb: &Sandbox, name: &str) -> Repo {
        sb.env().vt(sb.path(), &["init", name]).ok();
        Repo {
            env: sb.env().clone(),
            path: sb.path().join(name),
        }
    }

    /// `git clone SOURCE NAME` in the sandbox.
    pub fn clone_from(sb: &Sandbox, source: &Path, name: &str) -> Repo {
        let source = source.display().to_string();
        sb.env().git(sb.path(), &["clone", "-q", &source, name]);
        Repo {
            env: sb.env().clone(),
            path: sb.path().join(name),
        }
    }

    /// Its working tree.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Runs `vt ARGS` in it, which must succeed.
    pub fn vt(&self, args: &[&str]) -> Out {
        self.env.vt(&self.path, args).ok()
    }

    /// Runs `git ARGS` in it, which must succeed; returns stdout.
    pub fn git(&self, args: &[&str]) -> String {
        self.env.git(&self.path, args)
    }

    /// Creates org `org`, project `shop` and app `web` (`image`, port 8080
    /// named `main`). Does not commit.
    pub fn add_web_app(&self, org: &str, image: &str) {
        self.vt(&["org", "create", org]);
        self.vt(&["project", "create", "shop"]);
        self.vt(&["app", "create", "web", "--image", image, "--port", "8080"]);
    }

    /// Creates org `acme`, project `shop`, app `web` (image `registry.local/web:1`,
    /// port 8080) and its env `prod` with `instances`, and `rollout` (YAML lines)
    /// appended to the app file. Does not commit.
    pub fn add_web(&self, instances: u32, rollout: &str) {
        let n = instances.to_string();
        self.add_web_app("acme", "registry.local/web:1");
        self.vt(&["env", "create", "prod", "--app", "web", "--instances", &n]);
        if !rollout.is_empty() {
            self.append(APP_FILE, rollout);
        }
    }

    /// Reads a file of the working tree.
    pub fn read(&self, file: &str) -> String {
        std::fs::read_to_string(self.path.join(file))
            .unwrap_or_else(|e| panic!("cannot read {file}: {e}"))
    }

    /// Writes a file of the working tree.
    pub fn write(&self, file: &str, content: &str) {
        let path = self.path.join(file);
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).expect("create the file's directory");
        }
        std::fs::write(&path, content).unwrap_or_else(|e| panic!("cannot write {file}: {e}"));
    }

    /// Appends to a file of the working tree.
    pub fn append(&self, file: &str, text: &str) {
        let mut content = self.read(file);
        content.push_str(text);
        self.write(file, &content);
    }

    /// Replaces `from` (which must occur) with `to` in a file.
    pub fn replace(&self, file: &str, from: &str, to: &str) {
        let content = self.read(file);
        assert!(content.contains(from), "{file} has no `{from}`:\n{content}");
        self.write(file, &content.replacen(from, to, 1));
    }

    /// `git add -A && git commit -m MESSAGE`; returns the new HEAD.
    pub fn commit(&self, message: &str) -> String {
        self.git(&["add", "-A"]);
        self.git(&["commit", "-q", "-m", message]);
        self.head()
    }

    /// `git rev-parse HEAD`.
    pub fn head(&self) -> String {
        self.head_of("HEAD")
    }

    /// `git rev-parse REV`.
    pub fn head_of(&self, rev: &str) -> String {
        self.git(&["rev-parse", rev])
    }

    /// `git push -q origin main`.
    pub fn push(&self) {
        self.git(&["push", "-q", "origin", "main"]);
    }
}

/// A desired-state repository with web/prod committed, its bare "origin" and
/// a working clone of that: (bare repository, clone).
pub fn origin_and_clone(sb: &Sandbox) -> (PathBuf, Repo) {
    let seed = Repo::init(sb, "seed");
    seed.add_web(2, "");
    seed.commit("web");
    let bare = sb.path().join("origin.git");
    sb.env().git(
        sb.path(),
        &[
            "clone",
            "-q",
            "--bare",
            &seed.path().display().to_string(),
            "origin.git",
        ],
    );
    let clone = Repo::clone_from(sb, &bare, "work");
    (bare, clone)
}
