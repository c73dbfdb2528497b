//! Saving a figure: drawn in memory, encoded (PNG or SVG, by the file's extension), then written
//! atomically, so a full disk leaves the old file or none, never a truncated image, and the format is
//! known before any work starts.

use super::atomic::write_atomic;
use crate::error::InputError;
use anyhow::Result;
use plotters::coord::Shift;
use plotters::prelude::{BitMapBackend, DrawingArea, DrawingBackend, IntoDrawingArea, SVGBackend};
use std::path::Path;

/// The image formats a figure can be saved as.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PlotFormat {
    Png,
    Svg,
}

impl PlotFormat {
    /// The format `path`'s extension names; anything else is an error listing the supported ones.
    pub fn from_path(path: &Path, what: &str) -> Result<Self, InputError> {
        let ext = path
            .extension()
            .map(|e| e.to_string_lossy().to_ascii_lowercase());
        match ext.as_deref() {
            Some("png") => Ok(PlotFormat::Png),
            Some("svg") => Ok(PlotFormat::Svg),
            _ => Err(InputError::file(
                path,
                format!("{what}: unknown image format: name the file .png or .svg"),
            )),
        }
    }
}

/// Checks an output path for a figure before any work: a format its extension names, and a place it
/// can be written (see [`super::output::prepare_file`]). `what` names the option.
pub fn prepare_plot(path: &Path, what: &str) -> Result<(), InputError> {
    PlotFormat::from_path(path, what)?;
    super::output::prepare_file(path, what)
}

/// A figure that can draw itself on any plotters backend.
pub trait Figure {
    fn draw<DB: DrawingBackend>(&self, root: DrawingArea<DB, Shift>) -> Result<()>;
}

/// Draws `fig` at `size` pixels and writes it to `path` as the extension says (see [`PlotFormat`]).
pub fn save_figure(fig: &impl Figure, path: &Path, size: (u32, u32)) -> Result<()> {
    let bytes = match PlotFormat::from_path(path, "figure")? {
        PlotFormat::Svg => {
            let mut svg = String::new();
            fig.draw(SVGBackend::with_string(&mut svg, size).into_drawing_area())?;
            svg.into_bytes()
        }
        PlotFormat::Png => {
            let mut rgb = vec![0u8; size.0 as usize * size.1 as usize * 3];
            fig.draw(BitMapBackend::with_buffer(&mut rgb, size).into_drawing_area())?;
            let img = image::RgbImage::from_raw(size.0, size.1, rgb)
                .ok_or_else(|| anyhow::anyhow!("figure buffer of the wrong size"))?;
            let mut png = Vec::new();
            img.write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
                .map_err(|e| anyhow::anyhow!("{}: cannot encode PNG: {e}", path.display()))?;
            png
        }
    };
    write_atomic(path, &bytes)?;
    Ok(())
}

/// A drawing error as an `anyhow` error (plotters' error types carry the backend's).
pub fn plot_err<E: std::fmt::Debug>(e: E) -> anyhow::Error {
    anyhow::anyhow!("drawing a figure: {e:?}")
}
