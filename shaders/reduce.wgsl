// Column sums of a [rows x cols] tensor in two deterministic passes (the bias gradient; batch norm's
// sums are in batchnorm.wgsl, with the same lanes):
//   sum_partials: workgroup (16 columns x 16 row lanes) per (column block, chunk of `chunk_rows` rows)
//                 writes partial[chunk, col]; dispatch (ceil(cols / 16), chunks, 1).
//   column_sum: one invocation per column adds its chunks in order; 1-d launch over cols.
//   column_sum_fused (few rows): both in one workgroup per 16 columns; dispatch (ceil(cols / 16), 1, 1).

struct Params {
    rows: u32,
    cols: u32,
    chunk_rows: u32,
    chunks: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;             // the reduced tensor
@group(0) @binding(5) var<storage, read_write> partial: array<f32>; // [chunks x cols]

// Adds the 16 row lanes of each column (column_lanes.wgsl) and stores the chunk's partial.
fn finish_partial(lid: vec3<u32>, col: u32, chunk: u32, acc: f32) {
    let total = lanes_total(lid, acc);
    if (lid.y == 0u && col < p.cols) {
        partial[chunk * p.cols + col] = total;
    }
}

// sum_r x[r, c] (lane_sum: column_lanes.wgsl)
@compute @workgroup_size(16, 16)
fn sum_partials(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let col = wid.x * 16u + lid.x;
    finish_partial(lid, col, wid.y, lane_sum(col, wid.y, lid.y));
}

@group(0) @binding(6) var<storage, read_write> out: array<f32>; // [cols]

// out[c] = sum over chunks of partial[chunk, c]
@compute @workgroup_size(256)
fn column_sum(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let col = flat_index(wid, nwg, lid);
    if (col >= p.cols) {
        return;
    }
    var s = 0.0;
    for (var k = 0u; k < p.chunks; k++) {
        s += partial[k * p.cols + col];
    }
    out[col] = s;
}

// sum_partials and column_sum in one workgroup per 16 columns that goes over every chunk itself (few
// rows): the same sums in the same order, so the same bits. Dispatch: (ceil(cols / 16), 1, 1).
@compute @workgroup_size(16, 16)
fn column_sum_fused(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let col = wid.x * 16u + lid.x;
    let s = column_total(col, lid);
    if (lid.y == 0u && col < p.cols) {
        out[col] = s;
    }
}
