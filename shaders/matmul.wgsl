// C[m x n] = op(A)[m x k] * op(B)[k x n] (+ C if accumulate), row-major; op(A)[r, kk] is read at
// a[r * a_row + kk * a_k], so a transposed operand is only a change of strides (set by the host).
// Two kernels, both register-blocked (each invocation owns a 4x4 block of C in four vec4 accumulators)
// and bounds-safe for any shape (loads clamp their index, stores outside C are skipped):
//   matmul_tiled:  16x16 workgroup, 64x64 tile of C; K walked in slices of 16 staged in workgroup
//                  memory (for real GPUs). Dispatch (ceil(n / 64), ceil(m / 64), 1).
// Both sum K in blocks of 256 and add the block sums to a running total: a K of 10^4-10^5 (the weight
// gradient of a first convolution, summed over every pixel of the batch) would otherwise lose ~1e-4 of
// relative accuracy to one long f32 accumulation.
//   matmul_direct: 8x8 workgroup, 32x32 tile of C, operands read straight from memory with no
//                  barriers (for CPU-emulated adapters such as lavapipe, where a barrier is costly and
//                  memory is the CPU's cache anyway). Dispatch (ceil(n / 32), ceil(m / 32), 1).

struct Params {
    m: u32,
    k: u32,
    n: u32,
    accumulate: u32, // 1: add to C instead of overwriting it
    a_row: u32,      // stride of op(A) between rows (k if stored [m x k], 1 if stored [k x m])
    a_k: u32,        // stride of op(A) along k        (1 if stored [m x k], m if stored [k x m])
    b_k: u32,        // stride of op(B) along k        (n if stored [k x n], 1 if stored [n x k])
    b_col: u32,      // stride of op(B) between columns (1 if stored [k x n], k if stored [n x k])
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> a: array<f32>;
@group(0) @binding(2) var<storage, read> b: array<f32>;
@group(0) @binding(3) var<storage, read_write> c: array<f32>;

fn store_row(row: u32, col0: u32, col_step: u32, v: vec4<f32>) {
    if (row >= p.m) {
        return;
    }
    for (var j = 0u; j < 4u; j++) {
        let col = col0 + j * col_step;
        if (col < p.n) {
            let at = row * p.n + col;
            var r = v[j];
            if (p.accumulate != 0u) {
                r += c[at];
            }
            c[at] = r;
        }
    }
}

@compute @workgroup_size(8, 8)
fn matmul_direct(@builtin(global_invocation_id) gid: vec3<u32>) {
    let row0 = gid.y * 4u;
    let col0 = gid.x * 4u;
    // Clamped bases: rows/columns past the edge re-read the last one; their results are not stored.
    var ra: vec4<u32>;
    var cb: vec4<u32>;
    for (var i = 0u; i < 4u; i++) {
        ra[i] = min(row0 + i, p.m - 1u) * p.a_row;
        cb[i] = min(col0 + i, p.n - 1u) * p.b_col;
    }
    var sum0 = vec4<f32>(0.0);
    var sum1 = vec4<f32>(0.0);
    var sum2 = vec4<f32>(0.0);
    var sum3 = vec4<f32>(0.0);
    for (var k0 = 0u; k0 < p.k; k0 += 256u) {
        var acc0 = vec4<f32>(0.0);
        var acc1 = vec4<f32>(0.0);
        var acc2 = vec4<f32>(0.0);
        var acc3 = vec4<f32>(0.0);
        for (var kk = k0; kk < min(k0 + 256u, p.k); kk++) {
            let ka = kk * p.a_k;
            let kb = kk * p.b_k;
            let bv = vec4<f32>(b[cb.x + kb], b[cb.y + kb], b[cb.z + kb], b[cb.w + kb]);
            acc0 = fma(vec4<f32>(a[ra.x + ka]), bv, acc0);
            acc1 = fma(vec4<f32>(a[ra.y + ka]), bv, acc1);
            acc2 = fma(vec4<f32>(a[ra.z + ka]), bv, acc2);
            acc3 = fma(vec4<f32>(a[ra.w + ka]), bv, acc3);
        }
        sum0 += acc0;
        sum1 += acc1;
        sum2 += acc2;
        sum3 += acc3;
    }
    store_row(row0, col0, 1u, sum0);
    store_row(row0 + 1u, col0, 1u, sum1);
    store_row(row0 + 2u, col0, 1u, sum2);
    store_row(row0 + 3u, col0, 1u, sum3);
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
    // Staging walks memory contiguously: along k when that is the operand's unit stride, else across.
    let a_k_major = p.a_k == 1u;
    let b_k_major = p.b_k == 1u;
    var acc0 = vec4<f32>(0.0);
    var acc1 = vec4<f32>(0.0);
    var acc2 = vec4<f32>(0.0);
    var acc3 = vec4<f32>(0.0);
    var sum0 = vec4<f32>(0.0);
    var sum1 = vec4<f32>(0.0);
    var sum2 = vec4<f32>(0.0);
    var sum3 = vec4<f32>(0.0);
    for (var k0 = 0u; k0 < p.k; k0 += KT) {
        if (k0 % 256u == 0u) {
            sum0 += acc0;
            sum1 += acc1;
            sum2 += acc2;
            sum3 += acc3;
            acc0 = vec4<f32>(0.0);
            acc1 = vec4<f32>(0.0);
            acc2 = vec4<f32>(0.0);
            acc3 = vec4<f32>(0.0);
        }
        for (var i = 0u; i < 4u; i++) {
            let e = tid + i * 256u;
            var r = e % TILE;
            var ka = e / TILE;
            if (a_k_major) {
                r = e / KT;
                ka = e % KT;
            }
            var va = 0.0;
            if (row0 + r < p.m && k0 + ka < p.k) {
                va = a[(row0 + r) * p.a_row + (k0 + ka) * p.a_k];
            }
            a_tile[ka * TILE + r] = va;
            var col = e % TILE;
            var kb = e / TILE;
            if (b_k_major) {
                col = e / KT;
                kb = e % KT;
            }
            var vb = 0.0;
            if (col0 + col < p.n && k0 + kb < p.k) {
                vb = b[(k0 + kb) * p.b_k + (col0 + col) * p.b_col];
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
    store_row(row0 + lid.y, col0 + lid.x, 16u, sum0 + acc0);
    store_row(row0 + lid.y + 16u, col0 + lid.x, 16u, sum1 + acc1);
    store_row(row0 + lid.y + 32u, col0 + lid.x, 16u, sum2 + acc2);
    store_row(row0 + lid.y + 48u, col0 + lid.x, 16u, sum3 + acc3);
}
