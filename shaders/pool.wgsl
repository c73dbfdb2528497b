// Max and average pooling over NHWC images, kh x kw windows every STRIDE pixels, no padding (1-d
// launches). The forward runs one invocation per output element; the backward one per input element,
// gathering every window that read it (in window order), so there are no atomics and the sums are the
// same on every device. Max pooling keeps, per output, the position of its window's first maximum
// (row-major order; later equal values do not replace it), and routes the gradient there only.

// The layer's geometry is fixed per pipeline (override constants, set per pooling layer).
override C: u32 = 1u;      // channels
override H: u32 = 1u;      // input height
override W: u32 = 1u;      // input width
override KH: u32 = 1u;     // window height
override KW: u32 = 1u;     // window width
override STRIDE: u32 = 1u;
override OH: u32 = 1u;     // output height
override OW: u32 = 1u;     // output width

struct Params {
    n: u32,         // images in the batch
    total: u32,     // invocations: output elements (forward) or input elements (backward)
    inv_area: f32,  // 1 / (KH * KW), computed on the host: an average is a product, which WGSL rounds
                    // correctly on every device (a division may be 2.5 ULP off, as on SwiftShader)
    _pad0: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> src: array<f32>;        // x (forward) or dy (backward)
@group(0) @binding(2) var<storage, read_write> dst: array<f32>;  // y (forward) or dx (backward)
@group(0) @binding(3) var<storage, read_write> arg: array<f32>;  // max: the window position of each maximum

// Output element i as (image, oy, ox, channel), and the index of its window's first input.
fn window_start(i: u32) -> u32 {
    let c = i % C;
    let ox = (i / C) % OW;
    let oy = (i / (C * OW)) % OH;
    let n = i / (C * OW * OH);
    return ((n * H + oy * STRIDE) * W + ox * STRIDE) * C + c;
}

@compute @workgroup_size(256)
fn max_forward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let i = flat_index(wid, nwg, lid);
    if (i >= p.total) {
        return;
    }
    let base = window_start(i);
    var best = src[base];
    var at = 0u;
    for (var ky = 0u; ky < KH; ky++) {
        for (var kx = 0u; kx < KW; kx++) {
            let v = src[base + (ky * W + kx) * C];
            if (v > best) {
                best = v;
                at = ky * KW + kx;
            }
        }
    }
    dst[i] = best;
    arg[i] = f32(at);
}

@compute @workgroup_size(256)
fn avg_forward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let i = flat_index(wid, nwg, lid);
    if (i >= p.total) {
        return;
    }
    let base = window_start(i);
    var sum = 0.0;
    for (var ky = 0u; ky < KH; ky++) {
        for (var kx = 0u; kx < KW; kx++) {
            sum += src[base + (ky * W + kx) * C];
        }
    }
    dst[i] = sum * p.inv_area;
}

// The windows holding input pixel (iy, ix): rows oy in [first(iy, KH), last(iy)], likewise columns.
fn first_window(pos: u32, k: u32) -> u32 {
    if (pos + 1u <= k) {
        return 0u;
    }
    return (pos + 1u - k + STRIDE - 1u) / STRIDE;
}

// Input element i as (image, iy, ix, channel), and the output rows [oy0, oy1) and columns [ox0, ox1)
// of the windows that hold it.
struct Holders {
    n: u32,
    iy: u32,
    ix: u32,
    c: u32,
    oy0: u32,
    oy1: u32,
    ox0: u32,
    ox1: u32,
}

fn holders(i: u32) -> Holders {
    let c = i % C;
    let ix = (i / C) % W;
    let iy = (i / (C * W)) % H;
    let n = i / (C * W * H);
    return Holders(n, iy, ix, c, first_window(iy, KH), min(iy / STRIDE + 1u, OH), first_window(ix, KW), min(ix / STRIDE + 1u, OW));
}

// dx: the sum of dy over the windows where this input was the (first) maximum.
@compute @workgroup_size(256)
fn max_backward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let i = flat_index(wid, nwg, lid);
    if (i >= p.total) {
        return;
    }
    let h = holders(i);
    var sum = 0.0;
    for (var oy = h.oy0; oy < h.oy1; oy++) {
        for (var ox = h.ox0; ox < h.ox1; ox++) {
            let o = ((h.n * OH + oy) * OW + ox) * C + h.c;
            if (u32(arg[o]) == (h.iy - oy * STRIDE) * KW + (h.ix - ox * STRIDE)) {
                sum += src[o];
            }
        }
    }
    dst[i] = sum;
}

// dx: the sum of dy over the windows that hold this input, divided by the window size.
@compute @workgroup_size(256)
fn avg_backward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let i = flat_index(wid, nwg, lid);
    if (i >= p.total) {
        return;
    }
    let h = holders(i);
    var sum = 0.0;
    for (var oy = h.oy0; oy < h.oy1; oy++) {
        for (var ox = h.ox0; ox < h.ox1; ox++) {
            sum += src[((h.n * OH + oy) * OW + ox) * C + h.c];
        }
    }
    dst[i] = sum * p.inv_area;
}
