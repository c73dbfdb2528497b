//! The boundary between the layers and the hardware.
//!
//! Layers are written once, against [`Backend`]; the CPU backend is the obviously-right reference and the
//! GPU backend (feature `gpu`) runs the same ops as WGSL kernels. Every op writes into a tensor the caller
//! allocated up front, so a model's memory is fixed when it is built and the GPU never allocates per step.
//!
//! Layouts: matrices are row-major; images are NHWC, so a convolution's output `[N*OH*OW, C]` and a
//! linear layer's output `[N, C]` are both "rows x channels" and one batch-norm kernel serves 1d and 2d.

pub mod act_math;
pub mod cpu;
pub mod cpu_bn;
pub mod cpu_conv;
pub mod cpu_conv_direct;
pub mod cpu_matmul;
pub mod cpu_pool;
pub mod dropout;
#[cfg(feature = "gpu")]
pub mod gpu;
pub mod select;
pub mod wide;

/// How a matmul operand is read: as stored (`N`) or transposed (`T`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Trans {
    N,
    T,
}

/// Geometry of a square-kernel 2-d convolution over an NHWC batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ConvGeom {
    pub n: usize,
    pub c: usize,
    pub h: usize,
    pub w: usize,
    pub k: usize,
    pub stride: usize,
    pub pad: usize,
}

impl ConvGeom {
    pub fn out_h(&self) -> usize {
        (self.h + 2 * self.pad - self.k) / self.stride + 1
    }
    pub fn out_w(&self) -> usize {
        (self.w + 2 * self.pad - self.k) / self.stride + 1
    }
    /// Rows of the im2col matrix: one per output pixel.
    pub fn col_rows(&self) -> usize {
        self.n * self.out_h() * self.out_w()
    }
    /// Columns of the im2col matrix: one per (ky, kx, channel) tap.
    pub fn col_cols(&self) -> usize {
        self.k * self.k * self.c
    }
}

/// Max or average pooling.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PoolKind {
    /// The window's first maximum (row-major); the gradient goes to it alone.
    Max,
    /// The window's mean; the gradient is shared equally.
    Avg,
}

impl PoolKind {
    pub fn name(self) -> &'static str {
        match self {
            PoolKind::Max => "max",
            PoolKind::Avg => "avg",
        }
    }
}

/// Pooling windows over an NHWC batch: `kh x kw` windows every `stride` pixels, no padding (a global
/// average pool is one `h x w` window).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct PoolGeom {
    pub n: usize,
    pub c: usize,
    pub h: usize,
    pub w: usize,
    pub kh: usize,
    pub kw: usize,
    pub stride: usize,
}

impl PoolGeom {
    pub fn out_h(&self) -> usize {
        (self.h - self.kh) / self.stride + 1
    }
    pub fn out_w(&self) -> usize {
        (self.w - self.kw) / self.stride + 1
    }
    /// Elements of the output: `n * out_h * out_w * c`.
    pub fn out_len(&self) -> usize {
        self.n * self.out_h() * self.out_w() * self.c
    }
    /// `1 / (kh * kw)`: an average pool multiplies by it (on both backends, so they agree exactly).
    pub fn inv_area(&self) -> f32 {
        1.0 / (self.kh * self.kw) as f32
    }
    /// Elements of the input: `n * h * w * c`.
    pub fn in_len(&self) -> usize {
        self.n * self.h * self.w * self.c
    }
}

/// One matrix product: `c[m x n] = op(a)[m x k] * op(b)[k x n]`, plus the old `c` if `accumulate`.
/// Read as a sentence: `Gemm::new(m, k, n).b_t()` is "a times b transposed".
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Gemm {
    pub m: usize,
    pub k: usize,
    pub n: usize,
    /// How `a` is stored: `N` as `[m x k]`, `T` as `[k x m]`.
    pub ta: Trans,
    /// How `b` is stored: `N` as `[k x n]`, `T` as `[n x k]`.
    pub tb: Trans,
    pub accumulate: bool,
}

impl Gemm {
    /// Both operands as stored, `c` overwritten.
    pub fn new(m: usize, k: usize, n: usize) -> Self {
        Gemm {
            m,
            k,
            n,
            ta: Trans::N,
            tb: Trans::N,
            accumulate: false,
        }
    }
    /// `a` is stored `[k x m]` and read transposed.
    pub fn a_t(self) -> Self {
        Gemm {
            ta: Trans::T,
            ..self
        }
    }
    /// `b` is stored `[n x k]` and read transposed.
    pub fn b_t(self) -> Self {
        Gemm {
            tb: Trans::T,
            ..self
        }
    }
    /// Adds the product to `c` instead of overwriting it.
    pub fn accumulate(self) -> Self {
        Gemm {
            accumulate: true,
            ..self
        }
    }
    /// Multiply-adds counted as two operations each.
    pub fn flops(&self) -> f64 {
        2.0 * self.m as f64 * self.k as f64 * self.n as f64
    }
}

/// An element-wise activation. Its backward is written in terms of its output `y` (every one here has
/// a derivative that is a function of `y`), so a layer keeps only its output. Adding one is a variant
/// here (its code, `apply` and `grad`) and the same two cases in `shaders/elementwise.wgsl`
/// (`act_apply`, `act_grad`): the kernels, the CPU twins and the tests take every variant from
/// [`Act::ALL`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Act {
    /// `max(x, 0)`; gradient 1 where `y > 0`, else 0.
    Relu,
    /// `1 / (1 + e^-x)`; gradient `y (1 - y)`.
    Sigmoid,
    /// `tanh(x)`; gradient `1 - y^2`.
    Tanh,
}

impl Act {
    pub const ALL: [Act; 3] = [Act::Relu, Act::Sigmoid, Act::Tanh];

    /// The value of the WGSL pipeline constant `ACT` that selects it.
    /// The code of an optional activation: 0 for none.
    pub fn code_of(act: Option<Act>) -> u32 {
        act.map_or(0, Act::code)
    }

    pub fn code(self) -> u32 {
        match self {
            Act::Relu => 1,
            Act::Sigmoid => 2,
            Act::Tanh => 3,
        }
    }

    /// Its `type` in a model file.
    pub fn name(self) -> &'static str {
        match self {
            Act::Relu => "relu",
            Act::Sigmoid => "sigmoid",
            Act::Tanh => "tanh",
        }
    }

    /// Its name in layer descriptions: `ReLU`, `Sigmoid`, `Tanh`.
    pub fn title(self) -> &'static str {
        match self {
            Act::Relu => "ReLU",
            Act::Sigmoid => "Sigmoid",
            Act::Tanh => "Tanh",
        }
    }

    // Always inlined: the CPU's loops over a slice vectorise only with the body in them.
    #[inline(always)]
    pub fn apply(self, x: f32) -> f32 {
        match self {
            Act::Relu => x.max(0.0),
            Act::Sigmoid => 1.0 / (1.0 + (-x).exp()),
            Act::Tanh => act_math::tanh(x),
        }
    }

    /// `dy * act'(x)` from the output `y = act(x)`.
    pub fn grad(self, y: f32, dy: f32) -> f32 {
        match self {
            Act::Relu => {
                if y > 0.0 {
                    dy
                } else {
                    0.0
                }
            }
            Act::Sigmoid => dy * y * (1.0 - y),
            Act::Tanh => dy * (1.0 - y * y),
        }
    }
}

/// A row-major `[rows x cols]` view of a tensor: a batch of rows (samples, or NHWC pixels), one column
/// per feature or channel.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Mat {
    pub rows: usize,
    pub cols: usize,
}

impl Mat {
    pub fn new(rows: usize, cols: usize) -> Self {
        Mat { rows, cols }
    }
    pub fn len(&self) -> usize {
        self.rows * self.cols
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Batch norm over the rows of a `[rows x cols]` tensor, one channel per column.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BnSpec {
    pub shape: Mat,
    /// Running statistics move by `r = (1 - momentum) * r + momentum * batch value`.
    pub momentum: f32,
    pub eps: f32,
    /// An activation fused after the normalisation: the forward applies it, and the backward takes
    /// `dy` through it from the forward output (`BnBackward::out`), in the same passes over memory.
    pub act: Option<Act>,
}

/// The tensors a training-mode batch-norm forward reads and writes.
pub struct BnTrain<'a, T> {
    pub gamma: &'a T,
    pub beta: &'a T,
    /// Written: the batch mean and `1/sqrt(var + eps)`, saved for backward.
    pub mean: &'a mut T,
    pub invstd: &'a mut T,
    /// Updated: the running statistics (the running variance unbiased, as PyTorch's).
    pub running_mean: &'a mut T,
    pub running_var: &'a mut T,
}

/// The tensors an evaluation-mode batch-norm forward reads.
pub struct BnEval<'a, T> {
    pub gamma: &'a T,
    pub beta: &'a T,
    pub running_mean: &'a T,
    pub running_var: &'a T,
}

/// The tensors batch-norm backward reads (what the training forward saved) and the parameter gradients
/// it writes.
pub struct BnBackward<'a, T> {
    /// The forward output (after the fused ReLU): where it is not positive, `dy` counts as 0.
    pub out: &'a T,
    pub gamma: &'a T,
    pub mean: &'a T,
    pub invstd: &'a T,
    pub dgamma: &'a mut T,
    pub dbeta: &'a mut T,
}

/// A convolution's forward, [`Backend::conv_forward`]: `y = act(im2col(x) W^T + bias)`, `w` stored
/// `[out_c x taps]`, `y` `[col_rows x out_c]`.
pub struct ConvForward<'a, T> {
    pub x: &'a T,
    pub w: &'a T,
    pub bias: Option<&'a T>,
    pub act: Option<Act>,
    /// Scratch for the column matrix `[col_rows x taps]`.
    pub col: &'a mut T,
    pub y: &'a mut T,
}

/// A convolution's backward, [`Backend::conv_backward`]: `dw (+)= dy^T im2col(x)` and, if `dx` is
/// given, `dx = col2im(dy W)`. `dy` has been taken through the layer's activation already.
pub struct ConvBackward<'a, T> {
    pub x: &'a T,
    pub dy: &'a T,
    pub w: &'a T,
    /// The column matrix; `col_ready` when the forward left x's columns in it.
    pub col: &'a mut T,
    pub col_ready: bool,
    /// Scratch for `dy W` `[col_rows x taps]`.
    pub dcol: &'a mut T,
    pub dw: &'a mut T,
    /// Add to `dw` rather than overwrite it.
    pub accumulate: bool,
    pub dx: Option<&'a mut T>,
}

/// The update rule of one optimizer step, with its own hyper-parameters.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum OptimRule {
    /// `w -= lr * g`, or with momentum (PyTorch's, no dampening) `buf = momentum * buf + g` and
    /// `w -= lr * buf` (Nesterov: `w -= lr * (g + momentum * buf)`).
    Sgd { momentum: f32, nesterov: bool },
    /// TensorFlow/Keras RMSProp: `ms = rho*ms + (1-rho)*g^2; w -= lr*g/(sqrt(ms)+eps)`.
    RmsProp { rho: f32, eps: f32 },
    /// Adam with bias correction; `t` is the 1-based step number. `decoupled`: AdamW's weight decay
    /// (`w *= 1 - lr * wd` before the update) instead of L2.
    Adam {
        beta1: f32,
        beta2: f32,
        eps: f32,
        t: u64,
        decoupled: bool,
    },
}

/// Hyper-parameters of one optimizer update. The gradient an update uses is `g * scale` when `clip`
/// (the scale `clip_scale` left on the device), plus `weight_decay * w` unless the rule decouples it;
/// with neither, it is `g` itself, so plain SGD, RMSProp and Adam are what they always were.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct OptimStep {
    pub rule: OptimRule,
    pub lr: f32,
    pub weight_decay: f32,
    pub clip: bool,
}

impl OptimStep {
    /// A plain step of `rule` at `lr`: no weight decay, no clipping.
    pub fn plain(rule: OptimRule, lr: f32) -> Self {
        OptimStep {
            rule,
            lr,
            weight_decay: 0.0,
            clip: false,
        }
    }
}

/// Which kernel set a GPU runs (`--kernels`). Only the matmuls differ between the sets; every other
/// kernel is the same in both. `gpu::KernelStyle::pick` turns it into the set an adapter runs.
#[derive(
    Clone,
    Copy,
    Debug,
    Default,
    PartialEq,
    Eq,
    clap::ValueEnum,
    serde::Serialize,
    serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum KernelChoice {
    /// By the adapter's type: tiled on a real GPU, emulated on a CPU-emulated adapter (lavapipe,
    /// SwiftShader).
    #[default]
    Auto,
    /// The real-GPU kernels: 64x64 or 16x16 tiles staged in workgroup memory, split-K to 256 workgroups.
    Tiled,
    /// The CPU-emulated adapters' kernels: no workgroup memory or barriers, vec4 and (on 8-lane
    /// subgroups) subgroup variants, split-K to 8 workgroups.
    Emulated,
}

impl KernelChoice {
    pub fn name(self) -> &'static str {
        match self {
            KernelChoice::Auto => "auto",
            KernelChoice::Tiled => "tiled",
            KernelChoice::Emulated => "emulated",
        }
    }
}

/// Views start at multiples of this many elements: 256 bytes, the largest storage-offset alignment
/// WebGPU allows an adapter to require.
pub const VIEW_ALIGN: usize = 64;

/// Everything the layers, the optimizers and the training loop need from a device.
///
/// Reads ([`Backend::read`]) are the only points where the host waits for the device. Each op's doc
/// names its WGSL kernels (`shaders/<family>.wgsl`, launched from `src/backend/gpu/<family>.rs`) and the
/// test in `tests/gpu_ops.rs` that holds them to the CPU twin in `src/backend/cpu.rs`.
pub trait Backend {
    type Tensor;
    /// A data set resident on the device (u8 pixels and labels) with its current sample order.
    type Dataset;

    /// "cpu" or "gpu".
    fn kind(&self) -> &'static str;
    /// What the work runs on, e.g. the CPU model or the adapter's name.
    fn device_name(&self) -> String;
    /// The GPU kernel set the ops run (`--kernels`: "tiled" or "emulated"); `None` on the CPU.
    fn kernels(&self) -> Option<&'static str> {
        None
    }

    fn zeros(&self, len: usize) -> Self::Tensor;
    fn upload(&self, data: &[f32]) -> Self::Tensor;
    fn write(&self, t: &mut Self::Tensor, data: &[f32]);
    /// Copies a tensor back to the host once all queued work is done. The one read-back path: the
    /// web awaits it (the browser completes the GPU's map); natively [`Backend::read`] drives it.
    fn read_async(&self, t: &Self::Tensor) -> impl std::future::Future<Output = Vec<f32>>;
    /// [`Backend::read_async`] driven to completion by `pollster` on this thread. Native code only for
    /// a GPU: on the web nothing may block, and a GPU read there must be awaited.
    fn read(&self, t: &Self::Tensor) -> Vec<f32> {
        pollster::block_on(self.read_async(t))
    }
    fn len(&self, t: &Self::Tensor) -> usize;
    /// GPU: a buffer clear or write (no kernel). Test: `copy_and_fill`.
    fn fill(&self, t: &mut Self::Tensor, value: f32);
    /// `dst[dst_off..dst_off+len] = src[src_off..src_off+len]`. GPU: a buffer copy (no kernel).
    /// Test: `copy_and_fill`.
    fn copy(
        &self,
        src: &Self::Tensor,
        src_off: usize,
        dst: &mut Self::Tensor,
        dst_off: usize,
        len: usize,
    );
    /// Waits until every queued op has finished (for honest timing).
    fn sync(&self);
    /// Tensors of lengths `lens` as views into one device buffer, and the whole buffer as one more
    /// tensor, on a backend whose tensors can be parts of a buffer (a GPU): one op on the whole tensor
    /// then covers all the views in one dispatch (the optimizer's multi-tensor update). The padding
    /// between views starts at 0. `None` where every tensor is its own allocation (the CPU).
    fn arena(&self, _lens: &[usize]) -> Option<(Self::Tensor, Vec<Self::Tensor>)> {
        None
    }
    /// The most f32 elements one tensor may hold when a kernel binds it (a GPU's storage-binding
    /// limit), or `None` where there is no such limit (the CPU). Layers whose scratch would exceed it
    /// at full batch (a convolution's column matrix) work through the batch in chunks of
    /// [`Backend::view`]s.
    fn max_binding_len(&self) -> Option<usize> {
        None
    }
    /// `len` elements of `t` from `offset` (a multiple of [`VIEW_ALIGN`] elements), sharing its storage:
    /// writing through the view writes `t`. Only called on a backend that returns a
    /// [`Backend::max_binding_len`].
    fn view(&self, t: &Self::Tensor, offset: usize, len: usize) -> Self::Tensor {
        let _ = (t, offset, len);
        unreachable!("views are only taken on backends with a binding limit")
    }
    /// Starts timing on the device itself (a GPU with timestamp queries between passes), for the
    /// profiler: false, and nothing started, on a backend that cannot.
    fn timer_start(&self) -> bool {
        false
    }
    /// Records a device timestamp at this point of the queued work: its index, or `None` when no timer
    /// runs or it is full. `submit`: then submit the queued work (an op's end mark, so that no op's
    /// interval spans a submission and so a wait on the host).
    fn timer_mark(&self, _submit: bool) -> Option<usize> {
        None
    }
    /// Waits for the queued work, stops the timer and returns every mark's time in seconds (from an
    /// arbitrary origin), in mark order.
    fn timer_finish(&self) -> anyhow::Result<Vec<f64>> {
        Ok(Vec::new())
    }
    /// Compute dispatches recorded so far, on a backend that has them (a GPU); the profiler reads it.
    fn dispatch_count(&self) -> Option<u64> {
        None
    }
    /// Frees what the backend caches for tensors the caller has dropped (a GPU's bind groups keep
    /// their buffers alive): call it between models, e.g. between the runs of a sweep.
    fn release_cached(&self) {}
    /// Whether the device is still sound: a GPU reports a lost device, an out-of-memory or a hang here
    /// (the ops themselves cannot fail mid-step without a sync).
    fn health(&self) -> anyhow::Result<()> {
        Ok(())
    }

    /// Puts a u8 image set (`pixels` bytes per sample, NHWC, `norm.channels()` interleaved) and its
    /// labels on the device, once, with the table that normalises them.
    fn upload_dataset(
        &self,
        images: &[u8],
        labels: &[u8],
        pixels: usize,
        norm: &PixelNorm,
    ) -> Self::Dataset;
    /// Sets the sample order that [`Backend::gather_batch`] walks (a shuffled epoch).
    fn set_order(&self, ds: &mut Self::Dataset, order: &[u32]);
    /// `x[b] = normalise(images[order[start+b]])`, `y[b] = labels[order[start+b]]` for `b < batch`.
    /// GPU: `data.wgsl` `gather`. Test: `gather_batch_normalises_in_order`.
    fn gather_batch(
        &self,
        ds: &Self::Dataset,
        start: usize,
        batch: usize,
        x: &mut Self::Tensor,
        y: &mut Self::Tensor,
    );

    /// `c = op(a) * op(b) (+ c)` as `g` describes. GPU: `matmul.wgsl` `matmul_tiled` (real GPUs) or
    /// `matmul_direct` (CPU-emulated adapters). Tests: `matmul_all_forms_and_odd_shapes`,
    /// `matmul_layer_size`.
    fn matmul(&self, g: &Gemm, a: &Self::Tensor, b: &Self::Tensor, c: &mut Self::Tensor);
    /// [`Backend::matmul`] followed by [`Backend::bias_act`] on `c` (`[g.m x g.n]`): a Linear or
    /// Conv2d layer's forward. The GPU fuses the epilogue into the matmul's store (one dispatch, one
    /// pass over C fewer). Tests: `matmul_epilogue` in tests/gpu_ops.rs.
    fn matmul_bias_act(
        &self,
        g: &Gemm,
        a: &Self::Tensor,
        b: &Self::Tensor,
        c: &mut Self::Tensor,
        bias: Option<&Self::Tensor>,
        act: Option<Act>,
    ) {
        self.matmul(g, a, b, c);
        if bias.is_some() || act.is_some() {
            self.bias_act(c, bias, Mat::new(g.m, g.n), act);
        }
    }
    /// In place on `x` (`shape`): add `bias[cols]` if given, then the activation if any (the fused
    /// epilogue). GPU: `elementwise.wgsl` `bias_act`, or `act_in_place` without a bias. Test:
    /// `bias_act_every_activation`.
    fn bias_act(
        &self,
        x: &mut Self::Tensor,
        bias: Option<&Self::Tensor>,
        shape: Mat,
        act: Option<Act>,
    );
    /// `y = act(x)` over the first `len` elements. GPU: `elementwise.wgsl` `act_forward` (pipeline
    /// constant `ACT`). Test: `activations_forward_and_backward`.
    fn activation(&self, act: Act, x: &Self::Tensor, y: &mut Self::Tensor, len: usize);
    /// `dy = act'(x) * dy` in place over the first `len` elements, from the output `y`. GPU:
    /// `elementwise.wgsl` `act_backward`. Test: `activations_forward_and_backward`.
    fn activation_backward(&self, act: Act, y: &Self::Tensor, dy: &mut Self::Tensor, len: usize);
    /// Pools `x` into `y` (`g.out_len()` values); for max pooling `arg` receives each window's position
    /// of its first maximum (as f32), which the backward reads. GPU: `pool.wgsl` `max_forward`,
    /// `avg_forward`. Test: `pooling_forward_and_backward`.
    fn pool(
        &self,
        kind: PoolKind,
        g: &PoolGeom,
        x: &Self::Tensor,
        y: &mut Self::Tensor,
        arg: &mut Self::Tensor,
    );
    /// `dx` (`g.in_len()`) from `dy`: each input gathers the windows that hold it, in window order. GPU:
    /// `pool.wgsl` `max_backward`, `avg_backward`. Test: `pooling_forward_and_backward`.
    fn pool_backward(
        &self,
        kind: PoolKind,
        g: &PoolGeom,
        dy: &Self::Tensor,
        arg: &Self::Tensor,
        dx: &mut Self::Tensor,
    );
    /// Dropout over `len` elements: `mask[i]` = 0 or `1 / (1 - p)` from the counter-based generator of
    /// `d` (see [`dropout`]), `y = x * mask`. GPU: `dropout.wgsl` `dropout_forward`. Test:
    /// `dropout_masks_agree`.
    fn dropout(
        &self,
        d: &dropout::DropoutStep,
        x: &Self::Tensor,
        y: &mut Self::Tensor,
        mask: &mut Self::Tensor,
        len: usize,
    );
    /// `dy *= mask` in place over `len` elements. GPU: `dropout.wgsl` `dropout_backward`.
    fn dropout_backward(&self, mask: &Self::Tensor, dy: &mut Self::Tensor, len: usize);
    /// `db[c] = sum_r dy[r, c]`. GPU: `reduce.wgsl` `sum_partials` then `column_sum`, or
    /// `column_sum_fused` over few rows.
    /// Test: `bias_grad_many_rows`.
    fn bias_grad(&self, dy: &Self::Tensor, db: &mut Self::Tensor, shape: Mat);
    /// A convolution's forward (see [`ConvForward`]); returns whether `col` now holds x's columns.
    /// By default im2col into `col`, then [`Backend::matmul_bias_act`]; the CPU builds and multiplies
    /// the column matrix a tile at a time, in cache, with the same arithmetic. Tests:
    /// `conv_ops_equal_their_unfused_sequence` (tests/gpu_ops.rs runs the GPU's, which is this default).
    fn conv_forward(&self, g: &ConvGeom, out_c: usize, f: ConvForward<'_, Self::Tensor>) -> bool {
        conv_forward_unfused(self, g, out_c, f)
    }
    /// A convolution's backward (see [`ConvBackward`]). By default im2col (unless the columns are
    /// ready), then [`Backend::matmul`] for dW and dcol, and [`Backend::col2im`]; the CPU tiles it as
    /// the forward. Test: as [`Backend::conv_forward`].
    fn conv_backward(&self, g: &ConvGeom, out_c: usize, b: ConvBackward<'_, Self::Tensor>) {
        conv_backward_unfused(self, g, out_c, b)
    }
    /// Whether [`Backend::conv_forward`] and [`Backend::conv_backward`] are this backend's own (the
    /// profiler then times each as one op rather than its im2col, matmuls and col2im).
    fn fuses_conv(&self) -> bool {
        false
    }
    /// Unfolds NHWC `x` into `col[col_rows x col_cols]` (zero padding). GPU: `im2col.wgsl` `im2col`.
    /// Test: `im2col_col2im_stride_and_padding`.
    fn im2col(&self, x: &Self::Tensor, col: &mut Self::Tensor, g: &ConvGeom);
    /// Folds `col` back: `dx[n,h,w,c]` = sum of every col entry that `im2col` read from it.
    /// GPU: `im2col.wgsl` `col2im`. Test: `im2col_col2im_stride_and_padding`.
    fn col2im(&self, col: &Self::Tensor, dx: &mut Self::Tensor, g: &ConvGeom);

    /// Batch norm of `x` with batch statistics into `y`; saves the mean and invstd for backward and
    /// moves the running statistics. GPU: `batchnorm.wgsl` `bn_forward_fused` over few rows; over many,
    /// `bn_sum_partials`, `bn_sqdev_partials`, `bn_normalise_chunks` (over very many with
    /// `bn_finish_mean` and `bn_finish_invstd` between them). Tests:
    /// `batchnorm_forward_backward`, `fused_column_sums_match_passes`.
    fn bn_forward_train(
        &self,
        bn: &BnSpec,
        x: &Self::Tensor,
        y: &mut Self::Tensor,
        t: BnTrain<'_, Self::Tensor>,
    );
    /// Batch norm with the running statistics (evaluation mode). GPU: `batchnorm.wgsl` `bn_eval`.
    /// Test: `batchnorm_forward_backward`.
    fn bn_forward_eval(
        &self,
        bn: &BnSpec,
        x: &Self::Tensor,
        y: &mut Self::Tensor,
        t: BnEval<'_, Self::Tensor>,
    );
    /// Batch-norm backward (Ioffe & Szegedy 2015): dgamma, dbeta and dx through mean and variance.
    /// GPU: `batchnorm.wgsl` `bn_grad_sums` over few rows, `bn_grad_partials` and `bn_grad_finish` over
    /// many, then `bn_backward_dx`. Tests: `batchnorm_forward_backward`,
    /// `fused_column_sums_match_passes`.
    fn bn_backward(
        &self,
        bn: &BnSpec,
        x: &Self::Tensor,
        dy: &Self::Tensor,
        dx: &mut Self::Tensor,
        t: BnBackward<'_, Self::Tensor>,
    );

    /// Fused softmax cross-entropy over `logits` (`shape`: a row per sample, a column per class):
    /// `dlogits = (softmax - onehot(labels)) / rows` and `loss[0] = mean loss` (`+=` if `accumulate`).
    /// GPU: `softmax_ce.wgsl` `softmax_ce_rows` then `loss_finish`. Test: `softmax_ce_and_eval`.
    fn softmax_ce(
        &self,
        logits: &Self::Tensor,
        labels: &Self::Tensor,
        dlogits: &mut Self::Tensor,
        loss: &mut Self::Tensor,
        shape: Mat,
        accumulate: bool,
    );
    /// `out[0] += number of rows whose argmax equals the label` (and `out[1] += sum of row losses`).
    /// GPU: `softmax_ce.wgsl` `eval_rows` then `eval_finish`. Test: `softmax_ce_and_eval`.
    fn eval_batch(
        &self,
        logits: &Self::Tensor,
        labels: &Self::Tensor,
        out: &mut Self::Tensor,
        shape: Mat,
    );

    /// `scale[0] = min(1, max_norm / (||grads||_2 + 1e-6))`, the norm over every tensor of `grads`
    /// together: gradient clipping's factor, left on the device for [`Backend::optim_step`]. GPU:
    /// `optim.wgsl` `grad_sumsq`. Test: `clip_scale_and_recipes`.
    fn clip_scale(&self, grads: &[&Self::Tensor], max_norm: f32, scale: &mut Self::Tensor);

    /// One optimizer update of `w` from `g`; `state` holds the optimizer's moment tensors
    /// (none for plain SGD, one for SGD with momentum and RMSProp, two for Adam), each as long as `w`;
    /// `scale` is [`Backend::clip_scale`]'s output, read when `step.clip`. GPU: `optim.wgsl` `sgd`,
    /// `sgd_momentum`, `rmsprop`, `adam`. Tests: `optimizer_updates`, `clip_scale_and_recipes`,
    /// `adam_step_count_changes_between_steps_on_one_tensor`.
    fn optim_step(
        &self,
        step: &OptimStep,
        w: &mut Self::Tensor,
        g: &Self::Tensor,
        state: &mut [Self::Tensor],
        scale: &Self::Tensor,
    );
}

/// How u8 pixels become network inputs: per channel, scaled to [0, 1], then standardised by the
/// training set's mean and standard deviation (see `io::data::stats`). Both backends gather through
/// [`PixelNorm::table`], so the GPU's inputs are the CPU's to the bit.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct PixelNorm {
    pub mean: Vec<f32>,
    pub std: Vec<f32>,
}

impl PixelNorm {
    /// MNIST's published constants (torchvision's 0.1307 and 0.3081, from its 60,000 training images).
    pub fn mnist() -> Self {
        PixelNorm {
            mean: vec![0.1307],
            std: vec![0.3081],
        }
    }
    pub fn channels(&self) -> usize {
        self.mean.len()
    }
    /// Pixel value `p` of channel `c` as the network sees it.
    #[inline]
    pub fn apply(&self, p: u8, c: usize) -> f32 {
        (p as f32 / 255.0 - self.mean[c]) / self.std[c]
    }
    /// Every (channel, value) pair normalised: entry `c * 256 + p` is `apply(p, c)`.
    pub fn table(&self) -> Vec<f32> {
        (0..self.channels())
            .flat_map(|c| (0..=255u8).map(move |p| self.apply(p, c)))
            .collect()
    }
}

/// [`Backend::conv_forward`] as im2col then [`Backend::matmul_bias_act`].
pub fn conv_forward_unfused<B: Backend + ?Sized>(
    be: &B,
    g: &ConvGeom,
    out_c: usize,
    f: ConvForward<'_, B::Tensor>,
) -> bool {
    be.im2col(f.x, f.col, g);
    let gemm = Gemm::new(g.col_rows(), g.col_cols(), out_c).b_t();
    be.matmul_bias_act(&gemm, f.col, f.w, f.y, f.bias, f.act);
    true
}

/// [`Backend::conv_backward`] as im2col (unless ready), the two matmuls and col2im.
pub fn conv_backward_unfused<B: Backend + ?Sized>(
    be: &B,
    g: &ConvGeom,
    out_c: usize,
    b: ConvBackward<'_, B::Tensor>,
) {
    if !b.col_ready {
        be.im2col(b.x, b.col, g);
    }
    let (rows, taps) = (g.col_rows(), g.col_cols());
    let mut dw = Gemm::new(out_c, rows, taps).a_t();
    if b.accumulate {
        dw = dw.accumulate();
    }
    be.matmul(&dw, b.dy, b.col, b.dw);
    if let Some(dx) = b.dx {
        be.matmul(&Gemm::new(rows, out_c, taps), b.dy, b.w, b.dcol);
        be.col2im(b.dcol, dx, g);
    }
}
