//! The `wgtrain` command line: parses, calls the library, prints.

use anyhow::Result;
use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;
use wgtrain::backend::Backend;
use wgtrain::data;
use wgtrain::device::{run_on, BackendChoice, OnBackend};
use wgtrain::error::{is_input_error, InputError};
use wgtrain::model::ModelSpec;
use wgtrain::optim::OptimKind;
use wgtrain::progress::TrainProgress;
use wgtrain::train::{train, TrainConfig, TrainResult};

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
    Train(TrainArgs),
}

/// Where to run.
#[derive(Args, Clone)]
struct DeviceArgs {
    /// auto: the best real GPU, else the CPU; gpu: any wgpu adapter (software ones too), else an error.
    #[arg(long, value_enum, default_value_t = BackendChoice::Auto)]
    backend: BackendChoice,
    /// Pick the GPU adapter whose name contains NAME (case-insensitive); see `wgtrain devices`.
    #[arg(long, value_name = "NAME")]
    adapter: Option<String>,
}

#[derive(Args)]
struct TrainArgs {
    /// Model: fc8, fc8-bn, cnn3, cnn3-bn, cnn5, cnn5-bn, cnn7, cnn7-bn.
    #[arg(long, default_value = "fc8-bn")]
    model: String,
    /// Optimizer: sgd, rmsprop or adam.
    #[arg(long, default_value = "adam")]
    optim: String,
    /// Learning rate (default: sgd 0.01, rmsprop 0.001, adam 0.001).
    #[arg(long)]
    lr: Option<f32>,
    /// Passes over the training set (default 1).
    #[arg(long, conflicts_with = "steps")]
    epochs: Option<usize>,
    /// Optimizer steps, instead of --epochs.
    #[arg(long)]
    steps: Option<usize>,
    /// Images per step.
    #[arg(long, default_value_t = 110)]
    batch: usize,
    /// Seed for the weights and the shuffling.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    #[command(flatten)]
    device: DeviceArgs,
    /// Directory with train-images-idx3-ubyte, train-labels-idx1-ubyte, t10k-images-idx3-ubyte and
    /// t10k-labels-idx1-ubyte (each raw or .gz). Default: the MNIST copy in data/mnist.
    #[arg(long, value_name = "DIR")]
    data: Option<PathBuf>,
    /// Training images held out (from the end of the training file) for validation.
    #[arg(long, default_value_t = data::DEFAULT_VALIDATION)]
    val_size: usize,
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
    let cli = Cli::parse();
    let result = match cli.cmd {
        Command::Train(a) => cmd_train(a),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", one_line(&e));
            ExitCode::from(if is_input_error(&e) { 2 } else { 1 })
        }
    }
}

/// The error and its causes on one line.
fn one_line(e: &anyhow::Error) -> String {
    format!("{e:#}").replace('\n', " ")
}

fn notice(msg: &str) {
    eprintln!("note: {msg}");
}

fn positive(name: &str, v: usize) -> Result<usize> {
    if v == 0 {
        return Err(InputError::value(format!("{name} must be at least 1")).into());
    }
    Ok(v)
}

struct TrainJob {
    data: data::Splits,
    cfg: TrainConfig,
    quiet: bool,
}

impl OnBackend for TrainJob {
    type Output = TrainResult;
    fn run<B: Backend + 'static>(self, be: &B) -> Result<TrainResult> {
        let label = format!(
            "{} {} {}",
            self.cfg.model.name(),
            self.cfg.optim.name(),
            be.kind()
        );
        let mut progress = TrainProgress::new(label, self.quiet);
        train(be, &self.data, &self.cfg, &mut progress)
    }
}

fn cmd_train(a: TrainArgs) -> Result<()> {
    let model = ModelSpec::parse(&a.model).map_err(|e| InputError::value(e.to_string()))?;
    let optim = OptimKind::parse(&a.optim).map_err(|e| InputError::value(e.to_string()))?;
    let lr = a.lr.unwrap_or(optim.default_lr());
    if !(lr.is_finite() && lr > 0.0) {
        return Err(InputError::value(format!("--lr {lr}: must be a positive number")).into());
    }
    let batch = positive("--batch", a.batch)?;
    let data_dir = a.data.clone().unwrap_or_else(data::default_data_dir);
    let data = data::load_dir(&data_dir, a.val_size)?;
    let spe = TrainConfig::steps_per_epoch(data.train.len(), batch);
    let steps = match (a.steps, a.epochs) {
        (Some(s), _) => positive("--steps", s)?,
        (None, e) => positive("--epochs", e.unwrap_or(1))? * spe,
    };
    let cfg = TrainConfig {
        model,
        optim,
        lr,
        batch,
        steps,
        seed: a.seed,
        log_every: positive("--log-every", a.log_every)?,
        eval_each_epoch: true,
        out: a.out.clone(),
    };
    let job = TrainJob {
        data,
        cfg,
        quiet: a.quiet,
    };
    let r = run_on(
        a.device.backend,
        a.device.adapter.as_deref(),
        &mut notice,
        job,
    )?;
    println!(
        "{} {} lr {} on {} ({}): {} steps in {:.1}s, {:.0} images/s",
        r.model, r.optim, r.lr, r.backend, r.device, r.steps, r.seconds, r.images_per_s
    );
    println!(
        "train loss {:.4} | val loss {:.4} acc {:.2}% | test loss {:.4} acc {:.2}%",
        r.train_loss,
        r.val_loss,
        r.val_acc * 100.0,
        r.test_loss,
        r.test_acc * 100.0
    );
    if let Some(dir) = &a.out {
        println!("wrote {}", dir.display());
    }
    if a.json {
        println!("{}", serde_json::to_string(&r)?);
    }
    Ok(())
}
