//! Reading any image file as a model's input: its colour made the model's (grey or RGB, alpha dropped)
//! and its size the model's (triangle filter), as an image folder's images are read for training.
//! MNIST-trained models get [`crate::io::digit`]'s digit preparation instead.

use crate::error::InputError;
use crate::model::file::Shape;
use image::imageops::FilterType;
use std::path::Path;

/// The pixels of `path` in `shape` (interleaved channels), ready for a model taking that shape.
pub fn load_picture(path: &Path, shape: Shape) -> Result<Vec<u8>, InputError> {
    let Shape::Image { h, w, c } = shape else {
        return Err(InputError::file(
            path,
            format!("the model takes flat inputs of {shape} values, not images"),
        ));
    };
    let bytes = std::fs::read(path).map_err(|e| InputError::unreadable(path, "image", &e))?;
    let img = image::load_from_memory(&bytes)
        .map_err(|e| InputError::file(path, format!("cannot decode image: {e}")))?;
    let img = if (img.height() as usize, img.width() as usize) == (h, w) {
        img
    } else {
        img.resize_exact(w as u32, h as u32, FilterType::Triangle)
    };
    Ok(match c {
        1 => img.to_luma8().into_raw(),
        3 => img.to_rgb8().into_raw(),
        _ => {
            return Err(InputError::file(
                path,
                format!("the model takes {c}-channel images; images are read as grey or RGB"),
            ))
        }
    })
}
