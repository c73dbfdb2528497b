//! Writes a small learnable synthetic data set in any format `wgtrain train --data` reads, to try a
//! format without downloading one: each class is a bright bar at its own height, plus noise.
//!
//! `cargo run --release --example synthetic_data -- FORMAT DIR [TRAIN TEST]`, FORMAT one of `idx`
//! (28x28 grey), `cifar10`, `cifar100` (32x32 RGB; CIFAR-100's fine labels are the 10 classes, its
//! coarse ones the class mod 20), `folder` (32x32 RGB PNGs in train/<class>/ and test/<class>/) or
//! `folder-grey` (24x24 grey PNGs).

use std::path::PathBuf;
use wgtrain::io::data::cifar::{self, Cifar};
use wgtrain::io::data::{folder, synthetic_shaped, write_idx_dir};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let usage = "usage: synthetic_data idx|cifar10|cifar100|folder|folder-grey DIR [TRAIN TEST]";
    let (Some(format), Some(dir)) = (args.first(), args.get(1)) else {
        eprintln!("{usage}");
        std::process::exit(2);
    };
    let count = |i: usize, default: usize| {
        args.get(i).map_or(default, |v| {
            v.parse().unwrap_or_else(|_| {
                eprintln!("error: {v}: not a count\n{usage}");
                std::process::exit(2)
            })
        })
    };
    let (n_train, n_test) = (count(2, 2000), count(3, 500));
    let dir = PathBuf::from(dir);
    let shape = match format.as_str() {
        "idx" => (28, 28, 1),
        "folder-grey" => (24, 24, 1),
        _ => (32, 32, 3),
    };
    let train = synthetic_shaped(n_train, 1, shape, 10);
    let test = synthetic_shaped(n_test, 2, shape, 10);
    let names: Vec<String> = (0..10).map(|c| format!("class{c}")).collect();
    let written = match format.as_str() {
        "idx" => write_idx_dir(&dir, &train, &test),
        "cifar10" => cifar::write_dir(&dir, &train, &test, Cifar::Ten),
        "cifar100" => cifar::write_dir(&dir, &train, &test, Cifar::Hundred { coarse: false }),
        "folder" | "folder-grey" => folder::write_split(&dir, "train", &train, &names)
            .and_then(|_| folder::write_split(&dir, "test", &test, &names)),
        other => {
            eprintln!("error: unknown format '{other}'\n{usage}");
            std::process::exit(2);
        }
    };
    if let Err(e) = written {
        eprintln!("error: {}: {e}", dir.display());
        std::process::exit(2);
    }
    println!(
        "wrote {} ({format}: {n_train} training and {n_test} test images)",
        dir.display()
    );
}
