// im2col / col2im for a square-kernel convolution over NHWC images (1-d launches).
// The col matrix has one row per output pixel (n, oy, ox) and one column per tap (ky, kx, c).

struct Params {
    n: u32,
    c: u32,
    h: u32,
    w: u32,
    k: u32,
    stride: u32,
    pad: u32,
    oh: u32,
    ow: u32,
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
    let taps = p.k * p.k * p.c;
    let row = i / taps;
    let t = i % taps;
    let ci = t % p.c;
    let kx = (t / p.c) % p.k;
    let ky = t / (p.c * p.k);
    let ox = row % p.ow;
    let oy = (row / p.ow) % p.oh;
    let n = row / (p.ow * p.oh);
    let iy = i32(oy * p.stride + ky) - i32(p.pad);
    let ix = i32(ox * p.stride + kx) - i32(p.pad);
    var v = 0.0;
    if (iy >= 0 && ix >= 0 && iy < i32(p.h) && ix < i32(p.w)) {
        v = src[((n * p.h + u32(iy)) * p.w + u32(ix)) * p.c + ci];
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
    let ci = i % p.c;
    let ix = (i / p.c) % p.w;
    let iy = (i / (p.c * p.w)) % p.h;
    let n = i / (p.c * p.w * p.h);
    let taps = p.k * p.k * p.c;
    var s = 0.0;
    for (var ky = 0u; ky < p.k; ky++) {
        let ty = i32(iy + p.pad) - i32(ky);
        if (ty < 0 || ty % i32(p.stride) != 0) {
            continue;
        }
        let oy = u32(ty) / p.stride;
        if (oy >= p.oh) {
            continue;
        }
        for (var kx = 0u; kx < p.k; kx++) {
            let tx = i32(ix + p.pad) - i32(kx);
            if (tx < 0 || tx % i32(p.stride) != 0) {
                continue;
            }
            let ox = u32(tx) / p.stride;
            if (ox >= p.ow) {
                continue;
            }
            s += src[((n * p.oh + oy) * p.ow + ox) * taps + (ky * p.k + kx) * p.c + ci];
        }
    }
    dst[i] = s;
}
