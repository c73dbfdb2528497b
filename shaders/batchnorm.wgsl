// Batch norm over the rows of x[rows x cols] (BatchNorm1d on [N, C], BatchNorm2d on NHWC as [N*H*W, C]).
// The column sums come from reduce.wgsl's partial kernels; the kernels here finish the statistics
// (1-d launch over cols) and apply them (1-d launch over rows * cols).
// ACT (a pipeline constant, Act::code; 0: none) fuses the activation that follows: the forward applies
// it and the backward takes dy through it from the forward output, in the same passes.

override ACT: u32 = 0u;

struct Params {
    rows: u32,
    cols: u32,
    chunks: u32,   // partial sums per column (from reduce.wgsl)
    _pad: u32,
    momentum: f32, // running statistics: r = (1 - momentum) * r + momentum * batch value
    eps: f32,
    unbias: f32,   // rows / (rows - 1): the running variance is unbiased, as PyTorch's
    _pad1: f32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> partial: array<f32>;       // [chunks x cols] column partial sums
@group(0) @binding(3) var<storage, read_write> stat: array<f32>;    // mean or invstd, written by the finishers
@group(0) @binding(4) var<storage, read_write> running: array<f32>; // running mean or running variance

fn column_total(col: u32) -> f32 {
    var s = 0.0;
    for (var k = 0u; k < p.chunks; k++) {
        s += partial[k * p.cols + col];
    }
    return s;
}

// mean = sum x / rows; running_mean moves toward it.
@compute @workgroup_size(256)
fn bn_mean(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let c = flat_index(wid, nwg, lid);
    if (c >= p.cols) {
        return;
    }
    let m = column_total(c) / f32(p.rows);
    stat[c] = m;
    running[c] = (1.0 - p.momentum) * running[c] + p.momentum * m;
}

// invstd = 1 / sqrt(var + eps) from sum (x - mean)^2; running_var moves toward the unbiased variance.
@compute @workgroup_size(256)
fn bn_var(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let c = flat_index(wid, nwg, lid);
    if (c >= p.cols) {
        return;
    }
    let v = column_total(c) / f32(p.rows);
    stat[c] = 1.0 / sqrt(v + p.eps);
    running[c] = (1.0 - p.momentum) * running[c] + p.momentum * v * p.unbias;
}

@group(0) @binding(5) var<storage, read_write> y: array<f32>;  // output (normalise) or dx (backward)
@group(0) @binding(6) var<storage, read> gamma: array<f32>;
@group(0) @binding(7) var<storage, read> beta: array<f32>;     // beta (normalise) or dbeta (backward)
@group(0) @binding(8) var<storage, read> mean: array<f32>;     // batch mean, or running mean (eval)
@group(0) @binding(9) var<storage, read> scale: array<f32>;    // invstd, or running variance (eval)
@group(0) @binding(10) var<storage, read> dy: array<f32>;
@group(0) @binding(11) var<storage, read> dgamma: array<f32>;
@group(0) @binding(12) var<storage, read> act_out: array<f32>; // backward with ACT: the forward output

fn act(v: f32) -> f32 {
    return act_fwd(v, ACT);
}

// y = gamma * (x - mean) * invstd + beta  (training: batch statistics)
@compute @workgroup_size(256)
fn bn_normalise(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let i = flat_index(wid, nwg, lid);
    if (i >= p.rows * p.cols) {
        return;
    }
    let c = i % p.cols;
    y[i] = act(gamma[c] * (x[i] - mean[c]) * scale[c] + beta[c]);
}

// y = gamma * (x - running_mean) / sqrt(running_var + eps) + beta  (evaluation)
@compute @workgroup_size(256)
fn bn_eval(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let i = flat_index(wid, nwg, lid);
    if (i >= p.rows * p.cols) {
        return;
    }
    let c = i % p.cols;
    y[i] = act(gamma[c] * (x[i] - mean[c]) * (1.0 / sqrt(scale[c] + p.eps)) + beta[c]);
}

// The per-column values the backward takes, packed side by side: coef[5c..5c+5] = gamma, mean, invstd,
// dbeta, dgamma. So bn_backward_dx binds 5 storage buffers, not 9: WebGPU grants 8 per stage.
@group(0) @binding(13) var<storage, read_write> coef: array<f32>;

@compute @workgroup_size(256)
fn bn_pack(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let c = flat_index(wid, nwg, lid);
    if (c >= p.cols) {
        return;
    }
    coef[5u * c] = gamma[c];
    coef[5u * c + 1u] = mean[c];
    coef[5u * c + 2u] = scale[c];
    coef[5u * c + 3u] = beta[c];
    coef[5u * c + 4u] = dgamma[c];
}

// dx = gamma * invstd / R * (R * dy - dbeta - xhat * dgamma)   (Ioffe & Szegedy 2015)
@compute @workgroup_size(256)
fn bn_backward_dx(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let i = flat_index(wid, nwg, lid);
    if (i >= p.rows * p.cols) {
        return;
    }
    let c = 5u * (i % p.cols);
    let r = f32(p.rows);
    let xhat = (x[i] - coef[c + 1u]) * coef[c + 2u];
    var g = dy[i];
    if (ACT != 0u) {
        g = act_bwd(act_out[i], g, ACT);
    }
    y[i] = coef[c] * coef[c + 2u] / r * (r * g - coef[c + 3u] - xhat * coef[c + 4u]);
}
