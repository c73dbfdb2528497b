//! SGD, RMSProp and Adam: hyper-parameters, state, and the update on either backend.

use crate::backend::{Backend, OptimStep};
use crate::model::Model;
use anyhow::{bail, Result};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OptimKind {
    Sgd,
    RmsProp,
    Adam,
}

impl OptimKind {
    pub fn parse(s: &str) -> Result<Self> {
        Ok(match s.to_ascii_lowercase().as_str() {
            "sgd" => OptimKind::Sgd,
            "rmsprop" => OptimKind::RmsProp,
            "adam" => OptimKind::Adam,
            _ => bail!("unknown optimizer '{s}': expected sgd, rmsprop or adam"),
        })
    }
    pub fn name(&self) -> &'static str {
        match self {
            OptimKind::Sgd => "sgd",
            OptimKind::RmsProp => "rmsprop",
            OptimKind::Adam => "adam",
        }
    }
    /// docs/MODELS.md defaults: SGD 0.01, RMSProp 0.001, Adam 0.001.
    pub fn default_lr(&self) -> f32 {
        match self {
            OptimKind::Sgd => 0.01,
            _ => 0.001,
        }
    }
    /// Moment tensors per parameter.
    pub fn state_tensors(&self) -> usize {
        match self {
            OptimKind::Sgd => 0,
            OptimKind::RmsProp => 1,
            OptimKind::Adam => 2,
        }
    }
}

/// An optimizer: its kind, learning rate and step count (its moments live beside each parameter).
#[derive(Clone, Debug)]
pub struct Optimizer {
    pub kind: OptimKind,
    pub lr: f32,
    /// Steps taken so far (Adam's `t` is this plus one on the next step).
    pub steps: u64,
}

impl Optimizer {
    pub fn new(kind: OptimKind, lr: f32) -> Self {
        Optimizer { kind, lr, steps: 0 }
    }

    /// The hyper-parameters of the next update.
    pub fn next_step(&self) -> OptimStep {
        match self.kind {
            OptimKind::Sgd => OptimStep::Sgd { lr: self.lr },
            OptimKind::RmsProp => OptimStep::RmsProp {
                lr: self.lr,
                rho: 0.9,
                eps: 1e-8,
            },
            OptimKind::Adam => OptimStep::Adam {
                lr: self.lr,
                beta1: 0.9,
                beta2: 0.999,
                eps: 1e-8,
                t: self.steps + 1,
            },
        }
    }

    /// Updates every parameter of `model` from its gradient, allocating the moments on first use: on a
    /// packed model (a GPU) all of them in one op over the arenas ("multi-tensor apply": the updates
    /// are element-wise with the same hyper-parameters, and the arenas' padding stays 0), else one op
    /// per parameter.
    pub fn step<B: Backend>(&mut self, be: &B, model: &mut Model<B>) {
        let step = self.next_step();
        model.alloc_moments(be, self.kind.state_tensors());
        match model.flat.as_mut() {
            Some(flat) => be.optim_step(&step, &mut flat.values, &flat.grads, &mut flat.moments),
            None => {
                for p in model.params_mut() {
                    be.optim_step(&step, &mut p.value, &p.grad, &mut p.state);
                }
            }
        }
        self.steps += 1;
    }
}
