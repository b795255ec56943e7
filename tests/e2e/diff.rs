//! `vt diff` on the changes people make, against a simulated fleet:
//! replicas, image, port and volume. The whole text output is compared with
//! a snapshot in `tests/e2e/snapshots/` (IDs, hashes and commit SHAs
//! redacted); `VT_UPDATE_SNAPSHOTS=1` rewrites them. Exit codes: 0 for no
//! changes, 1 for changes, 3 for an invalid change.

use crate::support::repo::{Repo, APP_FILE, ENV_FILE};
use crate::support::Sandbox;
use std::path::Path;

/// Replaces what differs between runs: IDs, hex hashes, the sandbox path.
fn redact(text: &str, sandbox: &Path) -> String {
    let text = text.replace(&sandbox.display().to_string(), "<sandbox>");
    let mut out = String::new();
    let mut word = String::new();
    let flush = |word: &mut String, out: &mut String| {
        let is_hex = word.len() >= 12 && word.chars().all(|c| c.is_ascii_hexdigit());
        let is_id = ["org_", "prj_", "app_", "env_"]
            .iter()
            .any(|p| word.starts_with(p) && word.len() == 30);
        out.push_str(if is_hex {
            "<hash>"
        } else if is_id {
            "<id>"
        } else {
            word
        });
        word.clear();
    };
    for c in text.chars() {
        if c.is_ascii_alphanumeric() || c == '_' {
            word.push(c);
        } else {
            flush(&mut word, &mut out);
            out.push(c);
        }
    }
    flush(&mut word, &mut out);
    out
}

fn check_snapshot(name: &str, actual: &str) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("e2e/snapshots")
        .join(format!("{name}.txt"));
    if std::env::var_os("VT_UPDATE_SNAPSHOTS").is_some() {
        std::fs::write(&path, actual).expect("write the snapshot");
        return;
    }
    let expected = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "no snapshot {} ({e}); run with VT_UPDATE_SNAPSHOTS=1",
            path.display()
        )
    });
    assert_eq!(
        actual,
        expected,
        "`vt diff` output differs from {} (VT_UPDATE_SNAPSHOTS=1 rewrites it)",
        path.display()
    );
}

/// `vt diff --against sim` in the repository; checks the exit code and the snapshot.
fn diff(sb: &Sandbox, repo: &Repo, name: &str, code: i32) -> String {
    let out = sb.env().vt(repo.path(), &["diff", "--against", "sim"]);
    assert_eq!(out.code, code, "exit code of `vt diff` ({name}):\n{out}");
    let text = redact(&out.stdout, sb.path());
    check_snapshot(name, &text);
    text
}

#[test]
fn diff_shows_each_kind_of_change_with_its_actions_and_exit_code() {
    let sb = Sandbox::new();
    let repo = Repo::init(&sb, "repo");
    repo.add_web(2, "");
    repo.commit("web");

    let same = diff(&sb, &repo, "diff_none", 0);
    assert!(same.contains("no changes"), "{same}");

    // Replicas: 2 → 3 starts one instance, in place.
    repo.replace(ENV_FILE, "instances: 2", "instances: 3");
    let replicas = diff(&sb, &repo, "diff_replicas", 1);
    assert!(replicas.contains("~ instances: 2 → 3"), "{replicas}");
    assert!(replicas.contains("1 to start, 0 to stop"), "{replicas}");
    repo.git(&["checkout", "--", "."]);

    // Image: every instance replaced, one at a time (surge 1), no downtime.
    repo.replace(APP_FILE, "registry.local/web:1", "registry.local/web:2");
    let image = diff(&sb, &repo, "diff_image", 1);
    assert!(
        image.contains("2 to start, 2 to stop, 2 replaced"),
        "{image}"
    );
    assert!(!image.contains("downtime"), "{image}");
    assert!(image.contains("rolled out after"), "{image}");
    repo.git(&["checkout", "--", "."]);

    // Port and endpoint: a new endpoint, instances replaced.
    repo.replace(APP_FILE, "port: 8080", "port: 9090");
    repo.append(
        APP_FILE,
        "endpoints:\n- name: http\n  port: 80\n  target: main\n",
    );
    let port = diff(&sb, &repo, "diff_port", 1);
    assert!(port.contains("~ ports[main].port: 8080 → 9090"), "{port}");
    assert!(port.contains("+ endpoint http :80"), "{port}");
    repo.git(&["checkout", "--", "."]);

    // Volume, with an immediate rollout: volumes created, downtime warned of.
    repo.append(
        APP_FILE,
        "volumes:\n- name: data\n  size: 1Gi\n  mount: /data\nrollout:\n  strategy: immediate\n",
    );
    let volume = diff(&sb, &repo, "diff_volume", 1);
    assert!(volume.contains("+ volume data slot 0"), "{volume}");
    assert!(
        volume.contains("warning:") && volume.contains("downtime"),
        "{volume}"
    );

    // JSON has it all as data, with the base commit and the observed hash.
    let json = sb
        .env()
        .vt(repo.path(), &["diff", "--against", "sim", "-o", "json"]);
    assert_eq!(json.code, 1);
    let v = json.json();
    assert_eq!(v["against"], "sim");
    assert_eq!(v["plan"]["base_commit"].as_str().map(str::len), Some(40));
    assert_eq!(v["plan"]["observed_hash"].as_str().map(str::len), Some(64));
    assert!(v["plan"]["waves"].as_array().is_some_and(|w| !w.is_empty()));
    assert!(v["timeline"]["moments"]
        .as_array()
        .is_some_and(|m| !m.is_empty()));

    // Against `vt dev`'s hosts (its dev.json): without one, a clear error.
    let no_dev = sb.env().vt(repo.path(), &["diff", "--against", "dev"]);
    assert_eq!(no_dev.code, 4, "{no_dev}");
    assert!(no_dev.stderr.contains("run `vt dev`"), "{no_dev}");
    repo.write(
        ".vt/dev/dev.json",
        r#"{"controller": "http://127.0.0.1:1", "token": "t", "runtime": "sim",
            "hosts": [{"name": "dev-1", "region": "local", "cpu": "2", "memory": "2Gi"}]}"#,
    );
    let dev = sb.env().vt(repo.path(), &["diff", "--against", "dev"]);
    assert_eq!(dev.code, 1, "{dev}");
    assert!(dev.stdout.contains("against dev"), "{dev}");
    assert!(
        dev.stdout.contains("slot 0 of acme/shop/web/prod on dev-1"),
        "{dev}"
    );

    // A committed range compares two revisions, ignoring the working tree.
    repo.commit("volume");
    let range = sb
        .env()
        .vt(repo.path(), &["diff", "HEAD~1..HEAD", "--against", "sim"]);
    assert_eq!(range.code, 1, "{range}");
    assert!(range.stdout.contains("+ volume data"), "{range}");

    // An invalid change: exit 3, file and line named.
    repo.append(ENV_FILE, "instances: lots\n");
    let bad = sb.env().vt(repo.path(), &["diff", "--against", "sim"]);
    assert_eq!(bad.code, 3, "{bad}");
    assert!(bad.stderr.contains("prod.yaml"), "{bad}");
}
