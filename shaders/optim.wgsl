// Optimizer updates, one invocation per parameter element (1-d launch over len), and the global
// gradient norm for clipping (one workgroup).
//
// The gradient an update uses: g, times scale[0] when clipping, plus wd * w for L2 decay (not for
// AdamW, whose decay is decoupled). With neither, it is g itself: plain SGD, RMSProp and Adam are
// what they always were.

struct Params {
    len: u32,
    nesterov: u32,  // SGD: Nesterov momentum
    clip: u32,      // multiply the gradient by scale[0]
    decoupled: u32, // Adam: AdamW's decoupled weight decay
    lr: f32,
    beta1: f32, // Adam's beta1, or RMSProp's decay rho
    beta2: f32,
    eps: f32,
    c1: f32,    // Adam's bias corrections 1 - beta1^t and 1 - beta2^t (host-computed, per step)
    c2: f32,
    wd: f32,
    momentum: f32,
    max_norm: f32, // grad_sumsq: the clipping bound
    first: u32,    // grad_sumsq: the first tensor of the norm (start from 0)
    last: u32,     // grad_sumsq: the last (turn the sum into the scale)
    _pad: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> w: array<f32>;
@group(0) @binding(2) var<storage, read> g: array<f32>;
@group(0) @binding(3) var<storage, read_write> s1: array<f32>; // momentum; RMSProp's mean square; Adam's first moment
@group(0) @binding(4) var<storage, read_write> s2: array<f32>; // Adam's second moment
@group(0) @binding(5) var<storage, read> scale: array<f32>;    // clip_scale's output
@group(0) @binding(6) var<storage, read_write> acc: array<f32>; // grad_sumsq: running sum, then the scale

// The gradient of element i as the rule sees it (see the top of the file).
fn grad_of(i: u32, wi: f32) -> f32 {
    var gi = g[i];
    if (p.clip != 0u) {
        gi = gi * scale[0];
    }
    if (p.wd != 0.0 && p.decoupled == 0u) {
        gi = gi + p.wd * wi;
    }
    return gi;
}

@compute @workgroup_size(256)
fn sgd(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let i = flat_index(wid, nwg, lid);
    if (i >= p.len) {
        return;
    }
    let wi = w[i];
    w[i] = wi - p.lr * grad_of(i, wi);
}

// buf = momentum * buf + g; w -= lr * buf (Nesterov: w -= lr * (g + momentum * buf))
@compute @workgroup_size(256)
fn sgd_momentum(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let i = flat_index(wid, nwg, lid);
    if (i >= p.len) {
        return;
    }
    let wi = w[i];
    let gi = grad_of(i, wi);
    let b = p.momentum * s1[i] + gi;
    s1[i] = b;
    var update = b;
    if (p.nesterov != 0u) {
        update = gi + p.momentum * b;
    }
    w[i] = wi - p.lr * update;
}

// ms = rho * ms + (1 - rho) * g^2; w -= lr * g / (sqrt(ms) + eps)
@compute @workgroup_size(256)
fn rmsprop(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let i = flat_index(wid, nwg, lid);
    if (i >= p.len) {
        return;
    }
    let wi = w[i];
    let gi = grad_of(i, wi);
    let ms = p.beta1 * s1[i] + (1.0 - p.beta1) * gi * gi;
    s1[i] = ms;
    w[i] = wi - p.lr * gi / (sqrt(ms) + p.eps);
}

// m, v moments; w -= lr * (m / c1) / (sqrt(v / c2) + eps), after w -= lr * wd * w for AdamW
@compute @workgroup_size(256)
fn adam(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let i = flat_index(wid, nwg, lid);
    if (i >= p.len) {
        return;
    }
    var wi = w[i];
    let gi = grad_of(i, wi);
    if (p.decoupled != 0u && p.wd != 0.0) {
        wi = wi - p.lr * p.wd * wi;
    }
    let m = p.beta1 * s1[i] + (1.0 - p.beta1) * gi;
    let v = p.beta2 * s2[i] + (1.0 - p.beta2) * gi * gi;
    s1[i] = m;
    s2[i] = v;
    w[i] = wi - p.lr * (m / p.c1) / (sqrt(v / p.c2) + p.eps);
}

var<workgroup> partial: array<f32, 256>;

// One workgroup: acc[0] (= 0 for the first tensor) += sum of g^2 over g[0..len]; for the last tensor,
// acc[0] becomes min(1, max_norm / (sqrt(sum) + 1e-6)). Each thread sums a strided share, then a tree.
@compute @workgroup_size(256)
fn grad_sumsq(@builtin(local_invocation_id) lid: vec3<u32>) {
    let t = lid.x;
    var s = 0.0;
    for (var i = t; i < p.len; i = i + 256u) {
        let v = g[i];
        s = s + v * v;
    }
    partial[t] = s;
    workgroupBarrier();
    for (var half = 128u; half > 0u; half = half / 2u) {
        if (t < half) {
            partial[t] = partial[t] + partial[t + half];
        }
        workgroupBarrier();
    }
    if (t == 0u) {
        var total = partial[0];
        if (p.first == 0u) {
            total = total + acc[0];
        }
        if (p.last != 0u) {
            acc[0] = min(1.0, p.max_norm / (sqrt(total) + 1e-6));
        } else {
            acc[0] = total;
        }
    }
}
