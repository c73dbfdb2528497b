//! Progress on long work: an indicatif bar on a terminal, plain log lines otherwise (CI logs, pipes).

use crate::train::{EpochMetrics, Observer};
use indicatif::{ProgressBar, ProgressStyle};
use std::io::IsTerminal;
use std::time::Duration;

/// Shows a training run's progress on stderr.
pub struct TrainProgress {
    label: String,
    bar: Option<ProgressBar>,
    total: usize,
    quiet: bool,
}

impl TrainProgress {
    /// `quiet` shows nothing; otherwise a bar on a terminal, else one line per log point (`--log-every`).
    pub fn new(label: impl Into<String>, quiet: bool) -> Self {
        TrainProgress {
            label: label.into(),
            bar: None,
            total: 0,
            quiet,
        }
    }

    /// A bar drawn under `multi`, for callers that show several bars at once (the sweep).
    pub fn with_bar(label: impl Into<String>, bar: ProgressBar) -> Self {
        TrainProgress {
            label: label.into(),
            bar: Some(bar),
            total: 0,
            quiet: false,
        }
    }
}

impl TrainProgress {
    /// One line on stderr, above the bar if there is one.
    fn println(&self, line: &str) {
        match &self.bar {
            Some(bar) => bar.println(line),
            None => eprintln!("{line}"),
        }
    }
}

/// The bar style used for training runs.
pub fn bar_style() -> ProgressStyle {
    ProgressStyle::with_template(
        "{prefix} [{bar:30.cyan/blue}] {pos}/{len} steps {msg} ({elapsed}<{eta})",
    )
    .expect("valid template")
    .progress_chars("=> ")
}

impl Observer for TrainProgress {
    fn start(&mut self, first_step: usize, total_steps: usize) {
        self.total = total_steps;
        if self.quiet {
            return;
        }
        if let Some(bar) = &self.bar {
            bar.set_length(total_steps as u64);
            bar.set_prefix(self.label.clone());
            bar.set_position(first_step as u64);
        } else if std::io::stderr().is_terminal() {
            let bar = ProgressBar::new(total_steps as u64).with_style(bar_style());
            bar.set_prefix(self.label.clone());
            bar.set_position(first_step as u64);
            bar.enable_steady_tick(Duration::from_millis(200));
            self.bar = Some(bar);
        } else {
            if first_step > 0 {
                eprintln!(
                    "{}: resuming at step {first_step}, training to step {total_steps}",
                    self.label
                );
            } else {
                eprintln!("{}: training {} steps", self.label, total_steps);
            }
        }
    }
    fn log(&mut self, step: usize, loss: f32) {
        if self.quiet {
            return;
        }
        if let Some(bar) = &self.bar {
            bar.set_position(step as u64);
            bar.set_message(format!("loss {loss:.4}"));
        } else {
            eprintln!(
                "{}: step {}/{} loss {:.4}",
                self.label, step, self.total, loss
            );
        }
    }
    fn epoch(&mut self, m: &EpochMetrics) {
        if self.quiet {
            return;
        }
        // A run that stops inside an epoch is evaluated there: say so rather than claim the epoch.
        let when = if m.partial {
            format!("step {} (part of epoch {})", m.step, m.epoch)
        } else {
            format!("epoch {}", m.epoch)
        };
        let line = format!(
            "{}: {when} train loss {:.4}, {}",
            self.label,
            m.train_loss,
            val_text(m.val_loss, m.val_acc)
        );
        self.println(&line);
    }
    fn warn(&mut self, msg: &str) {
        // Shown even with -q: it says an output the user asked for is missing.
        let line = format!("warning: {msg}");
        self.println(&line);
    }
    fn finish(&mut self) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
    }
}

/// "val loss L, val acc A%", or "no validation set" where there was none to evaluate (`--val-size 0`:
/// accuracy over no images is 0/0).
pub fn val_text(loss: f64, acc: f64) -> String {
    if acc.is_nan() {
        "no validation set".to_string()
    } else {
        format!("val loss {loss:.4}, val acc {:.2}%", acc * 100.0)
    }
}
