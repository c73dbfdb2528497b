//! The commands around training: throughput benchmarks, GPU-against-CPU gradient checks, computational
//! graphs, and evaluation/prediction from checkpoints.

pub mod bench;
pub mod gradcheck;
pub mod graph;
pub mod predict;
