//! The study the project grew from (docs/MODELS.md, "The study"): its tables and run grid, the store of
//! finished runs, the headless sweep, and the report with its figures.

pub mod experiment;
pub mod experiment_file;
pub mod figures;
pub mod grid;
pub mod jobs;
pub mod report;
pub mod stats;
pub mod store;
pub mod sweep;
