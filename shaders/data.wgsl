// Batch gather from the u8 data set resident on the GPU: one invocation per (sample, pixel) of the
// batch (1-d launch over batch * pixels). Pixels and labels are packed four bytes to a u32.

struct Params {
    start: u32,  // position of the batch in the epoch order
    batch: u32,
    pixels: u32,   // bytes per image
    channels: u32, // interleaved (NHWC): byte i of an image is channel i % channels
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> images: array<u32>;
@group(0) @binding(2) var<storage, read> labels: array<u32>;
@group(0) @binding(3) var<storage, read> order: array<u32>; // the epoch's sample order
@group(0) @binding(4) var<storage, read_write> x: array<f32>;
@group(0) @binding(5) var<storage, read_write> y: array<f32>;
// The normalisation, computed on the host: entry c * 256 + v is value v of channel c as the network sees it.
@group(0) @binding(6) var<storage, read> table: array<f32>;

fn byte_at(i: u32) -> u32 {
    return (images[i / 4u] >> ((i % 4u) * 8u)) & 255u;
}

@compute @workgroup_size(256)
fn gather(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let i = flat_index(wid, nwg, lid);
    if (i >= p.batch * p.pixels) {
        return;
    }
    let b = i / p.pixels;
    let px = i % p.pixels;
    let sample = order[p.start + b];
    x[i] = table[(px % p.channels) * 256u + byte_at(sample * p.pixels + px)];
    if (px == 0u) {
        y[b] = f32((labels[sample / 4u] >> ((sample % 4u) * 8u)) & 255u);
    }
}
