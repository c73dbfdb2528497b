//! The layers, each with its forward and its hand-derived backward, written once against [`Backend`].
//!
//! A layer owns its output and its input-gradient tensors, allocated for the largest batch it will see,
//! so a training step allocates nothing. `batch` may be smaller than that capacity (a last, short batch).
//! An activation can be fused into the layer before it (`act: Some(..)`): the fused layer keeps its
//! activated output and takes the incoming gradient through the activation from it, which is exactly
//! the activation's backward.

use crate::backend::dropout::DropoutStep;
use crate::backend::{
    Act, Backend, BnBackward, BnEval, BnSpec, BnTrain, ConvBackward, ConvForward, ConvGeom, Gemm,
    Mat, PoolGeom, PoolKind, VIEW_ALIGN,
};
use rand::Rng;

/// A trainable tensor with its gradient and its optimizer state (allocated by the optimizer).
pub struct Param<T> {
    pub name: String,
    pub shape: Vec<usize>,
    pub value: T,
    pub grad: T,
    pub state: Vec<T>,
}

impl<T> Param<T> {
    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }
}

/// A non-trainable tensor that is part of the model's state (batch norm's running statistics).
pub struct Buffer<T> {
    pub name: String,
    pub value: T,
}

/// The accessors of a layer that keeps its output in `y` and its input gradient in `dx` (all do).
macro_rules! owns_y_and_dx {
    () => {
        fn output(&self) -> &B::Tensor {
            &self.y
        }
        fn output_mut(&mut self) -> &mut B::Tensor {
            &mut self.y
        }
        fn grad_input(&mut self) -> &mut B::Tensor {
            &mut self.dx
        }
    };
}

/// One step of the network: forward, backward, and the tensors it owns.
pub trait Layer<B: Backend> {
    /// Short description with shapes, e.g. `Linear 784->256 +ReLU`.
    fn describe(&self) -> String;
    /// Elements of the output per sample.
    fn out_per_sample(&self) -> usize;
    fn forward(&mut self, be: &B, x: &B::Tensor, batch: usize, train: bool);
    fn output(&self) -> &B::Tensor;
    /// The output, writable (gradcheck aligns the two backends' ReLU kinks through it).
    fn output_mut(&mut self) -> &mut B::Tensor;
    /// Consumes `dy` (it may be overwritten, e.g. masked by a fused ReLU), fills the parameter gradients and,
    /// if `need_dx`, the input gradient.
    fn backward(&mut self, be: &B, x: &B::Tensor, dy: &mut B::Tensor, batch: usize, need_dx: bool);
    fn grad_input(&mut self) -> &mut B::Tensor;
    /// Whether the layer only renames its input (a flatten): the model then gives the next layer this
    /// layer's input, gives the layer before the next layer's input gradient, and calls neither pass.
    fn passes_input_on(&self) -> bool {
        false
    }
    /// The optimizer step the next training forward belongs to (dropout's masks depend on it).
    fn set_step(&mut self, _step: u64) {}
    fn params(&self) -> Vec<&Param<B::Tensor>> {
        Vec::new()
    }
    fn params_mut(&mut self) -> Vec<&mut Param<B::Tensor>> {
        Vec::new()
    }
    fn buffers(&self) -> Vec<&Buffer<B::Tensor>> {
        Vec::new()
    }
    fn buffers_mut(&mut self) -> Vec<&mut Buffer<B::Tensor>> {
        Vec::new()
    }
}

/// He/Kaiming-uniform values: U(-sqrt(6/fan_in), sqrt(6/fan_in)), as PyTorch's `kaiming_uniform_` for ReLU.
pub fn he_uniform(rng: &mut impl Rng, n: usize, fan_in: usize) -> Vec<f32> {
    let bound = (6.0 / fan_in as f32).sqrt();
    (0..n).map(|_| rng.random_range(-bound..bound)).collect()
}

fn param<B: Backend>(be: &B, name: String, shape: Vec<usize>, init: Vec<f32>) -> Param<B::Tensor> {
    let n = init.len();
    debug_assert_eq!(n, shape.iter().product::<usize>());
    Param {
        name,
        shape,
        value: be.upload(&init),
        grad: be.zeros(n),
        state: Vec::new(),
    }
}

/// What a Linear or Conv2d adds after its product, fused into the same layer: a bias, an activation,
/// or both.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Epilogue {
    pub bias: bool,
    pub act: Option<Act>,
}

/// ` +ReLU` (and so on) for a fused activation in a layer's description, else nothing.
fn act_suffix(act: Option<Act>) -> String {
    act.map_or(String::new(), |a| format!(" +{}", a.title()))
}

/// `y = x W^T (+ b)`, W stored `[out, in]` as in PyTorch.
pub struct Linear<B: Backend> {
    pub inputs: usize,
    pub outputs: usize,
    pub act: Option<Act>,
    w: Param<B::Tensor>,
    b: Option<Param<B::Tensor>>,
    y: B::Tensor,
    dx: B::Tensor,
}

impl<B: Backend> Linear<B> {
    pub fn new(
        be: &B,
        name: &str,
        (inputs, outputs): (usize, usize),
        Epilogue { bias, act }: Epilogue,
        capacity: usize,
        rng: &mut impl Rng,
    ) -> Self {
        let w = param(
            be,
            format!("{name}.weight"),
            vec![outputs, inputs],
            he_uniform(rng, inputs * outputs, inputs),
        );
        let b = bias.then(|| {
            param(
                be,
                format!("{name}.bias"),
                vec![outputs],
                vec![0.0; outputs],
            )
        });
        Linear {
            inputs,
            outputs,
            act,
            w,
            b,
            y: be.zeros(capacity * outputs),
            dx: be.zeros(capacity * inputs),
        }
    }
}

impl<B: Backend> Layer<B> for Linear<B> {
    fn describe(&self) -> String {
        let bias = if self.b.is_some() { "" } else { " (no bias)" };
        let act = act_suffix(self.act);
        format!("Linear {}->{}{bias}{act}", self.inputs, self.outputs)
    }
    fn out_per_sample(&self) -> usize {
        self.outputs
    }
    fn forward(&mut self, be: &B, x: &B::Tensor, batch: usize, _train: bool) {
        let y = Mat::new(batch, self.outputs);
        // y = x W^T: W is stored [out, in].
        be.matmul_bias_act(
            &Gemm::new(y.rows, self.inputs, y.cols).b_t(),
            x,
            &self.w.value,
            &mut self.y,
            self.b.as_ref().map(|b| &b.value),
            self.act,
        );
    }
    owns_y_and_dx!();
    fn backward(&mut self, be: &B, x: &B::Tensor, dy: &mut B::Tensor, batch: usize, need_dx: bool) {
        if let Some(a) = self.act {
            be.activation_backward(a, &self.y, dy, batch * self.outputs);
        }
        // dW = dy^T x; db = column sums of dy; dx = dy W.
        be.matmul(
            &Gemm::new(self.outputs, batch, self.inputs).a_t(),
            dy,
            x,
            &mut self.w.grad,
        );
        if let Some(b) = &mut self.b {
            be.bias_grad(dy, &mut b.grad, Mat::new(batch, self.outputs));
        }
        if need_dx {
            be.matmul(
                &Gemm::new(batch, self.outputs, self.inputs),
                dy,
                &self.w.value,
                &mut self.dx,
            );
        }
    }
    fn params(&self) -> Vec<&Param<B::Tensor>> {
        std::iter::once(&self.w).chain(self.b.as_ref()).collect()
    }
    fn params_mut(&mut self) -> Vec<&mut Param<B::Tensor>> {
        std::iter::once(&mut self.w)
            .chain(self.b.as_mut())
            .collect()
    }
}

/// Square-kernel convolution over NHWC as im2col + matmul; W stored `[out_c, k*k*in_c]` (ky, kx, c order).
pub struct Conv2d<B: Backend> {
    /// Geometry at full capacity; `n` is replaced by the batch at run time.
    pub geom: ConvGeom,
    pub out_c: usize,
    pub act: Option<Act>,
    /// Images per im2col chunk (see [`conv_chunk`]): the whole capacity unless the column matrix
    /// would exceed the backend's binding limit.
    chunk: usize,
    w: Param<B::Tensor>,
    b: Option<Param<B::Tensor>>,
    col: B::Tensor,
    /// Whether `col` holds the last forward's batch columns (one chunk, and a backend that keeps them).
    col_ready: bool,
    dcol: B::Tensor,
    y: B::Tensor,
    dx: B::Tensor,
}

impl<B: Backend> Conv2d<B> {
    pub fn new(
        be: &B,
        name: &str,
        geom: ConvGeom,
        out_c: usize,
        Epilogue { bias, act }: Epilogue,
        rng: &mut impl Rng,
    ) -> Self {
        let fan_in = geom.col_cols();
        let w = param(
            be,
            format!("{name}.weight"),
            vec![out_c, fan_in],
            he_uniform(rng, out_c * fan_in, fan_in),
        );
        let b = bias.then(|| param(be, format!("{name}.bias"), vec![out_c], vec![0.0; out_c]));
        let chunk = conv_chunk(be.max_binding_len(), &geom);
        let rows = geom.out_h() * geom.out_w() * chunk;
        Conv2d {
            geom,
            out_c,
            act,
            chunk,
            w,
            b,
            col: be.zeros(rows * fan_in),
            col_ready: false,
            dcol: be.zeros(rows * fan_in),
            y: be.zeros(geom.col_rows() * out_c),
            dx: be.zeros(geom.n * geom.h * geom.w * geom.c),
        }
    }
    fn geom_for(&self, batch: usize) -> ConvGeom {
        ConvGeom {
            n: batch,
            ..self.geom
        }
    }
    /// The batch's chunks: (first image, images), `self.chunk` at a time.
    fn chunks(&self, batch: usize) -> impl Iterator<Item = (usize, usize)> {
        let chunk = self.chunk;
        (0..batch)
            .step_by(chunk)
            .map(move |n0| (n0, chunk.min(batch - n0)))
    }
    fn in_per_image(&self) -> usize {
        self.geom.h * self.geom.w * self.geom.c
    }
    fn out_per_image(&self) -> usize {
        self.geom.out_h() * self.geom.out_w() * self.out_c
    }
}

/// Images per im2col chunk: the whole batch (`geom.n`), unless its column matrix would exceed the
/// backend's binding limit (`limit` elements); then the most images whose matrix fits, a multiple of
/// [`VIEW_ALIGN`] so that every chunk's views start aligned. (On lavapipe, 128 MiB: cnn7-bn's second
/// convolution holds 2048 x 14 x 14 x 144 floats, 231 MB, at batch 2048.)
fn conv_chunk(limit: Option<usize>, geom: &ConvGeom) -> usize {
    let per_image = geom.out_h() * geom.out_w() * geom.col_cols();
    match limit {
        Some(limit) if geom.n * per_image > limit => {
            (limit / per_image / VIEW_ALIGN * VIEW_ALIGN).max(VIEW_ALIGN)
        }
        _ => geom.n,
    }
}

impl<B: Backend> Layer<B> for Conv2d<B> {
    fn describe(&self) -> String {
        let g = &self.geom;
        let bias = if self.b.is_some() { "" } else { " (no bias)" };
        let relu = act_suffix(self.act);
        format!(
            "Conv2d {}x{} s{} p{} {}x{}x{}->{}x{}x{}{bias}{relu}",
            g.k,
            g.k,
            g.stride,
            g.pad,
            g.h,
            g.w,
            g.c,
            g.out_h(),
            g.out_w(),
            self.out_c
        )
    }
    fn out_per_sample(&self) -> usize {
        self.geom.out_h() * self.geom.out_w() * self.out_c
    }
    fn forward(&mut self, be: &B, x: &B::Tensor, batch: usize, _train: bool) {
        // y = col W^T: one output row per pixel, W stored [out_c, taps].
        let bias = self.b.as_ref().map(|b| &b.value);
        if batch <= self.chunk {
            let g = self.geom_for(batch);
            let f = ConvForward {
                x,
                w: &self.w.value,
                bias,
                act: self.act,
                col: &mut self.col,
                y: &mut self.y,
            };
            self.col_ready = be.conv_forward(&g, self.out_c, f);
            return;
        }
        let (inp, out) = (self.in_per_image(), self.out_per_image());
        for (n0, n) in self.chunks(batch) {
            let g = self.geom_for(n);
            let f = ConvForward {
                x: &be.view(x, n0 * inp, n * inp),
                w: &self.w.value,
                bias,
                act: self.act,
                col: &mut self.col,
                y: &mut be.view(&self.y, n0 * out, n * out),
            };
            be.conv_forward(&g, self.out_c, f);
        }
        self.col_ready = false;
    }
    owns_y_and_dx!();
    fn backward(&mut self, be: &B, x: &B::Tensor, dy: &mut B::Tensor, batch: usize, need_dx: bool) {
        let g = self.geom_for(batch);
        if let Some(a) = self.act {
            be.activation_backward(a, &self.y, dy, g.col_rows() * self.out_c);
        }
        if let Some(b) = &mut self.b {
            be.bias_grad(dy, &mut b.grad, Mat::new(g.col_rows(), self.out_c));
        }
        if batch <= self.chunk {
            let b = ConvBackward {
                x,
                dy,
                w: &self.w.value,
                col: &mut self.col,
                col_ready: self.col_ready,
                dcol: &mut self.dcol,
                dw: &mut self.w.grad,
                accumulate: false,
                dx: need_dx.then_some(&mut self.dx),
            };
            be.conv_backward(&g, self.out_c, b);
            return;
        }
        // Chunk by chunk: the columns again (the forward pass kept only the last chunk's), dW summed
        // over the chunks, dx written image range by image range.
        let (inp, out) = (self.in_per_image(), self.out_per_image());
        let chunks: Vec<(usize, usize)> = self.chunks(batch).collect();
        for (i, (n0, n)) in chunks.into_iter().enumerate() {
            let g = self.geom_for(n);
            let mut dx = need_dx.then(|| be.view(&self.dx, n0 * inp, n * inp));
            let b = ConvBackward {
                x: &be.view(x, n0 * inp, n * inp),
                dy: &be.view(dy, n0 * out, n * out),
                w: &self.w.value,
                col: &mut self.col,
                col_ready: false,
                dcol: &mut self.dcol,
                dw: &mut self.w.grad,
                accumulate: i > 0,
                dx: dx.as_mut(),
            };
            be.conv_backward(&g, self.out_c, b);
        }
    }
    fn params(&self) -> Vec<&Param<B::Tensor>> {
        std::iter::once(&self.w).chain(self.b.as_ref()).collect()
    }
    fn params_mut(&mut self) -> Vec<&mut Param<B::Tensor>> {
        std::iter::once(&mut self.w)
            .chain(self.b.as_mut())
            .collect()
    }
}

/// Batch norm over `channels` columns: BatchNorm1d on `[N, C]`, BatchNorm2d on NHWC seen as `[N*H*W, C]`.
pub struct BatchNorm<B: Backend> {
    pub channels: usize,
    /// Rows per sample: 1 for 1d, H*W for 2d.
    pub spatial: usize,
    pub act: Option<Act>,
    pub momentum: f32,
    pub eps: f32,
    gamma: Param<B::Tensor>,
    beta: Param<B::Tensor>,
    running_mean: Buffer<B::Tensor>,
    running_var: Buffer<B::Tensor>,
    mean: B::Tensor,
    invstd: B::Tensor,
    y: B::Tensor,
    dx: B::Tensor,
}

impl<B: Backend> BatchNorm<B> {
    pub fn new(
        be: &B,
        name: &str,
        channels: usize,
        spatial: usize,
        act: Option<Act>,
        capacity: usize,
    ) -> Self {
        let len = capacity * spatial * channels;
        BatchNorm {
            channels,
            spatial,
            act,
            momentum: 0.1,
            eps: 1e-5,
            gamma: param(
                be,
                format!("{name}.weight"),
                vec![channels],
                vec![1.0; channels],
            ),
            beta: param(
                be,
                format!("{name}.bias"),
                vec![channels],
                vec![0.0; channels],
            ),
            running_mean: Buffer {
                name: format!("{name}.running_mean"),
                value: be.zeros(channels),
            },
            running_var: Buffer {
                name: format!("{name}.running_var"),
                value: be.upload(&vec![1.0; channels]),
            },
            mean: be.zeros(channels),
            invstd: be.zeros(channels),
            y: be.zeros(len),
            dx: be.zeros(len),
        }
    }
}

impl<B: Backend> BatchNorm<B> {
    /// The op over `batch` samples: `batch * spatial` rows, one column per channel.
    fn spec(&self, batch: usize) -> BnSpec {
        BnSpec {
            shape: Mat::new(batch * self.spatial, self.channels),
            momentum: self.momentum,
            eps: self.eps,
            act: self.act,
        }
    }
}

impl<B: Backend> Layer<B> for BatchNorm<B> {
    fn describe(&self) -> String {
        let kind = if self.spatial == 1 {
            "BatchNorm1d"
        } else {
            "BatchNorm2d"
        };
        format!("{kind} {}{}", self.channels, act_suffix(self.act))
    }
    fn out_per_sample(&self) -> usize {
        self.spatial * self.channels
    }
    fn forward(&mut self, be: &B, x: &B::Tensor, batch: usize, train: bool) {
        let bn = self.spec(batch);
        if train {
            let t = BnTrain {
                gamma: &self.gamma.value,
                beta: &self.beta.value,
                mean: &mut self.mean,
                invstd: &mut self.invstd,
                running_mean: &mut self.running_mean.value,
                running_var: &mut self.running_var.value,
            };
            be.bn_forward_train(&bn, x, &mut self.y, t);
        } else {
            let t = BnEval {
                gamma: &self.gamma.value,
                beta: &self.beta.value,
                running_mean: &self.running_mean.value,
                running_var: &self.running_var.value,
            };
            be.bn_forward_eval(&bn, x, &mut self.y, t);
        }
    }
    owns_y_and_dx!();
    fn backward(
        &mut self,
        be: &B,
        x: &B::Tensor,
        dy: &mut B::Tensor,
        batch: usize,
        _need_dx: bool,
    ) {
        // The fused ReLU's backward is part of bn_backward (dy masked by the output).
        let bn = self.spec(batch);
        let t = BnBackward {
            out: &self.y,
            gamma: &self.gamma.value,
            mean: &self.mean,
            invstd: &self.invstd,
            dgamma: &mut self.gamma.grad,
            dbeta: &mut self.beta.grad,
        };
        be.bn_backward(&bn, x, dy, &mut self.dx, t);
    }
    fn params(&self) -> Vec<&Param<B::Tensor>> {
        vec![&self.gamma, &self.beta]
    }
    fn params_mut(&mut self) -> Vec<&mut Param<B::Tensor>> {
        vec![&mut self.gamma, &mut self.beta]
    }
    fn buffers(&self) -> Vec<&Buffer<B::Tensor>> {
        vec![&self.running_mean, &self.running_var]
    }
    fn buffers_mut(&mut self) -> Vec<&mut Buffer<B::Tensor>> {
        vec![&mut self.running_mean, &mut self.running_var]
    }
}

/// An activation as a layer of its own (where it cannot be fused into the layer before it): keeps its
/// output, from which its backward is computed (see [`Act`]).
pub struct Activation<B: Backend> {
    pub act: Act,
    pub features: usize,
    y: B::Tensor,
    dx: B::Tensor,
}

impl<B: Backend> Activation<B> {
    pub fn new(be: &B, act: Act, features: usize, capacity: usize) -> Self {
        Activation {
            act,
            features,
            y: be.zeros(capacity * features),
            dx: be.zeros(capacity * features),
        }
    }
}

impl<B: Backend> Layer<B> for Activation<B> {
    fn describe(&self) -> String {
        format!("{} {}", self.act.title(), self.features)
    }
    fn out_per_sample(&self) -> usize {
        self.features
    }
    fn forward(&mut self, be: &B, x: &B::Tensor, batch: usize, _train: bool) {
        be.activation(self.act, x, &mut self.y, batch * self.features);
    }
    owns_y_and_dx!();
    fn backward(
        &mut self,
        be: &B,
        _x: &B::Tensor,
        dy: &mut B::Tensor,
        batch: usize,
        _need_dx: bool,
    ) {
        let n = batch * self.features;
        be.activation_backward(self.act, &self.y, dy, n);
        be.copy(dy, 0, &mut self.dx, 0, n);
    }
}

/// Max or average pooling over NHWC images (a global average pool is one window the size of the image):
/// keeps its output and, for max pooling, each window's position of its maximum for the backward pass.
pub struct Pool2d<B: Backend> {
    pub kind: PoolKind,
    /// The geometry at full capacity (`n` is the capacity).
    pub geom: PoolGeom,
    y: B::Tensor,
    arg: B::Tensor,
    dx: B::Tensor,
}

impl<B: Backend> Pool2d<B> {
    pub fn new(be: &B, kind: PoolKind, geom: PoolGeom) -> Self {
        Pool2d {
            kind,
            geom,
            y: be.zeros(geom.out_len()),
            arg: be.zeros(if kind == PoolKind::Max {
                geom.out_len()
            } else {
                1
            }),
            dx: be.zeros(geom.in_len()),
        }
    }
    fn geom_for(&self, batch: usize) -> PoolGeom {
        PoolGeom {
            n: batch,
            ..self.geom
        }
    }
}

impl<B: Backend> Layer<B> for Pool2d<B> {
    fn describe(&self) -> String {
        let g = &self.geom;
        let kind = match self.kind {
            PoolKind::Max => "MaxPool2d",
            PoolKind::Avg => "AvgPool2d",
        };
        format!(
            "{kind} {}x{} s{} {}x{}x{}->{}x{}x{}",
            g.kh,
            g.kw,
            g.stride,
            g.h,
            g.w,
            g.c,
            g.out_h(),
            g.out_w(),
            g.c
        )
    }
    fn out_per_sample(&self) -> usize {
        self.geom.out_h() * self.geom.out_w() * self.geom.c
    }
    fn forward(&mut self, be: &B, x: &B::Tensor, batch: usize, _train: bool) {
        let g = self.geom_for(batch);
        be.pool(self.kind, &g, x, &mut self.y, &mut self.arg);
    }
    owns_y_and_dx!();
    fn backward(
        &mut self,
        be: &B,
        _x: &B::Tensor,
        dy: &mut B::Tensor,
        batch: usize,
        _need_dx: bool,
    ) {
        let g = self.geom_for(batch);
        be.pool_backward(self.kind, &g, dy, &self.arg, &mut self.dx);
    }
}

/// Dropout: in training, each element is dropped with probability `p` and the rest scaled by
/// `1 / (1 - p)`, by a counter-based mask of (key, step, element) that both backends compute alike; in
/// evaluation, the identity.
pub struct Dropout<B: Backend> {
    pub p: f32,
    pub features: usize,
    key: u64,
    step: u64,
    y: B::Tensor,
    mask: B::Tensor,
    dx: B::Tensor,
}

impl<B: Backend> Dropout<B> {
    pub fn new(be: &B, p: f32, key: u64, features: usize, capacity: usize) -> Self {
        Dropout {
            p,
            features,
            key,
            step: 0,
            y: be.zeros(capacity * features),
            mask: be.zeros(capacity * features),
            dx: be.zeros(capacity * features),
        }
    }
}

impl<B: Backend> Layer<B> for Dropout<B> {
    fn describe(&self) -> String {
        format!("Dropout p={} {}", self.p, self.features)
    }
    fn out_per_sample(&self) -> usize {
        self.features
    }
    fn forward(&mut self, be: &B, x: &B::Tensor, batch: usize, train: bool) {
        let n = batch * self.features;
        if train {
            let d = DropoutStep {
                key: self.key,
                step: self.step,
                p: self.p,
            };
            be.dropout(&d, x, &mut self.y, &mut self.mask, n);
        } else {
            be.copy(x, 0, &mut self.y, 0, n);
        }
    }
    owns_y_and_dx!();
    fn backward(
        &mut self,
        be: &B,
        _x: &B::Tensor,
        dy: &mut B::Tensor,
        batch: usize,
        _need_dx: bool,
    ) {
        let n = batch * self.features;
        be.dropout_backward(&self.mask, dy, n);
        be.copy(dy, 0, &mut self.dx, 0, n);
    }
    fn set_step(&mut self, step: u64) {
        self.step = step;
    }
}

/// NHWC `[N, H, W, C]` to `[N, H*W*C]`: the memory is already in that order, so the layer is a new
/// name for its input. It owns no tensors, and [`Layer::passes_input_on`] tells the model to hand its
/// input to the next layer (and the next layer's input gradient back) with no pass of its own: a copy
/// each way would cost memory and time (on a GPU, two copies that split the step's compute pass).
pub struct Flatten<B: Backend> {
    pub features: usize,
    /// Empty: the model reads the layer before (see above).
    none: B::Tensor,
}

impl<B: Backend> Flatten<B> {
    pub fn new(be: &B, features: usize) -> Self {
        Flatten {
            features,
            none: be.zeros(0),
        }
    }
}

impl<B: Backend> Layer<B> for Flatten<B> {
    fn describe(&self) -> String {
        format!("Flatten ->{}", self.features)
    }
    fn out_per_sample(&self) -> usize {
        self.features
    }
    fn passes_input_on(&self) -> bool {
        true
    }
    fn forward(&mut self, _be: &B, _x: &B::Tensor, _batch: usize, _train: bool) {
        unreachable!("the model passes a flatten's input on")
    }
    fn output(&self) -> &B::Tensor {
        &self.none
    }
    fn output_mut(&mut self) -> &mut B::Tensor {
        &mut self.none
    }
    fn backward(
        &mut self,
        _be: &B,
        _x: &B::Tensor,
        _dy: &mut B::Tensor,
        _batch: usize,
        _need_dx: bool,
    ) {
        unreachable!("the model passes a flatten's gradient on")
    }
    fn grad_input(&mut self) -> &mut B::Tensor {
        &mut self.none
    }
}

/// Fused softmax + cross-entropy head: the mean loss and its gradient `(p - y)/B` in one op.
pub struct SoftmaxCrossEntropy<B: Backend> {
    pub classes: usize,
    pub dlogits: B::Tensor,
    /// One element: the last batch's mean loss.
    pub loss: B::Tensor,
}

impl<B: Backend> SoftmaxCrossEntropy<B> {
    pub fn new(be: &B, classes: usize, capacity: usize) -> Self {
        SoftmaxCrossEntropy {
            classes,
            dlogits: be.zeros(capacity * classes),
            loss: be.zeros(1),
        }
    }
    pub fn forward_backward(
        &mut self,
        be: &B,
        logits: &B::Tensor,
        labels: &B::Tensor,
        batch: usize,
    ) {
        be.softmax_ce(
            logits,
            labels,
            &mut self.dlogits,
            &mut self.loss,
            Mat::new(batch, self.classes),
            false,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conv(n: usize, hw: usize, c: usize, stride: usize) -> ConvGeom {
        ConvGeom {
            n,
            h: hw,
            w: hw,
            c,
            k: 3,
            stride,
            pad: 1,
        }
    }

    #[test]
    fn conv_chunks_only_what_exceeds_the_binding_limit() {
        let lavapipe = Some((128 << 20) / 4);
        // cnn7-bn's second convolution at batch 2048: 2048 x 14 x 14 x 144 floats (231 MB).
        assert_eq!(conv_chunk(lavapipe, &conv(2048, 28, 16, 2)), 1152);
        // Its first (2048 x 28 x 28 x 9 floats, 58 MB) and any at batch 110 fit whole.
        assert_eq!(conv_chunk(lavapipe, &conv(2048, 28, 1, 1)), 2048);
        assert_eq!(conv_chunk(lavapipe, &conv(110, 28, 16, 2)), 110);
        // No limit (the CPU): never chunked. A limit below one aligned chunk: the smallest chunk.
        assert_eq!(conv_chunk(None, &conv(1 << 20, 28, 16, 2)), 1 << 20);
        assert_eq!(conv_chunk(Some(1000), &conv(130, 28, 16, 2)), VIEW_ALIGN);
    }
}
