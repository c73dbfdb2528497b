//! Model files: a sequential network written by hand in TOML (`version = 1`, then `[[layer]]` tables in
//! order), checked and given its shapes layer by layer from the data's input shape and class count, so
//! nobody writes `16*8*8` by hand. The study's models ship as such files (`models/`, embedded).
//!
//! ```toml
//! version = 1
//! [[layer]]
//! type = "conv2d"
//! filters = 16
//! kernel = 3
//! stride = 2
//! padding = "same"
//! [[layer]]
//! type = "relu"
//! [[layer]]
//! type = "flatten"
//! [[layer]]
//! type = "dense"
//! units = "classes"
//! ```
//!
//! A file that cannot be used is one line naming the file, the layer (number, type and line) and the
//! problem: `models/x.toml: layer 3 (dense, line 9): input is 14x14x16, not flat: add a flatten layer`.

use crate::backend::{Act, PoolKind};
use crate::error::InputError;
use serde::Deserialize;
use std::fmt;
use std::path::Path;

/// The model-file format this version reads.
pub const FORMAT_VERSION: i64 = 1;

/// The layer types a model file may use.
pub const LAYER_TYPES: [&str; 11] = [
    "dense",
    "conv2d",
    "batchnorm",
    "relu",
    "sigmoid",
    "tanh",
    "maxpool2d",
    "avgpool2d",
    "globalavgpool",
    "dropout",
    "flatten",
];

/// The built-in models: their names and their files (in `models/`, compiled in). The study's 8 first,
/// in the order of [`crate::model::MODEL_NAMES`].
pub const BUILTINS: [(&str, &str); 11] = [
    ("fc8", include_str!("../../models/fc8.toml")),
    ("fc8-bn", include_str!("../../models/fc8-bn.toml")),
    ("cnn3", include_str!("../../models/cnn3.toml")),
    ("cnn3-bn", include_str!("../../models/cnn3-bn.toml")),
    ("cnn5", include_str!("../../models/cnn5.toml")),
    ("cnn5-bn", include_str!("../../models/cnn5-bn.toml")),
    ("cnn7", include_str!("../../models/cnn7.toml")),
    ("cnn7-bn", include_str!("../../models/cnn7-bn.toml")),
    ("mlp3", include_str!("../../models/mlp3.toml")),
    ("lenet5", include_str!("../../models/lenet5.toml")),
    ("vgg-small", include_str!("../../models/vgg-small.toml")),
];

/// A dense layer's width: a number, or `"classes"` (the data's class count).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Units {
    Count(usize),
    Classes,
}

/// A convolution's zero padding on each side: a number, `"same"` (`(kernel - 1) / 2`, odd kernels) or
/// `"valid"` (none).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Padding {
    Size(usize),
    Same,
    #[default]
    Valid,
}

/// One layer as the file gives it.
#[derive(Clone, Debug, PartialEq)]
pub enum LayerSpec {
    /// A fully connected layer on a flat input.
    Dense {
        units: Units,
        bias: bool,
        name: Option<String>,
    },
    /// A 2-d convolution with a square kernel on an image input (NHWC).
    Conv2d {
        filters: usize,
        kernel: usize,
        stride: usize,
        padding: Padding,
        bias: bool,
        name: Option<String>,
    },
    /// Batch norm over the channels: 1d on a flat input, 2d on an image.
    BatchNorm { name: Option<String> },
    /// An element-wise activation (`relu`, `sigmoid`, `tanh`).
    Activation(Act),
    /// Max or average pooling of `size x size` windows every `stride` pixels (no padding).
    Pool2d {
        kind: PoolKind,
        size: usize,
        stride: usize,
    },
    /// The mean of each channel over the whole image: image HxWxC to flat C.
    GlobalAvgPool,
    /// In training, drops each value with probability `p` (and scales the rest by `1 / (1 - p)`).
    Dropout { p: f32 },
    /// An image as a flat vector (free: NHWC rows are already contiguous).
    Flatten,
}

impl LayerSpec {
    /// The `type` it is written with.
    pub fn kind(&self) -> &'static str {
        match self {
            LayerSpec::Dense { .. } => "dense",
            LayerSpec::Conv2d { .. } => "conv2d",
            LayerSpec::BatchNorm { .. } => "batchnorm",
            LayerSpec::Activation(act) => act.name(),
            LayerSpec::Pool2d {
                kind: PoolKind::Max,
                ..
            } => "maxpool2d",
            LayerSpec::Pool2d {
                kind: PoolKind::Avg,
                ..
            } => "avgpool2d",
            LayerSpec::GlobalAvgPool => "globalavgpool",
            LayerSpec::Dropout { .. } => "dropout",
            LayerSpec::Flatten => "flatten",
        }
    }
}

/// A tensor's shape per sample.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Shape {
    /// An image, height x width x channels (NHWC in memory).
    Image {
        h: usize,
        w: usize,
        c: usize,
    },
    Flat(usize),
}

impl Shape {
    /// Values per sample.
    pub fn len(&self) -> usize {
        match *self {
            Shape::Image { h, w, c } => h * w * c,
            Shape::Flat(n) => n,
        }
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl fmt::Display for Shape {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Shape::Image { h, w, c } => write!(f, "{h}x{w}x{c}"),
            Shape::Flat(n) => write!(f, "{n}"),
        }
    }
}

/// One layer of a checked network: what the file says, where, and the shapes it works on.
#[derive(Clone, Debug, PartialEq)]
pub struct NetLayer {
    pub spec: LayerSpec,
    /// 1-based line of its `[[layer]]` header (0 for a network not read from text).
    pub line: usize,
    pub input: Shape,
    pub output: Shape,
    /// Its parameters' names and shapes, as the model builds them.
    pub params: Vec<(String, Vec<usize>)>,
}

impl NetLayer {
    pub fn param_count(&self) -> usize {
        self.params
            .iter()
            .map(|(_, s)| s.iter().product::<usize>())
            .sum()
    }
}

/// A model file, checked against an input shape and a class count.
#[derive(Clone, Debug, PartialEq)]
pub struct Network {
    /// The built-in name, or the file's path.
    pub name: String,
    pub input: Shape,
    pub classes: usize,
    pub layers: Vec<NetLayer>,
}

impl Network {
    pub fn param_count(&self) -> usize {
        self.layers.iter().map(NetLayer::param_count).sum()
    }

    /// A table like Keras's `summary()`: per layer its output shape and parameter count, then the total.
    pub fn summary(&self) -> String {
        let mut s = format!(
            "{}: input {}, {} classes\n{:>3}  {:<10} {:>5}  {:<14} {:>10}\n",
            self.name, self.input, self.classes, "#", "layer", "line", "output", "params"
        );
        for (i, l) in self.layers.iter().enumerate() {
            let line = if l.line > 0 {
                l.line.to_string()
            } else {
                String::new()
            };
            s += &format!(
                "{:>3}  {:<10} {:>5}  {:<14} {:>10}\n",
                i + 1,
                l.spec.kind(),
                line,
                l.output.to_string(),
                group_thousands(l.param_count())
            );
        }
        s += &format!(
            "total parameters: {}\n",
            group_thousands(self.param_count())
        );
        s
    }
}

fn group_thousands(n: usize) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, ch) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(ch);
    }
    out
}

/// The text of the built-in model `name`, if there is one.
pub fn builtin(name: &str) -> Option<&'static str> {
    BUILTINS.iter().find(|(n, _)| *n == name).map(|(_, t)| *t)
}

/// A built-in name or a path to a model file: its name and text. Anything else is an error naming the
/// built-ins.
pub fn read_model(name_or_path: &str) -> Result<(String, String), InputError> {
    if let Some(text) = builtin(name_or_path) {
        return Ok((name_or_path.to_string(), text.to_string()));
    }
    let path = Path::new(name_or_path);
    let looks_like_file = name_or_path.ends_with(".toml") || name_or_path.contains('/');
    if !looks_like_file && !path.is_file() {
        let names: Vec<&str> = BUILTINS.iter().map(|(n, _)| *n).collect();
        return Err(InputError::value(format!(
            "unknown model '{name_or_path}': expected one of {}, or a model file (.toml)",
            names.join(", ")
        )));
    }
    let text = std::fs::read_to_string(path)
        .map_err(|e| InputError::unreadable(path, "model file", &e))?;
    Ok((name_or_path.to_string(), text))
}

/// The file as written: every layer with the line of its `[[layer]]` header.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    version: i64,
    #[serde(default)]
    #[allow(dead_code)]
    description: Option<String>,
    /// Read as plain tables first, so each layer's problems are reported with its number and line.
    #[serde(default)]
    layer: Vec<toml::Spanned<toml::Table>>,
}

/// A layer table before its values are checked (types only).
#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "lowercase", deny_unknown_fields)]
enum RawLayer {
    Dense {
        units: toml::Value,
        #[serde(default = "yes")]
        bias: bool,
        name: Option<String>,
    },
    Conv2d {
        filters: i64,
        kernel: i64,
        #[serde(default = "one")]
        stride: i64,
        padding: Option<toml::Value>,
        #[serde(default = "yes")]
        bias: bool,
        name: Option<String>,
    },
    Batchnorm {
        name: Option<String>,
    },
    Relu {},
    Sigmoid {},
    Tanh {},
    Maxpool2d {
        size: i64,
        /// Defaults to `size` (windows side by side).
        stride: Option<i64>,
    },
    Avgpool2d {
        size: i64,
        stride: Option<i64>,
    },
    Globalavgpool {},
    Dropout {
        p: f64,
    },
    Flatten {},
}

fn yes() -> bool {
    true
}
fn one() -> i64 {
    1
}

/// Where a problem is: the file, and the layer if it is in one.
struct At<'a> {
    file: &'a str,
    text: &'a str,
}

impl At<'_> {
    fn line_of(&self, offset: usize) -> usize {
        self.text[..offset.min(self.text.len())]
            .matches('\n')
            .count()
            + 1
    }

    /// "FILE: problem" (outside any layer).
    fn file_err(&self, problem: impl fmt::Display) -> InputError {
        InputError::value(format!("{}: {problem}", self.file))
    }

    /// "FILE: layer N (type, line L): problem".
    fn layer_err(
        &self,
        n: usize,
        kind: &str,
        line: usize,
        problem: impl fmt::Display,
    ) -> InputError {
        InputError::value(format!(
            "{}: layer {n} ({kind}, line {line}): {problem}",
            self.file
        ))
    }
}

/// Reads and checks a model file's text for data of `input` shape and `classes` classes. `file` names
/// it in errors (a path, or a built-in's name).
pub fn parse_network(
    file: &str,
    text: &str,
    input: Shape,
    classes: usize,
) -> Result<Network, InputError> {
    let at = At { file, text };
    let raw: RawFile = toml::from_str(text).map_err(|e| {
        let offset = e.span().map_or(0, |s| s.start);
        let msg = e.message().trim().replace('\n', " ");
        at.file_err(format!("line {}: {msg}", at.line_of(offset)))
    })?;
    if raw.version != FORMAT_VERSION {
        return Err(at.file_err(format!(
            "version {}: this wgtrain reads model files of version {FORMAT_VERSION}",
            raw.version
        )));
    }
    if raw.layer.is_empty() {
        return Err(at.file_err("no layers: add [[layer]] tables"));
    }
    let mut shape = input;
    let mut layers = Vec::new();
    let mut names = std::collections::HashSet::new();
    let mut counts = [0usize; 3];
    for (i, spanned) in raw.layer.iter().enumerate() {
        let line = at.line_of(spanned.span().start);
        let table = spanned.get_ref();
        let kind = match table.get("type") {
            Some(toml::Value::String(t)) => t.as_str(),
            _ => "?",
        };
        let err = |p: String| at.layer_err(i + 1, kind, line, p);
        if !table.contains_key("type") {
            return Err(err(format!(
                "no type: give type = one of {}",
                LAYER_TYPES.join(", ")
            )));
        }
        let raw = toml::Value::Table(table.clone())
            .try_into::<RawLayer>()
            .map_err(|e| err(e.message().trim().replace('\n', " ")))?;
        let spec = check_values(&raw).map_err(&err)?;
        let (output, params) = infer(&spec, shape, classes, &mut counts).map_err(&err)?;
        for (pname, _) in &params {
            if !names.insert(pname.clone()) {
                return Err(err(format!(
                    "a parameter named {pname} is already in the network: give the layer another name"
                )));
            }
        }
        layers.push(NetLayer {
            spec,
            line,
            input: shape,
            output,
            params,
        });
        shape = output;
    }
    if !layers
        .iter()
        .any(|l| matches!(l.spec, LayerSpec::Dense { .. } | LayerSpec::Conv2d { .. }))
    {
        return Err(at.file_err(
            "no dense or conv2d layer: a network needs at least one layer with weights",
        ));
    }
    if shape != Shape::Flat(classes) {
        let last = layers.last().expect("at least one layer");
        return Err(at.layer_err(
            layers.len(),
            last.spec.kind(),
            last.line,
            format!(
                "the network ends in {shape} values per sample, but the data has {classes} classes: end with a dense layer of units = \"classes\""
            ),
        ));
    }
    Ok(Network {
        name: file.to_string(),
        input,
        classes,
        layers,
    })
}

/// A convolution's padding in pixels (0 for any other layer).
pub fn conv_padding(spec: &LayerSpec) -> usize {
    match spec {
        LayerSpec::Conv2d {
            kernel, padding, ..
        } => match padding {
            Padding::Size(p) => *p,
            Padding::Same => (kernel - 1) / 2,
            Padding::Valid => 0,
        },
        _ => 0,
    }
}

/// A positive count from the file, or the problem with it.
fn positive(key: &str, v: i64) -> Result<usize, String> {
    if v < 1 {
        return Err(format!("{key} = {v}: must be at least 1"));
    }
    usize::try_from(v).map_err(|_| format!("{key} = {v}: too large"))
}

/// The values a layer table gives, checked on their own (not yet against the input).
fn check_values(raw: &RawLayer) -> Result<LayerSpec, String> {
    Ok(match raw {
        RawLayer::Dense { units, bias, name } => LayerSpec::Dense {
            units: match units {
                toml::Value::Integer(n) => Units::Count(positive("units", *n)?),
                toml::Value::String(s) if s == "classes" => Units::Classes,
                other => {
                    return Err(format!(
                    "units = {other}: a positive number, or \"classes\" for the data's class count"
                ))
                }
            },
            bias: *bias,
            name: name.clone(),
        },
        RawLayer::Conv2d {
            filters,
            kernel,
            stride,
            padding,
            bias,
            name,
        } => {
            let kernel = positive("kernel", *kernel)?;
            let padding = match padding {
                None => Padding::Valid,
                Some(toml::Value::Integer(p)) if *p >= 0 => Padding::Size(*p as usize),
                Some(toml::Value::String(s)) if s == "same" => Padding::Same,
                Some(toml::Value::String(s)) if s == "valid" => Padding::Valid,
                Some(other) => {
                    return Err(format!(
                        "padding = {other}: a number of pixels, \"same\" or \"valid\""
                    ))
                }
            };
            if padding == Padding::Same && kernel.is_multiple_of(2) {
                return Err(format!(
                    "padding = \"same\" needs an odd kernel (kernel = {kernel}): give the padding in pixels"
                ));
            }
            LayerSpec::Conv2d {
                filters: positive("filters", *filters)?,
                kernel,
                stride: positive("stride", *stride)?,
                padding,
                bias: *bias,
                name: name.clone(),
            }
        }
        RawLayer::Batchnorm { name } => LayerSpec::BatchNorm { name: name.clone() },
        RawLayer::Relu {} => LayerSpec::Activation(Act::Relu),
        RawLayer::Sigmoid {} => LayerSpec::Activation(Act::Sigmoid),
        RawLayer::Tanh {} => LayerSpec::Activation(Act::Tanh),
        RawLayer::Maxpool2d { size, stride } | RawLayer::Avgpool2d { size, stride } => {
            let size = positive("size", *size)?;
            LayerSpec::Pool2d {
                kind: if matches!(raw, RawLayer::Maxpool2d { .. }) {
                    PoolKind::Max
                } else {
                    PoolKind::Avg
                },
                size,
                stride: stride.map_or(Ok(size), |s| positive("stride", s))?,
            }
        }
        RawLayer::Globalavgpool {} => LayerSpec::GlobalAvgPool,
        RawLayer::Dropout { p } => {
            if !(0.0..1.0).contains(p) {
                return Err(format!("p = {p}: a probability in [0, 1)"));
            }
            LayerSpec::Dropout { p: *p as f32 }
        }
        RawLayer::Flatten {} => LayerSpec::Flatten,
    })
}

/// A layer's parameters: names and shapes.
type ParamShapes = Vec<(String, Vec<usize>)>;

/// The output shape of `spec` on `input`, and its parameters (names and shapes). Default names count
/// the layers of each kind: `fc1`, `conv1`, `bn1`, ...
fn infer(
    spec: &LayerSpec,
    input: Shape,
    classes: usize,
    counts: &mut [usize; 3],
) -> Result<(Shape, ParamShapes), String> {
    let mut named = |slot: usize, prefix: &str, name: &Option<String>| {
        counts[slot] += 1;
        name.clone()
            .unwrap_or_else(|| format!("{prefix}{}", counts[slot]))
    };
    Ok(match spec {
        LayerSpec::Dense { units, bias, name } => {
            let Shape::Flat(inputs) = input else {
                return Err(format!(
                    "input is {input}, not flat: add a flatten layer before it"
                ));
            };
            let units = match units {
                Units::Count(n) => *n,
                Units::Classes => classes,
            };
            let name = named(0, "fc", name);
            let mut params = vec![(format!("{name}.weight"), vec![units, inputs])];
            if *bias {
                params.push((format!("{name}.bias"), vec![units]));
            }
            (Shape::Flat(units), params)
        }
        LayerSpec::Conv2d {
            filters,
            kernel,
            stride,
            bias,
            name,
            ..
        } => {
            let Shape::Image { h, w, c } = input else {
                return Err(format!(
                    "input is {input} values, not an image: a convolution needs height x width x channels"
                ));
            };
            let pad = conv_padding(spec);
            if h + 2 * pad < *kernel || w + 2 * pad < *kernel {
                return Err(format!(
                    "input {h}x{w} (padded by {pad}) is smaller than the {kernel}x{kernel} kernel"
                ));
            }
            let out = |side: usize| (side + 2 * pad - kernel) / stride + 1;
            let name = named(1, "conv", name);
            let mut params = vec![(
                format!("{name}.weight"),
                vec![*filters, kernel * kernel * c],
            )];
            if *bias {
                params.push((format!("{name}.bias"), vec![*filters]));
            }
            (
                Shape::Image {
                    h: out(h),
                    w: out(w),
                    c: *filters,
                },
                params,
            )
        }
        LayerSpec::BatchNorm { name } => {
            let channels = match input {
                Shape::Image { c, .. } => c,
                Shape::Flat(n) => n,
            };
            let name = named(2, "bn", name);
            (
                input,
                vec![
                    (format!("{name}.weight"), vec![channels]),
                    (format!("{name}.bias"), vec![channels]),
                ],
            )
        }
        LayerSpec::Activation(_) | LayerSpec::Dropout { .. } => (input, Vec::new()),
        LayerSpec::Pool2d { size, stride, .. } => {
            let Shape::Image { h, w, c } = input else {
                return Err(format!(
                    "input is {input} values, not an image: pooling needs height x width x channels"
                ));
            };
            if h < *size || w < *size {
                return Err(format!("input {h}x{w} is smaller than size {size}"));
            }
            (
                Shape::Image {
                    h: (h - size) / stride + 1,
                    w: (w - size) / stride + 1,
                    c,
                },
                Vec::new(),
            )
        }
        LayerSpec::GlobalAvgPool => {
            let Shape::Image { c, .. } = input else {
                return Err(format!(
                    "input is {input} values, not an image: pooling needs height x width x channels"
                ));
            };
            (Shape::Flat(c), Vec::new())
        }
        LayerSpec::Flatten => (Shape::Flat(input.len()), Vec::new()),
    })
}
