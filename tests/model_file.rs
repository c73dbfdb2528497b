//! Model files (issue 18): the built-ins as files describe exactly the networks the code builds, shapes
//! are inferred layer by layer, and a bad file is one line naming the file, the layer and its line.

use wgtrain::backend::cpu::CpuBackend;
use wgtrain::model::file::{parse_network, Shape, BUILTINS};
use wgtrain::model::{Model, ModelSpec, MNIST_CLASSES as CLASSES, MODEL_NAMES};

mod support;
use support::{assert_input_error, ok, wgtrain};

const MNIST: Shape = Shape::Image { h: 28, w: 28, c: 1 };

/// Every built-in file gives the parameters (names, shapes, order) of the model the code builds.
#[test]
fn builtin_files_describe_the_built_models() {
    assert_eq!(BUILTINS.map(|(n, _)| n)[..8], MODEL_NAMES);
    for (name, text) in &BUILTINS[..8] {
        let net = parse_network(name, text, MNIST, CLASSES).unwrap();
        let model = Model::new(&CpuBackend::new(), ModelSpec::parse(name).unwrap(), 1, 1);
        let built: Vec<(String, Vec<usize>)> = model
            .params()
            .iter()
            .map(|p| (p.name.clone(), p.shape.clone()))
            .collect();
        let described: Vec<(String, Vec<usize>)> =
            net.layers.iter().flat_map(|l| l.params.clone()).collect();
        assert_eq!(described, built, "{name}");
    }
}

/// The summary: every layer's output shape, its line, and the total.
#[test]
fn summary_shows_shapes_lines_and_total() {
    let out = ok(wgtrain(&["model", "cnn3-bn"]));
    assert!(out.starts_with("data: "), "{out}");
    assert!(
        out.lines()
            .nth(1)
            .unwrap()
            .starts_with("cnn3-bn: input 28x28x1, 10 classes"),
        "{out}"
    );
    for row in ["conv2d", "14x14x16", "7x7x32", "4x4x64", "flatten", "1024"] {
        assert!(out.contains(row), "{row}: {out}");
    }
    // cnn3-bn: 144 + 32 + 4,608 + 64 + 18,432 + 128 + 10,250 parameters.
    assert!(
        out.trim_end().ends_with("total parameters: 33,658"),
        "{out}"
    );
    let text = ok(wgtrain(&["model", "fc8", "--show"]));
    assert_eq!(text, BUILTINS[0].1);
}

/// A file of the user's, with shapes from the data: rectangular strides and "same" padding.
#[test]
fn a_users_file_gets_its_shapes_inferred() {
    let text = r#"
version = 1
[[layer]]
type = "conv2d"
filters = 8
kernel = 5
padding = "same"
[[layer]]
type = "relu"
[[layer]]
type = "conv2d"
filters = 4
kernel = 2
stride = 2
[[layer]]
type = "flatten"
[[layer]]
type = "dense"
units = 32
[[layer]]
type = "batchnorm"
[[layer]]
type = "dense"
units = "classes"
"#;
    let net = parse_network("mine.toml", text, Shape::Image { h: 32, w: 24, c: 3 }, 7).unwrap();
    let shapes: Vec<String> = net.layers.iter().map(|l| l.output.to_string()).collect();
    assert_eq!(
        shapes,
        ["32x24x8", "32x24x8", "16x12x4", "768", "32", "32", "7"]
    );
    assert_eq!(net.layers[0].params[0].1, vec![8, 5 * 5 * 3]);
    assert_eq!(net.layers[2].line, 10);
    assert_eq!(
        net.param_count(),
        8 * 75 + 8 + 4 * 32 + 4 + 768 * 32 + 32 + 64 + 32 * 7 + 7
    );
}

/// Bad files: one line naming the file, the layer (number, type, line) where there is one, and the
/// problem; exit 2.
#[test]
fn bad_files_are_one_line_errors_naming_the_layer() {
    let dir = tempfile::tempdir().unwrap();
    let cases: [(&str, &[&str]); 12] = [
        (
            "version = 1\n[[layer]]\ntype = \"flatten\"\n[[layer]]\ntype = \"dense\"\nunits = 10\nwidth = 3\n",
            &["layer 2 (dense, line 4)", "unknown field `width`"],
        ),
        (
            "version = 1\n[[layer]]\ntype = \"lstm\"\nsize = 2\n",
            &["layer 1 (lstm, line 2)", "unknown variant `lstm`", "maxpool2d"],
        ),
        (
            "version = 1\n[[layer]]\ntype = \"dense\"\nunits = 10\n",
            &["layer 1 (dense, line 2)", "input is 28x28x1, not flat: add a flatten layer"],
        ),
        (
            "version = 1\n[[layer]]\ntype = \"conv2d\"\nfilters = 4\nkernel = 29\n",
            &["layer 1 (conv2d, line 2)", "input 28x28 (padded by 0) is smaller than the 29x29 kernel"],
        ),
        (
            "version = 1\n[[layer]]\ntype = \"flatten\"\n[[layer]]\ntype = \"dense\"\nunits = 5\n",
            &["layer 2 (dense, line 4)", "ends in 5 values per sample", "10 classes"],
        ),
        ("version = 2\n[[layer]]\ntype = \"relu\"\n", &["version 2", "version 1"]),
        (
            "version = 1\n[[layer]]\ntype = \"conv2d\"\nfilters = 4\nkernel = 4\npadding = \"same\"\n",
            &["layer 1 (conv2d, line 2)", "odd kernel"],
        ),
        (
            "version = 1\n[[layer]]\ntype = \"flatten\"\n[[layer]]\ntype = \"dense\"\nunits = 0\n",
            &["layer 2 (dense, line 4)", "units = 0: must be at least 1"],
        ),
        ("version = 1\n[[layer]\ntype = \"relu\"\n", &["line 2"]),
        (
            "version = 1\n[[layer]]\ntype = \"maxpool2d\"\nsize = 2\n[[layer]]\ntype = \"maxpool2d\"\nsize = 20\n",
            &["layer 2 (maxpool2d, line 5)", "input 14x14 is smaller than size 20"],
        ),
        (
            "version = 1\n[[layer]]\ntype = \"flatten\"\n[[layer]]\ntype = \"avgpool2d\"\nsize = 2\n",
            &["layer 2 (avgpool2d, line 4)", "not an image"],
        ),
        (
            "version = 1\n[[layer]]\ntype = \"flatten\"\n[[layer]]\ntype = \"dense\"\nunits = 8\nname = \"a\"\n[[layer]]\ntype = \"dense\"\nunits = \"classes\"\nname = \"a\"\n",
            &["layer 3 (dense, line 8)", "a.weight is already in the network"],
        ),
    ];
    for (i, (text, mentions)) in cases.iter().enumerate() {
        let path = dir.path().join(format!("bad{i}.toml"));
        std::fs::write(&path, text).unwrap();
        let p = path.to_str().unwrap();
        let mut want = vec![p];
        want.extend(mentions.iter());
        assert_input_error(&wgtrain(&["model", p]), &want);
    }
    assert_input_error(
        &wgtrain(&["model", "resnet"]),
        &["unknown model 'resnet'", "cnn7-bn", "model file"],
    );
    assert_input_error(
        &wgtrain(&["model", "/nonexistent/m.toml"]),
        &["m.toml", "not found"],
    );
}

/// A model file trains, and its checkpoint carries the file: eval and --resume need nothing else, even
/// once the file is gone.
#[test]
fn a_model_file_trains_and_its_checkpoint_carries_it() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    support::synthetic_dir(&data, 300, 100, 1);
    let d = data.to_str().unwrap();
    let file = dir.path().join("small.toml");
    std::fs::write(
        &file,
        "version = 1\n[[layer]]\ntype = \"conv2d\"\nfilters = 4\nkernel = 3\nstride = 2\n[[layer]]\ntype = \"relu\"\n[[layer]]\ntype = \"flatten\"\n[[layer]]\ntype = \"dense\"\nunits = \"classes\"\n",
    )
    .unwrap();
    let ck = dir.path().join("c.st");
    let (f, c) = (file.to_str().unwrap(), ck.to_str().unwrap());
    let mut args = support::tiny_train(d);
    args.extend(["--model", f, "--steps", "4", "--save", c, "-q", "--json"]);
    let out = ok(wgtrain(&args));
    let json: serde_json::Value = serde_json::from_str(out.lines().last().unwrap()).unwrap();
    assert_eq!(json["model"], f);
    std::fs::remove_file(&file).unwrap();
    let eval = ok(wgtrain(&[
        "eval",
        "--checkpoint",
        c,
        "--data",
        d,
        "--backend",
        "cpu",
        "-q",
    ]));
    assert!(eval.contains(&format!("{c}: {f} adam step 4")), "{eval}");
    let mut resume = support::tiny_train(d);
    resume.extend(["--resume", c, "--steps", "6", "-q"]);
    let out = ok(wgtrain(&resume));
    assert!(out.contains("steps 5-6 (resumed at step 4)"), "{out}");
}

/// LeNet-5's shapes, as the summary shows them: "same" 5x5, average pooling, valid 5x5, 400 features.
#[test]
fn lenet5_shapes() {
    let text = wgtrain::model::file::builtin("lenet5").unwrap();
    let net = parse_network("lenet5", text, MNIST, CLASSES).unwrap();
    let shapes: Vec<String> = net.layers.iter().map(|l| l.output.to_string()).collect();
    assert_eq!(
        shapes,
        [
            "28x28x6", "28x28x6", "14x14x6", "10x10x16", "10x10x16", "5x5x16", "400", "120", "120",
            "84", "84", "10"
        ]
    );
    assert_eq!(net.param_count(), 61_706);
}

/// Dropout's masks are a function of (seed, layer, step): a run resumed from a checkpoint drops the
/// same elements as the run that never stopped, so its losses are the same, bit for bit.
#[test]
fn a_resumed_dropout_run_matches_the_run_that_never_stopped() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    support::synthetic_dir(&data, 300, 100, 1);
    let d = data.to_str().unwrap();
    let file = dir.path().join("drop.toml");
    std::fs::write(
        &file,
        "version = 1\n[[layer]]\ntype = \"flatten\"\n[[layer]]\ntype = \"dense\"\nunits = 32\n[[layer]]\ntype = \"relu\"\n[[layer]]\ntype = \"dropout\"\np = 0.5\n[[layer]]\ntype = \"dense\"\nunits = \"classes\"\n",
    )
    .unwrap();
    let f = file.to_str().unwrap();
    let run = |extra: &[&str]| {
        let mut args = support::tiny_train(d);
        args.extend(["--model", f, "-q", "--log-every", "1"]);
        args.extend(extra);
        ok(wgtrain(&args));
    };
    let path = |name: &str| dir.path().join(name).to_str().unwrap().to_string();
    let (whole, first, second, ck) = (path("whole"), path("first"), path("second"), path("c.st"));
    run(&["--steps", "8", "--out", &whole]);
    run(&["--steps", "4", "--out", &first, "--save", &ck]);
    run(&["--steps", "8", "--out", &second, "--resume", &ck]);
    let losses = |dir: &str| std::fs::read_to_string(format!("{dir}/losses.csv")).unwrap();
    let (w, a, b) = (losses(&whole), losses(&first), losses(&second));
    let joined: Vec<&str> = a.lines().chain(b.lines().skip(1)).collect();
    assert_eq!(w.lines().collect::<Vec<_>>(), joined);
}
