//! The wgpu backend: every [`Backend`] op as a WGSL compute kernel (shaders/), recorded into one
//! pending command encoder and submitted only when the host needs a number.

mod adapter;
mod launch;

pub use adapter::{choose_adapter, list_adapters, AdapterSummary};
use launch::{Family, GpuBuf, Kernel, Launcher, ParamsKind};

use super::{Backend, ConvGeom, OptimStep, Trans, PIXEL_MEAN, PIXEL_STD};
use crate::backend::cpu::adam_corrections;
use bytemuck::{Pod, Zeroable};
use std::cell::RefCell;
use std::time::Duration;

/// How long a read waits for the GPU before calling it hung.
const READ_TIMEOUT: Duration = Duration::from_secs(600);
/// Rows per partial sum of the column reductions (reduce.wgsl).
const CHUNK_ROWS: usize = 256;

/// An f32 tensor in a storage buffer.
#[derive(Clone, Debug)]
pub struct GpuTensor {
    buf: GpuBuf,
    len: usize,
}

/// A u8 data set resident on the GPU (packed four to a u32) with its sample order.
pub struct GpuDataset {
    images: GpuBuf,
    labels: GpuBuf,
    order: GpuBuf,
    pixels: usize,
}

/// Which matmul kernel an adapter runs (see shaders/matmul.wgsl).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MatmulKernel {
    /// Workgroup-memory tiles: for real GPUs.
    Tiled,
    /// No workgroup memory or barriers: for CPU-emulated adapters (lavapipe).
    Direct,
}

/// The wgpu backend on one adapter.
pub struct GpuBackend {
    l: Launcher,
    /// Chosen from the adapter's type; settable for tests and benches.
    pub matmul_kernel: MatmulKernel,
    info: wgpu::AdapterInfo,
    /// Scratch for reductions and per-row values, grown on demand; one per use so no two live ops share.
    scratch: RefCell<Vec<GpuTensor>>,
    /// The first uncaptured wgpu error (validation, out of memory, device lost), reported by `health`.
    error: std::sync::Arc<std::sync::Mutex<Option<String>>>,
}

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct MatmulParams {
    m: u32,
    k: u32,
    n: u32,
    accumulate: u32,
    a_row: u32,
    a_k: u32,
    b_k: u32,
    b_col: u32,
}

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct EwParams {
    rows: u32,
    cols: u32,
    relu: u32,
    len: u32,
}

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct ReduceParams {
    rows: u32,
    cols: u32,
    chunk_rows: u32,
    chunks: u32,
}

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct BnParams {
    rows: u32,
    cols: u32,
    chunks: u32,
    pad: u32,
    momentum: f32,
    eps: f32,
    unbias: f32,
    pad1: f32,
}

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct ConvParams {
    n: u32,
    c: u32,
    h: u32,
    w: u32,
    k: u32,
    stride: u32,
    pad: u32,
    oh: u32,
    ow: u32,
    total: u32,
    pad1: [u32; 2],
}

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct CeParams {
    rows: u32,
    cols: u32,
    accumulate: u32,
    pad: u32,
}

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct OptimParams {
    len: u32,
    pad: [u32; 3],
    lr: f32,
    beta1: f32,
    beta2: f32,
    eps: f32,
    c1: f32,
    c2: f32,
    pad1: [f32; 2],
}

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct GatherParams {
    start: u32,
    batch: u32,
    pixels: u32,
    pad: u32,
    mean: f32,
    std: f32,
    pad1: [f32; 2],
}

fn u(v: usize) -> u32 {
    u32::try_from(v).expect("tensor dimension exceeds u32")
}

/// Scratch slots: each op family uses its own so results that live across ops never alias.
#[derive(Clone, Copy)]
enum Scratch {
    Partial = 0,
    Rows = 1,
}

impl GpuBackend {
    /// Opens the adapter `choose_adapter` picks. `allow_software`: accept a CPU-emulated adapter
    /// (lavapipe) when no real GPU exists.
    pub fn new(name_filter: Option<&str>, allow_software: bool) -> anyhow::Result<Self> {
        let instance = adapter::instance();
        let adapter = choose_adapter(&instance, name_filter, allow_software)?;
        let info = adapter.get_info();
        let (device, queue) = pollster::block_on(adapter.request_device(&wgpu::DeviceDescriptor {
            label: Some("wgtrain"),
            required_features: wgpu::Features::empty(),
            required_limits: adapter.limits(),
            ..Default::default()
        }))
        .map_err(|e| anyhow::anyhow!("cannot open GPU adapter {}: {e}", info.name))?;
        let error = std::sync::Arc::new(std::sync::Mutex::new(None::<String>));
        let sink = error.clone();
        device.on_uncaptured_error(std::sync::Arc::new(move |e: wgpu::Error| {
            let mut slot = sink.lock().unwrap_or_else(|p| p.into_inner());
            if slot.is_none() {
                *slot = Some(
                    format!("{e}")
                        .split_whitespace()
                        .collect::<Vec<_>>()
                        .join(" "),
                );
            }
        }));
        let empty = GpuBuf::new(device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("empty scratch"),
            size: 4,
            usage: wgpu::BufferUsages::STORAGE,
            mapped_at_creation: false,
        }));
        let matmul_kernel = if info.device_type == wgpu::DeviceType::Cpu {
            MatmulKernel::Direct
        } else {
            MatmulKernel::Tiled
        };
        Ok(GpuBackend {
            l: Launcher::new(device, queue),
            matmul_kernel,
            info,
            scratch: RefCell::new(vec![GpuTensor { buf: empty, len: 0 }; 2]),
            error,
        })
    }

    pub fn adapter_info(&self) -> &wgpu::AdapterInfo {
        &self.info
    }

    /// Drops the cached bind groups (they keep their buffers alive): call between models.
    pub fn release_cached(&self) {
        self.l.flush();
        self.l.clear_binds();
    }

    fn buffer(&self, bytes: usize, usage: wgpu::BufferUsages) -> GpuBuf {
        GpuBuf::new(self.l.device.create_buffer(&wgpu::BufferDescriptor {
            label: None,
            size: (bytes.max(4).next_multiple_of(4)) as u64,
            usage,
            mapped_at_creation: false,
        }))
    }

    fn storage(&self, bytes: usize) -> GpuBuf {
        use wgpu::BufferUsages as U;
        self.buffer(bytes, U::STORAGE | U::COPY_SRC | U::COPY_DST)
    }

    fn scratch(&self, slot: Scratch, len: usize) -> GpuBuf {
        let mut s = self.scratch.borrow_mut();
        let t = &mut s[slot as usize];
        if t.len < len {
            *t = GpuTensor {
                buf: self.storage(len * 4),
                len,
            };
        }
        t.buf.clone()
    }

    /// `out[c] = sum_r term(r, c)` over `rows`: a partials kernel then the ordered column sum.
    fn column_reduce(
        &self,
        entry: &'static str,
        bindings: &[(u32, &GpuBuf)],
        rows: usize,
        cols: usize,
    ) -> (GpuBuf, u32) {
        let chunks = rows.div_ceil(CHUNK_ROWS).max(1);
        let partial = self.scratch(Scratch::Partial, chunks * cols);
        let params = ReduceParams {
            rows: u(rows),
            cols: u(cols),
            chunk_rows: u(CHUNK_ROWS),
            chunks: u(chunks),
        };
        let mut b: Vec<(u32, &GpuBuf)> = bindings.to_vec();
        b.push((5, &partial));
        self.l.launch(
            Kernel(Family::Reduce, entry),
            &b,
            &params,
            ParamsKind::Static,
            (u(cols.div_ceil(16)), u(chunks), 1),
        );
        (partial, u(chunks))
    }

    fn column_sum_into(
        &self,
        partial: &GpuBuf,
        chunks: u32,
        out: &GpuBuf,
        rows: usize,
        cols: usize,
    ) {
        let params = ReduceParams {
            rows: u(rows),
            cols: u(cols),
            chunk_rows: u(CHUNK_ROWS),
            chunks,
        };
        self.l.launch(
            Kernel(Family::Reduce, "column_sum"),
            &[(5, partial), (6, out)],
            &params,
            ParamsKind::Static,
            Launcher::groups_1d(cols),
        );
    }

    fn record_error(&self, msg: String) {
        let mut slot = self.error.lock().unwrap_or_else(|p| p.into_inner());
        if slot.is_none() {
            *slot = Some(msg);
        }
    }
}

impl Backend for GpuBackend {
    type Tensor = GpuTensor;
    type Dataset = GpuDataset;

    fn kind(&self) -> &'static str {
        "gpu"
    }
    fn device_name(&self) -> String {
        format!("{} ({:?})", self.info.name, self.info.backend)
    }
    fn zeros(&self, len: usize) -> GpuTensor {
        let limit = self.l.device.limits().max_storage_buffer_binding_size;
        if (len * 4) as u64 > limit {
            self.record_error(format!(
                "a tensor of {:.0} MB exceeds this adapter's storage-binding limit of {:.0} MiB (use a smaller --batch)",
                (len * 4) as f64 / 1e6,
                limit as f64 / (1u64 << 20) as f64
            ));
        }
        // New buffers are zero-initialised by wgpu.
        GpuTensor {
            buf: self.storage(len * 4),
            len,
        }
    }
    fn upload(&self, data: &[f32]) -> GpuTensor {
        let t = self.zeros(data.len());
        if !data.is_empty() {
            self.l
                .queue
                .write_buffer(&t.buf.buf, 0, bytemuck::cast_slice(data));
        }
        t
    }
    fn write(&self, t: &mut GpuTensor, data: &[f32]) {
        assert_eq!(t.len, data.len(), "write: length mismatch");
        if !data.is_empty() {
            self.l.write_buffer(&t.buf, 0, bytemuck::cast_slice(data));
        }
    }
    fn read(&self, t: &GpuTensor) -> Vec<f32> {
        if t.len == 0 {
            return Vec::new();
        }
        match self.l.read_bytes(&t.buf, (t.len * 4) as u64, READ_TIMEOUT) {
            Ok(bytes) => bytemuck::pod_collect_to_vec(&bytes),
            Err(e) => {
                self.record_error(e);
                vec![f32::NAN; t.len]
            }
        }
    }
    fn len(&self, t: &GpuTensor) -> usize {
        t.len
    }
    fn fill(&self, t: &mut GpuTensor, value: f32) {
        if value == 0.0 {
            self.l
                .with_encoder(|enc| enc.clear_buffer(&t.buf.buf, 0, None));
        } else {
            self.l
                .write_buffer(&t.buf, 0, bytemuck::cast_slice(&vec![value; t.len]));
        }
    }
    fn copy(
        &self,
        src: &GpuTensor,
        src_off: usize,
        dst: &mut GpuTensor,
        dst_off: usize,
        len: usize,
    ) {
        assert!(
            src_off + len <= src.len && dst_off + len <= dst.len,
            "copy out of range"
        );
        if len > 0 {
            self.l.with_encoder(|enc| {
                enc.copy_buffer_to_buffer(
                    &src.buf.buf,
                    (src_off * 4) as u64,
                    &dst.buf.buf,
                    (dst_off * 4) as u64,
                    (len * 4) as u64,
                )
            });
        }
    }
    fn sync(&self) {
        if let Err(e) = self.l.wait_idle(READ_TIMEOUT) {
            self.record_error(e);
        }
    }
    fn health(&self) -> anyhow::Result<()> {
        match self
            .error
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
        {
            Some(e) => Err(anyhow::anyhow!("GPU error on {}: {e}", self.info.name)),
            None => Ok(()),
        }
    }

    fn upload_dataset(&self, images: &[u8], labels: &[u8], pixels: usize) -> GpuDataset {
        let pack = |bytes: &[u8]| {
            let mut v = bytes.to_vec();
            v.resize(bytes.len().next_multiple_of(4).max(4), 0);
            let buf = self.storage(v.len());
            self.l.queue.write_buffer(&buf.buf, 0, &v);
            buf
        };
        let order: Vec<u32> = (0..labels.len() as u32).collect();
        let order_buf = self.storage(order.len() * 4);
        self.l
            .queue
            .write_buffer(&order_buf.buf, 0, bytemuck::cast_slice(&order));
        GpuDataset {
            images: pack(images),
            labels: pack(labels),
            order: order_buf,
            pixels,
        }
    }
    fn set_order(&self, ds: &mut GpuDataset, order: &[u32]) {
        self.l
            .write_buffer(&ds.order, 0, bytemuck::cast_slice(order));
    }
    fn gather_batch(
        &self,
        ds: &GpuDataset,
        start: usize,
        batch: usize,
        x: &mut GpuTensor,
        y: &mut GpuTensor,
    ) {
        let params = GatherParams {
            start: u(start),
            batch: u(batch),
            pixels: u(ds.pixels),
            pad: 0,
            mean: PIXEL_MEAN,
            std: PIXEL_STD,
            pad1: [0.0; 2],
        };
        self.l.launch(
            Kernel(Family::Data, "gather"),
            &[
                (1, &ds.images),
                (2, &ds.labels),
                (3, &ds.order),
                (4, &x.buf),
                (5, &y.buf),
            ],
            &params,
            ParamsKind::Dynamic,
            Launcher::groups_1d(batch * ds.pixels),
        );
    }

    fn matmul(
        &self,
        a: &GpuTensor,
        ta: Trans,
        b: &GpuTensor,
        tb: Trans,
        c: &mut GpuTensor,
        m: usize,
        k: usize,
        n: usize,
        accumulate: bool,
    ) {
        assert!(
            a.len >= m * k && b.len >= k * n && c.len >= m * n,
            "matmul shape"
        );
        if m == 0 || n == 0 {
            return;
        }
        let (a_row, a_k) = match ta {
            Trans::N => (k, 1),
            Trans::T => (1, m),
        };
        let (b_k, b_col) = match tb {
            Trans::N => (n, 1),
            Trans::T => (1, k),
        };
        let params = MatmulParams {
            m: u(m),
            k: u(k),
            n: u(n),
            accumulate: accumulate as u32,
            a_row: u(a_row),
            a_k: u(a_k),
            b_k: u(b_k),
            b_col: u(b_col),
        };
        let (entry, groups) = match self.matmul_kernel {
            MatmulKernel::Tiled => ("matmul_tiled", (n.div_ceil(64), m.div_ceil(64))),
            MatmulKernel::Direct => ("matmul_direct", (n.div_ceil(32), m.div_ceil(32))),
        };
        self.l.launch(
            Kernel(Family::Matmul, entry),
            &[(1, &a.buf), (2, &b.buf), (3, &c.buf)],
            &params,
            ParamsKind::Static,
            (u(groups.0), u(groups.1), 1),
        );
    }

    fn bias_act(
        &self,
        x: &mut GpuTensor,
        bias: Option<&GpuTensor>,
        rows: usize,
        cols: usize,
        relu: bool,
    ) {
        let params = EwParams {
            rows: u(rows),
            cols: u(cols),
            relu: relu as u32,
            len: u(rows * cols),
        };
        let groups = Launcher::groups_1d(rows * cols);
        match bias {
            Some(b) => self.l.launch(
                Kernel(Family::Elementwise, "bias_act"),
                &[(1, &x.buf), (2, &b.buf)],
                &params,
                ParamsKind::Static,
                groups,
            ),
            None if relu => self.l.launch(
                Kernel(Family::Elementwise, "relu"),
                &[(1, &x.buf)],
                &params,
                ParamsKind::Static,
                groups,
            ),
            None => {}
        }
    }
    fn relu_backward(&self, y: &GpuTensor, dy: &mut GpuTensor) {
        let len = y.len.min(dy.len);
        let params = EwParams {
            rows: u(len),
            cols: 1,
            relu: 1,
            len: u(len),
        };
        self.l.launch(
            Kernel(Family::Elementwise, "relu_backward"),
            &[(1, &dy.buf), (2, &y.buf)],
            &params,
            ParamsKind::Static,
            Launcher::groups_1d(len),
        );
    }
    fn bias_grad(&self, dy: &GpuTensor, db: &mut GpuTensor, rows: usize, cols: usize) {
        let (partial, chunks) = self.column_reduce("sum_partials", &[(1, &dy.buf)], rows, cols);
        self.column_sum_into(&partial, chunks, &db.buf, rows, cols);
    }
    fn im2col(&self, x: &GpuTensor, col: &mut GpuTensor, g: &ConvGeom) {
        let total = g.col_rows() * g.col_cols();
        self.l.launch(
            Kernel(Family::Im2col, "im2col"),
            &[(1, &x.buf), (2, &col.buf)],
            &conv_params(g, total),
            ParamsKind::Static,
            Launcher::groups_1d(total),
        );
    }
    fn col2im(&self, col: &GpuTensor, dx: &mut GpuTensor, g: &ConvGeom) {
        let total = g.n * g.h * g.w * g.c;
        self.l.launch(
            Kernel(Family::Im2col, "col2im"),
            &[(1, &col.buf), (2, &dx.buf)],
            &conv_params(g, total),
            ParamsKind::Static,
            Launcher::groups_1d(total),
        );
    }

    fn bn_forward_train(
        &self,
        x: &GpuTensor,
        y: &mut GpuTensor,
        gamma: &GpuTensor,
        beta: &GpuTensor,
        mean: &mut GpuTensor,
        invstd: &mut GpuTensor,
        running_mean: &mut GpuTensor,
        running_var: &mut GpuTensor,
        rows: usize,
        cols: usize,
        momentum: f32,
        eps: f32,
    ) {
        let unbias = if rows > 1 {
            rows as f32 / (rows - 1) as f32
        } else {
            1.0
        };
        let bn = |chunks: u32| BnParams {
            rows: u(rows),
            cols: u(cols),
            chunks,
            pad: 0,
            momentum,
            eps,
            unbias,
            pad1: 0.0,
        };
        let cols_groups = Launcher::groups_1d(cols);
        let (partial, chunks) = self.column_reduce("sum_partials", &[(1, &x.buf)], rows, cols);
        self.l.launch(
            Kernel(Family::BatchNorm, "bn_mean"),
            &[(2, &partial), (3, &mean.buf), (4, &running_mean.buf)],
            &bn(chunks),
            ParamsKind::Static,
            cols_groups,
        );
        let (partial, chunks) =
            self.column_reduce("sqdev_partials", &[(1, &x.buf), (3, &mean.buf)], rows, cols);
        self.l.launch(
            Kernel(Family::BatchNorm, "bn_var"),
            &[(2, &partial), (3, &invstd.buf), (4, &running_var.buf)],
            &bn(chunks),
            ParamsKind::Static,
            cols_groups,
        );
        self.l.launch(
            Kernel(Family::BatchNorm, "bn_normalise"),
            &[
                (1, &x.buf),
                (5, &y.buf),
                (6, &gamma.buf),
                (7, &beta.buf),
                (8, &mean.buf),
                (9, &invstd.buf),
            ],
            &bn(chunks),
            ParamsKind::Static,
            Launcher::groups_1d(rows * cols),
        );
    }
    fn bn_forward_eval(
        &self,
        x: &GpuTensor,
        y: &mut GpuTensor,
        gamma: &GpuTensor,
        beta: &GpuTensor,
        running_mean: &GpuTensor,
        running_var: &GpuTensor,
        rows: usize,
        cols: usize,
        eps: f32,
    ) {
        let params = BnParams {
            rows: u(rows),
            cols: u(cols),
            chunks: 0,
            pad: 0,
            momentum: 0.0,
            eps,
            unbias: 1.0,
            pad1: 0.0,
        };
        self.l.launch(
            Kernel(Family::BatchNorm, "bn_eval"),
            &[
                (1, &x.buf),
                (5, &y.buf),
                (6, &gamma.buf),
                (7, &beta.buf),
                (8, &running_mean.buf),
                (9, &running_var.buf),
            ],
            &params,
            ParamsKind::Static,
            Launcher::groups_1d(rows * cols),
        );
    }
    fn bn_backward(
        &self,
        x: &GpuTensor,
        dy: &GpuTensor,
        gamma: &GpuTensor,
        mean: &GpuTensor,
        invstd: &GpuTensor,
        dx: &mut GpuTensor,
        dgamma: &mut GpuTensor,
        dbeta: &mut GpuTensor,
        rows: usize,
        cols: usize,
    ) {
        let (partial, chunks) = self.column_reduce("sum_partials", &[(1, &dy.buf)], rows, cols);
        self.column_sum_into(&partial, chunks, &dbeta.buf, rows, cols);
        let (partial, chunks) = self.column_reduce(
            "xhat_dot_partials",
            &[(1, &x.buf), (2, &dy.buf), (3, &mean.buf), (4, &invstd.buf)],
            rows,
            cols,
        );
        self.column_sum_into(&partial, chunks, &dgamma.buf, rows, cols);
        let params = BnParams {
            rows: u(rows),
            cols: u(cols),
            chunks,
            pad: 0,
            momentum: 0.0,
            eps: 0.0,
            unbias: 1.0,
            pad1: 0.0,
        };
        self.l.launch(
            Kernel(Family::BatchNorm, "bn_backward_dx"),
            &[
                (1, &x.buf),
                (5, &dx.buf),
                (6, &gamma.buf),
                (7, &dbeta.buf),
                (8, &mean.buf),
                (9, &invstd.buf),
                (10, &dy.buf),
                (11, &dgamma.buf),
            ],
            &params,
            ParamsKind::Static,
            Launcher::groups_1d(rows * cols),
        );
    }

    fn softmax_ce(
        &self,
        logits: &GpuTensor,
        labels: &GpuTensor,
        dlogits: &mut GpuTensor,
        loss: &mut GpuTensor,
        rows: usize,
        cols: usize,
        accumulate: bool,
    ) {
        let per_row = self.scratch(Scratch::Rows, rows * 2);
        let params = CeParams {
            rows: u(rows),
            cols: u(cols),
            accumulate: accumulate as u32,
            pad: 0,
        };
        self.l.launch(
            Kernel(Family::SoftmaxCe, "softmax_ce_rows"),
            &[
                (1, &logits.buf),
                (2, &labels.buf),
                (3, &dlogits.buf),
                (4, &per_row),
            ],
            &params,
            ParamsKind::Static,
            Launcher::groups_1d(rows),
        );
        self.l.launch(
            Kernel(Family::SoftmaxCe, "loss_finish"),
            &[(4, &per_row), (5, &loss.buf)],
            &params,
            ParamsKind::Static,
            (1, 1, 1),
        );
    }
    fn eval_batch(
        &self,
        logits: &GpuTensor,
        labels: &GpuTensor,
        out: &mut GpuTensor,
        rows: usize,
        cols: usize,
    ) {
        let per_row = self.scratch(Scratch::Rows, rows * 2);
        let params = CeParams {
            rows: u(rows),
            cols: u(cols),
            accumulate: 1,
            pad: 0,
        };
        self.l.launch(
            Kernel(Family::SoftmaxCe, "eval_rows"),
            &[(1, &logits.buf), (2, &labels.buf), (4, &per_row)],
            &params,
            ParamsKind::Static,
            Launcher::groups_1d(rows),
        );
        self.l.launch(
            Kernel(Family::SoftmaxCe, "eval_finish"),
            &[(4, &per_row), (5, &out.buf)],
            &params,
            ParamsKind::Static,
            (1, 1, 1),
        );
    }

    fn optim_step(
        &self,
        step: &OptimStep,
        w: &mut GpuTensor,
        g: &GpuTensor,
        state: &mut [GpuTensor],
    ) {
        let len = u(w.len);
        let mut p = OptimParams {
            len,
            pad: [0; 3],
            lr: 0.0,
            beta1: 0.0,
            beta2: 0.0,
            eps: 0.0,
            c1: 1.0,
            c2: 1.0,
            pad1: [0.0; 2],
        };
        let groups = Launcher::groups_1d(w.len);
        match *step {
            OptimStep::Sgd { lr } => {
                p.lr = lr;
                self.l.launch(
                    Kernel(Family::Optim, "sgd"),
                    &[(1, &w.buf), (2, &g.buf)],
                    &p,
                    ParamsKind::Static,
                    groups,
                );
            }
            OptimStep::RmsProp { lr, rho, eps } => {
                (p.lr, p.beta1, p.eps) = (lr, rho, eps);
                self.l.launch(
                    Kernel(Family::Optim, "rmsprop"),
                    &[(1, &w.buf), (2, &g.buf), (3, &state[0].buf)],
                    &p,
                    ParamsKind::Static,
                    groups,
                );
            }
            OptimStep::Adam {
                lr,
                beta1,
                beta2,
                eps,
                t,
            } => {
                let (c1, c2) = adam_corrections(beta1, beta2, t);
                (p.lr, p.beta1, p.beta2, p.eps, p.c1, p.c2) = (lr, beta1, beta2, eps, c1, c2);
                self.l.launch(
                    Kernel(Family::Optim, "adam"),
                    &[
                        (1, &w.buf),
                        (2, &g.buf),
                        (3, &state[0].buf),
                        (4, &state[1].buf),
                    ],
                    &p,
                    ParamsKind::Dynamic,
                    groups,
                );
            }
        }
    }
}

fn conv_params(g: &ConvGeom, total: usize) -> ConvParams {
    ConvParams {
        n: u(g.n),
        c: u(g.c),
        h: u(g.h),
        w: u(g.w),
        k: u(g.k),
        stride: u(g.stride),
        pad: u(g.pad),
        oh: u(g.out_h()),
        ow: u(g.out_w()),
        total: u(total),
        pad1: [0; 2],
    }
}
