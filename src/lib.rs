//! wgtrain: a neural-network trainer whose compute runs in WGSL compute shaders through wgpu, with a
//! plain-Rust CPU reference path that every GPU kernel is checked against.
//!
//! The modules, bottom up (docs/DESIGN.md has the map; at every level siblings depend on each other
//! without cycles, which tests/architecture.rs checks):
//! - the core: [`backend`] (the op boundary, the CPU reference, the wgpu backend), [`model`] (layers and
//!   the model zoo), [`optim`], [`train`] (the loop, its files and progress);
//! - [`io`]: data sets, checkpoints, atomic writes, markdown tables, the figures' font;
//! - [`study`]: the study's grid, its results store, the sweep, the report and figures;
//! - [`tools`]: bench, gradcheck, graph, eval/predict.
//!
//! The binary (`src/main.rs`) only parses arguments and prints.

pub mod backend;
pub mod error;
pub mod io;
pub mod model;
pub mod optim;
pub mod study;
pub mod tools;
pub mod train;
