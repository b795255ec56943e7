//! One case per validation error class: the code, the file and the line.

use crate::{snapshot, valid_files, APP_ID, ENV_ID, ORG_ID};
use vt_repo::{load, Code};

/// Applies `(path, content)` edits to the valid repository (`None` removes
/// the file) and returns the diagnostics as `(code, file, line)`.
fn check(edits: &[(&str, Option<&str>)]) -> Vec<(Code, String, usize)> {
    let mut files = valid_files();
    for (path, content) in edits {
        files.retain(|(p, _)| p != path);
        if let Some(content) = content {
            files.push((path.to_string(), content.to_string()));
        }
    }
    load(&snapshot(&files))
        .diagnostics
        .into_iter()
        .map(|d| (d.code, d.file, d.line))
        .collect()
}

const APP: &str = "orgs/acme/shop/web/app.yaml";
const ENV: &str = "orgs/acme/shop/web/envs/prod.yaml";

fn one(code: Code, file: &str, line: usize) -> Vec<(Code, String, usize)> {
    vec![(code, file.to_string(), line)]
}

#[test]
fn the_fixture_is_valid() {
    assert_eq!(check(&[]), []);
}

#[test]
fn malformed_yaml() {
    let app = format!("id: {APP_ID}\nimage: [web\n");
    assert_eq!(check(&[(APP, Some(&app))])[0].0, Code::Syntax);
}

#[test]
fn wrong_type() {
    let env = format!("id: {ENV_ID}\ninstances: three\n");
    assert_eq!(check(&[(ENV, Some(&env))]), one(Code::Type, ENV, 2));
}

#[test]
fn unknown_field_with_hint() {
    let env = format!("id: {ENV_ID}\ninstance: 3\n");
    let loaded = load(&snapshot(
        &[valid_files(), vec![(ENV.into(), env)]].concat(),
    ));
    let d = &loaded.diagnostics[0];
    assert_eq!(
        (d.code, d.file.as_str(), d.line, d.column, d.path.as_str()),
        (Code::UnknownField, ENV, 2, 1, "instance")
    );
    assert_eq!(d.hint.as_deref(), Some("did you mean `instances`?"));
}

#[test]
fn missing_field() {
    let app = format!("id: {APP_ID}\nimage: web:1\nvolumes:\n  - name: data\n    mount: /data\n");
    assert_eq!(check(&[(APP, Some(&app))]), one(Code::MissingField, APP, 4));
}

#[test]
fn missing_image_in_effective_spec() {
    let app = format!("id: {APP_ID}\nports: [{{name: http, port: 80}}]\n");
    assert_eq!(check(&[(APP, Some(&app))]), one(Code::MissingField, ENV, 1));
}

#[test]
fn impossible_sizes() {
    let app = format!("id: {APP_ID}\nimage: web:1\nresources:\n  memory: 1Mi\n  cpu: 12Q\n");
    assert_eq!(
        check(&[(APP, Some(&app))]),
        [
            (Code::Quantity, APP.to_string(), 4),
            (Code::Quantity, APP.to_string(), 5)
        ]
    );
}

#[test]
fn invalid_value() {
    let app = format!("id: {APP_ID}\nimage: Web:1\n");
    assert_eq!(check(&[(APP, Some(&app))]), one(Code::InvalidValue, APP, 2));
}

#[test]
fn invalid_names() {
    let files = valid_files()
        .into_iter()
        .map(|(p, c)| (p.replace("/web/", "/Web_App/"), c))
        .collect::<Vec<_>>();
    let codes: Vec<_> = load(&snapshot(&files))
        .diagnostics
        .into_iter()
        .map(|d| (d.code, d.file, d.line))
        .collect();
    assert_eq!(
        codes,
        one(Code::InvalidName, "orgs/acme/shop/Web_App/app.yaml", 0)
    );
}

#[test]
fn missing_id() {
    assert_eq!(
        check(&[(ENV, Some("instances: 1\n"))]),
        one(Code::MissingId, ENV, 1)
    );
}

#[test]
fn invalid_id() {
    assert_eq!(
        check(&[(ENV, Some("id: env_123\n"))]),
        one(Code::InvalidId, ENV, 1)
    );
    let env = format!("id: {APP_ID}\n");
    assert!(check(&[(ENV, Some(&env))]).contains(&(Code::InvalidId, ENV.to_string(), 1)));
}

#[test]
fn duplicate_ids() {
    let other = "orgs/acme/shop/api/app.yaml";
    let app = format!("\nid: {APP_ID}\nimage: api:1\n");
    assert_eq!(
        check(&[(other, Some(&app))]),
        one(Code::DuplicateId, APP, 1)
    );
}

#[test]
fn duplicate_names() {
    let app = format!("id: {APP_ID}\nimage: web:1\nports:\n  - {{name: http, port: 80}}\n  - {{name: http, port: 81}}\n");
    assert_eq!(
        check(&[(APP, Some(&app))]),
        one(Code::DuplicateName, APP, 5)
    );
}

#[test]
fn dangling_references() {
    assert_eq!(
        check(&[("orgs/acme/org.yaml", None)]),
        one(Code::DanglingReference, "orgs/acme/shop/project.yaml", 0)
    );
    assert_eq!(check(&[(APP, None)]), one(Code::DanglingReference, ENV, 0));
    let app = format!("id: {APP_ID}\nimage: web:1\nports: [{{name: http, port: 80}}]\nendpoints:\n  - {{name: public, port: 443, target: admin}}\n");
    assert_eq!(
        check(&[(APP, Some(&app))]),
        one(Code::DanglingReference, APP, 5)
    );
}

#[test]
fn unknown_region() {
    let env = format!("id: {ENV_ID}\nregions: [local, mars]\n");
    assert_eq!(
        check(&[(ENV, Some(&env))]),
        one(Code::UnknownRegion, ENV, 2)
    );
}

#[test]
fn quota_exceeded() {
    let org = format!("id: {ORG_ID}\nquotas:\n  max_instances: 1\n  max_memory: 1Gi\n");
    assert_eq!(
        check(&[("orgs/acme/org.yaml", Some(&org))]),
        one(Code::QuotaExceeded, "orgs/acme/org.yaml", 3)
    );
}

#[test]
fn no_config() {
    let found = check(&[("vt.yaml", None)]);
    assert!(
        found.contains(&(Code::NoConfig, "vt.yaml".to_string(), 0)),
        "{found:?}"
    );
}

#[test]
fn unsupported_version() {
    assert_eq!(
        check(&[("vt.yaml", Some("version: 2\nregions: [{name: local}]\n"))]),
        one(Code::UnsupportedVersion, "vt.yaml", 1)
    );
}

#[test]
fn unexpected_file() {
    assert_eq!(
        check(&[("orgs/acme/stray.yaml", Some("a: 1\n"))]),
        one(Code::UnexpectedFile, "orgs/acme/stray.yaml", 0)
    );
}

#[test]
fn every_error_in_the_repo_is_reported_at_once() {
    let env = format!("id: {ENV_ID}\ninstances: many\nregion: [x]\n");
    let app = format!("id: {APP_ID}\nimage: web:1\nresources: {{memory: 1Q}}\n");
    let found = check(&[
        (ENV, Some(&env)),
        (APP, Some(&app)),
        ("vt.yaml", Some("version: 1\nregions: [{name: Local}]\n")),
    ]);
    assert_eq!(found.len(), 4, "{found:?}");
}

#[test]
fn duplicate_keys_at_their_own_line() {
    let app = format!(
        "id: {APP_ID}\nimage: web:1\nports:\n  - name: http\n    port: 8080\n    port: 8081\nimage: web:2\nresources: {{cpu: lots}}\n"
    );
    let loaded = load(&snapshot(
        &[valid_files(), vec![(APP.into(), app)]].concat(),
    ));
    let found: Vec<_> = loaded
        .diagnostics
        .iter()
        .map(|d| (d.code, d.file.as_str(), d.line, d.column, d.path.as_str()))
        .collect();
    // Every duplicate, and the rest of the file still checked.
    assert_eq!(
        found,
        [
            (Code::DuplicateKey, APP, 6, 5, "ports[0].port"),
            (Code::DuplicateKey, APP, 7, 1, "image"),
            (Code::Quantity, APP, 8, 18, "resources.cpu"),
        ]
    );
    assert_eq!(Code::DuplicateKey.as_str(), "E_DUPLICATE_KEY");
    assert!(loaded.diagnostics[1].message.contains("first at line 2"));
    // The first of the two is the one read.
    let app = &loaded.state.apps[0];
    assert_eq!(app.spec.image.as_deref(), Some("web:1"));
}

#[test]
fn byte_order_mark() {
    let env = format!("\u{feff}id: {ENV_ID}\ninstances: three\n");
    assert_eq!(check(&[(ENV, Some(&env))]), one(Code::Type, ENV, 2));
    let env = format!("\u{feff}id: {ENV_ID}\ninstances: 2\n");
    let config = "\u{feff}version: 1\nregions:\n  - name: local\n";
    assert_eq!(check(&[(ENV, Some(&env)), ("vt.yaml", Some(config))]), []);
    let loaded = load(&snapshot(
        &[
            valid_files(),
            vec![(ENV.into(), format!("\u{feff}instance: 2\nid: {ENV_ID}\n"))],
        ]
        .concat(),
    ));
    let d = &loaded.diagnostics[0];
    assert_eq!(
        (d.code, d.line, d.column, d.path.as_str()),
        (Code::UnknownField, 1, 1, "instance")
    );
}

#[test]
fn children_of_a_file_that_does_not_parse() {
    // The env names a region: with vt.yaml unreadable, it is not "undeclared".
    let env = format!("id: {ENV_ID}\nregions: [eu-west]\n");
    const ORG: &str = "orgs/acme/org.yaml";
    const PRJ: &str = "orgs/acme/shop/project.yaml";
    const SECRETS: &str = "orgs/acme/shop/web/envs/prod.secrets.yaml";
    let broken = "id: [oops\nquotas: {}\n";
    // Only the syntax error: no orphans, no missing image, no dangling secrets file.
    for file in ["vt.yaml", ORG, PRJ, APP, ENV] {
        let found = check(&[
            (ENV, Some(&env)),
            (file, Some(broken)),
            (SECRETS, Some("secrets: []\n")),
        ]);
        assert_eq!(found.len(), 1, "{file}: {found:?}");
        assert_eq!((found[0].0, found[0].1.as_str()), (Code::Syntax, file));
        assert!(found[0].2 > 0, "{file}: at its line");
    }
    // Nor for a file that is not UTF-8.
    let mut files = valid_files();
    files.retain(|(p, _)| p != ORG);
    let mut snap = snapshot(&files);
    snap.files.insert(ORG.into(), vec![0xff, 0xfe, b'x']);
    let found: Vec<_> = load(&snap)
        .diagnostics
        .into_iter()
        .map(|d| (d.code, d.file))
        .collect();
    assert_eq!(found, [(Code::Syntax, ORG.to_string())]);
    // An env referencing a secret whose secrets file does not parse: just the syntax error.
    let app = format!("id: {APP_ID}\nimage: web:1\nsecrets:\n  - {{name: db, path: /run/db}}\n");
    assert_eq!(
        check(&[(APP, Some(&app)), (SECRETS, Some(broken))]),
        one(Code::Syntax, SECRETS, 2)
    );
    // A parent that is really missing is still reported.
    assert_eq!(check(&[(ORG, None)]), one(Code::DanglingReference, PRJ, 0));
}

#[test]
fn quantity_overflow() {
    // 2^62 bytes × 4 instances is 2^64: it used to wrap to 0 and pass any quota.
    let app = format!("id: {APP_ID}\nimage: web:1\nresources:\n  memory: 4611686018427387904\n");
    let env = format!("id: {ENV_ID}\ninstances: 4\n");
    let org = format!("id: {ORG_ID}\nquotas:\n  max_memory: 1Gi\n");
    let expected = one(Code::QuantityOverflow, APP, 4);
    assert_eq!(check(&[(APP, Some(&app)), (ENV, Some(&env))]), expected);
    assert_eq!(
        check(&[
            (APP, Some(&app)),
            (ENV, Some(&env)),
            ("orgs/acme/org.yaml", Some(&org))
        ]),
        expected
    );
    let loaded = load(&snapshot(
        &[
            valid_files(),
            vec![(APP.into(), app.clone()), (ENV.into(), env)],
        ]
        .concat(),
    ));
    let d = &loaded.diagnostics[0];
    assert_eq!(
        (d.code.as_str(), d.path.as_str()),
        ("E_QUANTITY_OVERFLOW", "resources.memory")
    );
    assert!(d.message.contains("does not fit"), "{}", d.message);
    // Set in the env file: reported there. 2^62 × 3 fits, a second env does not.
    let env = format!("id: {ENV_ID}\ninstances: 3\nresources: {{memory: 4611686018427387904}}\n");
    assert_eq!(check(&[(ENV, Some(&env))]), []);
    let other = "env_01jdq0000000000000000000bb";
    let staging = "orgs/acme/shop/web/envs/staging.yaml";
    let second = format!("id: {other}\nresources: {{memory: 4611686018427387904}}\n");
    assert_eq!(
        check(&[(ENV, Some(&env)), (staging, Some(&second))]),
        one(Code::QuantityOverflow, staging, 2)
    );
}

#[test]
fn quantities_that_do_not_fit_their_type() {
    let app = format!(
        "id: {APP_ID}\nimage: web:1\nresources:\n  memory: 99999999999Ti\n  cpu: 99999999999\nvolumes:\n  - {{name: data, mount: /data, size: 18446744073709551616}}\nhealth: {{interval: 99999999999999999999ms}}\nports: [{{name: http, port: 80}}]\n"
    );
    let loaded = load(&snapshot(
        &[valid_files(), vec![(APP.into(), app)]].concat(),
    ));
    let found: Vec<_> = loaded
        .diagnostics
        .iter()
        .map(|d| (d.code, d.line, d.message.contains("too large")))
        .collect();
    assert_eq!(
        found,
        [
            (Code::Quantity, 4, true),
            (Code::Quantity, 5, true),
            (Code::Quantity, 7, true),
            (Code::Quantity, 8, true),
        ]
    );
}
