//! Fleets that track a repository the way people host them: over HTTPS
//! (nginx + `git http-backend` with a CA made here and basic auth) and over
//! SSH (OpenSSH's sshd, a deploy key that `vt fleet init` made, the host's
//! key in known_hosts). A push becomes a release; a wrong password, an
//! untrusted certificate, an unknown host key and a key the server does not
//! know become `source.failed` events and `vt status` lines with their codes.

use crate::support::api::Api;
use crate::support::fleet::{Controller, FleetDir};
use crate::support::repo::{origin_and_clone, Repo, APP_FILE};
use crate::support::servers::{HttpsGit, SshGit, TestCa};
use crate::support::status::num;
use crate::support::{wait_until, Sandbox};
use serde_json::{json, Value};
use std::time::Duration;

/// How long a fleet may take to fetch what was pushed.
const NOTICE: Duration = Duration::from_secs(20);

/// The release numbers of web.
fn releases(api: &Api) -> Vec<u64> {
    api.get("/v1/releases?app=web")
        .as_array()
        .map(|list| list.iter().map(|r| num(r, "number")).collect())
        .unwrap_or_default()
}

/// Starts the fleet, fetching every 200 ms.
fn start(fleet: &FleetDir) -> Controller {
    fleet.set("fetch_interval_ms", json!(200));
    fleet.start()
}

/// Release 1 from the first fetch, then release 2 from a push.
fn follows_pushes(ctl: &Controller, clone: &Repo) {
    let api = ctl.api();
    wait_until("the first fetch makes release 1", NOTICE, || {
        (releases(&api) == [1]).then_some(())
    });
    clone.replace(APP_FILE, "registry.local/web:1", "registry.local/web:2");
    clone.commit("web: image 2");
    clone.push();
    wait_until("the push makes release 2", NOTICE, || {
        (releases(&api) == [1, 2]).then_some(())
    });
    let status = ctl.json(&["status"]);
    assert!(status["source"].get("failing").is_none(), "{status}");
}

/// Waits until the fleet's source fails with `code`; checks the event, the
/// status JSON and the status text; returns the failure's message.
fn fails_with(ctl: &Controller, code: &str) -> String {
    let api = ctl.api();
    let event = wait_until(
        &format!("a source.failed event with {code}"),
        NOTICE,
        || {
            api.get("/v1/events?kind=source.failed")
                .as_array()
                .and_then(|events| events.first().cloned())
        },
    );
    let message = event["message"].as_str().unwrap_or_default().to_string();
    assert!(message.contains(&format!("[{code}]")), "{event}");
    let status = ctl.json(&["status"]);
    assert_eq!(status["source"]["failing"]["code"], code, "{status}");
    assert_eq!(releases(&api), Vec::<u64>::new(), "nothing was deployed");
    let shown = ctl.cli_plain(&["status"]).ok().stdout;
    assert!(
        shown.contains("warning: cannot read the repository since")
            && shown.contains(&format!("error[{code}]")),
        "{shown}"
    );
    message
}

#[test]
fn fleets_track_an_https_repository_with_a_private_ca_and_basic_auth() {
    let sb = Sandbox::new();
    let (bare, clone) = origin_and_clone(&sb);
    let tls = TestCa::new(&sb.path().join("tls"));
    let root = bare.parent().expect("the bare repository's directory");
    let server = HttpsGit::start(&sb, root, &tls, "alice", "correct horse");
    let url = server.url("origin.git");
    let write = |name: &str, text: &str| {
        let path = sb.path().join(name);
        std::fs::write(&path, text).expect("write");
        path.display().to_string()
    };
    let right = write("right-password", "correct horse\n");
    let wrong = write("wrong-password", "battery staple\n");
    let ca = tls.ca.display().to_string();
    fn with<'a>(password: &'a str, ca: Option<&'a str>) -> Vec<&'a str> {
        let mut args = vec!["--git-username", "alice", "--git-token-file", password];
        args.extend(ca.map(|ca| ["--git-ca", ca]).into_iter().flatten());
        args
    }

    let (good, _) = FleetDir::init_with(&sb, "good", &url, &with(&right, Some(&ca)));
    let (bad_password, _) =
        FleetDir::init_with(&sb, "bad-password", &url, &with(&wrong, Some(&ca)));
    let (no_ca, _) = FleetDir::init_with(&sb, "no-ca", &url, &with(&right, None));
    let credentials = std::fs::read_to_string(good.dir().join("git/credentials")).expect("read");
    assert!(
        credentials.starts_with("https://alice:correct%20horse@127.0.0.1:"),
        "{credentials}"
    );
    assert!(
        !good.settings().to_string().contains("correct"),
        "the password stays out of fleet.json"
    );

    let bad_password = start(&bad_password);
    let no_ca = start(&no_ca);
    let good = start(&good);
    follows_pushes(&good, &clone);
    let message = fails_with(&bad_password, "E_GIT_AUTH");
    assert!(!message.contains("battery"), "no password in {message}");
    assert!(message.contains("git/credentials"), "a hint: {message}");
    let message = fails_with(&no_ca, "E_GIT_TLS");
    assert!(message.contains("git/ca.pem"), "a hint: {message}");
}

#[test]
fn fleets_track_an_ssh_repository_with_a_deploy_key_and_known_hosts() {
    let sb = Sandbox::new();
    let (bare, clone) = origin_and_clone(&sb);
    let server = SshGit::start(&sb);
    let url = server.url(&bare);
    let known_hosts = server.known_hosts().display().to_string();

    let (good, init) = FleetDir::init_with(&sb, "good", &url, &["--git-known-hosts", &known_hosts]);
    let deploy_key = init["deploy_key"]
        .as_str()
        .expect("a deploy key is printed");
    assert!(deploy_key.starts_with("ssh-ed25519 "), "{init}");
    server.authorize(deploy_key);
    // Its own key, which the server knows, but no known hosts.
    let (unknown_host, init) = FleetDir::init_with(&sb, "unknown-host", &url, &[]);
    server.authorize(init["deploy_key"].as_str().expect("a deploy key"));
    // Trusts the host, but its key is not authorized.
    let (stranger, _) =
        FleetDir::init_with(&sb, "stranger", &url, &["--git-known-hosts", &known_hosts]);

    let unknown_host = start(&unknown_host);
    let stranger = start(&stranger);
    let good = start(&good);
    follows_pushes(&good, &clone);
    let message = fails_with(&unknown_host, "E_GIT_HOST_KEY");
    assert!(message.contains("git/known_hosts"), "a hint: {message}");
    fails_with(&stranger, "E_GIT_AUTH");
}

#[test]
fn bad_git_settings_are_refused_by_init_and_leave_nothing_behind() {
    let sb = Sandbox::new();
    let token = sb.path().join("token");
    std::fs::write(&token, "t").expect("write");
    let token = token.display().to_string();
    let dir = sb.path().join("fleet").display().to_string();
    let refused = |source: &str, more: &[&str]| -> Value {
        let mut args = vec!["fleet", "init", source, "--state-dir", &dir, "-o", "json"];
        args.extend(more);
        let out = sb.env().vt(sb.path(), &args);
        assert_ne!(out.code, 0, "{out}");
        assert!(!sb.path().join("fleet").exists(), "nothing is left: {out}");
        out.json()
    };
    let answer = refused("git@127.0.0.1:r.git", &["--git-token-file", &token]);
    assert_eq!(answer["code"], "E_FLEET_STATE", "{answer}");
    assert!(
        answer["message"]
            .as_str()
            .unwrap_or_default()
            .contains("https://"),
        "{answer}"
    );
    let answer = refused("https://127.0.0.1/r.git", &["--git-ca", &token]);
    assert!(
        answer["message"]
            .as_str()
            .unwrap_or_default()
            .contains("no PEM certificate"),
        "{answer}"
    );
    let answer = refused("https://127.0.0.1/r.git", &["--git-known-hosts", &token]);
    assert!(
        answer["message"]
            .as_str()
            .unwrap_or_default()
            .contains("ssh://"),
        "{answer}"
    );
}
