// Batch norm over the rows of x[rows x cols] (BatchNorm1d on [N, C], BatchNorm2d on NHWC as [N*H*W, C]).
// Every column sum adds chunks of `chunk_rows` rows in chunk order, each chunk by the 16 x 16 lanes of
// column_lanes.wgsl, so the fused kernels (few rows) and the per-chunk passes (many rows, the chunks
// spread over workgroups) round alike, bit for bit.
// Forward: bn_sum_partials, bn_sqdev_partials, bn_normalise_chunks; or bn_forward_fused; over very
// many chunks, bn_finish_mean and bn_finish_invstd in between.
// Backward: bn_grad_partials, bn_grad_finish; or bn_grad_sums; then bn_backward_dx. Or, few rows and
// 9 storage buffers a stage, bn_backward_fused.
// Evaluation: bn_eval.
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
    finished: u32, // 1: bn_finish_mean / bn_finish_invstd stored the statistic; the passes read it
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(5) var<storage, read_write> y: array<f32>;  // output, or dx (backward)
@group(0) @binding(6) var<storage, read> gamma: array<f32>;
@group(0) @binding(7) var<storage, read> beta: array<f32>;
@group(0) @binding(8) var<storage, read> mean: array<f32>;     // batch mean, or running mean (eval)
@group(0) @binding(9) var<storage, read> scale: array<f32>;    // invstd, or running variance (eval)
@group(0) @binding(10) var<storage, read> dy: array<f32>;
@group(0) @binding(12) var<storage, read> act_out: array<f32>; // backward with ACT: the forward output
// dbeta and dgamma side by side, coef[2c] and coef[2c + 1], for bn_backward_dx: with them in one
// buffer it binds 8 storage buffers, the most WebGPU grants per stage.
@group(0) @binding(13) var<storage, read_write> coef: array<f32>;
@group(0) @binding(14) var<storage, read_write> mean_out: array<f32>;
@group(0) @binding(15) var<storage, read_write> invstd_out: array<f32>;
@group(0) @binding(16) var<storage, read_write> running_mean: array<f32>;
@group(0) @binding(17) var<storage, read_write> running_var: array<f32>;
// Chunk partials, [2 x chunks x cols]: forward, sum x and sum (x - mean)^2; backward, dbeta and dgamma.
@group(0) @binding(18) var<storage, read_write> partial: array<f32>;
@group(0) @binding(19) var<storage, read_write> dbeta_out: array<f32>;
@group(0) @binding(20) var<storage, read_write> dgamma_out: array<f32>;

fn act(v: f32) -> f32 {
    return act_fwd(v, ACT);
}

// One lane's sum of (x - m)^2 over its rows of chunk k (lane_sum, chunk_end: column_lanes.wgsl).
fn lane_sqdev(col: u32, k: u32, ly: u32, m: f32) -> f32 {
    var acc = 0.0;
    if (col < p.cols) {
        for (var r = k * p.chunk_rows + ly; r < chunk_end(k); r += 16u) {
            let d = x[r * p.cols + col] - m;
            acc += d * d;
        }
    }
    return acc;
}

// Column col's partials in `half` (0 or 1) of `partial`, added in chunk order.
fn partials_total(half: u32, col: u32) -> f32 {
    var s = 0.0;
    for (var k = 0u; k < p.chunks; k++) {
        s += partial[(half * p.chunks + k) * p.cols + col];
    }
    return s;
}

// mean = sum x / rows; with `store`, written out and running_mean moved toward it.
fn finish_mean(col: u32, total: f32, store: bool) -> f32 {
    let m = total / f32(p.rows);
    if (store) {
        mean_out[col] = m;
        running_mean[col] = (1.0 - p.momentum) * running_mean[col] + p.momentum * m;
    }
    return m;
}

// invstd = 1 / sqrt(var + eps) from sum (x - mean)^2; with `store`, written out and running_var
// moved toward the unbiased variance.
fn finish_invstd(col: u32, total: f32, store: bool) -> f32 {
    let v = total / f32(p.rows);
    let s = 1.0 / sqrt(v + p.eps);
    if (store) {
        invstd_out[col] = s;
        running_var[col] = (1.0 - p.momentum) * running_var[col] + p.momentum * v * p.unbias;
    }
    return s;
}

// y = act(gamma * (x - mean) * invstd + beta) over a lane's rows from r0 + ly up to r1.
fn normalise_rows(col: u32, r0: u32, r1: u32, ly: u32, m: f32, s: f32) {
    if (col >= p.cols) {
        return;
    }
    for (var r = r0 + ly; r < r1; r += 16u) {
        let i = r * p.cols + col;
        y[i] = act(gamma[col] * (x[i] - m) * s + beta[col]);
    }
}

// The workgroup's 16 column means and invstds, shared by its row lanes.
var<workgroup> column_mean: array<f32, 16>;
var<workgroup> column_invstd: array<f32, 16>;

// ---- Forward over many rows: three passes of (ceil(cols / 16), chunks) workgroups ----

// Chunk wid.y's sums of x.
@compute @workgroup_size(16, 16)
fn bn_sum_partials(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let col = wid.x * 16u + lid.x;
    let total = lanes_total(lid, lane_sum(col, wid.y, lid.y));
    if (lid.y == 0u && col < p.cols) {
        partial[wid.y * p.cols + col] = total;
    }
}

// Every workgroup adds up the sums' partials for the mean (chunk 0's stores it and moves the running
// mean), or reads it where bn_finish_mean did that; then writes chunk wid.y's sums of (x - mean)^2.
@compute @workgroup_size(16, 16)
fn bn_sqdev_partials(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let col = wid.x * 16u + lid.x;
    if (lid.y == 0u && col < p.cols) {
        if (p.finished != 0u) {
            column_mean[lid.x] = mean_out[col];
        } else {
            column_mean[lid.x] = finish_mean(col, partials_total(0u, col), wid.y == 0u);
        }
    }
    workgroupBarrier();
    let total = lanes_total(lid, lane_sqdev(col, wid.y, lid.y, column_mean[lid.x]));
    if (lid.y == 0u && col < p.cols) {
        partial[(p.chunks + wid.y) * p.cols + col] = total;
    }
}

// Every workgroup adds up the squared deviations' partials for invstd (chunk 0's stores it and moves
// the running variance), or reads it where bn_finish_invstd did that; then normalises chunk wid.y's
// rows.
@compute @workgroup_size(16, 16)
fn bn_normalise_chunks(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let col = wid.x * 16u + lid.x;
    if (lid.y == 0u && col < p.cols) {
        if (p.finished != 0u) {
            column_invstd[lid.x] = invstd_out[col];
        } else {
            column_invstd[lid.x] = finish_invstd(col, partials_total(1u, col), wid.y == 0u);
        }
    }
    workgroupBarrier();
    if (col < p.cols) {
        let r0 = wid.y * p.chunk_rows;
        normalise_rows(col, r0, chunk_end(wid.y), lid.y, mean_out[col], column_invstd[lid.x]);
    }
}

// Over very many chunks: the statistic once per column (1-d launch over cols), between the passes.
@compute @workgroup_size(256)
fn bn_finish_mean(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let col = flat_index(wid, nwg, lid);
    if (col < p.cols) {
        finish_mean(col, partials_total(0u, col), true);
    }
}

@compute @workgroup_size(256)
fn bn_finish_invstd(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let col = flat_index(wid, nwg, lid);
    if (col < p.cols) {
        finish_invstd(col, partials_total(1u, col), true);
    }
}

// ---- Forward over few rows: one pass of (ceil(cols / 16), 1) workgroups ----

// The three passes above in one workgroup per 16 columns that goes over every chunk itself: the same
// sums in the same order, so the same bits.
@compute @workgroup_size(16, 16)
fn bn_forward_fused(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let col = wid.x * 16u + lid.x;
    let sum = column_total(col, lid);
    if (lid.y == 0u && col < p.cols) {
        column_mean[lid.x] = finish_mean(col, sum, true);
    }
    workgroupBarrier();
    let m = column_mean[lid.x];
    var total = 0.0;
    for (var k = 0u; k < p.chunks; k++) {
        total += lanes_total(lid, lane_sqdev(col, k, lid.y, m));
    }
    if (lid.y == 0u && col < p.cols) {
        column_invstd[lid.x] = finish_invstd(col, total, true);
    }
    workgroupBarrier();
    normalise_rows(col, 0u, p.rows, lid.y, m, column_invstd[lid.x]);
}

// ---- Evaluation: one invocation per element ----

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

// ---- Backward ----

// One lane's terms of dbeta (dy) and dgamma (dy * xhat) over its rows of chunk k, dy taken through
// the fused activation from the forward output.
fn grad_terms(col: u32, k: u32, ly: u32) -> vec2<f32> {
    var acc = vec2<f32>(0.0, 0.0);
    if (col >= p.cols) {
        return acc;
    }
    let m = mean[col];
    let s = scale[col];
    for (var r = k * p.chunk_rows + ly; r < chunk_end(k); r += 16u) {
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
        partial[wid.y * p.cols + col] = dbeta;
        partial[(p.chunks + wid.y) * p.cols + col] = dgamma;
    }
}

// dbeta and dgamma: each column's chunk partials added in order. 1-d launch over cols.
@compute @workgroup_size(256)
fn bn_grad_finish(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let col = flat_index(wid, nwg, lid);
    if (col >= p.cols) {
        return;
    }
    store_grads(col, partials_total(0u, col), partials_total(1u, col));
}

// Column col's (dbeta, dgamma), chunk by chunk in order, by one workgroup; every invocation gets
// them. Barriers inside: call it from uniform control flow.
fn grad_totals(col: u32, lid: vec3<u32>) -> vec2<f32> {
    var totals = vec2<f32>(0.0, 0.0);
    for (var k = 0u; k < p.chunks; k++) {
        let acc = grad_terms(col, k, lid.y);
        totals.x += lanes_total(lid, acc.x);
        totals.y += lanes_total(lid, acc.y);
    }
    return totals;
}

// bn_grad_partials and bn_grad_finish in one workgroup per 16 columns, going over every chunk.
// Dispatch: (ceil(cols / 16), 1, 1).
@compute @workgroup_size(16, 16)
fn bn_grad_sums(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let col = wid.x * 16u + lid.x;
    let totals = grad_totals(col, lid);
    if (lid.y == 0u && col < p.cols) {
        store_grads(col, totals.x, totals.y);
    }
}

// dx = gamma * invstd / R * (R * dy - dbeta - xhat * dgamma)   (Ioffe & Szegedy 2015) at element i
// of column c, dy taken through the fused activation.
fn dx_at(i: u32, c: u32, dbeta: f32, dgamma: f32) {
    let r = f32(p.rows);
    let xhat = (x[i] - mean[c]) * scale[c];
    var g = dy[i];
    if (ACT != 0u) {
        g = act_bwd(act_out[i], g, ACT);
    }
    y[i] = gamma[c] * scale[c] / r * (r * g - dbeta - xhat * dgamma);
}

// One invocation per element, dbeta and dgamma from coef.
@compute @workgroup_size(256)
fn bn_backward_dx(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let i = flat_index(wid, nwg, lid);
    if (i >= p.rows * p.cols) {
        return;
    }
    let c = i % p.cols;
    dx_at(i, c, coef[2u * c], coef[2u * c + 1u]);
}

// bn_grad_sums and bn_backward_dx in one workgroup per 16 columns: the same sums, then dx over every
// row of its columns. It binds 9 storage buffers (no coef), so it runs where the device grants that
// many per stage (WebGPU's default is 8). Dispatch: (ceil(cols / 16), 1, 1).
@compute @workgroup_size(16, 16)
fn bn_backward_fused(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let col = wid.x * 16u + lid.x;
    let totals = grad_totals(col, lid);
    if (col >= p.cols) {
        return;
    }
    if (lid.y == 0u) {
        dbeta_out[col] = totals.x;
        dgamma_out[col] = totals.y;
    }
    for (var r = lid.y; r < p.rows; r += 16u) {
        dx_at(r * p.cols + col, col, totals.x, totals.y);
    }
}
