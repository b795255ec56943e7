//! CLI tests: the built `vt` binary run on temporary repositories.

mod commands;
mod readme;

use std::path::{Path, PathBuf};
use std::process::Command;

/// The directory holding the `vt` binary under test.
pub fn bin_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_vt"))
        .parent()
        .expect("the binary has a directory")
        .to_path_buf()
}

/// Runs a shell command line in `cwd` with `vt` on the PATH, returning the
/// combined stdout and stderr, the exit code and the directory it ended in.
pub fn shell(cwd: &Path, line: &str) -> (String, i32, PathBuf) {
    let path = format!(
        "{}:{}",
        bin_dir().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let script = format!("{line}\nstatus=$?\nprintf '\\n@@cwd=%s\\n' \"$PWD\"\nexit $status");
    let out = Command::new("bash")
        .arg("-c")
        .arg(script)
        .current_dir(cwd)
        .env("PATH", path)
        .env("NO_COLOR", "1")
        .env_remove("VT_OUTPUT")
        .env_remove("VT_REPO")
        .env_remove("VT_LOG")
        .output()
        .expect("bash runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let (stdout, cwd_line) = stdout.rsplit_once("\n@@cwd=").unwrap_or((&stdout, ""));
    let end = PathBuf::from(cwd_line.trim_end());
    let output = format!("{stdout}{}", String::from_utf8_lossy(&out.stderr));
    (output, out.status.code().unwrap_or(-1), end)
}

/// Replaces resource IDs (`app_<26 chars>`) with `<id>` so output compares.
pub fn redact(text: &str) -> String {
    let mut out = String::new();
    let mut rest = text;
    'scan: while !rest.is_empty() {
        for prefix in ["org_", "prj_", "app_", "env_"] {
            if let Some(tail) = rest.strip_prefix(prefix) {
                let n = tail
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric())
                    .count();
                if n == 26 {
                    out.push_str("<id>");
                    rest = &tail[26..];
                    continue 'scan;
                }
            }
        }
        let ch = rest.chars().next().expect("not empty");
        out.push(ch);
        rest = &rest[ch.len_utf8()..];
    }
    out
}

/// Whether `actual` matches `expected`, where `[..]` in a line matches any
/// text and a line `...` matches any number of lines.
pub fn matches(expected: &str, actual: &str) -> bool {
    fn line_matches(pattern: &str, line: &str) -> bool {
        let mut parts = pattern.split("[..]");
        let first = parts.next().unwrap_or_default();
        let Some(mut rest) = line.strip_prefix(first) else {
            return false;
        };
        let parts: Vec<&str> = parts.collect();
        for (i, part) in parts.iter().enumerate() {
            if i == parts.len() - 1 {
                return rest.ends_with(part);
            }
            match rest.find(part) {
                Some(at) => rest = &rest[at + part.len()..],
                None => return false,
            }
        }
        rest.is_empty()
    }
    fn lines_match(patterns: &[&str], lines: &[&str]) -> bool {
        match patterns.split_first() {
            None => lines.is_empty(),
            Some((&"...", rest)) => (0..=lines.len()).any(|skip| lines_match(rest, &lines[skip..])),
            Some((pattern, rest)) => lines
                .split_first()
                .is_some_and(|(line, more)| line_matches(pattern, line) && lines_match(rest, more)),
        }
    }
    let patterns: Vec<&str> = expected.lines().collect();
    let lines: Vec<&str> = actual.lines().collect();
    lines_match(&patterns, &lines)
}
