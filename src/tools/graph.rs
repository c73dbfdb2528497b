//! Computational graphs as Graphviz DOT, built from a real [`Model`] so they cannot drift from the code.
//!
//! - [`model_dot`]: the model's ops in order (each layer's `describe()`), the tensor shapes between them,
//!   the parameters and running statistics each op owns, and the loss; with `backward`, the gradient flow
//!   as in the study's Fig. 1: dashed reverse edges labelled `dL/dh` and one node per parameter gradient.
//! - [`batchnorm_dot`]: one batch-norm layer's own graph (x, mu, sigma^2, x-hat, gamma, beta, y) as in the
//!   study's Fig. 2 (Ioffe & Szegedy 2015), with the backward pass's formulas when asked.
//!
//! [`render`] writes DOT, or SVG/PNG through Graphviz's `dot` program when it is installed.

use crate::backend::cpu::CpuBackend;
use crate::error::InputError;
use crate::io::atomic::write_atomic;
use crate::model::file::Shape;
use crate::model::layers::BatchNorm;
use crate::model::{Model, ModelSpec};
use anyhow::{Context, Result};
use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// What `wgtrain graph` writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum GraphFormat {
    Dot,
    Svg,
    Png,
}

impl GraphFormat {
    /// The format a file name asks for: `.svg`, `.png`, `.dot` or `.gv`; any other name is an error
    /// listing them (DOT text in a `.jpg` would only puzzle whoever opens it).
    pub fn from_path(path: &Path) -> Result<GraphFormat, InputError> {
        match path
            .extension()
            .and_then(|e| e.to_str())
            .map(|e| e.to_ascii_lowercase())
            .as_deref()
        {
            Some("svg") => Ok(GraphFormat::Svg),
            Some("png") => Ok(GraphFormat::Png),
            Some("dot") | Some("gv") => Ok(GraphFormat::Dot),
            _ => Err(InputError::file(
                path,
                "-o: unknown format: name the file .dot, .gv, .svg or .png (or give --format)",
            )),
        }
    }
    pub fn name(&self) -> &'static str {
        match self {
            GraphFormat::Dot => "dot",
            GraphFormat::Svg => "svg",
            GraphFormat::Png => "png",
        }
    }
}

/// One layer as the graph shows it.
struct Node {
    /// The layer's name, from its parameters' names (`fc1`, `bn3`), else its kind and position.
    name: String,
    describe: String,
    params: Vec<(String, Vec<usize>)>,
    buffers: Vec<(String, usize)>,
    /// Output shape per batch, `N` first.
    out: Vec<usize>,
    out_per_sample: usize,
}

/// `N×28×28×1` for `[batch, 28, 28, 1]` (the leading entry is the batch).
fn shape_str(shape: &[usize]) -> String {
    let mut s = "N".to_string();
    for d in &shape[1..] {
        let _ = write!(s, "×{d}");
    }
    s
}

fn dims(shape: &[usize]) -> String {
    shape
        .iter()
        .map(|d| d.to_string())
        .collect::<Vec<_>>()
        .join("×")
}

/// Escapes a label for a DOT double-quoted string.
fn esc(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// `[1, h, w, c]` or `[1, n]`: a shape per sample with the batch in front.
fn batch_shape(s: Shape) -> Vec<usize> {
    match s {
        Shape::Image { h, w, c } => vec![1, h, w, c],
        Shape::Flat(n) => vec![1, n],
    }
}

/// The layers of `model` with the shapes the model was built with.
fn nodes(model: &Model<CpuBackend>) -> Vec<Node> {
    let mut out = Vec::new();
    for (layer, &shape) in model.layers.iter().zip(&model.shapes) {
        let describe = layer.describe();
        let ops = layer.out_per_sample();
        let params: Vec<(String, Vec<usize>)> = layer
            .params()
            .iter()
            .map(|p| (p.name.clone(), p.shape.clone()))
            .collect();
        let buffers = layer
            .buffers()
            .iter()
            .map(|b| (b.name.clone(), b.value.len()))
            .collect();
        let name = params
            .first()
            .and_then(|(n, _)| n.split('.').next())
            .map(str::to_string)
            .unwrap_or_else(|| {
                let kind = describe.split_whitespace().next().unwrap_or("layer");
                kind.to_ascii_lowercase()
            });
        out.push(Node {
            name,
            describe,
            params,
            buffers,
            out: batch_shape(shape),
            out_per_sample: ops,
        });
    }
    out
}

/// The input a model's first layer sees: NHWC images, or the images flattened.
fn input_shape(model: &Model<CpuBackend>) -> Vec<usize> {
    batch_shape(model.input)
}

const FWD: &str = "#1f4e79";
const PARAM: &str = "#2e7d32";
const GRAD: &str = "#c62828";

/// The computational graph of `spec` as DOT; with `backward`, the gradient flow too.
pub fn model_dot(spec: &ModelSpec, backward: bool) -> String {
    let model = Model::new(&CpuBackend::new(), spec.clone(), 1, 0);
    let input = input_shape(&model);
    let layers = nodes(&model);
    let mut d = String::new();
    let title = if backward {
        format!(
            "{}: forward (solid) and backward (dashed red: gradients)",
            spec.name()
        )
    } else {
        format!("{}: forward pass", spec.name())
    };
    let _ = writeln!(d, "digraph \"{}\" {{", esc(&spec.name()));
    let _ = writeln!(
        d,
        "  graph [rankdir=TB, fontname=\"Helvetica\", labelloc=t, fontsize=18, nodesep=0.3, ranksep=0.45, label=\"{}\"];",
        esc(&title)
    );
    let _ = writeln!(d, "  node [fontname=\"Helvetica\", fontsize=11];");
    let _ = writeln!(d, "  edge [fontname=\"Helvetica\", fontsize=10];");
    let input_label = match spec.network().input {
        Shape::Image { h, w, .. } if input.len() == 2 => {
            format!("x: images, flattened\n{} ({h}×{w})", shape_str(&input))
        }
        _ => format!("x: images\n{}", shape_str(&input)),
    };
    let _ = writeln!(
        d,
        "  x [label=\"{}\", shape=box, style=\"rounded,filled\", fillcolor=\"#eeeeee\", group=main];",
        esc(&input_label)
    );
    for (i, n) in layers.iter().enumerate() {
        let _ = writeln!(
            d,
            "  L{i} [label=\"{}\", shape=box, style=\"filled\", fillcolor=\"#dbe9f6\", color=\"{FWD}\", group=main];",
            esc(&format!("{}\n{}", n.name, n.describe))
        );
        // Left of the layer, in this order: its running statistics, then its parameters, one node each
        // (one node per kind keeps the edges short: nothing crosses another layer's edges).
        let mut row = Vec::new();
        if !n.buffers.is_empty() {
            let id = format!("B{i}");
            let lines: Vec<String> = n
                .buffers
                .iter()
                .map(|(b, len)| format!("{b}  {len}"))
                .collect();
            let _ = writeln!(
                d,
                "  {id} [label=\"{}\", shape=box, style=\"rounded,dotted\", color=\"#777777\"];",
                esc(&format!("{}\n(running statistics)", lines.join("\n")))
            );
            // Under the parameters' node (south ports), not through it.
            let _ = writeln!(
                d,
                "  {id}:s -> L{i}:sw [style=dotted, dir=both, color=\"#777777\", tooltip=\"updated in training, used in evaluation\"];"
            );
            row.push(id);
        }
        if !n.params.is_empty() {
            let id = format!("P{i}");
            let lines: Vec<String> = n
                .params
                .iter()
                .map(|(p, shape)| format!("{p}  {}", dims(shape)))
                .collect();
            let _ = writeln!(
                d,
                "  {id} [label=\"{}\", shape=ellipse, style=filled, fillcolor=\"#e3f1e4\", color=\"{PARAM}\"];",
                esc(&lines.join("\n"))
            );
            let _ = writeln!(d, "  {id} -> L{i} [color=\"{PARAM}\"];");
            row.push(id);
        }
        row.push(format!("L{i}"));
        let _ = writeln!(d, "  {{ rank=same; {} }}", row.join("; "));
        for pair in row.windows(2) {
            let _ = writeln!(d, "  {} -> {} [style=invis];", pair[0], pair[1]);
        }
        let from = if i == 0 {
            "x".to_string()
        } else {
            format!("L{}", i - 1)
        };
        let shape = if i == 0 { &input } else { &layers[i - 1].out };
        let _ = writeln!(
            d,
            "  {from} -> L{i} [label=\" h{i}: {}\", color=\"{FWD}\", penwidth=1.5, weight=20];",
            shape_str(shape)
        );
    }
    let last = layers.len() - 1;
    let classes = model.head.classes;
    let _ = writeln!(
        d,
        "  head [label=\"SoftmaxCrossEntropy\\np = softmax(h{}), {classes} classes\", shape=box, style=filled, fillcolor=\"#fde9d9\", group=main];",
        layers.len()
    );
    let _ = writeln!(
        d,
        "  labels [label=\"y: labels\\nN\", shape=box, style=\"rounded,filled\", fillcolor=\"#eeeeee\"];"
    );
    let _ = writeln!(
        d,
        "  loss [label=\"loss L\\nmean cross-entropy (scalar)\", shape=doubleoctagon, style=filled, fillcolor=\"#fff2cc\", group=main];"
    );
    let _ = writeln!(
        d,
        "  L{last} -> head [label=\" h{}: logits {}\", color=\"{FWD}\", penwidth=1.5, weight=20];",
        layers.len(),
        shape_str(&layers[last].out)
    );
    let _ = writeln!(d, "  head -> labels [dir=back];");
    let _ = writeln!(d, "  {{ rank=same; head; labels }}");
    let _ = writeln!(
        d,
        "  head -> loss [color=\"{FWD}\", penwidth=1.5, weight=20];"
    );

    if backward {
        let _ = writeln!(
            d,
            "  loss -> head [style=dashed, color=\"{GRAD}\", fontcolor=\"{GRAD}\", constraint=false, label=\" dL/dL = 1\"];"
        );
        let _ = writeln!(
            d,
            "  head -> L{last} [style=dashed, color=\"{GRAD}\", fontcolor=\"{GRAD}\", constraint=false, label=\" dL/dh{} = (p - y)/N\\n{}\"];",
            layers.len(),
            shape_str(&layers[last].out)
        );
        for (i, n) in layers.iter().enumerate() {
            // The first layer's input is the data: its gradient is never computed.
            if i > 0 {
                let _ = writeln!(
                    d,
                    "  L{i} -> L{} [style=dashed, color=\"{GRAD}\", fontcolor=\"{GRAD}\", constraint=false, label=\" dL/dh{i}\\n{}\"];",
                    i - 1,
                    shape_str(&layers[i - 1].out)
                );
            }
            // All of the layer's parameter gradients in one node on its right.
            if !n.params.is_empty() {
                let g = format!("G{i}");
                let lines: Vec<String> = n
                    .params
                    .iter()
                    .map(|(p, shape)| format!("dL/d{p}  {}", dims(shape)))
                    .collect();
                let _ = writeln!(
                    d,
                    "  {g} [label=\"{}\", shape=box, style=\"dashed,rounded\", color=\"{GRAD}\", fontcolor=\"{GRAD}\"];",
                    esc(&lines.join("\n"))
                );
                let _ = writeln!(
                    d,
                    "  L{i} -> {g} [style=dashed, color=\"{GRAD}\", minlen=2];"
                );
                let _ = writeln!(d, "  {{ rank=same; L{i}; {g} }}");
            }
        }
    }
    d.push_str("}\n");
    d
}

/// Which layer's own graph `wgtrain graph --layer` draws.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum LayerGraph {
    /// Batch normalisation (Ioffe & Szegedy 2015, the study's Fig. 2).
    #[value(alias = "bn")]
    Batchnorm,
}

/// The graph of the first batch-norm layer of `spec` (x, mu, sigma^2, x-hat, gamma, beta, y), with the
/// backward pass's formulas if `backward`.
pub fn batchnorm_dot(spec: &ModelSpec, backward: bool) -> Result<String, InputError> {
    let be = CpuBackend::new();
    let model = Model::new(&be, spec.clone(), 1, 0);
    let layers = nodes(&model);
    let n = layers
        .iter()
        .find(|n| n.describe.starts_with("BatchNorm"))
        .ok_or_else(|| {
            InputError::value(format!(
                "model {} has no batch-norm layer: pass a -bn model (e.g. --model {}-bn)",
                spec.name(),
                spec.name()
            ))
        })?;
    let (gamma, beta) = match n.params.as_slice() {
        [g, b] => (g, b),
        _ => {
            return Err(InputError::value(
                "batch-norm layer without gamma and beta".to_string(),
            ))
        }
    };
    let channels = gamma.1.iter().product::<usize>();
    let spatial = n.out_per_sample / channels.max(1);
    // A layer like the model's, to read its constants from the code.
    let reference: BatchNorm<CpuBackend> = BatchNorm::new(&be, &n.name, channels, spatial, None, 1);
    let (eps, momentum) = (reference.eps, reference.momentum);
    let relu = n.describe.contains("ReLU");
    let m = if spatial == 1 {
        "m = N samples".to_string()
    } else {
        let side = (spatial as f64).sqrt().round() as usize;
        format!("m = N·{side}·{side} (every position of every image)")
    };
    let title = format!(
        "{} of {}: {} (ε = {eps:e}, momentum {momentum}){}",
        n.name,
        spec.name(),
        n.describe,
        if backward {
            "\nforward solid, backward dashed red (Ioffe & Szegedy 2015)"
        } else {
            "\n(Ioffe & Szegedy 2015)"
        }
    );
    let mut d = String::new();
    let _ = writeln!(d, "digraph batchnorm {{");
    let _ = writeln!(
        d,
        "  graph [rankdir=TB, fontname=\"Helvetica\", labelloc=t, fontsize=16, nodesep=0.6, ranksep=0.7, label=\"{}\"];",
        esc(&title)
    );
    let _ = writeln!(d, "  node [fontname=\"Helvetica\", fontsize=12];");
    let _ = writeln!(d, "  edge [fontname=\"Helvetica\", fontsize=11];");
    let node = |d: &mut String, id: &str, label: String, style: &str| {
        let _ = writeln!(d, "  {id} [label=\"{}\", {style}];", esc(&label));
    };
    let op = "shape=box, style=filled, fillcolor=\"#dbe9f6\", group=main";
    let par = "shape=ellipse, style=filled, fillcolor=\"#e3f1e4\"";
    node(
        &mut d,
        "x",
        format!("x\nmini-batch x_1 … x_m, [m, {channels}]\n{m}"),
        "shape=box, style=\"rounded,filled\", fillcolor=\"#eeeeee\", group=main",
    );
    node(
        &mut d,
        "mu",
        format!("mu\nμ = (1/m) Σ_i x_i\n[{channels}]"),
        op,
    );
    node(
        &mut d,
        "sigma2",
        format!("sigma^2\nσ² = (1/m) Σ_i (x_i − μ)²\n[{channels}]"),
        op,
    );
    node(
        &mut d,
        "xhat",
        format!("x-hat\nx̂_i = (x_i − μ) / √(σ² + ε)\n[m, {channels}]"),
        op,
    );
    node(
        &mut d,
        "gamma",
        format!("gamma γ\n{} [{}]", gamma.0, dims(&gamma.1)),
        par,
    );
    node(
        &mut d,
        "beta",
        format!("beta β\n{} [{}]", beta.0, dims(&beta.1)),
        par,
    );
    node(
        &mut d,
        "y",
        format!("y\ny_i = γ · x̂_i + β\n[m, {channels}]"),
        op,
    );
    let next = if relu {
        "ReLU (fused), the rest of the network, the loss L"
    } else {
        "the rest of the network, the loss L"
    };
    node(
        &mut d,
        "rest",
        next.to_string(),
        "shape=box, style=\"rounded,dashed\", group=main",
    );
    let main = "weight=10, penwidth=1.5";
    let _ = writeln!(d, "  x -> mu [{main}]; mu -> sigma2 [{main}]; sigma2 -> xhat [{main}]; xhat -> y [{main}]; y -> rest [{main}];");
    // The skip edges leave and enter on the east side, so they run down beside the main column instead
    // of looping out to the canvas edge; `y -> beta` (drawn backwards) puts beta on y's right, gamma on
    // its left.
    let _ = writeln!(d, "  x:e -> sigma2:e; x:e -> xhat:e; mu:e -> xhat:e;");
    let _ = writeln!(d, "  gamma -> y; y -> beta [dir=back];");
    let _ = writeln!(d, "  {{ rank=same; gamma; y; beta }}");
    for (b, _) in &n.buffers {
        let (id, src, what) = if b.ends_with("running_mean") {
            ("rmean", "mu", "μ")
        } else {
            ("rvar", "sigma2", "σ²·m/(m−1)")
        };
        node(
            &mut d,
            id,
            format!("{b}\n← (1 − {momentum})·{b} + {momentum}·{what}\nreplaces the batch statistic in evaluation"),
            "shape=ellipse, style=dotted",
        );
        let _ = writeln!(
            d,
            "  {id} -> {src} [dir=back, style=dotted, label=\"training\"];"
        );
        let _ = writeln!(d, "  {{ rank=same; {id}; {src} }}");
    }
    if backward {
        // The backward pass as a second column, each gradient beside the tensor it belongs to.
        let grad_style = format!(
            "shape=box, style=\"dashed,rounded\", color=\"{GRAD}\", fontcolor=\"{GRAD}\", group=grad"
        );
        for (id, fwd, label) in [
            ("dy", "y", format!("dL/dy_i\nfrom the layers above\n[m, {channels}]")),
            ("dxhat", "xhat", format!("dL/dx̂_i = dL/dy_i · γ\n[m, {channels}]")),
            (
                "dsigma2",
                "sigma2",
                format!("dL/dsigma^2 = Σ_i dL/dx̂_i · (x_i − μ) · (−½)(σ² + ε)^(−3/2)\n[{channels}]"),
            ),
            (
                "dmu",
                "mu",
                format!("dL/dmu = Σ_i dL/dx̂_i · (−1/√(σ² + ε))\n+ dL/dσ² · Σ_i −2(x_i − μ)/m\n[{channels}]"),
            ),
            (
                "dx",
                "x",
                format!("dL/dx_i = dL/dx̂_i / √(σ² + ε)\n+ dL/dσ² · 2(x_i − μ)/m + dL/dμ / m\n[m, {channels}]"),
            ),
        ] {
            node(&mut d, id, label, &grad_style);
            let _ = writeln!(d, "  {{ rank=same; {fwd}; {id} }}");
            let _ = writeln!(
                d,
                "  {fwd} -> {id} [style=dotted, color=\"#bbbbbb\", arrowhead=none, minlen=3];"
            );
        }
        let back = format!("dir=back, style=dashed, color=\"{GRAD}\", penwidth=1.3");
        for (to, from) in [
            ("dxhat", "dy"),
            ("dsigma2", "dxhat"),
            ("dmu", "dxhat"),
            ("dmu", "dsigma2"),
            ("dx", "dxhat"),
            ("dx", "dsigma2"),
            ("dx", "dmu"),
        ] {
            let _ = writeln!(d, "  {to} -> {from} [{back}];");
        }
        for (id, label) in [
            (
                "dgamma",
                format!("dL/dgamma = Σ_i dL/dy_i · x̂_i\n[{channels}]"),
            ),
            ("dbeta", format!("dL/dbeta = Σ_i dL/dy_i\n[{channels}]")),
        ] {
            node(
                &mut d,
                id,
                label,
                &format!(
                    "shape=box, style=\"dashed,rounded\", color=\"{GRAD}\", fontcolor=\"{GRAD}\""
                ),
            );
            let _ = writeln!(
                d,
                "  dy -> {id} [style=dashed, color=\"{GRAD}\", penwidth=1.3];"
            );
        }
    }
    d.push_str("}\n");
    Ok(d)
}

/// A graph written as DOT because `dot` was not there to render it.
#[derive(Debug, thiserror::Error)]
#[error("cannot render {format}: Graphviz's `dot` program is not installed (install Graphviz: `apt-get install graphviz`, `brew install graphviz` or https://graphviz.org/download/); wrote the DOT to {} instead", dot_path.display())]
pub struct GraphvizMissing {
    pub format: &'static str,
    pub dot_path: PathBuf,
}

/// Writes `dot` to `out` as `format`: DOT as is, SVG and PNG through Graphviz's `dot`. Without `dot`
/// installed, the DOT goes to `out` with the extension `.dot` and the error says how to get Graphviz.
/// Every file is written whole (see [`write_atomic`]): a full disk leaves no truncated image.
pub fn render(dot: &str, format: GraphFormat, out: &Path) -> Result<()> {
    if format == GraphFormat::Dot {
        return Ok(write_atomic(out, dot.as_bytes())?);
    }
    let spawned = Command::new("dot")
        .arg(format!("-T{}", format.name()))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let mut child = match spawned {
        Ok(c) => c,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let dot_path = out.with_extension("dot");
            write_atomic(&dot_path, dot.as_bytes())?;
            return Err(GraphvizMissing {
                format: format.name(),
                dot_path,
            }
            .into());
        }
        Err(e) => return Err(e).context("cannot run Graphviz's `dot`"),
    };
    // Written from another thread: `dot` may fill its stdout pipe before it has read all its input.
    let mut stdin = child.stdin.take().expect("stdin is piped");
    let text = dot.to_string();
    let feeder = std::thread::spawn(move || stdin.write_all(text.as_bytes()));
    let done = child.wait_with_output().context("`dot` did not finish")?;
    feeder
        .join()
        .expect("the feeding thread does not panic")
        .context("cannot send the graph to `dot`")?;
    if !done.status.success() {
        let msg = String::from_utf8_lossy(&done.stderr);
        anyhow::bail!(
            "`dot -T{}` failed ({}): {}",
            format.name(),
            done.status,
            msg.lines().next().unwrap_or("no message")
        );
    }
    Ok(write_atomic(out, &done.stdout)?)
}
