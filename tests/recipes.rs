//! The training recipes: SGD momentum (and Nesterov), weight decay (L2, and AdamW's decoupled),
//! learning-rate schedules with warm-up, clipping by global norm. The CPU twin against the formulas
//! PyTorch documents, written out here; a run that crashed and resumed against one that did not; the
//! options' errors. (The GPU kernels against the twin: `tests/gpu_ops.rs` `clip_scale_and_recipes`.)

use wgtrain::backend::cpu::CpuBackend;
use wgtrain::backend::{Backend, OptimRule, OptimStep};
use wgtrain::io::checkpoint::Checkpoint;
use wgtrain::io::data;
use wgtrain::model::ModelSpec;
use wgtrain::optim::{LrSchedule, OptimKind, Recipe};
use wgtrain::train::{train_with, EpochMetrics, Observer, Persist, Silent, TrainConfig};

mod support;
use support::{assert_input_error, ok, rand_vec, wgtrain};

fn close(a: f32, b: f32, what: &str) {
    assert!(
        (a - b).abs() <= 1e-6 * b.abs().max(1e-3),
        "{what}: {a} vs {b}"
    );
}

#[test]
fn schedules_and_warm_up() {
    let r = |schedule, warmup| Recipe {
        schedule,
        warmup,
        ..Default::default()
    };
    let constant = r(LrSchedule::Constant, 0);
    assert_eq!(constant.lr_factor(0, 100), 1.0);
    assert_eq!(constant.lr_factor(99, 100), 1.0);
    let warm = r(LrSchedule::Constant, 4);
    let f: Vec<f64> = (0..6).map(|s| warm.lr_factor(s, 100)).collect();
    assert_eq!(f, [0.25, 0.5, 0.75, 1.0, 1.0, 1.0]);
    let step = r(
        LrSchedule::Step {
            every: 10,
            gamma: 0.5,
        },
        0,
    );
    assert_eq!(step.lr_factor(9, 100), 1.0);
    assert_eq!(step.lr_factor(10, 100), 0.5);
    assert_eq!(step.lr_factor(25, 100), 0.25);
    // Cosine over the steps after warm-up: 1 where it starts, 1/2 half way, 0 at the end.
    let cos = r(LrSchedule::Cosine, 10);
    assert_eq!(cos.lr_factor(10, 110), 1.0);
    assert!((cos.lr_factor(60, 110) - 0.5).abs() < 1e-12);
    assert!(cos.lr_factor(110, 110).abs() < 1e-12);
    assert_eq!(cos.lr_factor(4, 110), 0.5, "warm-up multiplies");
    for (s, want) in [
        ("constant", LrSchedule::Constant),
        ("cosine", LrSchedule::Cosine),
        (
            "step:30",
            LrSchedule::Step {
                every: 30,
                gamma: 0.1,
            },
        ),
        (
            "step:30:0.5",
            LrSchedule::Step {
                every: 30,
                gamma: 0.5,
            },
        ),
    ] {
        assert_eq!(LrSchedule::parse(s).unwrap(), want, "{s}");
    }
    for bad in [
        "linear",
        "step",
        "step:0",
        "step:5:-1",
        "step:5:0.1:2",
        "cosine:3",
    ] {
        let e = LrSchedule::parse(bad).unwrap_err().to_string();
        assert!(e.starts_with(&format!("--lr-schedule {bad}:")), "{e}");
    }
}

/// One CPU update of `rule` with `wd`, `clip` scale `c` from `w` and `g`; returns the new w and state.
fn update(
    rule: OptimRule,
    wd: f32,
    c: Option<f32>,
    w: &[f32],
    g: &[f32],
    state: usize,
) -> (Vec<f32>, Vec<Vec<f32>>) {
    let step = OptimStep {
        rule,
        lr: 0.1,
        weight_decay: wd,
        clip: c.is_some(),
    };
    let mut w = w.to_vec();
    let mut s = vec![vec![0.0; w.len()]; state];
    CpuBackend::new().optim_step(&step, &mut w, &g.to_vec(), &mut s, &vec![c.unwrap_or(0.0)]);
    (w, s)
}

#[test]
fn sgd_momentum_and_nesterov_follow_pytorch() {
    // torch.optim.SGD(momentum=m, nesterov=n, weight_decay=wd), dampening 0: d = g + wd*w;
    // buf = m*buf + d (buf = d at the first step); step = d + m*buf if Nesterov else buf; w -= lr*step.
    let (w0, g) = (rand_vec(9, 1), rand_vec(9, 2));
    let (m, wd, lr) = (0.9f32, 0.01f32, 0.1f32);
    for nesterov in [false, true] {
        let rule = OptimRule::Sgd {
            momentum: m,
            nesterov,
        };
        let mut w = w0.clone();
        let mut state = vec![vec![0.0; 9]];
        let (mut rw, mut buf) = (w0.clone(), vec![0.0f32; 9]);
        for t in 0..3 {
            let step = OptimStep {
                rule,
                lr,
                weight_decay: wd,
                clip: false,
            };
            CpuBackend::new().optim_step(&step, &mut w, &g, &mut state, &vec![1.0]);
            for i in 0..9 {
                let d = g[i] + wd * rw[i];
                buf[i] = if t == 0 { d } else { m * buf[i] + d };
                let s = if nesterov { d + m * buf[i] } else { buf[i] };
                rw[i] -= lr * s;
            }
            for i in 0..9 {
                close(w[i], rw[i], &format!("nesterov {nesterov} step {t} w[{i}]"));
                close(state[0][i], buf[i], "momentum buffer");
            }
        }
    }
}

#[test]
fn weight_decay_l2_and_decoupled_and_clipping() {
    let (w, g) = (rand_vec(7, 3), rand_vec(7, 4));
    let adam = |decoupled| OptimRule::Adam {
        beta1: 0.9,
        beta2: 0.999,
        eps: 1e-8,
        t: 1,
        decoupled,
    };
    // L2: the same as the plain update of g + wd*w, for each rule.
    let rules = [
        OptimRule::Sgd {
            momentum: 0.0,
            nesterov: false,
        },
        OptimRule::RmsProp {
            rho: 0.9,
            eps: 1e-8,
        },
        adam(false),
    ];
    let g_l2: Vec<f32> = g.iter().zip(&w).map(|(g, w)| g + 0.05 * w).collect();
    for (rule, state) in rules.into_iter().zip([0, 1, 2]) {
        let (a, _) = update(rule, 0.05, None, &w, &g, state);
        let (b, _) = update(rule, 0.0, None, &w, &g_l2, state);
        assert_eq!(a, b, "{rule:?}");
    }
    // AdamW (torch.optim.AdamW): w *= 1 - lr*wd, then Adam's step on the undecayed gradient; at t = 1
    // the step is lr * g / (|g| + eps).
    let (a, s) = update(adam(true), 0.05, None, &w, &g, 2);
    for i in 0..7 {
        let want = w[i] * (1.0 - 0.1 * 0.05) - 0.1 * g[i] / (g[i].abs() + 1e-8);
        close(a[i], want, &format!("adamw w[{i}]"));
        close(s[0][i], 0.1 * g[i], "m");
    }
    // Clipping scales the gradient before anything else: SGD with scale c is SGD on c*g.
    let (a, _) = update(rules[0], 0.0, Some(0.25), &w, &g, 0);
    let g_c: Vec<f32> = g.iter().map(|g| g * 0.25).collect();
    assert_eq!(a, update(rules[0], 0.0, None, &w, &g_c, 0).0);
    let mut scale = vec![0.0];
    let norm = (g.iter().map(|v| v * v).sum::<f32>()).sqrt();
    CpuBackend::new().clip_scale(&[&g], norm / 4.0, &mut scale);
    close(scale[0], 0.25, "scale for a norm 4x the bound");
    CpuBackend::new().clip_scale(&[&g], norm * 4.0, &mut scale);
    assert_eq!(scale[0], 1.0, "under the bound, no scaling");
}

/// An observer that panics at the end of epoch `at`: a crash after the previous epoch's checkpoint.
struct CrashAt(usize);
impl Observer for CrashAt {
    fn epoch(&mut self, m: &EpochMetrics) {
        if m.epoch == self.0 {
            panic!("simulated crash at epoch {}", m.epoch);
        }
    }
}

#[test]
fn a_crashed_cosine_adamw_run_resumes_to_the_same_run() {
    let data = data::split(data::synthetic(330, 7), data::synthetic(50, 8), 30).unwrap();
    let recipe = Recipe {
        weight_decay: 0.01,
        schedule: LrSchedule::Cosine,
        warmup: 5,
        clip_norm: Some(1.0),
        ..Default::default()
    };
    let cfg = TrainConfig {
        model: ModelSpec::parse("fc8-bn").unwrap(),
        optim: OptimKind::AdamW,
        lr: 0.003,
        recipe,
        batch: 10,
        steps: 90,
        seed: 3,
        log_every: 7,
        eval_each_epoch: true,
        out: None,
    };
    let be = CpuBackend::new();
    let whole = train_with(&be, &data, &cfg, &mut Silent, Persist::default()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let ck = dir.path().join("ck.safetensors");
    let save = Persist {
        resume: None,
        save: Some(&ck),
    };
    let crashed = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        train_with(&be, &data, &cfg, &mut CrashAt(2), save).map(|_| ())
    }));
    assert!(crashed.is_err(), "the run should have crashed");
    let checkpoint = Checkpoint::load(&ck).unwrap();
    assert_eq!(checkpoint.meta.step, 30, "the checkpoint of epoch 1");
    assert_eq!(checkpoint.meta.recipe, recipe);
    let resume = Persist {
        resume: Some(&checkpoint),
        save: None,
    };
    let resumed = train_with(&be, &data, &cfg, &mut Silent, resume).unwrap();
    assert_eq!(
        resumed.result.losses,
        whole.result.losses[30..],
        "per-step losses"
    );
    assert_eq!(resumed.result.test_loss, whole.result.test_loss);
    // Another recipe, or a cosine over another length, is not the same run.
    let mut other = cfg.clone();
    other.recipe.weight_decay = 0.02;
    let e = train_with(&be, &data, &other, &mut Silent, resume)
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("recipe weight decay 0.01"), "{e}");
    let mut longer = cfg.clone();
    longer.steps = 120;
    let e = train_with(&be, &data, &longer, &mut Silent, resume)
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("cosine schedule over 90 steps"), "{e}");
}

#[test]
fn cli_recipe_options_and_their_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path().join("d");
    support::synthetic_dir(&d, 300, 100, 1);
    let d = d.to_str().unwrap();
    let out = tmp.path().join("run");
    let mut args = support::tiny_train(d);
    args.extend([
        "--optim",
        "sgd",
        "--momentum",
        "0.9",
        "--nesterov",
        "--weight-decay",
        "1e-4",
        "--lr-schedule",
        "step:10:0.5",
        "--warmup",
        "3",
        "--clip-norm",
        "5",
        "--steps",
        "25",
        "--out",
        out.to_str().unwrap(),
    ]);
    let stdout = ok(wgtrain(&args));
    assert!(stdout.contains("momentum 0.9 (Nesterov), weight decay 0.0001, step:10:0.5 schedule, 3 warm-up steps, clip norm 5"), "{stdout}");
    let metrics = std::fs::read_to_string(out.join("metrics.json")).unwrap();
    assert!(metrics.contains("\"momentum\": 0.9"), "{metrics}");
    for (extra, mention) in [
        (
            &["--optim", "adam", "--momentum", "0.9"][..],
            "--momentum and --nesterov are SGD's",
        ),
        (
            &["--optim", "sgd", "--nesterov"][..],
            "--nesterov needs a --momentum",
        ),
        (
            &["--momentum", "1.5", "--optim", "sgd"][..],
            "--momentum 1.5",
        ),
        (&["--weight-decay", "-1"][..], "--weight-decay -1"),
        (&["--clip-norm", "0"][..], "--clip-norm 0"),
        (&["--lr-schedule", "linear"][..], "--lr-schedule linear"),
        (&["--optim", "lamb"][..], "unknown optimizer 'lamb'"),
    ] {
        let mut a = support::tiny_train(d);
        a.extend(extra);
        assert_input_error(&wgtrain(&a), &[mention]);
    }
}
