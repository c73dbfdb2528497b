//! wgtrain: a neural-network trainer whose compute runs in WGSL compute shaders through wgpu, with a
//! plain-Rust CPU reference path that every GPU kernel is checked against.

pub mod backend;
pub mod bench;
pub mod check;
pub mod checkpoint;
pub mod data;
pub mod device;
pub mod error;
pub mod gradcheck;
pub mod graph;
pub mod model;
pub mod optim;
pub mod predict;
pub mod progress;
pub mod report;
pub mod sweep;
pub mod train;
