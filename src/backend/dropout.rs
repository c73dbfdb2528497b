//! Dropout's counter-based generator: whether element `i` is kept at a step is a pure function of
//! (key, step, i), computed with the same u32 arithmetic here and in `shaders/dropout.wgsl`, so both
//! backends drop the same elements and a resumed or repeated run drops them again.

/// One dropout pass: which layer (`key`, from the model's seed and the layer's position), which step,
/// and the drop probability.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct DropoutStep {
    pub key: u64,
    pub step: u64,
    pub p: f32,
}

impl DropoutStep {
    /// Elements whose hash is below this are dropped: `p * 2^32`.
    pub fn threshold(&self) -> u32 {
        (self.p as f64 * 4294967296.0).min(u32::MAX as f64) as u32
    }
    /// What a kept element is multiplied by: `1 / (1 - p)`, so the expected output equals the input.
    pub fn scale(&self) -> f32 {
        1.0 / (1.0 - self.p)
    }
    /// The mask value of element `i`: 0 if dropped, else [`DropoutStep::scale`].
    pub fn mask(&self, i: usize) -> f32 {
        if element_hash(self.key, self.step, i as u32) < self.threshold() {
            0.0
        } else {
            self.scale()
        }
    }
    /// The part of [`element_hash`] shared by every element of this pass: `element_hash(key, step, i)`
    /// is `pcg(i ^ seed)`, so a loop over elements computes it once.
    pub fn seed(&self) -> u32 {
        step_seed(self.key, self.step)
    }
}

/// PCG's output permutation of one LCG step (O'Neill 2014), as a 32-bit hash. Inlined, so the CPU
/// backend's dropout loop vectorises it.
#[inline(always)]
pub fn pcg(v: u32) -> u32 {
    let state = v.wrapping_mul(747796405).wrapping_add(2891336453);
    let word = ((state >> ((state >> 28) + 4)) ^ state).wrapping_mul(277803737);
    (word >> 22) ^ word
}

/// The hash of element `i` at `step` for the layer `key` (the WGSL `element_hash`).
pub fn element_hash(key: u64, step: u64, i: u32) -> u32 {
    pcg(i ^ step_seed(key, step))
}

/// The part of [`element_hash`] that is the same for every element of one layer's step.
fn step_seed(key: u64, step: u64) -> u32 {
    let lo = |v: u64| v as u32;
    let hi = |v: u64| (v >> 32) as u32;
    pcg(lo(step) ^ pcg(hi(step) ^ pcg(lo(key) ^ pcg(hi(key)))))
}
