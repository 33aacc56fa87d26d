//! QR images of a login's `qr_payload`.
//!
//! The `qrcode` crate's low-level API computes the module matrix (data bits,
//! Reed-Solomon codewords, function patterns, one fixed mask: see [`MASK`]);
//! the rendering is ours because it is the hot part: the SVG is one `<path>`
//! of horizontal runs (a few hundred bytes of path data instead of a `<rect>`
//! per module) written with hand-rolled digits rather than `core::fmt`, and
//! the PNG is a 1-bit grayscale image, which is small and decodes everywhere.

use qrcode::bits::encode_auto;
use qrcode::canvas::{Canvas, MaskPattern};
use qrcode::ec::construct_codewords;
use qrcode::types::QrError as CodeError;
use qrcode::{Color, EcLevel};

/// Light modules around the code, as the QR standard asks.
const QUIET: usize = 4;
/// PNG pixels per module. Eight, so one module is exactly one byte of a
/// 1-bit PNG row (and the quiet zone is whole bytes too).
const PNG_SCALE: usize = 8;
const _: () = assert!(PNG_SCALE == 8, "png() writes one byte per module");

/// Error correction level M (15%): enough for a screen photographed at an
/// angle, and keeps the code small.
const EC: EcLevel = EcLevel::M;

/// The one mask every code uses: pattern 010, `x % 3 == 0`.
///
/// Fixed on purpose. The QR standard lets the encoder pick any of the eight
/// masks (the one used is written in the format information, and every
/// decoder reads it), and suggests scoring all eight with penalty rules and
/// keeping the lowest. That scoring was more than half the cost of a render
/// (57% of the SVG time when `fast_qr` did it) and only tunes appearance and
/// marginal robustness: it avoids long same-colour runs and finder-like
/// shapes in the data area, which matter for poor print or camera
/// conditions, not for a crisp code on a screen with a quiet zone. Our
/// payloads all share one shape (`PUBLIC_URL/m/<22-char id>`), and over 3,000
/// such payloads the full scoring (the `qrcode` crate's `apply_best_mask`)
/// chose this mask most often (about a third of the time; the next one a
/// sixth), so it is the least-penalised fixed choice. The decode tests
/// read codes of many random ids back with a real decoder.
const MASK: MaskPattern = MaskPattern::VerticalLines;

#[derive(Debug, thiserror::Error)]
pub enum QrError {
    #[error("payload does not fit in a QR code")]
    TooLong,
    #[error("qr encoding failed: {0}")]
    Encode(CodeError),
    #[error("png encoding failed: {0}")]
    Png(String),
}

impl From<CodeError> for QrError {
    fn from(e: CodeError) -> Self {
        match e {
            CodeError::DataTooLong => QrError::TooLong,
            other => QrError::Encode(other),
        }
    }
}

/// The module matrix of a code, without the quiet zone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QrMatrix {
    size: usize,
    /// `size * size` modules, row by row, `true` for dark.
    dark: Vec<bool>,
}

impl QrMatrix {
    /// Modules per side (21 for version 1, +4 per version).
    pub fn size(&self) -> usize {
        self.size
    }

    /// Whether the module at column `x`, row `y` is dark; outside the code
    /// (the quiet zone and beyond) everything is light.
    pub fn is_dark(&self, x: usize, y: usize) -> bool {
        x < self.size
            && y.checked_mul(self.size)
                .and_then(|row| self.dark.get(row + x))
                .is_some_and(|&d| d)
    }

    /// The rows, top to bottom, each `size` modules left to right.
    pub fn rows(&self) -> impl Iterator<Item = &[bool]> {
        self.dark.chunks_exact(self.size)
    }
}

/// The module matrix of `payload` at error-correction level M, in the
/// smallest QR version (not Micro QR) that holds it, masked with [`MASK`].
pub fn encode(payload: &str) -> Result<QrMatrix, QrError> {
    let bits = encode_auto(payload.as_bytes(), EC)?;
    let version = bits.version();
    let (data, ec) = construct_codewords(&bits.into_bytes(), version, EC)?;
    let mut canvas = Canvas::new(version, EC);
    canvas.draw_all_functional_patterns();
    canvas.draw_data(&data, &ec);
    canvas.apply_mask(MASK);
    let size = usize::try_from(version.width()).map_err(|_| CodeError::InvalidVersion)?;
    let dark: Vec<bool> = canvas
        .into_colors()
        .into_iter()
        .map(|c| c == Color::Dark)
        .collect();
    if size == 0 || dark.len() != size * size {
        return Err(QrError::Encode(CodeError::InvalidVersion));
    }
    Ok(QrMatrix { size, dark })
}

/// SVG text of the code: dark runs as one path, scalable, crisp.
pub fn svg(payload: &str) -> Result<String, QrError> {
    Ok(svg_of(&encode(payload)?))
}

/// SVG text of an encoded code.
pub fn svg_of(qr: &QrMatrix) -> String {
    let full = qr.size + 2 * QUIET;
    // Built as bytes (all ASCII). A run is about 15 bytes of path and one
    // starts about every fourth module, so ~4 bytes per module; the Vec
    // grows in the rare case that 5 is not enough.
    let mut out: Vec<u8> = Vec::with_capacity(320 + qr.size * qr.size * 5);
    out.extend_from_slice(b"<svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 ");
    push_num(&mut out, full);
    out.push(b' ');
    push_num(&mut out, full);
    out.extend_from_slice(
        b"\" shape-rendering=\"crispEdges\" role=\"img\" aria-label=\"QR code\"><rect width=\"",
    );
    push_num(&mut out, full);
    out.extend_from_slice(b"\" height=\"");
    push_num(&mut out, full);
    out.extend_from_slice(b"\" fill=\"#fff\"/><path fill=\"#000\" d=\"");
    for (y, row) in qr.rows().enumerate() {
        let mut x = 0;
        while x < row.len() {
            if !row[x] {
                x += 1;
                continue;
            }
            let start = x;
            while x < row.len() && row[x] {
                x += 1;
            }
            let run = x - start;
            out.push(b'M');
            push_num(&mut out, start + QUIET);
            out.push(b' ');
            push_num(&mut out, y + QUIET);
            out.push(b'h');
            push_num(&mut out, run);
            out.extend_from_slice(b"v1h-");
            push_num(&mut out, run);
            out.push(b'z');
        }
    }
    out.extend_from_slice(b"\"/></svg>");
    // Only ASCII was written, so this is always `Ok`.
    String::from_utf8(out).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}

/// Appends `n` in decimal. Hand-rolled because `write!` (`core::fmt`) was a
/// fifth of the render time: the numbers here are coordinates and run
/// lengths of a code of at most 177 + 8 modules, so one to three digits
/// pushed straight into the buffer.
#[inline]
fn push_num(out: &mut Vec<u8>, n: usize) {
    #[inline]
    fn digit(d: usize) -> u8 {
        // `d % 10` is 0..=9, so the cast cannot truncate.
        b'0' + (d % 10) as u8
    }
    if n >= 1000 {
        push_big(out, n);
        return;
    }
    if n >= 100 {
        out.push(digit(n / 100));
        out.push(digit(n / 10));
    } else if n >= 10 {
        out.push(digit(n / 10));
    }
    out.push(digit(n));
}

/// [`push_num`] of four digits or more, which QR codes never need.
#[cold]
fn push_big(out: &mut Vec<u8>, n: usize) {
    out.extend_from_slice(n.to_string().as_bytes());
}

/// PNG bytes of the code, 1 bit per pixel, `PNG_SCALE` pixels per module.
pub fn png(payload: &str) -> Result<Vec<u8>, QrError> {
    png_of(&encode(payload)?)
}

/// PNG bytes of an encoded code.
pub fn png_of(qr: &QrMatrix) -> Result<Vec<u8>, QrError> {
    let modules = qr.size + 2 * QUIET;
    let side = modules * PNG_SCALE;
    // One byte per module: 8 pixels of 1 bit, 0 = black.
    let row_bytes = modules;
    let mut pixels = vec![0xFFu8; row_bytes * side];
    for (y, row) in qr.rows().enumerate() {
        let first = (y + QUIET) * PNG_SCALE * row_bytes;
        let (line, rest) = pixels[first..].split_at_mut(row_bytes);
        for (byte, &dark) in line[QUIET..].iter_mut().zip(row) {
            if dark {
                *byte = 0;
            }
        }
        for copy in rest[..(PNG_SCALE - 1) * row_bytes].chunks_exact_mut(row_bytes) {
            copy.copy_from_slice(line);
        }
    }
    let side = u32::try_from(side).map_err(|e| QrError::Png(e.to_string()))?;
    let mut out = Vec::with_capacity(pixels.len() / 8);
    {
        let mut enc = png::Encoder::new(&mut out, side, side);
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

#[cfg(test)]
mod tests {
    use super::*;

    const PAYLOAD: &str = "http://127.0.0.1:8080/m/q3Zb7Wk1xYp0T9sLmN2vAg";

    #[test]
    fn smallest_version_for_a_typical_payload() {
        // 46 bytes at level M: version 4 (33 modules) is the smallest that fits.
        let qr = encode(PAYLOAD).unwrap();
        assert_eq!(qr.size(), 33);
        assert_eq!(qr.rows().count(), 33);
        // Finder pattern corners are dark, the separator next to it light.
        assert!(qr.is_dark(0, 0) && qr.is_dark(32, 0) && qr.is_dark(0, 32));
        assert!(!qr.is_dark(7, 0));
        assert!(!qr.is_dark(33, 0) && !qr.is_dark(0, 33));
    }

    #[test]
    fn svg_keeps_its_format() {
        let svg = svg(PAYLOAD).unwrap();
        assert!(svg.starts_with(concat!(
            "<svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 41 41\" ",
            "shape-rendering=\"crispEdges\" role=\"img\" aria-label=\"QR code\">",
            "<rect width=\"41\" height=\"41\" fill=\"#fff\"/>",
            "<path fill=\"#000\" d=\"M4 4h7v1h-7z"
        )));
        assert!(svg.ends_with("z\"/></svg>"));
    }

    #[test]
    fn svg_runs_match_the_matrix() {
        let qr = encode(PAYLOAD).unwrap();
        let svg = svg_of(&qr);
        let d = svg
            .split("d=\"")
            .nth(1)
            .unwrap()
            .trim_end_matches("\"/></svg>");
        let mut dark = vec![false; qr.size() * qr.size()];
        for run in d.split('z').filter(|r| !r.is_empty()) {
            let (xy, rest) = run[1..].split_once('h').unwrap();
            let (x, y) = xy.split_once(' ').unwrap();
            let (len, back) = rest.split_once("v1h-").unwrap();
            assert_eq!(len, back);
            let (x, y, len): (usize, usize, usize) =
                (x.parse().unwrap(), y.parse().unwrap(), len.parse().unwrap());
            for i in 0..len {
                dark[(y - QUIET) * qr.size() + x - QUIET + i] = true;
            }
        }
        assert_eq!(dark, qr.dark);
    }

    #[test]
    fn png_pixels_match_the_matrix() {
        let qr = encode(PAYLOAD).unwrap();
        let bytes = png_of(&qr).unwrap();
        let mut dec = png::Decoder::new(std::io::Cursor::new(bytes))
            .read_info()
            .unwrap();
        let mut buf = vec![0; dec.output_buffer_size().unwrap()];
        let info = dec.next_frame(&mut buf).unwrap();
        let side = (qr.size() + 2 * QUIET) * PNG_SCALE;
        assert_eq!((info.width as usize, info.height as usize), (side, side));
        assert_eq!(info.bit_depth, png::BitDepth::One);
        for py in 0..side {
            for px in 0..side {
                let black = buf[py * info.line_size + px / 8] & (0x80 >> (px % 8)) == 0;
                let (mx, my) = (px / PNG_SCALE, py / PNG_SCALE);
                let dark = mx >= QUIET && my >= QUIET && qr.is_dark(mx - QUIET, my - QUIET);
                assert_eq!(black, dark, "pixel {px},{py}");
            }
        }
    }

    #[test]
    fn push_num_writes_decimal() {
        for n in [
            0,
            1,
            9,
            10,
            42,
            99,
            100,
            185,
            999,
            1000,
            1234,
            10_007,
            usize::MAX,
        ] {
            let mut s = Vec::new();
            push_num(&mut s, n);
            assert_eq!(s, n.to_string().as_bytes());
        }
    }

    #[test]
    fn too_long_is_an_error() {
        let long = "a".repeat(3000);
        assert!(matches!(encode(&long), Err(QrError::TooLong)));
        assert!(matches!(svg(&long), Err(QrError::TooLong)));
        assert!(matches!(png(&long), Err(QrError::TooLong)));
    }
}
