//! Comparisons used by the gradient checks (CPU vs GPU, analytic vs finite differences).

/// `max |a - b| / max |b|`: the error of `a` relative to the reference `b` (0 when both are all zero).
pub fn max_rel_diff(a: &[f32], reference: &[f32]) -> f32 {
    assert_eq!(
        a.len(),
        reference.len(),
        "compared tensors differ in length"
    );
    let scale = reference.iter().fold(0.0f32, |m, v| m.max(v.abs()));
    let diff = a
        .iter()
        .zip(reference)
        .fold(0.0f32, |m, (x, y)| m.max((x - y).abs()));
    if diff == 0.0 {
        0.0
    } else if scale == 0.0 || !diff.is_finite() {
        f32::INFINITY
    } else {
        diff / scale
    }
}
