//! `sweep --jobs N`: N processes on one sweep directory. The first is the one the user started; it
//! starts N-1 copies of itself (same arguments, quiet, no report) and trains beside them. They share
//! the grid through the store's claims (`store::claim_next`), so no run is trained twice and a killed
//! job's runs are picked up by the next sweep; the first writes the report once all have finished.

use crate::error::InputError;
use anyhow::{bail, Context, Result};
use std::ffi::OsString;
use std::process::{Child, Command, Stdio};

/// The hidden option that marks a job started by `--jobs` (it trains, writes no report, says nothing).
pub const CHILD_FLAG: &str = "--job-of-sweep";

/// The arguments of a child job: the parent's without `--jobs` (and without `-q`, given once again),
/// with [`CHILD_FLAG`] and `--quiet`; with `adapter`, its `--adapter` list replaced by that one name.
pub fn child_args(args: &[OsString], adapter: Option<&str>) -> Vec<OsString> {
    let mut out = Vec::with_capacity(args.len() + 4);
    let mut skip_next = false;
    for a in args {
        if skip_next {
            skip_next = false;
            continue;
        }
        let s = a.to_string_lossy();
        let replaced = |flag: &str| s == flag && (flag != "--adapter" || adapter.is_some());
        if replaced("--jobs") || replaced("--adapter") {
            skip_next = true;
            continue;
        }
        if s.starts_with("--jobs=")
            || (adapter.is_some() && s.starts_with("--adapter="))
            || s == "-q"
            || s == "--quiet"
        {
            continue;
        }
        out.push(a.clone());
    }
    if let Some(name) = adapter {
        out.push("--adapter".into());
        out.push(name.into());
    }
    out.push(CHILD_FLAG.into());
    out.push("--quiet".into());
    out
}

/// `--adapter A,B,...` for several GPUs: the names (one, or none, for anything without a comma).
pub fn adapter_list(adapter: Option<&str>) -> Vec<String> {
    match adapter {
        Some(list) if list.contains(',') => list
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(String::from)
            .collect(),
        _ => Vec::new(),
    }
}

/// How many threads each of `jobs` processes should use on a machine of `cores`, so that together
/// they use it whole without oversubscribing it (results do not depend on the thread count).
pub fn threads_per_job(cores: usize, jobs: usize) -> usize {
    (cores / jobs.max(1)).max(1)
}

/// Checks `--jobs`: at least 1, and not more than the runs there are to share.
pub fn check_jobs(jobs: usize) -> Result<usize, InputError> {
    if jobs == 0 {
        return Err(InputError::value("--jobs 0: at least 1"));
    }
    if jobs > 64 {
        return Err(InputError::value(format!(
            "--jobs {jobs}: at most 64 processes on one machine"
        )));
    }
    Ok(jobs)
}

/// Starts `n` child jobs of the running executable with `args` (the command line as given, `sweep`
/// and its options, the program name excluded), each using `threads` threads. With `adapters` (a
/// list), job i (the parent is job 0) uses adapter `i % adapters.len()`: runs go round-robin over the
/// GPUs as the jobs claim them.
pub fn spawn(
    n: usize,
    args: &[OsString],
    threads: usize,
    adapters: &[String],
) -> Result<Vec<Child>> {
    let exe = std::env::current_exe().context("cannot find the wgtrain executable for --jobs")?;
    (1..=n)
        .map(|i| {
            let adapter = (!adapters.is_empty()).then(|| adapters[i % adapters.len()].as_str());
            Command::new(&exe)
                .args(child_args(args, adapter))
                .env("RAYON_NUM_THREADS", threads.to_string())
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::inherit())
                .spawn()
                .with_context(|| format!("cannot start a sweep job ({})", exe.display()))
        })
        .collect()
}

/// Waits for every child; an error if any failed (its own error line is already on stderr).
pub fn wait_all(children: Vec<Child>) -> Result<()> {
    let mut failed = 0;
    for mut c in children {
        let status = c.wait().context("waiting for a sweep job")?;
        if !status.success() {
            failed += 1;
        }
    }
    if failed > 0 {
        bail!("{failed} of the sweep's other jobs failed (see above); their runs stay unclaimed for the next sweep");
    }
    Ok(())
}

/// Limits this process's CPU threads to `threads` (before any parallel work starts).
pub fn limit_threads(threads: usize) {
    // An error means the pool already exists (a library caller made it); it then keeps its size.
    let _ = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build_global();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn child_arguments_drop_jobs_and_add_the_child_flag_once() {
        let args: Vec<OsString> = [
            "sweep", "--jobs", "3", "-q", "--out", "x", "--jobs=2", "--quick",
        ]
        .iter()
        .map(OsString::from)
        .collect();
        let got: Vec<String> = child_args(&args, None)
            .iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            got,
            ["sweep", "--out", "x", "--quick", CHILD_FLAG, "--quiet"]
        );
        // A list of GPUs: each child gets one of them.
        let args: Vec<OsString> = ["sweep", "--adapter", "A100,H100", "--backend", "gpu"]
            .iter()
            .map(OsString::from)
            .collect();
        let got: Vec<String> = child_args(&args, Some("H100"))
            .iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            got,
            [
                "sweep",
                "--backend",
                "gpu",
                "--adapter",
                "H100",
                CHILD_FLAG,
                "--quiet"
            ]
        );
        assert_eq!(adapter_list(Some("A100, H100,")), ["A100", "H100"]);
        assert!(adapter_list(Some("NVIDIA")).is_empty());
        assert_eq!(threads_per_job(2, 2), 1);
        assert_eq!(threads_per_job(16, 3), 5);
        assert_eq!(threads_per_job(2, 8), 1);
    }
}
