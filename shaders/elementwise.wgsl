// Element-wise epilogues over a [rows x cols] tensor, one invocation per element (1-d launch).

struct Params {
    rows: u32,
    cols: u32,
    act: u32,  // bias_act, act_in_place: the activation after the bias (Act::code; 0: none)
    len: u32,  // elements covered by act_forward / act_backward
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> x: array<f32>; // activations, or dy (act_backward)
@group(0) @binding(2) var<storage, read> v: array<f32>;       // bias[cols] (bias_act), x (act_forward) or y (act_backward)

// x = act(x + bias): the fused epilogue of Linear and Conv2d.
@compute @workgroup_size(256)
fn bias_act(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let i = flat_index(wid, nwg, lid);
    if (i >= p.rows * p.cols) {
        return;
    }
    x[i] = act_fwd(x[i] + v[i % p.cols], p.act);
}

// x = act(x) in place: the epilogue without a bias.
@compute @workgroup_size(256)
fn act_in_place(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let i = flat_index(wid, nwg, lid);
    if (i >= p.rows * p.cols) {
        return;
    }
    x[i] = act_fwd(x[i], p.act);
}

// The activation this pipeline's act_forward / act_backward compute (Act::code; see common.wgsl).
override ACT: u32 = 1u;

// x (binding 1) = act(v (binding 2)) over p.len elements: an activation layer's forward.
@compute @workgroup_size(256)
fn act_forward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let i = flat_index(wid, nwg, lid);
    if (i >= p.len) {
        return;
    }
    x[i] = act_fwd(v[i], ACT);
}

// x (binding 1, dy) = act'(.) * dy from the output v (binding 2) over p.len elements.
@compute @workgroup_size(256)
fn act_backward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let i = flat_index(wid, nwg, lid);
    if (i >= p.len) {
        return;
    }
    x[i] = act_bwd(v[i], x[i], ACT);
}
