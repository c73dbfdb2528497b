//! wgtrain in a browser tab: the library's [`Trainer`] on the browser's WebGPU adapter, or on the CPU
//! reference compiled to wasm, driven from `web/app.js` one awaited log point at a time so the page
//! stays responsive. Every error reaches the page as one line (a rejected promise with a message).
//!
//! Objects handed to the page live as long as it does: the data set and backends are leaked to
//! `'static`, which the [`Trainer`]'s borrows need across awaits (a page loads them once).

use serde::Serialize;
use std::fmt::Display;
use wasm_bindgen::prelude::*;
use web_time::Instant;
use wgtrain::backend::cpu::CpuBackend;
use wgtrain::backend::gpu::GpuBackend;
use wgtrain::backend::{Backend, KernelChoice};
use wgtrain::io::checkpoint::CheckpointData;
use wgtrain::io::data::Splits;
use wgtrain::model::ModelSpec;
use wgtrain::optim::{OptimKind, Recipe};
use wgtrain::tools::gradcheck::{gradcheck_async, Tolerance};
use wgtrain::tools::opcheck::check_ops;
use wgtrain::tools::predict::predict_pixels_async;
use wgtrain::train::{EpochMetrics, Observer, Persist, TrainConfig, Trained, Trainer};

/// An error as the page shows it: one line, causes joined.
fn one_line(e: impl Display) -> JsError {
    JsError::new(
        &format!("{e:#}")
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" "),
    )
}

fn json<T: Serialize>(v: &T) -> Result<String, JsError> {
    serde_json::to_string(v).map_err(one_line)
}

/// A panic is a bug: its message goes to the console, and the page shows the trap that follows as
/// one line (app.js catches it).
#[wasm_bindgen(start)]
pub fn start() {
    std::panic::set_hook(Box::new(|info| {
        web_sys::console::error_1(&format!("wgtrain panicked: {info}").into());
    }));
}

/// The built-in models' names, the study's 8 first.
#[wasm_bindgen]
pub fn builtin_models() -> Vec<String> {
    wgtrain::model::file::BUILTINS
        .iter()
        .map(|(name, _)| name.to_string())
        .collect()
}

/// A built-in model's file, to show or edit in the page.
#[wasm_bindgen]
pub fn builtin_model_text(name: &str) -> Option<String> {
    wgtrain::model::file::builtin(name).map(str::to_string)
}

/// A data set decoded in wasm from the four IDX files as fetched (gzip or raw).
#[wasm_bindgen]
pub struct Data {
    splits: &'static Splits,
}

#[wasm_bindgen]
impl Data {
    /// `train images, train labels, test images, test labels`; the last `validation` training
    /// images are held out, as `wgtrain train --val-size` does.
    pub fn from_idx(
        train_images: Vec<u8>,
        train_labels: Vec<u8>,
        test_images: Vec<u8>,
        test_labels: Vec<u8>,
        validation: usize,
    ) -> Result<Data, JsError> {
        let splits = wgtrain::io::data::idx_from_contents(
            [
                ("train-images-idx3-ubyte.gz", train_images),
                ("train-labels-idx1-ubyte.gz", train_labels),
                ("t10k-images-idx3-ubyte.gz", test_images),
                ("t10k-labels-idx1-ubyte.gz", test_labels),
            ],
            validation,
        )
        .map_err(one_line)?;
        Ok(Data {
            splits: Box::leak(Box::new(splits)),
        })
    }

    /// What the page says about the data (`wgtrain train`'s first note).
    pub fn describe(&self) -> String {
        self.splits.describe()
    }
}

/// The browser's WebGPU adapter, opened once per page.
#[wasm_bindgen]
pub struct Gpu {
    be: &'static GpuBackend,
}

#[wasm_bindgen]
impl Gpu {
    /// Opens the adapter within WebGPU's default limits; kernels as `--kernels` spells them.
    pub async fn open(kernels: String) -> Result<Gpu, JsError> {
        let choice = match kernels.as_str() {
            "auto" => KernelChoice::Auto,
            "tiled" => KernelChoice::Tiled,
            "emulated" => KernelChoice::Emulated,
            other => {
                return Err(one_line(format!(
                    "kernels {other}: use auto, tiled or emulated"
                )))
            }
        };
        let be = GpuBackend::request(choice).await.map_err(one_line)?;
        Ok(Gpu {
            be: Box::leak(Box::new(be)),
        })
    }

    /// The kernel set the device runs: "tiled" or "emulated" (a fallback adapter, e.g. SwiftShader).
    pub fn kernels(&self) -> String {
        self.be.kernels().unwrap_or("none").to_string()
    }

    /// Another handle on the same device (a run takes one; the page keeps its own).
    pub fn share(&self) -> Gpu {
        Gpu { be: self.be }
    }

    /// Every GPU op against the CPU reference (wasm) at small odd shapes: JSON of
    /// `wgtrain::tools::opcheck::OpCheck`s.
    pub async fn check_ops(&self) -> Result<String, JsError> {
        json(&check_ops(self.be, &CpuBackend::new()).await)
    }

    /// `wgtrain gradcheck` of `model` on the first `batch` training images: JSON of its report.
    pub async fn gradcheck(
        &self,
        data: &Data,
        model: String,
        batch: usize,
    ) -> Result<String, JsError> {
        let spec = model_spec(&model, data.splits)?;
        let report = gradcheck_async(
            self.be,
            spec,
            batch,
            1,
            &data.splits.train,
            Tolerance::default(),
        )
        .await;
        json(&report)
    }
}

/// A built-in name, or a model file's text (anything with a newline or a `[`).
fn model_spec(model: &str, data: &Splits) -> Result<ModelSpec, JsError> {
    let (input, classes) = (data.shape(), data.info.classes());
    let spec = if model.contains('\n') || model.contains('[') {
        ModelSpec::from_text_for("pasted model", model, input, classes)
    } else {
        ModelSpec::parse_for(model, input, classes)
    };
    spec.map_err(one_line)
}

/// What a run reports to the page: warnings (a run's files cannot fail here, but the observer's
/// contract has them) and the validation figures of each epoch.
#[derive(Default)]
struct PageObserver {
    warnings: Vec<String>,
    epochs: Vec<EpochMetrics>,
}

impl Observer for PageObserver {
    fn epoch(&mut self, m: &EpochMetrics) {
        self.epochs.push(m.clone());
    }
    fn warn(&mut self, msg: &str) {
        self.warnings.push(msg.to_string());
    }
}

/// One run on one backend: training, then the trained model (for the drawn digit).
enum Stage<B: Backend + 'static> {
    Training(Box<Trainer<'static, B>>),
    Trained(Box<Trained<B>>),
    /// Between the two, while `finish` awaits; or after an error.
    Gone,
}

struct RunOn<B: Backend + 'static> {
    be: &'static B,
    data: &'static Splits,
    stage: Stage<B>,
    obs: PageObserver,
    /// When the run was made (model built, data uploaded), and when its first log point came back.
    made: Instant,
    first_log_ms: Option<f64>,
}

/// Progress after a log point.
#[derive(Serialize)]
struct Progress {
    step: usize,
    steps: usize,
    /// Losses since the previous log point, one per step.
    losses: Vec<f32>,
    epochs: Vec<EpochMetrics>,
    warnings: Vec<String>,
    done: bool,
}

/// The run's end, as `metrics.json` has it, plus the page's timings.
#[derive(Serialize)]
struct Finished<'a> {
    #[serde(flatten)]
    result: &'a wgtrain::train::TrainResult,
    /// From the run's creation (model built, data uploaded) to its first log point's losses.
    first_log_ms: Option<f64>,
}

/// The digit's top classes.
#[derive(Serialize)]
struct Guess {
    class: usize,
    prob: f32,
}

impl<B: Backend + 'static> RunOn<B> {
    fn new(be: &'static B, data: &'static Splits, cfg: TrainConfig) -> Result<Self, JsError> {
        let cfg: &'static TrainConfig = Box::leak(Box::new(cfg));
        let mut obs = PageObserver::default();
        let persist = Persist {
            resume: None,
            save: None,
        };
        let trainer = Trainer::new(be, data, cfg, persist, &mut obs).map_err(one_line)?;
        Ok(RunOn {
            be,
            data,
            stage: Stage::Training(Box::new(trainer)),
            obs,
            made: Instant::now(),
            first_log_ms: None,
        })
    }

    async fn advance(&mut self) -> Result<String, JsError> {
        let Stage::Training(t) = &mut self.stage else {
            return Err(one_line("the run has already finished"));
        };
        let before = t.losses().len();
        while !t.finished() {
            t.step();
            if t.at_log_point() {
                break;
            }
        }
        if let Err(e) = t.log(&mut self.obs).await {
            self.stage = Stage::Gone;
            return Err(one_line(e));
        }
        self.first_log_ms
            .get_or_insert(self.made.elapsed().as_secs_f64() * 1e3);
        let progress = Progress {
            step: t.steps_done(),
            steps: t.total_steps(),
            losses: t.losses()[before..].to_vec(),
            epochs: std::mem::take(&mut self.obs.epochs),
            warnings: std::mem::take(&mut self.obs.warnings),
            done: t.finished(),
        };
        json(&progress)
    }

    async fn finish(&mut self) -> Result<String, JsError> {
        let Stage::Training(t) = std::mem::replace(&mut self.stage, Stage::Gone) else {
            return Err(one_line("the run is not training"));
        };
        if !t.finished() {
            return Err(one_line("the run has steps left"));
        }
        let trained = t.finish(&mut self.obs).await.map_err(one_line)?;
        let out = json(&Finished {
            result: &trained.result,
            first_log_ms: self.first_log_ms,
        });
        self.stage = Stage::Trained(Box::new(trained));
        out
    }

    async fn predict(&mut self, w: u32, h: u32, grey: Vec<u8>) -> Result<String, JsError> {
        let Stage::Trained(t) = &mut self.stage else {
            return Err(one_line("train a model first"));
        };
        let meta = CheckpointData::new(t.model.spec.input(), &self.data.info);
        if !meta.is_mnist_shaped() {
            return Err(one_line("the drawing is for 28x28 grey models (MNIST's)"));
        }
        let pixels = wgtrain::io::digit::prepare_grey(w, h, grey)
            .ok_or_else(|| one_line(format!("the drawing is not {w}x{h} grey pixels")))?;
        let out = predict_pixels_async(self.be, &mut t.model, &[pixels], 3, &meta).await;
        let top: Vec<Guess> = out[0]
            .0
            .iter()
            .map(|c| Guess {
                class: c.class,
                prob: c.prob,
            })
            .collect();
        json(&top)
    }
}

enum AnyRun {
    Gpu(RunOn<GpuBackend>),
    Cpu(RunOn<CpuBackend>),
}

/// A training run made by the page: on the GPU when given one, else on the CPU reference.
#[wasm_bindgen]
pub struct Run {
    run: AnyRun,
}

#[wasm_bindgen]
impl Run {
    /// `model`: a built-in name or a model file's text; `optim`: sgd, rmsprop or adam; `log_every`:
    /// steps between log points (each returns control to the page).
    #[allow(clippy::too_many_arguments)]
    #[wasm_bindgen(constructor)]
    pub fn new(
        gpu: Option<Gpu>,
        data: &Data,
        model: String,
        optim: String,
        lr: f32,
        steps: usize,
        batch: usize,
        seed: u64,
        log_every: usize,
    ) -> Result<Run, JsError> {
        let optim = OptimKind::parse(&optim).map_err(one_line)?;
        if !(lr.is_finite() && lr > 0.0) {
            return Err(one_line(format!(
                "learning rate {lr}: must be a positive number"
            )));
        }
        if steps == 0 || batch == 0 {
            return Err(one_line("steps and batch must be at least 1"));
        }
        let cfg = TrainConfig {
            model: model_spec(&model, data.splits)?,
            optim,
            lr,
            recipe: Recipe::default(),
            batch,
            steps,
            seed,
            log_every,
            eval_each_epoch: true,
            out: None,
        };
        let run = match gpu {
            Some(g) => AnyRun::Gpu(RunOn::new(g.be, data.splits, cfg)?),
            None => {
                let cpu: &'static CpuBackend = Box::leak(Box::new(CpuBackend::new()));
                AnyRun::Cpu(RunOn::new(cpu, data.splits, cfg)?)
            }
        };
        Ok(Run { run })
    }

    /// Steps to the next log point and awaits its read-back: JSON progress
    /// `{step, steps, losses, epochs, warnings, done}`.
    pub async fn advance(&mut self) -> Result<String, JsError> {
        match &mut self.run {
            AnyRun::Gpu(r) => r.advance().await,
            AnyRun::Cpu(r) => r.advance().await,
        }
    }

    /// After the last step: the test set, and the run's figures as JSON (`metrics.json`'s, plus
    /// `first_log_ms`).
    pub async fn finish(&mut self) -> Result<String, JsError> {
        match &mut self.run {
            AnyRun::Gpu(r) => r.finish().await,
            AnyRun::Cpu(r) => r.finish().await,
        }
    }

    /// The trained model's top 3 classes for a white-on-black drawing (`w * h` grey pixels), prepared
    /// as `wgtrain predict` prepares a digit: JSON `[{class, prob}]`.
    pub async fn predict(&mut self, w: u32, h: u32, grey: Vec<u8>) -> Result<String, JsError> {
        match &mut self.run {
            AnyRun::Gpu(r) => r.predict(w, h, grey).await,
            AnyRun::Cpu(r) => r.predict(w, h, grey).await,
        }
    }
}
