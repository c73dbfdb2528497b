//! The reference models of docs/MODELS.md, built from [`layers`] on any backend.

pub mod file;
pub mod layers;

use crate::backend::{Backend, ConvGeom};
use anyhow::{bail, Result};
use layers::{
    BatchNorm, Buffer, Conv2d, Epilogue, Flatten, Layer, Linear, Param, SoftmaxCrossEntropy,
};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

/// Every model name `--model` accepts.
pub const MODEL_NAMES: [&str; 8] = [
    "fc8", "fc8-bn", "cnn3", "cnn3-bn", "cnn5", "cnn5-bn", "cnn7", "cnn7-bn",
];

/// MNIST geometry: 28x28 grey images, 10 classes.
pub const IMAGE_SIDE: usize = 28;
pub const CLASSES: usize = 10;

/// Which network, and whether it has batch norm.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ModelSpec {
    pub arch: Arch,
    pub batchnorm: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Arch {
    /// Fully connected 784-256-128-64-32-16-8-4-10.
    Fc8,
    /// CNN with 3, 5 or 7 convolution layers.
    Cnn(usize),
}

/// A conv of the CNN family: output channels and stride (kernel 3, padding 1).
const CNN7: [(usize, usize); 7] = [
    (16, 1),
    (16, 2),
    (32, 1),
    (32, 2),
    (64, 1),
    (64, 2),
    (128, 1),
];
const CNN5: [(usize, usize); 5] = [(16, 1), (16, 2), (32, 1), (32, 2), (64, 2)];
const CNN3: [(usize, usize); 3] = [(16, 2), (32, 2), (64, 2)];
const FC8: [usize; 9] = [784, 256, 128, 64, 32, 16, 8, 4, 10];

impl ModelSpec {
    pub fn parse(name: &str) -> Result<Self> {
        let (base, batchnorm) = match name.strip_suffix("-bn") {
            Some(b) => (b, true),
            None => (name, false),
        };
        let arch = match base {
            "fc8" => Arch::Fc8,
            "cnn3" => Arch::Cnn(3),
            "cnn5" => Arch::Cnn(5),
            "cnn7" => Arch::Cnn(7),
            _ => bail!(
                "unknown model '{name}': expected one of {}",
                MODEL_NAMES.join(", ")
            ),
        };
        Ok(ModelSpec { arch, batchnorm })
    }

    pub fn name(&self) -> String {
        let base = match self.arch {
            Arch::Fc8 => "fc8".to_string(),
            Arch::Cnn(l) => format!("cnn{l}"),
        };
        if self.batchnorm {
            format!("{base}-bn")
        } else {
            base
        }
    }

    /// An upper bound on the f32 values a model built for batch `n` holds per image of `n` (layer
    /// outputs and their gradients, batch-norm copies, im2col columns): what a large `--batch` costs,
    /// checked against memory before anything is built. `tests/gpu_tools.rs` keeps it within 4x of
    /// what the GPU backend really allocates.
    pub fn floats_per_image(&self) -> usize {
        match self.arch {
            // Each layer: output, gradient, and batch norm's output, gradient and a saved copy.
            Arch::Fc8 => 2 * FC8[0] + 6 * FC8[1..].iter().sum::<usize>(),
            Arch::Cnn(_) => {
                let (mut side, mut chans, mut total) = (IMAGE_SIDE, 1, 2 * IMAGE_SIDE * IMAGE_SIDE);
                for &(out_c, stride) in self.convs() {
                    let out_side = (side + 2 - 3) / stride + 1;
                    let pixels = out_side * out_side;
                    // Columns and their gradient; output, gradient and batch norm's copies.
                    total += 2 * pixels * 9 * chans + 6 * pixels * out_c;
                    side = out_side;
                    chans = out_c;
                }
                total + 6 * side * side * chans + 4 * CLASSES
            }
        }
    }

    /// Whether a model built for `batch` images fits in this machine's memory (see
    /// [`ModelSpec::floats_per_image`]); `flag` names the option that asked for it.
    pub fn check_batch_memory(
        &self,
        flag: &str,
        batch: usize,
    ) -> Result<(), crate::error::InputError> {
        let bytes = (self.floats_per_image() as u128) * 4 * batch as u128;
        crate::error::check_memory(
            &format!("{flag} {batch}: {} at this batch", self.name()),
            bytes,
        )
    }

    fn convs(&self) -> &'static [(usize, usize)] {
        match self.arch {
            Arch::Cnn(3) => &CNN3,
            Arch::Cnn(5) => &CNN5,
            _ => &CNN7,
        }
    }
}

/// A built network: its layers, its loss head, and the batch capacity its tensors were sized for.
pub struct Model<B: Backend> {
    pub spec: ModelSpec,
    pub capacity: usize,
    pub layers: Vec<Box<dyn Layer<B>>>,
    pub head: SoftmaxCrossEntropy<B>,
    /// On a backend with arenas (a GPU): every parameter's value, gradient and optimizer moments as
    /// views into one buffer each, so that one dispatch updates them all.
    pub flat: Option<FlatParams<B::Tensor>>,
}

/// The parameters of a model packed into arenas (see [`Backend::arena`]), in `params()` order.
pub struct FlatParams<T> {
    pub lens: Vec<usize>,
    /// All values, all gradients, and each optimizer moment, as whole-arena tensors.
    pub values: T,
    pub grads: T,
    pub moments: Vec<T>,
}

impl<B: Backend + 'static> Model<B> {
    /// Builds `spec` for batches of up to `capacity`, with He-uniform weights drawn from `seed`.
    pub fn new(be: &B, spec: ModelSpec, capacity: usize, seed: u64) -> Self {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let bn = spec.batchnorm;
        let mut layers: Vec<Box<dyn Layer<B>>> = Vec::new();
        match spec.arch {
            Arch::Fc8 => {
                for i in 0..FC8.len() - 1 {
                    let last = i == FC8.len() - 2;
                    let name = format!("fc{}", i + 1);
                    let hidden_bn = bn && !last;
                    let epilogue = Epilogue {
                        bias: !hidden_bn,
                        relu: !last && !bn,
                    };
                    let linear = Linear::new(
                        be,
                        &name,
                        (FC8[i], FC8[i + 1]),
                        epilogue,
                        capacity,
                        &mut rng,
                    );
                    layers.push(Box::new(linear));
                    if hidden_bn {
                        layers.push(Box::new(BatchNorm::new(
                            be,
                            &format!("bn{}", i + 1),
                            FC8[i + 1],
                            1,
                            true,
                            capacity,
                        )));
                    }
                }
            }
            Arch::Cnn(_) => {
                let (mut side, mut chans) = (IMAGE_SIDE, 1);
                for (i, &(out_c, stride)) in spec.convs().iter().enumerate() {
                    let geom = ConvGeom {
                        n: capacity,
                        c: chans,
                        h: side,
                        w: side,
                        k: 3,
                        stride,
                        pad: 1,
                    };
                    let name = format!("conv{}", i + 1);
                    // Without batch norm the convolution has its bias and ReLU; with it, BN does both.
                    let epilogue = Epilogue {
                        bias: !bn,
                        relu: !bn,
                    };
                    layers.push(Box::new(Conv2d::new(
                        be, &name, geom, out_c, epilogue, &mut rng,
                    )));
                    side = geom.out_h();
                    chans = out_c;
                    if bn {
                        let norm = BatchNorm::new(
                            be,
                            &format!("bn{}", i + 1),
                            out_c,
                            side * side,
                            true,
                            capacity,
                        );
                        layers.push(Box::new(norm));
                    }
                }
                let features = side * side * chans;
                layers.push(Box::new(Flatten::new(be, features, capacity)));
                let logits = Epilogue {
                    bias: true,
                    relu: false,
                };
                layers.push(Box::new(Linear::new(
                    be,
                    "fc",
                    (features, CLASSES),
                    logits,
                    capacity,
                    &mut rng,
                )));
            }
        }
        let mut model = Model {
            spec,
            capacity,
            layers,
            head: SoftmaxCrossEntropy::new(be, CLASSES, capacity),
            flat: None,
        };
        model.flat = model.pack_params(be);
        model
    }

    /// Moves every parameter's value and gradient into two arenas, on a backend that has them.
    fn pack_params(&mut self, be: &B) -> Option<FlatParams<B::Tensor>> {
        let lens: Vec<usize> = self.params().iter().map(|p| p.numel()).collect();
        let (values, value_views) = be.arena(&lens)?;
        let (grads, grad_views) = be.arena(&lens)?;
        for ((p, mut v), g) in self
            .params_mut()
            .into_iter()
            .zip(value_views)
            .zip(grad_views)
        {
            be.copy(&p.value, 0, &mut v, 0, p.numel());
            p.value = v;
            p.grad = g;
        }
        Some(FlatParams {
            lens,
            values,
            grads,
            moments: Vec::new(),
        })
    }
}

impl<B: Backend> Model<B> {
    /// Runs every layer; returns the logits `[batch, 10]`.
    pub fn forward(&mut self, be: &B, x: &B::Tensor, batch: usize, train: bool) -> &B::Tensor {
        assert!(
            batch <= self.capacity,
            "batch {batch} exceeds the model's capacity {}",
            self.capacity
        );
        for i in 0..self.layers.len() {
            let (before, rest) = self.layers.split_at_mut(i);
            let input = if i == 0 { x } else { before[i - 1].output() };
            rest[0].forward(be, input, batch, train);
        }
        self.logits()
    }

    pub fn logits(&self) -> &B::Tensor {
        self.layers.last().expect("a model has layers").output()
    }

    /// Loss head then every layer's backward; leaves the mean loss in `head.loss` and gradients in params.
    pub fn backward(&mut self, be: &B, x: &B::Tensor, labels: &B::Tensor, batch: usize) {
        let n = self.layers.len();
        self.head
            .forward_backward(be, self.layers[n - 1].output(), labels, batch);
        for i in (0..n).rev() {
            let (before, rest) = self.layers.split_at_mut(i);
            let (cur, after) = rest.split_first_mut().expect("index in range");
            let dy = match after.first_mut() {
                Some(next) => next.grad_input(),
                None => &mut self.head.dlogits,
            };
            let input = if i == 0 { x } else { before[i - 1].output() };
            cur.backward(be, input, dy, batch, i > 0);
        }
    }

    pub fn params(&self) -> Vec<&Param<B::Tensor>> {
        self.layers.iter().flat_map(|l| l.params()).collect()
    }
    pub fn params_mut(&mut self) -> Vec<&mut Param<B::Tensor>> {
        self.layers
            .iter_mut()
            .flat_map(|l| l.params_mut())
            .collect()
    }
    pub fn buffers(&self) -> Vec<&Buffer<B::Tensor>> {
        self.layers.iter().flat_map(|l| l.buffers()).collect()
    }
    pub fn buffers_mut(&mut self) -> Vec<&mut Buffer<B::Tensor>> {
        self.layers
            .iter_mut()
            .flat_map(|l| l.buffers_mut())
            .collect()
    }
    /// Gives every parameter `wanted` optimizer moments (zeros) unless each already has them: views
    /// into one arena per moment on a packed model, tensors of their own otherwise.
    pub fn alloc_moments(&mut self, be: &B, wanted: usize) {
        if self.params().iter().all(|p| p.state.len() == wanted) {
            return;
        }
        match self.flat.take() {
            Some(mut flat) => {
                flat.moments.clear();
                let mut views: Vec<Vec<B::Tensor>> =
                    (0..flat.lens.len()).map(|_| Vec::new()).collect();
                for _ in 0..wanted {
                    let (whole, parts) = be
                        .arena(&flat.lens)
                        .expect("a packed model's backend has arenas");
                    flat.moments.push(whole);
                    for (v, part) in views.iter_mut().zip(parts) {
                        v.push(part);
                    }
                }
                for (p, v) in self.params_mut().into_iter().zip(views) {
                    p.state = v;
                }
                self.flat = Some(flat);
            }
            None => {
                for p in self.params_mut() {
                    p.state = (0..wanted).map(|_| be.zeros(p.numel())).collect();
                }
            }
        }
    }

    pub fn num_params(&self) -> usize {
        self.params().iter().map(|p| p.numel()).sum()
    }
}
