//! The CPU backend's tiled convolutions against the unfused sequence they replace (im2col, the matmuls,
//! col2im), bit for bit: the tiles must change where the work happens, never a result.

mod support;

use support::rand_vec;
use wgtrain::backend::cpu::CpuBackend;
use wgtrain::backend::{
    conv_backward_unfused, conv_forward_unfused, Act, Backend, ConvBackward, ConvForward, ConvGeom,
};

fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|x| x.to_bits()).collect()
}

/// Forward and backward (with and without dx, overwriting and accumulating dW) on geometries whose
/// column matrices span many tiles with uneven tails, and more than one k slice of the weight gradient.
#[test]
fn conv_ops_equal_their_unfused_sequence() {
    let be = CpuBackend::new();
    let geoms = [
        // (n, c, h, w, k, stride, pad, out_c)
        (37, 1, 28, 28, 3, 1, 1, 16),
        (110, 16, 14, 14, 3, 2, 1, 32),
        (9, 64, 4, 4, 3, 1, 1, 128),
        (5, 6, 14, 14, 5, 1, 0, 16),
        (3, 3, 11, 13, 3, 2, 0, 7),
        (1, 2, 6, 6, 3, 1, 1, 1),
        // One input channel: LeNet-5's first convolution, and strided, unpadded and odd-sized ones
        // (the direct forward on AVX-512).
        (20, 1, 28, 28, 5, 1, 2, 6),
        (12, 1, 13, 11, 3, 2, 0, 5),
        (3, 1, 29, 30, 3, 1, 1, 16),
        (6, 1, 20, 20, 4, 2, 1, 3),
        (6, 1, 12, 12, 2, 1, 0, 2),
        (4, 1, 16, 16, 3, 1, 1, 8),
        (5, 1, 18, 18, 3, 1, 1, 12),
        // Tiles that start mid-row (at output columns 18 and 9; 9 and 4 with stride 2), a lane per
        // channel with stride 2, and padding wider than the kernel.
        (23, 1, 28, 28, 5, 1, 2, 6),
        (82, 1, 28, 28, 5, 2, 2, 12),
        (4, 1, 10, 10, 2, 1, 3, 5),
        // The direct one-channel weight gradient: a last k slice of 1, 2 and 3 rows (`gemm`'s gevv
        // for 1 and 2), 32 outputs of a 3x3 kernel (vgg-small), 2x2 and 4x4 kernels, and 17 outputs
        // of a 3x3 (the 32-lane copy, half used).
        (1, 1, 41, 25, 3, 1, 1, 32),
        (2, 1, 27, 19, 3, 1, 1, 9),
        (1, 1, 13, 79, 3, 1, 1, 17),
        (3, 1, 24, 24, 2, 1, 0, 16),
        (4, 1, 25, 25, 4, 1, 2, 7),
        // The direct forward over several channels: 64 lanes (48 outputs over 144 taps; 64 and 40
        // outputs over 288 and 504 taps, whose weights are too large for it), 32 lanes for 20
        // outputs, stride 2 with padding, 3 channels with a 4x4 kernel, and 576 taps (two depth
        // blocks in `gemm`, so not direct).
        (8, 32, 7, 7, 3, 1, 1, 64),
        (8, 16, 9, 9, 3, 1, 1, 48),
        (2, 56, 12, 12, 3, 1, 1, 40),
        (12, 8, 9, 9, 3, 2, 1, 20),
        (5, 3, 16, 16, 4, 2, 1, 5),
        (8, 64, 7, 7, 3, 1, 1, 64),
        // The tiled input gradient past one k slice: 576 taps with 128 outputs, LeNet-5's second
        // convolution, 3 outputs and 2 (`gemm`'s gevv).
        (30, 64, 7, 7, 3, 1, 1, 128),
        (25, 6, 14, 14, 5, 1, 0, 16),
        (2, 4, 30, 30, 3, 1, 1, 3),
        (2, 4, 30, 30, 3, 1, 1, 2),
        // 23x23 taps: `gemm` sums more than 512 in two blocks, so not the direct forward.
        (2, 1, 30, 30, 23, 1, 11, 4),
        // One output channel: `gemm`'s matrix-vector path, so not the direct forward.
        (6, 1, 20, 20, 4, 2, 1, 1),
    ];
    for (i, &(n, c, h, w, k, stride, pad, out_c)) in geoms.iter().enumerate() {
        let g = ConvGeom {
            n,
            c,
            h,
            w,
            k,
            stride,
            pad,
        };
        let (rows, taps) = (g.col_rows(), g.col_cols());
        let seed = 10 * i as u64;
        let x = rand_vec(n * h * w * c, seed);
        let wt = rand_vec(out_c * taps, seed + 1);
        let bias = rand_vec(out_c, seed + 2);
        let dy = rand_vec(rows * out_c, seed + 3);
        let dw0 = rand_vec(out_c * taps, seed + 4);

        let forward = |fused: bool| {
            let (mut col, mut y) = (vec![0.0; rows * taps], vec![0.0; rows * out_c]);
            let f = ConvForward {
                x: &x,
                w: &wt,
                bias: Some(&bias),
                act: Some(Act::Relu),
                col: &mut col,
                y: &mut y,
            };
            if fused {
                be.conv_forward(&g, out_c, f);
            } else {
                conv_forward_unfused(&be, &g, out_c, f);
            }
            y
        };
        assert_eq!(bits(&forward(true)), bits(&forward(false)), "forward {g:?}");

        for (accumulate, with_dx) in [(false, true), (true, true), (false, false)] {
            let backward = |fused: bool| {
                let (mut col, mut dcol) = (vec![0.0; rows * taps], vec![0.0; rows * taps]);
                let (mut dw, mut dx) = (dw0.clone(), vec![f32::NAN; n * h * w * c]);
                let b = ConvBackward {
                    x: &x,
                    dy: &dy,
                    w: &wt,
                    col: &mut col,
                    col_ready: false,
                    dcol: &mut dcol,
                    dw: &mut dw,
                    accumulate,
                    dx: with_dx.then_some(&mut dx),
                };
                if fused {
                    be.conv_backward(&g, out_c, b);
                } else {
                    conv_backward_unfused(&be, &g, out_c, b);
                }
                (dw, if with_dx { dx } else { vec![] })
            };
            let ((dw_t, dx_t), (dw_u, dx_u)) = (backward(true), backward(false));
            let what = format!("backward {g:?} accumulate {accumulate} dx {with_dx}");
            assert_eq!(bits(&dw_t), bits(&dw_u), "dW, {what}");
            assert_eq!(bits(&dx_t), bits(&dx_u), "dx, {what}");
        }
    }
}

/// `im2col_rows` against a gather written tap by tap, from several starting rows, on geometries whose
/// kernel-row runs (k * c floats) take each of its copy paths: 1 to 3, 4 to 7, 8 to 32 and longer,
/// each with the padding cutting runs short at the borders.
#[test]
fn im2col_matches_a_naive_gather() {
    use wgtrain::backend::cpu_conv::im2col_rows;
    // (c, k, stride, pad, side)
    let cases = [
        (1, 1, 1, 0, 4),
        (1, 3, 1, 1, 6),
        (1, 5, 1, 2, 9),
        (2, 3, 2, 1, 7),
        (3, 2, 1, 1, 5),
        (3, 3, 1, 1, 6),
        (5, 3, 2, 2, 8),
        (7, 5, 1, 2, 7),
        (16, 3, 1, 1, 5),
    ];
    for (i, &(c, k, stride, pad, side)) in cases.iter().enumerate() {
        let g = ConvGeom {
            n: 3,
            c,
            h: side,
            w: side + 1,
            k,
            stride,
            pad,
        };
        let x = rand_vec(g.n * g.h * g.w * c, 50 + i as u64);
        let (oh, ow, taps) = (g.out_h(), g.out_w(), g.col_cols());
        let mut want = vec![0.0f32; g.col_rows() * taps];
        for r in 0..g.col_rows() {
            let (n, oy, ox) = (r / (oh * ow), r / ow % oh, r % ow);
            for ky in 0..k {
                for kx in 0..k {
                    let iy = (oy * stride + ky) as isize - pad as isize;
                    let ix = (ox * stride + kx) as isize - pad as isize;
                    if iy < 0 || ix < 0 || iy >= g.h as isize || ix >= g.w as isize {
                        continue;
                    }
                    for ch in 0..c {
                        want[r * taps + (ky * k + kx) * c + ch] =
                            x[((n * g.h + iy as usize) * g.w + ix as usize) * c + ch];
                    }
                }
            }
        }
        for r0 in [0, 1, ow + 2, g.col_rows() / 2] {
            let mut got = vec![f32::NAN; (g.col_rows() - r0) * taps];
            im2col_rows(&g, &x, r0, &mut got);
            assert_eq!(
                bits(&got),
                bits(&want[r0 * taps..]),
                "im2col c{c} k{k} s{stride} p{pad} from row {r0}"
            );
        }
    }
}
