//! The wgpu backend: every [`Backend`] op as a WGSL compute kernel (shaders/), recorded into one
//! pending command encoder and submitted when the host needs a number (or a few hundred dispatches
//! are pending).

/// `params_layout_test!(Family::Matmul, Params, [m, k, n, ...])`: the unit test that holds a family's
/// Rust params struct (every field, in order) to its WGSL `struct Params` (see layout.rs). Defined
/// before the family modules so that each of them can call it.
macro_rules! params_layout_test {
    ($family:expr, $ty:ident, [$($f:ident),* $(,)?]) => {
        #[cfg(test)]
        mod params_layout {
            use super::*;

            #[test]
            fn params_match_the_wgsl_struct() {
                use $crate::backend::gpu::layout::{assert_matches_wgsl, field};
                assert_matches_wgsl::<$ty>($family, &[$(field!($ty, $f)),*]);
            }
        }
    };
}

mod adapter;
mod batchnorm;
mod data;
mod dropout;
mod elementwise;
mod im2col;
mod launch;
#[cfg(test)]
mod layout;
mod matmul;
mod optim;
mod pool;
mod reduce;
mod softmax_ce;

pub use adapter::{choose_adapter, instance, list_adapters, AdapterSummary};
use launch::{GpuBuf, Launcher};
pub use launch::{PipelineInfo, SLOTS_PER_BLOCK as DYNAMIC_SLOTS_PER_BLOCK};

use super::KernelChoice;
use super::{
    Act, Backend, BnBackward, BnEval, BnSpec, BnTrain, ConvGeom, Gemm, Mat, OptimStep, PoolGeom,
    PoolKind,
};
use std::cell::RefCell;
use std::time::Duration;

/// How long a read waits for the GPU before calling it hung.
const READ_TIMEOUT: Duration = Duration::from_secs(600);

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
    /// [`crate::backend::PixelNorm::table`] and its channel count.
    table: GpuBuf,
    channels: usize,
}

/// How the kernels of an adapter are laid out (the matmul picks its entry points by it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KernelStyle {
    /// Workgroup memory and barriers (`matmul_tiled`): for real GPUs.
    Tiled,
    /// No workgroup memory or barriers (`matmul_direct` and the vec4 matmuls): for CPU-emulated
    /// adapters such as lavapipe, where a barrier is costly and memory is the CPU's cache anyway.
    Direct,
}

impl KernelStyle {
    /// The kernel set `--kernels choice` runs on an adapter of type `device`: `auto` takes the tiled
    /// kernels on real GPUs and the emulated ones on CPU-emulated adapters; `tiled` and `emulated` are
    /// taken as asked, on any adapter.
    pub fn pick(choice: KernelChoice, device: wgpu::DeviceType) -> Self {
        match choice {
            KernelChoice::Tiled => KernelStyle::Tiled,
            KernelChoice::Emulated => KernelStyle::Direct,
            KernelChoice::Auto if device == wgpu::DeviceType::Cpu => KernelStyle::Direct,
            KernelChoice::Auto => KernelStyle::Tiled,
        }
    }

    /// The set's name, as `--kernels` spells it: "tiled" or "emulated".
    pub fn name(self) -> &'static str {
        match self {
            KernelStyle::Tiled => "tiled",
            KernelStyle::Direct => "emulated",
        }
    }
}

/// The wgpu backend on one adapter.
pub struct GpuBackend {
    l: Launcher,
    /// Chosen by `--kernels` and the adapter's type ([`KernelStyle::pick`]); settable for tests and
    /// benches.
    pub style: KernelStyle,
    info: wgpu::AdapterInfo,
    /// Scratch for reductions and per-row values, grown on demand; one per use so no two live ops share.
    scratch: RefCell<Vec<GpuTensor>>,
    /// The first uncaptured wgpu error (validation, out of memory, device lost), reported by `health`.
    error: std::sync::Arc<std::sync::Mutex<Option<String>>>,
    /// The device has subgroup operations and its subgroups are exactly 8 lanes (lavapipe on AVX2): the
    /// CPU-emulated matmuls then share loads across a subgroup (matmul_sg.wgsl). Can be switched off
    /// (tests, benches) to run the plain vec4 kernels; never on where the device lacks it.
    pub subgroup_kernels: bool,
    /// How column sums (batch norm, the bias gradient) are spread over dispatches; every choice gives
    /// the same bits. Settable for tests, which compare them.
    pub column_sums: ColumnSums,
    /// Bytes one binding may span: the adapter's `max_storage_buffer_binding_size`, or less for tests
    /// ([`GpuBackend::with_binding_limit`]), which makes layers chunk their batch at small shapes.
    binding_limit: u64,
    /// The device grants 9 storage buffers a stage ([`GpuBackend::fuses_bn_backward`]); read once,
    /// since on the web the limits live in JavaScript.
    bn_backward_fuses: bool,
}

/// Drives a device request to completion on this thread: natively only. A page must await
/// [`GpuBackend::request`] instead (the browser answers on its event loop, which blocking would stop).
fn block_on_native<T>(
    f: impl std::future::Future<Output = anyhow::Result<T>>,
) -> anyhow::Result<T> {
    if cfg!(target_arch = "wasm32") {
        anyhow::bail!("on the web the GPU is opened with GpuBackend::request, awaited");
    }
    pollster::block_on(f)
}

/// A dimension as the kernels take it.
pub(super) fn u(v: usize) -> u32 {
    u32::try_from(v).expect("tensor dimension exceeds u32")
}

pub use reduce::ColumnSums;

/// Scratch slots: each op family uses its own so results that live across ops never alias.
#[derive(Clone, Copy)]
pub(super) enum Scratch {
    Partial = 0,
    Rows = 1,
    SplitK = 2,
    BnCoef = 3,
}

impl GpuBackend {
    /// Opens the adapter `choose_adapter` picks, with the kernels `--kernels auto` gives it.
    /// `allow_software`: accept a CPU-emulated adapter (lavapipe) when no real GPU exists.
    pub fn new(name_filter: Option<&str>, allow_software: bool) -> anyhow::Result<Self> {
        Self::open(name_filter, allow_software, KernelChoice::Auto)
    }

    /// [`GpuBackend::new`] with the kernel set `kernels`.
    pub fn open(
        name_filter: Option<&str>,
        allow_software: bool,
        kernels: KernelChoice,
    ) -> anyhow::Result<Self> {
        let instance = adapter::instance();
        let adapter = choose_adapter(&instance, name_filter, allow_software)?;
        Self::on_adapter(&adapter, kernels)
    }

    /// The backend on `adapter` (any wgpu adapter: the translation test uses wgpu's noop backend),
    /// with every limit the adapter has.
    pub fn on_adapter(adapter: &wgpu::Adapter, kernels: KernelChoice) -> anyhow::Result<Self> {
        block_on_native(Self::on_adapter_async(adapter, kernels, adapter.limits()))
    }

    /// The backend on `adapter` within WebGPU's default limits (128 MiB per storage binding, 8
    /// storage buffers per stage, 16 KiB of workgroup memory), which every browser grants: what a web
    /// page opens, and what natively shows the kernels fit in them (tests/gpu_models.rs).
    pub fn on_adapter_web_limits(
        adapter: &wgpu::Adapter,
        kernels: KernelChoice,
    ) -> anyhow::Result<Self> {
        block_on_native(Self::on_adapter_async(
            adapter,
            kernels,
            wgpu::Limits::default(),
        ))
    }

    /// The browser's WebGPU adapter (or natively the best one wgpu finds), opened within WebGPU's
    /// default limits: the web page's backend. Errors are one line (no WebGPU, no adapter).
    pub async fn request(kernels: KernelChoice) -> anyhow::Result<Self> {
        let instance = adapter::instance();
        let adapter = instance
            .request_adapter(&wgpu::RequestAdapterOptions {
                power_preference: wgpu::PowerPreference::HighPerformance,
                ..Default::default()
            })
            .await
            // wgpu's reason lists every backend it was not asked for; the one that matters is this.
            .map_err(|_| {
                anyhow::anyhow!(
                    "no WebGPU adapter: the browser offers none (WebGPU missing or disabled, or no usable GPU)"
                )
            })?;
        Self::on_adapter_async(&adapter, kernels, wgpu::Limits::default()).await
    }

    /// Opens the device (awaited: the browser answers asynchronously) with `limits`, which must be
    /// within the adapter's.
    pub async fn on_adapter_async(
        adapter: &wgpu::Adapter,
        kernels: KernelChoice,
        limits: wgpu::Limits,
    ) -> anyhow::Result<Self> {
        let info = adapter.get_info();
        let (device, queue) = adapter
            .request_device(&wgpu::DeviceDescriptor {
                label: Some("wgtrain"),
                // Where the adapter has them: subgroups (the matmul kernels for lavapipe use them) and
                // timestamps between passes (`wgtrain profile`).
                required_features: adapter.features()
                    & (wgpu::Features::SUBGROUP
                        | wgpu::Features::TIMESTAMP_QUERY
                        | wgpu::Features::TIMESTAMP_QUERY_INSIDE_ENCODERS),
                required_limits: limits,
                ..Default::default()
            })
            .await
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
        let l = Launcher::new(device, queue);
        let empty = GpuBuf::new(l.create_buffer(&wgpu::BufferDescriptor {
            label: Some("empty scratch"),
            size: 4,
            usage: wgpu::BufferUsages::STORAGE,
            mapped_at_creation: false,
        }));
        let style = KernelStyle::pick(kernels, info.device_type);
        let binding_limit = l.device.limits().max_storage_buffer_binding_size;
        let bn_backward_fuses = l.device.limits().max_storage_buffers_per_shader_stage >= 9;
        let subgroup_kernels = l.device.features().contains(wgpu::Features::SUBGROUP)
            && (info.subgroup_min_size, info.subgroup_max_size) == (8, 8);
        Ok(GpuBackend {
            l,
            binding_limit,
            bn_backward_fuses,
            subgroup_kernels,
            column_sums: ColumnSums::default(),
            style,
            info,
            scratch: RefCell::new(vec![GpuTensor { buf: empty, len: 0 }; 4]),
            error,
        })
    }

    /// Pretends one binding may span at most `bytes` (less than the adapter allows): the chunked paths
    /// that large batches take can then be tested at small shapes.
    pub fn with_binding_limit(mut self, bytes: u64) -> Self {
        self.binding_limit = bytes.min(self.binding_limit);
        self
    }

    pub fn adapter_info(&self) -> &wgpu::AdapterInfo {
        &self.info
    }

    /// Whether a batch norm's backward over few rows is one dispatch (`bn_backward_fused`), which
    /// binds 9 storage buffers: natively where the adapter grants that many a stage; not within
    /// WebGPU's default limits (8).
    pub fn fuses_bn_backward(&self) -> bool {
        self.bn_backward_fuses
    }

    /// How many bind groups are cached: each keeps its buffers (a model's tensors, a data set) alive
    /// until [`Backend::release_cached`].
    pub fn cached_bind_groups(&self) -> usize {
        self.l.cached_binds()
    }

    /// Every compute pipeline this backend has made (each family, entry point and override set the
    /// ops' plans asked for), sorted: what `tests/translate.rs` takes to MSL, HLSL and SPIR-V.
    pub fn pipelines_made(&self) -> Vec<PipelineInfo> {
        self.l.pipelines_made()
    }

    /// Bytes of device buffers this backend holds now (tensors, data sets, cached uniforms, staging):
    /// the GPU side of the memory figures.
    pub fn allocated_bytes(&self) -> u64 {
        self.l.live_bytes()
    }

    fn buffer(&self, bytes: usize, usage: wgpu::BufferUsages) -> GpuBuf {
        GpuBuf::new(self.l.create_buffer(&wgpu::BufferDescriptor {
            label: None,
            // A multiple of 16 bytes, so any buffer can also be bound as an array of vec4.
            size: (bytes.max(16).next_multiple_of(16)) as u64,
            usage,
            mapped_at_creation: false,
        }))
    }

    fn storage(&self, bytes: usize) -> GpuBuf {
        use wgpu::BufferUsages as U;
        self.buffer(bytes, U::STORAGE | U::COPY_SRC | U::COPY_DST)
    }

    pub(super) fn scratch(&self, slot: Scratch, len: usize) -> GpuBuf {
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
    fn kernels(&self) -> Option<&'static str> {
        Some(self.style.name())
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
                .write_buffer(&t.buf.buf, t.buf.offset, bytemuck::cast_slice(data));
        }
        t
    }
    fn write(&self, t: &mut GpuTensor, data: &[f32]) {
        assert_eq!(t.len, data.len(), "write: length mismatch");
        if !data.is_empty() {
            self.l.write_buffer(&t.buf, 0, bytemuck::cast_slice(data));
        }
    }
    async fn read_async(&self, t: &GpuTensor) -> Vec<f32> {
        if t.len == 0 {
            return Vec::new();
        }
        match self
            .l
            .read_bytes(&t.buf, (t.len * 4) as u64, READ_TIMEOUT)
            .await
        {
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
                .with_encoder(|enc| enc.clear_buffer(&t.buf.buf, t.buf.offset, Some(t.buf.size)));
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
                    src.buf.offset + (src_off * 4) as u64,
                    &dst.buf.buf,
                    dst.buf.offset + (dst_off * 4) as u64,
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
    fn arena(&self, lens: &[usize]) -> Option<(GpuTensor, Vec<GpuTensor>)> {
        // Each view starts on the adapter's storage offset alignment (256 bytes at most), which also
        // leaves room to round its binding up to 16 bytes.
        let align =
            (self.l.device.limits().min_storage_buffer_offset_alignment as usize).max(16) / 4;
        let mut offsets = Vec::with_capacity(lens.len());
        let mut total = 0;
        for &len in lens {
            offsets.push(total);
            total += len.max(1).next_multiple_of(align);
        }
        let whole = self.zeros(total);
        let views = lens
            .iter()
            .zip(offsets)
            .map(|(&len, at)| GpuTensor {
                buf: whole.buf.view(
                    (at * 4) as u64,
                    (len.max(1) * 4).next_multiple_of(16) as u64,
                ),
                len,
            })
            .collect();
        Some((whole, views))
    }
    fn max_binding_len(&self) -> Option<usize> {
        Some((self.binding_limit / 4) as usize)
    }
    fn view(&self, t: &GpuTensor, offset: usize, len: usize) -> GpuTensor {
        let at = (offset * 4) as u64;
        assert!(
            offset.is_multiple_of(super::VIEW_ALIGN) && offset + len <= t.len,
            "view {offset}+{len} of a tensor of {}",
            t.len
        );
        // Rounded up to 16 bytes like every binding; the tensor's own range is, so this stays inside it.
        let size = ((len.max(1) * 4) as u64)
            .next_multiple_of(16)
            .min(t.buf.size - at);
        GpuTensor {
            buf: t.buf.view(t.buf.offset + at, size),
            len,
        }
    }
    fn timer_start(&self) -> bool {
        self.l.timer_start()
    }
    fn timer_mark(&self, submit: bool) -> Option<usize> {
        self.l.timer_mark(submit)
    }
    fn timer_finish(&self) -> anyhow::Result<Vec<f64>> {
        self.l
            .timer_finish(READ_TIMEOUT)
            .map_err(|e| anyhow::anyhow!("GPU timestamps: {e}"))
    }
    fn dispatch_count(&self) -> Option<u64> {
        Some(self.l.dispatches())
    }
    /// Drops the cached bind groups (they keep their buffers alive).
    fn release_cached(&self) {
        self.l.flush();
        self.l.clear_binds();
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

    fn upload_dataset(
        &self,
        images: &[u8],
        labels: &[u8],
        pixels: usize,
        norm: &crate::backend::PixelNorm,
    ) -> GpuDataset {
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
            table: pack(bytemuck::cast_slice(&norm.table())),
            channels: norm.channels(),
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
        data::gather(self, ds, start, batch, x, y);
    }

    fn matmul(&self, g: &Gemm, a: &GpuTensor, b: &GpuTensor, c: &mut GpuTensor) {
        let none = matmul::Epilogue {
            bias: None,
            act: None,
        };
        matmul::matmul(self, g, a, b, c, none);
    }
    fn matmul_bias_act(
        &self,
        g: &Gemm,
        a: &GpuTensor,
        b: &GpuTensor,
        c: &mut GpuTensor,
        bias: Option<&GpuTensor>,
        act: Option<Act>,
    ) {
        matmul::matmul(self, g, a, b, c, matmul::Epilogue { bias, act });
    }
    fn bias_act(&self, x: &mut GpuTensor, bias: Option<&GpuTensor>, shape: Mat, act: Option<Act>) {
        elementwise::bias_act(self, x, bias, shape, act);
    }
    fn activation(&self, act: Act, x: &GpuTensor, y: &mut GpuTensor, len: usize) {
        elementwise::activation(self, act, x, y, len);
    }
    fn activation_backward(&self, act: Act, y: &GpuTensor, dy: &mut GpuTensor, len: usize) {
        elementwise::activation_backward(self, act, y, dy, len);
    }
    fn pool(
        &self,
        kind: PoolKind,
        g: &PoolGeom,
        x: &GpuTensor,
        y: &mut GpuTensor,
        arg: &mut GpuTensor,
    ) {
        pool::forward(self, kind, g, x, y, arg);
    }
    fn pool_backward(
        &self,
        kind: PoolKind,
        g: &PoolGeom,
        dy: &GpuTensor,
        arg: &GpuTensor,
        dx: &mut GpuTensor,
    ) {
        pool::backward(self, kind, g, dy, arg, dx);
    }
    fn dropout(
        &self,
        d: &super::dropout::DropoutStep,
        x: &GpuTensor,
        y: &mut GpuTensor,
        mask: &mut GpuTensor,
        len: usize,
    ) {
        dropout::forward(self, d, x, y, mask, len);
    }
    fn dropout_backward(&self, mask: &GpuTensor, dy: &mut GpuTensor, len: usize) {
        dropout::backward(self, mask, dy, len);
    }
    fn bias_grad(&self, dy: &GpuTensor, db: &mut GpuTensor, shape: Mat) {
        reduce::bias_grad(self, dy, db, shape);
    }
    fn im2col(&self, x: &GpuTensor, col: &mut GpuTensor, g: &ConvGeom) {
        im2col::im2col(self, x, col, g);
    }
    fn col2im(&self, col: &GpuTensor, dx: &mut GpuTensor, g: &ConvGeom) {
        im2col::col2im(self, col, dx, g);
    }

    fn bn_forward_train(
        &self,
        bn: &BnSpec,
        x: &GpuTensor,
        y: &mut GpuTensor,
        t: BnTrain<'_, GpuTensor>,
    ) {
        batchnorm::forward_train(self, bn, x, y, t);
    }
    fn bn_forward_eval(
        &self,
        bn: &BnSpec,
        x: &GpuTensor,
        y: &mut GpuTensor,
        t: BnEval<'_, GpuTensor>,
    ) {
        batchnorm::forward_eval(self, bn, x, y, t);
    }
    fn bn_backward(
        &self,
        bn: &BnSpec,
        x: &GpuTensor,
        dy: &GpuTensor,
        dx: &mut GpuTensor,
        t: BnBackward<'_, GpuTensor>,
    ) {
        batchnorm::backward(self, bn, x, dy, dx, t);
    }

    fn softmax_ce(
        &self,
        logits: &GpuTensor,
        labels: &GpuTensor,
        dlogits: &mut GpuTensor,
        loss: &mut GpuTensor,
        shape: Mat,
        accumulate: bool,
    ) {
        softmax_ce::softmax_ce(self, logits, labels, dlogits, loss, shape, accumulate);
    }
    fn eval_batch(&self, logits: &GpuTensor, labels: &GpuTensor, out: &mut GpuTensor, shape: Mat) {
        softmax_ce::eval_batch(self, logits, labels, out, shape);
    }

    fn clip_scale(&self, grads: &[&GpuTensor], max_norm: f32, scale: &mut GpuTensor) {
        optim::clip_scale(self, grads, max_norm, scale);
    }
    fn optim_step(
        &self,
        step: &OptimStep,
        w: &mut GpuTensor,
        g: &GpuTensor,
        state: &mut [GpuTensor],
        scale: &GpuTensor,
    ) {
        optim::step(self, step, w, g, state, scale);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use wgpu::DeviceType as D;

    /// `--kernels`: auto follows the adapter type; tiled and emulated are taken as asked, anywhere.
    #[test]
    fn kernel_choice_plan() {
        let all = [
            D::DiscreteGpu,
            D::IntegratedGpu,
            D::VirtualGpu,
            D::Other,
            D::Cpu,
        ];
        for d in all {
            let auto = if d == D::Cpu {
                KernelStyle::Direct
            } else {
                KernelStyle::Tiled
            };
            assert_eq!(KernelStyle::pick(KernelChoice::Auto, d), auto, "{d:?}");
            assert_eq!(
                KernelStyle::pick(KernelChoice::Tiled, d),
                KernelStyle::Tiled
            );
            assert_eq!(
                KernelStyle::pick(KernelChoice::Emulated, d),
                KernelStyle::Direct
            );
        }
        assert_eq!(KernelStyle::Tiled.name(), KernelChoice::Tiled.name());
        assert_eq!(KernelStyle::Direct.name(), KernelChoice::Emulated.name());
    }
}
