//! The commands on temporary repositories, with IDs redacted: output shapes,
//! bad input and exit codes.

use crate::{redact, shell};
use serde_json::Value;
use std::path::Path;

/// A temporary repository with one org, project, app and env.
fn demo() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    let (out, code, _) = shell(
        dir.path(),
        "vt init . && vt org create acme && vt project create shop && \
         vt app create web --image registry.local/web:1 --port 8080 && vt env create prod --app web",
    );
    assert_eq!(code, 0, "{out}");
    dir
}

fn json(dir: &Path, line: &str) -> (Value, i32) {
    let (out, code, _) = shell(dir, line);
    (
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("`{line}` prints JSON ({e}): {out}")),
        code,
    )
}

#[test]
fn the_issue_example_lists_resources_with_ids() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (out, code, _) = shell(
        dir.path(),
        "vt init demo && cd demo && vt org create acme && vt project create shop && vt app create web \
         --image registry.local/web:1 --port 8080 && vt env create prod --app web && vt validate && vt list --output json",
    );
    assert_eq!(code, 0, "{out}");
    let json_start = out.find('[').expect("a JSON list");
    let list: Value = serde_json::from_str(&out[json_start..]).expect("json");
    let ids: Vec<&str> = list
        .as_array()
        .expect("array")
        .iter()
        .map(|r| r["id"].as_str().expect("id"))
        .collect();
    assert_eq!(ids.len(), 4);
    for (id, prefix) in ids.iter().zip(["org_", "prj_", "app_", "env_"]) {
        assert!(id.starts_with(prefix) && id.len() == 30, "{id}");
    }
}

#[test]
fn created_files_snapshot() {
    let dir = demo();
    let app =
        std::fs::read_to_string(dir.path().join("orgs/acme/shop/web/app.yaml")).expect("app.yaml");
    assert_eq!(
        redact(&app),
        "id: <id>\nimage: registry.local/web:1\nports:\n- name: main\n  port: 8080\nhealth:\n  type: tcp\n  port: main\n"
    );
    let env =
        std::fs::read_to_string(dir.path().join("orgs/acme/shop/web/envs/prod.yaml")).expect("env");
    assert_eq!(redact(&env), "id: <id>\ninstances: 1\n");
}

#[test]
fn get_env_shows_the_effective_spec() {
    let dir = demo();
    let (value, code) = json(dir.path(), "vt get env prod --app web -o json");
    assert_eq!(code, 0);
    assert_eq!(value["name"], "acme/shop/web/prod");
    assert_eq!(value["effective"]["memory"], "256Mi");
    assert_eq!(value["effective"]["health"]["port"], "main");
    let (yaml, code, _) = shell(dir.path(), "vt get app web -o yaml");
    assert_eq!(code, 0);
    assert!(yaml.contains("envs:\n- prod\n"), "{yaml}");
}

#[test]
fn ids_survive_renames() {
    let dir = demo();
    let (before, _) = json(dir.path(), "vt get app web -o json");
    let (out, code, _) = shell(
        dir.path(),
        "mv orgs/acme/shop/web orgs/acme/shop/www && vt get app www -o json",
    );
    assert_eq!(code, 0, "{out}");
    let after: Value = serde_json::from_str(&out).expect("json");
    assert_eq!(before["id"], after["id"]);
}

#[test]
fn validation_errors_are_json_with_positions() {
    let dir = demo();
    std::fs::write(
        dir.path().join("orgs/acme/shop/web/envs/prod.yaml"),
        "instances: lots\nregions: [mars]\n",
    )
    .expect("write");
    let (value, code) = json(dir.path(), "vt validate -o json");
    assert_eq!(code, 3);
    assert_eq!(value["code"], "E_VALIDATION");
    let errors: Vec<(String, u64, String)> = value["errors"]
        .as_array()
        .expect("errors")
        .iter()
        .map(|e| {
            (
                e["code"].as_str().unwrap_or_default().into(),
                e["line"].as_u64().unwrap_or_default(),
                e["path"].as_str().unwrap_or_default().into(),
            )
        })
        .collect();
    assert_eq!(
        errors,
        [
            ("E_MISSING_ID".into(), 1, "id".into()),
            ("E_TYPE".into(), 1, "instances".into()),
            ("E_UNKNOWN_REGION".into(), 2, "regions[0]".into()),
        ]
    );
}

#[test]
fn bad_input_gets_clear_errors_and_exit_codes() {
    let dir = demo();
    let cases: [(&str, i32, &str); 9] = [
        ("vt org create acme", 5, "already exists"),
        ("vt org create Not_A_Label", 2, "is not a valid name"),
        ("vt project create web --org nope", 4, "no org named `nope`"),
        ("vt get app nope", 4, "no app named `nope`"),
        ("vt get pod web", 2, "`pod` is not a kind of resource"),
        (
            "vt validate --at no-such-rev",
            4,
            "revision `no-such-rev` does not exist",
        ),
        ("vt app create api --image 'Bad Image'", 2, "--image"),
        (
            "vt env create dev --region mars",
            2,
            "region `mars` is not declared",
        ),
        ("vt schema pod", 2, "no schema for `pod`"),
    ];
    for (line, want_code, want_text) in cases {
        let (out, code, _) = shell(dir.path(), line);
        assert_eq!(code, want_code, "`{line}`: {out}");
        assert!(
            out.contains(want_text),
            "`{line}` says `{want_text}`: {out}"
        );
    }
    // Nothing was written by the failed creates.
    let (out, _, _) = shell(
        dir.path(),
        "git status --porcelain --untracked-files=all | sort",
    );
    assert_eq!(
        out.trim(),
        "?? orgs/acme/org.yaml\n?? orgs/acme/shop/project.yaml\n?? orgs/acme/shop/web/app.yaml\n?? orgs/acme/shop/web/envs/prod.yaml"
    );
}

#[test]
fn outside_a_repository() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (out, code, _) = shell(dir.path(), "vt list");
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("no vt.yaml in"), "{out}");
    let (value, code) = json(dir.path(), "vt validate -o json --at HEAD -C .");
    assert_eq!((code, value["code"].as_str()), (1, Some("E_NOT_A_REPO")));
    let (out, code, _) = shell(dir.path(), "git init -q . && vt validate");
    assert_eq!(code, 3, "{out}");
    assert!(out.contains("E_NO_CONFIG"), "{out}");
}

#[test]
fn schema_is_json_schema() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (value, code) = json(dir.path(), "vt schema app");
    assert_eq!(code, 0);
    assert!(value["properties"]["image"].is_object(), "{value}");
    let (all, _) = json(dir.path(), "vt schema");
    assert_eq!(all.as_object().map(|o| o.len()), Some(5));
}

#[test]
fn usage_errors_are_in_the_chosen_format() {
    let dir = tempfile::tempdir().expect("tempdir");
    // (command line, what the message says, the command the hint names);
    // stderr is dropped: the error is on stdout.
    let cases = [
        (
            "vt env create dev --instances -1 -o json",
            "unexpected argument '-1' found",
            "vt env create",
        ),
        (
            "vt env create dev --instances 99999999999 --output json",
            "invalid value '99999999999' for '--instances <INSTANCES>'",
            "vt env create",
        ),
        (
            "vt --output=json status --bogus",
            "unexpected argument '--bogus' found",
            "vt status",
        ),
        (
            "vt -ojson env create",
            "the following required arguments were not provided: <NAME>",
            "vt env create",
        ),
        (
            "VT_OUTPUT=json vt events --limit lots",
            "invalid value 'lots' for '--limit <LIMIT>'",
            "vt events",
        ),
        (
            "vt fleet -o json",
            "'vt fleet' requires a subcommand",
            "vt fleet",
        ),
        ("VT_OUTPUT=json vt", "'vt' requires a subcommand", "vt"),
    ];
    for (line, message, command) in cases {
        let (value, code) = json(dir.path(), &format!("{line} 2>/dev/null"));
        assert_eq!(
            (code, value["code"].as_str()),
            (2, Some("E_USAGE")),
            "`{line}`: {value}"
        );
        let said = value["message"].as_str().unwrap_or_default();
        assert!(said.contains(message), "`{line}` says `{message}`: {value}");
        let hint = value["hint"].as_str().unwrap_or_default();
        assert!(
            hint.contains(&format!("Usage: {command}"))
                && hint.contains(&format!("`{command} --help`")),
            "`{line}`: {value}"
        );
        assert!(!value.to_string().contains('\u{1b}'), "no colours: {value}");
    }

    let (out, code, _) = shell(dir.path(), "vt status --bogus -o yaml 2>/dev/null");
    assert_eq!(code, 2, "{out}");
    let value: Value = serde_yaml::from_str(&out).unwrap_or_else(|e| panic!("YAML ({e}): {out}"));
    assert_eq!(value["code"], "E_USAGE", "{out}");
    assert_eq!(
        value["message"], "unexpected argument '--bogus' found",
        "{out}"
    );

    // Text stays as clap prints it, on stderr, exit 2; `-o text` wins over VT_OUTPUT.
    for line in [
        "vt status --bogus",
        "VT_OUTPUT=json vt status -o text --bogus",
    ] {
        let (out, code, _) = shell(dir.path(), &format!("{line} 2>&1 >/dev/null"));
        assert_eq!(code, 2, "`{line}`: {out}");
        assert!(
            out.starts_with("error: unexpected argument '--bogus' found")
                && out.contains("Usage: vt status"),
            "`{line}`: {out}"
        );
    }

    // Help and version are not errors, whatever the format.
    let (out, code, _) = shell(dir.path(), "vt status --help -o json");
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("Usage: vt status"), "{out}");
    let (out, code, _) = shell(dir.path(), "vt --version --output json");
    assert_eq!((code, out.starts_with("vt ")), (0, true), "{out}");
}
