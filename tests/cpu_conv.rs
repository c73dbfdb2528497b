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
