//! Secrets end to end: values encrypted in the repository with the fleet's
//! age key, the controller's gate (a missing or undecryptable secret rejects
//! the commit and the previous release keeps serving), delivery over the
//! host session into the guest as tmpfs files (a real microVM, checked with
//! `vt exec`), `on_change: signal` rewriting a file without a restart, a
//! rotation making a new release, a rollback restoring the old version, and
//! no clear value anywhere: repository, git history, the controller's redb,
//! events, logs, releases, the daemons' output, the host's disk.

use crate::support::cluster::{Cluster, Setup};
use crate::support::fleet::{Controller, FleetDir};
use crate::support::repo::{Repo, APP_FILE, WEB_PROD};
use crate::support::status::{settled, workload};
use crate::support::{wait_until, Sandbox};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::time::Duration;
use vt_host::image::testing::{build_image, push, require, Registry};
use vt_host::image::ImageConfig;
use vt_host::microvm::artifacts::{guest_dir, GuestArtifacts};

const SECRETS_FILE: &str = "orgs/acme/shop/web/envs/prod.secrets.yaml";
const TOKEN_1: &str = "tok-Q7c9v2WmZr-first";
const DB_1: &str = "db-pass-8kXr2Lq-one";
const DB_2: &str = "db-pass-5Tn0pYw-two";
const CONFIG_1: &str = "conf-HJ3k9-version-one";
const CONFIG_2: &str = "conf-ZP8w2-version-two";

/// Writes a value to a file outside the repository, for `--from-file`.
fn value_file(sb: &Sandbox, name: &str, value: &str) -> String {
    let path = sb.path().join("values").join(name);
    std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
    std::fs::write(&path, value).expect("write value");
    path.display().to_string()
}

/// Every file under `dir`.
fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() && !path.is_symlink() {
            out.extend(walk(&path));
        } else if path.is_file() {
            out.push(path);
        }
    }
    out
}

/// Asserts no file under `dir` contains any of `values` (as raw bytes).
fn assert_no_file_holds(dir: &Path, values: &[&str]) {
    for file in walk(dir) {
        let Ok(bytes) = std::fs::read(&file) else {
            continue;
        };
        for v in values {
            assert!(
                !bytes.windows(v.len()).any(|w| w == v.as_bytes()),
                "{} holds a secret value in clear",
                file.display()
            );
        }
    }
}

fn assert_text_lacks(what: &str, text: &str, values: &[&str]) {
    for v in values {
        assert!(!text.contains(v), "{what} shows a secret value in clear");
    }
}

/// Everything the controller says about the fleet, as text.
fn controller_views(c: &Controller) -> String {
    let mut all = String::new();
    for args in [
        &["events", "--limit", "10000"][..],
        &["releases", "web"],
        &["describe", "web"],
        &["status"],
        &["logs", "web"],
    ] {
        all.push_str(&c.cli(args).stdout);
    }
    all
}

/// All a process printed.
fn everything(p: &crate::support::process::Proc) -> String {
    format!("{}{}", p.stdout(), p.stderr())
}

fn rejected(c: &Controller, sha: &str) -> Value {
    wait_until("the commit is rejected", Duration::from_secs(15), || {
        let events = c.json(&["events", "--kind", "commit.rejected"]);
        events
            .as_array()?
            .iter()
            .find(|e| e["fields"]["commit"]["sha"] == sha)
            .cloned()
    })
}

#[test]
fn a_release_with_a_missing_or_undecryptable_secret_is_rejected() {
    let sb = Sandbox::new();
    let c = Cluster::start(&sb, Setup::default());
    let vt_yaml = c.repo.read("vt.yaml");
    let state_dir = c.fleet.dir().display().to_string();
    let validate = || {
        sb.env().vt(
            c.repo.path(),
            &[
                "secrets",
                "validate",
                "--state-dir",
                &state_dir,
                "-o",
                "json",
            ],
        )
    };
    let nothing = validate().ok().json();
    assert_eq!(nothing, serde_json::json!({"valid": true, "secrets": 0}));
    assert!(
        vt_yaml.contains("secrets:\n  recipients:\n    - age1"),
        "`vt fleet init` wrote the fleet's recipient into vt.yaml:\n{vt_yaml}"
    );

    // A manifest referencing a secret the env does not have: rejected, and
    // the error names app, env, secret and file.
    c.repo.append(
        APP_FILE,
        "secrets:\n  - name: db\n    path: /run/secrets/db\n    format: {min_length: 8}\n",
    );
    let missing = c.repo.commit("reference db");
    let event = rejected(&c.ctl, &missing);
    let error = &event["fields"]["errors"][0];
    assert_eq!(error["code"], "E_MISSING_SECRET", "{event}");
    assert_eq!(error["file"], SECRETS_FILE, "{event}");
    let message = error["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("app acme/shop/web env prod references secret `db`"),
        "{message}"
    );
    let w = c.web().expect("web/prod");
    assert!(settled(&w, 1), "release 1 keeps serving: {w}");

    // Setting it (a file in the working tree, then a commit) is release 2.
    let out = c.repo.vt(&[
        "secrets",
        "set",
        "web",
        "db",
        "--from-file",
        &value_file(&sb, "db1", DB_1),
        "-o",
        "json",
    ]);
    assert_eq!(out.json()["version"], 1, "{out}");
    c.repo.commit("set db");
    c.wait_settled(2, Duration::from_secs(20));
    let listed = c.repo.vt(&["secrets", "list", "web", "-o", "json"]).json();
    assert_eq!(listed[0]["name"], "db");
    assert_eq!(listed[0]["version"], 1);
    assert_eq!(listed[0]["updated_by"], "t <t@t>");
    assert_eq!(listed[0]["path"], "/run/secrets/db");
    let checked = validate().ok().json();
    assert_eq!(checked, serde_json::json!({"valid": true, "secrets": 1}));

    // A value encrypted to another key (a wrong recipient in vt.yaml):
    // rejected with a clear error; release 2 keeps serving.
    let other = sb
        .env()
        .vt(
            sb.path(),
            &[
                "fleet",
                "init",
                "https://git.invalid/other.git",
                "--state-dir",
                &sb.path().join("other").display().to_string(),
                "-o",
                "json",
            ],
        )
        .ok()
        .json();
    let stray = other["recipient"]
        .as_str()
        .expect("a recipient")
        .to_string();
    assert_eq!(other["vt_yaml_updated"], false);
    let ours = vt_yaml
        .lines()
        .find_map(|l| l.trim().strip_prefix("- age1"))
        .map(|r| format!("age1{r}"))
        .expect("our recipient");
    c.repo.replace("vt.yaml", &ours, &stray);
    c.repo.vt(&[
        "secrets",
        "set",
        "web",
        "db",
        "--from-file",
        &value_file(&sb, "db2", DB_2),
    ]);
    c.repo.replace("vt.yaml", &stray, &ours);
    let wrong = c.repo.commit("db encrypted to the wrong key");
    let event = rejected(&c.ctl, &wrong);
    let error = &event["fields"]["errors"][0];
    assert_eq!(error["code"], "E_SECRET_UNDECRYPTABLE", "{event}");
    assert_eq!(error["file"], SECRETS_FILE);
    let message = error["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("secret `db` version 2 of app acme/shop/web env prod cannot be decrypted: none of the 1 fleet key(s) can decrypt it"),
        "{message}"
    );
    let w = c.web().expect("web/prod");
    assert!(settled(&w, 2), "release 2 keeps serving: {w}");
    let refused = validate();
    assert_eq!(refused.code, 3, "{refused}");
    assert!(
        refused.stdout.contains("E_SECRET_UNDECRYPTABLE"),
        "{refused}"
    );

    // Set right, it is release 3.
    c.repo.vt(&[
        "secrets",
        "set",
        "web",
        "db",
        "--from-file",
        &value_file(&sb, "db2", DB_2),
    ]);
    c.repo.commit("db encrypted to the fleet");
    c.wait_settled(3, Duration::from_secs(20));
    let releases = c.ctl.json(&["releases", "web"]);
    assert_eq!(
        releases[2]["diff"][0]["path"], "secrets[db].version",
        "{releases}"
    );

    // A new fleet key: every secrets file and vt.yaml re-encrypted to it in
    // the working tree; the commit is accepted (the controller reads the new
    // identity) and makes no release: no secret changed. The old key stays
    // in the state directory, so reverting the rotation still decrypts.
    let rotated = sb
        .env()
        .vt(
            c.repo.path(),
            &[
                "fleet",
                "rotate-key",
                "--state-dir",
                &state_dir,
                "-o",
                "json",
            ],
        )
        .ok()
        .json();
    let new_recipient = rotated["recipient"].as_str().expect("a recipient");
    assert_ne!(new_recipient, ours);
    assert_eq!(
        rotated["files"],
        serde_json::json!([SECRETS_FILE, "vt.yaml"])
    );
    assert!(c.repo.read("vt.yaml").contains(new_recipient));
    assert!(!c.repo.read("vt.yaml").contains(&ours));
    let identities =
        std::fs::read_to_string(c.fleet.dir().join("age-identities.txt")).expect("identity file");
    assert_eq!(identities.matches("AGE-SECRET-KEY-1").count(), 2);
    let rotation = c.repo.commit("rotate the fleet key");
    let revert = {
        c.repo.git(&["revert", "--no-edit", "HEAD"]);
        c.repo.head()
    };
    for sha in [&rotation, &revert] {
        wait_until("the commit is accepted", Duration::from_secs(15), || {
            let events = c.ctl.json(&["events", "--kind", "commit.accepted"]);
            events
                .as_array()?
                .iter()
                .any(|e| e["fields"]["commit"]["sha"] == sha.as_str())
                .then_some(())
        });
    }
    let releases = c.ctl.json(&["releases", "web"]);
    assert_eq!(releases.as_array().map(Vec::len), Some(3), "{releases}");

    // No clear value anywhere.
    let values = [DB_1, DB_2];
    assert_text_lacks("git history", &c.repo.git(&["log", "-p", "--all"]), &values);
    assert_no_file_holds(c.repo.path(), &values);
    assert_no_file_holds(c.fleet.dir(), &values);
    assert_text_lacks("the controller's API", &controller_views(&c.ctl), &values);
    assert_text_lacks("the controller's output", &everything(&c.ctl.proc), &values);
    for h in &c.hosts {
        assert_text_lacks("a host's output", &everything(h), &values);
    }
}

/// The app: busybox httpd, and `reloaded` on stdout at every SIGHUP.
const SCRIPT: &str = "trap 'echo reloaded' HUP; echo started; \
    /bin/busybox httpd -f -p [::]:8080 -h /www & while true; do /bin/busybox sleep 1; done";
/// TCG boots in seconds on an idle machine; leave room for a busy one.
const BOOT: Duration = Duration::from_secs(240);

fn image_dir(root: &Path) -> std::path::PathBuf {
    crate::support::microvm::busybox_layer(root, "hello\n")
}

fn instances(c: &Controller) -> Vec<Value> {
    let status = c.json(&["status"]);
    workload(&status, WEB_PROD)
        .and_then(|w| w["instances"].as_array().cloned())
        .unwrap_or_default()
}

/// The one instance, once it is healthy on `release` and alone.
fn healthy_on(c: &Controller, release: u64) -> Option<Value> {
    let all = instances(c);
    let only = all
        .iter()
        .filter(|i| i["phase"] != "stopped" && i["phase"] != "failed")
        .count()
        == 1;
    all.into_iter()
        .find(|i| i["release"] == release && i["phase"] == "healthy")
        .filter(|_| only)
}

fn exec(c: &Controller, argv: &[&str]) -> String {
    let mut args = vec!["exec", "web", "--"];
    args.extend(argv);
    let out = c.cli_plain(&args);
    assert_eq!(out.code, 0, "{out}");
    out.stdout
}

#[test]
fn secrets_reach_the_guest_as_files_and_change_by_commit() {
    let _turn = crate::support::microvm::exclusive();
    require(&[
        ("qemu-system-x86_64", "qemu-system-x86"),
        ("docker-registry", "docker-registry"),
        ("mkfs.ext4", "e2fsprogs"),
    ])
    .expect("run `just setup`");
    GuestArtifacts::find(&guest_dir()).unwrap_or_else(|e| panic!("{e}"));
    let sb = Sandbox::new();

    let registry = Registry::start().expect("start docker-registry");
    let layout = sb.path().join("layout");
    let config = ImageConfig {
        entrypoint: Some(vec!["/bin/sh".into(), "-c".into(), SCRIPT.into()]),
        ..ImageConfig::default()
    };
    build_image(&layout, "1", &[&image_dir(sb.path())], &config).expect("build the image");
    let reference = registry.reference("web:1");
    tokio::runtime::Runtime::new()
        .expect("tokio")
        .block_on(push(&layout, "1", &reference))
        .expect("push the image");

    // The repository, its fleet (which writes its recipient into vt.yaml),
    // two secrets set from files, one commit.
    let repo = Repo::init(&sb, "repo");
    repo.add_web_app("acme", &reference);
    repo.append(
        APP_FILE,
        "secrets:\n  - name: token\n    path: /run/secrets/token\n    format: {min_length: 16}\n  \
         - name: config\n    path: /run/config/app.conf\n    on_change: signal\n",
    );
    repo.vt(&["env", "create", "prod", "--app", "web", "--instances", "1"]);
    let fleet = FleetDir::init(&sb, "fleet", &repo.path().display().to_string());
    for (name, value) in [("token", TOKEN_1), ("config", CONFIG_1)] {
        repo.vt(&[
            "secrets",
            "set",
            "web",
            name,
            "--from-file",
            &value_file(&sb, name, value),
        ]);
    }
    let first = repo.commit("web with secrets");

    let controller = fleet.start();
    let token = fleet.join_token("host", "10m");
    let host_dir = sb.path().join("h1");
    let guest = guest_dir().display().to_string();
    let host = sb.env().spawn_vt_with(
        "h1",
        Path::new("/"),
        &[
            "host",
            "run",
            "--controller",
            &controller.quic.to_string(),
            "--token",
            &token,
            "--name",
            "h1",
            "--state-dir",
            &host_dir.display().to_string(),
            "--cpu",
            "2",
            "--memory",
            "2Gi",
            "--runtime",
            "microvm",
            "--accel",
            "auto",
        ],
        &[("VT_GUEST_DIR", &guest)],
    );

    // The files are in the guest with the right content, mode and owner.
    let one = wait_until("release 1 is healthy", BOOT, || healthy_on(&controller, 1));
    assert_eq!(
        exec(&controller, &["/bin/busybox", "cat", "/run/secrets/token"]),
        TOKEN_1
    );
    assert_eq!(
        exec(
            &controller,
            &["/bin/busybox", "cat", "/run/config/app.conf"]
        ),
        CONFIG_1
    );
    assert_eq!(
        exec(
            &controller,
            &[
                "/bin/busybox",
                "stat",
                "-c",
                "%a %u %g",
                "/run/secrets/token",
                "/run/config/app.conf"
            ]
        ),
        "400 0 0\n400 0 0\n"
    );
    let mounts = exec(&controller, &["/bin/busybox", "cat", "/proc/mounts"]);
    assert!(
        mounts.lines().any(|l| l.contains(" /run/secrets tmpfs ")),
        "secrets live on a tmpfs: {mounts}"
    );

    // `on_change: signal`: a new config version is written into the running
    // guest and the app gets SIGHUP; the instance is not replaced.
    repo.vt(&[
        "secrets",
        "set",
        "web",
        "config",
        "--from-file",
        &value_file(&sb, "config2", CONFIG_2),
    ]);
    let preview = repo.vt(&["secrets", "preview", "-o", "json"]).json();
    assert_eq!(preview[0]["effect"], "signal", "{preview}");
    assert_eq!(preview[0]["secrets"][0]["path"], "/run/config/app.conf");
    assert_eq!(preview[0]["secrets"][0]["signal"], "SIGHUP");
    repo.commit("config v2");
    let two = wait_until(
        "the instance runs release 2",
        Duration::from_secs(60),
        || healthy_on(&controller, 2),
    );
    assert_eq!(two["id"], one["id"], "not restarted: {two}");
    wait_until(
        "the new config is in the guest",
        Duration::from_secs(60),
        || {
            (exec(
                &controller,
                &["/bin/busybox", "cat", "/run/config/app.conf"],
            ) == CONFIG_2)
                .then_some(())
        },
    );
    wait_until("the app got SIGHUP", Duration::from_secs(60), || {
        controller
            .cli(&["logs", "web", "--grep", "reloaded"])
            .stdout
            .contains("reloaded")
            .then_some(())
    });
    let starts = controller.cli(&["logs", "web", "--grep", "started"]).stdout;
    assert_eq!(starts.lines().count(), 1, "the app started once: {starts}");

    // A rotation: a generated value, a new version, a new release that
    // replaces the instance.
    let preview = {
        repo.vt(&["secrets", "rotate", "web", "token", "--generate", "32"]);
        repo.vt(&["secrets", "preview", "-o", "json"]).json()
    };
    assert_eq!(preview[0]["effect"], "restart", "{preview}");
    repo.commit("rotate the token");
    let three = wait_until("release 3 is healthy", BOOT, || healthy_on(&controller, 3));
    assert_ne!(three["id"], two["id"]);
    let rotated = exec(&controller, &["/bin/busybox", "cat", "/run/secrets/token"]);
    assert_eq!(rotated.len(), 32);
    assert!(
        rotated.bytes().all(|b| b.is_ascii_alphanumeric()),
        "{rotated:?}"
    );
    let listed = repo.vt(&["secrets", "list", "web", "-o", "json"]).json();
    let versions: Vec<(String, u64)> = listed
        .as_array()
        .expect("a list")
        .iter()
        .map(|s| {
            (
                s["name"].as_str().unwrap_or_default().to_string(),
                s["version"].as_u64().unwrap_or(0),
            )
        })
        .collect();
    assert_eq!(
        versions,
        [("config".to_string(), 2), ("token".to_string(), 2)]
    );

    // A rollback: a commit restoring the first secrets file restores the
    // first versions, as a new release.
    repo.git(&["checkout", &first, "--", SECRETS_FILE]);
    repo.commit("roll the secrets back");
    wait_until("release 4 is healthy", BOOT, || healthy_on(&controller, 4));
    assert_eq!(
        exec(&controller, &["/bin/busybox", "cat", "/run/secrets/token"]),
        TOKEN_1
    );
    assert_eq!(
        exec(
            &controller,
            &["/bin/busybox", "cat", "/run/config/app.conf"]
        ),
        CONFIG_1
    );

    // No clear value anywhere but in the guest.
    let values = [TOKEN_1, CONFIG_1, CONFIG_2, rotated.as_str()];
    assert_text_lacks("git history", &repo.git(&["log", "-p", "--all"]), &values);
    assert_no_file_holds(repo.path(), &values);
    assert_no_file_holds(fleet.dir(), &values);
    assert_no_file_holds(&host_dir, &values);
    assert_text_lacks(
        "the controller's API",
        &controller_views(&controller),
        &values,
    );
    assert_text_lacks(
        "the controller's output",
        &everything(&controller.proc),
        &values,
    );
    assert_text_lacks("the host's output", &everything(&host), &values);

    // Retire the env so the VM stops before the host agent is killed (a
    // killed agent would leave its qemu behind).
    for file in ["orgs/acme/shop/web/envs/prod.yaml", SECRETS_FILE] {
        std::fs::remove_file(repo.path().join(file)).expect("rm env");
    }
    repo.commit("retire prod");
    wait_until("the instance stopped", Duration::from_secs(60), || {
        instances(&controller).is_empty().then_some(())
    });
}
