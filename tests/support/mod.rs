//! Shared by the CLI-level tests of several files (no GPU needed).

use std::process::Output;

/// The binary failed on the user's input: exit 2, one line on stderr, which mentions `needle`.
pub fn assert_input_error(out: &Output, needle: &str) {
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "stderr: {err}");
    assert_eq!(err.trim_end().lines().count(), 1, "one line: {err}");
    assert!(err.contains(needle), "'{needle}' not in: {err}");
}
