//! Reading and writing: data sets, checkpoints, a user's digit images, and the small helpers every writer shares.

pub mod atomic;
pub mod checkpoint;
pub mod data;
pub mod digit;
pub mod font;
pub mod markdown;
pub mod output;
pub mod picture;
pub mod plot_file;
