// Batch norm over the rows of x[rows x cols] (BatchNorm1d on [N, C], BatchNorm2d on NHWC as [N*H*W, C]).
// Every column sum adds chunks of `chunk_rows` rows in chunk order, each chunk by the 16 x 16 lanes of
// column_lanes.wgsl, so the fused and the separate kernels below round alike, bit for bit.
// Forward, many rows: reduce.wgsl's sum_partials, bn_mean, sqdev_partials, bn_var (the finishers: 1-d
// over cols), bn_normalise (1-d over rows * cols). Few rows: bn_forward_fused, one workgroup per 16
// columns going over every chunk itself.
// Backward, many rows: bn_grad_partials (dbeta's and dgamma's chunk partials), bn_grad_finish; few
// rows: bn_grad_sums; then bn_backward_dx.
// ACT (a pipeline constant, Act::code; 0: none) fuses the activation that follows: the forward applies
// it and the backward takes dy through it from the forward output, in the same passes.

override ACT: u32 = 0u;

struct Params {
    rows: u32,
    cols: u32,
    chunks: u32,   // chunks of chunk_rows rows (partial sums per column)
    chunk_rows: u32,
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
@group(0) @binding(7) var<storage, read> beta: array<f32>;
@group(0) @binding(8) var<storage, read> mean: array<f32>;     // batch mean, or running mean (eval)
@group(0) @binding(9) var<storage, read> scale: array<f32>;    // invstd, or running variance (eval)
@group(0) @binding(10) var<storage, read> dy: array<f32>;
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

// ---- Fused forward (few rows) ----

@group(0) @binding(14) var<storage, read_write> mean_out: array<f32>;
@group(0) @binding(15) var<storage, read_write> invstd_out: array<f32>;
@group(0) @binding(16) var<storage, read_write> running_mean: array<f32>;
@group(0) @binding(17) var<storage, read_write> running_var: array<f32>;

// The workgroup's 16 column means and invstds, shared by its row lanes.
var<workgroup> column_mean: array<f32, 16>;
var<workgroup> column_invstd: array<f32, 16>;

// bn_mean, bn_var and bn_normalise for 16 columns in one workgroup of 16 x 16: the sums go over every
// chunk in chunk order, each chunk's lanes added as reduce.wgsl's partial kernels add them, so the
// statistics, the running statistics and y have the bits of the separate passes.
// Dispatch: (ceil(cols / 16), 1, 1).
@compute @workgroup_size(16, 16)
fn bn_forward_fused(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let col = wid.x * 16u + lid.x;
    let live = col < p.cols;
    var total = 0.0;
    for (var k = 0u; k < p.chunks; k++) {
        let r1 = min((k + 1u) * p.chunk_rows, p.rows);
        var acc = 0.0;
        if (live) {
            for (var r = k * p.chunk_rows + lid.y; r < r1; r += 16u) {
                acc += x[r * p.cols + col];
            }
        }
        total += lanes_total(lid, acc);
    }
    if (lid.y == 0u && live) {
        let m = total / f32(p.rows);
        mean_out[col] = m;
        running_mean[col] = (1.0 - p.momentum) * running_mean[col] + p.momentum * m;
        column_mean[lid.x] = m;
    }
    workgroupBarrier();
    let m = column_mean[lid.x];
    total = 0.0;
    for (var k = 0u; k < p.chunks; k++) {
        let r1 = min((k + 1u) * p.chunk_rows, p.rows);
        var acc = 0.0;
        if (live) {
            for (var r = k * p.chunk_rows + lid.y; r < r1; r += 16u) {
                let d = x[r * p.cols + col] - m;
                acc += d * d;
            }
        }
        total += lanes_total(lid, acc);
    }
    if (lid.y == 0u && live) {
        let v = total / f32(p.rows);
        let s = 1.0 / sqrt(v + p.eps);
        invstd_out[col] = s;
        running_var[col] = (1.0 - p.momentum) * running_var[col] + p.momentum * v * p.unbias;
        column_invstd[lid.x] = s;
    }
    workgroupBarrier();
    let s = column_invstd[lid.x];
    if (live) {
        for (var r = lid.y; r < p.rows; r += 16u) {
            let i = r * p.cols + col;
            y[i] = act(gamma[col] * (x[i] - m) * s + beta[col]);
        }
    }
}

// ---- Backward ----

@group(0) @binding(18) var<storage, read_write> grad_partial: array<f32>; // [2 x chunks x cols]
@group(0) @binding(19) var<storage, read_write> dbeta_out: array<f32>;
@group(0) @binding(20) var<storage, read_write> dgamma_out: array<f32>;
// dbeta and dgamma side by side, coef[2c] and coef[2c + 1], for bn_backward_dx: with them in one
// buffer it binds 8 storage buffers, the most WebGPU grants per stage.
@group(0) @binding(13) var<storage, read_write> coef: array<f32>;

// One lane's terms of dbeta (dy) and dgamma (dy * xhat) over its rows of chunk k, dy taken through
// the fused activation from the forward output.
fn grad_terms(col: u32, k: u32, ly: u32) -> vec2<f32> {
    var acc = vec2<f32>(0.0, 0.0);
    if (col >= p.cols) {
        return acc;
    }
    let m = mean[col];
    let s = scale[col];
    let r1 = min((k + 1u) * p.chunk_rows, p.rows);
    for (var r = k * p.chunk_rows + ly; r < r1; r += 16u) {
        let at = r * p.cols + col;
        var g = dy[at];
        if (ACT != 0u) {
            g = act_bwd(act_out[at], g, ACT);
        }
        acc.x += g;
        acc.y += g * ((x[at] - m) * s);
    }
    return acc;
}

fn store_grads(col: u32, dbeta: f32, dgamma: f32) {
    dbeta_out[col] = dbeta;
    dgamma_out[col] = dgamma;
    coef[2u * col] = dbeta;
    coef[2u * col + 1u] = dgamma;
}

// Chunk wid.y's partials of dbeta and dgamma. Dispatch: (ceil(cols / 16), chunks, 1).
@compute @workgroup_size(16, 16)
fn bn_grad_partials(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let col = wid.x * 16u + lid.x;
    let acc = grad_terms(col, wid.y, lid.y);
    let dbeta = lanes_total(lid, acc.x);
    let dgamma = lanes_total(lid, acc.y);
    if (lid.y == 0u && col < p.cols) {
        grad_partial[wid.y * p.cols + col] = dbeta;
        grad_partial[(p.chunks + wid.y) * p.cols + col] = dgamma;
    }
}

// dbeta and dgamma: each column's chunk partials added in order. 1-d launch over cols.
@compute @workgroup_size(256)
fn bn_grad_finish(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let col = flat_index(wid, nwg, lid);
    if (col >= p.cols) {
        return;
    }
    var dbeta = 0.0;
    var dgamma = 0.0;
    for (var k = 0u; k < p.chunks; k++) {
        dbeta += partial[k * p.cols + col];
        dgamma += partial[(p.chunks + k) * p.cols + col];
    }
    store_grads(col, dbeta, dgamma);
}

// bn_grad_partials and bn_grad_finish in one workgroup per 16 columns, going over every chunk.
// Dispatch: (ceil(cols / 16), 1, 1).
@compute @workgroup_size(16, 16)
fn bn_grad_sums(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let col = wid.x * 16u + lid.x;
    var dbeta = 0.0;
    var dgamma = 0.0;
    for (var k = 0u; k < p.chunks; k++) {
        let acc = grad_terms(col, k, lid.y);
        dbeta += lanes_total(lid, acc.x);
        dgamma += lanes_total(lid, acc.y);
    }
    if (lid.y == 0u && col < p.cols) {
        store_grads(col, dbeta, dgamma);
    }
}

// dx = gamma * invstd / R * (R * dy - dbeta - xhat * dgamma)   (Ioffe & Szegedy 2015)
@compute @workgroup_size(256)
fn bn_backward_dx(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let i = flat_index(wid, nwg, lid);
    if (i >= p.rows * p.cols) {
        return;
    }
    let c = i % p.cols;
    let r = f32(p.rows);
    let xhat = (x[i] - mean[c]) * scale[c];
    var g = dy[i];
    if (ACT != 0u) {
        g = act_bwd(act_out[i], g, ACT);
    }
    y[i] = gamma[c] * scale[c] / r * (r * g - coef[2u * c] - xhat * coef[2u * c + 1u]);
}
