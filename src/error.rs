//! Errors a user caused (bad file, bad value): reported in one line with exit code 2, never a panic.

use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum InputError {
    /// A file that is missing, unreadable or malformed.
    #[error("{}: {problem}", path.display())]
    File { path: PathBuf, problem: String },
    /// A value on the command line or in a config that cannot be used.
    #[error("{0}")]
    Value(String),
}

impl InputError {
    pub fn file(path: &Path, problem: impl Into<String>) -> Self {
        InputError::File {
            path: path.to_path_buf(),
            problem: problem.into(),
        }
    }
    pub fn value(msg: impl Into<String>) -> Self {
        InputError::Value(msg.into())
    }
    /// A file the user named that could not be opened or read: "`what` not found", or
    /// "cannot read `what`: the OS's reason".
    pub fn unreadable(path: &Path, what: &str, e: &std::io::Error) -> Self {
        let problem = match e.kind() {
            std::io::ErrorKind::NotFound => format!("{what} not found"),
            _ => format!("cannot read {what}: {e}"),
        };
        InputError::file(path, problem)
    }
}

/// Whether an error (anywhere in its chain) is the user's input rather than a fault of the program.
pub fn is_input_error(err: &anyhow::Error) -> bool {
    err.chain()
        .any(|e| e.downcast_ref::<InputError>().is_some())
}

/// `v` if it is at least 1, else the error "`flag` must be at least 1".
pub fn at_least_one(flag: &str, v: usize) -> Result<usize, InputError> {
    if v == 0 {
        return Err(InputError::value(format!("{flag} must be at least 1")));
    }
    Ok(v)
}
