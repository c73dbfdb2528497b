//! Reading and writing: data sets, checkpoints, and the small helpers every writer shares.

pub mod atomic;
pub mod checkpoint;
pub mod data;
pub mod font;
pub mod markdown;
