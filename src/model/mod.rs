//! The reference models of docs/MODELS.md, built from [`layers`] on any backend.

pub mod file;
pub mod layers;

use crate::backend::{Backend, ConvGeom, PoolGeom, PoolKind};
use crate::error::InputError;
use file::{LayerSpec, Network, Shape};
use layers::{
    Activation, BatchNorm, Buffer, Conv2d, Dropout, Epilogue, Flatten, Layer, Linear, Param,
    Pool2d, SoftmaxCrossEntropy,
};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use std::sync::Arc;

/// The study's models, by name (their files are in `models/`, see [`file::BUILTINS`], which has others
/// too).
pub const MODEL_NAMES: [&str; 8] = [
    "fc8", "fc8-bn", "cnn3", "cnn3-bn", "cnn5", "cnn5-bn", "cnn7", "cnn7-bn",
];

/// MNIST's geometry: 28x28 grey images in 10 classes. What a model is checked against before the
/// data is known (a sweep's grid, a bench's list), and what checkpoints older than the data formats
/// were trained on.
pub const MNIST_INPUT: Shape = Shape::Image { h: 28, w: 28, c: 1 };
pub const MNIST_CLASSES: usize = 10;

/// A network to build: a built-in model's name or a model file's path, with the file's text, and the
/// input shape and class count it is built for (checked when the spec is made).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ModelSpec {
    name: Arc<str>,
    text: Arc<str>,
    input: Shape,
    classes: usize,
}

impl ModelSpec {
    /// A built-in name (`cnn7-bn`) or a model file's path, read and checked for MNIST's geometry.
    pub fn parse(name: &str) -> Result<Self, InputError> {
        Self::parse_for(name, MNIST_INPUT, MNIST_CLASSES)
    }

    /// [`ModelSpec::parse`] for images of shape `input` in `classes` classes.
    pub fn parse_for(name: &str, input: Shape, classes: usize) -> Result<Self, InputError> {
        let (name, text) = file::read_model(name)?;
        Self::from_text_for(&name, &text, input, classes)
    }

    /// The model file `text`, called `name` (a path or a built-in name), checked for MNIST's images.
    pub fn from_text(name: &str, text: &str) -> Result<Self, InputError> {
        Self::from_text_for(name, text, MNIST_INPUT, MNIST_CLASSES)
    }

    /// The model file `text`, called `name` (a path or a built-in name), checked for `input` and
    /// `classes`.
    pub fn from_text_for(
        name: &str,
        text: &str,
        input: Shape,
        classes: usize,
    ) -> Result<Self, InputError> {
        file::parse_network(name, text, input, classes)?;
        Ok(ModelSpec {
            name: name.into(),
            text: text.into(),
            input,
            classes,
        })
    }

    /// The same model for other data: checked again, as the shapes all change.
    pub fn for_data(&self, input: Shape, classes: usize) -> Result<Self, InputError> {
        if (input, classes) == (self.input, self.classes) {
            return Ok(self.clone());
        }
        Self::from_text_for(&self.name, &self.text, input, classes)
    }

    /// The shape of one input image.
    pub fn input(&self) -> Shape {
        self.input
    }

    /// The number of classes the model tells apart.
    pub fn classes(&self) -> usize {
        self.classes
    }

    /// The built-in name or the file's path, as `--model` took it.
    pub fn name(&self) -> String {
        self.name.to_string()
    }

    /// The model file's text.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// Whether this is a built-in model, unchanged (its name alone says what it is).
    pub fn is_builtin(&self) -> bool {
        file::builtin(&self.name) == Some(&*self.text)
    }

    /// The checked network with its shapes and parameters.
    pub fn network(&self) -> Network {
        file::parse_network(&self.name, &self.text, self.input, self.classes)
            .expect("a ModelSpec is checked when it is made")
    }

    /// An upper bound on the f32 values a model built for batch `n` holds per image of `n`: each
    /// layer's input gradient and output, and a convolution's columns and their gradient. What a large
    /// `--batch` costs, checked against memory before anything is built; `tests/reliability.rs` keeps it
    /// between 1 and 10 times the outputs and input gradients the CPU backend's layers really hold.
    pub fn floats_per_image(&self) -> usize {
        let net = self.network();
        let mut total = 2 * net.input.len();
        for l in &net.layers {
            total += 2 * l.input.len() + 2 * l.output.len();
            if let (
                LayerSpec::Conv2d { kernel, .. },
                Shape::Image { c, .. },
                Shape::Image { h, w, .. },
            ) = (&l.spec, l.input, l.output)
            {
                total += 2 * h * w * kernel * kernel * c;
            }
        }
        total + 4 * net.classes
    }

    /// Whether a model built for `batch` images fits in this machine's memory (see
    /// [`ModelSpec::floats_per_image`]); `flag` names the option that asked for it.
    pub fn check_batch_memory(&self, flag: &str, batch: usize) -> Result<(), InputError> {
        let bytes = (self.floats_per_image() as u128) * 4 * batch as u128;
        crate::error::check_memory(
            &format!("{flag} {batch}: {} at this batch", self.name()),
            bytes,
        )
    }
}

/// A built network: its layers, its loss head, and the batch capacity its tensors were sized for.
pub struct Model<B: Backend> {
    pub spec: ModelSpec,
    pub capacity: usize,
    pub layers: Vec<Box<dyn Layer<B>>>,
    /// What the first layer receives per sample (flat where the file flattens the input first, a free
    /// step that builds no layer), and each layer's output shape: the structured shapes tools read.
    pub input: Shape,
    pub shapes: Vec<Shape>,
    pub head: SoftmaxCrossEntropy<B>,
    /// On a backend with arenas (a GPU): every parameter's value, gradient and optimizer moments as
    /// views into one buffer each, so that one dispatch updates them all.
    pub flat: Option<FlatParams<B::Tensor>>,
    /// Gradient clipping's factor for the next update ([`Backend::clip_scale`]; 1 until computed).
    pub clip_scale: B::Tensor,
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
    /// Builds `spec` for batches of up to `capacity`, with He-uniform weights drawn from `seed` in layer
    /// order. An activation right after a dense, conv2d or batchnorm layer is fused into it; a
    /// flatten of the input costs nothing (the batch is already `[N, h*w*c]`).
    pub fn new(be: &B, spec: ModelSpec, capacity: usize, seed: u64) -> Self {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let net = spec.network();
        let mut layers: Vec<Box<dyn Layer<B>>> = Vec::new();
        let mut shapes = Vec::new();
        let mut input = net.input;
        let mut i = 0;
        while i < net.layers.len() {
            let l = &net.layers[i];
            // An activation right after a dense, conv2d or batchnorm layer is fused into it.
            let fused = match net.layers.get(i + 1).map(|next| &next.spec) {
                Some(LayerSpec::Activation(a))
                    if matches!(
                        l.spec,
                        LayerSpec::Dense { .. }
                            | LayerSpec::Conv2d { .. }
                            | LayerSpec::BatchNorm { .. }
                    ) =>
                {
                    Some(*a)
                }
                _ => None,
            };
            // A layer's name is its parameters' prefix (`fc1` of `fc1.weight`).
            let name = l
                .params
                .first()
                .map(|(p, _)| {
                    p.rsplit_once('.')
                        .map_or(p.as_str(), |(n, _)| n)
                        .to_string()
                })
                .unwrap_or_default();
            match (&l.spec, l.input, l.output) {
                (LayerSpec::Dense { bias, .. }, input, output) => {
                    let epilogue = Epilogue {
                        bias: *bias,
                        act: fused,
                    };
                    layers.push(Box::new(Linear::new(
                        be,
                        &name,
                        (input.len(), output.len()),
                        epilogue,
                        capacity,
                        &mut rng,
                    )));
                }
                (
                    LayerSpec::Conv2d {
                        filters,
                        kernel,
                        stride,
                        bias,
                        ..
                    },
                    Shape::Image { h, w, c },
                    _,
                ) => {
                    let geom = ConvGeom {
                        n: capacity,
                        c,
                        h,
                        w,
                        k: *kernel,
                        stride: *stride,
                        pad: file::conv_padding(&l.spec),
                    };
                    let epilogue = Epilogue {
                        bias: *bias,
                        act: fused,
                    };
                    layers.push(Box::new(Conv2d::new(
                        be, &name, geom, *filters, epilogue, &mut rng,
                    )));
                }
                (LayerSpec::BatchNorm { .. }, input, _) => {
                    let (channels, spatial) = match input {
                        Shape::Image { h, w, c } => (c, h * w),
                        Shape::Flat(n) => (n, 1),
                    };
                    layers.push(Box::new(BatchNorm::new(
                        be, &name, channels, spatial, fused, capacity,
                    )));
                }
                (LayerSpec::Activation(act), input, _) => {
                    layers.push(Box::new(Activation::new(be, *act, input.len(), capacity)));
                }
                (
                    LayerSpec::Pool2d { .. } | LayerSpec::GlobalAvgPool,
                    Shape::Image { h, w, c },
                    _,
                ) => {
                    // A global average is one window the size of the image.
                    let (kind, kh, kw, stride) = match l.spec {
                        LayerSpec::Pool2d { kind, size, stride } => (kind, size, size, stride),
                        _ => (PoolKind::Avg, h, w, 1),
                    };
                    let geom = PoolGeom {
                        n: capacity,
                        c,
                        h,
                        w,
                        kh,
                        kw,
                        stride,
                    };
                    layers.push(Box::new(Pool2d::new(be, kind, geom)));
                }
                (LayerSpec::Dropout { p }, input, _) => {
                    // Each dropout layer has its own stream: the seed and the layer's position.
                    let key = seed ^ (i as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
                    layers.push(Box::new(Dropout::new(be, *p, key, input.len(), capacity)));
                }
                (LayerSpec::Flatten, _, output) => {
                    if layers.is_empty() {
                        input = output;
                    } else {
                        layers.push(Box::new(Flatten::new(be, output.len())));
                    }
                }
                (
                    LayerSpec::Conv2d { .. } | LayerSpec::Pool2d { .. } | LayerSpec::GlobalAvgPool,
                    Shape::Flat(_),
                    _,
                ) => {
                    unreachable!("a checked network convolves and pools images only")
                }
            }
            if shapes.len() < layers.len() {
                shapes.push(l.output);
            }
            i += if fused.is_some() { 2 } else { 1 };
        }
        let mut model = Model {
            spec,
            capacity,
            layers,
            input,
            shapes,
            head: SoftmaxCrossEntropy::new(be, net.classes, capacity),
            flat: None,
            clip_scale: be.upload(&[1.0]),
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
            if self.layers[i].passes_input_on() {
                continue;
            }
            let (before, rest) = self.layers.split_at_mut(i);
            rest[0].forward(be, input_of(before, x), batch, train);
        }
        self.logits()
    }

    /// The optimizer step the next training forward belongs to (dropout's masks depend on it).
    pub fn set_step(&mut self, step: u64) {
        for l in &mut self.layers {
            l.set_step(step);
        }
    }

    pub fn logits(&self) -> &B::Tensor {
        last_computing(&self.layers)
            .expect("a model has a layer that computes")
            .output()
    }

    /// Loss head then every layer's backward; leaves the mean loss in `head.loss` and gradients in params.
    pub fn backward(&mut self, be: &B, x: &B::Tensor, labels: &B::Tensor, batch: usize) {
        let n = self.layers.len();
        let Model { layers, head, .. } = self;
        head.forward_backward(be, input_of(layers, x), labels, batch);
        for i in (0..n).rev() {
            if layers[i].passes_input_on() {
                continue;
            }
            let (before, rest) = layers.split_at_mut(i);
            let (cur, after) = rest.split_first_mut().expect("index in range");
            let dy = match after.iter_mut().find(|l| !l.passes_input_on()) {
                Some(next) => next.grad_input(),
                None => &mut head.dlogits,
            };
            let need_dx = last_computing(before).is_some();
            cur.backward(be, input_of(before, x), dy, batch, need_dx);
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

/// The last of `layers` that computes (a flatten passes its input on), if any.
fn last_computing<B: Backend>(layers: &[Box<dyn Layer<B>>]) -> Option<&dyn Layer<B>> {
    layers
        .iter()
        .rev()
        .find(|l| !l.passes_input_on())
        .map(|l| l.as_ref())
}

/// What a layer after `before` reads: the output of the last of them that computes, or the model's
/// input `x`.
fn input_of<'a, B: Backend>(before: &'a [Box<dyn Layer<B>>], x: &'a B::Tensor) -> &'a B::Tensor {
    last_computing(before).map_or(x, |l| l.output())
}
