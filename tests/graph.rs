//! `wgtrain graph`: the DOT of every model (layers, parameters, loss, gradient flow), batch norm's own
//! graph, rendering through Graphviz, and the CLI's handling of bad input.

use std::process::Command;
use wgtrain::backend::cpu::CpuBackend;
use wgtrain::model::{Model, ModelSpec, MODEL_NAMES};
use wgtrain::tools::graph::{batchnorm_dot, model_dot, render, GraphFormat};

mod support;
use support::{assert_input_error, wgtrain};

/// Graphviz's `dot`, if installed (CI installs it).
fn have_dot() -> bool {
    let ok = Command::new("dot")
        .arg("-V")
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        eprintln!("note: Graphviz `dot` not installed; skipping the rendering checks");
    }
    ok
}

/// The DOT label texts (the `label="..."` values), unescaped.
fn labels(dot: &str) -> Vec<String> {
    dot.split("label=\"")
        .skip(1)
        .map(|s| {
            let mut out = String::new();
            let mut chars = s.chars();
            while let Some(c) = chars.next() {
                match c {
                    '\\' => match chars.next() {
                        Some('n') => out.push('\n'),
                        Some(o) => out.push(o),
                        None => {}
                    },
                    '"' => break,
                    c => out.push(c),
                }
            }
            out
        })
        .collect()
}

#[test]
fn every_model_graph_has_its_layers_params_and_loss() {
    let be = CpuBackend::new();
    for name in MODEL_NAMES {
        let spec = ModelSpec::parse(name).unwrap();
        let model = Model::new(&be, spec.clone(), 1, 0);
        let dot = model_dot(&spec, false);
        let texts = labels(&dot);
        assert!(dot.starts_with("digraph"), "{name}");
        for layer in &model.layers {
            let d = layer.describe();
            assert!(
                texts.iter().any(|t| t.lines().any(|l| l == d)),
                "{name}: layer '{d}' missing from the graph"
            );
        }
        for p in model.params() {
            let shape = p
                .shape
                .iter()
                .map(|d| d.to_string())
                .collect::<Vec<_>>()
                .join("×");
            let line = format!("{}  {shape}", p.name);
            assert!(
                texts.iter().any(|t| t.lines().any(|l| l == line)),
                "{name}: parameter {} {shape} missing",
                p.name
            );
        }
        for b in model.buffers() {
            assert!(dot.contains(&b.name), "{name}: buffer {} missing", b.name);
        }
        assert!(dot.contains("SoftmaxCrossEntropy"), "{name}");
        assert!(dot.contains("loss L"), "{name}");
        assert!(dot.contains("logits N×10"), "{name}");
        // Forward only: no gradients.
        assert!(!dot.contains("dL/d"), "{name}");
        assert!(!dot.contains("style=dashed"), "{name}");
    }
}

#[test]
fn graph_shapes_follow_the_tensors() {
    let dot = model_dot(&ModelSpec::parse("cnn7").unwrap(), false);
    for shape in ["N×28×28×1", "N×14×14×16", "N×7×7×32", "N×4×4×128", "N×2048"] {
        assert!(dot.contains(shape), "cnn7 graph lacks {shape}");
    }
    let fc = model_dot(&ModelSpec::parse("fc8").unwrap(), false);
    for shape in ["N×784", "N×256", "N×4", "fc1.weight  256×784"] {
        assert!(fc.contains(shape), "fc8 graph lacks {shape}");
    }
}

#[test]
fn backward_graph_has_gradient_edges_and_param_gradients() {
    let be = CpuBackend::new();
    for name in ["fc8", "cnn3-bn"] {
        let spec = ModelSpec::parse(name).unwrap();
        let model = Model::new(&be, spec.clone(), 1, 0);
        let dot = model_dot(&spec, true);
        assert!(dot.contains("dL/dh"), "{name}");
        assert!(dot.contains("(p - y)/N"), "{name}: softmax-CE gradient");
        for p in model.params() {
            assert!(
                dot.contains(&format!("dL/d{}", p.name)),
                "{name}: gradient node of {} missing",
                p.name
            );
        }
        // One dashed reverse edge between each pair of consecutive layers, one from the head, none into
        // the data (the first layer's input gradient is never computed).
        let n = model.layers.len();
        for i in 1..n {
            assert!(
                dot.contains(&format!("L{i} -> L{} [style=dashed", i - 1)),
                "{name}: gradient edge L{i} -> L{}",
                i - 1
            );
        }
        assert!(dot.contains(&format!("head -> L{} [style=dashed", n - 1)));
        assert!(!dot.contains("L0 -> x"), "{name}");
    }
}

/// `edge` ("a -> b") is in `dot`: written so, with ports (`a:e -> b:e`), or reversed and drawn
/// backwards (`b -> a [dir=back`).
fn has_edge(dot: &str, edge: &str) -> bool {
    let (a, b) = edge.split_once(" -> ").unwrap();
    dot.lines().flat_map(|l| l.split(';')).any(|stmt| {
        let Some((from, rest)) = stmt.trim().split_once(" -> ") else {
            return false;
        };
        let port = |s: &str| s.split(':').next().unwrap().trim().to_string();
        let (to, attrs) = rest.split_once(" [").unwrap_or((rest, ""));
        let (from, to) = (port(from), port(to));
        (from == a && to == b && !attrs.contains("dir=back"))
            || (from == b && to == a && attrs.contains("dir=back"))
    })
}

#[test]
fn batchnorm_layer_graph_is_fig_2() {
    let dot = batchnorm_dot(&ModelSpec::parse("fc8-bn").unwrap(), false).unwrap();
    let texts = labels(&dot);
    for name in ["x", "mu", "sigma^2", "x-hat", "gamma γ", "beta β", "y"] {
        assert!(
            texts.iter().any(|t| t.lines().next() == Some(name)),
            "batch-norm graph lacks node {name}: {texts:?}"
        );
    }
    for edge in [
        "x -> mu",
        "mu -> sigma2",
        "x -> sigma2",
        "sigma2 -> xhat",
        "mu -> xhat",
        "x -> xhat",
        "xhat -> y",
        "gamma -> y",
        "beta -> y",
    ] {
        assert!(has_edge(&dot, edge), "missing edge {edge}");
    }
    assert!(
        dot.contains("bn1.weight [256]"),
        "gamma is the real parameter"
    );
    assert!(dot.contains("bn1.running_mean") && dot.contains("bn1.running_var"));
    assert!(dot.contains("ε = 1e-5"), "eps read from the layer");
    assert!(!dot.contains("dL/d"));

    let back = batchnorm_dot(&ModelSpec::parse("cnn3-bn").unwrap(), true).unwrap();
    for g in [
        "dL/dy_i",
        "dL/dx̂_i",
        "dL/dsigma^2",
        "dL/dmu",
        "dL/dx_i",
        "dL/dgamma",
        "dL/dbeta",
    ] {
        assert!(back.contains(g), "backward batch-norm graph lacks {g}");
    }
    assert!(back.contains("BatchNorm2d 16"));
    assert!(back.contains("m = N·14·14"));
    assert!(back.contains("dx -> dmu [dir=back, style=dashed"));

    let err = batchnorm_dot(&ModelSpec::parse("cnn5").unwrap(), false).unwrap_err();
    assert!(err.to_string().contains("no batch-norm layer"), "{err}");
}

#[test]
fn every_graph_is_valid_dot() {
    if !have_dot() {
        return;
    }
    let mut graphs: Vec<String> = Vec::new();
    for name in MODEL_NAMES {
        let spec = ModelSpec::parse(name).unwrap();
        graphs.push(model_dot(&spec, false));
        graphs.push(model_dot(&spec, true));
    }
    graphs.push(batchnorm_dot(&ModelSpec::parse("cnn7-bn").unwrap(), true).unwrap());
    let dir = tempfile::tempdir().unwrap();
    for (i, g) in graphs.iter().enumerate() {
        let out = dir.path().join(format!("g{i}.svg"));
        render(g, GraphFormat::Svg, &out).unwrap_or_else(|e| panic!("graph {i}: {e:#}\n{g}"));
        let svg = std::fs::read_to_string(&out).unwrap();
        assert!(svg.contains("<svg"), "graph {i}");
    }
}

/// Issue 12, point 10: laid out by Graphviz (`dot -Tplain`), no edge strays more than a quarter inch
/// outside the columns of nodes (the batch-norm graph's x -> sigma^2 edge used to loop out to the
/// canvas edge, 1.1 inch beyond its leftmost node) or runs through a node it does not join.
#[test]
fn edges_stay_between_the_nodes_they_join() {
    if !have_dot() {
        return;
    }
    let graphs = [
        (
            "bn",
            batchnorm_dot(&ModelSpec::parse("fc8-bn").unwrap(), false).unwrap(),
        ),
        (
            "bn backward",
            batchnorm_dot(&ModelSpec::parse("cnn7-bn").unwrap(), true).unwrap(),
        ),
        (
            "cnn7-bn backward",
            model_dot(&ModelSpec::parse("cnn7-bn").unwrap(), true),
        ),
        (
            "fc8-bn",
            model_dot(&ModelSpec::parse("fc8-bn").unwrap(), false),
        ),
    ];
    for (what, g) in graphs {
        let mut child = Command::new("dot")
            .arg("-Tplain")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        use std::io::Write;
        child.stdin.take().unwrap().write_all(g.as_bytes()).unwrap();
        let plain = String::from_utf8(child.wait_with_output().unwrap().stdout).unwrap();
        // node NAME X Y W H ...; edge TAIL HEAD N X1 Y1 ... XN YN ...
        let mut nodes = std::collections::HashMap::new();
        let mut edges = Vec::new();
        for line in plain.lines() {
            let t: Vec<&str> = line.split_whitespace().collect();
            let f = |i: usize| t[i].parse::<f64>().unwrap();
            match t.first() {
                Some(&"node") => {
                    nodes.insert(t[1].to_string(), (f(2), f(3), f(4) / 2.0, f(5) / 2.0));
                }
                Some(&"edge") => {
                    let n: usize = t[3].parse().unwrap();
                    let c: Vec<(f64, f64)> = (0..n).map(|k| (f(4 + 2 * k), f(5 + 2 * k))).collect();
                    // Points on the curve itself: cubic Bezier pieces over control points 0-3, 3-6, ...
                    let mut pts = Vec::new();
                    for p in c.windows(4).step_by(3) {
                        for s in 0..=16 {
                            let u = s as f64 / 16.0;
                            let w = [
                                (1.0 - u).powi(3),
                                3.0 * u * (1.0 - u).powi(2),
                                3.0 * u * u * (1.0 - u),
                                u.powi(3),
                            ];
                            let x = (0..4).map(|i| w[i] * p[i].0).sum::<f64>();
                            let y = (0..4).map(|i| w[i] * p[i].1).sum::<f64>();
                            pts.push((x, y));
                        }
                    }
                    edges.push((t[1].to_string(), t[2].to_string(), pts));
                }
                _ => {}
            }
        }
        let left = nodes.values().map(|n| n.0 - n.2).fold(f64::MAX, f64::min);
        let right = nodes.values().map(|n| n.0 + n.2).fold(f64::MIN, f64::max);
        for (a, b, pts) in &edges {
            for &(x, y) in pts {
                assert!(
                    (left - 0.25..=right + 0.25).contains(&x),
                    "{what}: edge {a} -> {b} reaches x = {x:.2}, outside the nodes' {left:.2}..{right:.2}"
                );
                // Well inside another node (a margin for the curve's ends at its own nodes' borders).
                for (name, &(nx, ny, hw, hh)) in &nodes {
                    if name != a && name != b {
                        let inside = (x - nx).abs() < hw - 0.05 && (y - ny).abs() < hh - 0.05;
                        assert!(!inside, "{what}: edge {a} -> {b} runs through node {name}");
                    }
                }
            }
        }
    }
}

#[test]
fn cli_graph_to_stdout_and_files() {
    let out = wgtrain(&["graph", "--model", "cnn3"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let dot = String::from_utf8(out.stdout).unwrap();
    assert!(dot.starts_with("digraph \"cnn3\""));
    assert!(dot.contains("Conv2d 3x3 s2 p1 28x28x1->14x14x16"));

    let out = wgtrain(&["graph", "--layer", "batchnorm", "--backward"]);
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("dL/dgamma"));

    let dir = tempfile::tempdir().unwrap();
    let dotfile = dir.path().join("g.dot");
    let out = wgtrain(&[
        "graph",
        "--model",
        "fc8-bn",
        "--backward",
        "-o",
        dotfile.to_str().unwrap(),
    ]);
    assert!(out.status.success());
    assert!(std::fs::read_to_string(&dotfile)
        .unwrap()
        .contains("dL/dfc1.weight"));

    if have_dot() {
        let png = dir.path().join("g.png");
        let out = wgtrain(&["graph", "--model", "cnn3-bn", "-o", png.to_str().unwrap()]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let bytes = std::fs::read(&png).unwrap();
        assert!(bytes.starts_with(b"\x89PNG"), "not a PNG");
        let svg = dir.path().join("g.out");
        let out = wgtrain(&["graph", "--format", "svg", "-o", svg.to_str().unwrap()]);
        assert!(out.status.success());
        assert!(std::fs::read_to_string(&svg).unwrap().contains("<svg"));
    }
}

#[test]
fn cli_graph_without_graphviz_writes_dot_and_says_how_to_get_it() {
    let dir = tempfile::tempdir().unwrap();
    let png = dir.path().join("model.png");
    // An empty PATH hides `dot`.
    let out = Command::new(env!("CARGO_BIN_EXE_wgtrain"))
        .args(["graph", "--model", "fc8", "-o", png.to_str().unwrap()])
        .env("PATH", "")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8(out.stderr).unwrap();
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    assert!(err.contains("apt-get install graphviz"), "{err}");
    let dotfile = dir.path().join("model.dot");
    assert!(err.contains(dotfile.to_str().unwrap()), "{err}");
    assert!(std::fs::read_to_string(&dotfile)
        .unwrap()
        .starts_with("digraph"));
    assert!(!png.exists());
}

#[test]
fn cli_graph_bad_input_is_one_line_exit_2() {
    assert_input_error(
        &wgtrain(&["graph", "--model", "resnet"]),
        &["unknown model 'resnet'"],
    );
    assert_input_error(
        &wgtrain(&["graph", "--model", "fc8", "--layer", "batchnorm"]),
        &["no batch-norm layer"],
    );
    assert_input_error(&wgtrain(&["graph", "--format", "png"]), &["-o FILE"]);
    // A missing directory is created (issue 16); one under a regular file cannot be.
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("a-file");
    std::fs::write(&file, "x").unwrap();
    let under_file = file.join("g.dot");
    assert_input_error(
        &wgtrain(&["graph", "-o", under_file.to_str().unwrap()]),
        &["a-file is not a directory"],
    );
}

/// Shapes come from the model's own structured shapes, pooling included (they were traced from the
/// layers' descriptions, which knew only convolutions and flatten: LeNet-5's pooled 14x14x6 showed as
/// 1176 values).
#[test]
fn lenet5_graph_has_the_pooled_shapes() {
    let dot = model_dot(&ModelSpec::parse("lenet5").unwrap(), false);
    for edge in [
        "h2: N×14×14×6",
        "h4: N×5×5×16",
        "h5: N×400",
        "x: images\\nN×28×28×1",
    ] {
        assert!(dot.contains(edge), "{edge}:\n{dot}");
    }
    let mlp = model_dot(&ModelSpec::parse("mlp3").unwrap(), false);
    assert!(
        mlp.contains("x: images, flattened\\nN×784 (28×28)"),
        "{mlp}"
    );
}
