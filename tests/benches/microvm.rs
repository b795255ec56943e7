//! Host benchmarks of the microVM runtime, on real processes: a loopback
//! `docker-registry` holding a busybox httpd image, `vt fleet run`, and
//! `vt host run --runtime microvm --accel tcg` (KVM cannot boot a guest on the
//! nested machine these figures come from; `auto` would only add a failing
//! 10 s KVM probe to every host start). Release builds of everything.
//!
//! 1. **Assignment → healthy** of one instance (128Mi, TCP health check),
//!    split by the host agent's own log (`VT_LOG=info`, timestamped lines):
//!    "pulling" (the supervisor starts: the assignment has arrived) →
//!    "building the root filesystem" → "booting" (qemu starts) → "app started"
//!    (its `boot_ms`) → `Healthy`; the boot is split where the benchmark,
//!    polling the instance's `console.log` every 20 ms, sees
//!    `vt-init: channel`. Cold: a fresh controller and host, empty image cache.
//!    Warm: the same host, a new release (new instance, cached image and
//!    rootfs). [`ROUNDS`] of each.
//! 2. **Bare boot**: the same kernel and initramfs under a plain
//!    `qemu-system-x86_64 -M microvm` (the runtime's own [`LaunchSpec::args`]),
//!    a 1 MiB empty rootfs and no network, until vt-init prints
//!    `vt-init: channel` on the serial console file. One before each cold and
//!    warm start, so both see the same load (alone: [`BARE_BOOTS`] of them).
//! 3. **Memory**: VmRSS (and RssAnon) of the `vt host run` process with 0 to
//!    3 instances running (scaled by commits; the app rolls out `immediate`,
//!    as a scale is a new release), and of each qemu process.
//! 4. **Throughput**: from 0 to [`BURST`] instances in one commit, until all
//!    are healthy; [`BURST_ROUNDS`] times.
//!
//! Scenarios can be picked by name: `cargo bench -p vt-tests --bench microvm
//! -- starts bare scale` (all three by default). Figures are medians and mins:
//! the machine is shared and noisy.
//!
//! Every process started here is killed when its guard drops (the host agent
//! first gets SIGTERM so it stops its VMs and removes their TAP devices; any
//! qemu or TAP left after that is removed by pid file and name).
//!
//! Needs `just setup` and `just guest`, and `target/release/vt`
//! (`just bench` builds it). `cargo bench -p vt-tests --bench microvm`

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use vt_host::image::testing::{build_image, push, require, Registry};
use vt_host::image::ImageConfig;
use vt_host::microvm::artifacts::{self, guest_dir, GuestArtifacts};
use vt_host::microvm::launch::{host_tsc_khz, Accel, LaunchSpec};
use vt_host::microvm::network::tap_name;

/// Cold starts (each on a fresh controller and host), each followed by a warm one.
const ROUNDS: usize = 5;
/// Bare qemu boots.
const BARE_BOOTS: usize = 5;
/// Instances started at once for the throughput figure.
const BURST: usize = 4;
/// Times the burst is measured.
const BURST_ROUNDS: usize = 3;
/// Memory of each instance.
const MEMORY: &str = "128Mi";
/// The same, for the bare boots.
const MEMORY_MIB: u64 = 128;
/// Anything slower than this fails the benchmark.
const GIVE_UP: Duration = Duration::from_secs(150);
/// The org: its own IPv6 /48, apart from the tests' `acme`.
const ORG: &str = "vtbench";
const ENV_FILE: &str = "orgs/vtbench/shop/web/envs/prod.yaml";
const APP_FILE: &str = "orgs/vtbench/shop/web/app.yaml";
/// What vt-init prints on the serial console once its channel device is open.
const CHANNEL_LINE: &str = "vt-init: channel";

// ---------------------------------------------------------------------------
// Processes

/// A child process with its output in files; on drop it gets SIGTERM, up to
/// `grace` to exit, then SIGKILL, and is reaped.
struct Proc {
    name: String,
    child: Child,
    stdout: PathBuf,
    stderr: PathBuf,
    grace: Duration,
    exited: bool,
}

impl Proc {
    fn spawn(name: &str, mut cmd: Command, logs: &Path, grace: Duration) -> Proc {
        std::fs::create_dir_all(logs).expect("create the log directory");
        let stdout = logs.join(format!("{name}.out"));
        let stderr = logs.join(format!("{name}.err"));
        cmd.stdin(Stdio::null())
            .stdout(File::create(&stdout).expect("create the stdout file"))
            .stderr(File::create(&stderr).expect("create the stderr file"));
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name} ({cmd:?}): {e}"));
        Proc {
            name: name.into(),
            child,
            stdout,
            stderr,
            grace,
            exited: false,
        }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn stdout(&self) -> String {
        std::fs::read_to_string(&self.stdout).unwrap_or_default()
    }

    fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    fn running(&mut self) -> bool {
        if !self.exited {
            self.exited = self.child.try_wait().ok().flatten().is_some();
        }
        !self.exited
    }

    /// Panics, with the end of its stderr, if it has exited.
    fn check_alive(&mut self) {
        if !self.running() {
            panic!(
                "{} exited early:\n{}",
                self.name,
                last_lines(&self.stderr(), 30)
            );
        }
    }

    fn stop(&mut self) {
        if !self.running() {
            return;
        }
        if !self.grace.is_zero() {
            let _ = Command::new("kill")
                .args(["-TERM", &self.pid().to_string()])
                .status();
            let start = Instant::now();
            while start.elapsed() < self.grace && self.running() {
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        if self.running() {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
        self.exited = true;
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.stop();
    }
}

fn last_lines(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// The release `vt` next to this benchmark (`target/release/deps/microvm-*`).
fn vt_bin() -> PathBuf {
    let exe = std::env::current_exe().expect("the benchmark's path");
    let vt = exe
        .parent()
        .and_then(Path::parent)
        .map(|dir| dir.join("vt"))
        .expect("a target directory");
    assert!(
        vt.is_file(),
        "{} is not built: run `cargo build --release -p vt` (`just bench` does)",
        vt.display()
    );
    vt
}

/// The environment of every process: nothing of the developer's but PATH.
struct Env {
    home: PathBuf,
    logs: PathBuf,
    guest: PathBuf,
}

impl Env {
    fn command(&self, program: &Path, cwd: &Path) -> Command {
        let mut cmd = Command::new(program);
        cmd.current_dir(cwd)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", &self.home)
            .env("XDG_CONFIG_HOME", self.home.join(".config"))
            .env("NO_COLOR", "1")
            .env("VT_GUEST_DIR", &self.guest)
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("GIT_CONFIG_GLOBAL", "/dev/null")
            .env("GIT_AUTHOR_NAME", "bench")
            .env("GIT_AUTHOR_EMAIL", "bench@example.com")
            .env("GIT_COMMITTER_NAME", "bench")
            .env("GIT_COMMITTER_EMAIL", "bench@example.com");
        cmd
    }

    fn run(&self, mut cmd: Command) -> String {
        let out = cmd.output().expect("the command runs");
        assert!(
            out.status.success(),
            "{cmd:?} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn vt(&self, cwd: &Path, args: &[&str]) -> String {
        let mut cmd = self.command(&vt_bin(), cwd);
        cmd.args(args);
        self.run(cmd)
    }

    fn commit(&self, repo: &Path, message: &str) -> SystemTime {
        let mut add = self.command(Path::new("git"), repo);
        add.args(["add", "-A"]);
        self.run(add);
        let mut commit = self.command(Path::new("git"), repo);
        commit.args(["-c", "commit.gpgsign=false", "commit", "-q", "-m", message]);
        let at = SystemTime::now();
        self.run(commit);
        at
    }
}

// ---------------------------------------------------------------------------
// The host agent's log

/// Unix time in ms of an RFC 3339 UTC timestamp (`2025-11-26T10:33:01.123456Z`).
fn parse_time(stamp: &str) -> Option<f64> {
    let (date, time) = stamp.trim_end_matches('Z').split_once('T')?;
    let mut d = date.split('-').map(|p| p.parse::<i64>().ok());
    let (y, m, day) = (d.next()??, d.next()??, d.next()??);
    let mut t = time.split(':');
    let (h, min) = (
        t.next()?.parse::<f64>().ok()?,
        t.next()?.parse::<f64>().ok()?,
    );
    let s = t.next()?.parse::<f64>().ok()?;
    // Days from civil (Howard Hinnant).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(((days as f64 * 86_400.0) + h * 3600.0 + min * 60.0 + s) * 1000.0)
}

fn unix_ms(t: SystemTime) -> f64 {
    t.duration_since(UNIX_EPOCH)
        .expect("after 1970")
        .as_secs_f64()
        * 1000.0
}

/// One instance's milestones in the host log (Unix ms).
#[derive(Debug, Default, Clone)]
struct Milestones {
    pulling: Option<f64>,
    rootfs: Option<f64>,
    booting: Option<f64>,
    /// When the benchmark saw `vt-init: channel` in the instance's console.log.
    channel: Option<f64>,
    started: Option<f64>,
    boot_ms: Option<f64>,
    healthy: Option<f64>,
    stopped: Option<f64>,
    failed: Option<String>,
}

/// The value of `key=` in a log line, up to the next space or `}`.
fn field<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    let at = line.find(key)? + key.len();
    let rest = &line[at..];
    Some(&rest[..rest.find([' ', '}']).unwrap_or(rest.len())])
}

/// Whether the line's `detail` (quoted when it has spaces) starts with `text`.
fn detail_starts(line: &str, text: &str) -> bool {
    line.contains(&format!("detail={text}")) || line.contains(&format!("detail=\"{text}"))
}

/// Milestones of every instance in a host agent's stderr.
fn milestones(log: &str) -> BTreeMap<String, Milestones> {
    let mut out: BTreeMap<String, Milestones> = BTreeMap::new();
    for line in log.lines() {
        let Some(id) = field(line, "instance{instance=") else {
            continue;
        };
        let Some(at) = line.split_whitespace().next().and_then(parse_time) else {
            continue;
        };
        let m = out.entry(id.to_string()).or_default();
        if detail_starts(line, "pulling") {
            m.pulling.get_or_insert(at);
        } else if detail_starts(line, "building the root filesystem") {
            m.rootfs.get_or_insert(at);
        } else if detail_starts(line, "booting") {
            m.booting.get_or_insert(at);
        } else if line.contains("app started") {
            m.started.get_or_insert(at);
            m.boot_ms = field(line, "boot_ms=").and_then(|v| v.parse().ok());
        } else if line.contains("phase=Healthy") {
            m.healthy.get_or_insert(at);
        } else if line.contains("phase=Stopped") {
            m.stopped.get_or_insert(at);
        } else if line.contains("phase=Failed") || line.contains("restarting") {
            m.failed = Some(line.to_string());
        }
    }
    out
}

// ---------------------------------------------------------------------------
// A fleet: repository, controller, one microVM host

struct Stack {
    host: Proc,
    host_dir: PathBuf,
    host_name: String,
    controller: Proc,
    repo: PathBuf,
    env_head: String,
    env: Env,
    /// When `vt-init: channel` first appeared in each instance's console.log (Unix ms).
    channel: BTreeMap<String, f64>,
    /// Removed last, once every process is gone.
    dir: tempfile::TempDir,
}

impl Stack {
    /// A repository whose app (`image`, 128Mi, TCP health check on 8080) has
    /// one env with 0 instances, a controller on it and a host, registered.
    /// `app_extra` is appended to the app file.
    fn start(image: &str, host_name: &str, app_extra: &str) -> Stack {
        let dir = tempfile::Builder::new()
            .prefix("vt-bench-")
            .tempdir()
            .expect("a temporary directory");
        let root = dir.path().to_path_buf();
        let env = Env {
            home: root.join("home"),
            logs: root.join("logs"),
            guest: guest_dir(),
        };
        std::fs::create_dir_all(env.home.join(".config")).expect("HOME");
        let repo = root.join("repo");
        env.vt(&root, &["init", "repo"]);
        env.vt(&repo, &["org", "create", ORG]);
        env.vt(&repo, &["project", "create", "shop"]);
        env.vt(
            &repo,
            &["app", "create", "web", "--image", image, "--port", "8080"],
        );
        let app = repo.join(APP_FILE);
        let mut text = std::fs::read_to_string(&app).expect("read the app file");
        text.push_str(&format!("resources:\n  memory: {MEMORY}\n{app_extra}"));
        std::fs::write(&app, text).expect("write the app file");
        env.vt(
            &repo,
            &["env", "create", "prod", "--app", "web", "--instances", "0"],
        );
        let env_text = std::fs::read_to_string(repo.join(ENV_FILE)).expect("read the env file");
        let env_head = env_text
            .lines()
            .find(|l| l.starts_with("id:"))
            .expect("the env file has an id")
            .to_string();
        env.commit(&repo, "web, no instances yet");

        let fleet = root.join("fleet").display().to_string();
        let repo_arg = repo.display().to_string();
        env.vt(
            &root,
            &[
                "fleet",
                "init",
                &repo_arg,
                "--state-dir",
                &fleet,
                "--quic",
                "127.0.0.1:0",
                "--http",
                "127.0.0.1:0",
                "-o",
                "json",
            ],
        );
        let mut cmd = env.command(&vt_bin(), &root);
        cmd.args(["fleet", "run", "--state-dir", &fleet]);
        let mut controller = Proc::spawn("controller", cmd, &env.logs, Duration::from_secs(5));
        let quic = wait("the controller listens", Duration::from_secs(20), || {
            controller.check_alive();
            let out = controller.stdout();
            let line = out.lines().find(|l| l.starts_with("vt controller: "))?;
            Some(line.split("quic ").nth(1)?.split(',').next()?.to_string())
        });
        let token: serde_json::Value = serde_json::from_str(&env.vt(
            &root,
            &[
                "fleet",
                "token",
                "create",
                "--role",
                "host",
                "--ttl",
                "10m",
                "--state-dir",
                &fleet,
                "-o",
                "json",
            ],
        ))
        .expect("the token as JSON");
        let token = token["token"].as_str().expect("a token").to_string();

        let host_dir = root.join("host");
        let mut cmd = env.command(&vt_bin(), &root);
        cmd.args([
            "host",
            "run",
            "--controller",
            &quic,
            "--token",
            &token,
            "--name",
            host_name,
            "--state-dir",
            &host_dir.display().to_string(),
            "--cpu",
            "2",
            "--memory",
            "2Gi",
            "--runtime",
            "microvm",
            "--accel",
            "tcg",
        ])
        .env("VT_LOG", "info");
        // SIGTERM: the agent stops its VMs (up to 20 s) and removes their TAPs.
        let mut host = Proc::spawn("host", cmd, &env.logs, Duration::from_secs(30));
        wait("the host registers", Duration::from_secs(30), || {
            host.check_alive();
            host.stderr()
                .contains("registered with the controller")
                .then_some(())
        });
        Stack {
            host,
            host_dir,
            host_name: host_name.into(),
            controller,
            repo,
            env_head,
            env,
            channel: BTreeMap::new(),
            dir,
        }
    }

    /// Commits `instances: n` (and `extra` env file lines); returns when `git commit` started.
    fn commit(&self, n: usize, extra: &str) -> SystemTime {
        let text = format!("{}\ninstances: {n}\n{extra}", self.env_head);
        std::fs::write(self.repo.join(ENV_FILE), text).expect("write the env file");
        self.env.commit(&self.repo, &format!("{n} instances"))
    }

    /// The host log's milestones, with the console's `vt-init: channel`
    /// times seen so far. Checks for new ones first: call it often while
    /// instances boot (every 20 ms, in the waits).
    fn milestones(&mut self) -> BTreeMap<String, Milestones> {
        let dirs = std::fs::read_dir(self.host_dir.join("instances")).into_iter();
        for entry in dirs.flatten().flatten() {
            let id = entry.file_name().to_string_lossy().into_owned();
            if !self.channel.contains_key(&id)
                && std::fs::read_to_string(entry.path().join("console.log"))
                    .is_ok_and(|c| c.contains(CHANNEL_LINE))
            {
                self.channel.insert(id, unix_ms(SystemTime::now()));
            }
        }
        let mut all = milestones(&self.host.stderr());
        for (id, m) in &mut all {
            m.channel = self.channel.get(id).copied();
        }
        all
    }

    /// Waits until `n` instances not in `known` are healthy; returns them.
    fn wait_healthy(&mut self, known: &BTreeSet<String>, n: usize) -> Vec<(String, Milestones)> {
        wait(&format!("{n} new instances are healthy"), GIVE_UP, || {
            self.host.check_alive();
            let all = self.milestones();
            for (id, m) in &all {
                if let Some(line) = &m.failed {
                    panic!(
                        "instance {id} failed: {line}\n{}",
                        last_lines(&self.host.stderr(), 30)
                    );
                }
            }
            let new: Vec<_> = all
                .into_iter()
                .filter(|(id, m)| !known.contains(id) && m.healthy.is_some())
                .collect();
            (new.len() >= n).then_some(new)
        })
    }

    /// Waits until exactly `n` instances run, all healthy, the others stopped.
    fn wait_steady(&mut self, n: usize) {
        wait(
            &format!("{n} healthy instances and no others"),
            GIVE_UP,
            || {
                self.host.check_alive();
                let all = self.milestones();
                if let Some((id, m)) = all.iter().find(|(_, m)| m.failed.is_some()) {
                    panic!("instance {id} failed: {:?}", m.failed);
                }
                let live: Vec<_> = all.values().filter(|m| m.stopped.is_none()).collect();
                (live.len() == n && live.iter().all(|m| m.healthy.is_some())).then_some(())
            },
        );
    }

    /// Waits until every instance the host has run has stopped.
    fn wait_all_stopped(&mut self) {
        wait("every instance stopped", GIVE_UP, || {
            self.host.check_alive();
            self.milestones()
                .values()
                .all(|m| m.stopped.is_some())
                .then_some(())
        });
    }

    /// The pids of the VMs running now (`instances/*/qemu.pid`).
    fn qemu_pids(&self) -> Vec<u32> {
        let mut pids = Vec::new();
        let dirs = std::fs::read_dir(self.host_dir.join("instances")).into_iter();
        for entry in dirs.flatten().flatten() {
            let pid = std::fs::read_to_string(entry.path().join("qemu.pid"))
                .ok()
                .and_then(|p| p.trim().parse::<u32>().ok());
            let Some(pid) = pid else { continue };
            let ours = std::fs::read(format!("/proc/{pid}/cmdline"))
                .map(|c| String::from_utf8_lossy(&c).into_owned())
                .is_ok_and(|c| {
                    c.contains("qemu-system") && c.contains(&*self.host_dir.to_string_lossy())
                });
            if ours {
                pids.push(pid);
            }
        }
        pids
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        self.host.stop();
        // Whatever the agent could not clean up (it was killed, or timed out).
        for pid in self.qemu_pids() {
            let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
        }
        let dirs = std::fs::read_dir(self.host_dir.join("instances")).into_iter();
        for entry in dirs.flatten().flatten() {
            let tap = tap_name(&self.host_name, &entry.file_name().to_string_lossy());
            if Path::new("/sys/class/net").join(&tap).exists() {
                let _ = Command::new("ip").args(["link", "del", &tap]).status();
            }
        }
        self.controller.stop();
        if std::thread::panicking() || std::env::var_os("VT_BENCH_KEEP").is_some() {
            eprintln!("kept {}", self.dir.path().display());
            self.dir.disable_cleanup(true);
        }
    }
}

/// Calls `check` every 20 ms until it returns `Some`; panics after `timeout`.
fn wait<T>(what: &str, timeout: Duration, mut check: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = check() {
            return v;
        }
        assert!(
            start.elapsed() < timeout,
            "timed out after {timeout:?} waiting until {what}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

// ---------------------------------------------------------------------------
// Figures

/// The median, ignoring NaNs (NaN if there is nothing else).
fn median(values: &[f64]) -> f64 {
    let mut v: Vec<f64> = values.iter().copied().filter(|v| !v.is_nan()).collect();
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

/// The minimum, ignoring NaNs (NaN if there is nothing else).
fn min(values: &[f64]) -> f64 {
    values
        .iter()
        .copied()
        .filter(|v| !v.is_nan())
        .reduce(f64::min)
        .unwrap_or(f64::NAN)
}

/// One start, in ms.
#[derive(Debug, Clone, Copy)]
struct Start {
    commit_to_assigned: f64,
    pull: f64,
    rootfs: f64,
    /// qemu starts → `vt-init: channel` on the console (NaN if not seen).
    to_channel: f64,
    boot: f64,
    health: f64,
    total: f64,
    commit_to_healthy: f64,
}

fn start_of(m: &Milestones, commit: SystemTime) -> Start {
    let get = |v: Option<f64>, what: &str| v.unwrap_or_else(|| panic!("no `{what}` in {m:?}"));
    let pulling = get(m.pulling, "pulling");
    let rootfs = get(m.rootfs, "building the root filesystem");
    let booting = get(m.booting, "booting");
    let started = get(m.started, "app started");
    let healthy = get(m.healthy, "Healthy");
    Start {
        commit_to_assigned: pulling - unix_ms(commit),
        pull: rootfs - pulling,
        rootfs: booting - rootfs,
        to_channel: m.channel.map_or(f64::NAN, |c| c - booting),
        boot: m.boot_ms.unwrap_or(started - booting),
        health: healthy - started,
        total: healthy - pulling,
        commit_to_healthy: healthy - unix_ms(commit),
    }
}

fn start_row(name: &str, starts: &[Start]) -> String {
    let col = |f: fn(&Start) -> f64| {
        let v: Vec<f64> = starts.iter().map(f).collect();
        format!("{:.0} / {:.0}", median(&v), min(&v))
    };
    format!(
        "| {name} (n={}) | {} | {} | {} | {} | {} | {} | {} | **{}** | {} |",
        starts.len(),
        col(|s| s.commit_to_assigned),
        col(|s| s.pull),
        col(|s| s.rootfs),
        col(|s| s.to_channel),
        col(|s| s.boot - s.to_channel),
        col(|s| s.boot),
        col(|s| s.health),
        col(|s| s.total),
        col(|s| s.commit_to_healthy),
    )
}

/// Resident memory of a process, KiB.
#[derive(Debug, Clone, Copy)]
struct Mem {
    /// VmRSS: all resident pages, shared file pages (binary, libraries) included.
    rss: f64,
    /// RssAnon: its private memory (for qemu, the guest's RAM it touched too).
    anon: f64,
}

fn mem(pid: u32) -> Mem {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let get = |key: &str| {
        status
            .lines()
            .find(|l| l.starts_with(key))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(f64::NAN)
    };
    Mem {
        rss: get("VmRSS:"),
        anon: get("RssAnon:"),
    }
}

fn mib(kib: f64) -> f64 {
    kib / 1024.0
}

// ---------------------------------------------------------------------------
// The scenarios

/// Cold and warm starts, one cold and one warm per fresh stack.
/// With `bare`, a bare boot before each start, so both see the same load.
fn starts(image: &str, mut bare: Option<&mut Bare>) -> (Vec<Start>, Vec<Start>, Vec<f64>) {
    let (mut cold, mut warm, mut bares) = (Vec::new(), Vec::new(), Vec::new());
    for round in 0..ROUNDS {
        let mut stack = Stack::start(image, &format!("vtbench-s{round}"), "");
        if let Some(bare) = bare.as_deref_mut() {
            bares.push(bare.boot());
        }
        let commit = stack.commit(1, "");
        let first = stack.wait_healthy(&BTreeSet::new(), 1);
        cold.push(start_of(&first[0].1, commit));
        let known: BTreeSet<String> = first.iter().map(|(id, _)| id.clone()).collect();
        if let Some(bare) = bare.as_deref_mut() {
            bares.push(bare.boot());
        }
        // A new release: a new instance, the image and rootfs cached.
        let commit = stack.commit(1, &format!("env:\n  ROUND: '{round}'\n"));
        let second = stack.wait_healthy(&known, 1);
        warm.push(start_of(&second[0].1, commit));
        stack.wait_all_but_one_stopped();
        eprintln!(
            "round {round}: cold {:.0} ms, warm {:.0} ms (assignment → healthy)",
            cold[round].total, warm[round].total
        );
    }
    (cold, warm, bares)
}

impl Stack {
    /// Waits until at most one instance has not stopped (after a replacement).
    fn wait_all_but_one_stopped(&mut self) {
        wait("the replaced instance stopped", GIVE_UP, || {
            self.host.check_alive();
            let running = self
                .milestones()
                .values()
                .filter(|m| m.stopped.is_none())
                .count();
            (running <= 1).then_some(())
        });
    }
}

/// Bare qemu boots of the runtime's kernel and initramfs: its own command
/// line ([`LaunchSpec::args`]) with a 1 MiB empty rootfs and no network.
struct Bare {
    qemu: PathBuf,
    guest: GuestArtifacts,
    scratch: tempfile::TempDir,
    boots: usize,
}

impl Bare {
    fn new(guest: &GuestArtifacts) -> Bare {
        let scratch = tempfile::Builder::new()
            .prefix("vt-bench-bare-")
            .tempdir()
            .expect("a temporary directory");
        File::create(scratch.path().join("empty.img"))
            .and_then(|f| f.set_len(1 << 20))
            .expect("an empty rootfs");
        Bare {
            qemu: artifacts::qemu().expect("qemu-system-x86_64 (just setup)"),
            guest: guest.clone(),
            scratch,
            boots: 0,
        }
    }

    /// One boot: ms from starting qemu until vt-init prints `vt-init: channel`.
    fn boot(&mut self) -> f64 {
        let i = self.boots;
        self.boots += 1;
        let dir = self.scratch.path();
        let console = dir.join(format!("console-{i}.log"));
        let spec = LaunchSpec {
            qemu: self.qemu.clone(),
            kernel: self.guest.kernel.clone(),
            initramfs: self.guest.initramfs.clone(),
            accel: Accel::Tcg,
            vcpus: 1,
            memory_mib: MEMORY_MIB,
            rootfs: dir.join("empty.img"),
            volumes: Vec::new(),
            tap: None,
            mac: "52:54:00:00:00:98".into(),
            channel: dir.join(format!("channel-{i}.sock")),
            console: console.clone(),
            tsc_khz: host_tsc_khz(),
        };
        let mut cmd = Command::new(&self.qemu);
        cmd.args(spec.args());
        let start = Instant::now();
        let mut vm = Proc::spawn(&format!("qemu-{i}"), cmd, &dir.join("logs"), Duration::ZERO);
        let took = wait("vt-init opens its channel", GIVE_UP, || {
            vm.check_alive();
            std::fs::read_to_string(&console)
                .is_ok_and(|c| c.contains(CHANNEL_LINE))
                .then(|| start.elapsed())
        });
        drop(vm);
        let ms = took.as_secs_f64() * 1000.0;
        eprintln!("bare boot {i}: {ms:.0} ms");
        ms
    }
}

/// Agent and qemu RSS (KiB) with 0..=3 instances, then the bursts (ms to all healthy).
struct Scale {
    agent: Vec<Mem>,
    qemu: Vec<Vec<Mem>>,
    bursts: Vec<f64>,
    burst_each: Vec<f64>,
    /// Back at 0 instances, after the 3.
    agent_idle_again: Mem,
    agent_after_burst: Mem,
    qemu_after_burst: Vec<Mem>,
}

fn scale(image: &str) -> Scale {
    // A scale is a new release: replace at once rather than one by one.
    let mut stack = Stack::start(image, "vtbench-m", "rollout:\n  strategy: immediate\n");
    let settle = || std::thread::sleep(Duration::from_secs(2));
    settle();
    let mut agent = vec![mem(stack.host.pid())];
    let mut qemu = vec![Vec::new()];
    for n in 1..=3 {
        stack.commit(n, "");
        stack.wait_steady(n);
        settle();
        agent.push(mem(stack.host.pid()));
        qemu.push(stack.qemu_pids().into_iter().map(mem).collect());
        eprintln!("{n} instances: agent {:.1} MiB", mib(agent[n].rss));
    }
    let mut bursts = Vec::new();
    let mut burst_each = Vec::new();
    let mut agent_idle_again = agent[0];
    for round in 0..BURST_ROUNDS {
        stack.commit(0, "");
        stack.wait_all_stopped();
        if round == 0 {
            settle();
            agent_idle_again = mem(stack.host.pid());
        }
        let known: BTreeSet<String> = stack.milestones().into_keys().collect();
        let commit = stack.commit(BURST, "");
        let healthy = stack.wait_healthy(&known, BURST);
        let starts: Vec<Start> = healthy.iter().map(|(_, m)| start_of(m, commit)).collect();
        let last = starts
            .iter()
            .map(|s| s.commit_to_healthy)
            .fold(0.0, f64::max);
        burst_each.extend(starts.iter().map(|s| s.total));
        eprintln!("{BURST} instances healthy {last:.0} ms after the commit");
        bursts.push(last);
    }
    settle();
    let agent_after_burst = mem(stack.host.pid());
    let qemu_after_burst = stack.qemu_pids().into_iter().map(mem).collect();
    Scale {
        agent,
        qemu,
        bursts,
        burst_each,
        agent_idle_again,
        agent_after_burst,
        qemu_after_burst,
    }
}

/// The image: busybox's httpd on [::]:8080, pushed to `registry` as `web:1`.
/// Returns its reference and compressed size.
fn image(registry: &Registry, scratch: &Path) -> (String, u64) {
    let root = scratch.join("root");
    std::fs::create_dir_all(root.join("bin")).expect("mkdir bin");
    std::fs::create_dir_all(root.join("www")).expect("mkdir www");
    std::fs::copy("/bin/busybox", root.join("bin/busybox")).expect("busybox-static (just setup)");
    std::fs::write(root.join("www/index.html"), "hello\n").expect("index.html");
    let argv = [
        "/bin/busybox",
        "httpd",
        "-f",
        "-p",
        "[::]:8080",
        "-h",
        "/www",
    ];
    let config = ImageConfig {
        entrypoint: Some(argv.iter().map(|a| a.to_string()).collect()),
        ..ImageConfig::default()
    };
    let layout = scratch.join("layout");
    let built = build_image(&layout, "1", &[&root], &config).expect("build the image");
    let bytes = built.manifest.layers.iter().map(|l| l.size).sum();
    let reference = registry.reference("web:1");
    tokio::runtime::Runtime::new()
        .expect("tokio")
        .block_on(push(&layout, "1", &reference))
        .expect("push the image");
    (reference, bytes)
}

fn report_starts(cold: &[Start], warm: &[Start]) {
    println!();
    println!(
        "| ms, median / min | commit → assigned | pull | rootfs + TAP | qemu → vt-init channel \
         | channel → app started | boot (qemu → app started) | first health pass \
         | **assignment → healthy** | commit → healthy |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|");
    println!("{}", start_row("cold (empty image cache)", cold));
    println!("{}", start_row("warm (cached image, new instance)", warm));
    println!();
}

fn report_bare(bare: &[f64], full: &[Start]) {
    let ms = |v: &[f64]| format!("median {:.0} ms, min {:.0} ms", median(v), min(v));
    println!(
        "bare `qemu -M microvm` → `vt-init: channel` (n={}): {}",
        bare.len(),
        ms(bare)
    );
    if full.is_empty() {
        println!();
        return;
    }
    let channel: Vec<f64> = full.iter().map(|s| s.to_channel).collect();
    let boot: Vec<f64> = full.iter().map(|s| s.boot).collect();
    for (what, v) in [
        ("qemu → `vt-init: channel`", &channel),
        ("boot part, qemu → app started", &boot),
    ] {
        println!(
            "full path, {what} (n={}): {} → {:.2}× bare (medians), {:.2}× (mins)",
            v.len(),
            ms(v),
            median(v) / median(bare),
            min(v) / min(bare),
        );
    }
    println!();
}

fn report_scale(scale: &Scale) {
    println!("| instances running | `vt host run` VmRSS (RssAnon) | each qemu's VmRSS (RssAnon) |");
    println!("|---|---|---|");
    let row = |what: &str, agent: Mem, qemu: &[Mem]| {
        let each: Vec<String> = qemu
            .iter()
            .map(|m| format!("{:.0} ({:.0})", mib(m.rss), mib(m.anon)))
            .collect();
        let each = if each.is_empty() {
            "–".to_string()
        } else {
            format!("{} MiB", each.join(", "))
        };
        println!(
            "| {what} | {:.1} ({:.1}) MiB | {each} |",
            mib(agent.rss),
            mib(agent.anon)
        );
    };
    for (n, (a, q)) in scale.agent.iter().zip(&scale.qemu).enumerate() {
        row(&n.to_string(), *a, q);
    }
    row("0 again", scale.agent_idle_again, &[]);
    row(
        &format!("{BURST} (after the bursts)"),
        scale.agent_after_burst,
        &scale.qemu_after_burst,
    );
    let (a0, a1, a3) = (scale.agent[0].rss, scale.agent[1].rss, scale.agent[3].rss);
    let qemu_all: Vec<Mem> = scale
        .qemu
        .iter()
        .flatten()
        .chain(&scale.qemu_after_burst)
        .copied()
        .collect();
    let rss: Vec<f64> = qemu_all.iter().map(|m| m.rss).collect();
    let anon: Vec<f64> = qemu_all.iter().map(|m| m.anon).collect();
    println!(
        "agent VmRSS per instance: {:.2} MiB averaged over 0→3, {:.2} MiB marginal over 1→3; \
         qemu per instance (guest {MEMORY}): VmRSS median {:.0} MiB, RssAnon median {:.0} MiB",
        mib((a3 - a0) / 3.0),
        mib((a3 - a1) / 2.0),
        mib(median(&rss)),
        mib(median(&anon)),
    );
    println!();
    let per_min: Vec<f64> = scale
        .bursts
        .iter()
        .map(|ms| BURST as f64 * 60_000.0 / ms)
        .collect();
    println!(
        "0 → {BURST} instances, commit → all healthy (n={}): median {:.0} ms, min {:.0} ms \
         → {:.0} instances/min (median), {:.0} (best); each instance assignment → healthy median {:.0} ms",
        scale.bursts.len(),
        median(&scale.bursts),
        min(&scale.bursts),
        median(&per_min),
        per_min.iter().copied().fold(0.0, f64::max),
        median(&scale.burst_each),
    );
}

fn main() {
    // Scenarios by name (`starts`, `bare`, `scale`); all when none is given.
    let only: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let run = |name: &str| only.is_empty() || only.iter().any(|o| o == name);
    require(&[
        ("qemu-system-x86_64", "qemu-system-x86"),
        ("docker-registry", "docker-registry"),
        ("mkfs.ext4", "e2fsprogs"),
    ])
    .expect("run `just setup`");
    let guest = GuestArtifacts::find(&guest_dir()).unwrap_or_else(|e| panic!("{e}"));
    let began = Instant::now();

    let registry = Registry::start().expect("start docker-registry");
    let scratch = tempfile::Builder::new()
        .prefix("vt-bench-image-")
        .tempdir()
        .expect("a temporary directory");
    let (image, bytes) = image(&registry, scratch.path());
    println!(
        "microVM runtime under TCG; app: busybox httpd ({:.1} MiB compressed image), {MEMORY}, \
         TCP health check; figures in ms, median / min",
        bytes as f64 / f64::from(1 << 20)
    );

    // Bare boots are interleaved with the starts when both run.
    let mut bare = run("bare").then(|| Bare::new(&guest));
    if run("starts") {
        let (cold, warm, bares) = starts(&image, bare.as_mut());
        report_starts(&cold, &warm);
        if bare.is_some() {
            let full: Vec<Start> = cold.iter().chain(&warm).copied().collect();
            report_bare(&bares, &full);
        }
    } else if let Some(bare) = bare.as_mut() {
        let bares: Vec<f64> = (0..BARE_BOOTS).map(|_| bare.boot()).collect();
        report_bare(&bares, &[]);
    }
    if run("scale") {
        report_scale(&scale(&image));
    }
    println!("({:.0} s in all)", began.elapsed().as_secs_f64());
}
