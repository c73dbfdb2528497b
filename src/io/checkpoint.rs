//! Checkpoints: a model, its optimizer state and where its run stands, in one safetensors file.
//!
//! The format is backend-neutral: every tensor is f32, stored by name, so a checkpoint written on the GPU
//! loads on the CPU and back. The tensors are
//! - the parameters, by their names in the model (`fc1.weight`, `bn1.bias`, ...),
//! - batch norm's running statistics (`bn1.running_mean`, `bn1.running_var`),
//! - the optimizer's moments, `optim.<param>.<moment>` (`momentum` for SGD with momentum, `ms` for RMSProp, `m` and `v` for
//!   Adam and AdamW),
//!
//! and the safetensors metadata holds one entry, `wgtrain`, with [`CheckpointMeta`] as JSON: the model,
//! the optimizer and its hyper-parameters, the seed, and the step count, from which the epoch and the
//! position in it follow (the shuffled order of an epoch is a pure function of (seed, epoch)).
//!
//! Every problem with a file (missing, truncated, corrupt, written for another model) is an
//! [`InputError`] naming the file and, where it is one tensor, that tensor.

use crate::backend::{Backend, PixelNorm};
use crate::error::InputError;
use crate::io::data::DataInfo;
use crate::model::file::Shape;
use crate::model::{Model, ModelSpec, MNIST_CLASSES};
use crate::optim::{state_names, OptimKind, Optimizer, Recipe};
use safetensors::tensor::{Dtype, TensorView};
use safetensors::SafeTensors;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

/// The metadata key that holds [`CheckpointMeta`].
pub const META_KEY: &str = "wgtrain";
/// The version of the layout above; bumped if it ever changes incompatibly.
pub const FORMAT_VERSION: u32 = 1;

/// Where a run stands and how it was configured; the `wgtrain` metadata entry, as JSON.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CheckpointMeta {
    pub format: u32,
    /// Model name, as `--model` takes it (`fc8-bn`, `cnn7`, ...).
    pub model: String,
    pub optim: OptimKind,
    pub lr: f32,
    pub batch: usize,
    pub seed: u64,
    /// Optimizer steps taken so far (Adam's `t` continues from here).
    pub step: usize,
    /// Steps in one epoch of the training set it was trained on.
    pub steps_per_epoch: usize,
    /// Training images it was trained on (a resumed run must see the same set to continue exactly).
    pub train_len: usize,
    /// Whole epochs done: `step / steps_per_epoch`.
    pub epoch: usize,
    /// Steps into the current epoch: `step % steps_per_epoch` (the next batch starts at image
    /// `epoch_step * batch` of the epoch's shuffled order).
    pub epoch_step: usize,
    /// Where it was trained ("cpu" or "gpu"); informative only.
    pub backend: String,
    /// The model file's text, for a model that is not a built-in (a built-in's name says it all), so
    /// that `eval`, `predict` and `--resume` need nothing but the checkpoint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model_file: Option<String>,
    /// Momentum, weight decay, schedule, warm-up and clipping (all off in checkpoints from before).
    #[serde(default)]
    pub recipe: Recipe,
    /// The run's planned total steps, which a cosine schedule spans (0 in checkpoints from before).
    #[serde(default)]
    pub total_steps: u64,
    /// The data it was trained on, so that a model can be used on new images with nothing else;
    /// absent in checkpoints older than the data formats, which were all trained on MNIST.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<CheckpointData>,
}

/// What a checkpoint knows of its training data.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CheckpointData {
    /// The data set's format, as the run named it (`IDX`, `CIFAR-10`, `image folder`); informative.
    pub format: String,
    /// One image: height, width, channels.
    pub input: [usize; 3],
    /// The classes, in label order.
    pub class_names: Vec<String>,
    /// The per-channel normalisation its inputs were trained with.
    pub norm: PixelNorm,
}

impl CheckpointData {
    pub fn new(input: Shape, info: &DataInfo) -> Self {
        let input = match input {
            Shape::Image { h, w, c } => [h, w, c],
            Shape::Flat(n) => [1, n, 1],
        };
        CheckpointData {
            format: info.format.to_string(),
            input,
            class_names: info.class_names.clone(),
            norm: info.norm.clone(),
        }
    }

    /// MNIST's, for a checkpoint that predates this record.
    pub fn mnist() -> Self {
        CheckpointData {
            format: "IDX".into(),
            input: [28, 28, 1],
            class_names: (0..MNIST_CLASSES).map(|c| c.to_string()).collect(),
            norm: PixelNorm::mnist(),
        }
    }

    pub fn shape(&self) -> Shape {
        let [h, w, c] = self.input;
        Shape::Image { h, w, c }
    }

    /// Whether its images are MNIST-shaped (28x28 grey), whose inputs `predict` prepares as MNIST's
    /// digits were (centred by mass in a 20x20 box) unless asked not to.
    pub fn is_mnist_shaped(&self) -> bool {
        self.shape() == (Shape::Image { h: 28, w: 28, c: 1 })
    }

    /// What makes no sense in it (a hand-edited or corrupt file), if anything.
    fn problem(&self) -> Option<String> {
        let [h, w, c] = self.input;
        let n = self.class_names.len();
        if h == 0 || w == 0 || !(1..=4).contains(&c) || h.checked_mul(w).is_none_or(|p| p > 1 << 26)
        {
            Some(format!(
                "input shape {h}x{w}x{c} is not an image wgtrain reads"
            ))
        } else if !(2..=256).contains(&n) {
            Some(format!("{n} class names (2 to 256 expected)"))
        } else if self.norm.mean.len() != c || self.norm.std.len() != c {
            Some(format!(
                "normalisation for {} channels, the input has {c}",
                self.norm.mean.len()
            ))
        } else if !self
            .norm
            .mean
            .iter()
            .chain(&self.norm.std)
            .all(|v| v.is_finite())
            || self.norm.std.iter().any(|&s| s <= 0.0)
        {
            Some("normalisation has a non-finite mean or a standard deviation not above 0".into())
        } else {
            None
        }
    }
}

impl CheckpointMeta {
    /// Epochs done, fractional.
    pub fn epochs(&self) -> f64 {
        self.step as f64 / self.steps_per_epoch.max(1) as f64
    }

    /// The data it was trained on (MNIST for a checkpoint that does not say).
    pub fn data(&self) -> CheckpointData {
        self.data.clone().unwrap_or_else(CheckpointData::mnist)
    }
}

/// The first few of `names`, for a message.
fn abbreviate(names: &[String]) -> String {
    let mut s = names.iter().take(4).cloned().collect::<Vec<_>>().join(", ");
    if names.len() > 4 {
        s += ", ...";
    }
    s
}

/// One f32 tensor of a checkpoint.
#[derive(Clone, Debug, PartialEq)]
pub struct TensorData {
    pub shape: Vec<usize>,
    pub data: Vec<f32>,
}

/// A checkpoint in memory: its metadata and its tensors by name.
#[derive(Clone, Debug)]
pub struct Checkpoint {
    pub meta: CheckpointMeta,
    pub tensors: BTreeMap<String, TensorData>,
    /// The file it came from, for error messages (`None` if it was captured in memory).
    pub path: Option<PathBuf>,
}

/// The checkpoint name of moment `moment` of parameter `param`.
pub fn moment_key(param: &str, moment: &str) -> String {
    format!("optim.{param}.{moment}")
}

impl Checkpoint {
    /// Copies the state of `model` and `opt` off the device. `steps_per_epoch` and `train_len` describe
    /// the training set, so a resumed run knows where in its epoch it is; `info`, its classes and
    /// normalisation.
    #[allow(clippy::too_many_arguments)]
    pub fn capture<B: Backend>(
        be: &B,
        model: &Model<B>,
        opt: &Optimizer,
        batch: usize,
        seed: u64,
        steps_per_epoch: usize,
        train_len: usize,
        info: &DataInfo,
    ) -> Checkpoint {
        let step = opt.steps as usize;
        let spe = steps_per_epoch.max(1);
        let meta = CheckpointMeta {
            format: FORMAT_VERSION,
            model: model.spec.name(),
            optim: opt.kind,
            lr: opt.lr,
            batch,
            seed,
            step,
            steps_per_epoch: spe,
            train_len,
            epoch: step / spe,
            epoch_step: step % spe,
            backend: be.kind().to_string(),
            model_file: (!model.spec.is_builtin()).then(|| model.spec.text().to_string()),
            recipe: opt.recipe,
            total_steps: opt.total_steps,
            data: Some(CheckpointData::new(model.spec.input(), info)),
        };
        let mut tensors = BTreeMap::new();
        let moments = opt.state_names();
        for p in model.params() {
            tensors.insert(
                p.name.clone(),
                TensorData {
                    shape: p.shape.clone(),
                    data: be.read(&p.value),
                },
            );
            // State is allocated on the first step; before it, the moments are zero.
            for (i, m) in moments.iter().enumerate() {
                let data = match p.state.get(i) {
                    Some(t) => be.read(t),
                    None => vec![0.0; p.numel()],
                };
                tensors.insert(
                    moment_key(&p.name, m),
                    TensorData {
                        shape: p.shape.clone(),
                        data,
                    },
                );
            }
        }
        for b in model.buffers() {
            let data = be.read(&b.value);
            tensors.insert(
                b.name.clone(),
                TensorData {
                    shape: vec![data.len()],
                    data,
                },
            );
        }
        Checkpoint {
            meta,
            tensors,
            path: None,
        }
    }

    /// The model the checkpoint holds.
    pub fn spec(&self) -> Result<ModelSpec, InputError> {
        let data = self.meta.data();
        let (input, classes) = (data.shape(), data.class_names.len());
        let spec = match &self.meta.model_file {
            Some(text) => ModelSpec::from_text_for(&self.meta.model, text, input, classes),
            None => ModelSpec::parse_for(&self.meta.model, input, classes),
        };
        spec.map_err(|e| self.err(format!("{e:#}")))
    }

    /// Whether the test set of `dir` (images of `shape`, classes `names`, read as `format`) is data the
    /// checkpoint's model can be evaluated on: the same image shape and the same classes.
    pub fn check_data(
        &self,
        dir: &Path,
        shape: Shape,
        names: &[String],
        format: &str,
    ) -> Result<(), InputError> {
        let ours = self.meta.data();
        let name = self
            .path
            .as_ref()
            .map_or("the checkpoint".to_string(), |p| p.display().to_string());
        if shape != ours.shape() {
            return Err(InputError::file(
                dir,
                format!(
                    "{format} images of {shape}, but {name} was trained on {} images of {}",
                    ours.format,
                    ours.shape()
                ),
            ));
        }
        if names != ours.class_names.as_slice() {
            return Err(InputError::file(
                dir,
                format!(
                    "{} classes ({}), but {name} was trained on {} ({})",
                    names.len(),
                    abbreviate(names),
                    ours.class_names.len(),
                    abbreviate(&ours.class_names)
                ),
            ));
        }
        Ok(())
    }

    /// The optimizer as it was when the checkpoint was taken (its moments live in the model's params).
    pub fn optimizer(&self) -> Optimizer {
        Optimizer {
            kind: self.meta.optim,
            lr: self.meta.lr,
            recipe: self.meta.recipe,
            total_steps: self.meta.total_steps,
            steps: self.meta.step as u64,
        }
    }

    /// The safetensors bytes: every tensor as little-endian f32, the metadata as JSON under `wgtrain`.
    pub fn to_bytes(&self) -> anyhow::Result<Vec<u8>> {
        let raw: Vec<(&String, Vec<usize>, Vec<u8>)> = self
            .tensors
            .iter()
            .map(|(name, t)| {
                let bytes = t.data.iter().flat_map(|v| v.to_le_bytes()).collect();
                (name, t.shape.clone(), bytes)
            })
            .collect();
        let mut views = Vec::with_capacity(raw.len());
        for (name, shape, bytes) in &raw {
            views.push((
                name.as_str(),
                TensorView::new(Dtype::F32, shape.clone(), bytes)?,
            ));
        }
        let mut info = HashMap::new();
        info.insert(META_KEY.to_string(), serde_json::to_string(&self.meta)?);
        Ok(safetensors::serialize(views, Some(info))?)
    }

    /// Writes the checkpoint to `path` atomically (a temporary file, then a rename).
    pub fn save(&self, path: &Path) -> Result<(), InputError> {
        let bytes = self
            .to_bytes()
            .map_err(|e| InputError::file(path, format!("cannot encode the checkpoint: {e:#}")))?;
        crate::io::atomic::write_atomic(path, &bytes)
    }

    /// Reads a checkpoint; any problem with the file is an [`InputError`] naming it.
    pub fn load(path: &Path) -> Result<Checkpoint, InputError> {
        let bytes =
            std::fs::read(path).map_err(|e| InputError::unreadable(path, "checkpoint", &e))?;
        Self::from_bytes(&bytes, Some(path))
    }

    /// Parses safetensors bytes (`path` only names the source in errors).
    pub fn from_bytes(bytes: &[u8], path: Option<&Path>) -> Result<Checkpoint, InputError> {
        let err = |msg: String| match path {
            Some(p) => InputError::file(p, msg),
            None => InputError::value(format!("checkpoint: {msg}")),
        };
        if bytes.is_empty() {
            return Err(err("empty file, not a checkpoint".into()));
        }
        let st = SafeTensors::deserialize(bytes).map_err(|e| {
            err(format!(
                "not a valid safetensors checkpoint (truncated or corrupt: {e})"
            ))
        })?;
        let (_, header) = SafeTensors::read_metadata(bytes)
            .map_err(|e| err(format!("corrupt safetensors header: {e}")))?;
        let json = header
            .metadata()
            .as_ref()
            .and_then(|m| m.get(META_KEY))
            .ok_or_else(|| {
                err(format!(
                    "a safetensors file, but not a wgtrain checkpoint (no '{META_KEY}' metadata)"
                ))
            })?;
        let meta: CheckpointMeta = serde_json::from_str(json)
            .map_err(|e| err(format!("corrupt '{META_KEY}' metadata: {e}")))?;
        if meta.format != FORMAT_VERSION {
            return Err(err(format!(
                "checkpoint format {} is not supported (this wgtrain reads format {FORMAT_VERSION})",
                meta.format
            )));
        }
        if meta.batch == 0 || meta.steps_per_epoch == 0 {
            return Err(err(
                "corrupt metadata: batch and steps_per_epoch must be positive".into(),
            ));
        }
        if let Some(problem) = meta.data.as_ref().and_then(CheckpointData::problem) {
            return Err(err(format!("corrupt metadata: {problem}")));
        }
        let mut tensors = BTreeMap::new();
        for (name, view) in st.iter() {
            if view.dtype() != Dtype::F32 {
                return Err(err(format!(
                    "tensor '{name}' is {:?}, wgtrain checkpoints hold only F32",
                    view.dtype()
                )));
            }
            let data = view
                .data()
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect();
            tensors.insert(
                name.to_string(),
                TensorData {
                    shape: view.shape().to_vec(),
                    data,
                },
            );
        }
        let ck = Checkpoint {
            meta,
            tensors,
            path: path.map(Path::to_path_buf),
        };
        ck.spec()?;
        Ok(ck)
    }

    fn err(&self, msg: impl Into<String>) -> InputError {
        match &self.path {
            Some(p) => InputError::file(p, msg),
            None => InputError::value(format!("checkpoint: {}", msg.into())),
        }
    }

    /// The tensor `name` with the shape the model needs, or an error naming both.
    fn tensor(&self, name: &str, shape: &[usize], model: &str) -> Result<&[f32], InputError> {
        let t = self.tensors.get(name).ok_or_else(|| {
            self.err(format!(
                "tensor '{name}' that model {model} needs is missing (a checkpoint of another model?)"
            ))
        })?;
        if t.shape != shape {
            return Err(self.err(format!(
                "tensor '{name}' has shape {:?}, model {model} needs {shape:?} (a checkpoint of another model?)",
                t.shape
            )));
        }
        Ok(&t.data)
    }

    /// Builds the checkpoint's model for batches of up to `capacity` and loads its weights and running
    /// statistics (not the optimizer's moments: see [`Checkpoint::restore`]).
    pub fn build_model<B: Backend + 'static>(
        &self,
        be: &B,
        capacity: usize,
    ) -> Result<Model<B>, InputError> {
        let mut model = Model::new(be, self.spec()?, capacity, self.meta.seed);
        self.load_into(be, &mut model, false)?;
        Ok(model)
    }

    /// Checks, before any device is chosen, that the checkpoint's tensors fit its model (names,
    /// shapes, optimizer moments): restores it once on the CPU at batch 1, which costs little.
    pub fn check(&self) -> Result<(), InputError> {
        self.restore(&crate::backend::cpu::CpuBackend::new(), 1)
            .map(|_| ())
    }

    /// Builds the model and the optimizer exactly as they were, moments included, to continue training.
    pub fn restore<B: Backend + 'static>(
        &self,
        be: &B,
        capacity: usize,
    ) -> Result<(Model<B>, Optimizer), InputError> {
        let mut model = Model::new(be, self.spec()?, capacity, self.meta.seed);
        self.load_into(be, &mut model, true)?;
        Ok((model, self.optimizer()))
    }

    /// Writes the checkpoint's tensors into `model` (and the optimizer's moments into its params, if
    /// `with_moments`), checking every name and shape; tensors the model does not have are an error too.
    pub fn load_into<B: Backend>(
        &self,
        be: &B,
        model: &mut Model<B>,
        with_moments: bool,
    ) -> Result<(), InputError> {
        let name = model.spec.name();
        let moments = state_names(self.meta.optim, &self.meta.recipe);
        let mut used = std::collections::BTreeSet::new();
        if with_moments {
            // The moments are written into place (on a packed model, views into the arenas).
            model.alloc_moments(be, moments.len());
        }
        for p in model.params_mut() {
            let data = self.tensor(&p.name, &p.shape, &name)?;
            be.write(&mut p.value, data);
            used.insert(p.name.clone());
            for (j, m) in moments.iter().enumerate() {
                let key = moment_key(&p.name, m);
                let data = self.tensor(&key, &p.shape, &name)?;
                if with_moments {
                    be.write(&mut p.state[j], data);
                }
                used.insert(key);
            }
        }
        for b in model.buffers_mut() {
            let len = be.len(&b.value);
            let data = self.tensor(&b.name, &[len], &name)?;
            be.write(&mut b.value, data);
            used.insert(b.name.clone());
        }
        if let Some(extra) = self.tensors.keys().find(|k| !used.contains(*k)) {
            return Err(self.err(format!(
                "tensor '{extra}' is not part of model {name} (a checkpoint of another model?)"
            )));
        }
        Ok(())
    }
}
