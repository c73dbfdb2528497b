// Prepended to every kernel family. A 1-d launch of `total` invocations uses 256-wide workgroups spread
// over x and, past 65535 workgroups, y as well; `flat_index` recovers the invocation's linear index
// (kernels bounds-check it, as the last workgroup overhangs).
const WG: u32 = 256u;

fn flat_index(wid: vec3<u32>, nwg: vec3<u32>, lid: vec3<u32>) -> u32 {
    return (wid.y * nwg.x + wid.x) * WG + lid.x;
}

// Activations by code (backend::Act::code; 0: none): the forward, and dy * act'(.) from the output y.
// One case per activation; the CPU twins are Act::apply and Act::grad.
fn act_fwd(x: f32, code: u32) -> f32 {
    switch code {
        case 1u: { return max(x, 0.0); }
        case 2u: { return 1.0 / (1.0 + exp(-x)); }
        case 3u: { return tanh(x); }
        default: { return x; }
    }
}

fn act_bwd(y: f32, dy: f32, code: u32) -> f32 {
    switch code {
        case 1u: { return select(0.0, dy, y > 0.0); }
        case 2u: { return dy * y * (1.0 - y); }
        case 3u: { return dy * (1.0 - y * y); }
        default: { return dy; }
    }
}
