//! `vt dev` cold start: from the command to the sample app answering HTTP
//! on its loopback endpoint, with the split `vt dev` reports.
//!
//! A repository made by `vt init --template hello`; each of [`ROUNDS`]
//! rounds runs `vt dev --clean --runtime microvm` (no controller state, no
//! registry storage, no host image cache: everything built and booted from
//! scratch), waits for its `ready in` line, checks the page from here, and
//! stops it with SIGINT. The split: prepare (state, ports, runtime), build
//! (registry and image), start (controller, host, edge up), boot (to the
//! app's first log line: placement, pull, rootfs, qemu, vt-init, the app),
//! health (to the endpoint answering through the edge). The machine's KVM
//! probe is cached (`~/.cache/vt/accel.json`) before the rounds, as after a
//! first `vt dev`.
//!
//! Needs root, `just setup` and `just guest`. `cargo bench -p vt --bench dev_cold_start`

use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Measured cold starts.
const ROUNDS: usize = 5;
/// A start slower than this fails the benchmark.
const GIVE_UP: Duration = Duration::from_secs(180);
/// The phases of the split, in order.
const PHASES: [&str; 5] = ["prepare", "build", "start", "boot", "health"];

/// The `vt` binary cargo built for this benchmark.
fn vt() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_vt"));
    cmd.env_remove("VT_LOG")
        .env_remove("VT_OUTPUT")
        .env("NO_COLOR", "1");
    cmd
}

/// Seconds after `name ` in `line` (`boot 3.8 s`).
fn seconds(line: &str, name: &str) -> Option<f64> {
    let rest = &line[line.find(&format!("{name} "))? + name.len() + 1..];
    rest.split_whitespace().next()?.parse().ok()
}

/// One cold start: the split `vt dev` printed, and the total seen from here.
fn cold_start(repo: &Path, registry: &str) -> BTreeMap<&'static str, f64> {
    let log = repo.join("bench-dev.out");
    let started = Instant::now();
    let mut child: Child = vt()
        .current_dir(repo)
        .args([
            "dev",
            "--clean",
            "--runtime",
            "microvm",
            "--registry",
            registry,
        ])
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&log).expect("log"))
        .stderr(Stdio::null())
        .spawn()
        .expect("vt dev starts");
    let mut out = String::new();
    while !out.contains(" answers") || !out.contains("ready in ") {
        assert!(
            started.elapsed() < GIVE_UP,
            "vt dev was not ready within {GIVE_UP:?}:\n{out}"
        );
        assert!(
            child.try_wait().expect("wait").is_none(),
            "vt dev exited:\n{out}"
        );
        std::thread::sleep(Duration::from_millis(20));
        out.clear();
        std::fs::File::open(&log)
            .and_then(|mut f| f.read_to_string(&mut out))
            .expect("read the log");
    }
    let total = started.elapsed().as_secs_f64();
    let url = out
        .lines()
        .find(|l| l.ends_with(" answers"))
        .and_then(|l| l.split_whitespace().find(|w| w.starts_with("http://")))
        .expect("the endpoint's URL")
        .to_string();
    let page = ureq::get(&url)
        .timeout(Duration::from_secs(5))
        .call()
        .expect("the page")
        .into_string()
        .expect("text");
    assert!(page.contains("<h1>"), "{page}");
    let line = out
        .lines()
        .find(|l| l.contains("ready in "))
        .expect("the split");
    let mut split = BTreeMap::from([("total", total)]);
    for phase in PHASES {
        split.insert(phase, seconds(line, phase).expect("a phase's time"));
    }
    let pid = rustix::process::Pid::from_raw(child.id() as i32).expect("pid");
    rustix::process::kill_process(pid, rustix::process::Signal::INT).expect("SIGINT");
    let status = child.wait().expect("vt dev exits");
    assert!(status.success(), "vt dev stopped with {status}");
    split
}

fn median_min(values: &mut [f64]) -> (f64, f64) {
    values.sort_by(f64::total_cmp);
    (values[values.len() / 2], values[0])
}

fn main() {
    let dir = tempfile::tempdir().expect("tempdir");
    let repo = dir.path().join("hello");
    let ok = vt()
        .current_dir(dir.path())
        .args(["init", "--template", "hello", "hello"])
        .output()
        .expect("vt init");
    assert!(ok.status.success(), "{ok:?}");
    // A port of its own, in case a developer's `vt dev` holds 5055.
    let registry = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .to_string();
    let app = repo.join("orgs/hello/site/web/app.yaml");
    let text = std::fs::read_to_string(&app).expect("app.yaml");
    std::fs::write(&app, text.replace("127.0.0.1:5055", &registry)).expect("app.yaml");

    println!("warm-up (caches the KVM probe for this machine)");
    cold_start(&repo, &registry);
    let mut rounds: BTreeMap<&str, Vec<f64>> = BTreeMap::new();
    for round in 1..=ROUNDS {
        let split = cold_start(&repo, &registry);
        println!(
            "round {round}: {}",
            PHASES
                .iter()
                .chain(&["total"])
                .map(|k| format!("{k} {:.1} s", split[k]))
                .collect::<Vec<_>>()
                .join(", ")
        );
        for (phase, secs) in split {
            rounds.entry(phase).or_default().push(secs);
        }
    }
    println!("\nvt dev --clean to the sample app serving, s, median / min of {ROUNDS}:");
    for phase in PHASES.iter().chain(&["total"]) {
        let (median, min) = median_min(rounds.get_mut(phase).expect("measured"));
        println!("  {phase:<8} {median:>6.2} / {min:.2}");
    }
}
