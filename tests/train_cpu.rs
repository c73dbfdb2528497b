//! Short training runs on the CPU backend and the synthetic data set: the loss falls, and a run is a
//! pure function of its seed (bit-identical per-step losses).

use wgtrain::backend::cpu::CpuBackend;
use wgtrain::io::data::{self, Splits};
use wgtrain::model::ModelSpec;
use wgtrain::optim::OptimKind;
use wgtrain::train::{train, Silent, TrainConfig, TrainResult};

/// 600 training, 100 validation and 200 test images of the synthetic set (one bar per class).
fn synthetic_splits() -> Splits {
    data::split(data::synthetic(700, 11), data::synthetic(200, 12), 100).unwrap()
}

fn config(model: &str, optim: OptimKind, steps: usize, seed: u64) -> TrainConfig {
    TrainConfig {
        model: ModelSpec::parse(model).unwrap(),
        optim,
        lr: optim.default_lr(),
        recipe: Default::default(),
        batch: 20,
        steps,
        seed,
        log_every: 7,
        eval_each_epoch: true,
        out: None,
    }
}

fn run(data: &Splits, cfg: &TrainConfig) -> TrainResult {
    train(&CpuBackend::new(), data, cfg, &mut Silent).unwrap()
}

fn mean(v: &[f32]) -> f32 {
    v.iter().sum::<f32>() / v.len() as f32
}

/// Mean of the first and of the last ten step losses.
fn first_last(losses: &[f32]) -> (f32, f32) {
    (mean(&losses[..10]), mean(&losses[losses.len() - 10..]))
}

#[test]
fn fc8_bn_adam_loss_falls() {
    let data = synthetic_splits();
    // 30 steps per epoch: two epochs.
    let mut cfg = config("fc8-bn", OptimKind::Adam, 60, 1);
    // A larger step than the MNIST default, so that 60 steps of this narrow net show a clear fall.
    cfg.lr = 0.01;
    let r = run(&data, &cfg);
    assert_eq!(r.losses.len(), 60, "one loss per step");
    assert!(r.losses.iter().all(|l| l.is_finite()));
    let (first, last) = first_last(&r.losses);
    println!(
        "fc8-bn adam: first 10 {first:.4}, last 10 {last:.4}, val acc {:.3}, test acc {:.3}",
        r.val_acc, r.test_acc
    );
    assert!(
        last < 0.7 * first,
        "loss should fall: first 10 steps {first}, last 10 {last}"
    );
    assert_eq!(r.epoch_metrics.len(), 2, "validation after each epoch");
    assert_eq!((r.steps, r.batch, r.epochs), (60, 20, 2.0));
    assert!((0.0..=1.0).contains(&r.val_acc) && (0.0..=1.0).contains(&r.test_acc));
    // The synthetic classes are easy: well above chance (0.1) on unseen images.
    assert!(r.test_acc > 0.5, "test accuracy {}", r.test_acc);
    assert_eq!(r.backend, "cpu");
}

#[test]
fn cnn3_bn_sgd_loss_falls() {
    let data = synthetic_splits();
    let mut cfg = config("cnn3-bn", OptimKind::Sgd, 40, 2);
    cfg.lr = 0.05;
    let r = run(&data, &cfg);
    let (first, last) = first_last(&r.losses);
    println!(
        "cnn3-bn sgd: first 10 {first:.4}, last 10 {last:.4}, test acc {:.3}",
        r.test_acc
    );
    assert!(
        last < 0.8 * first,
        "loss should fall: first 10 steps {first}, last 10 {last}"
    );
}

#[test]
fn same_seed_gives_bit_identical_losses() {
    let data = synthetic_splits();
    let a = run(&data, &config("fc8-bn", OptimKind::Adam, 35, 5));
    let b = run(&data, &config("fc8-bn", OptimKind::Adam, 35, 5));
    let bits = |r: &TrainResult| r.losses.iter().map(|l| l.to_bits()).collect::<Vec<_>>();
    assert_eq!(bits(&a), bits(&b), "same seed, same losses to the bit");
    assert_eq!(a.val_acc, b.val_acc);
    assert_eq!(a.test_loss.to_bits(), b.test_loss.to_bits());
    let c = run(&data, &config("fc8-bn", OptimKind::Adam, 35, 6));
    assert_eq!(c.losses.len(), 35);
    assert_ne!(bits(&a), bits(&c), "another seed, other losses");
    let differing = a
        .losses
        .iter()
        .zip(&c.losses)
        .filter(|(x, y)| x != y)
        .count();
    assert!(differing > 30, "only {differing} of 35 losses differ");
}

#[test]
fn rmsprop_cnn_is_deterministic_too() {
    let data = synthetic_splits();
    let a = run(&data, &config("cnn3", OptimKind::RmsProp, 12, 9));
    let b = run(&data, &config("cnn3", OptimKind::RmsProp, 12, 9));
    assert_eq!(
        a.losses.iter().map(|l| l.to_bits()).collect::<Vec<_>>(),
        b.losses.iter().map(|l| l.to_bits()).collect::<Vec<_>>()
    );
}

/// The CPU backend splits its column sums (batch norm, bias gradients) into fixed chunks of rows summed
/// on rayon's threads: the losses must not depend on how many threads there are.
#[test]
fn losses_do_not_depend_on_the_thread_count() {
    let data = synthetic_splits();
    // cnn3-bn at batch 32: batch norm sums 32 x 14 x 14 = 6272 rows, several chunks.
    let mut cfg = config("cnn3-bn", OptimKind::Adam, 8, 4);
    cfg.batch = 32;
    let on = |threads: usize| {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap();
        pool.install(|| run(&data, &cfg))
    };
    let bits = |r: &TrainResult| r.losses.iter().map(|l| l.to_bits()).collect::<Vec<_>>();
    let one = on(1);
    assert_eq!(bits(&one), bits(&on(2)), "1 and 2 threads");
    assert_eq!(bits(&one), bits(&on(3)), "1 and 3 threads");
}
