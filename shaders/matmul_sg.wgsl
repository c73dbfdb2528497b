// Subgroup variants of the vec4 kernels in matmul.wgsl, for CPU-emulated adapters whose subgroups are
// 8 lanes wide (lavapipe on AVX2). Appended to matmul.wgsl (same Params, bindings and helpers) as its
// own module, created only on devices with the SUBGROUP feature.
//
// Why: lavapipe runs 8 invocations as the 8 lanes of one SIMD vector, but it loads a storage buffer
// lane by lane (a scalar loop with a bounds check per lane and component), so loads, not arithmetic,
// bound its matmuls. In the *_v4 kernels the 8 invocations of a subgroup compute the same 8 rows of C
// (different columns) and all load the same 8 vectors of A. Here each lane loads one of them and
// `subgroupBroadcast` (a register shuffle on lavapipe) hands it to the others: 9 vector loads per lane
// per 4 k instead of 16, and 1.66x the GFLOP/s of matmul_nn_v4 at 512^3.
//
//   matmul_nn_sg, matmul_nt_sg, matmul_tn_sg: the blocking of matmul_nn_v4 / _nt_v4 / _tn_v4 (8 rows x 8
//   consecutive columns per invocation), the same shape conditions; a workgroup of 64 = 8 subgroups
//   of 8 covers 8 RG x 512 / RG of C (64x64 at RG = 8; see RG below), lane l of a subgroup columns
//   8l.. of its 64. Every lane runs every loop (no early return), since a
//   broadcast reads all of them; out-of-range rows and columns are clamped on load, skipped on store.

// The subgroup's 8 lanes' values of `v`, in lane order (a broadcast needs a constant lane).
fn lanes8(v: vec4<f32>) -> array<vec4<f32>, 8> {
    return array<vec4<f32>, 8>(
        subgroupBroadcast(v, 0u), subgroupBroadcast(v, 1u), subgroupBroadcast(v, 2u), subgroupBroadcast(v, 3u),
        subgroupBroadcast(v, 4u), subgroupBroadcast(v, 5u), subgroupBroadcast(v, 6u), subgroupBroadcast(v, 7u),
    );
}

// Row blocks of 8 per workgroup tile (1, 2, 4 or 8): the tile is 8 RG rows x 512 / RG columns, so a
// product with few rows (a convolution's weight gradient: 16 or 32 output channels) keeps every lane
// on real rows instead of clamped copies of the last one. Subgroup s takes row block s % RG and the
// s / RG-th 64 columns. Dispatch (ceil(n / (512 / RG)), ceil(m / (8 RG)), splits).
override RG: u32 = 8u;

// matmul_nt_sg_cols only: column blocks of 8 per tile (1, 2, 4 or 8); the tile is 512 / CG rows x 8 CG
// columns, subgroup s taking column block s % CG and the s / CG-th 64 rows, lane l rows 8l.. of them.
override CG: u32 = 8u;

// Rows row0.. and columns col0.. of the lane's 8x8 block of C.
fn sg_origin(wid: vec3<u32>, sg: u32, lane: u32) -> vec2<u32> {
    return vec2<u32>(wid.y * 8u * RG + (sg % RG) * 8u, wid.x * (512u / RG) + (sg / RG) * 64u + lane * 8u);
}

// NN: A [m x k], B [k x n]; k and n multiples of 4. Lane l loads A's row row0 + l.
@compute @workgroup_size(64)
fn matmul_nn_sg(@builtin(workgroup_id) wid: vec3<u32>, @builtin(subgroup_id) sg: u32, @builtin(subgroup_invocation_id) lane: u32) {
    let o = sg_origin(wid, sg, lane);
    let kr = k_range(wid.z);
    let k4 = p.k / 4u;
    let n4 = p.n / 4u;
    let my_row = min(o.x + lane, p.m - 1u) * k4;
    let cv0 = min(o.y / 4u, n4 - 1u);
    let cv1 = min(o.y / 4u + 1u, n4 - 1u);
    var acc: array<vec4<f32>, 16>;
    var sum: array<vec4<f32>, 16>;
    for (var k0 = kr.x; k0 < kr.y; k0 += 256u) {
        block_start(&acc);
        for (var kk = k0; kk < min(k0 + 256u, kr.y); kk += 4u) {
            let b = nn_b(kk * n4, n4, cv0, cv1);
            let av = lanes8(a4[my_row + kk / 4u]);
            nn_block(&acc, av, b);
        }
        block_end(&sum, &acc);
    }
    store_block(wid.z, o.x, o.y, &sum);
}

// NT: A [m x k], B [n x k]; k a multiple of 4. Lane l loads A's row row0 + l.
@compute @workgroup_size(64)
fn matmul_nt_sg(@builtin(workgroup_id) wid: vec3<u32>, @builtin(subgroup_id) sg: u32, @builtin(subgroup_invocation_id) lane: u32) {
    let o = sg_origin(wid, sg, lane);
    let kr = k_range(wid.z);
    let k4 = p.k / 4u;
    let my_row = min(o.x + lane, p.m - 1u) * k4;
    let rb = rows8(o.y, p.n - 1u, k4);
    var acc: array<vec4<f32>, 16>;
    var sum: array<vec4<f32>, 16>;
    for (var k0 = kr.x; k0 < kr.y; k0 += 256u) {
        block_start(&acc);
        for (var kk = k0; kk < min(k0 + 256u, kr.y); kk += 4u) {
            let q = kk / 4u;
            let bv = b_rows8(rb, q);
            let av = lanes8(a4[my_row + q]);
            nt_block(&acc, av, bv);
        }
        block_end(&sum, &acc);
    }
    store_block(wid.z, o.x, o.y, &sum);
}

// NT with few columns (a convolution's forward: C has one column per output channel, 16 or 32): the
// lanes of a subgroup take 8 different row blocks and share the same 8 columns, so B's 8 rows are the
// shared vectors (lane l loads row col0 + l) and no lane sits on clamped copies of the last column.
// Dispatch (ceil(n / (8 CG)), ceil(m / (512 / CG)), splits).
@compute @workgroup_size(64)
fn matmul_nt_sg_cols(@builtin(workgroup_id) wid: vec3<u32>, @builtin(subgroup_id) sg: u32, @builtin(subgroup_invocation_id) lane: u32) {
    let row0 = wid.y * (512u / CG) + (sg / CG) * 64u + lane * 8u;
    let col0 = wid.x * 8u * CG + (sg % CG) * 8u;
    let kr = k_range(wid.z);
    let k4 = p.k / 4u;
    let my_col = min(col0 + lane, p.n - 1u) * k4;
    let ra = rows8(row0, p.m - 1u, k4);
    var acc: array<vec4<f32>, 16>;
    var sum: array<vec4<f32>, 16>;
    for (var k0 = kr.x; k0 < kr.y; k0 += 256u) {
        block_start(&acc);
        for (var kk = k0; kk < min(k0 + 256u, kr.y); kk += 4u) {
            let q = kk / 4u;
            let bv = lanes8(b4[my_col + q]);
            let av = a_rows8(ra, q);
            nt_block(&acc, av, bv);
        }
        block_end(&sum, &acc);
    }
    store_block(wid.z, row0, col0, &sum);
}

// TN: A [k x m], B [k x n]; m and n multiples of 4. Per 4 k the subgroup needs 8 vectors of A (k + l / 2,
// rows row0 + 4 (l % 2)..): lane l loads the l-th.
@compute @workgroup_size(64)
fn matmul_tn_sg(@builtin(workgroup_id) wid: vec3<u32>, @builtin(subgroup_id) sg: u32, @builtin(subgroup_invocation_id) lane: u32) {
    let o = sg_origin(wid, sg, lane);
    let kr = k_range(wid.z);
    let m4 = p.m / 4u;
    let n4 = p.n / 4u;
    let my_rv = min(o.x / 4u + lane % 2u, m4 - 1u);
    let cv0 = min(o.y / 4u, n4 - 1u);
    let cv1 = min(o.y / 4u + 1u, n4 - 1u);
    var acc: array<vec4<f32>, 16>;
    var sum: array<vec4<f32>, 16>;
    for (var k0 = kr.x; k0 < kr.y; k0 += 256u) {
        block_start(&acc);
        var kk = k0;
        let kend = min(k0 + 256u, kr.y);
        for (; kk + 4u <= kend; kk += 4u) {
            // Constant indices into `av` throughout: a dynamic index into a local array is a
            // lane-by-lane loop on lavapipe.
            let av = lanes8(a4[(kk + lane / 2u) * m4 + my_rv]);
            tn_outer(&acc, av[0], av[1], b4[kk * n4 + cv0], b4[kk * n4 + cv1]);
            tn_outer(&acc, av[2], av[3], b4[(kk + 1u) * n4 + cv0], b4[(kk + 1u) * n4 + cv1]);
            tn_outer(&acc, av[4], av[5], b4[(kk + 2u) * n4 + cv0], b4[(kk + 2u) * n4 + cv1]);
            tn_outer(&acc, av[6], av[7], b4[(kk + 3u) * n4 + cv0], b4[(kk + 3u) * n4 + cv1]);
        }
        // The last 1-3 k of the slice (K is any length here), one at a time as in matmul_tn_v4.
        for (; kk < kend; kk++) {
            let a0 = a4[kk * m4 + min(o.x / 4u, m4 - 1u)];
            let a1 = a4[kk * m4 + min(o.x / 4u + 1u, m4 - 1u)];
            tn_outer(&acc, a0, a1, b4[kk * n4 + cv0], b4[kk * n4 + cv1]);
        }
        block_end(&sum, &acc);
    }
    store_block(wid.z, o.x, o.y, &sum);
}
