//! QR images of a login's `qr_payload`.
//!
//! `fast_qr` computes the module matrix; the rendering is ours because it is
//! the hot part: the SVG is one `<path>` of horizontal runs (a few hundred
//! bytes of path data instead of a `<rect>` per module), and the PNG is a
//! 1-bit grayscale image, which is small and decodes everywhere.

use fast_qr::{QRBuilder, QRCode, ECL};
use std::fmt::Write as _;

/// Light modules around the code, as the QR standard asks.
const QUIET: usize = 4;
/// PNG pixels per module.
const PNG_SCALE: usize = 8;

#[derive(Debug, thiserror::Error)]
pub enum QrError {
    #[error("payload does not fit in a QR code")]
    TooLong,
    #[error("png encoding failed: {0}")]
    Png(String),
}

/// The module matrix of `payload` at error-correction level M (15%: enough
/// for a screen photographed at an angle, and keeps the code small).
pub fn encode(payload: &str) -> Result<QRCode, QrError> {
    QRBuilder::new(payload)
        .ecl(ECL::M)
        .build()
        .map_err(|_| QrError::TooLong)
}

fn dark(qr: &QRCode, x: usize, y: usize) -> bool {
    qr.data[y * qr.size + x].value()
}

/// SVG text of the code: dark runs as one path, scalable, crisp.
pub fn svg(payload: &str) -> Result<String, QrError> {
    let qr = encode(payload)?;
    let full = qr.size + 2 * QUIET;
    let mut path = String::with_capacity(qr.size * qr.size);
    for y in 0..qr.size {
        let mut x = 0;
        while x < qr.size {
            if !dark(&qr, x, y) {
                x += 1;
                continue;
            }
            let start = x;
            while x < qr.size && dark(&qr, x, y) {
                x += 1;
            }
            let _ = write!(
                path,
                "M{} {}h{}v1h-{}z",
                start + QUIET,
                y + QUIET,
                x - start,
                x - start
            );
        }
    }
    let mut out = String::with_capacity(path.len() + 256);
    let _ = write!(
        out,
        concat!(
            "<svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 {f} {f}\" ",
            "shape-rendering=\"crispEdges\" role=\"img\" aria-label=\"QR code\">",
            "<rect width=\"{f}\" height=\"{f}\" fill=\"#fff\"/>",
            "<path fill=\"#000\" d=\"{p}\"/></svg>"
        ),
        f = full,
        p = path
    );
    Ok(out)
}

/// PNG bytes of the code, 1 bit per pixel, `PNG_SCALE` pixels per module.
pub fn png(payload: &str) -> Result<Vec<u8>, QrError> {
    let qr = encode(payload)?;
    let side = (qr.size + 2 * QUIET) * PNG_SCALE;
    let row_bytes = side.div_ceil(8);
    let mut pixels = vec![0xFFu8; row_bytes * side];
    for y in 0..qr.size {
        for x in 0..qr.size {
            if !dark(&qr, x, y) {
                continue;
            }
            for dy in 0..PNG_SCALE {
                let row = (y + QUIET) * PNG_SCALE + dy;
                for dx in 0..PNG_SCALE {
                    let col = (x + QUIET) * PNG_SCALE + dx;
                    pixels[row * row_bytes + col / 8] &= !(0x80 >> (col % 8));
                }
            }
        }
    }
    let mut out = Vec::with_capacity(side * side / 32);
    {
        let mut enc = png::Encoder::new(&mut out, side as u32, side as u32);
        enc.set_color(png::ColorType::Grayscale);
        enc.set_depth(png::BitDepth::One);
        let mut w = enc
            .write_header()
            .map_err(|e| QrError::Png(e.to_string()))?;
        w.write_image_data(&pixels)
            .map_err(|e| QrError::Png(e.to_string()))?;
    }
    Ok(out)
}
