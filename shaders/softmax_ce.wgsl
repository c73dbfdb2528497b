// Fused softmax cross-entropy over logits[rows x cols] with integer labels stored as f32.
// Many rows: row kernels (one invocation per row, 1-d launch), then a finisher, one workgroup that adds
// the rows in a fixed order (deterministic), dispatch (1, 1, 1). Few rows: one kernel, one workgroup,
// whose invocations compute their rows themselves and add them in the finisher's order (same bits).

struct Params {
    rows: u32,
    cols: u32,
    accumulate: u32, // 1: loss[0] += mean instead of loss[0] = mean
    _pad: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> logits: array<f32>;
@group(0) @binding(2) var<storage, read> labels: array<f32>;
@group(0) @binding(3) var<storage, read_write> dlogits: array<f32>;
@group(0) @binding(4) var<storage, read_write> per_row: array<f32>; // row loss, or (correct, loss) pairs
@group(0) @binding(5) var<storage, read_write> out: array<f32>;     // loss[0], or (correct, loss sum)

fn row_max(r: u32) -> f32 {
    var m = logits[r * p.cols];
    for (var c = 1u; c < p.cols; c++) {
        m = max(m, logits[r * p.cols + c]);
    }
    return m;
}

fn row_lse(r: u32, m: f32) -> f32 {
    var s = 0.0;
    for (var c = 0u; c < p.cols; c++) {
        s += exp(logits[r * p.cols + c] - m);
    }
    return m + log(s);
}

// Row r: dlogits = (softmax(z) - onehot(label)) / rows written; returns -log softmax(z)[label].
fn ce_row(r: u32) -> f32 {
    let label = u32(labels[r]);
    let lse = row_lse(r, row_max(r));
    for (var c = 0u; c < p.cols; c++) {
        var onehot = 0.0;
        if (c == label) {
            onehot = 1.0;
        }
        dlogits[r * p.cols + c] = (exp(logits[r * p.cols + c] - lse) - onehot) / f32(p.rows);
    }
    return lse - logits[r * p.cols + label];
}

// Row r: (1 if argmax == label, the first maximum winning; the row loss).
fn eval_row(r: u32) -> vec2<f32> {
    let label = u32(labels[r]);
    var best = 0u;
    for (var c = 1u; c < p.cols; c++) {
        if (logits[r * p.cols + c] > logits[r * p.cols + best]) {
            best = c;
        }
    }
    let lse = row_lse(r, logits[r * p.cols + best]);
    return vec2<f32>(select(0.0, 1.0, best == label), lse - logits[r * p.cols + label]);
}

// per_row[r] = the row loss (ce_row)
@compute @workgroup_size(256)
fn softmax_ce_rows(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let r = flat_index(wid, nwg, lid);
    if (r >= p.rows) {
        return;
    }
    per_row[r] = ce_row(r);
}

// per_row[2r], per_row[2r+1] = eval_row(r)
@compute @workgroup_size(256)
fn eval_rows(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let r = flat_index(wid, nwg, lid);
    if (r >= p.rows) {
        return;
    }
    let e = eval_row(r);
    per_row[2u * r] = e.x;
    per_row[2u * r + 1u] = e.y;
}

var<workgroup> lanes: array<f32, 256>;
var<workgroup> lanes2: array<f32, 256>;

fn tree_sum(lid: u32) {
    for (var s = 128u; s > 0u; s = s / 2u) {
        if (lid < s) {
            lanes[lid] += lanes[lid + s];
            lanes2[lid] += lanes2[lid + s];
        }
        workgroupBarrier();
    }
}

// loss[0] = (loss[0] if accumulate) + the mean of the row losses, given lane lid's share of their sum.
fn store_loss(lid: u32, share: f32) {
    lanes[lid] = share;
    lanes2[lid] = 0.0;
    workgroupBarrier();
    tree_sum(lid);
    if (lid == 0u) {
        let mean = lanes[0] / f32(p.rows);
        if (p.accumulate != 0u) {
            out[0] = out[0] + mean;
        } else {
            out[0] = mean;
        }
    }
}

// out[0] += correct rows, out[1] += summed row losses, given lane lid's shares of both.
fn store_counts(lid: u32, correct: f32, loss: f32) {
    lanes[lid] = correct;
    lanes2[lid] = loss;
    workgroupBarrier();
    tree_sum(lid);
    if (lid == 0u) {
        out[0] = out[0] + lanes[0];
        out[1] = out[1] + lanes2[0];
    }
}

// Finishes softmax_ce_rows: lane l adds rows l, l + 256, ... of per_row.
@compute @workgroup_size(256)
fn loss_finish(@builtin(local_invocation_id) lid: vec3<u32>) {
    var s = 0.0;
    for (var r = lid.x; r < p.rows; r += 256u) {
        s += per_row[r];
    }
    store_loss(lid.x, s);
}

// softmax_ce_rows and loss_finish in one workgroup: lane l computes rows l, l + 256, ... and adds
// their losses in loss_finish's order.
@compute @workgroup_size(256)
fn softmax_ce_fused(@builtin(local_invocation_id) lid: vec3<u32>) {
    var s = 0.0;
    for (var r = lid.x; r < p.rows; r += 256u) {
        s += ce_row(r);
    }
    store_loss(lid.x, s);
}

// Finishes eval_rows.
@compute @workgroup_size(256)
fn eval_finish(@builtin(local_invocation_id) lid: vec3<u32>) {
    var correct = 0.0;
    var loss = 0.0;
    for (var r = lid.x; r < p.rows; r += 256u) {
        correct += per_row[2u * r];
        loss += per_row[2u * r + 1u];
    }
    store_counts(lid.x, correct, loss);
}

// eval_rows and eval_finish in one workgroup, in eval_finish's order.
@compute @workgroup_size(256)
fn eval_fused(@builtin(local_invocation_id) lid: vec3<u32>) {
    var correct = 0.0;
    var loss = 0.0;
    for (var r = lid.x; r < p.rows; r += 256u) {
        let e = eval_row(r);
        correct += e.x;
        loss += e.y;
    }
    store_counts(lid.x, correct, loss);
}
