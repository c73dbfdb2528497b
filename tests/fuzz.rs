//! Fuzzing the three readers of user files: IDX data (raw and gzip), checkpoints and predict's images
//! (damaged files, and valid images of any shape through the digit preparation).
//! Seeded and bounded (proptest with a fixed seed, a fixed number of inputs each, about a second per
//! reader in release): every mutated or random file must give either a value or a one-line error that
//! names the file, never a panic. A panic found here is kept below as a regression input.

use flate2::write::GzEncoder;
use proptest::prelude::*;
use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};
use std::io::Write;
use std::path::Path;
use std::time::Instant;
use wgtrain::backend::cpu::CpuBackend;
use wgtrain::io::checkpoint::Checkpoint;
use wgtrain::io::data;
use wgtrain::io::digit::load_digit;
use wgtrain::model::{Model, ModelSpec};
use wgtrain::optim::{OptimKind, Optimizer};

mod support;

/// Inputs per reader (and per variant: raw and gzip IDX, images and labels).
const CASES: u32 = 2000;

/// One way to damage a file: overwrite, insert, delete or truncate at a position (taken modulo the
/// file's length).
#[derive(Clone, Debug)]
enum Edit {
    Set(usize, u8),
    Insert(usize, u8),
    Delete(usize),
    Truncate(usize),
}

fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        4 => (any::<usize>(), any::<u8>()).prop_map(|(i, b)| Edit::Set(i, b)),
        1 => (any::<usize>(), any::<u8>()).prop_map(|(i, b)| Edit::Insert(i, b)),
        1 => any::<usize>().prop_map(Edit::Delete),
        1 => any::<usize>().prop_map(Edit::Truncate),
    ]
}

fn apply(mut bytes: Vec<u8>, edits: &[Edit]) -> Vec<u8> {
    for e in edits {
        let n = bytes.len().max(1);
        match *e {
            Edit::Set(i, b) if !bytes.is_empty() => bytes[i % n] = b,
            Edit::Insert(i, b) => bytes.insert(i % (bytes.len() + 1), b),
            Edit::Delete(i) if !bytes.is_empty() => {
                bytes.remove(i % n);
            }
            Edit::Truncate(i) => bytes.truncate(i % n),
            _ => {}
        }
    }
    bytes
}

/// A valid file damaged by 1-8 edits, mostly in its first 64 bytes (the headers), or random bytes.
fn mutated(valid: Vec<u8>) -> impl Strategy<Value = Vec<u8>> {
    let header = prop::collection::vec(
        (0..64usize, any::<u8>()).prop_map(|(i, b)| Edit::Set(i, b)),
        1..4,
    );
    prop_oneof![
        4 => prop::collection::vec(edit(), 1..8).prop_map({
            let v = valid.clone();
            move |e| apply(v.clone(), &e)
        }),
        3 => header.prop_map({
            let v = valid.clone();
            move |e| apply(v.clone(), &e)
        }),
        1 => prop::collection::vec(any::<u8>(), 0..300),
    ]
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut enc = GzEncoder::new(Vec::new(), flate2::Compression::fast());
    enc.write_all(bytes).unwrap();
    enc.finish().unwrap()
}

/// Runs `check` on `CASES` inputs from `strategy` with a fixed seed, and prints how many and how long.
fn fuzz<S: Strategy<Value = Vec<u8>>>(
    what: &str,
    seed: u8,
    strategy: S,
    check: impl Fn(&[u8]) -> Result<(), TestCaseError>,
) {
    let config = Config {
        cases: CASES,
        failure_persistence: None,
        // Report the failing input as found: shrinking a panic through the readers takes long.
        max_shrink_iters: 0,
        ..Config::default()
    };
    let rng = TestRng::from_seed(RngAlgorithm::ChaCha, &[seed; 32]);
    let mut runner = TestRunner::new_with_rng(config, rng);
    let t = Instant::now();
    let n = std::cell::Cell::new(0);
    let result = runner.run(&strategy, |bytes| {
        n.set(n.get() + 1);
        check(&bytes)
    });
    let kinds = KINDS.with(|k| std::mem::take(&mut *k.borrow_mut()));
    let rejected: usize = kinds.values().sum();
    eprintln!(
        "fuzz {what}: {} inputs in {:.2} s: {} accepted, {rejected} rejected with {} kinds of error",
        n.get(),
        t.elapsed().as_secs_f64(),
        n.get() - rejected,
        kinds.len()
    );
    if std::env::var_os("WGTRAIN_FUZZ_VERBOSE").is_some() {
        for (k, c) in &kinds {
            eprintln!("  {c:5}  {k}");
        }
    }
    if let Err(e) = result {
        panic!("fuzz {what}: {e}");
    }
}

thread_local! {
    /// The rejections of the current fuzz run by kind (the message up to its first digit: "FILE:
    /// truncated: header says "), to show how many different checks the inputs reached.
    static KINDS: std::cell::RefCell<std::collections::BTreeMap<String, usize>> = Default::default();
}

/// The error of a reader is one line and names `path`; counted among the run's rejections if `count`.
fn one_line_naming(err: &str, path: &Path, count: bool) -> Result<(), TestCaseError> {
    if count {
        let msg = err.replace(&path.display().to_string(), "FILE");
        let kind = msg
            .split(|c: char| c.is_ascii_digit())
            .next()
            .unwrap_or("")
            .to_string();
        KINDS.with(|k| *k.borrow_mut().entry(kind).or_default() += 1);
    }
    prop_assert!(!err.contains('\n'), "error spans lines: {err}");
    prop_assert!(
        err.contains(&path.display().to_string()),
        "error does not name {}: {err}",
        path.display()
    );
    Ok(())
}

#[test]
fn cifar_reader_survives_mutated_and_random_files() {
    use data::cifar::{self, Cifar};
    let dir = tempfile::tempdir().unwrap();
    let set = data::synthetic_shaped(5, 1, (32, 32, 3), 10);
    for (kind, seed) in [(Cifar::Ten, 11), (Cifar::Hundred { coarse: false }, 12)] {
        cifar::write_dir(dir.path(), &set, &set, kind).unwrap();
        let broken = dir.path().join(if kind == Cifar::Ten {
            "test_batch.bin"
        } else {
            "test.bin"
        });
        let valid = cifar::encode(&set, kind);
        fuzz(&format!("{kind:?}"), seed, mutated(valid), |bytes| {
            std::fs::write(&broken, bytes).unwrap();
            match data::load(dir.path(), 1, &data::DataOptions::default()) {
                Ok(s) => {
                    prop_assert_eq!(s.test.images.len(), s.test.len() * 3072);
                    Ok(())
                }
                Err(e) => one_line_naming(&e.to_string(), &broken, true),
            }
        });
        std::fs::remove_dir_all(dir.path()).unwrap();
        std::fs::create_dir_all(dir.path()).unwrap();
    }
}

#[test]
fn image_folder_reader_survives_mutated_images() {
    let dir = tempfile::tempdir().unwrap();
    let set = data::synthetic_shaped(3, 1, (32, 32, 3), 10);
    let names: Vec<String> = (0..10).map(|c| format!("c{c}")).collect();
    data::folder::write_split(dir.path(), "train", &set, &names).unwrap();
    data::folder::write_split(dir.path(), "test", &set, &names).unwrap();
    let broken = dir
        .path()
        .join(format!("test/c{}/00000.png", set.labels[0]));
    let valid = std::fs::read(&broken).unwrap();
    fuzz("image folder PNG", 13, mutated(valid), |bytes| {
        std::fs::write(&broken, bytes).unwrap();
        match data::load(dir.path(), 0, &data::DataOptions::default()) {
            Ok(s) => {
                prop_assert_eq!(s.test.images.len(), s.test.len() * s.test.pixels());
                Ok(())
            }
            // A PNG that decodes to another size is named by the size check, also one line.
            Err(e) => one_line_naming(&e.to_string(), &broken, true),
        }
    });
}

fn idx_files() -> (Vec<u8>, Vec<u8>) {
    data::encode_idx(&data::synthetic(6, 1))
}

#[test]
fn idx_reader_survives_mutated_and_random_files() {
    let dir = tempfile::tempdir().unwrap();
    let (images, labels) = idx_files();
    for (gz, seed) in [(false, 1), (true, 2)] {
        for (which, valid) in [("images", &images), ("labels", &labels)] {
            let suffix = if gz { ".gz" } else { "" };
            let img_path = dir.path().join(format!("images{suffix}"));
            let lab_path = dir.path().join(format!("labels{suffix}"));
            let (broken, other) = if which == "images" {
                (&img_path, (&lab_path, &labels))
            } else {
                (&lab_path, (&img_path, &images))
            };
            let encode = |b: &[u8]| if gz { gzip(b) } else { b.to_vec() };
            std::fs::write(other.0, encode(other.1)).unwrap();
            // gzip: damage the compressed stream half the time, the contents the other half.
            let strategy = prop_oneof![
                mutated(valid.clone()).prop_map(move |b| encode(&b)),
                mutated(encode(valid)),
            ];
            let label = format!("IDX {which}{}", if gz { " (gzip)" } else { "" });
            fuzz(&label, seed + which.len() as u8, strategy, |bytes| {
                std::fs::write(broken, bytes).unwrap();
                match data::load_pair(&img_path, &lab_path) {
                    Ok(set) => {
                        prop_assert_eq!(set.images.len(), set.len() * set.pixels());
                        Ok(())
                    }
                    Err(e) => one_line_naming(&e.to_string(), broken, true),
                }
            });
        }
    }
}

fn checkpoint_bytes() -> Vec<u8> {
    let be = CpuBackend::new();
    let spec = ModelSpec::parse("cnn3-bn").unwrap();
    let model = Model::new(&be, spec, 4, 1);
    let opt = Optimizer::new(OptimKind::Adam, 0.001);
    Checkpoint::capture(
        &be,
        &model,
        &opt,
        4,
        1,
        10,
        40,
        &wgtrain::io::data::DataInfo::mnist(),
    )
    .to_bytes()
    .unwrap()
}

#[test]
fn checkpoint_reader_survives_mutated_and_random_files() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ck.safetensors");
    let be = CpuBackend::new();
    fuzz("checkpoint", 5, mutated(checkpoint_bytes()), |bytes| {
        std::fs::write(&path, bytes).unwrap();
        match Checkpoint::load(&path) {
            // A file that still parses must also rebuild its model, or say why in one line.
            Ok(ck) => match ck.restore(&be, 4) {
                Ok(_) => Ok(()),
                Err(e) => one_line_naming(&e.to_string(), &path, true),
            },
            Err(e) => one_line_naming(&e.to_string(), &path, true),
        }
    });
}

fn png_bytes() -> Vec<u8> {
    let img =
        image::GrayImage::from_fn(12, 9, |x, y| image::Luma([((x * 20 + y * 7) % 256) as u8]));
    let mut out = std::io::Cursor::new(Vec::new());
    img.write_to(&mut out, image::ImageFormat::Png).unwrap();
    out.into_inner()
}

#[test]
fn predict_image_reader_survives_mutated_and_random_files() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("digit.png");
    fuzz("PNG", 6, mutated(png_bytes()), |bytes| {
        std::fs::write(&path, bytes).unwrap();
        // Counted once per input (the first pass); both must hold.
        for invert in [false, true] {
            match load_digit(&path, invert) {
                Ok(d) => prop_assert_eq!(d.pixels.len(), 784),
                Err(e) => one_line_naming(&e.to_string(), &path, !invert)?,
            }
        }
        Ok(())
    });
}

/// Model files (issue 18): every built-in file, mutated, through the parser and the shape inference
/// on two input shapes: a network, or one line naming the file.
#[test]
fn model_file_reader_survives_mutated_files() {
    use wgtrain::model::file::{parse_network, Shape, BUILTINS};
    let path = Path::new("models/fuzzed.toml");
    for (i, (_, text)) in BUILTINS.iter().enumerate().step_by(3) {
        fuzz(
            "model file",
            7 + i as u8,
            mutated(text.as_bytes().to_vec()),
            |bytes| {
                let text = String::from_utf8_lossy(bytes);
                for (n, input) in [
                    Shape::Image { h: 28, w: 28, c: 1 },
                    Shape::Image { h: 5, w: 3, c: 3 },
                ]
                .into_iter()
                .enumerate()
                {
                    match parse_network("models/fuzzed.toml", &text, input, 10) {
                        Ok(net) => {
                            prop_assert_eq!(net.layers.last().unwrap().output, Shape::Flat(10))
                        }
                        Err(e) => one_line_naming(&e.to_string(), path, n == 0)?,
                    }
                }
                Ok(())
            },
        );
    }
}

/// A valid PNG of `w` x `h` pixels in one of four colour types, its bytes from `seed`: the decoder
/// accepts it, so the digit code (crop to the ink, scale, centre by mass) meets every shape, thin
/// strips, blank and saturated images included.
fn any_png(w: u32, h: u32, kind: u8, seed: u64, fill: u8) -> Vec<u8> {
    use rand::{Rng, SeedableRng};
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let mut px = |n: usize| -> Vec<u8> {
        (0..n)
            .map(|_| match fill {
                0 => 0,
                1 => 255,
                _ => rng.random(),
            })
            .collect()
    };
    let n = (w * h) as usize;
    let img = match kind % 4 {
        0 => image::DynamicImage::ImageLuma8(image::GrayImage::from_raw(w, h, px(n)).unwrap()),
        1 => image::DynamicImage::ImageLumaA8(
            image::GrayAlphaImage::from_raw(w, h, px(2 * n)).unwrap(),
        ),
        2 => image::DynamicImage::ImageRgb8(image::RgbImage::from_raw(w, h, px(3 * n)).unwrap()),
        _ => image::DynamicImage::ImageRgba8(image::RgbaImage::from_raw(w, h, px(4 * n)).unwrap()),
    };
    let mut out = std::io::Cursor::new(Vec::new());
    img.write_to(&mut out, image::ImageFormat::Png).unwrap();
    out.into_inner()
}

#[test]
fn predict_prepares_any_valid_image() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("digit.png");
    let strategy = (1..160u32, 1..160u32, any::<u8>(), any::<u64>(), 0..4u8)
        .prop_map(|(w, h, kind, seed, fill)| any_png(w, h, kind, seed, fill));
    fuzz("valid PNGs", 7, strategy, |bytes| {
        std::fs::write(&path, bytes).unwrap();
        for invert in [false, true] {
            let d = load_digit(&path, invert).map_err(|e| TestCaseError::fail(e.to_string()))?;
            prop_assert_eq!(d.pixels.len(), 784);
        }
        Ok(())
    });
}

/// Invocations of the command-line fuzz (`WGTRAIN_CLI_FUZZ_CASES` overrides it, for longer runs).
const CLI_CASES: usize = 200;

/// Values tried for any option: edge numbers, overflows, non-numbers, lists, names and paths. `{tmp}`
/// and `{ck}` are replaced by a scratch directory and a valid checkpoint.
const CLI_VALUES: &[&str] = &[
    "0",
    "1",
    "2",
    "7",
    "-1",
    "-0",
    "0.5",
    "1e-3",
    "1e30",
    "nan",
    "inf",
    "-inf",
    "18446744073709551615",
    "18446744073709551616",
    "4000000000",
    "99999999999",
    "abc",
    "",
    " ",
    "1,2",
    "3x3x3",
    "100000x100000x100000",
    "0x1x1",
    "none",
    "fc8",
    "cnn7-bn",
    "cnn3",
    "adam",
    "sgd",
    "rmsprop",
    "gpu",
    "cpu",
    "auto",
    "1/2",
    "2/2",
    "0/0",
    "cpu,gpu",
    "gpu:nothing",
    "{tmp}/missing/x",
    "/proc/nope/x",
    "/proc/version",
    "/dev/full",
    "/",
    "{tmp}/o1",
    "{tmp}/a-file",
    "{tmp}/a-file/x",
    "{tmp}/p.svg",
    "{tmp}/p.jpg",
    "{ck}",
];

/// A command, the options fuzzed on it, and its base options.
type CliCommand = (
    &'static str,
    Vec<&'static str>,
    Vec<(&'static str, &'static str)>,
);

/// Per command: the options fuzzed, and base options (overridden when fuzzed) that keep a valid run
/// tiny and on the CPU.
fn cli_commands() -> Vec<CliCommand> {
    vec![
        (
            "train",
            vec![
                "--model",
                "--optim",
                "--lr",
                "--epochs",
                "--steps",
                "--batch",
                "--seed",
                "--val-size",
                "--log-every",
                "--save",
                "--out",
                "--resume",
                "--backend",
                "--data",
            ],
            vec![
                ("--backend", "cpu"),
                ("--data", "{data}"),
                ("--val-size", "100"),
                ("--batch", "10"),
                ("--steps", "3"),
                ("-q", ""),
            ],
        ),
        (
            "eval",
            vec!["--checkpoint", "--batch", "--plot", "--data", "--backend"],
            vec![
                ("--checkpoint", "{ck}"),
                ("--data", "{data}"),
                ("--backend", "cpu"),
                ("-q", ""),
            ],
        ),
        (
            "bench",
            vec![
                "--models",
                "--batch",
                "--steps",
                "--images",
                "--repeats",
                "--warmup",
                "--matmul",
                "--backend",
                "--plot",
                "--data",
            ],
            vec![
                ("--models", "fc8"),
                ("--batch", "10"),
                ("--steps", "1"),
                ("--repeats", "1"),
                ("--warmup", "0"),
                ("--matmul", "none"),
                ("--backend", "cpu"),
                ("--data", "{data}"),
            ],
        ),
        (
            "sweep",
            vec![
                "--tables",
                "--epochs",
                "--steps",
                "--seed",
                "--shard",
                "--log-every",
                "--val-size",
                "--out",
                "--data",
                "--backend",
            ],
            vec![
                ("--quick", ""),
                ("--tables", "1"),
                ("--out", "{tmp}/sweep"),
                ("--data", "{data}"),
                ("--val-size", "100"),
                ("--backend", "cpu"),
                ("-q", ""),
            ],
        ),
    ]
}

/// How one invocation ended.
enum CliOutcome {
    Ok,
    /// Exit 2 with one `error:` line.
    InputError,
    /// Exit 1 because training diverged (an absurd learning rate).
    Diverged,
    /// Still running at the time limit: a valid, long request (killed).
    TimedOut,
}

/// Random option values for train, eval, bench and sweep: every invocation must exit 0, or 2 with
/// exactly one `error:` line (1 only for a diverged run), with no panic, abort or backtrace.
#[test]
fn command_line_survives_random_option_values() {
    use rand::{Rng, SeedableRng};
    let tmp = tempfile::tempdir().unwrap();
    let data_dir = tmp.path().join("data");
    support::synthetic_dir(&data_dir, 300, 100, 1);
    std::fs::write(tmp.path().join("a-file"), "x").unwrap();
    let ck = tmp.path().join("ck.safetensors");
    let ok = support::wgtrain(&[
        "train",
        "--backend",
        "cpu",
        "--data",
        data_dir.to_str().unwrap(),
        "--val-size",
        "100",
        "--batch",
        "10",
        "--steps",
        "2",
        "-q",
        "--save",
        ck.to_str().unwrap(),
    ]);
    assert!(ok.status.success(), "{}", support::text(&ok.stderr));
    let fill = |v: &str, i: usize| {
        v.replace("{tmp}", tmp.path().to_str().unwrap())
            .replace("{ck}", ck.to_str().unwrap())
            .replace("{data}", data_dir.to_str().unwrap())
            .replace("/sweep", &format!("/sweep{i}"))
    };
    let cases = std::env::var("WGTRAIN_CLI_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(CLI_CASES);
    let commands = cli_commands();
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(16);
    let invocations: Vec<Vec<String>> = (0..cases)
        .map(|i| {
            let (cmd, fuzzed, base) = &commands[rng.random_range(0..commands.len())];
            // A base option with an empty value is a switch (`-q`, `--quick`): it takes no value.
            let mut opts: Vec<(String, Option<String>)> = base
                .iter()
                .map(|(k, v)| (k.to_string(), (!v.is_empty()).then(|| fill(v, i))))
                .collect();
            for _ in 0..rng.random_range(1..=3) {
                let flag = fuzzed[rng.random_range(0..fuzzed.len())];
                let value = fill(CLI_VALUES[rng.random_range(0..CLI_VALUES.len())], i);
                opts.retain(|(k, _)| k != flag && !(flag == "--epochs" && k == "--steps"));
                opts.push((flag.to_string(), Some(value)));
            }
            let mut args = vec![cmd.to_string()];
            for (k, v) in opts {
                args.push(k);
                args.extend(v);
            }
            args
        })
        .collect();
    let t = Instant::now();
    let outcomes: Vec<Result<CliOutcome, String>> = std::thread::scope(|s| {
        let chunks: Vec<_> = invocations.chunks(cases.div_ceil(2).max(1)).collect();
        let handles: Vec<_> = chunks
            .into_iter()
            .map(|chunk| {
                let cwd = tmp.path();
                s.spawn(move || chunk.iter().map(|a| run_cli(a, cwd)).collect::<Vec<_>>())
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect()
    });
    let count =
        |f: fn(&CliOutcome) -> bool| outcomes.iter().filter(|o| o.as_ref().is_ok_and(f)).count();
    let failures: Vec<&String> = outcomes.iter().filter_map(|o| o.as_ref().err()).collect();
    eprintln!(
        "fuzz command line: {} invocations in {:.1} s: {} ok, {} input errors, {} diverged, {} timed out, {} failures",
        outcomes.len(),
        t.elapsed().as_secs_f64(),
        count(|o| matches!(o, CliOutcome::Ok)),
        count(|o| matches!(o, CliOutcome::InputError)),
        count(|o| matches!(o, CliOutcome::Diverged)),
        count(|o| matches!(o, CliOutcome::TimedOut)),
        failures.len()
    );
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures
            .iter()
            .map(|s| s.as_str())
            .collect::<Vec<_>>()
            .join("\n")
    );
}

/// Runs one invocation in `cwd` (relative paths among the values land there) with a time limit, and
/// judges how it ended.
fn run_cli(args: &[String], cwd: &Path) -> Result<CliOutcome, String> {
    use std::process::{Command, Stdio};
    let mut child = Command::new(env!("CARGO_BIN_EXE_wgtrain"))
        .args(args)
        .current_dir(cwd)
        .env("RUST_BACKTRACE", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let t = Instant::now();
    let mut stderr = child.stderr.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = std::io::Read::read_to_string(&mut stderr, &mut s);
        s
    });
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break Some(st);
        }
        if t.elapsed().as_secs() >= 8 {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    };
    let stderr = reader.join().unwrap();
    let shown = format!("wgtrain {}\n  -> {status:?}\n{stderr}", args.join(" "));
    for bad in [
        "panicked",
        "backtrace",
        "RUST_BACKTRACE",
        "memory allocation",
    ] {
        if stderr.contains(bad) {
            return Err(shown);
        }
    }
    let Some(status) = status else {
        return Ok(CliOutcome::TimedOut);
    };
    let errors: Vec<&str> = stderr.lines().filter(|l| l.starts_with("error")).collect();
    let last_is_error = stderr
        .lines()
        .last()
        .is_some_and(|l| l.starts_with("error: "));
    match status.code() {
        Some(0) if errors.is_empty() => Ok(CliOutcome::Ok),
        Some(2) if errors.len() == 1 && last_is_error => Ok(CliOutcome::InputError),
        Some(1) if errors.len() == 1 && stderr.contains("training diverged") => {
            Ok(CliOutcome::Diverged)
        }
        _ => Err(shown),
    }
}
