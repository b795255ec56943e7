//! The microVM runtime end to end, the way a user runs it: an OCI image
//! pushed to a real registry (Debian's docker-registry on loopback), a
//! committed manifest, a real controller and host agent, and a real qemu
//! microVM (KVM where a probe guest boots, TCG otherwise): the instance boots,
//! passes its health check, serves HTTP on its IPv6 address, its log lines
//! reach `vt logs`, it answers `vt exec` (also interactively: `-i`, and `-it`
//! on a terminal that is resized), keeps a file on its volume across a new
//! release, and stops cleanly when its env is removed.
//!
//! Needs `just setup` (qemu, docker-registry, e2fsprogs) and `just guest`
//! (kernel + initramfs); it fails with what to run when they are missing.

use crate::support::attach::{resize, Attach};
use crate::support::fleet::{Controller, FleetDir};
use crate::support::microvm::{publish, require_microvms, start_host};
use crate::support::repo::Repo;
use crate::support::{wait_until, Sandbox};
use serde_json::Value;
use std::path::Path;
use std::time::Duration;
use vt_host::image::testing::Registry;

const APP_FILE: &str = "orgs/acme/shop/web/app.yaml";
const ENV_FILE: &str = "orgs/acme/shop/web/envs/prod.yaml";
/// TCG boots in seconds on an idle machine; leave room for a busy one.
const BOOT: Duration = Duration::from_secs(240);

/// The app: busybox's httpd serving /www, a line per boot appended to the
/// volume, and a log line every two seconds.
const SCRIPT: &str = "echo started $GREETING; echo boot >> /data/boots; \
    /bin/busybox httpd -f -p [::]:8080 -h /www & while true; do echo tick; sleep 2; done";

fn image_dir(root: &Path) -> std::path::PathBuf {
    crate::support::microvm::busybox_layer(root, "hello from a vt microVM\n")
}

fn instances(c: &Controller) -> Vec<Value> {
    let status = c.json(&["status"]);
    status["workloads"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|w| w["instances"].as_array().cloned().unwrap_or_default())
        .collect()
}

fn healthy_on_release(c: &Controller, release: u64) -> Option<Value> {
    let all = instances(c);
    let only_this = all.iter().all(|i| i["release"] == release);
    all.into_iter()
        .find(|i| i["release"] == release && i["phase"] == "healthy" && i["address"].is_string())
        .filter(|_| only_this)
}

fn http_get(address: &str) -> String {
    let url = format!("http://[{address}]:8080/");
    ureq::get(&url)
        .timeout(Duration::from_secs(5))
        .call()
        .map(|r| r.into_string().unwrap_or_default())
        .unwrap_or_else(|e| format!("error: {e}"))
}

#[test]
fn an_app_runs_as_a_microvm_from_its_oci_image() {
    let _turn = require_microvms(&[]);
    let sb = Sandbox::new();

    // The image, in a real registry.
    let registry = Registry::start().expect("start docker-registry");
    let reference = publish(
        &sb,
        &registry,
        &[&image_dir(sb.path())],
        SCRIPT,
        &["GREETING=one"],
    );

    // The desired state: one instance with a volume.
    let repo = Repo::init(&sb, "repo");
    repo.add_web_app("acme", &reference);
    repo.append(
        APP_FILE,
        "volumes:\n  - name: data\n    size: 64Mi\n    mount: /data\n",
    );
    repo.vt(&["env", "create", "prod", "--app", "web", "--instances", "1"]);
    repo.commit("web on a microVM");

    let fleet = FleetDir::init(&sb, "fleet", &repo.path().display().to_string());
    let controller = fleet.start();
    let _host = start_host(&sb, &fleet, &controller, &[]);
    let host_dir = sb.path().join("h1").display().to_string();

    // Boots, passes its TCP health check, serves HTTP on its IPv6 address.
    let first = wait_until("the instance is healthy", BOOT, || {
        healthy_on_release(&controller, 1)
    });
    let address = first["address"].as_str().expect("an address").to_string();
    assert!(
        address.starts_with("fd"),
        "a unique-local IPv6 address: {address}"
    );
    assert_eq!(http_get(&address), "hello from a vt microVM\n");
    let detail = first["detail"].as_str().unwrap_or_default();
    assert!(
        detail.contains("tcg") || detail.contains("kvm"),
        "the accelerator is shown: {detail}"
    );

    // Its output reaches `vt logs`, in order, one JSON object per line.
    let logs = wait_until("log lines arrive", Duration::from_secs(30), || {
        let out = controller.cli(&["logs", "web"]).ok().stdout;
        (out.contains("started one") && out.contains("\"tick\"")).then_some(out)
    });
    for line in logs.lines() {
        let v: Value = serde_json::from_str(line).expect("one JSON object per line");
        assert_eq!(v["instance"], first["id"]);
    }

    // `vt exec` runs in the guest and returns output and exit code.
    let out = controller.cli_plain(&["exec", "web", "--", "/bin/busybox", "cat", "/data/boots"]);
    assert_eq!(
        (out.code, out.stdout.as_str()),
        (0, "boot\n"),
        "{}",
        out.stderr
    );
    let out = controller.cli_plain(&[
        "exec",
        "web",
        "--",
        "/bin/sh",
        "-c",
        "echo oops >&2; exit 7",
    ]);
    assert_eq!((out.code, out.stderr.trim()), (7, "oops"));
    interactive_sessions(&controller, &fleet.api_token());

    // A new release (env change) replaces the instance; the volume keeps its file.
    repo.append(ENV_FILE, "env:\n  GREETING: two\n");
    repo.commit("greet differently");
    let second = wait_until("release 2 is healthy and release 1 gone", BOOT, || {
        healthy_on_release(&controller, 2)
    });
    assert_ne!(second["id"], first["id"]);
    let out = controller.cli_plain(&["exec", "web", "--", "/bin/busybox", "cat", "/data/boots"]);
    assert_eq!(
        out.stdout, "boot\nboot\n",
        "the volume survived the new release"
    );
    let out = controller
        .cli(&["logs", "web", "--grep", "started"])
        .ok()
        .stdout;
    assert!(out.contains("started two"), "{out}");

    // `vt volumes` shows the volume attached to the running instance and
    // refuses to destroy it.
    let listed = controller.json(&["volumes", "list", "web"]);
    let volume = &listed.as_array().expect("a list")[0];
    assert_eq!(
        (volume["workload"].as_str(), volume["name"].as_str()),
        (Some("acme/shop/web/prod"), Some("data"))
    );
    assert_eq!(volume["attached"], second["id"]);
    let volume_id = volume["id"].as_str().expect("an id").to_string();
    let refused = controller.cli(&["volumes", "destroy", &volume_id, "--yes"]);
    assert_ne!(refused.code, 0);
    assert!(refused.stdout.contains("E_ATTACHED"), "{}", refused.stdout);

    // Removing the env stops the instance cleanly and keeps the volume.
    std::fs::remove_file(repo.path().join(ENV_FILE)).expect("rm env");
    repo.commit("retire prod");
    wait_until("the instance stopped", Duration::from_secs(60), || {
        instances(&controller).is_empty().then_some(())
    });
    let volumes = Path::new(&host_dir).join("volumes");
    let kept: Vec<_> = walk(&volumes)
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "ext4"))
        .collect();
    assert_eq!(
        kept.len(),
        1,
        "the volume is never deleted implicitly: {kept:?}"
    );
    // Only on request, confirmed, and once unattached.
    let unconfirmed = controller.cli(&["volumes", "destroy", &volume_id]);
    assert!(
        unconfirmed.code != 0 && unconfirmed.stdout.contains("E_CONFIRM"),
        "{}",
        unconfirmed.stdout
    );
    wait_until("the volume is detached", Duration::from_secs(30), || {
        controller.json(&["volumes", "list"])[0]["attached"]
            .is_null()
            .then_some(())
    });
    controller
        .cli(&["volumes", "destroy", &volume_id, "--yes"])
        .ok();
    assert!(!kept[0].exists(), "the volume file is gone");
    assert_eq!(controller.json(&["volumes", "list"]), serde_json::json!([]));
    let console = std::fs::read_to_string(
        Path::new(&host_dir)
            .join("instances")
            .join(second["id"].as_str().unwrap_or_default())
            .join("console.log"),
    )
    .unwrap_or_default();
    assert!(!console.contains("Kernel panic"), "{console}");
}

/// How long an interactive step may take.
const SESSION: Duration = Duration::from_secs(30);

/// `vt exec -it` / `-i`: over the WebSocket as the CLI speaks it, then the
/// CLI itself with piped stdin, and on a pseudo-terminal (`script`).
fn interactive_sessions(controller: &Controller, token: &str) {
    // A terminal session: the size it starts with, a resize, the exit code.
    let mut s = Attach::open(
        controller,
        token,
        "app=web&tty=true&cols=80&rows=24&argv=%2Fbin%2Fsh",
    );
    s.wait("the session starts", SESSION, |s| {
        s.messages.iter().any(|m| m["type"] == "started")
    });
    s.send(b"/bin/busybox stty size\n");
    s.wait("stty prints the first size", SESSION, |s| {
        s.text().contains("24 80")
    });
    s.control(resize(123, 45));
    s.send(b"/bin/busybox stty size; echo $((6*7)); exit 3\n");
    let end = s.wait_exit(SESSION);
    assert_eq!(
        (end["code"].as_i64(), end["signal"].as_i64()),
        (Some(3), None)
    );
    let text = s.text();
    assert!(
        text.contains("45 123"),
        "the resize reached the guest: {text:?}"
    );
    assert!(text.contains("42"), "{text:?}");
    assert!(s.stderr.is_empty(), "a terminal merges stderr into stdout");

    // Going away hangs the session up: its process gets SIGHUP.
    let mut s = Attach::open(
        controller,
        token,
        "app=web&argv=%2Fbin%2Fbusybox&argv=sleep&argv=4242",
    );
    s.wait("the session starts", SESSION, |s| {
        s.messages.iter().any(|m| m["type"] == "started")
    });
    let sleeping = || {
        controller
            .cli_plain(&["exec", "web", "--", "/bin/busybox", "ps"])
            .stdout
            .contains("sleep 4242")
    };
    wait_until("the session's process runs", SESSION, || {
        sleeping().then_some(())
    });
    drop(s);
    wait_until("the hung-up process is gone", SESSION, || {
        (!sleeping()).then_some(())
    });

    // `vt exec -i`: stdin streamed, pipes, stdout and stderr apart.
    let env = |cmd: &mut std::process::Command| {
        cmd.env("VT_CONTROLLER", controller.url())
            .env("VT_CA", controller.ca())
            .env("VT_TOKEN", token);
    };
    let mut cmd = controller
        .env()
        .vt_command(Path::new("/"), &["exec", "-i", "web", "--", "/bin/sh"]);
    env(&mut cmd);
    let mut proc = controller.env().spawn_piped("vt-exec-i", cmd);
    let mut stdin = proc.stdin().expect("a stdin pipe");
    std::io::Write::write_all(&mut stdin, b"echo out; echo $((6*7)) >&2; exit 4\n")
        .expect("write stdin");
    drop(stdin);
    let status = proc.wait(SESSION);
    assert_eq!(
        (
            status.code(),
            proc.stdout().as_str(),
            proc.stderr().as_str()
        ),
        (Some(4), "out\n", "42\n")
    );

    // `vt exec -it` on a pseudo-terminal: raw keys in, SIGWINCH forwarded.
    let vt = crate::support::vt_bin().display().to_string();
    let mut cmd = controller
        .env()
        .command(Path::new("script"), Path::new("/"));
    cmd.args([
        "-qec",
        &format!("tty; exec {vt} exec -it web -- /bin/sh"),
        "/dev/null",
    ]);
    env(&mut cmd);
    let mut proc = controller.env().spawn_piped("vt-exec-it", cmd);
    let mut keys = proc.stdin().expect("a stdin pipe");
    let pty = wait_until("vt runs on a pseudo-terminal", SESSION, || {
        proc.stdout()
            .lines()
            .find(|l| l.starts_with("/dev/pts/"))
            .map(|l| l.trim().to_string())
    });
    wait_until("the guest's shell prompts", SESSION, || {
        proc.stdout().contains("# ").then_some(())
    });
    let stty = std::process::Command::new("stty")
        .args(["-F", &pty, "cols", "100", "rows", "30"])
        .status()
        .expect("run stty");
    assert!(stty.success());
    std::thread::sleep(Duration::from_millis(500));
    std::io::Write::write_all(
        &mut keys,
        b"/bin/busybox stty size; echo $((6*7)); exit 3\n",
    )
    .expect("type");
    let status = proc.wait(SESSION);
    drop(keys);
    let out = proc.stdout();
    assert_eq!(status.code(), Some(3), "{out:?}\n{}", proc.stderr());
    assert!(
        out.contains("30 100"),
        "the new size reached the guest: {out:?}"
    );
    assert!(out.contains("42"), "{out:?}");

    // Every session is in the audit trail: who, which instance, how it ended.
    let audit = controller
        .json(&["events", "--kind", "audit.exec"])
        .to_string();
    assert!(
        audit.contains("exit 3")
            && audit.contains("hung up")
            && audit.contains("\"token\":\"fleet\""),
        "{audit}"
    );
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(walk(&path));
        } else {
            out.push(path);
        }
    }
    out
}
