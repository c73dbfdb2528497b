//! The commands around training: throughput benchmarks, GPU-against-CPU gradient checks, computational
//! graphs, evaluation/prediction from checkpoints, and the per-op profile of a training step.

pub mod bench;
pub mod gradcheck;
pub mod graph;
pub mod opcheck;
pub mod predict;
pub mod profile;
