//! Push-to-first-action latency of a real `vt fleet run`.
//!
//! Two setups, each with one warm-up change and [`ROUNDS`] measured ones:
//!
//! - **local**: the controller watches a repository on disk (`poll_interval_ms`
//!   30000, so only the file watcher can be fast). The clock starts just before
//!   the change is written and `git commit` runs.
//! - **remote**: the controller mirrors a bare repository through a `file://`
//!   URL (`fetch_interval_ms` 600000); after `git push` returns, a signed
//!   `POST /v1/hooks/git` tells it to fetch. The clock starts when the push
//!   has returned, as a forge would then send its webhook.
//!
//! The change bumps the app's image; the reaction is the `release.created`
//! event, polled every 10 ms through `GET /v1/events?kind=release.created`.
//! Anchors: Argo CD polls every 3 minutes by default, Flux every minute.
//!
//! `cargo bench -p vt --bench push_latency`

use hmac::{Hmac, Mac};
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Measured changes per setup.
const ROUNDS: usize = 20;
/// How often the events are polled.
const POLL: Duration = Duration::from_millis(10);
/// A reaction slower than this fails the benchmark.
const GIVE_UP: Duration = Duration::from_secs(20);

/// The `vt` binary cargo built for this benchmark.
fn vt() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_vt"));
    cmd.env_remove("VT_LOG").env_remove("VT_OUTPUT");
    cmd
}

/// `git` with a fixed identity and no user or system configuration.
fn git(dir: &Path) -> Command {
    let mut cmd = Command::new("git");
    cmd.current_dir(dir)
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_AUTHOR_NAME", "bench")
        .env("GIT_AUTHOR_EMAIL", "bench@example.com")
        .env("GIT_COMMITTER_NAME", "bench")
        .env("GIT_COMMITTER_EMAIL", "bench@example.com");
    cmd
}

/// Runs a command to success, quietly.
fn run(cmd: &mut Command) {
    let out = cmd.output().expect("command runs");
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A desired-state repository at `dir` with one app and one env, committed.
fn make_repo(dir: &Path) {
    let parent = dir.parent().expect("repo has a parent");
    run(vt().current_dir(parent).arg("init").arg(dir));
    run(vt().current_dir(dir).args(["org", "create", "acme"]));
    run(vt().current_dir(dir).args(["project", "create", "shop"]));
    run(vt().current_dir(dir).args([
        "app",
        "create",
        "web",
        "--image",
        "registry.local/web:0",
        "--port",
        "8080",
    ]));
    run(vt()
        .current_dir(dir)
        .args(["env", "create", "prod", "--app", "web", "--instances", "1"]));
    run(git(dir).args(["add", "-A"]));
    run(git(dir).args(["commit", "-q", "-m", "web"]));
}

/// Rewrites the app's image tag to `tag` and commits it.
fn commit_image(repo: &Path, tag: usize) {
    let file = repo.join("orgs/acme/shop/web/app.yaml");
    let text = std::fs::read_to_string(&file).expect("read app.yaml");
    let start = text.find("registry.local/web:").expect("image in app.yaml") + 19;
    let end = text[start..]
        .find(|c: char| !c.is_ascii_digit())
        .map_or(text.len(), |n| start + n);
    let text = format!("{}{tag}{}", &text[..start], &text[end..]);
    std::fs::write(&file, text).expect("write app.yaml");
    run(git(repo).args(["commit", "-q", "-am", &format!("web:{tag}")]));
}

/// A running `vt fleet run`, killed when dropped.
struct Controller {
    child: Child,
    url: String,
    token: String,
    webhook_secret: String,
    agent: ureq::Agent,
}

impl Drop for Controller {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Controller {
    /// `vt fleet init` for `source` in `state`, with `settings` merged into
    /// `fleet.json`, then `vt fleet run` until its address line appears.
    fn start(source: &str, state: &Path, settings: serde_json::Value) -> Controller {
        run(vt()
            .args(["fleet", "init", source, "--state-dir"])
            .arg(state)
            .args(["--quic", "127.0.0.1:0", "--http", "127.0.0.1:0"]));
        let path = state.join("fleet.json");
        let mut json: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&path).expect("read fleet.json"))
                .expect("fleet.json is JSON");
        for (k, v) in settings.as_object().expect("settings object") {
            json[k] = v.clone();
        }
        // The bench polls over plain HTTP on loopback: TLS is not what it measures.
        json["api_tls"] = serde_json::json!({"plain_http": true});
        std::fs::write(&path, json.to_string()).expect("write fleet.json");
        let field = |name: &str| json[name].as_str().expect("string setting").to_string();
        let log = std::fs::File::create(state.join("controller.log")).expect("log file");
        let mut child = vt()
            .args(["fleet", "run", "--state-dir"])
            .arg(state)
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .expect("spawn vt fleet run");
        let stdout = child.stdout.take().expect("piped stdout");
        let agent = ureq::AgentBuilder::new()
            .timeout(Duration::from_secs(5))
            .build();
        let mut controller = Controller {
            child,
            url: String::new(),
            token: field("api_token"),
            webhook_secret: field("webhook_secret"),
            agent,
        };
        let mut lines = BufReader::new(stdout).lines();
        let line = lines
            .next()
            .expect("the controller prints its addresses")
            .expect("readable stdout");
        let http = line
            .split("http ")
            .nth(1)
            .and_then(|rest| rest.split(',').next())
            .expect("`http http://ADDR,` in the first line");
        assert!(http.starts_with("http://127.0.0.1:"), "{line}");
        controller.url = http.to_string();
        // Keep draining stdout so the controller never writes into a closed pipe.
        std::thread::spawn(move || lines.for_each(drop));
        controller
    }

    /// `release.created` events after `seq`, as (seq, release). The newest
    /// few are asked for and filtered here: `?after=` is refused by the API
    /// (HTTP 400, its flattened query cannot parse numbers).
    fn releases_after(&self, seq: u64) -> Vec<(u64, u64)> {
        let events: Vec<serde_json::Value> = self
            .agent
            .get(&format!("{}/v1/events", self.url))
            .query("kind", "release.created")
            .query("limit", "5")
            .set("Authorization", &format!("Bearer {}", self.token))
            .call()
            .expect("GET /v1/events")
            .into_json()
            .expect("events are JSON");
        events
            .iter()
            .map(|e| {
                (
                    e["seq"].as_u64().expect("seq"),
                    e["release"].as_u64().unwrap_or(0),
                )
            })
            .filter(|&(s, _)| s > seq)
            .collect()
    }

    /// Waits until a `release.created` event after `seq` appears; returns its
    /// seq and release number.
    fn wait_release(&self, seq: u64, since: Instant) -> (u64, u64) {
        loop {
            if let Some(&found) = self.releases_after(seq).last() {
                return found;
            }
            assert!(
                since.elapsed() < GIVE_UP,
                "no release.created event within {GIVE_UP:?}"
            );
            std::thread::sleep(POLL);
        }
    }

    /// `POST /v1/hooks/git`, signed like GitHub does.
    fn webhook(&self) {
        let body = r#"{"ref":"refs/heads/main"}"#;
        let mut mac = Hmac::<sha2::Sha256>::new_from_slice(self.webhook_secret.as_bytes())
            .expect("any key length");
        mac.update(body.as_bytes());
        let hex = hex::encode(mac.finalize().into_bytes());
        self.agent
            .post(&format!("{}/v1/hooks/git", self.url))
            .set("X-Hub-Signature-256", &format!("sha256={hex}"))
            .set("Content-Type", "application/json")
            .send_string(body)
            .expect("webhook accepted");
    }
}

/// Median and max of the samples.
fn summary(name: &str, mut samples: Vec<Duration>) {
    samples.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let all: Vec<String> = samples.iter().map(|d| format!("{:.0}", ms(*d))).collect();
    println!(
        "{name:<7} median {:>7.1} ms  max {:>7.1} ms  min {:>7.1} ms  (n={}, sorted ms: {})",
        ms(samples[samples.len() / 2]),
        ms(samples[samples.len() - 1]),
        ms(samples[0]),
        samples.len(),
        all.join(" ")
    );
}

/// One change per round on a repository the controller watches.
fn local(root: &Path) -> Vec<Duration> {
    let repo = root.join("local-repo");
    make_repo(&repo);
    let controller = Controller::start(
        &repo.display().to_string(),
        &root.join("local-state"),
        serde_json::json!({"poll_interval_ms": 30_000}),
    );
    let (mut seq, _) = controller.wait_release(0, Instant::now());
    let mut samples = Vec::new();
    for round in 0..=ROUNDS {
        let t = Instant::now();
        commit_image(&repo, round + 1);
        let (found, release) = controller.wait_release(seq, t);
        let elapsed = t.elapsed();
        assert_eq!(release, u64::try_from(round).expect("small") + 2);
        seq = found;
        if round > 0 {
            samples.push(elapsed);
        }
    }
    samples
}

/// One change per round pushed to a bare repository, announced by webhook.
fn remote(root: &Path) -> Vec<Duration> {
    let work = root.join("remote-work");
    make_repo(&work);
    let bare = root.join("remote.git");
    run(git(root)
        .args(["clone", "-q", "--bare"])
        .arg(&work)
        .arg(&bare));
    run(git(&work).args(["remote", "add", "origin"]).arg(&bare));
    let controller = Controller::start(
        &format!("file://{}", bare.display()),
        &root.join("remote-state"),
        serde_json::json!({"fetch_interval_ms": 600_000}),
    );
    let (mut seq, _) = controller.wait_release(0, Instant::now());
    let mut samples = Vec::new();
    for round in 0..=ROUNDS {
        commit_image(&work, round + 1);
        run(git(&work).args(["push", "-q", "origin", "main"]));
        let t = Instant::now();
        controller.webhook();
        let (found, release) = controller.wait_release(seq, t);
        let elapsed = t.elapsed();
        assert_eq!(release, u64::try_from(round).expect("small") + 2);
        seq = found;
        if round > 0 {
            samples.push(elapsed);
        }
    }
    samples
}

fn main() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path();
    println!(
        "push-to-first-action: commit -> `release.created` event, {ROUNDS} rounds after a warm-up, events polled every {} ms",
        POLL.as_millis()
    );
    summary("local", local(root));
    summary("remote", remote(root));
    println!("anchors: Argo CD polls every 180000 ms by default, Flux every 60000 ms");
}
