//! The font figures are drawn with. plotters draws text through its `ab_glyph` feature, which knows no
//! system fonts: the bundled DejaVu Sans (assets/, freely licensed) is registered once as "sans-serif"
//! before anything is drawn, so figures look the same on every machine, headless ones included.

#[cfg(not(target_arch = "wasm32"))]
use plotters::style::FontStyle;
#[cfg(not(target_arch = "wasm32"))]
use std::sync::Once;

#[cfg(not(target_arch = "wasm32"))]
const FONT_BYTES: &[u8] = include_bytes!("../../assets/DejaVuSans.ttf");
#[cfg(not(target_arch = "wasm32"))]
static FONT: Once = Once::new();

/// Registers the bundled DejaVu Sans as "sans-serif" (every style); idempotent. On the web plotters
/// has no font registry (a page draws its own text), so there is nothing to do.
pub fn register_font() {
    #[cfg(not(target_arch = "wasm32"))]
    FONT.call_once(|| {
        for style in [
            FontStyle::Normal,
            FontStyle::Bold,
            FontStyle::Italic,
            FontStyle::Oblique,
        ] {
            // The bytes are a valid TTF compiled into the binary; failing here is a build defect.
            if plotters::style::register_font("sans-serif", style, FONT_BYTES).is_err() {
                panic!("the bundled assets/DejaVuSans.ttf is not a valid font");
            }
        }
    });
}
