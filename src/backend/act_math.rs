//! `tanh` for the CPU's activations, written so that a loop over a slice vectorises: both branches
//! computed and one selected, no calls into libm. libm's `tanhf` (through `expm1f`) was a third of
//! LeNet-5's CPU step. Pure f32 arithmetic (Rust never fuses `a * b + c`), so the same input gives
//! the same bits on every machine and at every vector width. At most 1 ulp from the true value on
//! every 5th f32 from 1e-6 to 10 and their negatives (`tests/act_math.rs`, against f64's `tanh`).

/// Below this |x| an odd polynomial; above it `1 - 2 / (e^2|x| + 1)`, where the subtraction no longer
/// cancels much.
const SMALL: f32 = 0.625;

/// Above this |x|, tanh is 1 in f32 (1 - tanh(10) is 4e-9, under half an ulp below 1; the last f32
/// under 1 is reached near 9.01).
const SATURATED: f32 = 10.0;

/// Taylor coefficients of tanh x = x (1 + z (c1 + z (c2 + ...))), z = x^2: 2^2n (2^2n - 1) B_2n /
/// (2n)!, from -1/3 to the x^23 term; at |x| = 0.625 the first term left out is below 1e-9 of x.
const TAYLOR: [f32; 11] = [
    -1.0 / 3.0,
    2.0 / 15.0,
    -17.0 / 315.0,
    (62.0 / 2835.0) as f32,
    (-1382.0 / 155_925.0) as f32,
    (21_844.0 / 6_081_075.0) as f32,
    (-929_569.0 / 638_512_875.0) as f32,
    (6_404_582.0 / 10_854_718_875.0) as f32,
    (-443_861_162.0 / 1_856_156_927_625.0) as f32,
    (18_888_466_084.0 / 194_896_477_400_625.0) as f32,
    (-113_927_491_862.0 / 2_900_518_163_668_125.0) as f32,
];

/// tanh(x) in f32.
#[inline]
pub fn tanh(x: f32) -> f32 {
    let a = x.abs();
    let z = x * x;
    let mut p = TAYLOR[TAYLOR.len() - 1];
    for &c in TAYLOR[..TAYLOR.len() - 1].iter().rev() {
        p = p * z + c;
    }
    // On |x| with the sign put back, so tanh(-0) is -0 (x + x z p would give +0).
    let small = (a + a * (z * p)).copysign(x);
    let e = exp_0_20(2.0 * a.min(SATURATED));
    let large = (1.0 - 2.0 / (e + 1.0)).copysign(x);
    // NaN fails `a >= SMALL` and takes the polynomial, which keeps it NaN.
    if a >= SMALL {
        large
    } else {
        small
    }
}

/// e^y for 0 <= y <= 20: y = n ln2 + r with |r| <= ln2 / 2, e^r by its Taylor series to r^7 (the
/// rest is under 6e-9 of it), times 2^n built from its exponent bits.
#[inline]
fn exp_0_20(y: f32) -> f32 {
    // ln 2 in two parts: n * LN2_HI is exact for n < 2^11, so r keeps its low bits.
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    // Adding 1.5 * 2^23 rounds a small positive f32 to an integer without a call or a branch.
    const ROUND: f32 = 12_582_912.0;
    let t = y * std::f32::consts::LOG2_E + ROUND;
    let n = t - ROUND;
    let r = (y - n * LN2_HI) - n * LN2_LO;
    let mut p = 1.0 / 5040.0;
    for c in [
        1.0 / 720.0,
        1.0 / 120.0,
        1.0 / 24.0,
        1.0 / 6.0,
        0.5,
        1.0,
        1.0,
    ] {
        p = p * r + c;
    }
    // t's low mantissa bits hold n: 2^n from them by integer arithmetic (`n as i32` would be a
    // saturating conversion, which does not vectorise).
    let n_bits = t.to_bits().wrapping_sub(ROUND.to_bits());
    p * f32::from_bits((n_bits + 127) << 23)
}
