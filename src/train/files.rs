//! The files a run writes as it goes (`--out DIR`): every step's loss, every epoch's metrics, and the
//! whole run's figures at the end. Lines are written at each log point, whole: a crash or Ctrl-C keeps
//! every line already logged, and a write that fails (a full disk) is cut back to the last whole line.
//! metrics.json is written once, atomically.

use super::{EpochMetrics, TrainResult};
use crate::error::InputError;
use crate::io::atomic::{write_atomic, write_error};
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

/// A CSV file that only ever holds whole lines: lines are collected, then appended in one write at
/// [`LineFile::commit`]; if that write fails part-way, the file is truncated back to where it was.
pub struct LineFile {
    path: PathBuf,
    file: File,
    /// Bytes of whole lines on disk.
    len: u64,
    pending: String,
}

impl LineFile {
    /// Creates (truncates) `path` and writes `header` to it at once, so even an interrupted run leaves
    /// a file that says what its columns are.
    pub fn create(path: &Path, header: &str) -> Result<Self, InputError> {
        let file = File::create(path)
            .map_err(|e| InputError::file(path, format!("cannot create: {e}")))?;
        let mut f = LineFile {
            path: path.to_path_buf(),
            file,
            len: 0,
            pending: String::new(),
        };
        f.push(header);
        f.commit()?;
        Ok(f)
    }

    /// Queues one line (without its newline) for the next commit.
    pub fn push(&mut self, line: &str) {
        self.pending.push_str(line);
        self.pending.push('\n');
    }

    /// Appends the queued lines. On failure the file is cut back to its last whole line, the queued
    /// lines are dropped, and the error names the file.
    pub fn commit(&mut self) -> Result<(), InputError> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let bytes = std::mem::take(&mut self.pending);
        match self.file.write_all(bytes.as_bytes()) {
            Ok(()) => {
                self.len += bytes.len() as u64;
                Ok(())
            }
            Err(e) => {
                let _ = self.file.set_len(self.len);
                use std::io::Seek;
                let _ = self.file.seek(std::io::SeekFrom::Start(self.len));
                Err(write_error(&self.path, &e))
            }
        }
    }
}

pub struct RunFiles {
    dir: PathBuf,
    losses: LineFile,
    epochs: LineFile,
}

impl RunFiles {
    /// Creates `dir` and the two CSV files with their headers.
    pub fn create(dir: &Path) -> Result<Self, InputError> {
        // A directory the user named that cannot be written is their input's problem (exit 2).
        std::fs::create_dir_all(dir)
            .map_err(|e| InputError::file(dir, format!("cannot create output directory: {e}")))?;
        Ok(RunFiles {
            dir: dir.to_path_buf(),
            losses: LineFile::create(&dir.join("losses.csv"), "step,epoch,loss")?,
            epochs: LineFile::create(
                &dir.join("epochs.csv"),
                "epoch,step,train_loss,val_loss,val_acc",
            )?,
        })
    }

    /// Queues one line of losses.csv (written at [`RunFiles::flush_losses`]).
    pub fn loss(&mut self, step: usize, epoch: usize, loss: f32) {
        self.losses.push(&format!("{step},{epoch},{loss}"));
    }

    pub fn flush_losses(&mut self) -> Result<(), InputError> {
        self.losses.commit()
    }

    /// Appends one line of epochs.csv.
    pub fn epoch(&mut self, m: &EpochMetrics) -> Result<(), InputError> {
        self.epochs.push(&format!(
            "{},{},{},{},{}",
            m.epoch, m.step, m.train_loss, m.val_loss, m.val_acc
        ));
        self.epochs.commit()
    }

    /// Writes metrics.json, the run's figures, through a temporary file.
    pub fn metrics(&self, result: &TrainResult) -> Result<(), InputError> {
        let json = serde_json::to_vec_pretty(result).expect("metrics serialise");
        write_atomic(&self.dir.join("metrics.json"), &json)
    }
}
