//! Where commits come from: a remote fetched only when the signed webhook
//! says so, and a local repository watched for pushes.

use crate::support::fleet::FleetDir;
use crate::support::repo::{origin_and_clone, APP_FILE};
use crate::support::status::num;
use crate::support::{poll, wait_until, Sandbox};
use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use std::time::{Duration, Instant};

/// The releases of web, as (number, commit).
fn releases(ctl_api: &crate::support::api::Api) -> Vec<(u64, String)> {
    let list = ctl_api.get("/v1/releases?app=web");
    list.as_array()
        .map(|a| {
            a.iter()
                .map(|r| {
                    (
                        num(r, "number"),
                        r["commit"]["sha"].as_str().unwrap_or_default().to_string(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

fn sign(secret: &str, body: &[u8]) -> String {
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).expect("any key size");
    mac.update(body);
    let hex = hex::encode(mac.finalize().into_bytes());
    format!("sha256={hex}")
}

#[test]
fn a_remote_is_fetched_when_a_correctly_signed_webhook_arrives() {
    let sb = Sandbox::new();
    let (bare, clone) = origin_and_clone(&sb);
    let url = format!("file://{}", bare.display());
    let fleet = FleetDir::init(&sb, "fleet", &url);
    // Fetch (almost) never on its own: only the webhook can make it fetch.
    fleet.set("fetch_interval_ms", json!(600_000));
    let ctl = fleet.start();
    let api = ctl.api();
    let first = clone.head();
    wait_until(
        "the first fetch makes release 1",
        Duration::from_secs(15),
        || (releases(&api) == [(1, first.clone())]).then_some(()),
    );

    clone.replace(APP_FILE, "registry.local/web:1", "registry.local/web:2");
    let pushed = clone.commit("web: image 2");
    clone.push();

    let body = json!({"ref": "refs/heads/main", "after": pushed}).to_string();
    let secret = fleet.settings()["webhook_secret"]
        .as_str()
        .expect("webhook_secret")
        .to_string();
    let hook = ctl.api().with_token(None);
    let (status, answer) = hook.post("/v1/hooks/git", &[], body.as_bytes());
    assert_eq!((status, &answer["code"]), (401, &json!("E_BAD_SIGNATURE")));
    let wrong = sign("not-the-secret", body.as_bytes());
    let (status, answer) = hook.post(
        "/v1/hooks/git",
        &[("X-Hub-Signature-256", &wrong)],
        body.as_bytes(),
    );
    assert_eq!((status, &answer["code"]), (401, &json!("E_BAD_SIGNATURE")));
    // The signature covers the body: the right key over another body fails too.
    let other_body = sign(&secret, b"{}");
    let (status, _) = hook.post(
        "/v1/hooks/git",
        &[("X-Hub-Signature-256", &other_body)],
        body.as_bytes(),
    );
    assert_eq!(status, 401);
    // Refused hooks fetch nothing.
    let fetched = poll(Duration::from_secs(1), || {
        (releases(&api).len() > 1).then_some(())
    });
    assert!(
        fetched.is_none(),
        "a refused webhook made the controller fetch"
    );

    let right = sign(&secret, body.as_bytes());
    let sent = Instant::now();
    let (status, answer) = hook.post(
        "/v1/hooks/git",
        &[("X-Hub-Signature-256", &right)],
        body.as_bytes(),
    );
    assert_eq!((status, answer), (200, json!({"accepted": true})));
    let want = [(1, first), (2, pushed)];
    wait_until(
        "the pushed commit's release appears",
        Duration::from_secs(5),
        || (releases(&api) == want).then_some(()),
    );
    eprintln!("webhook to release: {:?}", sent.elapsed());
}

#[test]
fn a_push_to_a_watched_local_repository_is_seen_at_once() {
    let sb = Sandbox::new();
    let (bare, clone) = origin_and_clone(&sb);
    // A path, not a URL: watched (notify), with a 30 s safety-net poll.
    let fleet = FleetDir::init(&sb, "fleet", &bare.display().to_string());
    assert_eq!(fleet.settings()["poll_interval_ms"], 30_000);
    let ctl = fleet.start();
    let api = ctl.api();
    let first = clone.head();
    wait_until("release 1", Duration::from_secs(15), || {
        (releases(&api) == [(1, first.clone())]).then_some(())
    });

    clone.replace(APP_FILE, "registry.local/web:1", "registry.local/web:2");
    let pushed = clone.commit("web: image 2");
    clone.push();
    let pushed_at = Instant::now();
    let want = [(1, first), (2, pushed)];
    wait_until(
        "the push is seen within 1 s (the safety-net poll is 30 s)",
        Duration::from_secs(1),
        || (releases(&api) == want).then_some(()),
    );
    eprintln!("push to release: {:?}", pushed_at.elapsed());
    let status: Value = ctl.json(&["status"]);
    assert_eq!(status["commit"]["sha"], want[1].1.as_str());
}
