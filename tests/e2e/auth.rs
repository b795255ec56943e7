//! The API wants a bearer token: without one or with a wrong one every route
//! answers 401, and the CLI exits 1 with `E_UNAUTHORIZED`. An org's token
//! does what its role allows in its org and sees nothing of another org,
//! route by route; a revoked token ends the stream it opened; every denial
//! and every change is an `audit.*` event naming the token's ID.

use crate::support::fleet::{Controller, FleetDir};
use crate::support::repo::Repo;
use crate::support::{wait_until, Sandbox};
use serde_json::{json, Value};
use std::time::Duration;

#[test]
fn requests_without_the_right_token_are_refused() {
    let sb = Sandbox::new();
    let repo = Repo::init(&sb, "repo");
    let fleet = FleetDir::init(&sb, "fleet", &repo.path().display().to_string());
    let ctl = fleet.start();
    let api = ctl.api();

    let routes = [
        "/v1/status",
        "/v1/hosts",
        "/v1/events",
        "/v1/releases?app=web",
        "/v1/describe?app=web",
    ];
    for token in [None, Some("vta_wrong"), Some("")] {
        let client = api.with_token(token);
        for route in routes {
            let (status, body) = client.try_get(route).expect("the controller answers");
            assert_eq!(status, 401, "GET {route} with {token:?}: {body}");
            assert_eq!(body["code"], "E_UNAUTHORIZED", "GET {route}: {body}");
        }
    }
    assert_eq!(api.try_get("/v1/status").map(|(s, _)| s), Ok(200));

    for token in [None, Some("vta_wrong")] {
        for command in [
            &["status"][..],
            &["hosts"],
            &["events"],
            &["releases", "web"],
        ] {
            let out = ctl.cli_with_token(command, token);
            assert_eq!(out.code, 1, "vt {command:?} with {token:?}:\n{out}");
            assert_eq!(out.json()["code"], json!("E_UNAUTHORIZED"), "{out}");
        }
    }
    // And in text, on stderr, with the hint.
    let mut cmd = sb.env().vt_command(sb.path(), &["status"]);
    cmd.env("VT_CONTROLLER", ctl.url())
        .env("VT_CA", ctl.ca())
        .env("VT_TOKEN", "vta_wrong");
    let out = sb.env().run("vt-cli", cmd);
    assert_eq!(out.code, 1, "{out}");
    assert!(
        out.stderr.contains("unknown API token") && out.stderr.contains("VT_TOKEN"),
        "{out}"
    );
}

/// `vt tokens create --org ORG --role ROLE`: the token, and its ID.
fn token(ctl: &Controller, org: &str, role: &str) -> (String, String) {
    let created = ctl.json(&["tokens", "create", "--org", org, "--role", role]);
    let text = created["token"].as_str().expect("a token").to_string();
    assert!(text.starts_with("vtt_tok_"), "{created}");
    (text, created["id"].as_str().expect("an id").to_string())
}

/// What an `acme` viewer gets from every route: `PATTERN METHOD PATH STATUS`.
/// Every route the controller serves must be here (checked against
/// `/v1/routes`).
const VIEWER: &str = "
/v1/status GET /v1/status 200
/v1/describe GET /v1/describe?app=globex/shop/web 404
/v1/releases GET /v1/releases?app=web 200
/v1/events GET /v1/events 200
/v1/volumes GET /v1/volumes 200
/v1/endpoints GET /v1/endpoints 200
/v1/usage GET /v1/usage 200
/v1/logs GET /v1/logs?app=web 403
/v1/exec POST /v1/exec 403
/v1/exec/attach GET /v1/exec/attach?app=web&argv=sh 403
/v1/volumes/destroy POST /v1/volumes/destroy 403
/v1/baseline GET /v1/baseline 403
/v1/hosts GET /v1/hosts 403
/v1/hosts/{name} DELETE /v1/hosts/h1 403
/v1/hosts/{name}/revoke POST /v1/hosts/h1/revoke 403
/v1/edges/{name} DELETE /v1/edges/e1 403
/v1/edges/{name}/revoke POST /v1/edges/e1/revoke 403
/v1/nodes GET /v1/nodes 403
/v1/tokens POST /v1/tokens 403
/v1/tokens/{id} DELETE /v1/tokens/tok_x 403
/v1/routes GET /v1/routes 403
";

/// The rows of [`VIEWER`].
fn viewer_table() -> Vec<(&'static str, &'static str, &'static str, u16)> {
    VIEWER
        .lines()
        .filter_map(|row| {
            let mut cells = row.split_whitespace();
            let (pattern, method, path) = (cells.next()?, cells.next()?, cells.next()?);
            Some((pattern, method, path, cells.next()?.parse().ok()?))
        })
        .collect()
}

#[test]
fn an_org_token_does_what_its_role_allows_and_sees_nothing_of_another_org() {
    let sb = Sandbox::new();
    let repo = Repo::init(&sb, "repo");
    repo.add_web(1, "");
    repo.vt(&["org", "create", "globex"]);
    repo.vt(&["project", "create", "shop", "--org", "globex"]);
    repo.vt(&[
        "app",
        "create",
        "web",
        "--image",
        "registry.local/web:1",
        "--port",
        "8080",
        "--project",
        "globex/shop",
    ]);
    repo.vt(&[
        "env",
        "create",
        "prod",
        "--app",
        "globex/shop/web",
        "--instances",
        "1",
    ]);
    // (The commit is the whole repository's, as every org's deployer sees it in git.)
    repo.commit("two orgs");
    let fleet = FleetDir::init(&sb, "fleet", &repo.path().display().to_string());
    let ctl = fleet.start();
    let _host = ctl.start_host(&sb, &fleet, "h1", "200ms");
    let admin = ctl.api();
    wait_until("both orgs have a release", Duration::from_secs(15), || {
        let status = admin.get("/v1/status");
        (status["workloads"].as_array()?.len() == 2).then_some(())
    });

    // Every served route has an expectation: a new route must be added here.
    let served: Vec<String> = admin
        .get("/v1/routes")
        .as_array()
        .expect("the route table")
        .iter()
        .map(|r| r["path"].as_str().unwrap_or_default().to_string())
        .collect();
    for path in &served {
        assert!(
            viewer_table().iter().any(|(p, ..)| p == path),
            "route {path} has no expectation in this test's table"
        );
    }

    let (viewer, viewer_id) = token(&ctl, "acme", "viewer");
    let as_viewer = admin.with_token(Some(&viewer));
    for (_, method, path, want) in viewer_table() {
        let (status, body) = as_viewer
            .call(method, path, &json!({"id": "vol_x", "app": "web", "argv": ["true"], "org": "acme", "role": "admin"}))
            .expect("the controller answers");
        assert_eq!(status, want, "{method} {path}: {body}");
        if status == 403 {
            assert_eq!(body["code"], "E_FORBIDDEN", "{method} {path}: {body}");
        }
        if status == 200 {
            assert!(
                !body.to_string().contains("globex"),
                "{method} {path} shows globex: {body}"
            );
        }
    }
    let status = as_viewer.get("/v1/status");
    assert_eq!(
        status["workloads"].as_array().map(Vec::len),
        Some(1),
        "{status}"
    );
    assert_eq!(
        as_viewer.get("/v1/describe?app=acme/shop/web")[0]["status"]["name"],
        "acme/shop/web/prod"
    );

    // A deployer of acme: exec and logs, but another org's instance is not
    // found (404, not 403), and its logs are not there.
    let (deployer, _) = token(&ctl, "acme", "deployer");
    let as_deployer = admin.with_token(Some(&deployer));
    let (status, body) = as_deployer
        .call(
            "POST",
            "/v1/exec",
            &json!({"app": "globex/shop/web", "argv": ["true"]}),
        )
        .expect("answers");
    assert_eq!(
        (status, &body["code"]),
        (404, &json!("E_NOT_FOUND")),
        "{body}"
    );
    let (status, body) = as_deployer
        .call("GET", "/v1/logs?app=globex/shop/web", &json!({}))
        .expect("answers");
    assert_eq!((status, body), (200, json!([])));
    let (status, _) = as_deployer
        .call("POST", "/v1/volumes/destroy", &json!({"id": "vol_x"}))
        .expect("answers");
    assert_eq!(status, 403, "a deployer destroys no volume");

    // Revoked mid-`vt logs -f`: the stream ends with E_UNAUTHORIZED, and the
    // token is refused from then on.
    let mut follow = ctl.env().vt_command(
        std::path::Path::new("/"),
        &["logs", "web", "-f", "-o", "json"],
    );
    follow
        .env("VT_CONTROLLER", ctl.url())
        .env("VT_CA", ctl.ca())
        .env("VT_TOKEN", &deployer);
    let mut logs = ctl.env().spawn("vt-logs", follow);
    std::thread::sleep(Duration::from_millis(700));
    assert!(
        logs.exited().is_none(),
        "vt logs -f follows:\n{}",
        logs.output()
    );
    let deployer_id = deployer
        .trim_start_matches("vtt_")
        .rsplit_once('_')
        .expect("id")
        .0
        .to_string();
    let revoked = ctl.json(&["tokens", "revoke", &deployer_id]);
    assert!(revoked["revoked"].is_u64(), "{revoked}");
    let ended = logs.wait(Duration::from_secs(5));
    assert!(!ended.success(), "{}", logs.output());
    assert!(
        logs.stdout().contains("E_UNAUTHORIZED") || logs.stderr().contains("E_UNAUTHORIZED"),
        "{}",
        logs.output()
    );
    let (status, body) = as_deployer.try_get("/v1/status").expect("answers");
    assert_eq!(status, 401, "{body}");
    assert!(
        body["message"]
            .as_str()
            .unwrap_or_default()
            .contains("was revoked"),
        "{body}"
    );

    // The audit trail: token ID, never a secret.
    let audit: Vec<Value> = ctl
        .json(&["events", "--kind", "audit."])
        .as_array()
        .cloned()
        .unwrap_or_default();
    let text = serde_json::to_string(&audit).expect("json");
    assert!(
        !text.contains(viewer.rsplit_once('_').expect("secret").1),
        "no secret in the audit"
    );
    let kinds: Vec<&str> = audit.iter().filter_map(|e| e["kind"].as_str()).collect();
    for kind in [
        "audit.token.created",
        "audit.token.revoked",
        "audit.denied",
        "audit.call",
    ] {
        assert!(kinds.contains(&kind), "{kind} in {kinds:?}");
    }
    assert!(
        audit
            .iter()
            .any(|e| e["kind"] == "audit.denied" && e["fields"]["token"] == viewer_id.as_str()),
        "a denial names the viewer's token: {text}"
    );
    // An org token's own view of events has no audit trail and no globex.
    let (_, events) = as_viewer.try_get("/v1/events").expect("answers");
    assert!(!events.to_string().contains("audit."), "{events}");
}

#[test]
fn the_api_is_served_over_https_and_the_cli_trusts_only_the_ca_it_is_given() {
    let sb = Sandbox::new();
    let repo = Repo::init(&sb, "repo");
    let fleet = FleetDir::init(&sb, "fleet", &repo.path().display().to_string());
    let ctl = fleet.start();
    assert!(ctl.url().starts_with("https://127.0.0.1:"), "{}", ctl.url());
    let token = fleet.api_token();
    let status = |vars: &[(&str, &str)], args: &[&str]| {
        let mut cmd = sb.env().vt_command(sb.path(), args);
        cmd.env("VT_CONTROLLER", ctl.url()).env("VT_TOKEN", &token);
        cmd.envs(vars.iter().copied());
        sb.env().run("vt-cli", cmd)
    };

    // Without the fleet CA: the certificate is not trusted, and the hint says what to pass.
    let out = status(&[], &["status", "-o", "json"]);
    assert_eq!(out.code, 1, "{out}");
    let error = out.json();
    assert_eq!(error["code"], "E_UNREACHABLE", "{out}");
    assert!(
        error["hint"].as_str().unwrap_or_default().contains("--ca"),
        "{out}"
    );
    // Another CA is no better.
    let other = sb.path().join("other-ca.pem");
    let other_fleet = FleetDir::init(&sb, "other", &repo.path().display().to_string());
    std::fs::copy(other_fleet.dir().join("ca.pem"), &other).expect("copy");
    let out = status(
        &[("VT_CA", other.to_str().expect("utf-8"))],
        &["status", "-o", "json"],
    );
    assert_eq!(out.json()["code"], "E_UNREACHABLE", "{out}");
    // With it: answered.
    let ca = ctl.ca().display().to_string();
    status(&[], &["status", "--ca", &ca]).ok();
    // Plain HTTP to the HTTPS port gets nothing.
    let plain = ctl.url().replacen("https://", "http://", 1);
    let out = status(&[("VT_CONTROLLER", &plain)], &["status", "-o", "json"]);
    assert_eq!(out.code, 1, "{out}");

    // `vt login` checks and saves; later commands need nothing else.
    let login = sb
        .env()
        .vt(
            sb.path(),
            &[
                "login",
                &ctl.url(),
                "--token",
                &token,
                "--ca",
                &ca,
                "-o",
                "json",
            ],
        )
        .ok();
    let config = login.json()["config"]
        .as_str()
        .expect("the config path")
        .to_string();
    let saved = std::fs::read_to_string(&config).expect("the config");
    assert!(saved.contains(&token), "{saved}");
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&config)
        .expect("stat")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "the config holds a token: private");
    sb.env().vt(sb.path(), &["status"]).ok();
    // A login with a wrong token saves nothing.
    let out = sb.env().vt(
        sb.path(),
        &["login", &ctl.url(), "--token", "vta_wrong", "--ca", &ca],
    );
    assert_eq!(out.code, 1, "{out}");
    assert_eq!(std::fs::read_to_string(&config).expect("config"), saved);

    // Plain HTTP is for loopback only: on a wildcard address the controller refuses to start.
    let mut settings = fleet.settings();
    settings["api_tls"] = json!({"plain_http": true});
    std::fs::write(fleet.dir().join("fleet.json"), settings.to_string()).expect("write");
    drop(ctl);
    let mut refused = fleet.spawn_run(None, Some("0.0.0.0:0".parse().expect("addr")));
    let exited = refused.wait(Duration::from_secs(15));
    assert!(!exited.success());
    assert!(
        refused.stderr().contains("loopback only"),
        "{}",
        refused.output()
    );
}
