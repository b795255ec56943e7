//! The API wants the fleet's bearer token: without it or with a wrong one
//! every route answers 401, and the CLI exits 1 with `E_UNAUTHORIZED`.

use crate::support::fleet::FleetDir;
use crate::support::repo::Repo;
use crate::support::Sandbox;
use serde_json::json;

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
        .env("VT_TOKEN", "vta_wrong");
    let out = sb.env().run("vt-cli", cmd);
    assert_eq!(out.code, 1, "{out}");
    assert!(
        out.stderr.contains("missing or wrong API token") && out.stderr.contains("VT_TOKEN"),
        "{out}"
    );
}
