// C[m x n] = op(A)[m x k] * op(B)[k x n] (+ C if accumulate), row-major, then optionally + bias[col] and
// activation (the epilogue of a Linear or Conv2d layer, fused into the store).
//
// Each transposed form is its own pipeline: the override constants A_T and B_T fix how the operands
// are stored, so the inner loops index with constant strides.
//
// Split-K: a dispatch of (.., .., splits) workgroups gives slice z = gid.z the K range
// [z * k_split, min((z + 1) * k_split, k)); with splits > 1 each slice writes its partial product to
// c[z * m * n + ..] (c is then a scratch buffer) and `splitk_sum` adds the slices in order into C, so a
// long-K product with a small C fills the adapter and still sums in a fixed order.
//
// Every kernel sums K in blocks of 256 and adds the block sums to a running total: a K of 10^4-10^5 (the
// weight gradient of a first convolution, summed over every pixel of the batch) would otherwise lose
// ~1e-4 of relative accuracy to one long f32 accumulation.
//
//   matmul_tiled:  16x16 workgroup, 64x64 tile of C (4x4 per invocation, vec4 accumulators); K walked
//                  in slices of 16 staged in workgroup memory (for real GPUs).
//                  Dispatch (ceil(n / 64), ceil(m / 64), splits).
//   matmul_tiled_small: 16x16 workgroup, 16x16 tile (one element per invocation), for a C with fewer than
//                  64 rows or columns where 64x64 tiles would not fill the GPU. Dispatch
//                  (ceil(n / 16), ceil(m / 16), splits).
//   matmul_direct: 8x8 workgroup, 64x64 tile of C (8x8 per invocation), operands read straight from
//                  memory with no barriers (for CPU-emulated adapters such as lavapipe, where a barrier
//                  is costly and memory is the CPU's cache anyway). Dispatch (ceil(n / 64), ceil(m / 64), splits).
//   matmul_nn_v4, matmul_nt_v4, matmul_tn_v4: matmul_direct's blocking (8 rows x 8 consecutive
//                  columns per invocation) for one transposed form each, reading the operands as vec4
//                  along their unit-stride dimension (a CPU-emulated adapter then issues one load per 4
//                  floats). They need that dimension to be a multiple of 4: NN k and n, NT k, TN m and n.
//   splitk_sum:    one invocation per element of C; 1-d launch over m * n.
// All are bounds-safe for any shape: loads clamp their index, stores outside C are skipped.

override A_T: bool = false; // true: A is stored [k x m] and read transposed; false: [m x k]
override B_T: bool = false; // true: B is stored [n x k] and read transposed; false: [k x n]

struct Params {
    m: u32,
    k: u32,
    n: u32,
    accumulate: u32, // 1: add to C instead of overwriting it (the matmul kernels get 0 when split)
    k_split: u32,    // K per slice (a multiple of 256); k when not split
    splits: u32,     // slices; 1: write C directly
    epilogue: u32,   // bit 0: add bias[col]; bits 1-2: then the activation of that code (Act::code; common.wgsl), where C is finished, never to partials
    _pad1: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> a: array<f32>;
@group(0) @binding(2) var<storage, read> b: array<f32>;
@group(0) @binding(3) var<storage, read_write> c: array<f32>;    // C, or the slices' partials when split
@group(0) @binding(4) var<storage, read> partial: array<f32>;    // splitk_sum: [splits x m x n]
@group(0) @binding(5) var<storage, read> a4: array<vec4<f32>>;    // the *_v4 kernels: A as vec4
@group(0) @binding(6) var<storage, read> b4: array<vec4<f32>>;    // the *_v4 kernels: B as vec4
@group(0) @binding(7) var<storage, read> bias: array<f32>;        // the epilogue's bias (bound always)

// The fused epilogue of a finished element of C in column `col`: bias, then the activation, as the flags say.
fn epilogue(v: f32, col: u32) -> f32 {
    var r = v;
    if ((p.epilogue & 1u) != 0u) {
        r += bias[col];
    }
    return act_fwd(r, p.epilogue >> 1u);
}

// op(A)[r, kk] and op(B)[kk, col].
fn a_at(r: u32, kk: u32) -> f32 {
    if (A_T) {
        return a[kk * p.m + r];
    }
    return a[r * p.k + kk];
}
fn b_at(kk: u32, col: u32) -> f32 {
    if (B_T) {
        return b[col * p.k + kk];
    }
    return b[kk * p.n + col];
}

fn k_range(z: u32) -> vec2<u32> {
    let k0 = z * p.k_split;
    return vec2<u32>(k0, min(k0 + p.k_split, p.k));
}

// Stores four values of one row of the output, at columns col0 + j * col_step.
fn store_row(z: u32, row: u32, col0: u32, col_step: u32, v: vec4<f32>) {
    if (row >= p.m) {
        return;
    }
    let base = z * p.m * p.n + row * p.n;
    for (var j = 0u; j < 4u; j++) {
        let col = col0 + j * col_step;
        if (col < p.n) {
            var r = v[j];
            if (p.accumulate != 0u) {
                r += c[base + col];
            }
            c[base + col] = epilogue(r, col);
        }
    }
}

// The K-block bookkeeping of the 8x8-block kernels (acc[2i], acc[2i + 1]: row i, columns 0-3 and 4-7):
// acc restarts at each block of 256 K and `sum` collects the finished blocks.
fn block_start(acc: ptr<function, array<vec4<f32>, 16>>) {
    for (var i = 0u; i < 16u; i++) {
        (*acc)[i] = vec4<f32>(0.0);
    }
}
fn block_end(sum: ptr<function, array<vec4<f32>, 16>>, acc: ptr<function, array<vec4<f32>, 16>>) {
    for (var i = 0u; i < 16u; i++) {
        (*sum)[i] += (*acc)[i];
    }
}

@compute @workgroup_size(8, 8)
fn matmul_direct(@builtin(global_invocation_id) gid: vec3<u32>) {
    let row0 = gid.y * 8u;
    let col0 = gid.x * 8u;
    if (row0 >= p.m || col0 >= p.n) {
        return;
    }
    let kr = k_range(gid.z);
    // Clamped rows and columns: those past the edge re-read the last one; their results are not stored.
    var r: array<u32, 8>;
    var cl: array<u32, 8>;
    for (var i = 0u; i < 8u; i++) {
        r[i] = min(row0 + i, p.m - 1u);
        cl[i] = min(col0 + i, p.n - 1u);
    }
    // acc[2i] and acc[2i + 1]: row i, columns 0-3 and 4-7 of the block; sum: the finished K blocks.
    var acc: array<vec4<f32>, 16>;
    var sum: array<vec4<f32>, 16>;
    for (var k0 = kr.x; k0 < kr.y; k0 += 256u) {
        block_start(&acc);
        for (var kk = k0; kk < min(k0 + 256u, kr.y); kk++) {
            let b0 = vec4<f32>(b_at(kk, cl[0]), b_at(kk, cl[1]), b_at(kk, cl[2]), b_at(kk, cl[3]));
            let b1 = vec4<f32>(b_at(kk, cl[4]), b_at(kk, cl[5]), b_at(kk, cl[6]), b_at(kk, cl[7]));
            for (var i = 0u; i < 8u; i++) {
                let av = vec4<f32>(a_at(r[i], kk));
                acc[2u * i] = fma(av, b0, acc[2u * i]);
                acc[2u * i + 1u] = fma(av, b1, acc[2u * i + 1u]);
            }
        }
        block_end(&sum, &acc);
    }
    for (var i = 0u; i < 8u; i++) {
        store_row(gid.z, row0 + i, col0, 1u, sum[2u * i]);
        store_row(gid.z, row0 + i, col0 + 4u, 1u, sum[2u * i + 1u]);
    }
}

// ---- vec4 kernels for CPU-emulated adapters (see the header for when each applies) ----

// The 8x8 block of an invocation of the *_v4 kernels: rows row0.., columns col0.. (consecutive).
fn block_origin(wid: vec3<u32>, lid: vec3<u32>) -> vec2<u32> {
    return vec2<u32>(wid.y * 64u + lid.y * 8u, wid.x * 64u + lid.x * 8u);
}

// Stores an 8x8 block held as acc[2i] (row i, columns 0-3) and acc[2i + 1] (columns 4-7).
fn store_block(z: u32, row0: u32, col0: u32, acc: ptr<function, array<vec4<f32>, 16>>) {
    for (var i = 0u; i < 8u; i++) {
        store_row(z, row0 + i, col0, 1u, (*acc)[2u * i]);
        store_row(z, row0 + i, col0 + 4u, 1u, (*acc)[2u * i + 1u]);
    }
}

// The inner steps of the 8x8-block kernels (here and in matmul_sg.wgsl), written so that every index
// into a local array is a constant at each call: a dynamic one is a lane-by-lane loop on lavapipe.

// Offsets of the 8 rows first.. (clamped to last) of a matrix with `stride` vec4 per row.
fn rows8(first: u32, last: u32, stride: u32) -> array<u32, 8> {
    return array<u32, 8>(
        min(first, last) * stride, min(first + 1u, last) * stride, min(first + 2u, last) * stride,
        min(first + 3u, last) * stride, min(first + 4u, last) * stride, min(first + 5u, last) * stride,
        min(first + 6u, last) * stride, min(first + 7u, last) * stride,
    );
}

// Vector q of the 8 rows at offsets r, of A or of B.
fn a_rows8(r: array<u32, 8>, q: u32) -> array<vec4<f32>, 8> {
    return array<vec4<f32>, 8>(a4[r[0] + q], a4[r[1] + q], a4[r[2] + q], a4[r[3] + q], a4[r[4] + q], a4[r[5] + q], a4[r[6] + q], a4[r[7] + q]);
}
fn b_rows8(r: array<u32, 8>, q: u32) -> array<vec4<f32>, 8> {
    return array<vec4<f32>, 8>(b4[r[0] + q], b4[r[1] + q], b4[r[2] + q], b4[r[3] + q], b4[r[4] + q], b4[r[5] + q], b4[r[6] + q], b4[r[7] + q]);
}

// NN: B's rows k..k+3 (from offset bo, n4 vectors per row) at the vector columns cv0 and cv1, as
// b[2t] (row k + t, columns 0-3) and b[2t + 1] (columns 4-7).
fn nn_b(bo: u32, n4: u32, cv0: u32, cv1: u32) -> array<vec4<f32>, 8> {
    return array<vec4<f32>, 8>(
        b4[bo + cv0], b4[bo + cv1], b4[bo + n4 + cv0], b4[bo + n4 + cv1],
        b4[bo + 2u * n4 + cv0], b4[bo + 2u * n4 + cv1], b4[bo + 3u * n4 + cv0], b4[bo + 3u * n4 + cv1],
    );
}

// Row r of the block, NN: acc[2r], acc[2r + 1] += a (4 k of A's row r) times b (as nn_b gives it).
fn nn_row(acc: ptr<function, array<vec4<f32>, 16>>, r: u32, a: vec4<f32>, b: array<vec4<f32>, 8>) {
    (*acc)[2u * r] = fma(vec4<f32>(a.w), b[6], fma(vec4<f32>(a.z), b[4], fma(vec4<f32>(a.y), b[2], fma(vec4<f32>(a.x), b[0], (*acc)[2u * r]))));
    (*acc)[2u * r + 1u] = fma(vec4<f32>(a.w), b[7], fma(vec4<f32>(a.z), b[5], fma(vec4<f32>(a.y), b[3], fma(vec4<f32>(a.x), b[1], (*acc)[2u * r + 1u]))));
}

// Row r of the block, NT: 4 k of A's row r dotted with 4 k of each of B's 8 rows (C's columns).
fn nt_row(acc: ptr<function, array<vec4<f32>, 16>>, r: u32, a: vec4<f32>, b: array<vec4<f32>, 8>) {
    (*acc)[2u * r] += vec4<f32>(dot(a, b[0]), dot(a, b[1]), dot(a, b[2]), dot(a, b[3]));
    (*acc)[2u * r + 1u] += vec4<f32>(dot(a, b[4]), dot(a, b[5]), dot(a, b[6]), dot(a, b[7]));
}

// All 8 rows of the block: nn_row / nt_row for av[0..7] (8 calls, so each index stays a constant).
fn nn_block(acc: ptr<function, array<vec4<f32>, 16>>, av: array<vec4<f32>, 8>, b: array<vec4<f32>, 8>) {
    nn_row(acc, 0u, av[0], b);
    nn_row(acc, 1u, av[1], b);
    nn_row(acc, 2u, av[2], b);
    nn_row(acc, 3u, av[3], b);
    nn_row(acc, 4u, av[4], b);
    nn_row(acc, 5u, av[5], b);
    nn_row(acc, 6u, av[6], b);
    nn_row(acc, 7u, av[7], b);
}
fn nt_block(acc: ptr<function, array<vec4<f32>, 16>>, av: array<vec4<f32>, 8>, bv: array<vec4<f32>, 8>) {
    nt_row(acc, 0u, av[0], bv);
    nt_row(acc, 1u, av[1], bv);
    nt_row(acc, 2u, av[2], bv);
    nt_row(acc, 3u, av[3], bv);
    nt_row(acc, 4u, av[4], bv);
    nt_row(acc, 5u, av[5], bv);
    nt_row(acc, 6u, av[6], bv);
    nt_row(acc, 7u, av[7], bv);
}

// TN: acc += the outer product of one k: rows a0 (0-3) and a1 (4-7) of A, columns b0 (0-3) and b1 (4-7).
fn tn_outer(acc: ptr<function, array<vec4<f32>, 16>>, a0: vec4<f32>, a1: vec4<f32>, b0: vec4<f32>, b1: vec4<f32>) {
    tn_row(acc, 0u, a0.x, b0, b1);
    tn_row(acc, 1u, a0.y, b0, b1);
    tn_row(acc, 2u, a0.z, b0, b1);
    tn_row(acc, 3u, a0.w, b0, b1);
    tn_row(acc, 4u, a1.x, b0, b1);
    tn_row(acc, 5u, a1.y, b0, b1);
    tn_row(acc, 6u, a1.z, b0, b1);
    tn_row(acc, 7u, a1.w, b0, b1);
}
fn tn_row(acc: ptr<function, array<vec4<f32>, 16>>, r: u32, a: f32, b0: vec4<f32>, b1: vec4<f32>) {
    (*acc)[2u * r] = fma(vec4<f32>(a), b0, (*acc)[2u * r]);
    (*acc)[2u * r + 1u] = fma(vec4<f32>(a), b1, (*acc)[2u * r + 1u]);
}

// NN: A [m x k], B [k x n]; k and n multiples of 4. Per 4 k: 8 row vectors of A, 8 vectors of B.
@compute @workgroup_size(8, 8)
fn matmul_nn_v4(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let o = block_origin(wid, lid);
    if (o.x >= p.m || o.y >= p.n) {
        return;
    }
    let kr = k_range(wid.z);
    let k4 = p.k / 4u;
    let n4 = p.n / 4u;
    let ra = rows8(o.x, p.m - 1u, k4); // A's rows as vec4 offsets (plus k / 4)
    let cv0 = min(o.y / 4u, n4 - 1u);
    let cv1 = min(o.y / 4u + 1u, n4 - 1u);
    var acc: array<vec4<f32>, 16>;
    var sum: array<vec4<f32>, 16>;
    for (var k0 = kr.x; k0 < kr.y; k0 += 256u) {
        block_start(&acc);
        for (var kk = k0; kk < min(k0 + 256u, kr.y); kk += 4u) {
            let b = nn_b(kk * n4, n4, cv0, cv1);
            let av = a_rows8(ra, kk / 4u);
            nn_block(&acc, av, b);
        }
        block_end(&sum, &acc);
    }
    store_block(wid.z, o.x, o.y, &sum);
}

// NT: A [m x k], B [n x k]; k a multiple of 4. Per 4 k: 8 row vectors of A, 8 of B, 64 dot products.
@compute @workgroup_size(8, 8)
fn matmul_nt_v4(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let o = block_origin(wid, lid);
    if (o.x >= p.m || o.y >= p.n) {
        return;
    }
    let kr = k_range(wid.z);
    let k4 = p.k / 4u;
    let ra = rows8(o.x, p.m - 1u, k4);
    let rb = rows8(o.y, p.n - 1u, k4);
    var acc: array<vec4<f32>, 16>;
    var sum: array<vec4<f32>, 16>;
    for (var k0 = kr.x; k0 < kr.y; k0 += 256u) {
        block_start(&acc);
        for (var kk = k0; kk < min(k0 + 256u, kr.y); kk += 4u) {
            let q = kk / 4u;
            let bv = b_rows8(rb, q);
            let av = a_rows8(ra, q);
            nt_block(&acc, av, bv);
        }
        block_end(&sum, &acc);
    }
    store_block(wid.z, o.x, o.y, &sum);
}

// TN: A [k x m], B [k x n]; m and n multiples of 4. Per k: 2 vectors of A (8 rows), 2 of B (8 columns).
@compute @workgroup_size(8, 8)
fn matmul_tn_v4(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let o = block_origin(wid, lid);
    if (o.x >= p.m || o.y >= p.n) {
        return;
    }
    let kr = k_range(wid.z);
    let m4 = p.m / 4u;
    let n4 = p.n / 4u;
    let rv0 = min(o.x / 4u, m4 - 1u);
    let rv1 = min(o.x / 4u + 1u, m4 - 1u);
    let cv0 = min(o.y / 4u, n4 - 1u);
    let cv1 = min(o.y / 4u + 1u, n4 - 1u);
    var acc: array<vec4<f32>, 16>;
    var sum: array<vec4<f32>, 16>;
    for (var k0 = kr.x; k0 < kr.y; k0 += 256u) {
        block_start(&acc);
        for (var kk = k0; kk < min(k0 + 256u, kr.y); kk++) {
            tn_outer(&acc, a4[kk * m4 + rv0], a4[kk * m4 + rv1], b4[kk * n4 + cv0], b4[kk * n4 + cv1]);
        }
        block_end(&sum, &acc);
    }
    store_block(wid.z, o.x, o.y, &sum);
}

const TILE: u32 = 64u;
const KT: u32 = 16u;
var<workgroup> a_tile: array<f32, 1024>; // [KT][TILE]: op(A) slice, k-major
var<workgroup> b_tile: array<f32, 1024>; // [KT][TILE]: op(B) slice, k-major

@compute @workgroup_size(16, 16)
fn matmul_tiled(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let row0 = wid.y * TILE;
    let col0 = wid.x * TILE;
    let tid = lid.y * 16u + lid.x;
    let kr = k_range(wid.z);
    var acc0 = vec4<f32>(0.0);
    var acc1 = vec4<f32>(0.0);
    var acc2 = vec4<f32>(0.0);
    var acc3 = vec4<f32>(0.0);
    var sum0 = vec4<f32>(0.0);
    var sum1 = vec4<f32>(0.0);
    var sum2 = vec4<f32>(0.0);
    var sum3 = vec4<f32>(0.0);
    for (var k0 = kr.x; k0 < kr.y; k0 += KT) {
        if ((k0 - kr.x) % 256u == 0u) {
            sum0 += acc0;
            sum1 += acc1;
            sum2 += acc2;
            sum3 += acc3;
            acc0 = vec4<f32>(0.0);
            acc1 = vec4<f32>(0.0);
            acc2 = vec4<f32>(0.0);
            acc3 = vec4<f32>(0.0);
        }
        // Staging walks memory contiguously: along k when that is the operand's unit stride, else across.
        for (var i = 0u; i < 4u; i++) {
            let e = tid + i * 256u;
            var rr = e % TILE;
            var ka = e / TILE;
            if (!A_T) {
                rr = e / KT;
                ka = e % KT;
            }
            var va = 0.0;
            if (row0 + rr < p.m && k0 + ka < kr.y) {
                va = a_at(row0 + rr, k0 + ka);
            }
            a_tile[ka * TILE + rr] = va;
            var col = e % TILE;
            var kb = e / TILE;
            if (B_T) {
                col = e / KT;
                kb = e % KT;
            }
            var vb = 0.0;
            if (col0 + col < p.n && k0 + kb < kr.y) {
                vb = b_at(k0 + kb, col0 + col);
            }
            b_tile[kb * TILE + col] = vb;
        }
        workgroupBarrier();
        for (var kk = 0u; kk < KT; kk++) {
            let o = kk * TILE;
            let bv = vec4<f32>(b_tile[o + lid.x], b_tile[o + lid.x + 16u], b_tile[o + lid.x + 32u], b_tile[o + lid.x + 48u]);
            acc0 = fma(vec4<f32>(a_tile[o + lid.y]), bv, acc0);
            acc1 = fma(vec4<f32>(a_tile[o + lid.y + 16u]), bv, acc1);
            acc2 = fma(vec4<f32>(a_tile[o + lid.y + 32u]), bv, acc2);
            acc3 = fma(vec4<f32>(a_tile[o + lid.y + 48u]), bv, acc3);
        }
        workgroupBarrier();
    }
    // Rows lid.y + 16i, columns lid.x + 16j: neighbouring invocations store neighbouring columns.
    store_row(wid.z, row0 + lid.y, col0 + lid.x, 16u, sum0 + acc0);
    store_row(wid.z, row0 + lid.y + 16u, col0 + lid.x, 16u, sum1 + acc1);
    store_row(wid.z, row0 + lid.y + 32u, col0 + lid.x, 16u, sum2 + acc2);
    store_row(wid.z, row0 + lid.y + 48u, col0 + lid.x, 16u, sum3 + acc3);
}

// A 16x16 tile, one element of C per invocation: for a product with few rows or columns (a layer's
// last outputs, a convolution's 16 channels), where 64x64 tiles would leave most invocations idle and too
// few workgroups to fill a GPU. K in slices of 16 staged in workgroup memory, as matmul_tiled.
const ST: u32 = 16u;
var<workgroup> a_small: array<f32, 256>; // [ST k][ST rows]
var<workgroup> b_small: array<f32, 256>; // [ST k][ST columns]

@compute @workgroup_size(16, 16)
fn matmul_tiled_small(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let row0 = wid.y * ST;
    let col0 = wid.x * ST;
    let kr = k_range(wid.z);
    var acc = 0.0;
    var sum = 0.0;
    for (var k0 = kr.x; k0 < kr.y; k0 += ST) {
        if ((k0 - kr.x) % 256u == 0u) {
            sum += acc;
            acc = 0.0;
        }
        // Invocation (y, x) stages A[row0 + y, k0 + x] and B[k0 + y, col0 + x] (transposed forms read
        // the same elements; zero outside C or past this slice's K).
        var va = 0.0;
        if (row0 + lid.y < p.m && k0 + lid.x < kr.y) {
            va = a_at(row0 + lid.y, k0 + lid.x);
        }
        a_small[lid.x * ST + lid.y] = va;
        var vb = 0.0;
        if (col0 + lid.x < p.n && k0 + lid.y < kr.y) {
            vb = b_at(k0 + lid.y, col0 + lid.x);
        }
        b_small[lid.y * ST + lid.x] = vb;
        workgroupBarrier();
        for (var kk = 0u; kk < ST; kk++) {
            acc = fma(a_small[kk * ST + lid.y], b_small[kk * ST + lid.x], acc);
        }
        workgroupBarrier();
    }
    let row = row0 + lid.y;
    let col = col0 + lid.x;
    if (row < p.m && col < p.n) {
        let at = wid.z * p.m * p.n + row * p.n + col;
        var r = sum + acc;
        if (p.accumulate != 0u) {
            r += c[at];
        }
        c[at] = epilogue(r, col);
    }
}

@compute @workgroup_size(256)
fn splitk_sum(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let i = flat_index(wid, nwg, lid);
    let len = p.m * p.n;
    if (i >= len) {
        return;
    }
    var s = 0.0;
    for (var z = 0u; z < p.splits; z++) {
        s += partial[z * len + i];
    }
    if (p.accumulate != 0u) {
        s += c[i];
    }
    c[i] = epilogue(s, i % p.n);
}
