//! The measurements as markdown tables (training steps, then matmul), and the one-line progress note
//! printed as each finishes.

use super::measure::{Measurement, Stat};

/// A number with about four significant digits.
pub(super) fn num(v: f64) -> String {
    let a = v.abs();
    if a >= 1000.0 {
        format!("{v:.0}")
    } else if a >= 100.0 {
        format!("{v:.1}")
    } else if a >= 10.0 {
        format!("{v:.2}")
    } else if a >= 1.0 {
        format!("{v:.3}")
    } else {
        format!("{v:.4}")
    }
}

/// The "steps x repeats" cell.
fn counts(r: &Measurement) -> String {
    if r.error.is_some() {
        "—".to_string()
    } else {
        format!("{}x{}", r.steps, r.repeats)
    }
}

/// A statistic's cell: "median (min–max)", or "failed" for a row with an error.
fn cell(s: Option<Stat>) -> String {
    s.map_or_else(|| "failed (see below)".to_string(), |s| stat(&s))
}

fn stat(s: &Stat) -> String {
    format!("{} ({}–{})", num(s.median), num(s.min), num(s.max))
}

fn what(r: &Measurement) -> String {
    match (&r.model, r.batch) {
        (Some(m), Some(b)) => format!("{} {m} batch {b}", r.backend),
        _ => format!(
            "{} matmul {}x{}x{}",
            r.backend,
            r.m.unwrap_or(0),
            r.k.unwrap_or(0),
            r.n.unwrap_or(0)
        ),
    }
}

pub(super) fn progress_line(r: &Measurement) -> String {
    if let Some(e) = &r.error {
        return format!("{}: FAILED: {e}", what(r));
    }
    match (r.kind, &r.model) {
        ("train", Some(m)) => format!(
            "{} {m} batch {}: {} images/s, {} ms/step ({} steps x {}){}",
            r.backend,
            r.batch.unwrap_or(0),
            r.images_per_s.map_or(String::new(), |s| stat(&s)),
            r.ms_per_step.map_or(String::new(), |s| stat(&s)),
            r.steps,
            r.repeats,
            match (r.host_us_per_step, r.dispatches_per_step) {
                (Some(h), Some(d)) => format!(
                    "; host {} µs/step for {d:.0} dispatches, {:.2} µs each",
                    stat(&h),
                    h.median / d.max(1.0)
                ),
                _ => String::new(),
            }
        ),
        _ => format!(
            "{} matmul {}x{}x{}: {} GFLOP/s ({} calls x {})",
            r.backend,
            r.m.unwrap_or(0),
            r.k.unwrap_or(0),
            r.n.unwrap_or(0),
            r.gflops.map_or(String::new(), |s| stat(&s)),
            r.steps,
            r.repeats
        ),
    }
}

fn speedup(r: &Measurement) -> String {
    r.speedup_vs_cpu
        .map_or_else(String::new, |s| format!("{}x", num(s)))
}

/// The measurements as two markdown tables (training steps, then matmul), medians with (min–max), and
/// a legend naming each device.
pub fn format_tables(rows: &[Measurement]) -> String {
    let mut out = String::new();
    let mut devices: Vec<(&str, &str, Option<&str>)> = Vec::new();
    for r in rows {
        let d = (r.backend, r.device.as_str(), r.kernels);
        if !devices.contains(&d) {
            devices.push(d);
        }
    }
    for (b, d, k) in &devices {
        let kernels = k.map_or(String::new(), |k| format!(", {k} kernels"));
        out += &format!("{b}: {d}{kernels}\n");
    }
    // Training rows grouped by model and batch, so each GPU row sits under its CPU twin.
    let first = |f: &dyn Fn(&Measurement) -> String, r: &Measurement| {
        rows.iter().position(|x| f(x) == f(r)).unwrap_or(0)
    };
    let mut sorted: Vec<&Measurement> = rows.iter().filter(|r| r.kind == "train").collect();
    sorted.sort_by_key(|r| {
        (
            first(&|x| x.model.clone().unwrap_or_default(), r),
            r.batch,
            first(&|x| format!("{}/{}", x.backend, x.device), r),
        )
    });
    let train: Vec<Vec<String>> = sorted
        .into_iter()
        .map(|r| {
            vec![
                r.model.clone().unwrap_or_default(),
                r.batch.map_or(String::new(), |b| b.to_string()),
                r.backend.to_string(),
                cell(r.images_per_s),
                cell(r.ms_per_step),
                counts(r),
                speedup(r),
            ]
        })
        .collect();
    if !train.is_empty() {
        out += "\n";
        out += &crate::io::markdown::table(
            &[
                "model",
                "batch",
                "backend",
                "images/s median (min–max)",
                "ms/step median (min–max)",
                "steps x repeats",
                "gpu/cpu",
            ],
            &train,
        );
    }
    let mm: Vec<Vec<String>> = rows
        .iter()
        .filter(|r| r.kind == "matmul")
        .map(|r| {
            vec![
                format!(
                    "{}x{}x{}",
                    r.m.unwrap_or(0),
                    r.k.unwrap_or(0),
                    r.n.unwrap_or(0)
                ),
                r.backend.to_string(),
                cell(r.gflops),
                cell(r.ms_per_call),
                counts(r),
                speedup(r),
            ]
        })
        .collect();
    if !mm.is_empty() {
        out += "\n";
        out += &crate::io::markdown::table(
            &[
                "matmul m x k x n",
                "backend",
                "GFLOP/s median (min–max)",
                "ms/call median (min–max)",
                "calls x repeats",
                "gpu/cpu",
            ],
            &mm,
        );
    }
    let failed: Vec<&Measurement> = rows.iter().filter(|r| r.error.is_some()).collect();
    if !failed.is_empty() {
        out += "\n";
        for r in failed {
            out += &format!(
                "failed: {}: {}\n",
                what(r),
                r.error.as_deref().unwrap_or("")
            );
        }
    }
    out
}
