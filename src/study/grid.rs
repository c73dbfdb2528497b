//! The study's four tables as data (models, optimizers, learning rates and the study's own test
//! accuracies; docs/MODELS.md, "The study"), read from the built-in `experiments/study.toml`, and the
//! grid of distinct runs they need, with the shards that split it between processes.

use super::experiment_file::Experiment;
pub use super::experiment_file::{RunSpec, STUDY_BATCH};
use crate::error::InputError;
use std::collections::BTreeSet;

/// The study's tables, by number.
pub const TABLES: [u8; 4] = [1, 2, 3, 4];

/// A column of one of the study's tables: its header, the run without and with batch norm, and the
/// test accuracies (percent) the study reported for them.
#[derive(Clone, Debug)]
pub struct StudyColumn {
    pub header: String,
    pub runs: [RunSpec; 2],
    pub study: [Option<f64>; 2],
}

/// One of the study's Tables I-IV: rows "no batchnorm" and "batchnorm", one column per variant, and
/// its loss figure (like the study's Figures 3-9).
#[derive(Clone, Debug)]
pub struct StudyTable {
    pub number: u8,
    /// As the study file titles it, e.g. "Table I: Fully connected network, 8 layers (FC-8), by optimizer".
    pub title: String,
    pub row_labels: [String; 2],
    pub columns: Vec<StudyColumn>,
    /// The figure's file stem under figures/, its title, what to compare it with, and whether its
    /// panels are the rows (else the columns).
    pub figure: String,
    pub figure_title: String,
    pub compare: String,
    pub panels_by_rows: bool,
}

/// Tables I-IV, read from the built-in `experiments/study.toml` (its tables have two rows, without
/// and with batch norm, and one seed).
pub fn study_tables() -> Vec<StudyTable> {
    static CACHE: std::sync::OnceLock<Vec<StudyTable>> = std::sync::OnceLock::new();
    CACHE
        .get_or_init(|| {
            Experiment::study()
                .tables
                .iter()
                .enumerate()
                .map(|(i, t)| {
                    assert_eq!(t.row_values.len(), 2, "the study's tables have two rows");
                    let columns = t
                        .column_values
                        .iter()
                        .enumerate()
                        .map(|(c, cv)| {
                            let run = |r: usize| {
                                t.cell(&t.row_values[r], cv)
                                    .next()
                                    .expect("every cell of the study has a run")
                                    .run()
                            };
                            StudyColumn {
                                header: t.column_labels[c].clone(),
                                runs: [run(0), run(1)],
                                study: [t.published_at(0, c), t.published_at(1, c)],
                            }
                        })
                        .collect();
                    StudyTable {
                        number: i as u8 + 1,
                        title: t.title.clone().unwrap_or_default(),
                        row_labels: [t.row_labels[0].clone(), t.row_labels[1].clone()],
                        columns,
                        figure: t.figure.clone(),
                        figure_title: t.figure_title.clone(),
                        compare: t.compare.clone().unwrap_or_default(),
                        panels_by_rows: t.panels_by_rows,
                    }
                })
                .collect()
        })
        .clone()
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
