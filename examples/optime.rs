use std::time::Instant;
use wgtrain::backend::gpu::GpuBackend;
use wgtrain::backend::{Backend, Trans};
fn main() {
    let mut be = GpuBackend::new(None, true).unwrap();
    if std::env::var("TILED").is_ok() {
        be.matmul_kernel = wgtrain::backend::gpu::MatmulKernel::Tiled;
    }
    for &(m, k, n) in &[
        (110usize, 784usize, 256usize),
        (110, 256, 128),
        (1024, 1024, 1024),
    ] {
        let a = be.upload(&vec![0.5; m * k]);
        let b = be.upload(&vec![0.25; k * n]);
        let mut c = be.zeros(m * n);
        be.matmul(&a, Trans::N, &b, Trans::T, &mut c, m, k, n, false);
        be.sync();
        let reps = if m > 500 { 2 } else { 20 };
        let t = Instant::now();
        for _ in 0..reps {
            be.matmul(&a, Trans::N, &b, Trans::T, &mut c, m, k, n, false);
        }
        be.sync();
        let s = t.elapsed().as_secs_f64() / reps as f64;
        println!(
            "matmul {m}x{k}x{n}: {:.3} ms, {:.2} GFLOP/s",
            s * 1e3,
            2.0 * (m * k * n) as f64 / s / 1e9
        );
    }
    let mut x = be.upload(&vec![0.5; 110 * 256]);
    let t = Instant::now();
    for _ in 0..100 {
        be.bias_act(&mut x, None, 110, 256, true);
    }
    be.sync();
    println!("relu 110x256: {:.3} ms", t.elapsed().as_secs_f64() * 10.0);
}
