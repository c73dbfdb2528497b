//! Issue 16: nothing lost when a path is wrong or the disk fills, no absurd value crashes, two sweeps
//! on one directory share the work, notes after validation, and the smaller points. The read-only and
//! full file systems are tiny tmpfs mounts (root only, as in CI); where mounting is not allowed the
//! tests that need one say so on stderr and return.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

mod support;
use support::{assert_input_error, ok, synthetic_dir, text, wgtrain};

/// A tmpfs mounted for one test, unmounted when dropped.
struct TinyFs {
    _dir: tempfile::TempDir,
    path: PathBuf,
}

impl TinyFs {
    /// A tmpfs of `kib` KiB (read-only if `ro`), or None, with a visible note, where mounting fails.
    fn mount(kib: usize, ro: bool, test: &str) -> Option<TinyFs> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("fs");
        std::fs::create_dir(&path).unwrap();
        let opts = format!("size={kib}k{}", if ro { ",ro" } else { "" });
        let mounted = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &opts, "tmpfs"])
            .arg(&path)
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !mounted {
            eprintln!("note: skipping {test}: cannot mount a tmpfs here (needs root)");
            return None;
        }
        Some(TinyFs { _dir: dir, path })
    }
}

impl Drop for TinyFs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.path).status();
    }
}

fn data_dir(tmp: &Path) -> String {
    let d = tmp.join("data");
    synthetic_dir(&d, 300, 100, 1);
    d.to_str().unwrap().to_string()
}

/// The synthetic data set and a 2-step fc8-bn checkpoint trained on it, in `tmp`.
fn data_and_checkpoint(tmp: &Path) -> (String, String) {
    let d = data_dir(tmp);
    let ck = tmp.join("c.st").to_str().unwrap().to_string();
    ok(run(&with(
        train_args(&d),
        &["--steps", "2", "-q", "--save", &ck],
    )));
    (d, ck)
}

/// [`support::tiny_train`] as owned strings, to extend.
fn train_args(data: &str) -> Vec<String> {
    support::tiny_train(data)
        .into_iter()
        .map(String::from)
        .collect()
}

fn run(args: &[String]) -> std::process::Output {
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    wgtrain(&refs)
}

fn with(mut base: Vec<String>, extra: &[&str]) -> Vec<String> {
    base.extend(extra.iter().map(|s| s.to_string()));
    base
}

/// `sweep --quick` of table 1 into `out` on the CPU over the synthetic set `data`.
fn quick_sweep<'a>(out: &'a str, data: &'a str) -> [&'a str; 13] {
    [
        "sweep",
        "--quick",
        "--tables",
        "1",
        "--out",
        out,
        "--data",
        data,
        "--val-size",
        "100",
        "--backend",
        "cpu",
        "-q",
    ]
}

/// Files under `dir` whose names say they are temporaries or probes left behind.
fn debris(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if e.path().is_dir() {
            out.extend(debris(&e.path()));
        } else if name.contains(".tmp") || name.contains("probe") {
            out.push(e.path().display().to_string());
        }
    }
    out
}

/// Point 1: a --save on a read-only mount fails before any training (the error is the only line on
/// stderr: no progress), and so does --out.
#[test]
fn an_unwritable_save_path_fails_before_any_work() {
    let Some(ro) = TinyFs::mount(64, true, "an_unwritable_save_path_fails_before_any_work") else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let d = data_dir(tmp.path());
    let ck = ro.path.join("c.safetensors");
    let out = run(&with(
        train_args(&d),
        &["--epochs", "2", "--save", ck.to_str().unwrap()],
    ));
    assert_input_error(&out, &["c.safetensors", "Read-only"]);
    let dir = ro.path.join("t");
    let out = run(&with(train_args(&d), &["--out", dir.to_str().unwrap()]));
    assert_input_error(&out, &["--out", "Read-only"]);
    let out = wgtrain(&["graph", "-o", ro.path.join("g.dot").to_str().unwrap()]);
    assert_input_error(&out, &["g.dot", "Read-only"]);
}

/// Point 2: --save, --plot and -o create their directories, as --out does.
#[test]
fn output_paths_get_their_directories_created() {
    let tmp = tempfile::tempdir().unwrap();
    let d = data_dir(tmp.path());
    let ck = tmp.path().join("runs/a/c.safetensors");
    ok(run(&with(
        train_args(&d),
        &["--steps", "2", "-q", "--save", ck.to_str().unwrap()],
    )));
    assert!(ck.is_file());
    let plot = tmp.path().join("plots/b/cm.svg");
    let c = ck.to_str().unwrap();
    ok(wgtrain(&[
        "eval",
        "--checkpoint",
        c,
        "--data",
        &d,
        "--backend",
        "cpu",
        "-q",
        "--plot",
        plot.to_str().unwrap(),
    ]));
    let svg = std::fs::read_to_string(&plot).unwrap();
    assert!(
        svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"),
        "{svg}"
    );
    let graph = tmp.path().join("graphs/c/g.dot");
    ok(wgtrain(&["graph", "-o", graph.to_str().unwrap()]));
    assert!(std::fs::read_to_string(&graph)
        .unwrap()
        .starts_with("digraph"));
}

/// Point 3: on a full disk the run goes on and prints its figures; the error names the file; no
/// temporary file is left; the CSV files hold whole lines only, epochs.csv its header at least.
#[test]
fn a_full_disk_leaves_whole_lines_and_no_debris() {
    let Some(fs) = TinyFs::mount(300, false, "a_full_disk_leaves_whole_lines_and_no_debris") else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let d = data_dir(tmp.path());
    let (dir, ck) = (fs.path.join("t"), fs.path.join("c.safetensors"));
    // Fill the disk but for ~20 KB: the CSV files fit at first, the checkpoint (fc8-bn, ~2.6 MB) never.
    std::fs::write(fs.path.join("filler"), vec![0u8; 280 * 1024]).unwrap();
    let out = run(&with(
        train_args(&d),
        &[
            "--steps",
            "1000",
            "--log-every",
            "5",
            "--out",
            dir.to_str().unwrap(),
            "--save",
            ck.to_str().unwrap(),
        ],
    ));
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert_eq!(out.status.code(), Some(2), "{stdout}\n{stderr}");
    let last = stderr.lines().last().unwrap();
    assert!(
        last.starts_with("error: ") && last.contains("No space left"),
        "{stderr}"
    );
    assert!(
        stdout.contains("train loss"),
        "the figures are printed: {stdout}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_eq!(debris(&fs.path), Vec::<String>::new());
    for (name, fields) in [("losses.csv", 3), ("epochs.csv", 5)] {
        let csv = std::fs::read_to_string(dir.join(name)).unwrap();
        assert!(csv.ends_with('\n'), "{name} ends in half a line: {csv:?}");
        for line in csv.lines() {
            assert_eq!(line.split(',').count(), fields, "{name}: {line:?}");
        }
    }
}

/// Point 3: `report` on a full disk: a one-line error naming the file, exit 2, no truncated figure
/// and no temporary file.
#[test]
fn report_on_a_full_disk_leaves_no_truncated_figure() {
    let tmp = tempfile::tempdir().unwrap();
    let d = data_dir(tmp.path());
    let sweep = tmp.path().join("sweep");
    let s = sweep.to_str().unwrap();
    ok(wgtrain(&quick_sweep(s, &d)));
    let Some(fs) = TinyFs::mount(
        1024,
        false,
        "report_on_a_full_disk_leaves_no_truncated_figure",
    ) else {
        return;
    };
    let copy = fs.path.join("sweep");
    let cp = Command::new("cp")
        .arg("-r")
        .arg(&sweep)
        .arg(&copy)
        .status()
        .unwrap();
    assert!(cp.success());
    std::fs::remove_dir_all(copy.join("figures")).unwrap();
    std::fs::remove_file(copy.join("report.md")).unwrap();
    // Leave 24 KB: the first PNG (~60 KB) cannot be written.
    let used: u64 = fs2_used(&fs.path);
    let free = 1024 * 1024 - used;
    std::fs::write(
        fs.path.join("filler"),
        vec![0u8; (free - 24 * 1024) as usize],
    )
    .unwrap();
    let out = wgtrain(&["report", "--out", copy.to_str().unwrap()]);
    assert_input_error(&out, &["figures", "No space left"]);
    assert_eq!(debris(&fs.path), Vec::<String>::new());
    if let Ok(entries) = std::fs::read_dir(copy.join("figures")) {
        for e in entries.flatten() {
            let bytes = std::fs::read(e.path()).unwrap();
            let whole = if e.path().extension().unwrap() == "svg" {
                String::from_utf8_lossy(&bytes)
                    .trim_end()
                    .ends_with("</svg>")
            } else {
                image::load_from_memory(&bytes).is_ok()
            };
            assert!(whole, "{} is truncated", e.path().display());
        }
    }
}

/// Bytes in use on the file system of `path` (statvfs).
fn fs2_used(path: &Path) -> u64 {
    let out = Command::new("df")
        .args(["-B1", "--output=used"])
        .arg(path)
        .output()
        .unwrap();
    text(&out.stdout)
        .lines()
        .nth(1)
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

/// Point 4: counts sized from the command line are checked before anything is allocated.
#[test]
fn absurd_counts_are_one_line_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let d = data_dir(tmp.path());
    let base = train_args(&d);
    assert_input_error(
        &run(&with(base.clone(), &["--steps", "18446744073709551615"])),
        &["--steps"],
    );
    assert_input_error(
        &run(&with(base, &["--epochs", "4000000000"])),
        &["--epochs"],
    );
    assert_input_error(
        &wgtrain(&[
            "bench",
            "--matmul",
            "100000x100000x100000",
            "--models",
            "none",
            "--backend",
            "cpu",
        ]),
        &["--matmul 100000x100000x100000", "GiB"],
    );
    assert_input_error(
        &wgtrain(&[
            "bench", "--models", "cnn7-bn", "--batch", "55000", "--matmul", "none",
        ]),
        &["--batch 55000", "GiB"],
    );
}

/// The memory bound behind the batch checks holds for every model: per image, at least what the CPU
/// backend's layers hold (their outputs and input gradients, a lower bound on all they allocate) and
/// not more than 10 times that.
#[test]
fn the_batch_memory_bound_is_of_the_right_size() {
    use wgtrain::model::{ModelSpec, MODEL_NAMES};
    for name in MODEL_NAMES {
        let spec = ModelSpec::parse(name).unwrap();
        let bound = spec.floats_per_image();
        let be = wgtrain::backend::cpu::CpuBackend::new();
        let mut model = wgtrain::model::Model::new(&be, spec, 2, 1);
        let held: usize = model
            .layers
            .iter_mut()
            .map(|l| (l.output().len() + l.grad_input().len()) / 2)
            .sum();
        assert!(bound >= held, "{name}: bound {bound} < {held}");
        assert!(bound <= 10 * held, "{name}: bound {bound} > 10 x {held}");
    }
}

/// Point 5: eval --plot writes SVG too; unknown extensions are errors that list the supported ones.
#[test]
fn plot_and_graph_formats_are_checked_first() {
    let tmp = tempfile::tempdir().unwrap();
    let (d, c) = data_and_checkpoint(tmp.path());
    let c = c.as_str();
    let eval = |plot: &str| {
        wgtrain(&[
            "eval",
            "--checkpoint",
            c,
            "--data",
            &d,
            "--backend",
            "cpu",
            "-q",
            "--plot",
            plot,
        ])
    };
    let png = tmp.path().join("cm.png");
    let stdout = ok(eval(png.to_str().unwrap()));
    assert!(stdout.contains("accuracy"), "{stdout}");
    assert!(image::open(&png).is_ok());
    let jpg = tmp.path().join("cm.jpg");
    assert_input_error(&eval(jpg.to_str().unwrap()), &["cm.jpg", ".png or .svg"]);
    let x = tmp.path().join("x.jpg");
    assert_input_error(
        &wgtrain(&["graph", "-o", x.to_str().unwrap()]),
        &[".dot", ".svg", ".png"],
    );
    assert!(!x.exists(), "nothing written to x.jpg");
    let file = tmp.path().join("a-file");
    std::fs::write(&file, "x").unwrap();
    assert_input_error(&eval(file.join("cm.png").to_str().unwrap()), &["a-file"]);
}

/// Point 6: two sweeps on one directory at once share the grid (each run trained once), and a claim
/// left by a dead process is taken over.
#[test]
fn concurrent_sweeps_share_the_grid() {
    let tmp = tempfile::tempdir().unwrap();
    let d = data_dir(tmp.path());
    let sweep = tmp.path().join("sweep");
    let s = sweep.to_str().unwrap();
    let args = quick_sweep(s, &d);
    let spawn = || {
        Command::new(env!("CARGO_BIN_EXE_wgtrain"))
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let (a, b) = (spawn(), spawn());
    let (a, b) = (a.wait_with_output().unwrap(), b.wait_with_output().unwrap());
    assert!(
        a.status.success() && b.status.success(),
        "{}{}",
        text(&a.stderr),
        text(&b.stderr)
    );
    let keys: Vec<String> = std::fs::read_to_string(sweep.join("results.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["key"].to_string())
        .collect();
    let distinct: std::collections::HashSet<&String> = keys.iter().collect();
    assert_eq!(keys.len(), distinct.len(), "a run trained twice: {keys:?}");
    let cfg = {
        let mut c = wgtrain::study::sweep::SweepConfig::new(&sweep).quick();
        c.tables = vec![1];
        c
    };
    assert_eq!(keys.len(), cfg.selected().len());
    assert_eq!(debris(&sweep), Vec::<String>::new());

    // A claim by a process that has exited: the next sweep trains that run anyway.
    let fresh = tmp.path().join("fresh");
    let key = cfg.key(&cfg.selected()[0].spec);
    let dead = Command::new("true").spawn().unwrap();
    let pid = dead.id();
    let _ = dead.wait_with_output();
    std::fs::create_dir_all(fresh.join("claims")).unwrap();
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    std::fs::write(
        fresh.join("claims").join(&key),
        format!(r#"{{"host":"{}","pid":{pid},"start":1}}"#, host.trim()),
    )
    .unwrap();
    let mut args2 = args.to_vec();
    let f = fresh.to_str().unwrap();
    args2[5] = f;
    let stdout = ok(wgtrain(&args2));
    assert!(
        stdout.contains(&format!("{} runs trained, 0 already done;", keys.len())),
        "{stdout}"
    );
}

/// `sweep --jobs 2` (issue 19): a sweep killed with SIGKILL mid-run, then resumed with two jobs: every
/// run of the grid once in results.jsonl, one directory per run, no claim or temporary file left, and
/// runs.csv with a row per run.
#[test]
fn a_killed_sweep_resumes_with_two_jobs_losing_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let d = data_dir(tmp.path());
    let sweep = tmp.path().join("sweep");
    let s = sweep.to_str().unwrap();
    let base = [
        "sweep",
        "--steps",
        "40",
        "--tables",
        "1,3",
        "--out",
        s,
        "--data",
        &d,
        "--val-size",
        "100",
        "--backend",
        "cpu",
        "-q",
    ];
    let mut first = Command::new(env!("CARGO_BIN_EXE_wgtrain"))
        .args(base)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Kill it once it has finished a run or two (if it is faster, it finished: the resume then has
    // nothing to do, and the counts below still hold).
    let results = sweep.join("results.jsonl");
    let start = std::time::Instant::now();
    while std::fs::read_to_string(&results).map_or(0, |t| t.lines().count()) < 2
        && start.elapsed().as_secs() < 60
    {
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    first.kill().unwrap();
    first.wait().unwrap();
    let done_before = std::fs::read_to_string(&results).unwrap().lines().count();
    // The kill may land between a record's append and its claim's removal: a finished run's claim,
    // left as below, must not survive the next sweep (CI once caught one that did).
    let first_key = serde_json::from_str::<serde_json::Value>(
        std::fs::read_to_string(&results)
            .unwrap()
            .lines()
            .next()
            .unwrap(),
    )
    .unwrap()["key"]
        .as_str()
        .unwrap()
        .to_string();
    std::fs::create_dir_all(sweep.join("claims")).unwrap();
    std::fs::write(
        sweep.join("claims").join(&first_key),
        r#"{"host":"gone","pid":1,"start":1}"#,
    )
    .unwrap();
    // A kill while a claim is being written leaves write_atomic's temporary: planted too, by a
    // process that has exited, and a second old.
    let gone = Command::new("true").spawn().unwrap();
    let gone_pid = gone.id();
    let mut gone = gone;
    gone.wait().unwrap();
    std::fs::write(
        sweep
            .join("claims")
            .join(format!("{first_key}.tmp{gone_pid}")),
        "{",
    )
    .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let mut again = base.to_vec();
    again.extend(["--jobs", "2"]);
    let stdout = ok(wgtrain(&again));
    let mut cfg = wgtrain::study::sweep::SweepConfig::new(&sweep);
    cfg.tables = vec![1, 3];
    let grid = cfg.selected().len();
    let keys: Vec<String> = std::fs::read_to_string(&results)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["key"].to_string())
        .collect();
    let distinct: std::collections::HashSet<&String> = keys.iter().collect();
    assert_eq!(keys.len(), distinct.len(), "a run trained twice: {keys:?}");
    assert_eq!(keys.len(), grid, "{stdout}");
    assert_eq!(std::fs::read_dir(sweep.join("runs")).unwrap().count(), grid);
    // "X runs trained, Y already done, Z trained by this sweep's other jobs": every run accounted
    // for once. Y is at least the runs recorded before the kill (the other job may have finished one
    // before this process looked).
    let count = |after: &str| -> usize {
        stdout
            .split(after)
            .next()
            .map(|s| {
                let digits = s.len() - s.trim_end_matches(|c: char| c.is_ascii_digit()).len();
                &s[s.len() - digits..]
            })
            .and_then(|n| n.parse().ok())
            .unwrap_or(0)
    };
    let (trained, already, other) = (
        count(" runs trained"),
        count(" already done"),
        count(" trained by this sweep's other jobs"),
    );
    assert_eq!(trained + already + other, grid, "{stdout}");
    assert!(
        already >= done_before,
        "{done_before} done before: {stdout}"
    );
    assert_eq!(
        std::fs::read_dir(sweep.join("claims")).unwrap().count(),
        0,
        "claims left"
    );
    assert_eq!(debris(&sweep), Vec::<String>::new());
    let csv = std::fs::read_to_string(sweep.join("runs.csv")).unwrap();
    assert_eq!(csv.lines().count(), grid + 1, "{csv}");
    assert!(
        csv.starts_with("key,sweep,tables,status,model,optim,lr,recipe,batch,"),
        "{csv}"
    );
    // --jobs 0 is refused before anything starts.
    let mut zero = base.to_vec();
    zero.extend(["--jobs", "0"]);
    assert_input_error(&wgtrain(&zero), &["--jobs 0"]);
}

/// Point 7: validation before notes (the CPU-fallback note never precedes an error), and eval and
/// predict take -q.
#[test]
fn errors_come_before_notes_and_eval_is_quiet_with_q() {
    let tmp = tempfile::tempdir().unwrap();
    let (d, c) = data_and_checkpoint(tmp.path());
    let file = tmp.path().join("a-file");
    std::fs::write(&file, "x").unwrap();
    let auto = |extra: &[&str]| {
        let mut a = vec![
            "train",
            "--backend",
            "auto",
            "--data",
            &d,
            "--val-size",
            "100",
        ];
        a.extend(extra);
        wgtrain(&a)
    };
    assert_input_error(&auto(&["--out", file.to_str().unwrap()]), &["a-file"]);
    assert_input_error(
        &auto(&["--save", file.join("c.st").to_str().unwrap()]),
        &["a-file"],
    );
    let out = wgtrain(&["eval", "--checkpoint", &c, "--data", &d, "-q"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stderr), "", "eval -q: nothing on stderr");
}

/// Point 8: the smaller ones.
#[test]
fn smaller_points() {
    let tmp = tempfile::tempdir().unwrap();
    let d = data_dir(tmp.path());
    // --val-size 0: "no validation set", not NaN; the summary splits training from evaluation.
    let mut a = train_args(&d);
    a[6] = "0".into();
    let stdout = ok(run(&with(a, &["--steps", "2", "-q"])));
    assert!(
        stdout.contains("no validation set") && !stdout.contains("NaN"),
        "{stdout}"
    );
    assert!(stdout.contains("evaluation and saving"), "{stdout}");
    // The same bad value is refused the same way everywhere.
    assert_input_error(&wgtrain(&["gradcheck", "--tol", "nan"]), &["--tol"]);
    assert_input_error(&wgtrain(&["gradcheck", "--tol", "-1"]), &["--tol"]);
    assert_input_error(&wgtrain(&["train", "--seed", "-1"]), &["--seed", "-1"]);
    // Raw and .gz side by side: refused when they differ, used when they agree.
    let dir = Path::new(&d);
    let raw = std::fs::read(dir.join("t10k-labels-idx1-ubyte")).unwrap();
    let gz = |bytes: &[u8]| {
        use std::io::Write;
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all(bytes).unwrap();
        e.finish().unwrap()
    };
    std::fs::write(dir.join("t10k-labels-idx1-ubyte.gz"), gz(&raw)).unwrap();
    ok(run(&with(train_args(&d), &["--steps", "1", "-q"])));
    std::fs::write(
        dir.join("t10k-labels-idx1-ubyte.gz"),
        gz(&raw[..raw.len() - 1]),
    )
    .unwrap();
    assert_input_error(
        &run(&with(train_args(&d), &["--steps", "1", "-q"])),
        &[
            "t10k-labels-idx1-ubyte and t10k-labels-idx1-ubyte.gz",
            "differ",
        ],
    );
    // bench and profile read the training pair through the same rule.
    let train = std::fs::read(dir.join("train-labels-idx1-ubyte")).unwrap();
    std::fs::write(
        dir.join("train-labels-idx1-ubyte.gz"),
        gz(&train[..train.len() - 1]),
    )
    .unwrap();
    assert_input_error(
        &wgtrain(&[
            "bench",
            "--data",
            &d,
            "--models",
            "fc8",
            "--batch",
            "10",
            "--matmul",
            "none",
            "--backend",
            "cpu",
        ]),
        &[
            "train-labels-idx1-ubyte and train-labels-idx1-ubyte.gz",
            "differ",
        ],
    );
}

/// Point 8: an interrupted run's epochs.csv has its header (it was empty).
#[test]
fn an_interrupted_run_leaves_csv_headers() {
    let tmp = tempfile::tempdir().unwrap();
    let d = data_dir(tmp.path());
    let out = tmp.path().join("t");
    let args = with(
        train_args(&d),
        &[
            "--steps",
            "1000000",
            "--log-every",
            "1",
            "-q",
            "--out",
            out.to_str().unwrap(),
        ],
    );
    let mut child = Command::new(env!("CARGO_BIN_EXE_wgtrain"))
        .args(&args[..])
        .spawn()
        .unwrap();
    let losses = out.join("losses.csv");
    let t0 = std::time::Instant::now();
    while std::fs::read_to_string(&losses).map_or(0, |s| s.lines().count()) < 3 {
        assert!(t0.elapsed().as_secs() < 60, "no losses written");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let epochs = std::fs::read_to_string(out.join("epochs.csv")).unwrap();
    assert!(
        epochs.starts_with("epoch,step,train_loss,val_loss,val_acc\n"),
        "{epochs:?}"
    );
}

/// Point 8: predict reports every file, classifies the good ones, exits 2 if any failed; a blank
/// image is named as such.
#[test]
fn predict_reports_each_file_and_names_a_blank_image() {
    let tmp = tempfile::tempdir().unwrap();
    let (_, c) = data_and_checkpoint(tmp.path());
    let c = c.as_str();
    let good = tmp.path().join("good.png");
    let mut img = image::GrayImage::new(28, 28);
    for y in 6..22 {
        img.put_pixel(14, y, image::Luma([255]));
    }
    img.save(&good).unwrap();
    let blank = tmp.path().join("blank.png");
    image::GrayImage::new(28, 28).save(&blank).unwrap();
    let fake = tmp.path().join("fake.png");
    std::fs::write(&fake, "not a png").unwrap();
    let out = wgtrain(&[
        "predict",
        "--checkpoint",
        c,
        "--backend",
        "cpu",
        good.to_str().unwrap(),
        fake.to_str().unwrap(),
        blank.to_str().unwrap(),
    ]);
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert_eq!(out.status.code(), Some(2), "{stdout}{stderr}");
    assert!(
        stdout.contains("good.png: ") && stdout.contains("blank.png: "),
        "{stdout}"
    );
    let last = stderr.lines().last().unwrap();
    assert!(
        last.starts_with("error: ") && last.contains("fake.png"),
        "{stderr}"
    );
    // Two bad files: each named on its own line, then the count.
    let out = wgtrain(&[
        "predict",
        "--checkpoint",
        c,
        "--backend",
        "cpu",
        good.to_str().unwrap(),
        fake.to_str().unwrap(),
        "/nonexistent/x.png",
    ]);
    let errs = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{errs}");
    assert!(
        errs.contains("fake.png") && errs.contains("x.png: image not found"),
        "{errs}"
    );
    assert!(
        errs.trim_end()
            .ends_with("error: 2 of 3 images could not be read"),
        "{errs}"
    );
    assert!(stderr.contains("blank.png: the image is blank"), "{stderr}");
}

/// Point 8: eval's recall of a class absent from the data is "-", not "NaN%".
#[test]
fn recall_of_an_absent_class_is_a_dash() {
    let mut confusion = vec![vec![0u64; 3]; 3];
    confusion[0][0] = 4;
    confusion[2][1] = 1;
    let r = wgtrain::tools::predict::EvalReport {
        checkpoint: String::new(),
        model: "fc8".into(),
        optim: "adam".into(),
        step: 1,
        epochs: 1.0,
        backend: "cpu".into(),
        device: String::new(),
        images: 5,
        data_format: "IDX".into(),
        class_names: vec!["0".into(), "1".into(), "2".into()],
        test_acc: 0.8,
        test_loss: 1.0,
        confusion,
    };
    let text = r.confusion_text();
    assert!(!text.contains("NaN"), "{text}");
    let row1 = text.lines().nth(2).unwrap();
    assert!(row1.trim_end().ends_with(" -"), "{text}");
    assert!(text.lines().nth(1).unwrap().ends_with("100.00%"), "{text}");
}
