//! Output paths the user names (`--out`, `--save`, `--plot`, `-o`), checked before any work starts:
//! their directories are created, and a probe file is written and removed, so that a read-only mount,
//! a missing permission or a full disk is a one-line error now rather than after an epoch of training.

use crate::error::InputError;
use std::io::Write;
use std::path::Path;

/// Makes sure `path` can be written as a file: creates its parent directories, refuses a directory,
/// and proves the parent writable with a probe file. `what` names the option, e.g. "--save".
pub fn prepare_file(path: &Path, what: &str) -> Result<(), InputError> {
    if path.as_os_str().is_empty() {
        return Err(InputError::value(format!("{what}: empty path")));
    }
    if path.is_dir() {
        return Err(InputError::file(
            path,
            format!("{what}: is a directory, not a file"),
        ));
    }
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    create_dir(parent, path, what)?;
    probe(parent, path, what)
}

/// Makes sure `dir` exists (creating it and its parents) and that files can be written in it.
pub fn prepare_dir(dir: &Path, what: &str) -> Result<(), InputError> {
    if dir.as_os_str().is_empty() {
        return Err(InputError::value(format!("{what}: empty path")));
    }
    create_dir(dir, dir, what)?;
    probe(dir, dir, what)
}

/// Creates `dir` and its parents; errors name `shown` (the path the user gave).
fn create_dir(dir: &Path, shown: &Path, what: &str) -> Result<(), InputError> {
    if dir.exists() && !dir.is_dir() {
        return Err(InputError::file(
            shown,
            format!("{what}: {} is not a directory", dir.display()),
        ));
    }
    std::fs::create_dir_all(dir).map_err(|e| {
        InputError::file(
            shown,
            format!("{what}: cannot create the directory {}: {e}", dir.display()),
        )
    })
}

/// Creates, writes (one block, synced) and removes a probe file in `dir`; errors name `shown`.
fn probe(dir: &Path, shown: &Path, what: &str) -> Result<(), InputError> {
    let probe = dir.join(format!(".wgtrain-probe-{}", std::process::id()));
    let result = std::fs::File::create(&probe).and_then(|mut f| {
        f.write_all(&[0u8; 4096])?;
        f.sync_all()
    });
    let _ = std::fs::remove_file(&probe);
    result.map_err(|e| InputError::file(shown, format!("{what}: cannot write here: {e}")))
}
