// Element-wise epilogues over a [rows x cols] tensor, one invocation per element (1-d launch).

struct Params {
    rows: u32,
    cols: u32,
    relu: u32, // 1: clamp at 0 after the bias
    len: u32,  // elements covered by relu_backward
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> x: array<f32>; // activations (bias_act, act) or dy (relu_backward)
@group(0) @binding(2) var<storage, read> v: array<f32>;       // bias[cols] (bias_act) or the ReLU output y (relu_backward)

// x = x + bias (+ ReLU): the fused epilogue of Linear and Conv2d.
@compute @workgroup_size(256)
fn bias_act(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let i = flat_index(wid, nwg, lid);
    if (i >= p.rows * p.cols) {
        return;
    }
    var r = x[i] + v[i % p.cols];
    if (p.relu != 0u) {
        r = max(r, 0.0);
    }
    x[i] = r;
}

// x = max(x, 0): ReLU in place (after batch norm).
@compute @workgroup_size(256)
fn relu(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let i = flat_index(wid, nwg, lid);
    if (i >= p.rows * p.cols) {
        return;
    }
    x[i] = max(x[i], 0.0);
}

// dy = dy * (y > 0): ReLU backward from its output.
@compute @workgroup_size(256)
fn relu_backward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let i = flat_index(wid, nwg, lid);
    if (i >= p.len) {
        return;
    }
    if (v[i] <= 0.0) {
        x[i] = 0.0;
    }
}

// The activation this pipeline computes (Act::code): 1 ReLU, 2 sigmoid, 3 tanh.
override ACT: u32 = 1u;

fn act_apply(x: f32) -> f32 {
    switch ACT {
        case 2u: { return 1.0 / (1.0 + exp(-x)); }
        case 3u: { return tanh(x); }
        default: { return max(x, 0.0); }
    }
}

// dy * act'(x), from the output y = act(x).
fn act_grad(y: f32, dy: f32) -> f32 {
    switch ACT {
        case 2u: { return dy * y * (1.0 - y); }
        case 3u: { return dy * (1.0 - y * y); }
        default: { return select(0.0, dy, y > 0.0); }
    }
}

// x (binding 1) = act(v (binding 2)) over p.len elements: an activation layer's forward.
@compute @workgroup_size(256)
fn act_forward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let i = flat_index(wid, nwg, lid);
    if (i >= p.len) {
        return;
    }
    x[i] = act_apply(v[i]);
}

// x (binding 1, dy) = act'(.) * dy from the output v (binding 2) over p.len elements.
@compute @workgroup_size(256)
fn act_backward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let i = flat_index(wid, nwg, lid);
    if (i >= p.len) {
        return;
    }
    x[i] = act_grad(v[i], x[i]);
}
