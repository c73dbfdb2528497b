//! The CPU's vectorisable `tanh` against f64's, and its edge cases.

use wgtrain::backend::act_math::tanh;

/// Distance in units in the last place between two finite f32 of the same sign.
fn ulps(a: f32, b: f32) -> u32 {
    a.to_bits().abs_diff(b.to_bits())
}

#[test]
fn tanh_is_within_1_ulp_of_f64() {
    // Every 5th f32 from 1e-6 up to 10 (past 9.01, where tanh rounds to 1) (about 40 million values), and their negatives.
    let (mut worst, mut at) = (0, 0.0f32);
    let mut bits = 1e-6f32.to_bits();
    while f32::from_bits(bits) <= 10.0 {
        let x = f32::from_bits(bits);
        for x in [x, -x] {
            let want = (x as f64).tanh() as f32;
            let e = ulps(tanh(x), want);
            if e > worst {
                (worst, at) = (e, x);
            }
        }
        bits += 5;
    }
    assert!(
        worst <= 1,
        "{worst} ulp at {at}: {} against {}",
        tanh(at),
        (at as f64).tanh()
    );
}

#[test]
fn tanh_edge_cases() {
    assert_eq!(tanh(0.0).to_bits(), 0.0f32.to_bits());
    assert_eq!(tanh(-0.0).to_bits(), (-0.0f32).to_bits());
    // Tiny values: tanh x = x.
    for x in [1e-30f32, -1e-30, f32::MIN_POSITIVE, 1e-40] {
        assert_eq!(tanh(x), x);
    }
    for x in [10.0f32, 20.0, 1e30, f32::INFINITY] {
        assert_eq!(tanh(x), 1.0);
        assert_eq!(tanh(-x), -1.0);
    }
    assert!(tanh(f32::NAN).is_nan());
}
