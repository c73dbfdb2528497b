//! The study sweep: results, loss CSVs, report and figures; resuming after a crash; shards merging to
//! the same report; bad options. All on a tiny synthetic data set, a few steps per run, CPU backend.

use std::path::{Path, PathBuf};
use wgtrain::backend::cpu::CpuBackend;
use wgtrain::io::data::{self, Splits};
use wgtrain::study::grid::{grid, GridRun, Shard};
use wgtrain::study::report::{build_report, REPORT_FILE};
use wgtrain::study::store::{partial_path, read_records, RunRecord, RunStatus, RESULTS_FILE};
use wgtrain::study::sweep::{run_sweep, Budget, SweepConfig, SweepObserver, SweepSummary};
use wgtrain::train::{Observer, Silent};

mod support;
use support::{assert_input_error, wgtrain};

const VAL: usize = 40;

/// A tiny IDX data set on disk (the loader's path, as the CLI uses it), loaded back.
fn tiny_data(dir: &Path) -> Splits {
    let train = data::synthetic(220 + VAL, 7);
    let test = data::synthetic(60, 8);
    data::write_idx_dir(dir, &train, &test).unwrap();
    data::load_dir(dir, VAL).unwrap()
}

/// The first `n` runs of Table I (FC-8: fast).
fn fc_runs(n: usize) -> Vec<GridRun> {
    grid(&[1]).into_iter().take(n).collect()
}

fn config(out: &Path, runs: Vec<GridRun>) -> SweepConfig {
    let mut cfg = SweepConfig::new(out);
    cfg.runs = Some(runs);
    cfg.budget = Budget::Steps(3);
    cfg.log_every = 1;
    cfg.data_label = "synthetic".into();
    cfg
}

/// Records which runs started and every warning.
#[derive(Default)]
struct Recorder {
    started: Vec<String>,
    notes: Vec<String>,
}

impl SweepObserver for Recorder {
    fn note(&mut self, msg: &str) {
        self.notes.push(msg.to_string());
    }
    fn run_started(&mut self, _index: usize, _of: usize, key: &str) -> Box<dyn Observer> {
        self.started.push(key.to_string());
        Box::new(Silent)
    }
}

fn sweep(data: &Splits, cfg: &SweepConfig) -> (SweepSummary, Recorder) {
    let mut rec = Recorder::default();
    let s = run_sweep(&CpuBackend::new(), data, cfg, &mut rec).unwrap();
    (s, rec)
}

fn non_empty(p: &Path) -> bool {
    std::fs::metadata(p).map(|m| m.len() > 0).unwrap_or(false)
}

#[test]
fn tiny_sweep_writes_results_csvs_report_and_figures() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tiny_data(&tmp.path().join("data"));
    let out = tmp.path().join("sweep");
    let cfg = config(&out, fc_runs(2));
    let (s, rec) = sweep(&data, &cfg);
    let keys = vec![
        "fc8_sgd_lr0.01_b110_st3_seed1".to_string(),
        "fc8-bn_sgd_lr0.01_b110_st3_seed1".to_string(),
    ];
    assert_eq!(s.executed, keys);
    assert_eq!(rec.started, keys);
    assert!(s.skipped.is_empty());
    assert!(rec.notes.is_empty(), "{:?}", rec.notes);

    let records = read_records(&out.join(RESULTS_FILE), &mut |m| panic!("{m}")).unwrap();
    assert_eq!(records.len(), 2);
    for (r, k) in records.iter().zip(&keys) {
        assert_eq!(&r.key, k);
        assert_eq!(r.status, RunStatus::Ok);
        assert_eq!((r.seed, r.steps, r.batch), (1, 3, 110));
        assert_eq!(r.tables, vec![1]);
        assert_eq!(r.backend, "cpu");
        assert_eq!((r.val_images, r.test_images), (VAL, 60));
        assert!(r.test_acc.is_some() && r.val_acc.is_some() && r.images_per_s.unwrap() > 0.0);
        let csv = std::fs::read_to_string(out.join("runs").join(k).join("losses.csv")).unwrap();
        assert_eq!(csv.lines().count(), 1 + 3, "{csv}");
        assert!(csv.starts_with("step,epoch,loss\n"));
    }

    let report = std::fs::read_to_string(out.join(REPORT_FILE)).unwrap();
    assert_eq!(s.report.as_deref(), Some(out.join(REPORT_FILE).as_path()));
    for t in [
        "## Table I:",
        "## Table II:",
        "## Table III:",
        "## Table IV:",
        "## Runs",
    ] {
        assert!(report.contains(t), "{t} missing from\n{report}");
    }
    // Ours beside the study's; the missing RMSProp and Adam runs as "–".
    let sgd_row = report
        .lines()
        .find(|l| l.starts_with("| no batchnorm |") && l.contains("(9.58%)"))
        .unwrap();
    let pct = |r: &RunRecord| format!("{:.2}%", r.test_acc.unwrap() * 100.0);
    assert!(
        sgd_row.contains(&format!("{} (9.58%)", pct(&records[0]))),
        "{sgd_row}"
    );
    assert!(sgd_row.contains("– (86.23%)"), "{sgd_row}");
    assert!(report.contains("](figures/table1_fc8_optimizers.png)"));
    for ext in ["png", "svg"] {
        let fig = out.join(format!("figures/table1_fc8_optimizers.{ext}"));
        assert!(non_empty(&fig), "{} missing or empty", fig.display());
    }
    let png = std::fs::read(out.join("figures/table1_fc8_optimizers.png")).unwrap();
    assert!(png.starts_with(b"\x89PNG"));
    let svg = std::fs::read_to_string(out.join("figures/table1_fc8_optimizers.svg")).unwrap();
    assert!(svg.contains("<svg") && svg.contains("FC-8: training loss by optimizer"));
    // Tables without runs draw no figure.
    assert!(!out.join("figures/table2_cnn7_optimizers.png").exists());
}

#[test]
fn resume_after_a_crash_reruns_only_the_missing_run() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tiny_data(&tmp.path().join("data"));
    let out = tmp.path().join("sweep");
    let cfg = config(&out, fc_runs(2));
    let (first, _) = sweep(&data, &cfg);
    assert_eq!(first.executed.len(), 2);

    // A crash while appending the second record: cut its line in half.
    let results = out.join(RESULTS_FILE);
    let text = std::fs::read_to_string(&results).unwrap();
    let first_line_end = text.find('\n').unwrap() + 1;
    let second_len = text.len() - first_line_end;
    std::fs::write(&results, &text[..first_line_end + second_len / 2]).unwrap();

    let (again, rec) = sweep(&data, &cfg);
    assert_eq!(again.skipped, vec![first.executed[0].clone()]);
    assert_eq!(again.executed, vec![first.executed[1].clone()]);
    assert_eq!(
        rec.started, again.executed,
        "exactly the missing run trains"
    );
    // Issue 12, point 8: the half line is noted once and moved to results.jsonl.partial (kept, not
    // lost), so no later command warns about it again.
    let half = &text[first_line_end..first_line_end + second_len / 2];
    let about_it: Vec<&String> = rec
        .notes
        .iter()
        .filter(|n| n.contains("half-written"))
        .collect();
    assert_eq!(about_it.len(), 1, "{:?}", rec.notes);
    assert!(
        about_it[0].contains("results.jsonl.partial"),
        "{:?}",
        rec.notes
    );
    assert!(
        !rec.notes
            .iter()
            .any(|n| n.contains("not a complete run record")),
        "{:?}",
        rec.notes
    );
    let kept = std::fs::read_to_string(partial_path(&results)).unwrap();
    assert_eq!(kept, format!("{half}\n"));
    let mut warnings = 0;
    let records = read_records(&results, &mut |_| warnings += 1).unwrap();
    assert_eq!(warnings, 0);
    let keys: Vec<&str> = records.iter().map(|r| r.key.as_str()).collect();
    assert_eq!(
        keys,
        [first.executed[0].as_str(), first.executed[1].as_str()]
    );

    // Nothing left to do.
    let (third, rec) = sweep(&data, &cfg);
    assert!(third.executed.is_empty() && rec.started.is_empty());
    assert!(rec.notes.is_empty(), "{:?}", rec.notes);

    assert_eq!(third.skipped, first.executed);

    // A hand-edited line in the middle stays where it is, noted once per command (the sweep reads the
    // file twice: at the start and for its report).
    let text = std::fs::read_to_string(&results).unwrap();
    std::fs::write(&results, format!("{{\"edited\": true}}\n{text}")).unwrap();
    let (_, rec) = sweep(&data, &cfg);
    assert!(cfg.report);
    let about_it = rec
        .notes
        .iter()
        .filter(|n| n.contains("line 1: not a complete run record"));
    assert_eq!(about_it.count(), 1, "{:?}", rec.notes);
}

/// report.md without the timing columns (images/s, seconds: the last two of the runs table).
fn report_without_timing(dir: &Path) -> String {
    std::fs::read_to_string(dir.join(REPORT_FILE))
        .unwrap()
        .lines()
        .map(|l| {
            if l.starts_with("| ") && l.matches(" | ").count() >= 11 {
                let cells: Vec<&str> = l.split(" | ").collect();
                cells[..cells.len() - 2].join(" | ")
            } else {
                l.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn shards_merge_to_the_same_report_as_one_sweep() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tiny_data(&tmp.path().join("data"));
    let runs = fc_runs(3);
    let keys: Vec<String> = runs
        .iter()
        .map(|g| config(Path::new("."), vec![]).key(&g.spec))
        .collect();

    let whole = tmp.path().join("whole");
    sweep(&data, &config(&whole, runs.clone()));

    // Shards 0/2 and 1/2 writing one directory, then `wgtrain report`.
    let shared = tmp.path().join("shared");
    let shard = |dir: &PathBuf, i: usize| {
        let mut cfg = config(dir, runs.clone());
        cfg.shard = Shard { index: i, count: 2 };
        cfg.report = false;
        let (s, _) = sweep(&data, &cfg);
        assert!(s.report.is_none());
        s.executed
    };
    assert_eq!(shard(&shared, 0), vec![keys[0].clone(), keys[2].clone()]);
    assert_eq!(shard(&shared, 1), vec![keys[1].clone()]);
    build_report(&shared, &[], None, &mut |m| panic!("{m}")).unwrap();

    // Shards on two machines (two directories), merged by `wgtrain report --merge`.
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    shard(&a, 0);
    shard(&b, 1);
    build_report(&a, std::slice::from_ref(&b), None, &mut |m| panic!("{m}")).unwrap();
    assert!(a.join("runs").join(&keys[1]).join("losses.csv").is_file());

    let expected = report_without_timing(&whole);
    assert!(expected.contains(&keys[2]));
    assert_eq!(report_without_timing(&shared), expected);
    assert_eq!(report_without_timing(&a), expected);
    for dir in [&shared, &a] {
        assert!(non_empty(&dir.join("figures/table1_fc8_optimizers.png")));
    }
}

#[test]
fn grid_runs_shared_cells_once_with_the_study_defaults() {
    let all = grid(&[1, 2, 3, 4]);
    assert_eq!(all.len(), 6 + 6 + 4 + 10);
    let ids: Vec<String> = all.iter().map(|g| g.spec.id()).collect();
    let mut unique = ids.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), ids.len());
    let shared = all
        .iter()
        .find(|g| g.spec.id() == "cnn7_sgd_lr0.01")
        .unwrap();
    assert_eq!(shared.tables, vec![2, 3, 4]);
    assert!(ids.contains(&"fc8-bn_rmsprop_lr0.001".to_string()));
    assert!(ids.contains(&"cnn7-bn_sgd_lr0.1".to_string()));
    assert_eq!(grid(&[3]).len(), 6);
    let cfg = SweepConfig::new("x").quick();
    assert_eq!(
        cfg.key(&all[0].spec),
        "fc8_sgd_lr0.01_b110_st20_seed1_eval500"
    );
    assert_eq!(
        SweepConfig::new("x").key(&all[0].spec),
        "fc8_sgd_lr0.01_b110_e1_seed1"
    );
}

#[test]
fn bad_sweep_options_are_one_line_errors_with_exit_2() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("s");
    let out = out.to_str().unwrap();
    for (args, says) in [
        (vec!["sweep", "--shard", "3/2"], "--shard 3/2"),
        (vec!["sweep", "--shard", "1"], "--shard 1"),
        (vec!["sweep", "--shard", "0/0"], "--shard 0/0"),
        (vec!["sweep", "--tables", "5"], "--tables 5"),
        (vec!["sweep", "--tables", "1,x"], "--tables 1,x"),
        (
            vec!["sweep", "--seeds", "1,x"],
            "--seeds 1,x: 'x' is not a whole number",
        ),
        (vec!["sweep", "--seeds", "2,2"], "seed 2 is given twice"),
        (vec!["sweep", "--seeds", "1,2", "--seed", "3"], "--seed"),
        (vec!["report", "--out", out], "results.jsonl"),
    ] {
        let mut full = args.clone();
        if args[0] == "sweep" {
            full.extend(["--out", out, "--backend", "cpu"]);
        }
        assert_input_error(&wgtrain(&full), &[says]);
    }
    assert!(!Path::new(out).join(RESULTS_FILE).exists());
}

/// `--seeds`: the grid once per seed; the study's tables become mean ± sample std (n) with the study's
/// figure marked where it lies outside our spread, and cells.csv holds the same figures.
#[test]
fn several_seeds_report_mean_and_std_per_cell() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    support::synthetic_dir(&data, 300, 100, 1);
    let out = tmp.path().join("s");
    let (d, o) = (data.to_str().unwrap(), out.to_str().unwrap());
    let stdout = support::ok(wgtrain(&[
        "sweep",
        "--quick",
        "--tables",
        "1",
        "--seeds",
        "1,2",
        "--data",
        d,
        "--val-size",
        "100",
        "--out",
        o,
        "--backend",
        "cpu",
        "-q",
    ]));
    assert!(stdout.contains("12 runs trained"), "{stdout}");
    let report = std::fs::read_to_string(out.join("report.md")).unwrap();
    assert!(report.contains("over the 2 seeds' sweeps"), "{report}");
    assert!(report.contains("(n=2)"), "{report}");
    let records: Vec<serde_json::Value> = std::fs::read_to_string(out.join(RESULTS_FILE))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let acc = |model: &str, optim: &str| -> Vec<f64> {
        records
            .iter()
            .filter(|r| r["model"] == model && r["optim"] == optim)
            .map(|r| r["test_acc"].as_f64().unwrap())
            .collect()
    };
    let cells = std::fs::read_to_string(out.join("cells.csv")).unwrap();
    assert_eq!(cells.lines().count(), 7, "{cells}");
    let row = cells
        .lines()
        .find(|l| l.starts_with("1,batchnorm,Adam,"))
        .unwrap()
        .split(',')
        .map(String::from)
        .collect::<Vec<_>>();
    let a = acc("fc8-bn", "adam");
    assert_eq!(a.len(), 2);
    let mean = (a[0] + a[1]) / 2.0;
    assert!(
        (row[3].parse::<f64>().unwrap() - mean).abs() < 1e-12,
        "{row:?} vs {a:?}"
    );
    let sd = ((a[0] - mean).powi(2) + (a[1] - mean).powi(2)).sqrt();
    assert!(
        (row[4].parse::<f64>().unwrap() - sd).abs() < 1e-12,
        "{row:?}"
    );
    assert_eq!(row[5], "2");
    // The study's 97.21% is far above a 20-step run on this set: marked as outside our spread.
    assert!(report.contains("(97.21%) †"), "{report}");
    // The figure draws each line over both seeds: the mean in a band, labelled with n.
    let svg = std::fs::read_to_string(out.join("figures/table1_fc8_optimizers.svg")).unwrap();
    assert_eq!(
        svg.matches("(n=2)").count(),
        6,
        "a line per optimizer and row"
    );
    assert!(
        svg.contains("the mean over the seeds") && svg.contains("<polygon"),
        "a band"
    );
}
