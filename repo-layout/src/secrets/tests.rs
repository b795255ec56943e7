use super::crypto::NewKey;
use super::edit::{self, Stamp};
use super::*;
use crate::{load, Snapshot};

fn snapshot(files: &[(&str, String)]) -> Snapshot {
    Snapshot {
        files: files
            .iter()
            .map(|(p, c)| (p.to_string(), c.as_bytes().to_vec()))
            .collect(),
        ..Snapshot::default()
    }
}

const SECRETS: &str = "orgs/acme/shop/web/envs/prod.secrets.yaml";

fn repo(app_extra: &str, secrets: Option<String>, recipient: &str) -> Vec<(&'static str, String)> {
    let mut files = vec![
        (
            "vt.yaml",
            format!(
                "version: 1\nregions: [{{name: local}}]\nsecrets:\n  recipients: [{recipient}]\n"
            ),
        ),
        (
            "orgs/acme/org.yaml",
            "id: org_01jdq0000000000000000000aa\n".into(),
        ),
        (
            "orgs/acme/shop/project.yaml",
            "id: prj_01jdq0000000000000000000aa\n".into(),
        ),
        (
            "orgs/acme/shop/web/app.yaml",
            format!("id: app_01jdq0000000000000000000aa\nimage: web:1\n{app_extra}"),
        ),
        (
            "orgs/acme/shop/web/envs/prod.yaml",
            "id: env_01jdq0000000000000000000aa\n".into(),
        ),
    ];
    if let Some(text) = secrets {
        files.push((SECRETS, text));
    }
    files
}

fn value(bytes: &[u8]) -> SecretValue {
    SecretValue::new(bytes.to_vec())
}

fn file_with(key: &NewKey, secrets: &[(&str, &[u8])]) -> SecretsFile {
    let mut file = SecretsFile::default();
    for (name, v) in secrets {
        edit::set(
            &mut file,
            name,
            &value(v),
            std::slice::from_ref(&key.recipient),
            &Stamp::default(),
        )
        .expect("set");
    }
    file
}

#[test]
fn seal_and_open_roundtrip_with_every_recipient() {
    let fleet = NewKey::generate();
    let team = NewKey::generate();
    let sealed = seal(
        b"hunter2",
        &[fleet.recipient.clone(), team.recipient.clone()],
    )
    .expect("seal");
    assert!(sealed.0.starts_with(ARMOR_BEGIN), "armored: {}", sealed.0);
    assert!(!sealed.0.contains("hunter2"));
    for key in [&fleet, &team] {
        let opened = Keyring::of(key).open(&sealed).expect("open");
        assert_eq!(opened.expose(), b"hunter2");
    }
    let stranger = NewKey::generate();
    let err = Keyring::of(&stranger).open(&sealed).expect_err("wrong key");
    assert!(matches!(err, CryptoError::NoMatchingKey(1)), "{err}");
    assert!(
        err.to_string().contains("none of the 1 fleet key(s)"),
        "{err}"
    );
}

#[test]
fn keyring_files_hold_old_and_new_identities() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("age-identities.txt");
    assert!(Keyring::load(&path).expect("missing is empty").is_empty());
    let old = NewKey::generate();
    let new = NewKey::generate();
    old.append_to(&path, "t1").expect("append");
    new.append_to(&path, "t2").expect("append");
    let mode = std::fs::metadata(&path)
        .map(|m| std::os::unix::fs::PermissionsExt::mode(&m.permissions()) & 0o777);
    assert_eq!(mode.ok(), Some(0o600));
    let keyring = Keyring::load(&path).expect("load");
    assert_eq!(
        keyring.recipients(),
        [old.recipient.clone(), new.recipient.clone()]
    );
    let sealed = seal(b"v", std::slice::from_ref(&old.recipient)).expect("seal");
    assert_eq!(
        keyring.open(&sealed).expect("old key still opens").expose(),
        b"v"
    );
    std::fs::write(&path, "# c\nnot-a-key\n").expect("write");
    let err = Keyring::load(&path).expect_err("bad line");
    assert!(
        err.to_string()
            .ends_with(":2: not an age identity (AGE-SECRET-KEY-1...)"),
        "{err}"
    );
}

#[test]
fn debug_never_shows_values() {
    let v = value(b"hunter2");
    assert_eq!(format!("{v:?}"), "SecretValue(<redacted, 7 bytes>)");
    let key = NewKey::generate();
    assert!(!format!("{:?}", Keyring::of(&key)).contains("AGE-SECRET-KEY"));
}

#[test]
fn set_bumps_versions_and_the_file_has_no_clear_value() {
    let key = NewKey::generate();
    let mut file = file_with(&key, &[("db", b"pw-one")]);
    let stamp = Stamp {
        by: Some("A <a@b>".into()),
        at: Some(edit::rfc3339(1_767_225_600)),
    };
    let v = edit::set(
        &mut file,
        "db",
        &value(b"pw-two"),
        std::slice::from_ref(&key.recipient),
        &stamp,
    )
    .expect("set");
    assert_eq!(v, 2);
    let entry = file.get("db").expect("db");
    assert_eq!(entry.updated_at.as_deref(), Some("2026-01-01T00:00:00Z"));
    assert_eq!(
        Keyring::of(&key).open(&entry.value).expect("open").expose(),
        b"pw-two"
    );
    let text = edit::to_text(&file, "acme/shop/web/prod");
    assert!(!text.contains("pw-two") && !text.contains("pw-one"));
    let back: SecretsFile = serde_yaml::from_str(&text).expect("parses back");
    assert_eq!(back, file);
    assert!(edit::set(
        &mut file,
        "bad name",
        &value(b"x"),
        std::slice::from_ref(&key.recipient),
        &stamp
    )
    .is_err());
    assert!(matches!(
        edit::set(
            &mut file,
            "empty",
            &value(b""),
            std::slice::from_ref(&key.recipient),
            &stamp
        ),
        Err(edit::EditError::Empty(_))
    ));
    assert_eq!(edit::unset(&mut file, "db", SECRETS).expect("unset"), 2);
    assert!(edit::unset(&mut file, "db", SECRETS).is_err());
}

#[test]
fn the_loader_puts_versions_in_the_effective_spec() {
    let key = NewKey::generate();
    let text = edit::to_text(&file_with(&key, &[("db", b"pw"), ("api", b"k")]), "x");
    let loaded = load(&snapshot(&repo(
        "secrets: [{name: db, path: /run/secrets/db, on_change: signal}]\n",
        Some(text),
        &key.recipient,
    )));
    assert_eq!(loaded.diagnostics, []);
    let spec = loaded.state.envs[0].effective.as_ref().expect("resolved");
    assert_eq!(spec.secrets[0].version, 1);
    assert_eq!(spec.secrets[0].signal_number(), Some(1));
    assert_eq!(loaded.state.secrets[0].content.secrets.len(), 2);
}

#[test]
fn a_missing_secret_names_app_env_secret_and_file() {
    let key = NewKey::generate();
    let loaded = load(&snapshot(&repo(
        "secrets: [{name: db, path: /run/secrets/db}]\n",
        None,
        &key.recipient,
    )));
    assert_eq!(loaded.diagnostics.len(), 1, "{:?}", loaded.diagnostics);
    let d = &loaded.diagnostics[0];
    assert_eq!((d.code, d.file.as_str()), (Code::MissingSecret, SECRETS));
    assert!(
        d.message
            .contains("app acme/shop/web env prod references secret `db`"),
        "{}",
        d.message
    );
}

#[test]
fn bad_secrets_files_are_diagnosed_without_quoting_values() {
    let text = "secrets:\n  - name: db\n    version: 0\n    value: hunter2\n  - name: db\n    version: 1\n    value: \"-----BEGIN AGE ENCRYPTED FILE-----\"\n";
    let loaded = load(&snapshot(&repo(
        "",
        Some(text.into()),
        &NewKey::generate().recipient,
    )));
    let codes: Vec<_> = loaded
        .diagnostics
        .iter()
        .map(|d| (d.code, d.path.as_str(), d.line))
        .collect();
    assert_eq!(
        codes,
        [
            (Code::InvalidValue, "secrets[0].version", 3),
            (Code::InvalidValue, "secrets[0].value", 4),
            (Code::DuplicateName, "secrets[1].name", 5),
        ]
    );
    assert!(loaded
        .diagnostics
        .iter()
        .all(|d| !d.to_string().contains("hunter2")));
}

#[test]
fn check_values_decrypts_and_checks_formats() {
    let key = NewKey::generate();
    let text = edit::to_text(
        &file_with(&key, &[("db", b"tiny5"), ("api", b"abc-123")]),
        "x",
    );
    let refs = "secrets:\n  - {name: db, path: /run/secrets/db, format: {min_length: 8}}\n  - {name: api, path: /run/api/key, format: {pattern: '[a-z]+-[0-9]+'}}\n";
    let mut loaded = load(&snapshot(&repo(refs, Some(text.clone()), &key.recipient)));
    assert_eq!(check_values(&mut loaded, &Keyring::of(&key)), 2);
    assert_eq!(loaded.diagnostics.len(), 1, "{:?}", loaded.diagnostics);
    let d = &loaded.diagnostics[0];
    assert_eq!(d.code, Code::SecretFormat);
    assert!(
        d.message
            .contains("secret `db` version 1 of app acme/shop/web env prod is 5 bytes long"),
        "{}",
        d.message
    );
    assert!(!d.to_string().contains("tiny5"));

    let mut loaded = load(&snapshot(&repo(refs, Some(text), &key.recipient)));
    check_values(&mut loaded, &Keyring::of(&NewKey::generate()));
    let codes: Vec<_> = loaded.diagnostics.iter().map(|d| d.code).collect();
    assert_eq!(
        codes,
        [Code::SecretUndecryptable, Code::SecretUndecryptable]
    );
    assert!(loaded.diagnostics[0]
        .message
        .contains("cannot be decrypted: none of the 1 fleet key(s)"));
}

#[test]
fn a_bad_fleet_recipient_is_an_invalid_value() {
    let loaded = load(&snapshot(&repo("", None, "age1nope")));
    let found: Vec<_> = loaded
        .diagnostics
        .iter()
        .map(|d| (d.code, d.file.as_str(), d.path.as_str()))
        .collect();
    assert_eq!(
        found,
        [(Code::InvalidValue, "vt.yaml", "secrets.recipients[0]")]
    );
}

#[test]
fn bad_signals_and_patterns_are_invalid_values() {
    let key = NewKey::generate();
    let text = edit::to_text(&file_with(&key, &[("db", b"x")]), "x");
    let loaded = load(&snapshot(&repo(
        "secrets: [{name: db, path: /run/secrets/db, on_change: signal, signal: SIGFOO, format: {pattern: '('}}]\n",
        Some(text),
        &key.recipient,
    )));
    let paths: Vec<_> = loaded.diagnostics.iter().map(|d| d.path.as_str()).collect();
    assert_eq!(paths, ["secrets[0].signal", "secrets[0].format.pattern"]);
}

#[test]
fn in_place_only_for_signal_secrets_and_scaling() {
    let key = NewKey::generate();
    let spec = |on_change: &str, version_bump: bool, instances: u32| {
        let mut file = file_with(&key, &[("db", b"1")]);
        if version_bump {
            edit::set(
                &mut file,
                "db",
                &value(b"2"),
                std::slice::from_ref(&key.recipient),
                &Stamp::default(),
            )
            .expect("set");
        }
        let loaded = load(&snapshot(&repo(
            &format!("instances: {instances}\nsecrets: [{{name: db, path: /run/secrets/db, on_change: {on_change}}}]\n"),
            Some(edit::to_text(&file, "x")),
            &key.recipient,
        )));
        assert_eq!(loaded.diagnostics, []);
        loaded.state.envs[0].effective.clone().expect("resolved")
    };
    let changes =
        in_place_change(&spec("signal", false, 1), &spec("signal", true, 1)).expect("in place");
    assert_eq!(
        changes,
        [SecretChange {
            name: "db".into(),
            path: "/run/secrets/db".into(),
            from: 1,
            to: 2,
            signal: Some("SIGHUP".into())
        }]
    );
    assert_eq!(
        in_place_change(&spec("restart", false, 1), &spec("restart", false, 3)),
        Some(vec![])
    );
    assert_eq!(
        in_place_change(&spec("restart", false, 1), &spec("restart", true, 1)),
        None
    );
    assert_eq!(
        in_place_change(&spec("signal", false, 1), &spec("restart", true, 1)),
        None
    );
}

#[test]
fn reseal_all_moves_every_value_to_a_new_key() {
    let old = NewKey::generate();
    let new = NewKey::generate();
    let mut file = file_with(&old, &[("a", b"1"), ("b", b"2")]);
    let keyring = Keyring::of(&old);
    assert_eq!(
        edit::reseal_all(
            &mut file,
            SECRETS,
            &keyring,
            std::slice::from_ref(&new.recipient)
        )
        .expect("reseal"),
        2
    );
    for (name, v) in [("a", b"1"), ("b", b"2")] {
        let entry = file.get(name).expect("entry");
        assert_eq!(entry.version, 1, "a key rotation changes no version");
        assert_eq!(
            Keyring::of(&new)
                .open(&entry.value)
                .expect("new key")
                .expose(),
            v
        );
        assert!(
            keyring.open(&entry.value).is_err(),
            "no longer to the old key"
        );
    }
}

#[test]
fn config_recipients_replace_the_secrets_section_only() {
    let text = "version: 1\n# regions\nregions:\n  - name: local\nsecrets:\n  recipients:\n    - age1old\ndefaults:\n  instances: 1\n";
    let out = edit::set_config_recipients(text, &["age1new".into()]);
    assert_eq!(
        out,
        "version: 1\n# regions\nregions:\n  - name: local\ndefaults:\n  instances: 1\nsecrets:\n  recipients:\n    - age1new\n"
    );
    let config: crate::schema::RepoConfig = serde_yaml::from_str(&out).expect("parses");
    assert_eq!(
        config.secrets.map(|s| s.recipients),
        Some(vec!["age1new".to_string()])
    );
    assert_eq!(
        edit::set_config_recipients("version: 1", &["a".into()]),
        "version: 1\nsecrets:\n  recipients:\n    - a\n"
    );
    // A byte order mark does not hide a first `secrets:` line, and stays.
    assert_eq!(
        edit::set_config_recipients(
            "\u{feff}secrets:\n  recipients: [old]\nversion: 1\n",
            &["a".into()]
        ),
        "\u{feff}version: 1\nsecrets:\n  recipients:\n    - a\n"
    );
}

#[test]
fn generated_values_and_timestamps() {
    let v = edit::generate(32).expect("random");
    assert_eq!(v.len(), 32);
    assert!(v.expose().iter().all(u8::is_ascii_alphanumeric));
    assert_ne!(edit::generate(32).expect("random"), v);
    assert_eq!(edit::rfc3339(0), "1970-01-01T00:00:00Z");
    assert_eq!(edit::rfc3339(951_782_400), "2000-02-29T00:00:00Z");
    assert_eq!(edit::rfc3339(1_772_323_199), "2026-02-28T23:59:59Z");
    assert_eq!(signal_number("hup"), Some(1));
    assert_eq!(signal_number("SIGUSR1"), Some(10));
    assert_eq!(signal_number("SIGKILL"), None);
}
