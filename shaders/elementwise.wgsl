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
