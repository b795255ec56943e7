//! The README's `console` examples, run and compared, so the README cannot rot.

use crate::{matches, shell};
use std::path::PathBuf;

/// A command from a console block and the output it must print.
struct Step {
    command: String,
    expected: String,
    exit: i32,
}

fn console_blocks(markdown: &str) -> Vec<Vec<Step>> {
    let mut blocks = Vec::new();
    let mut current: Option<Vec<Step>> = None;
    for line in markdown.lines() {
        match (&mut current, line.trim_end()) {
            (None, "```console") => current = Some(Vec::new()),
            (Some(_), "```") => blocks.extend(current.take()),
            (Some(steps), line) => {
                if let Some(command) = line.strip_prefix("$ ") {
                    steps.push(Step {
                        command: command.into(),
                        expected: String::new(),
                        exit: 0,
                    });
                } else if let Some(step) = steps.last_mut() {
                    match line
                        .strip_prefix("[exit: ")
                        .and_then(|s| s.strip_suffix(']'))
                    {
                        Some(code) => step.exit = code.parse().expect("exit code"),
                        None => {
                            step.expected.push_str(line);
                            step.expected.push('\n');
                        }
                    }
                }
            }
            (None, _) => {}
        }
    }
    blocks
}

#[test]
fn readme_examples_work() {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md"))
        .expect("README.md");
    let blocks = console_blocks(&readme);
    assert!(!blocks.is_empty(), "the README has console examples");
    // One directory for all blocks: later examples continue the earlier ones.
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cwd: PathBuf = dir.path().into();
    for step in blocks.iter().flatten() {
        let (output, exit, end) = shell(&cwd, &step.command);
        assert!(
            matches(&step.expected, &output) && exit == step.exit,
            "README example `{}`\nexpected (exit {}):\n{}\ngot (exit {exit}):\n{output}",
            step.command,
            step.exit,
            step.expected
        );
        cwd = end;
    }
}
