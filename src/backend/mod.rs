//! The boundary between the layers and the hardware.
//!
//! Layers are written once, against [`Backend`]; the CPU backend is the obviously-right reference and the
//! GPU backend (feature `gpu`) runs the same ops as WGSL kernels. Every op writes into a tensor the caller
//! allocated up front, so a model's memory is fixed when it is built and the GPU never allocates per step.
//!
//! Layouts: matrices are row-major; images are NHWC, so a convolution's output `[N*OH*OW, C]` and a
//! linear layer's output `[N, C]` are both "rows x channels" and one batch-norm kernel serves 1d and 2d.

pub mod cpu;
#[cfg(feature = "gpu")]
pub mod gpu;
pub mod select;

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

/// Hyper-parameters of one optimizer update.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum OptimStep {
    Sgd {
        lr: f32,
    },
    /// TensorFlow/Keras RMSProp: `ms = rho*ms + (1-rho)*g^2; w -= lr*g/(sqrt(ms)+eps)`.
    RmsProp {
        lr: f32,
        rho: f32,
        eps: f32,
    },
    /// Adam with bias correction; `t` is the 1-based step number.
    Adam {
        lr: f32,
        beta1: f32,
        beta2: f32,
        eps: f32,
        t: u64,
    },
}

/// Everything the layers, the optimizers and the training loop need from a device.
///
/// Reads ([`Backend::read`]) are the only points where the host waits for the device.
pub trait Backend {
    type Tensor;
    /// A data set resident on the device (u8 pixels and labels) with its current sample order.
    type Dataset;

    /// "cpu" or "gpu".
    fn kind(&self) -> &'static str;
    /// What the work runs on, e.g. the CPU model or the adapter's name.
    fn device_name(&self) -> String;

    fn zeros(&self, len: usize) -> Self::Tensor;
    fn upload(&self, data: &[f32]) -> Self::Tensor;
    fn write(&self, t: &mut Self::Tensor, data: &[f32]);
    /// Copies a tensor back to the host, waiting for all queued work.
    fn read(&self, t: &Self::Tensor) -> Vec<f32>;
    fn len(&self, t: &Self::Tensor) -> usize;
    fn fill(&self, t: &mut Self::Tensor, value: f32);
    /// `dst[dst_off..dst_off+len] = src[src_off..src_off+len]`.
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
    /// Whether the device is still sound: a GPU reports a lost device, an out-of-memory or a hang here
    /// (the ops themselves cannot fail mid-step without a sync).
    fn health(&self) -> anyhow::Result<()> {
        Ok(())
    }

    /// Puts a u8 image set (`pixels` bytes per sample) and its labels on the device, once.
    fn upload_dataset(&self, images: &[u8], labels: &[u8], pixels: usize) -> Self::Dataset;
    /// Sets the sample order that [`Backend::gather_batch`] walks (a shuffled epoch).
    fn set_order(&self, ds: &mut Self::Dataset, order: &[u32]);
    /// `x[b] = normalise(images[order[start+b]])`, `y[b] = labels[order[start+b]]` for `b < batch`.
    fn gather_batch(
        &self,
        ds: &Self::Dataset,
        start: usize,
        batch: usize,
        x: &mut Self::Tensor,
        y: &mut Self::Tensor,
    );

    /// `c[m x n] = op(a)[m x k] * op(b)[k x n] (+ c if accumulate)`.
    #[allow(clippy::too_many_arguments)]
    fn matmul(
        &self,
        a: &Self::Tensor,
        ta: Trans,
        b: &Self::Tensor,
        tb: Trans,
        c: &mut Self::Tensor,
        m: usize,
        k: usize,
        n: usize,
        accumulate: bool,
    );
    /// In place on `x[rows x cols]`: add `bias[cols]` if given, then ReLU if asked (the fused epilogue).
    fn bias_act(
        &self,
        x: &mut Self::Tensor,
        bias: Option<&Self::Tensor>,
        rows: usize,
        cols: usize,
        relu: bool,
    );
    /// `dy *= (y > 0)`, in place: ReLU backward from its output.
    fn relu_backward(&self, y: &Self::Tensor, dy: &mut Self::Tensor);
    /// `db[c] = sum_r dy[r, c]`.
    fn bias_grad(&self, dy: &Self::Tensor, db: &mut Self::Tensor, rows: usize, cols: usize);
    /// Unfolds NHWC `x` into `col[col_rows x col_cols]` (zero padding).
    fn im2col(&self, x: &Self::Tensor, col: &mut Self::Tensor, g: &ConvGeom);
    /// Folds `col` back: `dx[n,h,w,c]` = sum of every col entry that `im2col` read from it.
    fn col2im(&self, col: &Self::Tensor, dx: &mut Self::Tensor, g: &ConvGeom);

    /// Batch norm over the rows of `x[rows x cols]` with batch statistics; saves `mean` and `invstd` for
    /// backward and moves the running statistics by `momentum` (running variance unbiased, as PyTorch).
    #[allow(clippy::too_many_arguments)]
    fn bn_forward_train(
        &self,
        x: &Self::Tensor,
        y: &mut Self::Tensor,
        gamma: &Self::Tensor,
        beta: &Self::Tensor,
        mean: &mut Self::Tensor,
        invstd: &mut Self::Tensor,
        running_mean: &mut Self::Tensor,
        running_var: &mut Self::Tensor,
        rows: usize,
        cols: usize,
        momentum: f32,
        eps: f32,
    );
    /// Batch norm with the running statistics (evaluation mode).
    #[allow(clippy::too_many_arguments)]
    fn bn_forward_eval(
        &self,
        x: &Self::Tensor,
        y: &mut Self::Tensor,
        gamma: &Self::Tensor,
        beta: &Self::Tensor,
        running_mean: &Self::Tensor,
        running_var: &Self::Tensor,
        rows: usize,
        cols: usize,
        eps: f32,
    );
    /// Batch-norm backward (Ioffe & Szegedy 2015): dgamma, dbeta and dx through mean and variance.
    #[allow(clippy::too_many_arguments)]
    fn bn_backward(
        &self,
        x: &Self::Tensor,
        dy: &Self::Tensor,
        gamma: &Self::Tensor,
        mean: &Self::Tensor,
        invstd: &Self::Tensor,
        dx: &mut Self::Tensor,
        dgamma: &mut Self::Tensor,
        dbeta: &mut Self::Tensor,
        rows: usize,
        cols: usize,
    );

    /// Fused softmax cross-entropy: `dlogits = (softmax - onehot(labels)) / rows` and
    /// `loss[0] = mean loss` (`+=` if `accumulate`).
    #[allow(clippy::too_many_arguments)]
    fn softmax_ce(
        &self,
        logits: &Self::Tensor,
        labels: &Self::Tensor,
        dlogits: &mut Self::Tensor,
        loss: &mut Self::Tensor,
        rows: usize,
        cols: usize,
        accumulate: bool,
    );
    /// `out[0] += number of rows whose argmax equals the label` (and `out[1] += sum of row losses`).
    fn eval_batch(
        &self,
        logits: &Self::Tensor,
        labels: &Self::Tensor,
        out: &mut Self::Tensor,
        rows: usize,
        cols: usize,
    );

    /// One optimizer update of `w` from `g`; `state` holds the optimizer's moment tensors
    /// (none for SGD, one for RMSProp, two for Adam), each as long as `w`.
    fn optim_step(
        &self,
        step: &OptimStep,
        w: &mut Self::Tensor,
        g: &Self::Tensor,
        state: &mut [Self::Tensor],
    );
}

/// The MNIST normalisation: pixels scaled to [0, 1], then standardised.
pub const PIXEL_MEAN: f32 = 0.1307;
pub const PIXEL_STD: f32 = 0.3081;

/// A pixel as the network sees it.
#[inline]
pub fn normalise_pixel(p: u8) -> f32 {
    (p as f32 / 255.0 - PIXEL_MEAN) / PIXEL_STD
}
