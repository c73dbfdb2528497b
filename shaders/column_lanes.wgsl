// Column sums by a 16 x 16 workgroup: 16 columns side by side, 16 row lanes each. Appended to the
// families that reduce columns (reduce.wgsl, batchnorm.wgsl), so every column sum adds its lanes in
// the one order below and a fused kernel rounds exactly as the separate passes it replaces.

var<workgroup> lanes: array<f32, 256>;

// Adds the 16 row lanes of each column (halving: 8, 4, 2, 1 apart); every invocation gets the total
// of its column (lid.x). Barriers inside: call it from uniform control flow.
fn lanes_total(lid: vec3<u32>, acc: f32) -> f32 {
    lanes[lid.y * 16u + lid.x] = acc;
    workgroupBarrier();
    for (var s = 8u; s > 0u; s = s / 2u) {
        if (lid.y < s) {
            lanes[lid.y * 16u + lid.x] += lanes[(lid.y + s) * 16u + lid.x];
        }
        workgroupBarrier();
    }
    let total = lanes[lid.x];
    // The next call may overwrite the lanes only after every invocation has read its total.
    workgroupBarrier();
    return total;
}
