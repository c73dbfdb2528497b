//! The `wgtrain` command line: parses, calls the library, prints.

use anyhow::Result;
use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;
use wgtrain::backend::select::{run_on, BackendChoice, OnBackend};
use wgtrain::backend::KernelChoice;
use wgtrain::error::{at_least_one, is_input_error, InputError};
use wgtrain::io::checkpoint::Checkpoint;
use wgtrain::io::data;
use wgtrain::model::ModelSpec;
use wgtrain::train::request::TrainRequest;

/// mimalloc: recording GPU work allocates and frees small objects by the thousand per step (wgpu's
/// command lists, and on Linux a software driver's own commands, whose `malloc` it also serves).
#[cfg(not(target_arch = "wasm32"))]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "wgtrain",
    version,
    about = "Train neural networks on any GPU through WGSL compute shaders (wgpu), checked against a CPU reference"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Train a model on MNIST (or any IDX data set) and report validation and test accuracy.
    #[command(allow_negative_numbers = true)]
    Train(TrainArgs),
    /// Run the study's grid (Tables I-IV) headless and resumable, then write its report and figures.
    #[command(allow_negative_numbers = true)]
    Sweep(SweepArgs),
    /// (Re)build a sweep's report.md and figures from its results, merging shards.
    #[command(allow_negative_numbers = true)]
    Report(ReportArgs),
    /// Training-step and matmul throughput of each backend (CPU and every GPU adapter), median of
    /// several repeats with min and max, and the GPU/CPU speed-up.
    #[command(allow_negative_numbers = true)]
    Bench(BenchArgs),
    /// Where a training step's time goes: each op timed alone (synced before and after), per backend,
    /// with calls, GPU dispatches, ms per step, share and GFLOP/s or GB/s.
    #[command(allow_negative_numbers = true)]
    Profile(ProfileArgs),
    /// Check a model (a built-in name or a model file) and print its layers: output shapes and
    /// parameter counts, and the total.
    #[command(allow_negative_numbers = true)]
    Model(ModelArgs),
    /// Draw a model's computational graph (or batch norm's own) as Graphviz DOT, SVG or PNG.
    #[command(allow_negative_numbers = true)]
    Graph(GraphArgs),
    /// Test accuracy, loss and confusion matrix of a checkpoint.
    #[command(allow_negative_numbers = true)]
    Eval(EvalArgs),
    /// Classify PNG images with a checkpoint: the top classes and their probabilities.
    #[command(allow_negative_numbers = true)]
    Predict(PredictArgs),
    /// List the GPU adapters wgpu sees and say which one `--backend auto` would use.
    #[command(allow_negative_numbers = true)]
    Devices(DevicesArgs),
    /// Check the GPU against the CPU reference on one model: loss, every gradient, one step of each optimizer.
    #[command(allow_negative_numbers = true)]
    Gradcheck(GradcheckArgs),
}

#[derive(Args)]
struct DevicesArgs {
    /// Print one JSON object per adapter.
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
struct GradcheckArgs {
    /// Model: a built-in (fc8, fc8-bn, cnn3, cnn3-bn, cnn5, cnn5-bn, cnn7, cnn7-bn) or a model file (.toml).
    #[arg(long, default_value = "fc8-bn")]
    model: String,
    /// Samples in the batch (the first ones of the training file).
    #[arg(long, default_value_t = 16)]
    batch: usize,
    /// Seed for the weights.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Pick the GPU adapter whose name contains NAME (software adapters such as lavapipe included).
    #[arg(long, value_name = "NAME")]
    adapter: Option<String>,
    /// GPU kernel set: auto (tiled on a real GPU, emulated on a CPU-emulated adapter such as lavapipe
    /// or SwiftShader), tiled (the real-GPU kernels, on any adapter) or emulated.
    #[arg(long, value_enum, default_value_t = KernelChoice::Auto)]
    kernels: KernelChoice,
    /// Data directory [default: the MNIST copy in data/mnist].
    #[arg(long, value_name = "DIR")]
    data: Option<PathBuf>,
    /// Bound on max|gpu - cpu| / max|cpu| for every gradient and updated weight.
    #[arg(long, default_value_t = 1e-4)]
    tol: f32,
    /// Bound on the relative difference of the losses.
    #[arg(long, default_value_t = 1e-5)]
    loss_tol: f32,
    /// Print one JSON object with every figure and "pass".
    #[arg(long)]
    json: bool,
}

/// Where to run.
#[derive(Args, Clone)]
struct DeviceArgs {
    /// auto: the best real GPU, else the CPU; gpu: any wgpu adapter (software ones too), else an error.
    #[arg(long, value_enum, default_value_t = BackendChoice::Auto)]
    backend: BackendChoice,
    /// Pick the GPU adapter whose name contains NAME (case-insensitive); see `wgtrain devices`. `sweep`
    /// takes a list, A,B,...: a job per GPU, the runs round-robin over them.
    #[arg(long, value_name = "NAME")]
    adapter: Option<String>,
    /// GPU kernel set: auto (tiled on a real GPU, emulated on a CPU-emulated adapter such as lavapipe
    /// or SwiftShader), tiled (the real-GPU kernels, on any adapter) or emulated.
    #[arg(long, value_enum, default_value_t = KernelChoice::Auto)]
    kernels: KernelChoice,
}

impl DeviceArgs {
    /// Runs `job` on the backend these options choose, printing notices (e.g. a CPU fallback) unless
    /// `quiet`.
    fn run<J: OnBackend>(&self, job: J, quiet: bool) -> Result<J::Output> {
        let mut say = |m: &str| {
            if !quiet {
                notice(m)
            }
        };
        run_on(
            self.backend,
            self.adapter.as_deref(),
            self.kernels,
            &mut say,
            job,
        )
    }
}

/// How a data directory is read, beyond its path.
#[derive(Args, Clone, Default)]
struct ReadArgs {
    /// Image folders: resize every image that is not NxN to NxN (without it, they must share one size).
    #[arg(long, value_name = "N")]
    image_size: Option<usize>,
    /// CIFAR-100: train on its 20 coarse labels instead of its 100 fine ones.
    #[arg(long)]
    coarse_labels: bool,
}

impl ReadArgs {
    fn options(&self) -> Result<data::DataOptions> {
        if let Some(n) = self.image_size {
            at_least_one("--image-size", n)?;
            if n > 4096 {
                return Err(InputError::value(format!(
                    "--image-size {n}: at most 4096 (an image's side in pixels)"
                ))
                .into());
            }
        }
        Ok(data::DataOptions {
            image_size: self.image_size,
            coarse: self.coarse_labels,
        })
    }
}

/// The data set of a training run or a sweep.
#[derive(Args)]
struct DataArgs {
    /// A data directory, its format found from what it holds: IDX files (train-images-idx3-ubyte,
    /// train-labels-idx1-ubyte, t10k-images-idx3-ubyte, t10k-labels-idx1-ubyte, each raw or .gz: MNIST,
    /// Fashion-MNIST, KMNIST, EMNIST), CIFAR-10 or CIFAR-100 binary files, or an image folder
    /// (train/<class>/*.png|jpg and test/<class>/...) [default: the MNIST copy in data/mnist].
    #[arg(long, value_name = "DIR")]
    data: Option<PathBuf>,
    /// Training images held out (from the end of the training set) for validation.
    #[arg(long, default_value_t = data::DEFAULT_VALIDATION)]
    val_size: usize,
    #[command(flatten)]
    read: ReadArgs,
}

#[derive(Args)]
struct TrainArgs {
    /// Model: a built-in (fc8, fc8-bn, cnn3, cnn3-bn, cnn5, cnn5-bn, cnn7, cnn7-bn) or a model file
    /// (.toml; see `wgtrain model`) [default: fc8-bn; with
    /// --resume, the checkpoint's].
    #[arg(long)]
    model: Option<String>,
    /// Optimizer: sgd, rmsprop, adam or adamw (decoupled weight decay) [default: adam; with --resume,
    /// the checkpoint's].
    #[arg(long)]
    optim: Option<String>,
    /// Learning rate [default: sgd 0.01, rmsprop 0.001, adam and adamw 0.001; with --resume, the
    /// checkpoint's].
    #[arg(long)]
    lr: Option<f32>,
    /// SGD's momentum, in [0, 1) [default: 0; with --resume, the checkpoint's].
    #[arg(long)]
    momentum: Option<f32>,
    /// SGD: Nesterov momentum (with --momentum).
    #[arg(long)]
    nesterov: bool,
    /// Weight decay: L2 for sgd, rmsprop and adam, decoupled for adamw [default: 0; with --resume, the
    /// checkpoint's].
    #[arg(long, value_name = "WD")]
    weight_decay: Option<f32>,
    /// Learning-rate schedule: constant, cosine (to 0 over the run), step:N (x0.1 every N steps) or
    /// step:N:GAMMA [default: constant; with --resume, the checkpoint's].
    #[arg(long, value_name = "SCHEDULE")]
    lr_schedule: Option<String>,
    /// Linear warm-up over the first N steps [default: 0; with --resume, the checkpoint's].
    #[arg(long, value_name = "N")]
    warmup: Option<u64>,
    /// Clip the gradients to this global L2 norm [default: no clipping; with --resume, the checkpoint's].
    #[arg(long, value_name = "NORM")]
    clip_norm: Option<f32>,
    /// Passes over the training set, with --resume counting those already done [default: 1].
    #[arg(long, conflicts_with = "steps")]
    epochs: Option<usize>,
    /// Optimizer steps, instead of --epochs; with --resume, counting those already done.
    #[arg(long)]
    steps: Option<usize>,
    /// Images per step [default: 110; with --resume, the checkpoint's].
    #[arg(long)]
    batch: Option<usize>,
    /// Seed for the weights and the shuffling [default: 1; with --resume, the checkpoint's].
    #[arg(long)]
    seed: Option<u64>,
    /// Save a checkpoint (safetensors: weights, batch-norm statistics, optimizer state, step and
    /// config) here at every epoch end and at the end of the run.
    #[arg(long, value_name = "PATH")]
    save: Option<PathBuf>,
    /// Continue the run saved in this checkpoint, exactly where it stopped (same data needed).
    #[arg(long, value_name = "PATH")]
    resume: Option<PathBuf>,
    #[command(flatten)]
    device: DeviceArgs,
    #[command(flatten)]
    data: DataArgs,
    /// Write losses.csv (per step), epochs.csv (per epoch) and metrics.json here.
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
    /// Read the loss back and show progress every N steps.
    #[arg(long, default_value_t = 50)]
    log_every: usize,
    /// Print the final metrics as one JSON object on the last line of stdout.
    #[arg(long)]
    json: bool,
    /// No progress output.
    #[arg(long, short)]
    quiet: bool,
}

fn main() -> ExitCode {
    // Mesa's device-select Vulkan layer probes for a Wayland display and prints an error when there is
    // none (a headless server); it adds nothing for compute, so skip it unless the user set it up.
    if std::env::var_os("NODEVICE_SELECT").is_none() {
        std::env::set_var("NODEVICE_SELECT", "1");
    }
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => return clap_exit(e),
    };
    let result = match cli.cmd {
        Command::Train(a) => cmd_train(a),
        Command::Sweep(a) => cmd_sweep(a),
        Command::Report(a) => cmd_report(a),
        Command::Bench(a) => cmd_bench(a),
        Command::Profile(a) => cmd_profile(a),
        Command::Graph(a) => cmd_graph(a),
        Command::Model(a) => cmd_model(a),
        Command::Eval(a) => cmd_eval(a),
        Command::Predict(a) => cmd_predict(a),
        Command::Devices(a) => cmd_devices(a),
        Command::Gradcheck(a) => cmd_gradcheck(a),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", one_line(&e));
            ExitCode::from(if is_input_error(&e) { 2 } else { 1 })
        }
    }
}

/// Help and version as clap prints them (exit 0); a usage error as one line, exit 2, like every other
/// bad input (clap's own rendering adds a usage block and a hint).
fn clap_exit(e: clap::Error) -> ExitCode {
    use clap::error::ErrorKind;
    if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) {
        let _ = e.print();
        return ExitCode::SUCCESS;
    }
    if e.kind() == ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand {
        let _ = e.print();
        return ExitCode::from(2);
    }
    let text = e.render().to_string();
    let first = text.lines().next().unwrap_or("error: invalid arguments");
    let line = if first.starts_with("error:") {
        first.to_string()
    } else {
        format!("error: {first}")
    };
    eprintln!("{} (see --help)", line.trim_end());
    ExitCode::from(2)
}

/// The error and its causes on one line.
fn one_line(e: &anyhow::Error) -> String {
    format!("{e:#}").replace('\n', " ")
}

fn notice(msg: &str) {
    eprintln!("note: {msg}");
}

fn cmd_train(a: TrainArgs) -> Result<()> {
    let request = TrainRequest {
        model: a.model,
        optim: a.optim,
        lr: a.lr,
        momentum: a.momentum,
        nesterov: a.nesterov,
        weight_decay: a.weight_decay,
        lr_schedule: a.lr_schedule,
        warmup: a.warmup,
        clip_norm: a.clip_norm,
        epochs: a.epochs,
        steps: a.steps,
        batch: a.batch,
        seed: a.seed,
        data: a.data.data,
        val_size: a.data.val_size,
        data_options: a.data.read.options()?,
        out: a.out.clone(),
        log_every: a.log_every,
        save: a.save.clone(),
        resume: a.resume,
        quiet: a.quiet,
    };
    let quiet = request.quiet;
    let job = request.resolve()?;
    let outcome = a.device.run(job, quiet)?;
    let r = &outcome.result;
    let steps = if r.start_step > 0 {
        format!(
            "steps {}-{} (resumed at step {})",
            r.start_step + 1,
            r.steps,
            r.start_step
        )
    } else {
        format!("{} steps", r.steps)
    };
    let recipe = match r.recipe.describe() {
        d if d.is_empty() => d,
        d => format!(" ({d})"),
    };
    println!(
        "{} {} lr {}{recipe} on {} ({}{}): {steps} in {:.1}s: training {:.1}s at {:.0} images/s, evaluation and saving {:.1}s",
        r.model,
        r.optim,
        r.lr,
        r.backend,
        r.device,
        r.kernels
            .as_deref()
            .map_or(String::new(), |k| format!(", {k} kernels")),
        r.seconds,
        r.train_seconds,
        r.images_per_s,
        (r.seconds - r.train_seconds).max(0.0)
    );
    println!(
        "train loss {:.4} | {} | test loss {:.4} acc {:.2}%",
        r.train_loss,
        wgtrain::train::progress::val_text(r.val_loss, r.val_acc),
        r.test_loss,
        r.test_acc * 100.0
    );
    // An output that failed mid-run was warned about then; the figures above are whole.
    let failed = |p: &std::path::Path| {
        outcome
            .write_failure
            .as_ref()
            .is_some_and(|e| e.path().is_some_and(|f| f.starts_with(p)))
    };
    if let Some(dir) = a.out.as_deref().filter(|d| !failed(d)) {
        println!("wrote {}", dir.display());
    }
    if let Some(path) = a.save.as_deref().filter(|p| !failed(p)) {
        println!("saved checkpoint {}", path.display());
    }
    if a.json {
        println!("{}", serde_json::to_string(r)?);
    }
    match outcome.write_failure {
        Some(e) => Err(e.into()),
        None => Ok(()),
    }
}

#[derive(Args)]
struct ModelArgs {
    /// A built-in model (see `wgtrain model --list`) or a model file (.toml).
    #[arg(value_name = "NAME_OR_FILE")]
    model: String,
    /// The data set whose image shape and class count the model is checked against [default: the MNIST
    /// copy in data/mnist].
    #[arg(long, value_name = "DIR")]
    data: Option<PathBuf>,
    #[command(flatten)]
    read: ReadArgs,
    /// Print the built-in model's file (to start your own from).
    #[arg(long)]
    show: bool,
}

fn cmd_model(a: ModelArgs) -> Result<()> {
    use wgtrain::model::file::{parse_network, read_model};
    let (name, text) = read_model(&a.model)?;
    let dir = a.data.clone().unwrap_or_else(data::default_data_dir);
    let (test, format, names) = data::load_test(&dir, &a.read.options()?)?;
    let net = parse_network(&name, &text, test.shape(), names.len())?;
    if !a.show {
        println!(
            "data: {} ({format}), {} images, {} classes",
            dir.display(),
            test.shape(),
            names.len()
        );
    }
    if a.show {
        print!("{text}");
    } else {
        print!("{}", net.summary());
    }
    Ok(())
}

#[derive(Args)]
struct GraphArgs {
    /// Model: a built-in (fc8, fc8-bn, cnn3, cnn3-bn, cnn5, cnn5-bn, cnn7, cnn7-bn) or a model file (.toml).
    #[arg(long, default_value = "fc8-bn")]
    model: String,
    /// Show the backward pass too: gradient edges (dL/dh) and parameter gradients.
    #[arg(long)]
    backward: bool,
    /// Draw one layer's own graph instead of the model's (the model's first layer of that kind).
    #[arg(long, value_enum)]
    layer: Option<wgtrain::tools::graph::LayerGraph>,
    /// Output format [default: from the -o extension (.svg, .png), else dot]; svg and png need
    /// Graphviz's `dot` program.
    #[arg(long, value_enum)]
    format: Option<wgtrain::tools::graph::GraphFormat>,
    /// Write here instead of stdout (required for svg and png).
    #[arg(short, long, value_name = "FILE")]
    output: Option<PathBuf>,
    /// Draw the model for this data set's image shape and classes [default: MNIST's, 28x28x1 and 10].
    #[arg(long, value_name = "DIR")]
    data: Option<PathBuf>,
    #[command(flatten)]
    read: ReadArgs,
}

fn cmd_graph(a: GraphArgs) -> Result<()> {
    use wgtrain::tools::graph::{self, GraphFormat, LayerGraph};
    let spec = match &a.data {
        None => ModelSpec::parse(&a.model)?,
        Some(dir) => {
            let (test, _, names) = data::load_test(dir, &a.read.options()?)?;
            ModelSpec::parse_for(&a.model, test.shape(), names.len())?
        }
    };
    let dot = match a.layer {
        None => graph::model_dot(&spec, a.backward),
        Some(LayerGraph::Batchnorm) => graph::batchnorm_dot(&spec, a.backward)?,
    };
    let format = match (a.format, &a.output) {
        (Some(f), _) => f,
        (None, Some(path)) => GraphFormat::from_path(path)?,
        (None, None) => GraphFormat::Dot,
    };
    if let Some(path) = &a.output {
        wgtrain::io::output::prepare_file(path, "-o")?;
    }
    match &a.output {
        None if format == GraphFormat::Dot => print!("{dot}"),
        None => {
            return Err(InputError::value(format!(
                "--format {} writes a file: give it with -o FILE",
                format.name()
            ))
            .into())
        }
        Some(path) => {
            graph::render(&dot, format, path)?;
            eprintln!("wrote {}", path.display());
        }
    }
    Ok(())
}

#[derive(Args)]
struct EvalArgs {
    /// A checkpoint written by `wgtrain train --save`.
    #[arg(long, value_name = "PATH")]
    checkpoint: PathBuf,
    /// The data directory whose test set to evaluate on (any format `train --data` reads; its images
    /// must have the checkpoint's shape and classes) [default: the MNIST copy in data/mnist]
    #[arg(long, value_name = "DIR")]
    data: Option<PathBuf>,
    #[command(flatten)]
    read: ReadArgs,
    /// Images per forward pass.
    #[arg(long, default_value_t = 500)]
    batch: usize,
    #[command(flatten)]
    device: DeviceArgs,
    /// Also draw the confusion matrix here: PNG, or SVG for a .svg name.
    #[arg(long, value_name = "FILE")]
    plot: Option<PathBuf>,
    /// Print the results as one JSON object instead.
    #[arg(long)]
    json: bool,
    /// No notes (such as the CPU fallback).
    #[arg(long, short)]
    quiet: bool,
}

fn cmd_eval(a: EvalArgs) -> Result<()> {
    use wgtrain::tools::predict::{plot_confusion, EvalJob};
    if let Some(path) = &a.plot {
        wgtrain::io::plot_file::prepare_plot(path, "--plot")?;
    }
    let checkpoint = Checkpoint::load(&a.checkpoint)?;
    checkpoint.check()?;
    let batch = at_least_one("--batch", a.batch)?;
    let dir = a.data.clone().unwrap_or_else(data::default_data_dir);
    let (test, format, names) = data::load_test(&dir, &a.read.options()?)?;
    checkpoint.check_data(&dir, test.shape(), &names, &format.to_string())?;
    checkpoint
        .spec()?
        .check_batch_memory("--batch", batch.min(test.len()))?;
    let job = EvalJob {
        checkpoint,
        test,
        batch,
    };
    let r = a.device.run(job, a.quiet)?;
    if let Some(path) = &a.plot {
        plot_confusion(&r, path)?;
    }
    if a.json {
        println!("{}", serde_json::to_string(&r)?);
        return Ok(());
    }
    println!(
        "{}: {} {} step {} ({:.2} epochs), on {} ({})",
        r.checkpoint, r.model, r.optim, r.step, r.epochs, r.backend, r.device
    );
    println!(
        "test: {} images, accuracy {:.2}%, loss {:.4}",
        r.images,
        r.test_acc * 100.0,
        r.test_loss
    );
    println!("confusion matrix (rows: true class, columns: predicted class):");
    print!("{}", r.confusion_text());
    if r.class_names
        .iter()
        .enumerate()
        .any(|(i, n)| *n != i.to_string())
    {
        let names: Vec<String> = r
            .class_names
            .iter()
            .enumerate()
            .map(|(i, n)| format!("{i} {n}"))
            .collect();
        println!("classes: {}", names.join(", "));
    }
    if let Some(path) = &a.plot {
        println!("wrote {}", path.display());
    }
    Ok(())
}

#[derive(Args)]
struct PredictArgs {
    /// A checkpoint written by `wgtrain train --save`.
    #[arg(long, value_name = "PATH")]
    checkpoint: PathBuf,
    /// PNG or JPEG images, any size, grey or colour. For a model of 28x28 grey images (MNIST): a
    /// white digit on black (unless --invert), scaled and centred by mass as MNIST's digits were; for
    /// any other model, converted to its colours and resized to its input.
    #[arg(value_name = "IMAGE", required = true)]
    images: Vec<PathBuf>,
    /// The images are dark on a light background: invert them.
    #[arg(long)]
    invert: bool,
    /// For a model of 28x28 grey images: read the images as they are (grey, resized to 28x28), not
    /// as digits cropped and centred the way MNIST's were (for Fashion-MNIST and the like).
    #[arg(long, conflicts_with = "invert")]
    no_digit_prep: bool,
    /// How many classes to show per image.
    #[arg(long, default_value_t = 3)]
    top: usize,
    #[command(flatten)]
    device: DeviceArgs,
    /// Print the results as one JSON array instead.
    #[arg(long)]
    json: bool,
    /// No notes (such as the CPU fallback or a light background).
    #[arg(long, short)]
    quiet: bool,
}

fn cmd_predict(a: PredictArgs) -> Result<()> {
    use wgtrain::io::digit::load_digit;
    use wgtrain::tools::predict::PredictJob;
    let checkpoint = Checkpoint::load(&a.checkpoint)?;
    checkpoint.check()?;
    let trained_on = checkpoint.meta.data();
    let top = at_least_one("--top", a.top)?.min(trained_on.class_names.len());
    let digits = trained_on.is_mnist_shaped() && !a.no_digit_prep;
    // Every image is tried: those that cannot be read are reported, the others still classified, and
    // the exit code says that some failed. One failure is the one error line, at the end; several are
    // each a line, then a count.
    let mut images = Vec::new();
    let mut unreadable = Vec::new();
    for path in &a.images {
        if !digits {
            match wgtrain::io::picture::load_picture(path, trained_on.shape()) {
                Ok(pixels) => images.push((path.clone(), pixels)),
                Err(e) => unreadable.push(e),
            }
            continue;
        }
        match load_digit(path, a.invert) {
            Ok(digit) => {
                if let (Some(h), false) = (&digit.hint, a.quiet) {
                    notice(h);
                }
                images.push((path.clone(), digit.pixels));
            }
            Err(e) => unreadable.push(e),
        }
    }
    let total = a.images.len();
    let mut failed = move || -> Result<()> {
        match unreadable.len() {
            0 => Ok(()),
            1 => Err(unreadable.remove(0).into()),
            n => {
                for e in &unreadable {
                    eprintln!("error: {e}");
                }
                Err(InputError::value(format!("{n} of {total} images could not be read")).into())
            }
        }
    };
    if images.is_empty() {
        return failed();
    }
    let job = PredictJob {
        checkpoint,
        images,
        top,
    };
    let preds = a.device.run(job, a.quiet)?;
    if a.json {
        println!("{}", serde_json::to_string(&preds)?);
        return failed();
    }
    for p in &preds {
        let classes: Vec<String> = p
            .top
            .iter()
            .map(|c| format!("{} ({:.1}%)", c.name, c.prob * 100.0))
            .collect();
        println!("{}: {}", p.image, classes.join(", "));
    }
    failed()
}

#[derive(Args)]
struct SweepArgs {
    /// An experiment file (versioned TOML: settings, axes, the report's table; see the README's
    /// "Your own experiments") [default: the study's tables].
    #[arg(value_name = "EXPERIMENT")]
    experiment: Option<PathBuf>,
    /// Which of the study's tables to run, e.g. 1,2 (runs two tables share are run once).
    #[arg(long, default_value = "1,2,3,4")]
    tables: String,
    /// Passes over the training set per run (500 steps each at batch 110 on MNIST).
    #[arg(long, default_value_t = 1, conflicts_with_all = ["steps", "quick"])]
    epochs: usize,
    /// Optimizer steps per run, instead of --epochs.
    #[arg(long, conflicts_with = "quick")]
    steps: Option<usize>,
    /// Smoke check, a few minutes on a CPU: 20 steps per run, accuracy on the first 500 validation and
    /// 500 test images. Its runs have their own keys; not comparable with the study.
    #[arg(long)]
    quick: bool,
    #[command(flatten)]
    device: DeviceArgs,
    #[command(flatten)]
    data: DataArgs,
    /// Sweep directory: results.jsonl, runs/<key>/losses.csv, report.md, figures/.
    #[arg(long, value_name = "DIR", default_value = "runs/sweep")]
    out: PathBuf,
    /// Train N runs at once, in N processes sharing the directory (each with its share of the CPU
    /// threads); the report is written when all have finished.
    #[arg(long, default_value_t = 1, value_name = "N")]
    jobs: usize,
    /// Set on the processes `--jobs` starts: train, write no report.
    #[arg(long = "job-of-sweep", hide = true)]
    job_of_sweep: bool,
    /// Seed of every run's weights and shuffling (recorded with each run).
    #[arg(long, default_value_t = 1, conflicts_with = "seeds")]
    seed: u64,
    /// Several seeds, e.g. 1,2,3: the grid once per seed; the report's cells become mean ± std.
    #[arg(long, value_name = "LIST")]
    seeds: Option<String>,
    /// Run every N-th run starting at I (0 <= I < N), so N processes or machines share one sweep;
    /// build the report with `wgtrain report` when all have finished.
    #[arg(long, value_name = "I/N")]
    shard: Option<String>,
    /// Read losses back and update progress every N steps.
    #[arg(long, default_value_t = 50)]
    log_every: usize,
    /// Only warnings and errors.
    #[arg(long, short)]
    quiet: bool,
}

#[derive(Args)]
struct ReportArgs {
    /// Sweep directory whose results.jsonl to report (the report is written here).
    #[arg(long, value_name = "DIR", default_value = "runs/sweep")]
    out: PathBuf,
    /// Another sweep directory (a shard that wrote elsewhere) whose runs to copy into --out first.
    #[arg(long, value_name = "DIR")]
    merge: Vec<PathBuf>,
    /// Which sweep to report when the results hold several (e.g. b110_e1_seed1) [default: the one
    /// with the most runs].
    #[arg(long, value_name = "SIG")]
    sweep: Option<String>,
}

fn cmd_sweep(a: SweepArgs) -> Result<()> {
    use wgtrain::study::experiment::{self, Experiment, ExperimentJob};
    use wgtrain::study::grid::{parse_tables, Shard};
    use wgtrain::study::store::RESULTS_FILE;
    use wgtrain::study::sweep::{Budget, SweepConfig, SweepProgress};
    let shard = a.shard.as_deref().map(Shard::parse).transpose()?;
    let log_every = at_least_one("--log-every", a.log_every)?;
    let mut jobs = wgtrain::study::jobs::check_jobs(a.jobs)?;
    // Several GPUs: at least a job per GPU, the runs round-robin over them as the jobs claim them.
    let adapters = wgtrain::study::jobs::adapter_list(a.device.adapter.as_deref());
    let mut device = a.device.clone();
    if !adapters.is_empty() {
        if a.device.backend != BackendChoice::Gpu {
            return Err(InputError::value(format!(
                "--adapter {}: a list of GPUs needs --backend gpu",
                a.device.adapter.as_deref().unwrap_or_default()
            ))
            .into());
        }
        jobs = jobs.max(adapters.len());
        device.adapter = Some(adapters[0].clone());
    }
    // An experiment file, or the study's tables: the sweeps to run, and where the data is.
    let exp = a.experiment.as_deref().map(Experiment::load).transpose()?;
    let (mut sweeps, data_dir, val_size) = match &exp {
        Some(e) => {
            if a.tables != "1,2,3,4"
                || a.steps.is_some()
                || a.epochs != 1
                || a.seed != 1
                || a.seeds.is_some()
            {
                return Err(InputError::value(format!(
                    "{}: --tables, --epochs, --steps, --seed and --seeds are the study's; an experiment file sets its own",
                    e.path.display()
                ))
                .into());
            }
            let dir = e.data_dir().or_else(|| a.data.data.clone());
            (e.sweeps(&a.out, a.quick), dir, e.settings.val_size)
        }
        None => {
            let mut cfg = SweepConfig::new(&a.out);
            if a.quick {
                cfg = cfg.quick();
            } else if let Some(s) = a.steps {
                cfg.budget = Budget::Steps(s);
            } else {
                cfg.budget = Budget::Epochs(a.epochs);
            }
            cfg.tables = parse_tables(&a.tables)?;
            cfg.seed = a.seed;
            let seeds = match &a.seeds {
                Some(list) => parse_seeds(list)?,
                None => vec![a.seed],
            };
            let per_seed = seeds
                .into_iter()
                .map(|seed| SweepConfig {
                    seed,
                    ..cfg.clone()
                })
                .collect();
            (per_seed, a.data.data.clone(), a.data.val_size)
        }
    };
    let data_dir = data_dir.unwrap_or_else(data::default_data_dir);
    let study_sig = sweeps[0].signature();
    for cfg in sweeps.iter_mut() {
        cfg.shard = shard.unwrap_or_default();
        cfg.log_every = log_every;
        // Written below, once every job has finished.
        cfg.report = false;
        cfg.data_label = data_dir.display().to_string();
        cfg.validate()?;
    }
    wgtrain::io::output::prepare_dir(&a.out, "--out")?;
    let data = data::load(&data_dir, val_size, &a.data.read.options()?)?;
    if let (Some(e), false) = (&exp, a.job_of_sweep) {
        experiment::keep_copy(e, &a.out, a.quick)?;
    }
    // Everything is checked: start the other jobs, each with its share of the threads.
    let children = if jobs > 1 {
        use wgtrain::study::jobs;
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let threads = jobs::threads_per_job(cores, jobs);
        jobs::limit_threads(threads);
        let args: Vec<std::ffi::OsString> = std::env::args_os().skip(1).collect();
        if !a.quiet {
            notice(&format!(
                "{jobs} jobs on this directory, {threads} CPU thread{} each",
                if threads == 1 { "" } else { "s" }
            ));
        }
        jobs::spawn(jobs - 1, &args, threads, &adapters)?
    } else {
        Vec::new()
    };
    let label = match (shard, &exp) {
        (Some(s), _) => format!("sweep shard {s}"),
        (None, Some(_)) => "experiment".to_string(),
        (None, None) => "sweep".to_string(),
    };
    let mut progress = SweepProgress::new(label, a.quiet);
    let job = ExperimentJob {
        data,
        sweeps,
        observer: &mut progress,
    };
    let s = device.run(job, a.quiet)?;
    wgtrain::study::jobs::wait_all(children)?;
    if a.job_of_sweep {
        return Ok(());
    }
    let mut warn = |m: &str| eprintln!("warning: {m}");
    let report = match (&exp, shard.is_some()) {
        (_, true) => None,
        (Some(e), false) => Some(experiment::write_experiment_report(
            e, &a.out, a.quick, &mut warn,
        )?),
        (None, false) => Some(wgtrain::study::report::build_report(
            &a.out,
            &[],
            Some(&study_sig),
            &mut warn,
        )?),
    };
    let mut also = String::new();
    if !s.diverged.is_empty() {
        also += &format!(", {} diverged", s.diverged.len());
    }
    if !s.elsewhere.is_empty() {
        let by = if jobs > 1 {
            "by this sweep's other jobs"
        } else {
            "by another sweep process on this directory"
        };
        also += &format!(", {} trained {by}", s.elsewhere.len());
    }
    println!(
        "{} runs trained, {} already done{also}; results in {}",
        s.executed.len(),
        s.skipped.len(),
        a.out.join(RESULTS_FILE).display()
    );
    match report {
        Some(p) => println!("wrote {}", p.display()),
        None => println!(
            "shard done; when every shard has finished: wgtrain report --out {}",
            a.out.display()
        ),
    }
    Ok(())
}

/// `--seeds 1,2,3`: distinct whole numbers, at least one.
fn parse_seeds(list: &str) -> Result<Vec<u64>, InputError> {
    let mut seeds = Vec::new();
    for part in list.split(',').map(str::trim) {
        let seed: u64 = part.parse().map_err(|_| {
            InputError::value(format!("--seeds {list}: '{part}' is not a whole number"))
        })?;
        if seeds.contains(&seed) {
            return Err(InputError::value(format!(
                "--seeds {list}: seed {seed} is given twice"
            )));
        }
        seeds.push(seed);
    }
    Ok(seeds)
}

fn cmd_report(a: ReportArgs) -> Result<()> {
    use wgtrain::study::{experiment, report};
    let mut warn = |m: &str| eprintln!("warning: {m}");
    // A directory an experiment file was swept into gets that experiment's report.
    let path = match experiment::stored(&a.out)? {
        Some((e, quick)) => {
            report::merge_into(&a.out, &a.merge, &mut warn)?;
            experiment::write_experiment_report(&e, &a.out, quick, &mut warn)?
        }
        None => report::build_report(&a.out, &a.merge, a.sweep.as_deref(), &mut warn)?,
    };
    println!("wrote {}", path.display());
    Ok(())
}

#[cfg(feature = "gpu")]
fn cmd_devices(a: DevicesArgs) -> Result<()> {
    let adapters = wgtrain::backend::gpu::list_adapters();
    if a.json {
        for ad in &adapters {
            println!("{}", serde_json::to_string(ad)?);
        }
        return Ok(());
    }
    if adapters.is_empty() {
        println!("no GPU adapter found; --backend auto trains on the CPU backend");
        return Ok(());
    }
    println!(
        "{:<4} {:<48} {:<8} {:<14} driver",
        "auto", "adapter", "backend", "type"
    );
    for ad in &adapters {
        let mark = if ad.auto_choice { "*" } else { "" };
        println!(
            "{:<4} {:<48} {:<8} {:<14} {}",
            mark, ad.name, ad.backend, ad.device_type, ad.driver
        );
    }
    if !adapters.iter().any(|a| a.auto_choice) {
        println!("--backend auto uses the CPU backend (software adapters only with --backend gpu)");
    }
    Ok(())
}

#[cfg(not(feature = "gpu"))]
fn cmd_devices(_: DevicesArgs) -> Result<()> {
    println!("this build has no GPU backend (feature `gpu` is off); --backend auto trains on the CPU backend");
    Ok(())
}

#[cfg(feature = "gpu")]
fn cmd_gradcheck(a: GradcheckArgs) -> Result<()> {
    use wgtrain::tools::gradcheck::{gradcheck, Tolerance};
    let batch = at_least_one("--batch", a.batch)?;
    let dir = a.data.clone().unwrap_or_else(data::default_data_dir);
    let train = data::load(&dir, 0, &data::DataOptions::default())?.train;
    let spec = ModelSpec::parse_for(&a.model, train.shape(), train.classes())?;
    if batch > train.len() {
        return Err(InputError::value(format!(
            "--batch {batch}: the data set has only {} images",
            train.len()
        ))
        .into());
    }
    spec.check_batch_memory("--batch", batch)?;
    for (flag, v) in [("--tol", a.tol), ("--loss-tol", a.loss_tol)] {
        if !(v.is_finite() && v > 0.0) {
            return Err(InputError::value(format!("{flag} {v}: must be a positive number")).into());
        }
    }
    let gpu = wgtrain::backend::gpu::GpuBackend::open(a.adapter.as_deref(), true, a.kernels)?;
    let tol = Tolerance {
        tensor: a.tol,
        loss: a.loss_tol,
    };
    let r = gradcheck(&gpu, spec, batch, a.seed, &train, tol);
    if a.json {
        println!("{}", serde_json::to_string(&r)?);
    } else {
        println!(
            "{} batch {} seed {} on {}, {} kernels",
            r.model, r.batch, r.seed, r.device, r.kernels
        );
        println!(
            "loss cpu {:.7} gpu {:.7} rel {:.2e} (bound {:.0e})",
            r.loss_cpu, r.loss_gpu, r.loss_rel_err, tol.loss
        );
        if r.relu_kinks > 0 {
            println!(
                "{} ReLU output(s) within rounding of the kink on one backend only: set to 0 on both",
                r.relu_kinks
            );
        }
        println!("{:<14} {:<22} {:>10}  ok", "check", "tensor", "rel err");
        for t in &r.tensors {
            println!(
                "{:<14} {:<22} {:>10.2e}  {}",
                t.what,
                t.name,
                t.rel_err,
                if t.pass { "yes" } else { "NO" }
            );
        }
        let worst = r
            .worst()
            .map(|t| format!("{} {} {:.2e}", t.what, t.name, t.rel_err))
            .unwrap_or_default();
        println!(
            "{}: worst {worst} (bound {:.0e})",
            if r.pass { "PASS" } else { "FAIL" },
            tol.tensor
        );
    }
    if r.pass {
        Ok(())
    } else {
        Err(anyhow::anyhow!("gradcheck failed for {}", r.model))
    }
}

#[cfg(not(feature = "gpu"))]
fn cmd_gradcheck(_: GradcheckArgs) -> Result<()> {
    Err(
        InputError::value("gradcheck needs the GPU backend (this build has feature `gpu` off)")
            .into(),
    )
}

#[derive(Args)]
struct BenchArgs {
    /// Models, comma separated: built-ins (fc8, fc8-bn, cnn3, cnn3-bn, cnn5, cnn5-bn, cnn7, cnn7-bn) or
    /// model files (.toml), or "none".
    #[arg(long, default_value = wgtrain::tools::bench::DEFAULT_MODELS)]
    models: String,
    /// Batch sizes, comma separated.
    #[arg(long, default_value = wgtrain::tools::bench::DEFAULT_BATCHES)]
    batch: String,
    /// Timed training steps (and matmul calls) per repeat [default: enough for --images images and
    /// 0.5 s per repeat; matmul: about 0.3 s per repeat].
    #[arg(long)]
    steps: Option<usize>,
    /// Timed images per repeat when --steps is not given (steps = images / batch, at least 1).
    #[arg(long, default_value_t = wgtrain::tools::bench::DEFAULT_IMAGES)]
    images: usize,
    /// Repeats of each measurement; the figures are their median, min and max.
    #[arg(long, default_value_t = wgtrain::tools::bench::DEFAULT_REPEATS)]
    repeats: usize,
    /// Untimed warm-up steps before each measurement (pipelines, caches, optimizer state).
    #[arg(long, default_value_t = 1)]
    warmup: usize,
    /// Backends, comma separated: cpu, gpu (the best adapter), gpu:NAME (the adapter whose name
    /// contains NAME) [default: cpu and every GPU adapter, software ones such as lavapipe included].
    #[arg(long)]
    backend: Option<String>,
    /// Matmul shapes MxKxN, comma separated, or "none".
    #[arg(long, default_value = wgtrain::tools::bench::DEFAULT_MATMULS)]
    matmul: String,
    /// Directory with the MNIST training files [default: data/mnist, else a synthetic set].
    #[arg(long, value_name = "DIR")]
    data: Option<PathBuf>,
    /// Print one JSON object per measurement instead of the tables.
    #[arg(long)]
    json: bool,
    /// GPU kernel set: auto (tiled on a real GPU, emulated on a CPU-emulated adapter such as lavapipe
    /// or SwiftShader), tiled (the real-GPU kernels, on any adapter) or emulated.
    #[arg(long, value_enum, default_value_t = KernelChoice::Auto)]
    kernels: KernelChoice,
    /// Draw images/s against batch size per backend and model to this PNG file (SVG for a .svg name).
    #[arg(long, value_name = "FILE")]
    plot: Option<PathBuf>,
}

fn cmd_bench(a: BenchArgs) -> Result<()> {
    use wgtrain::tools::bench;
    let mut cfg = bench::BenchConfig {
        models: Vec::new(),
        batches: bench::parse_batches(&a.batch)?,
        steps: a.steps,
        images: a.images,
        warmup: a.warmup,
        repeats: a.repeats,
        matmuls: bench::parse_matmuls(&a.matmul)?,
        backends: a
            .backend
            .as_deref()
            .map(bench::parse_backends)
            .transpose()?,
        kernels: a.kernels,
        ..Default::default()
    };
    if let Some(path) = &a.plot {
        wgtrain::io::plot_file::prepare_plot(path, "--plot")?;
    }
    let (data, desc) = bench::load_data(a.data.as_deref())?;
    cfg.models = bench::parse_models_for(&a.models, &data)?;
    cfg.validate(data.len())?;
    notice(&format!("data: {desc}"));
    let rows = bench::run(&cfg, &data, &mut |m: &str| notice(m))?;
    if a.json {
        for r in &rows {
            println!("{}", serde_json::to_string(r)?);
        }
    } else {
        print!("{}", bench::format_tables(&rows));
    }
    if let Some(path) = &a.plot {
        bench::plot(&rows, path)?;
        eprintln!("wrote {}", path.display());
    }
    Ok(())
}

#[derive(Args)]
struct ProfileArgs {
    /// Model: a built-in (fc8, fc8-bn, cnn3, cnn3-bn, cnn5, cnn5-bn, cnn7, cnn7-bn) or a model file (.toml).
    #[arg(long, default_value = "cnn7-bn")]
    model: String,
    /// Optimizer: sgd, rmsprop or adam.
    #[arg(long, default_value = "adam")]
    optim: String,
    /// Images per step.
    #[arg(long, default_value_t = 110)]
    batch: usize,
    /// Profiled training steps (after unprofiled warm-up steps); the figures are per step.
    #[arg(long, default_value_t = 5)]
    steps: usize,
    /// Backends, comma separated: cpu, gpu (the best adapter), gpu:NAME [default: cpu, and gpu when
    /// wgpu finds an adapter, software ones included].
    #[arg(long)]
    backend: Option<String>,
    /// Directory with the MNIST training files [default: data/mnist, else a synthetic set].
    #[arg(long, value_name = "DIR")]
    data: Option<PathBuf>,
    /// Print one JSON object per backend instead of the tables.
    #[arg(long)]
    json: bool,
    /// GPU kernel set: auto (tiled on a real GPU, emulated on a CPU-emulated adapter such as lavapipe
    /// or SwiftShader), tiled (the real-GPU kernels, on any adapter) or emulated.
    #[arg(long, value_enum, default_value_t = KernelChoice::Auto)]
    kernels: KernelChoice,

    /// How each op is timed: auto (GPU timestamps where the adapter has them, else syncs) or sync
    /// (each op alone, the device synced before and after it).
    #[arg(long, value_enum, default_value_t = wgtrain::tools::profile::Timing::Auto)]
    timing: wgtrain::tools::profile::Timing,
}

fn cmd_profile(a: ProfileArgs) -> Result<()> {
    use wgtrain::optim::OptimKind;
    use wgtrain::tools::{bench, profile};
    let optim = OptimKind::parse(&a.optim).map_err(|e| InputError::value(e.to_string()))?;
    let batch = at_least_one("--batch", a.batch)?;
    let steps = at_least_one("--steps", a.steps)?;
    let backends = match &a.backend {
        Some(b) => bench::parse_backends(b)?,
        None => profile::default_backends(&mut notice),
    };
    // Before any note, so that a bad --kernels is the one line on stderr.
    bench::check_kernels(Some(&backends), a.kernels)?;
    let (data, desc) = bench::load_data(a.data.as_deref())?;
    let spec = ModelSpec::parse_for(&a.model, data.shape(), data.classes())?;
    spec.check_batch_memory("--batch", batch)?;
    notice(&format!("data: {desc}"));
    let run = profile::ProfileRun {
        spec,
        optim,
        batch,
        steps,
        timing: a.timing,
        kernels: a.kernels,
    };
    let profiles = profile::profile_backends(&backends, &run, &data, &mut notice)?;
    for p in &profiles {
        if a.json {
            println!("{}", serde_json::to_string(p)?);
        } else {
            println!("{}", profile::format_profile(p));
        }
    }
    Ok(())
}
