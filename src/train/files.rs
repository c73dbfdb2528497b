//! The files a run writes as it goes (`--out DIR`): every step's loss, every epoch's metrics, and the
//! whole run's figures at the end. Lines are flushed at each log point, so a crash or Ctrl-C keeps every
//! line already logged; metrics.json is written once, atomically.

use super::{EpochMetrics, TrainResult};
use crate::error::InputError;
use crate::io::atomic::write_atomic;
use anyhow::Result;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

pub struct RunFiles {
    dir: PathBuf,
    losses: BufWriter<File>,
    epochs: BufWriter<File>,
}

impl RunFiles {
    /// Creates `dir` and the two CSV files with their headers.
    pub fn create(dir: &Path) -> Result<Self> {
        // A directory the user named that cannot be written is their input's problem (exit 2).
        std::fs::create_dir_all(dir)
            .map_err(|e| InputError::file(dir, format!("cannot create output directory: {e}")))?;
        let open = |name: &str, header: &str| -> Result<BufWriter<File>> {
            let path = dir.join(name);
            let mut f = BufWriter::new(
                File::create(&path)
                    .map_err(|e| InputError::file(&path, format!("cannot create: {e}")))?,
            );
            writeln!(f, "{header}")?;
            Ok(f)
        };
        Ok(RunFiles {
            dir: dir.to_path_buf(),
            losses: open("losses.csv", "step,epoch,loss")?,
            epochs: open("epochs.csv", "epoch,step,train_loss,val_loss,val_acc")?,
        })
    }

    /// Appends one line to losses.csv (buffered until [`RunFiles::flush_losses`]).
    pub fn loss(&mut self, step: usize, epoch: usize, loss: f32) -> Result<()> {
        writeln!(self.losses, "{step},{epoch},{loss}")?;
        Ok(())
    }

    pub fn flush_losses(&mut self) -> Result<()> {
        self.losses.flush()?;
        Ok(())
    }

    /// Appends and flushes one line of epochs.csv.
    pub fn epoch(&mut self, m: &EpochMetrics) -> Result<()> {
        writeln!(
            self.epochs,
            "{},{},{},{},{}",
            m.epoch, m.step, m.train_loss, m.val_loss, m.val_acc
        )?;
        self.epochs.flush()?;
        Ok(())
    }

    /// Writes metrics.json, the run's figures, through a temporary file.
    pub fn metrics(&self, result: &TrainResult) -> Result<()> {
        write_atomic(
            &self.dir.join("metrics.json"),
            &serde_json::to_vec_pretty(result)?,
        )
    }
}
