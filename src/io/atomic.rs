//! Writing a whole file so that a crash, a Ctrl-C, a full disk or a concurrent writer never leaves half
//! of it, nor a temporary file behind.

use crate::error::InputError;
use std::io::Write;
use std::path::{Path, PathBuf};

/// Writes `bytes` to `path` through a temporary file named after this process, fsynced, then renamed
/// over `path`: readers see the old file or the new one, never a mix, and two processes writing the
/// same file at once (two sweep shards finishing together) never interleave their bytes. On any
/// failure (a full disk, a read-only directory) the temporary file is removed and the error names
/// `path`: the user's disk or path, so an [`InputError`].
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), InputError> {
    let tmp = temp_path(path);
    let written = std::fs::File::create(&tmp).and_then(|mut f| {
        f.write_all(bytes)?;
        f.sync_all()
    });
    let renamed = written.and_then(|()| std::fs::rename(&tmp, path));
    renamed.map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        write_error(path, &e)
    })
}

/// The temporary file [`write_atomic`] writes first: `name.tmpPID` beside `path`.
pub fn temp_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(format!(".tmp{}", std::process::id()));
    path.with_file_name(name)
}

/// "PATH: cannot write: the OS's reason", an input error: the cause is the user's disk or path.
pub fn write_error(path: &Path, e: &std::io::Error) -> InputError {
    InputError::file(path, format!("cannot write: {e}"))
}
