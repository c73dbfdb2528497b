// Optimizer updates, one invocation per parameter element (1-d launch over len).

struct Params {
    len: u32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
    lr: f32,
    beta1: f32, // Adam's beta1, or RMSProp's decay rho
    beta2: f32,
    eps: f32,
    c1: f32,    // Adam's bias corrections 1 - beta1^t and 1 - beta2^t (host-computed, per step)
    c2: f32,
    _pad3: f32,
    _pad4: f32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> w: array<f32>;
@group(0) @binding(2) var<storage, read> g: array<f32>;
@group(0) @binding(3) var<storage, read_write> s1: array<f32>; // RMSProp's mean square; Adam's first moment
@group(0) @binding(4) var<storage, read_write> s2: array<f32>; // Adam's second moment

@compute @workgroup_size(256)
fn sgd(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let i = flat_index(wid, nwg, lid);
    if (i >= p.len) {
        return;
    }
    w[i] = w[i] - p.lr * g[i];
}

// ms = rho * ms + (1 - rho) * g^2; w -= lr * g / (sqrt(ms) + eps)
@compute @workgroup_size(256)
fn rmsprop(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let i = flat_index(wid, nwg, lid);
    if (i >= p.len) {
        return;
    }
    let gi = g[i];
    let ms = p.beta1 * s1[i] + (1.0 - p.beta1) * gi * gi;
    s1[i] = ms;
    w[i] = w[i] - p.lr * gi / (sqrt(ms) + p.eps);
}

// m, v moments; w -= lr * (m / c1) / (sqrt(v / c2) + eps)
@compute @workgroup_size(256)
fn adam(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let i = flat_index(wid, nwg, lid);
    if (i >= p.len) {
        return;
    }
    let gi = g[i];
    let m = p.beta1 * s1[i] + (1.0 - p.beta1) * gi;
    let v = p.beta2 * s2[i] + (1.0 - p.beta2) * gi * gi;
    s1[i] = m;
    s2[i] = v;
    w[i] = w[i] - p.lr * (m / p.c1) / (sqrt(v / p.c2) + p.eps);
}
