//! Recording kernels: shader modules and pipelines made once, bind groups made once per (kernel,
//! buffers, shape) and reused every step, and one pending command encoder that is submitted when the
//! host needs a result or must overwrite something the queued work still reads, or when it holds
//! [`MAX_PENDING_DISPATCHES`].

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use rustc_hash::FxHashMap;
use smallvec::SmallVec;

/// Invocations per workgroup of the 1-d kernels (`WG` in shaders/common.wgsl).
pub const WG: u32 = 256;
/// Workgroups per dispatch dimension (WebGPU's minimum guaranteed limit).
const MAX_GROUPS: u32 = 65_535;

/// A range of a device buffer (the whole buffer, or a view into an arena) with the buffer's
/// process-unique id (with the offset, the bind-group cache's key).
#[derive(Clone, Debug)]
pub struct GpuBuf {
    pub buf: Arc<DeviceBuffer>,
    pub id: u64,
    /// Bytes from the start of the buffer; a multiple of the adapter's storage offset alignment.
    pub offset: u64,
    /// Bytes bound; a multiple of 16, so the range can also be bound as an array of vec4.
    pub size: u64,
}

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// A device buffer counted in its launcher's live bytes until dropped (the memory figures:
/// [`Launcher::live_bytes`]). Derefs to the `wgpu::Buffer`.
#[derive(Debug)]
pub struct DeviceBuffer {
    inner: wgpu::Buffer,
    live: Arc<AtomicU64>,
}

impl std::ops::Deref for DeviceBuffer {
    type Target = wgpu::Buffer;
    fn deref(&self) -> &wgpu::Buffer {
        &self.inner
    }
}

impl Drop for DeviceBuffer {
    fn drop(&mut self) {
        self.live.fetch_sub(self.inner.size(), Ordering::Relaxed);
    }
}

impl GpuBuf {
    // On the web wgpu's buffers are neither Send nor Sync (JavaScript objects); one thread uses them.
    #[cfg_attr(target_arch = "wasm32", allow(clippy::arc_with_non_send_sync))]
    pub fn new(buf: DeviceBuffer) -> Self {
        let size = buf.size();
        GpuBuf {
            buf: Arc::new(buf),
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            offset: 0,
            size,
        }
    }
    /// `size` bytes of the same buffer from `offset` (relative to the whole buffer).
    pub fn view(&self, offset: u64, size: u64) -> Self {
        assert!(offset + size <= self.buf.size(), "view out of range");
        GpuBuf {
            offset,
            size,
            ..self.clone()
        }
    }
    fn binding(&self) -> wgpu::BindingResource<'_> {
        wgpu::BindingResource::Buffer(wgpu::BufferBinding {
            buffer: &self.buf,
            offset: self.offset,
            size: std::num::NonZeroU64::new(self.size),
        })
    }
}

/// A kernel family: one WGSL file in shaders/, launched from the Rust file of the same name here.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Family {
    Matmul,
    /// matmul.wgsl with the subgroup kernels of matmul_sg.wgsl appended (devices with SUBGROUP only).
    MatmulSg,
    Elementwise,
    Reduce,
    BatchNorm,
    Im2col,
    SoftmaxCe,
    Optim,
    Data,
    Pool,
    Dropout,
}

impl Family {
    /// Every family, for the checks that go over all of them.
    #[cfg(test)]
    pub const ALL: [Family; 11] = [
        Family::Matmul,
        Family::MatmulSg,
        Family::Elementwise,
        Family::Reduce,
        Family::BatchNorm,
        Family::Im2col,
        Family::SoftmaxCe,
        Family::Optim,
        Family::Data,
        Family::Pool,
        Family::Dropout,
    ];

    /// The family's full WGSL: shaders/common.wgsl followed by its own file.
    pub fn wgsl(self) -> String {
        let extra = match self {
            Family::MatmulSg => include_str!("../../../shaders/matmul_sg.wgsl"),
            Family::Reduce | Family::BatchNorm => {
                include_str!("../../../shaders/column_lanes.wgsl")
            }
            _ => "",
        };
        format!(
            "{}\n{}\n{extra}",
            include_str!("../../../shaders/common.wgsl"),
            self.source()
        )
    }

    fn source(self) -> &'static str {
        match self {
            Family::Matmul | Family::MatmulSg => include_str!("../../../shaders/matmul.wgsl"),
            Family::Elementwise => include_str!("../../../shaders/elementwise.wgsl"),
            Family::Reduce => include_str!("../../../shaders/reduce.wgsl"),
            Family::BatchNorm => include_str!("../../../shaders/batchnorm.wgsl"),
            Family::Im2col => include_str!("../../../shaders/im2col.wgsl"),
            Family::SoftmaxCe => include_str!("../../../shaders/softmax_ce.wgsl"),
            Family::Optim => include_str!("../../../shaders/optim.wgsl"),
            Family::Data => include_str!("../../../shaders/data.wgsl"),
            Family::Pool => include_str!("../../../shaders/pool.wgsl"),
            Family::Dropout => include_str!("../../../shaders/dropout.wgsl"),
        }
    }
}

/// Most pipeline-overridable constants a kernel sets.
pub const MAX_CONSTS: usize = 8;

/// One kernel: its family, its entry point, and the values of its pipeline-overridable constants
/// (each distinct set is its own pipeline: one per transposed form of the matmul, one per convolution
/// geometry of im2col).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Kernel {
    pub family: Family,
    pub entry: &'static str,
    const_names: &'static [&'static str],
    const_values: [u32; MAX_CONSTS],
}

impl Kernel {
    pub const fn new(family: Family, entry: &'static str) -> Self {
        Kernel {
            family,
            entry,
            const_names: &[],
            const_values: [0; MAX_CONSTS],
        }
    }
    /// Sets the override constants `names` (at most [`MAX_CONSTS`]) to `values`.
    pub fn with_consts(self, names: &'static [&'static str], values: &[u32]) -> Self {
        assert!(names.len() == values.len() && names.len() <= MAX_CONSTS);
        let mut const_values = [0; MAX_CONSTS];
        const_values[..values.len()].copy_from_slice(values);
        Kernel {
            const_names: names,
            const_values,
            ..self
        }
    }
    fn constants(&self) -> Vec<(&'static str, f64)> {
        self.const_names
            .iter()
            .zip(self.const_values)
            .map(|(&name, v)| (name, v as f64))
            .collect()
    }
}

/// One pipeline as the launcher made it (see [`Launcher::pipelines_made`]): what a shader translator
/// needs to rebuild it for another target.
#[derive(Clone, Debug, PartialEq)]
pub struct PipelineInfo {
    /// The kernel family, e.g. "Matmul".
    pub family: String,
    /// The family's whole WGSL module.
    pub wgsl: String,
    pub entry: &'static str,
    /// The override constants' names and values.
    pub constants: Vec<(&'static str, f64)>,
}

/// How the uniform parameters of a launch are treated by the bind-group cache.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ParamsKind {
    /// Part of the cache key: each distinct shape gets its own bind group, written once.
    Static,
    /// Change every step (Adam's bias corrections, the batch position): one bind group per buffers,
    /// its uniform a slot of a shared buffer ([`DynamicSlots`]) rewritten when the value changes.
    Dynamic,
}

/// Bytes of uniform parameters a launch may pass (the largest `Params` is well under).
const MAX_PARAMS: usize = 64;

#[derive(Hash, PartialEq, Eq)]
struct BindKey {
    kernel: Kernel,
    /// (binding, buffer id, offset, size) of each bound range: two views of one buffer differ.
    /// Inline, as the params: building a key allocates nothing.
    buffers: SmallVec<[(u32, u64, u64, u64); 12]>,
    params: SmallVec<[u8; MAX_PARAMS]>,
}

struct BindEntry {
    /// The kernel's pipeline, kept here so a cached launch does one map lookup, not two.
    pipeline: wgpu::ComputePipeline,
    /// Static parameters: one version, with a uniform buffer of its own. Dynamic parameters: one
    /// version per distinct value recorded into one encoder (a step's gather position, Adam's
    /// corrections), each bind group with a uniform slot of its own, so a new value needs no submit;
    /// kept and reused by later encoders.
    versions: SmallVec<[Version; 1]>,
    /// The version the last dispatch recorded.
    current: usize,
    /// Serial of the encoder that last recorded a dispatch with this entry.
    used_in: u64,
}

/// One bind group of a [`BindEntry`] and the parameters its uniform holds.
struct Version {
    group: wgpu::BindGroup,
    uniform: Uniform,
    params: SmallVec<[u8; MAX_PARAMS]>,
}

/// Where a bind group's uniform parameters live.
enum Uniform {
    /// Static parameters: a buffer of their own, written once (kept alive by the entry).
    Own(#[allow(dead_code)] DeviceBuffer),
    /// Dynamic parameters: slot `slot` of block `block` of [`DynamicSlots`].
    Slot { block: usize, slot: usize },
}

/// Dispatches one encoder takes before it is submitted (at the next launch), when nothing needs a
/// result sooner. Submitting costs the recording thread a fixed few hundred microseconds on lavapipe
/// (wgpu's encoding and the driver's submit and freeing), so steps share a submit; a bound keeps the
/// device busy while the host records (and the dynamic uniforms' versions few).
pub const MAX_PENDING_DISPATCHES: u64 = 512;

/// Bytes per dynamic-uniform slot: WebGPU's largest `minUniformBufferOffsetAlignment`.
const SLOT_BYTES: usize = 256;
/// Slots per block of dynamic uniforms (a block is one buffer).
pub const SLOTS_PER_BLOCK: usize = 16;

/// The uniforms of every `Dynamic` launch, slots of a few shared buffers with a host copy. A changed
/// value goes into the host copy, and each block's changed bytes reach the device in one
/// `write_buffer` just before the next submit (queue writes land before the commands submitted
/// after them): one staging buffer per block and submit, not one per changed launch.
#[derive(Default)]
struct DynamicSlots {
    blocks: Vec<SlotBlock>,
    /// Slots handed out, in order: slot i is slot i % SLOTS_PER_BLOCK of block i / SLOTS_PER_BLOCK.
    taken: usize,
}

struct SlotBlock {
    buffer: DeviceBuffer,
    host: Vec<u8>,
    /// The byte range changed since the last upload (empty: none).
    dirty: std::ops::Range<usize>,
}

impl DynamicSlots {
    /// A fresh slot holding `bytes`, in a new block (its buffer from `make_buffer`) when the last is
    /// full.
    fn take(&mut self, make_buffer: impl FnOnce() -> DeviceBuffer, bytes: &[u8]) -> (usize, usize) {
        let (block, slot) = (self.taken / SLOTS_PER_BLOCK, self.taken % SLOTS_PER_BLOCK);
        if slot == 0 {
            self.blocks.push(SlotBlock {
                buffer: make_buffer(),
                host: vec![0; SLOT_BYTES * SLOTS_PER_BLOCK],
                dirty: 0..0,
            });
        }
        self.taken += 1;
        self.set(block, slot, bytes);
        (block, slot)
    }

    /// Puts `bytes` into the host copy of a slot, to be uploaded before the next submit.
    fn set(&mut self, block: usize, slot: usize, bytes: &[u8]) {
        let b = &mut self.blocks[block];
        let at = slot * SLOT_BYTES;
        b.host[at..at + bytes.len()].copy_from_slice(bytes);
        let end = at + bytes.len();
        b.dirty = if b.dirty.is_empty() {
            at..end
        } else {
            b.dirty.start.min(at)..b.dirty.end.max(end)
        };
    }

    /// Queues the changed bytes of every block.
    fn upload(&mut self, queue: &wgpu::Queue) {
        for b in &mut self.blocks {
            if !b.dirty.is_empty() {
                // write_buffer takes multiples of 4 bytes; params are Pod structs of u32 and f32.
                let range = b.dirty.start..b.dirty.end.next_multiple_of(4);
                queue.write_buffer(&b.buffer, range.start as u64, &b.host[range]);
                b.dirty = 0..0;
            }
        }
    }
}

/// The recording state of a GPU backend.
pub struct Launcher {
    pub device: wgpu::Device,
    pub queue: wgpu::Queue,
    modules: RefCell<HashMap<Family, wgpu::ShaderModule>>,
    pipelines: RefCell<FxHashMap<Kernel, wgpu::ComputePipeline>>,
    /// Looked up once per dispatch: hashed with FxHash (a few multiplies a word), not SipHash, whose
    /// cost over a key's kernel names, buffers and params was a tenth of the recording thread's time.
    binds: RefCell<FxHashMap<BindKey, BindEntry>>,
    /// The uniforms of the `Dynamic` launches' bind groups.
    dynamic: RefCell<DynamicSlots>,
    /// The open compute pass on `encoder` (declared first, so it is dropped before the encoder): consecutive dispatches share one pass (wgpu still orders
    /// them), and it is closed before any copy or clear and before submitting.
    pass: RefCell<Option<wgpu::ComputePass<'static>>>,
    encoder: RefCell<Option<wgpu::CommandEncoder>>,
    /// Incremented at each submit; identifies the pending encoder.
    serial: Cell<u64>,
    /// Dispatches recorded so far (read by the profiler: dispatches per op and per step).
    dispatches: Cell<u64>,
    /// `dispatches` at the last submit: the pending encoder holds the difference.
    dispatches_at_submit: Cell<u64>,
    /// Bytes of every [`DeviceBuffer`] alive: tensors, uniforms, staging.
    live: Arc<AtomicU64>,
    /// The profiler's timestamp queries while it times (see [`Launcher::timer_start`]).
    timer: RefCell<Option<Timer>>,
}

/// Timestamps written into the command stream between passes, read back at the end.
struct Timer {
    set: wgpu::QuerySet,
    next: u32,
}

/// Timestamps one profiling run may record (wgpu's most per query set).
const TIMER_CAPACITY: u32 = 4096;

impl Launcher {
    pub fn new(device: wgpu::Device, queue: wgpu::Queue) -> Self {
        Launcher {
            device,
            queue,
            modules: RefCell::new(HashMap::new()),
            pipelines: RefCell::new(FxHashMap::default()),
            binds: RefCell::new(FxHashMap::default()),
            dynamic: RefCell::new(DynamicSlots::default()),
            encoder: RefCell::new(None),
            pass: RefCell::new(None),
            serial: Cell::new(1),
            dispatches: Cell::new(0),
            dispatches_at_submit: Cell::new(0),
            live: Arc::new(AtomicU64::new(0)),
            timer: RefCell::new(None),
        }
    }

    /// Starts recording timestamps, if the device can write them between passes (features
    /// TIMESTAMP_QUERY and TIMESTAMP_QUERY_INSIDE_ENCODERS); false otherwise.
    pub fn timer_start(&self) -> bool {
        let needed =
            wgpu::Features::TIMESTAMP_QUERY | wgpu::Features::TIMESTAMP_QUERY_INSIDE_ENCODERS;
        if !self.device.features().contains(needed) {
            return false;
        }
        let set = self.device.create_query_set(&wgpu::QuerySetDescriptor {
            label: Some("profiler timestamps"),
            ty: wgpu::QueryType::Timestamp,
            count: TIMER_CAPACITY,
        });
        *self.timer.borrow_mut() = Some(Timer { set, next: 0 });
        true
    }

    /// Writes a timestamp after the work recorded so far: its index, or `None` (no timer, or full).
    /// `submit`: then hand everything recorded to the device (an op's end mark), so that an op's
    /// start mark, its work and its end mark share one submission and the device never waits on the
    /// host in between (a launch whose dynamic params changed would otherwise submit mid-op).
    pub fn timer_mark(&self, submit: bool) -> Option<usize> {
        let index = {
            let mut slot = self.timer.borrow_mut();
            let timer = slot.as_mut()?;
            if timer.next == TIMER_CAPACITY {
                return None;
            }
            let index = timer.next;
            self.with_encoder(|enc| enc.write_timestamp(&timer.set, index));
            timer.next += 1;
            index
        };
        if submit {
            self.flush();
        }
        Some(index as usize)
    }

    /// Resolves the timestamps, waits for them and returns them in seconds; the timer stops.
    pub fn timer_finish(&self, timeout: std::time::Duration) -> Result<Vec<f64>, String> {
        let Some(timer) = self.timer.borrow_mut().take() else {
            return Ok(Vec::new());
        };
        if timer.next == 0 {
            return Ok(Vec::new());
        }
        let bytes = timer.next as u64 * 8;
        let resolved = GpuBuf::new(self.create_buffer(&wgpu::BufferDescriptor {
            label: Some("resolved timestamps"),
            size: bytes.next_multiple_of(16),
            usage: wgpu::BufferUsages::QUERY_RESOLVE | wgpu::BufferUsages::COPY_SRC,
            mapped_at_creation: false,
        }));
        self.with_encoder(|enc| enc.resolve_query_set(&timer.set, 0..timer.next, &resolved.buf, 0));
        let raw = pollster::block_on(self.read_bytes(&resolved, bytes, timeout))?;
        let period_s = self.queue.get_timestamp_period() as f64 * 1e-9;
        Ok(raw
            .chunks_exact(8)
            .map(|b| u64::from_le_bytes(b.try_into().expect("8 bytes")) as f64 * period_s)
            .collect())
    }

    /// Creates a buffer counted in [`Launcher::live_bytes`] (every buffer of the backend goes through
    /// here or [`Launcher::create_buffer_init`]).
    pub fn create_buffer(&self, desc: &wgpu::BufferDescriptor) -> DeviceBuffer {
        self.track(self.device.create_buffer(desc))
    }

    pub fn create_buffer_init(&self, desc: &wgpu::util::BufferInitDescriptor) -> DeviceBuffer {
        use wgpu::util::DeviceExt as _;
        self.track(self.device.create_buffer_init(desc))
    }

    fn track(&self, inner: wgpu::Buffer) -> DeviceBuffer {
        self.live.fetch_add(inner.size(), Ordering::Relaxed);
        DeviceBuffer {
            inner,
            live: self.live.clone(),
        }
    }

    /// Bytes of device buffers alive now.
    pub fn live_bytes(&self) -> u64 {
        self.live.load(Ordering::Relaxed)
    }

    fn pipeline(&self, kernel: Kernel) -> wgpu::ComputePipeline {
        if let Some(p) = self.pipelines.borrow().get(&kernel) {
            return p.clone();
        }
        let module = self
            .modules
            .borrow_mut()
            .entry(kernel.family)
            .or_insert_with(|| {
                let source = kernel.family.wgsl();
                self.device
                    .create_shader_module(wgpu::ShaderModuleDescriptor {
                        label: Some(kernel.entry),
                        source: wgpu::ShaderSource::Wgsl(source.into()),
                    })
            })
            .clone();
        let constants = kernel.constants();
        let pipeline = self
            .device
            .create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
                label: Some(kernel.entry),
                layout: None,
                module: &module,
                entry_point: Some(kernel.entry),
                compilation_options: wgpu::PipelineCompilationOptions {
                    constants: &constants,
                    ..Default::default()
                },
                cache: None,
            });
        self.pipelines.borrow_mut().insert(kernel, pipeline.clone());
        pipeline
    }

    /// Every pipeline made so far: its family's WGSL, entry point and override constants.
    pub fn pipelines_made(&self) -> Vec<PipelineInfo> {
        let mut out: Vec<PipelineInfo> = self
            .pipelines
            .borrow()
            .keys()
            .map(|k| PipelineInfo {
                family: format!("{:?}", k.family),
                wgsl: k.family.wgsl(),
                entry: k.entry,
                constants: k.constants(),
            })
            .collect();
        out.sort_by(|a, b| {
            (&a.family, a.entry, format!("{:?}", a.constants)).cmp(&(
                &b.family,
                b.entry,
                format!("{:?}", b.constants),
            ))
        });
        out
    }

    /// Runs `f` with the pending encoder (its compute pass closed), creating it if needed.
    pub fn with_encoder<R>(&self, f: impl FnOnce(&mut wgpu::CommandEncoder) -> R) -> R {
        self.pass.borrow_mut().take();
        let mut slot = self.encoder.borrow_mut();
        let enc = slot.get_or_insert_with(|| {
            self.device
                .create_command_encoder(&wgpu::CommandEncoderDescriptor {
                    label: Some("wgtrain"),
                })
        });
        f(enc)
    }

    /// Forgets every cached bind group (and so releases the buffers they hold). The dynamic uniform
    /// slots are freed too: work already recorded is submitted first, so later writes into them
    /// land after it.
    pub fn clear_binds(&self) {
        self.flush();
        self.binds.borrow_mut().clear();
        *self.dynamic.borrow_mut() = DynamicSlots::default();
    }

    /// Dispatches recorded since the launcher was made.
    pub fn dispatches(&self) -> u64 {
        self.dispatches.get()
    }

    /// How many bind groups are cached (each keeps its buffers alive).
    pub fn cached_binds(&self) -> usize {
        self.binds.borrow().len()
    }

    /// Submits the pending encoder (without waiting for it), after queueing the dynamic uniforms'
    /// changed values, which it reads.
    pub fn flush(&self) -> Option<wgpu::SubmissionIndex> {
        self.pass.borrow_mut().take();
        let enc = self.encoder.borrow_mut().take()?;
        self.dynamic.borrow_mut().upload(&self.queue);
        self.serial.set(self.serial.get() + 1);
        self.dispatches_at_submit.set(self.dispatches.get());
        Some(self.queue.submit([enc.finish()]))
    }

    /// Writes host data into a buffer range (at `offset` bytes into it) in queue order: the queued work
    /// that may read it is submitted first.
    pub fn write_buffer(&self, buf: &GpuBuf, offset: u64, bytes: &[u8]) {
        self.flush();
        self.queue
            .write_buffer(&buf.buf, buf.offset + offset, bytes);
    }

    /// Records one dispatch of `kernel` with `buffers` bound at their binding numbers and `params`
    /// (a `#[repr(C)]` Pod struct) as the uniform at binding 0.
    pub fn launch<P: bytemuck::Pod>(
        &self,
        kernel: Kernel,
        buffers: &[(u32, &GpuBuf)],
        params: &P,
        kind: ParamsKind,
        groups: (u32, u32, u32),
    ) {
        if groups.0 == 0 || groups.1 == 0 || groups.2 == 0 {
            return;
        }
        let bytes = bytemuck::bytes_of(params);
        assert!(
            bytes.len() <= MAX_PARAMS,
            "{}: params over {MAX_PARAMS} bytes",
            kernel.entry
        );
        let key = BindKey {
            kernel,
            buffers: buffers
                .iter()
                .map(|(b, buf)| (*b, buf.id, buf.offset, buf.size))
                .collect(),
            params: if kind == ParamsKind::Static {
                SmallVec::from_slice(bytes)
            } else {
                SmallVec::new()
            },
        };
        if self.dispatches.get() - self.dispatches_at_submit.get() >= MAX_PENDING_DISPATCHES {
            self.flush();
        }
        let serial = self.serial.get();
        let mut binds = self.binds.borrow_mut();
        let entry = match binds.entry(key) {
            std::collections::hash_map::Entry::Occupied(o) => {
                let entry = o.into_mut();
                if kind == ParamsKind::Dynamic {
                    let fresh = entry.used_in != serial;
                    if fresh {
                        // A new encoder: what earlier ones read was uploaded before their submits.
                        entry.current = 0;
                    } else if entry.versions[entry.current].params.as_slice() != bytes {
                        // The pending encoder reads the current version's value: take the next.
                        entry.current += 1;
                        if entry.current == entry.versions.len() {
                            let version =
                                self.version(kernel, &entry.pipeline, buffers, bytes, kind);
                            entry.versions.push(version);
                        }
                    }
                    let version = &mut entry.versions[entry.current];
                    if version.params.as_slice() != bytes {
                        let Uniform::Slot { block, slot } = version.uniform else {
                            unreachable!("dynamic params live in slots")
                        };
                        self.dynamic.borrow_mut().set(block, slot, bytes);
                        version.params = SmallVec::from_slice(bytes);
                    }
                }
                entry
            }
            std::collections::hash_map::Entry::Vacant(v) => {
                let pipeline = self.pipeline(kernel);
                let version = self.version(kernel, &pipeline, buffers, bytes, kind);
                v.insert(BindEntry {
                    pipeline,
                    versions: smallvec::smallvec![version],
                    current: 0,
                    used_in: 0,
                })
            }
        };
        entry.used_in = self.serial.get();
        self.dispatches.set(self.dispatches.get() + 1);
        let mut pass = self.pass.borrow_mut();
        if pass.is_none() {
            let mut slot = self.encoder.borrow_mut();
            let enc = slot.get_or_insert_with(|| {
                self.device
                    .create_command_encoder(&wgpu::CommandEncoderDescriptor {
                        label: Some("wgtrain"),
                    })
            });
            *pass = Some(
                enc.begin_compute_pass(&wgpu::ComputePassDescriptor {
                    label: None,
                    timestamp_writes: None,
                })
                .forget_lifetime(),
            );
        }
        let pass = pass.as_mut().expect("a compute pass was just opened");
        pass.set_pipeline(&entry.pipeline);
        pass.set_bind_group(0, &entry.versions[entry.current].group, &[]);
        pass.dispatch_workgroups(groups.0, groups.1, groups.2);
    }

    /// A bind group for `kernel` over `buffers` with `bytes` as its uniform: a buffer of its own for
    /// static parameters, a fresh slot of the shared blocks for dynamic ones.
    fn version(
        &self,
        kernel: Kernel,
        pipeline: &wgpu::ComputePipeline,
        buffers: &[(u32, &GpuBuf)],
        bytes: &[u8],
        kind: ParamsKind,
    ) -> Version {
        let uniform = match kind {
            ParamsKind::Static => {
                Uniform::Own(self.create_buffer_init(&wgpu::util::BufferInitDescriptor {
                    label: Some(kernel.entry),
                    contents: bytes,
                    usage: wgpu::BufferUsages::UNIFORM,
                }))
            }
            ParamsKind::Dynamic => {
                let make = || {
                    self.create_buffer(&wgpu::BufferDescriptor {
                        label: Some("dynamic uniforms"),
                        size: (SLOT_BYTES * SLOTS_PER_BLOCK) as u64,
                        usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
                        mapped_at_creation: false,
                    })
                };
                let (block, slot) = self.dynamic.borrow_mut().take(make, bytes);
                Uniform::Slot { block, slot }
            }
        };
        let group = {
            let dynamic = self.dynamic.borrow();
            let resource = match &uniform {
                Uniform::Own(buffer) => buffer.as_entire_binding(),
                Uniform::Slot { block, slot } => {
                    wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                        buffer: &dynamic.blocks[*block].buffer,
                        offset: (slot * SLOT_BYTES) as u64,
                        size: std::num::NonZeroU64::new(bytes.len().next_multiple_of(16) as u64),
                    })
                }
            };
            let mut entries: SmallVec<[wgpu::BindGroupEntry; 12]> =
                smallvec::smallvec![wgpu::BindGroupEntry {
                    binding: 0,
                    resource,
                }];
            entries.extend(buffers.iter().map(|(b, buf)| wgpu::BindGroupEntry {
                binding: *b,
                resource: buf.binding(),
            }));
            self.device.create_bind_group(&wgpu::BindGroupDescriptor {
                label: Some(kernel.entry),
                layout: &pipeline.get_bind_group_layout(0),
                entries: &entries,
            })
        };
        Version {
            group,
            uniform,
            params: SmallVec::from_slice(bytes),
        }
    }

    /// Workgroups for a 1-d launch of `total` invocations, spilling into y past 65535 (see `flat_index`).
    pub fn groups_1d(total: usize) -> (u32, u32, u32) {
        let groups = total.div_ceil(WG as usize) as u32;
        if groups <= MAX_GROUPS {
            (groups, 1, 1)
        } else {
            (MAX_GROUPS, groups.div_ceil(MAX_GROUPS), 1)
        }
    }

    /// Copies `buf` back to the host once all queued work is done. The map's completion is a oneshot
    /// channel awaited on every target: natively the `poll` below blocks until the copy is done and its
    /// callback has run (the caller's `pollster` then finds the value there); on WebGPU the browser's
    /// event loop completes the map while the caller's future waits.
    pub async fn read_bytes(
        &self,
        buf: &GpuBuf,
        bytes: u64,
        timeout: std::time::Duration,
    ) -> Result<Vec<u8>, String> {
        let size = bytes.max(4).next_multiple_of(4);
        let staging = self.create_buffer(&wgpu::BufferDescriptor {
            label: Some("readback"),
            size,
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        self.with_encoder(|enc| enc.copy_buffer_to_buffer(&buf.buf, buf.offset, &staging, 0, size));
        let index = self.flush();
        let (tx, rx) = futures_intrusive::channel::shared::oneshot_channel();
        staging.map_async(wgpu::MapMode::Read, .., move |r| {
            let _ = tx.send(r);
        });
        // Natively: wait here for the copy, then run the callbacks that became ready. On the web the
        // browser completes the map by itself; nothing there blocks or polls.
        #[cfg(not(target_arch = "wasm32"))]
        {
            self.device
                .poll(wgpu::PollType::Wait {
                    submission_index: index,
                    timeout: Some(timeout),
                })
                .map_err(|e| format!("the GPU did not finish its work ({e})"))?;
            let _ = self.device.poll(wgpu::PollType::Poll);
        }
        #[cfg(target_arch = "wasm32")]
        let _ = (index, timeout);
        match rx.receive().await {
            Some(Ok(())) => {}
            Some(Err(e)) => return Err(format!("reading a GPU buffer failed ({e})")),
            None => return Err("reading a GPU buffer did not complete".into()),
        }
        let data = staging
            .get_mapped_range(..)
            .map_err(|e| format!("mapping a GPU buffer failed ({e})"))?
            .to_vec();
        staging.unmap();
        Ok(data[..bytes as usize].to_vec())
    }

    /// Submits everything and waits for it (on the web: submits only; a page never blocks, and its
    /// next read waits for the work anyway).
    pub fn wait_idle(&self, timeout: std::time::Duration) -> Result<(), String> {
        let index = self.flush();
        #[cfg(target_arch = "wasm32")]
        return {
            let _ = (index, timeout);
            Ok(())
        };
        #[cfg(not(target_arch = "wasm32"))]
        self.device
            .poll(wgpu::PollType::Wait {
                submission_index: index,
                timeout: Some(timeout),
            })
            .map(|_| ())
            .map_err(|e| format!("the GPU did not finish its work ({e})"))
    }
}
