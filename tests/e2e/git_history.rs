//! The tracked branch's history made visible: a force-push back to an older
//! commit is a `commit.rewound` event, a branch deleted on the remote is
//! `branch.missing` (once) and shown by `vt status`, and pushing it again is
//! `branch.restored`.

use crate::support::api::Api;
use crate::support::fleet::FleetDir;
use crate::support::repo::{origin_and_clone, APP_FILE};
use crate::support::status::text;
use crate::support::{poll, wait_until, Sandbox};
use serde_json::{json, Value};
use std::time::Duration;

/// How long the controller may take to notice a push (it fetches every 100 ms).
const NOTICE: Duration = Duration::from_secs(15);

/// The events of `kind`, from the API.
fn events(api: &Api, kind: &str) -> Vec<Value> {
    api.get(&format!("/v1/events?kind={kind}"))
        .as_array()
        .cloned()
        .unwrap_or_default()
}

/// Waits until there is exactly one event of `kind` and returns it.
fn one_event(api: &Api, kind: &str) -> Value {
    let found = wait_until(&format!("a {kind} event"), NOTICE, || {
        let found = events(api, kind);
        (!found.is_empty()).then_some(found)
    });
    assert_eq!(found.len(), 1, "one {kind} event: {found:?}");
    found[0].clone()
}

#[test]
fn force_pushes_and_deleted_branches_are_events_and_status() {
    let sb = Sandbox::new();
    let (bare, clone) = origin_and_clone(&sb);
    let url = format!("file://{}", bare.display());
    let fleet = FleetDir::init(&sb, "fleet", &url);
    fleet.set("fetch_interval_ms", json!(100));
    let ctl = fleet.start();
    let api = ctl.api();
    let first = clone.head();
    let source_head = |want: &str| {
        let want = want.to_string();
        let api = api.clone();
        move || {
            let status = api.try_status()?;
            (status["source"]["head"] == want.as_str()).then_some(status)
        }
    };
    let status = wait_until("the first commit is read", NOTICE, source_head(&first));
    assert_eq!(status["source"]["branch"], "main", "{status}");
    assert_eq!(status["source"]["location"], url.as_str(), "{status}");

    // Two pushes: fast-forwards, nothing rewound.
    clone.replace(APP_FILE, "registry.local/web:1", "registry.local/web:2");
    clone.commit("web: image 2");
    clone.replace(APP_FILE, "registry.local/web:2", "registry.local/web:3");
    let second = clone.commit("web: image 3");
    clone.push();
    wait_until("the second push is read", NOTICE, source_head(&second));
    assert_eq!(events(&api, "commit.rewound"), Vec::<Value>::new());

    // Force-pushed back to the first commit: the two are no longer on the branch.
    clone.git(&[
        "push",
        "-q",
        "-f",
        "origin",
        &format!("{first}:refs/heads/main"),
    ]);
    one_event(&api, "commit.rewound");
    let listed = ctl.json(&["events", "--kind", "commit.rewound"]);
    let rewound = &listed[0];
    assert_eq!(rewound["fields"]["from"], second.as_str(), "{rewound}");
    assert_eq!(rewound["fields"]["to"], first.as_str(), "{rewound}");
    assert_eq!(rewound["fields"]["dropped"], 2, "{rewound}");
    assert_eq!(
        text(rewound, "message"),
        format!(
            "branch main was rewound from {} to {} (force-push or reset): 2 commit(s) no longer \
             on the branch",
            &second[..12],
            &first[..12]
        )
    );
    let status = wait_until("the first commit is desired again", NOTICE, || {
        let status = api.try_status()?;
        (status["commit"]["sha"] == first.as_str()).then_some(status)
    });
    assert_eq!(status["source"]["head"], first.as_str(), "{status}");

    // Deleted on the remote (which, like a forge, lets the default branch
    // go): missing, once, and `vt status` says so.
    sb.env()
        .git(&bare, &["config", "receive.denyDeleteCurrent", "ignore"]);
    clone.git(&["push", "-q", "origin", "--delete", "main"]);
    let missing = one_event(&api, "branch.missing");
    assert_eq!(missing["fields"]["last_head"], first.as_str(), "{missing}");
    let repeated = poll(Duration::from_secs(1), || {
        let found = events(&api, "branch.missing");
        (found.len() > 1 || found[0].get("count").is_some()).then_some(found)
    });
    assert_eq!(repeated, None, "told once, not at every fetch");
    assert_eq!(
        events(&api, "source.failed"),
        Vec::<Value>::new(),
        "a reachable remote without the branch is not a failure"
    );
    let status = ctl.json(&["status"]);
    let source = &status["source"];
    assert!(source["missing_since"].is_u64(), "{status}");
    assert_eq!(
        source["head"],
        first.as_str(),
        "the last head is kept: {status}"
    );
    assert_eq!(
        status["commit"]["sha"],
        first.as_str(),
        "still desired: {status}"
    );
    let shown = ctl.cli_plain(&["status"]).ok().stdout;
    assert!(
        shown.contains(&format!("source {url} (branch main at {})", &first[..12])),
        "{shown}"
    );
    assert!(
        shown.contains("warning: branch main is missing since ")
            && shown
                .contains("nothing deploys until it returns (the last good commit keeps running)"),
        "{shown}"
    );

    // Pushed again: restored (and not rewound: it contains the last head).
    clone.push();
    let restored = one_event(&api, "branch.restored");
    assert_eq!(restored["fields"]["head"], second.as_str(), "{restored}");
    let status = wait_until(
        "the branch's head is read again",
        NOTICE,
        source_head(&second),
    );
    assert!(status["source"].get("missing_since").is_none(), "{status}");
    assert_eq!(events(&api, "commit.rewound").len(), 1);
    let shown = ctl.cli_plain(&["status"]).ok().stdout;
    assert!(!shown.contains("is missing"), "{shown}");
}
