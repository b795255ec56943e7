//! `vt diff` on a large repository: 1,000 apps × 3 envs (3,000 workloads),
//! one env's image changed in the working tree, planned against a simulated
//! fleet sized for it. Measures the whole `vt diff --against sim` process
//! (load both trees, simulate the base fleet, plan the change wave by wave,
//! predict its rollout) over [`ROUNDS`] runs. Aim: under 300 ms.
//!
//! `cargo bench -p vt --bench diff`

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

/// Apps in the generated repository; each has [`ENVS`] envs.
const APPS: usize = 1_000;
/// Envs of each app.
const ENVS: [&str; 3] = ["dev", "staging", "prod"];
/// Measured runs.
const ROUNDS: usize = 10;

fn git(dir: &Path, args: &[&str]) {
    let status = Command::new("git")
        .current_dir(dir)
        .args(["-c", "user.name=bench", "-c", "user.email=bench@localhost"])
        .args(args)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .status()
        .expect("run git");
    assert!(status.success(), "git {args:?}");
}

fn write(root: &Path, path: &str, content: &str) {
    let path = root.join(path);
    std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
    std::fs::write(path, content).expect("write");
}

/// A ULID-shaped ID for resource `n` of a kind (26 lowercase base32 chars).
fn id(prefix: &str, n: usize) -> String {
    format!("{prefix}_01jdq{n:0>21}")
}

fn generate(root: &Path) {
    write(
        root,
        "vt.yaml",
        "version: 1\nregions:\n- name: eu\n- name: us\ndefaults:\n  resources: {cpu: 100m, memory: 64Mi}\n",
    );
    write(
        root,
        "orgs/acme/org.yaml",
        &format!("id: {}\n", id("org", 1)),
    );
    write(
        root,
        "orgs/acme/shop/project.yaml",
        &format!("id: {}\n", id("prj", 1)),
    );
    for a in 0..APPS {
        let dir = format!("orgs/acme/shop/app{a}");
        write(
            root,
            &format!("{dir}/app.yaml"),
            &format!(
                "id: {}\nimage: registry.local/app{a}:1\nports: [{{name: main, port: 8080}}]\nhealth: {{type: tcp, port: main}}\n",
                id("app", a)
            ),
        );
        for (e, env) in ENVS.iter().enumerate() {
            write(
                root,
                &format!("{dir}/envs/{env}.yaml"),
                &format!(
                    "id: {}\ninstances: 1\nregions: [eu, us]\n",
                    id("env", a * 3 + e)
                ),
            );
        }
    }
    // Enough room for 6,000 instances of 100m/64Mi: 40 hosts per region.
    let mut topology = String::from("hosts:\n");
    for region in ["eu", "us"] {
        for h in 0..40 {
            topology +=
                &format!("- {{name: {region}-{h}, region: {region}, cpu: \"16\", memory: 32Gi}}\n");
        }
    }
    write(root, "topology.yaml", &topology);
}

fn main() {
    let dir = std::env::temp_dir().join(format!("vt-bench-diff-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("mkdir");
    generate(&dir);
    git(&dir, &["init", "-q", "-b", "main"]);
    git(&dir, &["add", "-A"]);
    git(&dir, &["commit", "-q", "-m", "1,000 apps"]);
    let env_file = dir.join("orgs/acme/shop/app7/app.yaml");
    let text = std::fs::read_to_string(&env_file).expect("read");
    std::fs::write(&env_file, text.replace("app7:1", "app7:2")).expect("write");

    let run = || {
        let start = Instant::now();
        let out = Command::new(env!("CARGO_BIN_EXE_vt"))
            .current_dir(&dir)
            .args(["diff", "--against", "sim", "--topology", "topology.yaml"])
            .env_remove("VT_CONTROLLER")
            .output()
            .expect("run vt diff");
        let took = start.elapsed();
        assert_eq!(
            out.status.code(),
            Some(1),
            "vt diff found the change: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        took
    };
    run();
    let mut times: Vec<Duration> = (0..ROUNDS).map(|_| run()).collect();
    times.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "vt diff, {APPS} apps × {} envs (one image changed), against a simulated fleet of 80 hosts: median {:.0} ms, min {:.0} ms, max {:.0} ms over {ROUNDS} runs (aim: < 300 ms)",
        ENVS.len(),
        ms(times[ROUNDS / 2]),
        ms(times[0]),
        ms(times[ROUNDS - 1])
    );
    let _ = std::fs::remove_dir_all(&dir);
}
