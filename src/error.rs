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

/// `msg` on one line: a library's multi-line message (a decoder's, a parser's) joined with spaces.
fn one_line(msg: String) -> String {
    if msg.contains('\n') {
        msg.split_whitespace().collect::<Vec<_>>().join(" ")
    } else {
        msg
    }
}

impl InputError {
    /// A problem with `path`; a multi-line `problem` is joined into one line.
    pub fn file(path: &Path, problem: impl Into<String>) -> Self {
        InputError::File {
            path: path.to_path_buf(),
            problem: one_line(problem.into()),
        }
    }
    /// The file this error is about, if it is about one.
    pub fn path(&self) -> Option<&Path> {
        match self {
            InputError::File { path, .. } => Some(path),
            InputError::Value(_) => None,
        }
    }
    /// A bad value; a multi-line `msg` is joined into one line.
    pub fn value(msg: impl Into<String>) -> Self {
        InputError::Value(one_line(msg.into()))
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

/// This machine's physical memory in bytes (None where it cannot be read).
pub fn host_memory_bytes() -> Option<u128> {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: sysinfo fills the zeroed struct it is given and touches nothing else.
        let mut info: libc::sysinfo = unsafe { std::mem::zeroed() };
        if unsafe { libc::sysinfo(&mut info) } == 0 {
            return Some(info.totalram as u128 * info.mem_unit.max(1) as u128);
        }
    }
    None
}

/// A one-line error, before anything is allocated, when `what` would need more than this machine's
/// memory: an absurd size from the command line must not abort the process.
pub fn check_memory(what: &str, bytes: u128) -> Result<(), InputError> {
    let Some(total) = host_memory_bytes() else {
        return Ok(());
    };
    if bytes > total {
        const GIB: f64 = (1u64 << 30) as f64;
        return Err(InputError::value(format!(
            "{what} would need {:.1} GiB of memory; this machine has {:.1} GiB",
            bytes as f64 / GIB,
            total as f64 / GIB
        )));
    }
    Ok(())
}
