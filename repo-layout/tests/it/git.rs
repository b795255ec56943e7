//! Loading from git commits, not from the checkout.

use std::path::Path;
use vt_repo::write::{commit, create_org, init};
use vt_repo::{load, Snapshot, SourceError};

#[test]
fn loading_at_an_older_commit_returns_that_commits_state() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path();
    init(root).expect("init");
    let repo = git2::Repository::open(root).expect("open");
    create_org(root, "acme").expect("create acme");
    commit(&repo, &[Path::new("orgs/acme/org.yaml")], "add acme").expect("commit");
    create_org(root, "umbrella").expect("create umbrella in the working tree only");

    let names = |snapshot: &Snapshot| {
        load(snapshot)
            .state
            .orgs
            .iter()
            .map(|o| o.name.clone())
            .collect::<Vec<_>>()
    };
    assert_eq!(
        names(&Snapshot::from_dir(root).expect("tree")),
        ["acme", "umbrella"]
    );
    assert_eq!(
        names(&Snapshot::from_git(root, "HEAD").expect("head")),
        ["acme"]
    );
    assert!(names(&Snapshot::from_git(root, "HEAD~1").expect("first")).is_empty());

    // A file deleted from the checkout is still there at HEAD.
    std::fs::remove_file(root.join("orgs/acme/org.yaml")).expect("rm");
    assert_eq!(
        names(&Snapshot::from_git(root, "HEAD").expect("head")),
        ["acme"]
    );
}

#[test]
fn bad_revisions_and_non_repositories_are_errors() {
    let dir = tempfile::tempdir().expect("tempdir");
    assert!(matches!(
        Snapshot::from_git(dir.path(), "HEAD"),
        Err(SourceError::NotARepo { .. })
    ));
    init(dir.path()).expect("init");
    assert!(matches!(
        Snapshot::from_git(dir.path(), "nope"),
        Err(SourceError::NoSuchRevision { .. })
    ));
}

#[test]
fn files_with_a_byte_order_mark_load_from_the_tree_and_from_commits() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path();
    init(root).expect("init");
    let repo = git2::Repository::open(root).expect("open");
    create_org(root, "acme").expect("create acme");
    for file in ["vt.yaml", "orgs/acme/org.yaml"] {
        let path = root.join(file);
        let text = std::fs::read_to_string(&path).expect("read");
        // As some Windows editors save it.
        std::fs::write(&path, format!("\u{feff}{text}")).expect("write");
    }
    commit(
        &repo,
        &[Path::new("vt.yaml"), Path::new("orgs/acme/org.yaml")],
        "with BOMs",
    )
    .expect("commit");
    // In the working tree only: an unknown field, to check its position.
    let org = root.join("orgs/acme/org.yaml");
    let text = std::fs::read_to_string(&org).expect("read");
    std::fs::write(&org, format!("{text}nmae: x\n")).expect("write");

    let tree = load(&Snapshot::from_dir(root).expect("tree"));
    let found: Vec<_> = tree
        .diagnostics
        .iter()
        .map(|d| (d.code, d.file.as_str(), d.line, d.column))
        .collect();
    let line = text.lines().count() + 1;
    assert_eq!(
        found,
        [(vt_repo::Code::UnknownField, "orgs/acme/org.yaml", line, 1)]
    );
    assert_eq!(tree.state.orgs.len(), 1);

    let head = load(&Snapshot::from_git(root, "HEAD").expect("head"));
    assert_eq!(head.diagnostics, []);
    assert_eq!(head.state.orgs.len(), 1);
    assert_eq!(head.state.config.regions.len(), 1);
}
