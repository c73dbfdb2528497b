//! The sweep's results store: `results.jsonl`, one JSON line per finished run, appended whole under an
//! exclusive `flock` and fsynced, read back tolerating a half-written last line (a crash mid-append),
//! which the next writing command moves aside ([`repair_tail`]).

use super::grid::RunSpec;
use crate::error::InputError;
use crate::model::ModelSpec;
use crate::optim::OptimKind;
use crate::train::EpochMetrics;
use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::Path;

/// The results file in a sweep directory.
pub const RESULTS_FILE: &str = "results.jsonl";
/// How a run ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RunStatus {
    /// Trained to the end and evaluated.
    Ok,
    /// The loss stopped being a number; the run stopped there (a result of the study too).
    Diverged,
}

/// One line of results.jsonl: a finished run's configuration and everything it measured (all of
/// [`TrainResult`] except the per-step losses, which are in `runs/<key>/losses.csv`).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RunRecord {
    pub key: String,
    /// The settings shared by the whole sweep ([`SweepConfig::signature`]).
    pub sweep: String,
    /// The study tables this run is a cell of.
    pub tables: Vec<u8>,
    pub status: RunStatus,
    pub model: String,
    pub optim: String,
    pub lr: f32,
    /// Momentum, weight decay, schedule, warm-up, clipping (absent: none, as the study).
    #[serde(default, skip_serializing_if = "is_default_recipe")]
    pub recipe: crate::optim::Recipe,
    pub batch: usize,
    pub epochs: f64,
    pub steps: usize,
    pub seed: u64,
    pub quick: bool,
    pub backend: String,
    pub device: String,
    /// The GPU kernel set (`--kernels`: "tiled" or "emulated"); absent on the CPU.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kernels: Option<String>,
    pub train_loss: Option<f64>,
    pub val_loss: Option<f64>,
    pub val_acc: Option<f64>,
    pub test_loss: Option<f64>,
    pub test_acc: Option<f64>,
    /// Wall time of the whole run, evaluation included.
    pub seconds: f64,
    /// Training images per second (evaluation excluded).
    pub images_per_s: Option<f64>,
    /// For a diverged run: the step whose loss was not finite, and that loss (as text: NaN is no JSON).
    #[serde(default)]
    pub diverged_at: Option<usize>,
    #[serde(default)]
    pub diverged_loss: Option<String>,
    #[serde(default)]
    pub epoch_metrics: Vec<EpochMetrics>,
    pub train_images: usize,
    pub val_images: usize,
    pub test_images: usize,
    /// Where the data came from.
    #[serde(default)]
    pub data: String,
    /// The shard that ran it, e.g. "0/4".
    pub shard: String,
    /// When it finished, seconds since the Unix epoch.
    pub finished_unix: u64,
    /// The wgtrain version that ran it.
    pub version: String,
}

fn is_default_recipe(r: &crate::optim::Recipe) -> bool {
    *r == crate::optim::Recipe::default()
}

impl RunRecord {
    /// The run this record is of, parsed back (None if a field is not one this version knows).
    pub fn spec(&self) -> Option<RunSpec> {
        Some(RunSpec {
            model: ModelSpec::parse(&self.model).ok()?,
            optim: OptimKind::parse(&self.optim).ok()?,
            lr: self.lr,
        })
    }
}

/// Seconds since the Unix epoch (0 if the clock is before it).
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Holds an exclusive or shared `flock` on a file until dropped (a no-op off Unix).
struct FileLock<'a>(#[allow(dead_code)] &'a File);

impl<'a> FileLock<'a> {
    fn new(file: &'a File, exclusive: bool) -> std::io::Result<Self> {
        #[cfg(unix)]
        {
            use std::os::fd::AsRawFd;
            let op = if exclusive {
                libc::LOCK_EX
            } else {
                libc::LOCK_SH
            };
            loop {
                // SAFETY: flock on a file descriptor this `File` owns for the lock's whole lifetime.
                let rc = unsafe { libc::flock(file.as_raw_fd(), op) };
                if rc == 0 {
                    break;
                }
                let err = std::io::Error::last_os_error();
                if err.kind() != std::io::ErrorKind::Interrupted {
                    return Err(err);
                }
            }
        }
        #[cfg(not(unix))]
        let _ = exclusive;
        Ok(FileLock(file))
    }
}

impl Drop for FileLock<'_> {
    fn drop(&mut self) {
        #[cfg(unix)]
        {
            use std::os::fd::AsRawFd;
            // SAFETY: as in `new`; unlocking a lock this process holds.
            unsafe {
                libc::flock(self.0.as_raw_fd(), libc::LOCK_UN);
            }
        }
    }
}

/// Appends `record` to `path` as one JSON line: one `write_all` under an exclusive `flock`, then
/// flush and fsync. If the file ends in a half-written line (a crash mid-append), the new line starts
/// on a fresh one so it is never glued to the remains.
pub fn append_record(path: &Path, record: &RunRecord) -> Result<()> {
    let mut line = serde_json::to_string(record)?;
    line.push('\n');
    let file = OpenOptions::new()
        .read(true)
        .append(true)
        .create(true)
        .open(path)
        .with_context(|| format!("{}: cannot open for appending", path.display()))?;
    let _lock =
        FileLock::new(&file, true).with_context(|| format!("{}: cannot lock", path.display()))?;
    let len = file.metadata()?.len();
    if len > 0 && last_byte(&file, len)? != b'\n' {
        line.insert(0, '\n');
    }
    (&file)
        .write_all(line.as_bytes())
        .with_context(|| format!("{}: cannot append", path.display()))?;
    (&file).flush()?;
    file.sync_all()
        .with_context(|| format!("{}: cannot sync", path.display()))?;
    Ok(())
}

/// Where [`repair_tail`] keeps the bytes it cuts from a results file: `results.jsonl.partial`.
pub fn partial_path(path: &Path) -> std::path::PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".partial");
    path.with_file_name(name)
}

/// A crash mid-append leaves a last line without its newline. A command that writes the store calls
/// this first: under the exclusive lock it appends those bytes to [`partial_path`] (nothing is lost)
/// and cuts the file after its last complete line, so the remains are reported once, here, instead of
/// by every later read. A tail that is a whole record (only its newline missing) is kept and ended.
/// Returns the note to show, if anything was done.
pub fn repair_tail(path: &Path) -> Result<Option<String>> {
    let file = match OpenOptions::new().read(true).write(true).open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(InputError::file(path, format!("cannot open: {e}")).into()),
    };
    let _lock =
        FileLock::new(&file, true).with_context(|| format!("{}: cannot lock", path.display()))?;
    let mut bytes = Vec::new();
    (&file)
        .read_to_end(&mut bytes)
        .with_context(|| format!("{}: cannot read", path.display()))?;
    let keep = bytes.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
    let tail = &bytes[keep..];
    if tail.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    if serde_json::from_slice::<RunRecord>(tail).is_ok() {
        (&file).write_all(b"\n")?;
        file.sync_all()?;
        return Ok(None);
    }
    let partial = partial_path(path);
    let mut saved = tail.to_vec();
    saved.push(b'\n');
    OpenOptions::new()
        .append(true)
        .create(true)
        .open(&partial)
        .and_then(|mut f| f.write_all(&saved).and_then(|()| f.sync_all()))
        .with_context(|| format!("{}: cannot write", partial.display()))?;
    file.set_len(keep as u64)
        .and_then(|()| file.sync_all())
        .with_context(|| format!("{}: cannot truncate", path.display()))?;
    Ok(Some(format!(
        "{}: its last line was half-written ({} bytes, a crash mid-append); moved to {} (that run counts as not done)",
        path.display(),
        tail.len(),
        partial.display()
    )))
}

/// Wraps `warn` so that a message repeated within one command (the same file read twice) shows once.
pub fn warn_once<'a>(warn: &'a mut dyn FnMut(&str)) -> impl FnMut(&str) + 'a {
    let mut seen = std::collections::HashSet::new();
    move |m: &str| {
        if seen.insert(m.to_string()) {
            warn(m)
        }
    }
}

fn last_byte(file: &File, len: u64) -> std::io::Result<u8> {
    let mut b = [0u8; 1];
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileExt;
        file.read_exact_at(&mut b, len - 1)?;
    }
    #[cfg(not(unix))]
    {
        use std::io::{Seek, SeekFrom};
        let mut f = file;
        f.seek(SeekFrom::Start(len - 1))?;
        f.read_exact(&mut b)?;
    }
    Ok(b[0])
}

/// Reads every well-formed record of a results file (none if the file does not exist). A line that is
/// not a complete record (a crash mid-write, a hand edit) is skipped and reported through `warn`.
pub fn read_records(path: &Path, warn: &mut dyn FnMut(&str)) -> Result<Vec<RunRecord>> {
    let file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(InputError::file(path, format!("cannot read: {e}")).into()),
    };
    let mut bytes = Vec::new();
    {
        let _lock = FileLock::new(&file, false)
            .with_context(|| format!("{}: cannot lock", path.display()))?;
        (&file)
            .read_to_end(&mut bytes)
            .with_context(|| format!("{}: cannot read", path.display()))?;
    }
    Ok(parse_records(path, &bytes, warn))
}

/// The well-formed records of a results file's contents (see [`read_records`]).
fn parse_records(path: &Path, bytes: &[u8], warn: &mut dyn FnMut(&str)) -> Vec<RunRecord> {
    let text = String::from_utf8_lossy(bytes);
    let mut out = Vec::new();
    for (i, line) in text.split('\n').enumerate() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        match serde_json::from_str::<RunRecord>(line) {
            Ok(r) => out.push(r),
            Err(e) => warn(&format!(
                "{} line {}: not a complete run record ({e}); skipped (that run counts as not done)",
                path.display(),
                i + 1
            )),
        }
    }
    out
}

/// The folder of claims in a sweep directory: `claims/<key>` says which process is training that run.
pub const CLAIMS_DIR: &str = "claims";

/// A run this process has claimed; the claim file goes when this is dropped (after its record is
/// appended, or when the process gives up on it).
pub struct Claim {
    pub key: String,
    path: std::path::PathBuf,
}

impl Drop for Claim {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Who holds a claim: a host name, a process id and that process's start time (so a recycled pid is
/// not mistaken for the claimant).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claimant {
    pub host: String,
    pub pid: u32,
    pub start: u64,
}

impl Claimant {
    /// This process.
    pub fn me() -> Claimant {
        let pid = std::process::id();
        Claimant {
            host: host_name(),
            pid,
            start: process_start(pid).unwrap_or(0),
        }
    }

    /// Whether the claimant may still be training. A process on this host is checked; one on another
    /// host (a shared file system) cannot be, and counts as alive.
    pub fn alive(&self) -> bool {
        if self.host != host_name() {
            return true;
        }
        process_start(self.pid).is_some_and(|s| self.start == 0 || s == self.start)
    }
}

fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "localhost".to_string())
}

/// A live process's start time (clock ticks since boot, field 22 of /proc/PID/stat); None if there is
/// no such process. Off Linux, a process is taken to be alive whenever it is asked about.
fn process_start(pid: u32) -> Option<u64> {
    if !Path::new("/proc/self/stat").exists() {
        return Some(0);
    }
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces and parentheses: count fields after its last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(19)?.parse().ok()
}

/// Under the results file's exclusive lock, claims the first of `keys` that has no record and no
/// live claimant, so that concurrent sweeps on one directory split the grid instead of each training
/// all of it. A claim whose process has died is taken over. Returns None when every key is done or
/// held by another live process.
pub fn claim_next(dir: &Path, keys: &[String]) -> Result<Option<Claim>> {
    let results = dir.join(RESULTS_FILE);
    let file = OpenOptions::new()
        .read(true)
        .append(true)
        .create(true)
        .open(&results)
        .with_context(|| format!("{}: cannot open", results.display()))?;
    let _lock = FileLock::new(&file, true)
        .with_context(|| format!("{}: cannot lock", results.display()))?;
    let mut bytes = Vec::new();
    (&file)
        .read_to_end(&mut bytes)
        .with_context(|| format!("{}: cannot read", results.display()))?;
    let done: std::collections::HashSet<String> = parse_records(&results, &bytes, &mut |_| {})
        .into_iter()
        .map(|r| r.key)
        .collect();
    let claims = dir.join(CLAIMS_DIR);
    std::fs::create_dir_all(&claims)
        .map_err(|e| InputError::file(&claims, format!("cannot create: {e}")))?;
    // A process killed between appending a run's record and removing its claim leaves the claim of a
    // finished run: nobody would take that run again, so the file is removed here. One killed while
    // writing a claim leaves write_atomic's temporary (`KEY.tmpPID`): removed once its process is
    // gone and it is a second old (a claim is written in microseconds; the age spares one being
    // written by a process of the same number on another host sharing the directory).
    if let Ok(entries) = std::fs::read_dir(&claims) {
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let orphan = name
                .rsplit_once(".tmp")
                .and_then(|(_, pid)| pid.parse::<u32>().ok())
                .is_some_and(|pid| {
                    process_start(pid).is_none()
                        && e.metadata()
                            .and_then(|m| m.modified())
                            .ok()
                            .and_then(|t| t.elapsed().ok())
                            .is_some_and(|age| age.as_secs_f64() >= 1.0)
                });
            if orphan || done.contains(&name) {
                let _ = std::fs::remove_file(e.path());
            }
        }
    }
    for key in keys.iter().filter(|k| !done.contains(*k)) {
        let path = claims.join(key);
        let held = std::fs::read(&path)
            .ok()
            .and_then(|b| serde_json::from_slice::<Claimant>(&b).ok());
        if held.is_some_and(|c| c.alive() && c != Claimant::me()) {
            continue;
        }
        let me = serde_json::to_vec(&Claimant::me())?;
        crate::io::atomic::write_atomic(&path, &me)?;
        return Ok(Some(Claim {
            key: key.clone(),
            path,
        }));
    }
    Ok(None)
}
