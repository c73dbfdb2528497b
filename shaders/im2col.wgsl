// im2col / col2im for a square-kernel convolution over NHWC images (1-d launches).
// The col matrix has one row per output pixel (n, oy, ox) and one column per tap (ky, kx, c).

// The layer's geometry is fixed per pipeline (override constants, set per convolution layer), so every
// division and remainder below is by a constant; only the batch size varies at run time.
override C: u32 = 1u;      // input channels
override H: u32 = 1u;      // input height
override W: u32 = 1u;      // input width
override K: u32 = 1u;      // kernel side
override STRIDE: u32 = 1u;
override PAD: u32 = 0u;
override OH: u32 = 1u;     // output height
override OW: u32 = 1u;     // output width

struct Params {
    n: u32,     // images in the batch
    total: u32, // invocations: col elements (im2col) or image elements (col2im)
    _pad0: u32,
    _pad1: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> src: array<f32>;        // image (im2col) or col (col2im)
@group(0) @binding(2) var<storage, read_write> dst: array<f32>;  // col (im2col) or image gradient (col2im)

// One invocation per col element: the pixel it copies, or 0 in the padding.
@compute @workgroup_size(256)
fn im2col(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let i = flat_index(wid, nwg, lid);
    if (i >= p.total) {
        return;
    }
    let taps = K * K * C;
    let row = i / taps;
    let t = i % taps;
    let ci = t % C;
    let kx = (t / C) % K;
    let ky = t / (C * K);
    let ox = row % OW;
    let oy = (row / OW) % OH;
    let n = row / (OW * OH);
    let iy = i32(oy * STRIDE + ky) - i32(PAD);
    let ix = i32(ox * STRIDE + kx) - i32(PAD);
    var v = 0.0;
    if (iy >= 0 && ix >= 0 && iy < i32(H) && ix < i32(W)) {
        v = src[((n * H + u32(iy)) * W + u32(ix)) * C + ci];
    }
    dst[i] = v;
}

// One invocation per image element: gathers every col entry im2col copied from it (no atomics).
@compute @workgroup_size(256)
fn col2im(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let i = flat_index(wid, nwg, lid);
    if (i >= p.total) {
        return;
    }
    let ci = i % C;
    let ix = (i / C) % W;
    let iy = (i / (C * W)) % H;
    let n = i / (C * W * H);
    let taps = K * K * C;
    var s = 0.0;
    for (var ky = 0u; ky < K; ky++) {
        let ty = i32(iy + PAD) - i32(ky);
        if (ty < 0 || ty % i32(STRIDE) != 0) {
            continue;
        }
        let oy = u32(ty) / STRIDE;
        if (oy >= OH) {
            continue;
        }
        for (var kx = 0u; kx < K; kx++) {
            let tx = i32(ix + PAD) - i32(kx);
            if (tx < 0 || tx % i32(STRIDE) != 0) {
                continue;
            }
            let ox = u32(tx) / STRIDE;
            if (ox >= OW) {
                continue;
            }
            s += src[((n * OH + oy) * OW + ox) * taps + (ky * K + kx) * C + ci];
        }
    }
    dst[i] = s;
}
