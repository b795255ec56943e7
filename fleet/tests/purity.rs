//! Architecture invariant: the planner and the controller's decision modules
//! do no IO and read no clock, so the controller, the simulator and `vt diff`
//! can all call them with the time and observations they choose.

use std::path::Path;

const FORBIDDEN: [&str; 9] = [
    "tokio",
    "git2",
    "notify",
    "redb",
    "axum",
    "quinn",
    "std::fs",
    "SystemTime::now",
    "Instant::now",
];

fn rust_files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("source directory") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

#[test]
fn pure_modules_do_no_io_and_read_no_clock() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src.join("plan"), &mut files);
    for pure in ["events.rs", "releases.rs", "views.rs", "preview.rs"] {
        files.push(src.join("controller").join(pure));
    }
    let mut found = Vec::new();
    for file in &files {
        let text = std::fs::read_to_string(file).expect("read");
        for word in FORBIDDEN {
            if text.contains(word) {
                found.push(format!("{} uses {word}", file.display()));
            }
        }
    }
    assert!(
        found.is_empty(),
        "pure modules must stay pure:\n{}",
        found.join("\n")
    );
}
