// Dropout with a counter-based generator: whether element i is kept at a step is a hash of (key, step,
// i), the same u32 arithmetic as the CPU twin (backend/dropout.rs), so both backends drop the same
// elements, and a resumed or repeated run drops them again. Kept elements are scaled by 1 / (1 - p).

struct Params {
    len: u32,
    threshold: u32, // dropped where hash < threshold (p * 2^32)
    key_lo: u32,
    key_hi: u32,
    step_lo: u32,
    step_hi: u32,
    scale: f32,     // 1 / (1 - p)
    _pad0: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> src: array<f32>;        // x (forward) or the mask (backward)
@group(0) @binding(2) var<storage, read_write> dst: array<f32>;  // y (forward) or dy, in place (backward)
@group(0) @binding(3) var<storage, read_write> mask: array<f32>; // forward: 0 or scale per element

// PCG's output permutation of one LCG step (O'Neill 2014), as a 32-bit hash.
fn pcg(v: u32) -> u32 {
    let state = v * 747796405u + 2891336453u;
    let word = ((state >> ((state >> 28u) + 4u)) ^ state) * 277803737u;
    return (word >> 22u) ^ word;
}

fn element_hash(i: u32) -> u32 {
    return pcg(i ^ pcg(p.step_lo ^ pcg(p.step_hi ^ pcg(p.key_lo ^ pcg(p.key_hi)))));
}

@compute @workgroup_size(256)
fn dropout_forward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let i = flat_index(wid, nwg, lid);
    if (i >= p.len) {
        return;
    }
    let m = select(p.scale, 0.0, element_hash(i) < p.threshold);
    mask[i] = m;
    dst[i] = src[i] * m;
}

@compute @workgroup_size(256)
fn dropout_backward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let i = flat_index(wid, nwg, lid);
    if (i >= p.len) {
        return;
    }
    dst[i] = dst[i] * src[i];
}
