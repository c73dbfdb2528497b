//! Writing a whole file so that a crash, a Ctrl-C or a concurrent writer never leaves half of it.

use anyhow::{Context, Result};
use std::io::Write;
use std::path::Path;

/// Writes `bytes` to `path` through a temporary file named after this process, fsynced, then renamed
/// over `path`: readers see the old file or the new one, never a mix, and two processes writing the
/// same file at once (two sweep shards finishing together) never interleave their bytes.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    {
        let mut f = std::fs::File::create(&tmp)
            .with_context(|| format!("{}: cannot create", tmp.display()))?;
        f.write_all(bytes)
            .and_then(|_| f.sync_all())
            .with_context(|| format!("{}: cannot write", tmp.display()))?;
    }
    std::fs::rename(&tmp, path).with_context(|| format!("{}: cannot write", path.display()))?;
    Ok(())
}
