//! Architecture invariant: the pure crates cannot do IO, because they
//! depend on nothing that can, and they read no clock, so the controller,
//! the simulator and `vt diff` all call them with the time and observations
//! they choose. (`clippy.toml` in each crate also bans the clock.)

use std::path::Path;

/// Crates that do IO (or run tasks) and must never be a dependency of a pure crate.
const IO_CRATES: [&str; 12] = [
    "tokio",
    "git2",
    "notify",
    "redb",
    "axum",
    "quinn",
    "hyper",
    "reqwest",
    "ureq",
    "oci-client",
    "rustix",
    "libc",
];

/// The `[dependencies]` of a workspace crate's manifest.
fn dependencies(crate_dir: &str) -> Vec<String> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let manifest = std::fs::read_to_string(root.join(crate_dir).join("Cargo.toml"))
        .expect("read the manifest");
    let mut out = Vec::new();
    let mut in_deps = false;
    for line in manifest.lines() {
        let line = line.trim();
        if line.starts_with('[') {
            in_deps = line == "[dependencies]";
        } else if in_deps && !line.is_empty() && !line.starts_with('#') {
            let name = line.split(['=', '.', ' ']).next().unwrap_or_default();
            out.push(name.to_string());
        }
    }
    out
}

fn sources(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("source directory") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

#[test]
fn the_planner_crate_depends_on_nothing_that_does_io() {
    let deps = dependencies("plan");
    assert_eq!(
        deps,
        ["vt-repo", "serde", "serde_json", "hex", "sha2", "thiserror"],
        "vt-plan's dependencies changed: a pure crate takes no IO crate ({IO_CRATES:?})"
    );
}

#[test]
fn the_control_core_depends_on_no_runtime_socket_or_git() {
    let deps = dependencies("control");
    for io in IO_CRATES.iter().filter(|c| **c != "redb") {
        assert!(!deps.iter().any(|d| d == io), "vt-control depends on {io}");
    }
}

#[test]
fn the_planner_reads_no_files_no_repository_and_no_clock() {
    // vt-repo can read working trees and commits; the planner uses its types only.
    const FORBIDDEN: [&str; 7] = [
        "std::fs",
        "SystemTime",
        "Instant::now",
        "vt_repo::load",
        "Snapshot",
        "from_dir",
        "from_git",
    ];
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    sources(&src, &mut files);
    let mut found = Vec::new();
    for file in files.iter().filter(|f| !f.ends_with("test_support.rs")) {
        let text = std::fs::read_to_string(file).expect("read");
        for word in FORBIDDEN {
            if text.contains(word) {
                found.push(format!("{} uses {word}", file.display()));
            }
        }
    }
    assert!(
        found.is_empty(),
        "vt-plan must stay pure:\n{}",
        found.join("\n")
    );
}
