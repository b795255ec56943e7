//! `vt rollback`: a branch restoring one env's files to an earlier release,
//! a pull request through a forge's API (a local server that records it), a
//! forge that refuses, a release that does not exist, and `--merge`, which
//! makes a new release with the old spec without rewriting history.

use crate::support::fleet::{Controller, FleetDir};
use crate::support::process::Proc;
use crate::support::repo::{origin_and_clone, Repo, ENV_FILE, WEB_PROD};
use crate::support::servers::TestCa;
use crate::support::status::{num, settled, text};
use crate::support::{wait_until, Out, Sandbox};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::PathBuf;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// The other env of web, changed in release 2 as well.
const STAGING_FILE: &str = "orgs/acme/shop/web/envs/staging.yaml";

/// A fleet tracking a bare origin, with web/prod at release 2 (instances
/// 1 → 3) and web/staging changed by the same commit (instances 1 → 2).
struct World {
    origin: PathBuf,
    work: Repo,
    ctl: Controller,
    _host: Proc,
    /// The commits of release 1 and 2.
    commits: [String; 2],
}

impl World {
    fn start(sb: &Sandbox) -> World {
        let (origin, work) = origin_and_clone(sb);
        work.replace(ENV_FILE, "instances: 2", "instances: 1");
        work.vt(&[
            "env",
            "create",
            "staging",
            "--app",
            "web",
            "--instances",
            "1",
        ]);
        let first = work.commit("web: prod and staging, one instance each");
        work.push();
        let fleet = FleetDir::init(sb, "fleet", &origin.display().to_string());
        let ctl = fleet.start();
        let host = ctl.start_host(sb, &fleet, "h1", "200ms");
        let mut world = World {
            origin,
            work,
            ctl,
            _host: host,
            commits: [first, String::new()],
        };
        world.wait_release(1);
        world.work.replace(ENV_FILE, "instances: 1", "instances: 3");
        world
            .work
            .replace(STAGING_FILE, "instances: 1", "instances: 2");
        world.commits[1] = world.work.commit("web: prod 3, staging 2");
        world.work.push();
        world.wait_release(2);
        world
    }

    /// The releases of web/`env`, oldest first.
    fn releases(&self, env: &str) -> Vec<Value> {
        let list = self
            .ctl
            .api()
            .get(&format!("/v1/releases?app=web&env={env}"));
        list.as_array().cloned().unwrap_or_default()
    }

    fn wait_release(&self, number: u64) -> Value {
        wait_until(
            &format!("web/prod has release {number}"),
            Duration::from_secs(15),
            || self.releases("prod").get(number as usize - 1).cloned(),
        )
    }

    /// `vt rollback ARGS -o json` in the clone.
    fn rollback(&self, args: &[&str]) -> Out {
        let mut all = vec!["rollback"];
        all.extend(args);
        all.extend(["-o", "json"]);
        self.ctl.cli_in(self.work.path(), &all)
    }

    /// `git ARGS` in the bare origin.
    fn origin_git(&self, args: &[&str]) -> String {
        self.ctl.env().git(&self.origin, args)
    }

    /// Whether the origin has `branch`.
    fn has_branch(&self, branch: &str) -> bool {
        let refs = self.origin_git(&["for-each-ref", "--format=%(refname)"]);
        refs.lines().any(|r| r == format!("refs/heads/{branch}"))
    }
}

/// `web --env prod --to 1` through a Gitea forge at `url` with token `T`, and `extra`.
fn to_gitea<'a>(url: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec!["web", "--env", "prod", "--to", "1"];
    args.extend(["--forge", "gitea", "--forge-url", url, "--forge-token", "T"]);
    args.extend(extra);
    args
}

/// What the forge received.
#[derive(Debug)]
struct Recorded {
    method: String,
    path: String,
    headers: BTreeMap<String, String>,
    body: Value,
}

/// A one-request HTTP server standing in for a forge: it records the
/// request and answers `status` with `answer`. Its base URL, and the
/// request (`None` when none came within 30 s).
fn forge(status: u16, answer: Value) -> (String, JoinHandle<Option<Recorded>>) {
    forge_over(None, status, answer)
}

/// A read-and-write connection: TCP, or TLS over TCP.
trait Connection: Read + Write + Send {}
impl<T: Read + Write + Send> Connection for T {}

/// [`forge`] over HTTPS with `tls`'s certificate when given; a request
/// whose TLS handshake fails is none.
fn forge_over(
    tls: Option<&TestCa>,
    status: u16,
    answer: Value,
) -> (String, JoinHandle<Option<Recorded>>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.set_nonblocking(true).expect("non-blocking");
    let scheme = if tls.is_some() { "https" } else { "http" };
    let url = format!("{scheme}://{}", listener.local_addr().expect("address"));
    let config = tls.map(TestCa::server_config);
    let handle = std::thread::spawn(move || {
        let deadline = Instant::now() + Duration::from_secs(30);
        let stream = loop {
            match listener.accept() {
                Ok((stream, _)) => break stream,
                Err(_) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(20));
                }
                Err(_) => return None,
            }
        };
        stream.set_nonblocking(false).expect("blocking");
        let stream: Box<dyn Connection> = match config {
            Some(config) => Box::new(rustls::StreamOwned::new(
                rustls::ServerConnection::new(config).expect("a TLS connection"),
                stream,
            )),
            None => Box::new(stream),
        };
        let mut reader = BufReader::new(stream);
        let mut line = String::new();
        reader.read_line(&mut line).ok()?;
        let mut words = line.split_whitespace();
        let (method, path) = (words.next()?.to_string(), words.next()?.to_string());
        let mut headers = BTreeMap::new();
        loop {
            line.clear();
            reader.read_line(&mut line).expect("header");
            let Some((name, value)) = line.trim_end().split_once(':') else {
                break;
            };
            headers.insert(name.to_ascii_lowercase(), value.trim().to_string());
        }
        let length: usize = headers
            .get("content-length")
            .and_then(|l| l.parse().ok())
            .unwrap_or(0);
        let mut body = vec![0; length];
        reader.read_exact(&mut body).expect("body");
        let answer = answer.to_string();
        let stream = reader.get_mut();
        write!(
            stream,
            "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\
             Connection: close\r\n\r\n{answer}",
            answer.len()
        )
        .expect("answer");
        stream.flush().expect("flush the answer");
        Some(Recorded {
            method,
            path,
            headers,
            body: serde_json::from_slice(&body).unwrap_or(Value::Null),
        })
    });
    (url, handle)
}

fn received(handle: JoinHandle<Option<Recorded>>) -> Recorded {
    handle
        .join()
        .expect("the forge thread")
        .expect("a request to the forge")
}

#[test]
fn rollback_opens_a_pull_request_and_leaves_the_tracked_branch_alone() {
    let sb = Sandbox::new();
    let w = World::start(&sb);
    // Incomplete forge settings (a local origin names no forge repository):
    // refused before anything is pushed.
    let out = w.rollback(&to_gitea("http://127.0.0.1:9", &[]));
    assert_eq!(out.code, 2, "{out}");
    assert_eq!(out.json()["code"], "E_FORGE", "{out}");
    assert!(!w.has_branch("vt/rollback/web-prod-to-1"));

    // (a) The forge opens the pull request.
    let (url, request) = forge(
        201,
        json!({"number": 7, "html_url": "http://forge.test/acme/config/pulls/7"}),
    );
    let out = w
        .rollback(&to_gitea(&url, &["--forge-repo", "acme/config"]))
        .ok();
    let result = out.json();
    let branch = "vt/rollback/web-prod-to-1";
    assert_eq!(result["app"], "acme/shop/web", "{out}");
    assert_eq!(result["env"], "prod");
    assert_eq!(
        (num(&result, "from_release"), num(&result, "to_release")),
        (2, 1)
    );
    assert_eq!(result["branch"], branch);
    assert_eq!(result["pushed"], true);
    assert_eq!(result["merged"], false);
    assert_eq!(
        result["pull_request"]["url"],
        "http://forge.test/acme/config/pulls/7"
    );
    assert_eq!(result["warnings"], json!([]), "{out}");
    let commit = text(&result, "commit").to_string();

    let request = received(request);
    assert_eq!(request.method, "POST");
    assert_eq!(request.path, "/api/v1/repos/acme/config/pulls");
    assert_eq!(request.headers["authorization"], "token T");
    assert!(request.headers["content-type"].starts_with("application/json"));
    let first_short = &w.commits[0][..7];
    assert_eq!(
        request.body["title"],
        format!("rollback {WEB_PROD} to release 1 (commit {first_short})")
    );
    assert_eq!(request.body["head"], branch);
    assert_eq!(request.body["base"], "main");
    let description = text(&request.body, "body");
    assert!(
        description.contains(&w.commits[0]) && description.contains("current release is 2"),
        "{description}"
    );

    // The branch: one commit on the tracked branch's tip, only web/prod's
    // env file changed, back to one instance; main itself did not move.
    assert_eq!(w.origin_git(&["rev-parse", branch]), commit);
    assert_eq!(
        w.origin_git(&["rev-parse", &format!("{branch}^")]),
        w.commits[1]
    );
    assert_eq!(w.origin_git(&["rev-parse", "main"]), w.commits[1]);
    assert_eq!(
        w.origin_git(&["diff", "--name-only", "main", branch]),
        ENV_FILE
    );
    let restored = w.origin_git(&["show", &format!("{branch}:{ENV_FILE}")]);
    assert!(restored.contains("instances: 1"), "{restored}");
    assert_eq!(
        w.origin_git(&["show", "-s", "--format=%s", branch]),
        format!("rollback {WEB_PROD} to release 1 (commit {first_short})")
    );

    // (b) A forge that refuses: the error says so and what to do; the
    // branch (a new name, the first one is taken) is pushed all the same.
    let (url, request) = forge(403, json!({"message": "token has no write access"}));
    let out = w.rollback(&to_gitea(&url, &["--forge-repo", "acme/config"]));
    assert_eq!(out.code, 1, "{out}");
    let error = out.json();
    assert_eq!(error["code"], "E_FORGE", "{out}");
    let message = text(&error, "message");
    assert!(
        message.contains("403") && message.contains("token has no write access"),
        "{message}"
    );
    let second = "vt/rollback/web-prod-to-1-2";
    assert!(message.contains(second), "{message}");
    assert!(text(&error, "hint").contains("by hand"), "{error}");
    assert_eq!(received(request).path, "/api/v1/repos/acme/config/pulls");
    assert!(w.has_branch(second));
    assert_eq!(w.origin_git(&["rev-parse", "main"]), w.commits[1]);

    // (c) A release that does not exist: exit 4, the existing ones listed.
    let out = w.rollback(&["web", "--env", "prod", "--to", "99"]);
    assert_eq!(out.code, 4, "{out}");
    let error = out.json();
    assert_eq!(error["code"], "E_NO_RELEASE");
    assert!(
        text(&error, "message").contains("releases: 1, 2"),
        "{error}"
    );
}

#[test]
fn rollback_merge_restores_the_previous_spec_as_a_new_release() {
    let sb = Sandbox::new();
    let w = World::start(&sb);

    // Merged and followed: the receipt of release 3.
    let out = w.rollback(&["web", "--env", "prod", "--merge"]).ok();
    let all = out.json();
    let receipt = &all["receipt"];
    assert_eq!(receipt["outcome"], "rolled_out", "{out}");
    assert_eq!(num(&receipt["workloads"][0], "release"), 3, "{out}");
    let result = all["rollback"].clone();
    assert_eq!(
        (num(&result, "from_release"), num(&result, "to_release")),
        (2, 1),
        "{out}"
    );
    assert_eq!(result["merged"], true, "{out}");
    assert_eq!(result["fast_forwarded"], true, "{out}");
    assert_eq!(result["pull_request"], Value::Null);
    let commit = text(&result, "commit").to_string();

    // The tracked branch moved forward by one commit, and so did the clone.
    assert_eq!(w.origin_git(&["rev-parse", "main"]), commit);
    assert_eq!(w.origin_git(&["rev-parse", "main^"]), w.commits[1]);
    assert_eq!(w.work.head(), commit);
    let history = w.origin_git(&["rev-list", "main"]);
    assert!(
        w.commits.iter().all(|c| history.lines().any(|l| l == c)),
        "history is kept: {history}"
    );

    // Release 3 has release 1's spec; staging keeps its change.
    let third = w.wait_release(3);
    let releases = w.releases("prod");
    assert_eq!(third["commit"]["sha"], commit.as_str());
    assert_eq!(third["spec_hash"], releases[0]["spec_hash"]);
    assert_ne!(third["spec_hash"], releases[1]["spec_hash"]);
    assert_eq!(num(&third["spec"], "instances"), 1);
    let staging = w.origin_git(&["show", &format!("main:{STAGING_FILE}")]);
    assert!(staging.contains("instances: 2"), "{staging}");
    assert_eq!(w.releases("staging").len(), 2, "no release for staging");

    let api = w.ctl.api();
    wait_until("release 3 rolls out", Duration::from_secs(15), || {
        let status = api.get("/v1/status");
        let web = crate::support::status::workload(&status, WEB_PROD)?.clone();
        settled(&web, 3).then_some(())
    });

    // Rolling back to release 1 again changes nothing: no commit, no branch.
    let out = w
        .rollback(&["web", "--env", "prod", "--to", "1", "--merge", "--no-wait"])
        .ok();
    let result = out.json();
    assert_eq!(result["changed"], false, "{out}");
    assert_eq!(result["branch"], Value::Null);
    assert_eq!(w.origin_git(&["rev-parse", "main"]), commit);
}

#[test]
fn rollback_wait_follows_the_pull_request_once_it_is_merged() {
    let sb = Sandbox::new();
    let w = World::start(&sb);
    let (url, request) = forge(
        201,
        json!({"html_url": "http://forge.test/acme/config/pulls/7"}),
    );
    let mut args = vec!["rollback"];
    args.extend(to_gitea(&url, &["--forge-repo", "acme/config"]));
    args.extend(["--wait", "--timeout", "60s", "-o", "json"]);
    let mut waiting = sb
        .env()
        .spawn("rollback-wait", w.ctl.cli_command(w.work.path(), &args));
    let branch = "vt/rollback/web-prod-to-1";
    wait_until(
        "the rollback branch is pushed",
        Duration::from_secs(20),
        || w.has_branch(branch).then_some(()),
    );
    assert!(
        request.join().expect("forge thread").is_some(),
        "the pull request was opened"
    );
    std::thread::sleep(Duration::from_millis(500));
    assert!(waiting.exited().is_none(), "it waits for the merge");

    // Someone merges the pull request (a fast-forward of main on the forge).
    w.origin_git(&[
        "update-ref",
        "refs/heads/main",
        &format!("refs/heads/{branch}"),
    ]);
    let status = waiting.wait(Duration::from_secs(60));
    assert!(status.success(), "{}", waiting.output());
    let all: Value = serde_json::from_str(&waiting.stdout()).expect("JSON");
    let receipt = &all["receipt"];
    assert_eq!(receipt["outcome"], "rolled_out", "{all}");
    assert_eq!(num(&receipt["workloads"][0], "release"), 3, "{all}");
    assert_eq!(
        receipt["commit"].as_str(),
        Some(w.origin_git(&["rev-parse", "main"]).as_str()),
        "the receipt names the merged commit"
    );
    assert_eq!(
        all["rollback"]["pull_request"]["url"],
        "http://forge.test/acme/config/pulls/7"
    );
}

#[test]
fn rollback_opens_a_pull_request_on_a_forge_served_over_https_with_a_private_ca() {
    let sb = Sandbox::new();
    let w = World::start(&sb);
    let tls = TestCa::new(&sb.path().join("tls"));
    let ca = tls.ca.display().to_string();
    let to_github = |url: &str, extra: &[&str]| -> Out {
        let mut args = vec!["web", "--env", "prod", "--to", "1"];
        args.extend([
            "--forge",
            "github",
            "--forge-url",
            url,
            "--forge-token",
            "T",
        ]);
        args.extend(["--forge-repo", "acme/config"]);
        args.extend(extra);
        w.rollback(&args)
    };

    // The CA not given: the certificate is not trusted, and the error says
    // what to pass.
    let (url, request) = forge_over(Some(&tls), 201, json!({"html_url": "x"}));
    let out = to_github(&url, &[]);
    assert_eq!(out.code, 1, "{out}");
    let error = out.json();
    assert_eq!(error["code"], "E_FORGE", "{out}");
    assert!(text(&error, "message").contains("certificate"), "{error}");
    assert!(request.join().expect("the forge thread").is_none());

    // With it: the pull request is opened over TLS.
    let (url, request) = forge_over(
        Some(&tls),
        201,
        json!({"number": 8, "html_url": "https://forge.test/acme/config/pull/8"}),
    );
    let out = to_github(&url, &["--forge-ca", &ca]).ok();
    assert_eq!(
        out.json()["pull_request"]["url"],
        "https://forge.test/acme/config/pull/8",
        "{out}"
    );
    let got = received(request);
    assert_eq!(
        (got.method.as_str(), got.path.as_str()),
        ("POST", "/repos/acme/config/pulls")
    );
    assert_eq!(got.headers["authorization"], "Bearer T");

    // A token the forge refuses (401): its words, and nothing opened.
    let (url, request) = forge_over(Some(&tls), 401, json!({"message": "Bad credentials"}));
    let out = to_github(&url, &["--forge-ca", &ca]);
    assert_eq!(out.code, 1, "{out}");
    assert!(
        text(&out.json(), "message").contains("Bad credentials"),
        "{out}"
    );
    assert!(received(request).path.ends_with("/pulls"));

    // A request the forge finds invalid (422, GitHub's shape): its reasons.
    let (url, request) = forge_over(
        Some(&tls),
        422,
        json!({"message": "Validation Failed", "errors": [{"message": "A pull request already exists"}]}),
    );
    let out = to_github(&url, &["--forge-ca", &ca]);
    assert_eq!(out.code, 1, "{out}");
    let message = text(&out.json(), "message").to_string();
    assert!(
        message.contains("422") && message.contains("A pull request already exists"),
        "{out}"
    );
    assert!(received(request).path.ends_with("/pulls"));
}
