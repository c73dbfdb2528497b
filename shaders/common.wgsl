// Prepended to every kernel family. A 1-d launch of `total` invocations uses 256-wide workgroups spread
// over x and, past 65535 workgroups, y as well; `flat_index` recovers the invocation's linear index
// (kernels bounds-check it, as the last workgroup overhangs).
const WG: u32 = 256u;

fn flat_index(wid: vec3<u32>, nwg: vec3<u32>, lid: vec3<u32>) -> u32 {
    return (wid.y * nwg.x + wid.x) * WG + lid.x;
}
