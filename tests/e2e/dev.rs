//! `vt dev` end to end, with the real binary: a repository made from the
//! `hello` template, the whole stack started by `vt dev` (controller, hosts,
//! edge, registry), the app served on a loopback endpoint from a real
//! microVM, uncommitted edits of the manifests and of the image's files
//! picked up, Ctrl-C stopping everything but the volumes, a second run
//! continuing from the first one's state, and taken ports. A second test
//! runs simulated hosts over two regions (no microVM turn needed).
//!
//! Needs `just setup` (qemu, docker-registry, busybox-static) and `just guest`.

use crate::support::api::Api;
use crate::support::microvm::require_microvms;
use crate::support::process::Proc;
use crate::support::{poll, wait_until, Out, Sandbox};
use serde_json::Value;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::time::Duration;
use vt_host::microvm::artifacts::guest_dir;

const APP_FILE: &str = "app.yaml";
const ENV_FILE: &str = "envs/dev.yaml";
const PAGE: &str = "images/hello/rootfs/www/index.html";
/// TCG boots in seconds on an idle machine; leave room for a busy one.
const BOOT: Duration = Duration::from_secs(240);

/// `vt init --template hello repo` in the sandbox, its org renamed to
/// `org` (instance addresses derive from the org; other microVM tests may
/// run at the same time). Returns the repository and its app directory.
fn template_repo(sb: &Sandbox, org: &str) -> (PathBuf, PathBuf) {
    let out = sb
        .env()
        .vt(sb.path(), &["init", "--template", "hello", "repo"])
        .ok();
    assert!(out.stdout.contains("next: vt dev"), "{out}");
    let repo = sb.path().join("repo");
    std::fs::rename(repo.join("orgs/hello"), repo.join("orgs").join(org)).expect("rename the org");
    let app = repo.join("orgs").join(org).join("site/web");
    (repo, app)
}

fn edit(file: &Path, from: &str, to: &str) {
    let text = std::fs::read_to_string(file).expect("read");
    assert!(
        text.contains(from),
        "{} lacks {from:?}:\n{text}",
        file.display()
    );
    std::fs::write(file, text.replace(from, to)).expect("write");
}

fn dev_json(repo: &Path) -> Value {
    let text = std::fs::read_to_string(repo.join(".vt/dev/dev.json")).expect("dev.json");
    serde_json::from_str(&text).expect("dev.json is JSON")
}

fn api(repo: &Path) -> Api {
    let json = dev_json(repo);
    Api::new(
        json["controller"].as_str().expect("controller"),
        json["token"].as_str(),
        None,
    )
}

/// The page at `url`, if it answers.
fn page(url: &str) -> Option<String> {
    ureq::get(url)
        .timeout(Duration::from_secs(3))
        .call()
        .ok()?
        .into_string()
        .ok()
}

/// Processes whose command line mentions `needle`.
fn processes_with(needle: &str, program: &str) -> Vec<String> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").expect("/proc").flatten() {
        if let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) {
            let text = String::from_utf8_lossy(&cmdline).replace('\0', " ");
            if text.contains(needle) && text.contains(program) {
                found.push(text);
            }
        }
    }
    found
}

/// The real guest's directory: the sandbox has its own HOME.
fn guest() -> String {
    guest_dir().display().to_string()
}

/// Runs `vt ARGS` in `repo` to completion (a `vt dev` that fails to start).
fn run_vt(sb: &Sandbox, repo: &Path, args: &[&str]) -> Out {
    let mut cmd = sb.env().vt_command(repo, args);
    cmd.env("VT_GUEST_DIR", guest());
    sb.env().run("vt", cmd)
}

/// `vt dev` running in a repository; stopped with SIGTERM (so that it
/// stops its stack, VMs included) if the test ends while it runs.
struct Dev {
    proc: Proc,
}

impl Dev {
    fn start(sb: &Sandbox, repo: &Path, args: &[&str]) -> Dev {
        Dev {
            proc: sb
                .env()
                .spawn_vt_with("dev", repo, args, &[("VT_GUEST_DIR", &guest())]),
        }
    }

    /// Waits until stdout satisfies `done`; returns it.
    fn wait_for(&mut self, what: &str, timeout: Duration, done: impl Fn(&str) -> bool) -> String {
        let found = poll(timeout, || {
            let out = self.proc.stdout();
            assert!(
                self.proc.exited().is_none(),
                "vt dev exited while waiting until {what}:\n{}",
                self.proc.output()
            );
            done(&out).then_some(out)
        });
        found.unwrap_or_else(|| {
            panic!(
                "timed out after {timeout:?} waiting until {what}\n{}",
                self.proc.output()
            )
        })
    }

    /// The first endpoint URL it printed, once it answered.
    fn serving(&mut self) -> String {
        let out = self.wait_for("an endpoint answers", BOOT, |o| o.contains(" answers"));
        let line = out
            .lines()
            .find(|l| l.ends_with(" answers"))
            .expect("the line");
        let url = line
            .split_whitespace()
            .find(|w| w.starts_with("http://["))
            .expect("a URL");
        url.to_string()
    }

    /// Ctrl-C; its exit code and everything it printed.
    fn interrupt(&mut self) -> (i32, String) {
        self.proc.interrupt();
        let status = self.proc.wait(Duration::from_secs(150));
        (status.code().unwrap_or(-1), self.proc.stdout())
    }
}

impl Drop for Dev {
    fn drop(&mut self) {
        self.proc.terminate(Duration::from_secs(150));
    }
}

#[test]
fn dev_serves_the_working_tree_on_loopback_and_follows_its_edits() {
    let _turn = require_microvms(&[("busybox", "busybox-static")]);
    let sb = Sandbox::new();
    let (repo, app) = template_repo(&sb, "devco");
    // Its own registry port: a developer's `vt dev` may hold the default.
    let registry = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port");
    edit(
        &app.join(APP_FILE),
        "127.0.0.1:5055/",
        &format!("{registry}/"),
    );
    let registry_arg = registry.to_string();
    let args = ["dev", "--registry", registry_arg.as_str()];

    // Cold start: built, booted, healthy, serving on a loopback address.
    let mut dev = Dev::start(&sb, &repo, &args);
    let url = dev.serving();
    assert!(url.starts_with("http://[fd76:7400:de:"), "{url}");
    let first = page(&url).expect("the page");
    assert!(
        first.contains("<h1>Hello from vt dev</h1>") && first.contains("seen 1 boot(s)"),
        "{first}"
    );
    let out = dev.wait_for("the split is printed", Duration::from_secs(5), |o| {
        o.contains("ready in ")
    });
    let split = out
        .lines()
        .find(|l| l.contains("ready in "))
        .expect("split");
    for part in ["build ", "start ", "boot ", "health "] {
        assert!(split.contains(part), "{split}");
    }
    assert!(out.contains("dev-1  region local, microVMs"), "{out}");
    let json = dev_json(&repo);
    assert_eq!(json["runtime"], "microvm");
    assert_eq!(
        (&json["hosts"][0]["name"], &json["hosts"][0]["region"]),
        (&Value::from("dev-1"), &Value::from("local"))
    );
    assert_eq!(
        (&json["hosts"][0]["cpu"], &json["hosts"][0]["memory"]),
        (&Value::from("2"), &Value::from("2Gi"))
    );
    assert!(out.contains(json["controller"].as_str().expect("controller")));

    // An uncommitted edit of the manifests: a new release.
    edit(
        &app.join(ENV_FILE),
        "Hello from vt dev",
        "Edited, not committed",
    );
    wait_until("the edited greeting is served", BOOT, || {
        page(&url).filter(|p| p.contains("<h1>Edited, not committed</h1>"))
    });
    // An edit of the image's files: rebuilt, pushed, pinned, released.
    edit(&repo.join(PAGE), "Served by", "Rebuilt and served by");
    wait_until("the rebuilt page is served", BOOT, || {
        page(&url).filter(|p| p.contains("Rebuilt and served by"))
    });
    let out = dev.proc.stdout();
    assert!(out.contains("image hello rebuilt"), "{out}");
    assert!(
        out.contains("env.GREETING"),
        "the release says what changed"
    );

    // One `vt dev` per repository.
    let twice = run_vt(&sb, &repo, &args);
    assert_eq!(twice.code, 5, "{twice}");
    assert!(twice.stderr.contains("already running"), "{twice}");

    // Ctrl-C stops everything; the volume stays; git sees only the edits.
    let (code, out) = dev.interrupt();
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("stopping dev-1") && out.contains("stopped;"),
        "{out}"
    );
    let repo_text = repo.display().to_string();
    assert!(processes_with(&repo_text, "qemu-system").is_empty());
    assert!(processes_with(&repo_text, "docker-registry").is_empty());
    let volumes = repo.join(".vt/dev/hosts/dev-1/volumes");
    let kept: Vec<PathBuf> = std::fs::read_dir(&volumes)
        .expect("the volumes directory")
        .flatten()
        .map(|e| e.path().join("data-0.ext4"))
        .filter(|p| p.is_file())
        .collect();
    assert_eq!(kept.len(), 1, "{}", volumes.display());
    let status = sb
        .env()
        .git(&repo, &["status", "--porcelain", "--untracked-files=all"]);
    assert!(!status.contains(".vt"), "{status}");

    // A second run continues: same controller, same releases, the same volume.
    let controller = json["controller"].clone();
    let mut dev = Dev::start(&sb, &repo, &args);
    assert_eq!(dev.serving(), url);
    let again = page(&url).expect("the page");
    assert!(again.contains("Rebuilt and served by"), "{again}");
    let boots: u32 = again
        .split("seen ")
        .nth(1)
        .and_then(|r| r.split(' ').next())
        .and_then(|n| n.parse().ok())
        .expect("a boot count");
    assert!(boots >= 4, "the volume kept its boots: {again}");
    assert_eq!(dev_json(&repo)["controller"], controller);
    let status = api(&repo).get("/v1/status");
    assert_eq!(status["workloads"][0]["desired_release"], 3, "{status}");
    let (code, out) = dev.interrupt();
    assert_eq!(code, 0, "{out}");

    // The registry's port is taken: a clear error, nothing started.
    let _squatter = TcpListener::bind(registry).expect("take the registry's port");
    let taken = run_vt(&sb, &repo, &args);
    assert_eq!(taken.code, 1, "{taken}");
    assert!(
        taken.stderr.contains(&format!("{registry} is taken"))
            && taken.stderr.contains("--registry"),
        "{taken}"
    );
    assert!(processes_with(&repo_text, "qemu-system").is_empty());
}

#[test]
fn dev_simulates_hosts_over_regions_and_moves_off_taken_ports() {
    let sb = Sandbox::new();
    let (repo, app) = template_repo(&sb, "devsim");
    let args = ["dev", "--runtime", "sim", "--hosts", "3", "--regions", "2"];

    let too_many = run_vt(
        &sb,
        &repo,
        &["dev", "--runtime", "sim", "--hosts", "3", "--regions", "3"],
    );
    assert_eq!(too_many.code, 2, "{too_many}");
    assert!(
        too_many
            .stderr
            .contains("vt.yaml has 2 regions (local, local-2)"),
        "{too_many}"
    );

    let mut dev = Dev::start(&sb, &repo, &args);
    dev.wait_for("the stack is ready", Duration::from_secs(60), |o| {
        o.contains("ready in ")
    });
    let json = dev_json(&repo);
    let placed: Vec<(String, String)> = json["hosts"]
        .as_array()
        .expect("hosts")
        .iter()
        .map(|h| (h["name"].to_string(), h["region"].to_string()))
        .collect();
    assert_eq!(
        placed,
        [
            ("\"dev-1\"", "\"local\""),
            ("\"dev-2\"", "\"local-2\""),
            ("\"dev-3\"", "\"local\"")
        ]
        .map(|(h, r)| (h.to_string(), r.to_string()))
    );
    assert_eq!(json["runtime"], "sim");
    let fleet = api(&repo);
    let hosts = fleet.get("/v1/hosts");
    assert_eq!(hosts.as_array().map(Vec::len), Some(3), "{hosts}");

    // An uncommitted edit: a second instance.
    edit(&app.join(ENV_FILE), "instances: 1", "instances: 2");
    wait_until(
        "release 2 with two instances",
        Duration::from_secs(30),
        || {
            let w = fleet.get("/v1/status")["workloads"][0].clone();
            (w["desired_release"] == 2 && w["ready"] == 2).then_some(())
        },
    );
    let (code, out) = dev.interrupt();
    assert_eq!(code, 0, "{out}");

    // The controller's port is taken by now: another one, said so, and the
    // state continues (no new release).
    let http: SocketAddr = json["controller"]
        .as_str()
        .and_then(|c| c.strip_prefix("http://"))
        .and_then(|a| a.parse().ok())
        .expect("the controller's address");
    let _squatter = TcpListener::bind(http).expect("take the controller's port");
    let mut dev = Dev::start(&sb, &repo, &args);
    let out = dev.wait_for("the stack is ready again", Duration::from_secs(60), |o| {
        o.contains("ready in ")
    });
    assert!(
        out.contains(&format!(
            "{http} (the controller's API) is taken by another process: using"
        )),
        "{out}"
    );
    let moved = dev_json(&repo);
    assert_ne!(moved["controller"], json["controller"]);
    let status = api(&repo).get("/v1/status");
    assert_eq!(status["workloads"][0]["desired_release"], 2, "{status}");
    let (code, out) = dev.interrupt();
    assert_eq!(code, 0, "{out}");
}
