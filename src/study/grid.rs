//! The study's four tables as data (models, optimizers, learning rates and the study's own test
//! accuracies; docs/MODELS.md, "The study") and the grid of distinct runs they need, with the shards
//! that split it between processes.

use crate::error::InputError;
use crate::model::ModelSpec;
use crate::optim::OptimKind;
use std::collections::BTreeSet;

/// The study's batch size (500 steps per epoch on 55,000 images).
pub const STUDY_BATCH: usize = 110;
/// The study's tables, by number.
pub const TABLES: [u8; 4] = [1, 2, 3, 4];

/// One training run of the grid: which model, which optimizer, which learning rate.
#[derive(Clone, Debug, PartialEq)]
pub struct RunSpec {
    pub model: ModelSpec,
    pub optim: OptimKind,
    pub lr: f32,
}

impl RunSpec {
    /// `optim` at its default learning rate (docs/MODELS.md).
    pub fn new(model: ModelSpec, optim: OptimKind) -> Self {
        RunSpec {
            model,
            optim,
            lr: optim.default_lr(),
        }
    }
    pub fn with_lr(model: ModelSpec, optim: OptimKind, lr: f32) -> Self {
        RunSpec { model, optim, lr }
    }
    /// `fc8-bn_adam_lr0.001`: the part of a run key that says what is trained.
    /// The run's key in the sweep whose settings signature is `sig` (see `SweepConfig::signature`),
    /// e.g. `cnn7-bn_sgd_lr0.01_b110_e1_seed1`; also its directory name under `runs/`.
    pub fn key(&self, sig: &str) -> String {
        format!("{}_{sig}", self.id())
    }
    pub fn id(&self) -> String {
        format!("{}_{}_lr{}", self.model.name(), self.optim.name(), self.lr)
    }
}

/// A column of one of the study's tables: its header, the run without and with batch norm, and the
/// test accuracies (percent) the study reported for them.
#[derive(Clone, Debug)]
pub struct StudyColumn {
    pub header: String,
    pub runs: [RunSpec; 2],
    pub study: [Option<f64>; 2],
}

/// One of the study's Tables I-IV: rows "no batchnorm" and "batchnorm", one column per variant.
#[derive(Clone, Debug)]
pub struct StudyTable {
    pub number: u8,
    pub title: &'static str,
    /// What the columns vary ("optimizer", "convolution layers", "learning rate").
    pub varies: &'static str,
    pub columns: Vec<StudyColumn>,
}

impl StudyTable {
    /// The roman numeral the study used.
    pub fn roman(&self) -> &'static str {
        ["I", "II", "III", "IV"][(self.number - 1) as usize]
    }
}

/// The built-in model `base` (`fc8`, `cnn7`), with batch norm (`-bn`) or without.
fn spec(base: &str, batchnorm: bool) -> ModelSpec {
    let name = format!("{base}{}", if batchnorm { "-bn" } else { "" });
    ModelSpec::parse(&name).expect("the study's models are built in")
}

/// Tables I-IV as docs/MODELS.md states them (the study's test accuracies in percent).
pub fn study_tables() -> Vec<StudyTable> {
    let optims = [
        ("SGD", OptimKind::Sgd),
        ("RMSProp", OptimKind::RmsProp),
        ("Adam", OptimKind::Adam),
    ];
    let by_optim = |arch: &str, study: [[f64; 2]; 3]| -> Vec<StudyColumn> {
        optims
            .iter()
            .zip(study)
            .map(|(&(header, o), s)| StudyColumn {
                header: header.to_string(),
                runs: [
                    RunSpec::new(spec(arch, false), o),
                    RunSpec::new(spec(arch, true), o),
                ],
                study: [Some(s[0]), Some(s[1])],
            })
            .collect()
    };
    let depth = [
        (3, [63.18, 83.57]),
        (5, [78.09, 86.28]),
        (7, [60.65, 80.69]),
    ]
    .into_iter()
    .map(|(l, s)| StudyColumn {
        header: l.to_string(),
        runs: [
            RunSpec::new(spec(&format!("cnn{l}"), false), OptimKind::Sgd),
            RunSpec::new(spec(&format!("cnn{l}"), true), OptimKind::Sgd),
        ],
        study: [Some(s[0]), Some(s[1])],
    })
    .collect();
    let lrs: [(f32, [Option<f64>; 2]); 6] = [
        (0.001, [Some(66.94), Some(81.25)]),
        (0.002, [Some(79.41), Some(88.98)]),
        (0.005, [Some(93.04), Some(94.79)]),
        (0.01, [Some(94.54), None]),
        (0.02, [Some(96.73), None]),
        (0.1, [Some(98.52), None]),
    ];
    let by_lr = lrs
        .into_iter()
        .map(|(lr, study)| StudyColumn {
            header: lr.to_string(),
            runs: [
                RunSpec::with_lr(spec("cnn7", false), OptimKind::Sgd, lr),
                RunSpec::with_lr(spec("cnn7", true), OptimKind::Sgd, lr),
            ],
            study,
        })
        .collect();
    vec![
        StudyTable {
            number: 1,
            title: "Fully connected network, 8 layers (FC-8), by optimizer",
            varies: "optimizer",
            columns: by_optim("fc8", [[9.58, 17.60], [86.23, 97.31], [95.17, 97.21]]),
        },
        StudyTable {
            number: 2,
            title: "CNN with 7 convolution layers (CNN-7), by optimizer",
            varies: "optimizer",
            columns: by_optim("cnn7", [[60.65, 80.69], [98.85, 99.02], [98.98, 98.82]]),
        },
        StudyTable {
            number: 3,
            title: "CNN with 3, 5 or 7 convolution layers, SGD (lr 0.01)",
            varies: "convolution layers",
            columns: depth,
        },
        StudyTable {
            number: 4,
            title: "CNN-7 with SGD, by learning rate",
            varies: "learning rate",
            columns: by_lr,
        },
    ]
}

/// A run of the grid and the study tables it appears in.
#[derive(Clone, Debug, PartialEq)]
pub struct GridRun {
    pub spec: RunSpec,
    /// Every study table this run is a cell of (whether or not that table was selected).
    pub tables: Vec<u8>,
}

/// The distinct runs of the selected tables, in table order (Table I first; within a table, column by
/// column, without batch norm before with). A run two tables share appears once, where it first occurs.
pub fn grid(tables: &[u8]) -> Vec<GridRun> {
    let all = study_tables();
    let mut runs: Vec<GridRun> = Vec::new();
    for t in all.iter().filter(|t| tables.contains(&t.number)) {
        for c in &t.columns {
            for r in c.runs.iter().cloned() {
                if !runs.iter().any(|g| g.spec.id() == r.id()) {
                    runs.push(GridRun {
                        tables: tables_of(&all, &r),
                        spec: r,
                    });
                }
            }
        }
    }
    runs
}

fn tables_of(all: &[StudyTable], r: &RunSpec) -> Vec<u8> {
    all.iter()
        .filter(|t| {
            t.columns
                .iter()
                .any(|c| c.runs.iter().any(|x| x.id() == r.id()))
        })
        .map(|t| t.number)
        .collect()
}

/// Parses `--tables 1,2,3,4` (numbers 1-4, or roman I-IV; duplicates ignored).
pub fn parse_tables(s: &str) -> Result<Vec<u8>, InputError> {
    let mut out = BTreeSet::new();
    for part in s.split(',').map(str::trim) {
        let n = match part.to_ascii_uppercase().as_str() {
            "1" | "I" => 1,
            "2" | "II" => 2,
            "3" | "III" => 3,
            "4" | "IV" => 4,
            _ => {
                return Err(InputError::value(format!(
                    "--tables {s}: unknown table '{part}' (the study has tables 1, 2, 3 and 4)"
                )))
            }
        };
        out.insert(n);
    }
    Ok(out.into_iter().collect())
}

/// `--shard I/N`: this process runs grid entries `I, I+N, I+2N, ...`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shard {
    pub index: usize,
    pub count: usize,
}

impl Default for Shard {
    fn default() -> Self {
        Shard { index: 0, count: 1 }
    }
}

impl Shard {
    pub fn parse(s: &str) -> Result<Self, InputError> {
        let bad = |why: &str| InputError::value(format!("--shard {s}: {why}"));
        let (i, n) = s
            .split_once('/')
            .ok_or_else(|| bad("expected I/N, e.g. 0/4 (shard I of N, counting from 0)"))?;
        let index: usize = i
            .trim()
            .parse()
            .map_err(|_| bad("I must be a whole number"))?;
        let count: usize = n
            .trim()
            .parse()
            .map_err(|_| bad("N must be a whole number"))?;
        if count == 0 {
            return Err(bad("N must be at least 1"));
        }
        if index >= count {
            return Err(bad(&format!(
                "I must be below N (shards are numbered 0 to {})",
                count - 1
            )));
        }
        Ok(Shard { index, count })
    }
    /// Whether the grid entry at `position` is this shard's.
    pub fn owns(&self, position: usize) -> bool {
        position % self.count == self.index
    }
}

impl std::fmt::Display for Shard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}
