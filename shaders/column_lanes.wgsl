// Column sums by a 16 x 16 workgroup: 16 columns side by side, 16 row lanes each, over chunks of
// p.chunk_rows rows. Appended to the families that reduce columns (reduce.wgsl, batchnorm.wgsl), so
// every column sum walks its rows and adds its lanes in the one order below, and a fused kernel rounds
// exactly as the separate passes it replaces. The family declares `p` (with rows, cols, chunks and
// chunk_rows) and `x`, the [rows x cols] tensor summed.

var<workgroup> lanes: array<f32, 256>;

// The end of chunk k's rows; row lane ly takes the chunk's rows ly, ly + 16, ...
fn chunk_end(k: u32) -> u32 {
    return min((k + 1u) * p.chunk_rows, p.rows);
}

// One lane's sum of x over its rows of chunk k.
fn lane_sum(col: u32, k: u32, ly: u32) -> f32 {
    var acc = 0.0;
    if (col < p.cols) {
        for (var r = k * p.chunk_rows + ly; r < chunk_end(k); r += 16u) {
            acc += x[r * p.cols + col];
        }
    }
    return acc;
}

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

// The whole sum of column `col` (this invocation's), chunk by chunk in order, by one workgroup (the
// fused kernels, few rows); every invocation gets it. Barriers inside: call it from uniform control
// flow.
fn column_total(col: u32, lid: vec3<u32>) -> f32 {
    var total = 0.0;
    for (var k = 0u; k < p.chunks; k++) {
        total += lanes_total(lid, lane_sum(col, k, lid.y));
    }
    return total;
}
