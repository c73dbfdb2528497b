//! SGD (with momentum and Nesterov), RMSProp, Adam and AdamW, the training recipes around them
//! (weight decay, learning-rate schedules, clipping by global norm), their state, and the update on
//! either backend.

use crate::backend::{Backend, OptimRule, OptimStep};
use crate::error::InputError;
use crate::model::Model;
use anyhow::{bail, Result};
use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OptimKind {
    Sgd,
    RmsProp,
    Adam,
    /// Adam with decoupled weight decay (Loshchilov & Hutter 2019).
    AdamW,
}

impl OptimKind {
    pub fn parse(s: &str) -> Result<Self> {
        Ok(match s.to_ascii_lowercase().as_str() {
            "sgd" => OptimKind::Sgd,
            "rmsprop" => OptimKind::RmsProp,
            "adam" => OptimKind::Adam,
            "adamw" => OptimKind::AdamW,
            _ => bail!("unknown optimizer '{s}': expected sgd, rmsprop, adam or adamw"),
        })
    }
    pub fn name(&self) -> &'static str {
        match self {
            OptimKind::Sgd => "sgd",
            OptimKind::RmsProp => "rmsprop",
            OptimKind::Adam => "adam",
            OptimKind::AdamW => "adamw",
        }
    }
    /// docs/MODELS.md defaults: SGD 0.01, RMSProp 0.001, Adam and AdamW 0.001.
    pub fn default_lr(&self) -> f32 {
        match self {
            OptimKind::Sgd => 0.01,
            _ => 0.001,
        }
    }
}

/// How the learning rate moves over a run (before warm-up, which multiplies any of them).
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase", tag = "kind")]
pub enum LrSchedule {
    #[default]
    Constant,
    /// Multiplied by `gamma` every `every` steps.
    Step { every: u64, gamma: f32 },
    /// Half a cosine from the learning rate down to 0 over the run's steps after warm-up.
    Cosine,
}

impl LrSchedule {
    /// `constant`, `cosine`, `step:N` (gamma 0.1) or `step:N:GAMMA`.
    pub fn parse(s: &str) -> Result<Self, InputError> {
        let bad = |why: &str| InputError::value(format!("--lr-schedule {s}: {why}"));
        let parts: Vec<&str> = s.split(':').collect();
        match parts.as_slice() {
            ["constant"] => Ok(LrSchedule::Constant),
            ["cosine"] => Ok(LrSchedule::Cosine),
            ["step", n, rest @ ..] if rest.len() <= 1 => {
                let every: u64 =
                    n.parse().ok().filter(|&n| n > 0).ok_or_else(|| {
                        bad("the step count N of step:N must be a positive number")
                    })?;
                let gamma: f32 = match rest {
                    [] => 0.1,
                    [g] => g
                        .parse()
                        .ok()
                        .filter(|g: &f32| g.is_finite() && *g > 0.0)
                        .ok_or_else(|| bad("GAMMA of step:N:GAMMA must be a positive number"))?,
                    _ => unreachable!(),
                };
                Ok(LrSchedule::Step { every, gamma })
            }
            _ => Err(bad("expected constant, cosine, step:N or step:N:GAMMA")),
        }
    }

    pub fn name(&self) -> String {
        match self {
            LrSchedule::Constant => "constant".into(),
            LrSchedule::Cosine => "cosine".into(),
            LrSchedule::Step { every, gamma } => format!("step:{every}:{gamma}"),
        }
    }
}

/// Everything about an update beyond the optimizer and its learning rate. The default is plain SGD,
/// RMSProp or Adam as the study ran them, bit for bit.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Recipe {
    /// SGD's momentum (PyTorch's: `buf = momentum * buf + g`), 0 for none.
    #[serde(default)]
    pub momentum: f32,
    /// SGD: Nesterov's momentum (`update = g + momentum * buf`).
    #[serde(default)]
    pub nesterov: bool,
    /// L2 (`g += wd * w`) for SGD, RMSProp and Adam; decoupled (`w -= lr * wd * w`) for AdamW.
    #[serde(default)]
    pub weight_decay: f32,
    #[serde(default)]
    pub schedule: LrSchedule,
    /// Steps of linear warm-up from lr/warmup to lr.
    #[serde(default)]
    pub warmup: u64,
    /// Scale the gradients so that their global L2 norm is at most this (PyTorch's
    /// `clip_grad_norm_`); `None` for no clipping.
    #[serde(default)]
    pub clip_norm: Option<f32>,
}

impl Recipe {
    /// Checks the values against `kind` (`flag` names the option or key they came from).
    pub fn check(&self, kind: OptimKind) -> Result<(), InputError> {
        let bad = |msg: String| Err(InputError::value(msg));
        if !(self.momentum.is_finite() && (0.0..1.0).contains(&self.momentum)) {
            return bad(format!("--momentum {}: must be in [0, 1)", self.momentum));
        }
        if (self.momentum != 0.0 || self.nesterov) && kind != OptimKind::Sgd {
            return bad(format!(
                "--momentum and --nesterov are SGD's; {} has its own moments",
                kind.name()
            ));
        }
        if self.nesterov && self.momentum == 0.0 {
            return bad("--nesterov needs a --momentum above 0".into());
        }
        if !(self.weight_decay.is_finite() && self.weight_decay >= 0.0) {
            return bad(format!(
                "--weight-decay {}: must be 0 or more",
                self.weight_decay
            ));
        }
        if let Some(c) = self.clip_norm {
            if !(c.is_finite() && c > 0.0) {
                return bad(format!("--clip-norm {c}: must be a positive number"));
            }
        }
        Ok(())
    }

    /// The learning-rate multiplier at the 0-based `step` of a run of `total` steps, in f64 so that
    /// every backend and a resumed run get the same f32.
    pub fn lr_factor(&self, step: u64, total: u64) -> f64 {
        let warm = if step < self.warmup {
            (step + 1) as f64 / self.warmup as f64
        } else {
            1.0
        };
        let after = match self.schedule {
            LrSchedule::Constant => 1.0,
            LrSchedule::Step { every, gamma } => (gamma as f64).powi((step / every) as i32),
            LrSchedule::Cosine => {
                let span = total.saturating_sub(self.warmup).max(1) as f64;
                let t = step.saturating_sub(self.warmup) as f64;
                0.5 * (1.0 + (std::f64::consts::PI * (t / span).min(1.0)).cos())
            }
        };
        warm * after
    }

    /// The recipe as it appears in run keys: empty for the default (so the study's keys are unchanged),
    /// else e.g. `_mom0.9n_wd0.0001_cosine_w50_clip1`.
    pub fn tag(&self) -> String {
        let mut t = String::new();
        if self.momentum != 0.0 {
            t += &format!(
                "_mom{}{}",
                self.momentum,
                if self.nesterov { "n" } else { "" }
            );
        }
        if self.weight_decay != 0.0 {
            t += &format!("_wd{}", self.weight_decay);
        }
        match self.schedule {
            LrSchedule::Constant => {}
            LrSchedule::Cosine => t += "_cosine",
            LrSchedule::Step { every, gamma } => t += &format!("_step{every}x{gamma}"),
        }
        if self.warmup > 0 {
            t += &format!("_w{}", self.warmup);
        }
        if let Some(c) = self.clip_norm {
            t += &format!("_clip{c}");
        }
        t
    }

    /// One line for the user: the parts that are not the default.
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        if self.momentum != 0.0 {
            parts.push(format!(
                "momentum {}{}",
                self.momentum,
                if self.nesterov { " (Nesterov)" } else { "" }
            ));
        }
        if self.weight_decay != 0.0 {
            parts.push(format!("weight decay {}", self.weight_decay));
        }
        if self.schedule != LrSchedule::Constant {
            parts.push(format!("{} schedule", self.schedule.name()));
        }
        if self.warmup > 0 {
            parts.push(format!("{} warm-up steps", self.warmup));
        }
        if let Some(c) = self.clip_norm {
            parts.push(format!("clip norm {c}"));
        }
        parts.join(", ")
    }
}

/// An optimizer: its kind, base learning rate, recipe, the run's length (for schedules) and step count
/// (its moments live beside each parameter).
#[derive(Clone, Debug)]
pub struct Optimizer {
    pub kind: OptimKind,
    pub lr: f32,
    pub recipe: Recipe,
    /// The run's total steps, which a cosine schedule spans.
    pub total_steps: u64,
    /// Steps taken so far (Adam's `t` is this plus one on the next step).
    pub steps: u64,
}

impl Optimizer {
    /// Plain `kind` at `lr`: no momentum, decay, schedule or clipping.
    pub fn new(kind: OptimKind, lr: f32) -> Self {
        Self::with_recipe(kind, lr, Recipe::default(), 0)
    }

    pub fn with_recipe(kind: OptimKind, lr: f32, recipe: Recipe, total_steps: u64) -> Self {
        Optimizer {
            kind,
            lr,
            recipe,
            total_steps,
            steps: 0,
        }
    }

    /// The names of the state tensors kept per parameter, in `Param.state` order (checkpoint keys).
    pub fn state_names(&self) -> &'static [&'static str] {
        state_names(self.kind, &self.recipe)
    }

    /// The learning rate of the next update.
    pub fn current_lr(&self) -> f32 {
        let f = self.recipe.lr_factor(self.steps, self.total_steps);
        if f == 1.0 {
            self.lr
        } else {
            (self.lr as f64 * f) as f32
        }
    }

    /// The hyper-parameters of the next update.
    pub fn next_step(&self) -> OptimStep {
        let r = &self.recipe;
        let rule = match self.kind {
            OptimKind::Sgd => OptimRule::Sgd {
                momentum: r.momentum,
                nesterov: r.nesterov,
            },
            OptimKind::RmsProp => OptimRule::RmsProp {
                rho: 0.9,
                eps: 1e-8,
            },
            OptimKind::Adam | OptimKind::AdamW => OptimRule::Adam {
                beta1: 0.9,
                beta2: 0.999,
                eps: 1e-8,
                t: self.steps + 1,
                decoupled: self.kind == OptimKind::AdamW,
            },
        };
        OptimStep {
            rule,
            lr: self.current_lr(),
            weight_decay: r.weight_decay,
            clip: r.clip_norm.is_some(),
        }
    }

    /// Updates every parameter of `model` from its gradient, allocating the moments on first use: on a
    /// packed model (a GPU) all of them in one op over the arenas ("multi-tensor apply": the updates
    /// are element-wise with the same hyper-parameters, and the arenas' padding stays 0), else one op
    /// per parameter. With clipping, the gradients' global norm is reduced on the device first and the
    /// update scales by it there, so no value comes back to the host.
    pub fn step<B: Backend>(&mut self, be: &B, model: &mut Model<B>) {
        let step = self.next_step();
        model.alloc_moments(be, self.state_names().len());
        if let Some(max_norm) = self.recipe.clip_norm {
            let grads: Vec<&B::Tensor> = match &model.flat {
                Some(flat) => vec![&flat.grads],
                None => model
                    .layers
                    .iter()
                    .flat_map(|l| l.params())
                    .map(|p| &p.grad)
                    .collect(),
            };
            be.clip_scale(&grads, max_norm, &mut model.clip_scale);
        }
        let scale = &model.clip_scale;
        match model.flat.as_mut() {
            Some(flat) => be.optim_step(
                &step,
                &mut flat.values,
                &flat.grads,
                &mut flat.moments,
                scale,
            ),
            None => {
                for l in model.layers.iter_mut() {
                    for p in l.params_mut() {
                        be.optim_step(&step, &mut p.value, &p.grad, &mut p.state, scale);
                    }
                }
            }
        }
        self.steps += 1;
    }
}

/// The state tensors `kind` keeps per parameter under `recipe`: none for plain SGD, `momentum` with
/// momentum, `ms` for RMSProp, `m` and `v` for Adam and AdamW.
pub fn state_names(kind: OptimKind, recipe: &Recipe) -> &'static [&'static str] {
    match kind {
        OptimKind::Sgd if recipe.momentum != 0.0 => &["momentum"],
        OptimKind::Sgd => &[],
        OptimKind::RmsProp => &["ms"],
        OptimKind::Adam | OptimKind::AdamW => &["m", "v"],
    }
}
