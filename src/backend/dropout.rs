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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::cpu::CpuBackend;
    use crate::backend::Backend;

    /// The CPU backend's vectorised, chunked pass drops exactly the elements [`DropoutStep::mask`]
    /// names, past several parallel tasks and a ragged end, and its backward pass applies that mask.
    #[test]
    fn cpu_pass_drops_the_elements_the_hash_names() {
        let d = DropoutStep {
            key: 0x1234_5678_9abc_def0,
            step: (1 << 32) + 7,
            p: 0.3,
        };
        let n = 3 * (1 << 14) + 5;
        let x: Vec<f32> = (0..n).map(|i| 1.0 + i as f32 * 1e-3).collect();
        let (mut y, mut mask) = (vec![f32::NAN; n], vec![f32::NAN; n]);
        CpuBackend.dropout(&d, &x, &mut y, &mut mask, n);
        for i in 0..n {
            let m = d.mask(i);
            assert_eq!(mask[i].to_bits(), m.to_bits(), "mask of element {i}");
            assert_eq!(
                y[i].to_bits(),
                (x[i] * m).to_bits(),
                "output of element {i}"
            );
        }
        let dropped = mask.iter().filter(|&&m| m == 0.0).count();
        assert!(
            dropped > n / 4 && dropped < n * 2 / 5,
            "{dropped} of {n} dropped"
        );

        let mut dy = x.clone();
        CpuBackend.dropout_backward(&mask, &mut dy, n);
        for i in 0..n {
            assert_eq!(
                dy[i].to_bits(),
                (x[i] * mask[i]).to_bits(),
                "gradient of element {i}"
            );
        }
    }
}
