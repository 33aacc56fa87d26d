//! The QR images decode to the login's `qr_payload`: the PNG through the
//! `image` crate, the SVG rasterised here from its path, both read back with
//! the `rqrr` QR decoder. A phone camera is that decoder.

mod common;

use common::*;
use reqwest::StatusCode;

/// Pixels per SVG unit (one module) when rasterising.
const SCALE: usize = 6;

fn decode_qr(w: usize, h: usize, luma: impl Fn(usize, usize) -> u8) -> Vec<String> {
    let mut img = rqrr::PreparedImage::prepare_from_greyscale(w, h, luma);
    let grids = img.detect_grids();
    grids
        .iter()
        .map(|g| g.decode().expect("a detected QR grid decodes").1)
        .collect()
}

fn decode_png(bytes: &[u8]) -> Vec<String> {
    let img = image::load_from_memory(bytes)
        .expect("the PNG loads")
        .to_luma8();
    let (w, h) = img.dimensions();
    decode_qr(w as usize, h as usize, |x, y| {
        img.get_pixel(x as u32, y as u32)[0]
    })
}

/// The value of attribute `name` of the first element `tag` in `svg`.
fn attr<'a>(svg: &'a str, tag: &str, name: &str) -> &'a str {
    let start = svg
        .find(&format!("<{tag}"))
        .unwrap_or_else(|| panic!("no <{tag}> in the SVG"));
    let elem = &svg[start..];
    let elem = &elem[..elem.find('>').expect("element closes")];
    let key = format!(" {name}=\"");
    let at = elem
        .find(&key)
        .unwrap_or_else(|| panic!("<{tag}> has no {name}: {elem}"));
    let rest = &elem[at + key.len()..];
    &rest[..rest.find('"').expect("attribute closes")]
}

/// The closed polygons of an SVG path using M/m, L/l, H/h, V/v and Z/z.
fn polygons(d: &str) -> Vec<Vec<(f64, f64)>> {
    let mut tokens = Vec::new();
    let mut num = String::new();
    let flush = |num: &mut String, tokens: &mut Vec<Tok>| {
        if !num.is_empty() {
            tokens.push(Tok::Num(num.parse().expect("a number in the path")));
            num.clear();
        }
    };
    #[derive(Debug)]
    enum Tok {
        Cmd(char),
        Num(f64),
    }
    for ch in d.chars() {
        match ch {
            '0'..='9' | '.' => num.push(ch),
            '-' => {
                flush(&mut num, &mut tokens);
                num.push('-');
            }
            ' ' | ',' | '\n' | '\t' => flush(&mut num, &mut tokens),
            c if c.is_ascii_alphabetic() => {
                flush(&mut num, &mut tokens);
                tokens.push(Tok::Cmd(c));
            }
            c => panic!("unexpected {c:?} in the path"),
        }
    }
    flush(&mut num, &mut tokens);

    let mut polys = Vec::new();
    let mut cur: Vec<(f64, f64)> = Vec::new();
    let (mut x, mut y) = (0.0, 0.0);
    let mut cmd = 'M';
    let mut it = tokens.into_iter().peekable();
    let next_num = |it: &mut std::iter::Peekable<std::vec::IntoIter<Tok>>| match it.next() {
        Some(Tok::Num(n)) => n,
        other => panic!("expected a number in the path, got {other:?}"),
    };
    while let Some(tok) = it.peek() {
        if let Tok::Cmd(c) = tok {
            cmd = *c;
            it.next();
            if matches!(cmd, 'z' | 'Z') {
                if !cur.is_empty() {
                    polys.push(std::mem::take(&mut cur));
                }
                continue;
            }
        }
        match cmd {
            'M' | 'm' => {
                let (nx, ny) = (next_num(&mut it), next_num(&mut it));
                if cmd == 'm' {
                    (x, y) = (x + nx, y + ny);
                } else {
                    (x, y) = (nx, ny);
                }
                if !cur.is_empty() {
                    polys.push(std::mem::take(&mut cur));
                }
                cur.push((x, y));
                // Further pairs after a moveto are linetos.
                cmd = if cmd == 'm' { 'l' } else { 'L' };
            }
            'L' | 'l' => {
                let (nx, ny) = (next_num(&mut it), next_num(&mut it));
                (x, y) = if cmd == 'l' {
                    (x + nx, y + ny)
                } else {
                    (nx, ny)
                };
                cur.push((x, y));
            }
            'H' | 'h' => {
                let n = next_num(&mut it);
                x = if cmd == 'h' { x + n } else { n };
                cur.push((x, y));
            }
            'V' | 'v' => {
                let n = next_num(&mut it);
                y = if cmd == 'v' { y + n } else { n };
                cur.push((x, y));
            }
            c => panic!("path command {c:?} not supported by this rasteriser"),
        }
    }
    if !cur.is_empty() {
        polys.push(cur);
    }
    polys
}

/// Even-odd point-in-polygon.
fn inside(poly: &[(f64, f64)], px: f64, py: f64) -> bool {
    let mut c = false;
    let n = poly.len();
    for i in 0..n {
        let (xi, yi) = poly[i];
        let (xj, yj) = poly[(i + n - 1) % n];
        if (yi > py) != (yj > py) && px < (xj - xi) * (py - yi) / (yj - yi) + xi {
            c = !c;
        }
    }
    c
}

/// Rasterises the QR SVG (white background, one black path) at [`SCALE`].
fn rasterise_svg(svg: &str) -> (usize, usize, Vec<u8>) {
    let vb: Vec<f64> = attr(svg, "svg", "viewBox")
        .split_whitespace()
        .map(|v| v.parse().expect("viewBox number"))
        .collect();
    assert_eq!(vb.len(), 4, "viewBox");
    assert_eq!((vb[0], vb[1]), (0.0, 0.0));
    assert_eq!(attr(svg, "rect", "fill"), "#fff", "white background");
    assert_eq!(attr(svg, "path", "fill"), "#000", "black modules");
    let (w, h) = (vb[2] as usize * SCALE, vb[3] as usize * SCALE);
    let mut px = vec![255u8; w * h];
    let polys = polygons(attr(svg, "path", "d"));
    assert!(polys.len() > 20, "a QR code has many dark runs");
    for poly in &polys {
        let (minx, maxx) = poly
            .iter()
            .fold((f64::MAX, f64::MIN), |(a, b), p| (a.min(p.0), b.max(p.0)));
        let (miny, maxy) = poly
            .iter()
            .fold((f64::MAX, f64::MIN), |(a, b), p| (a.min(p.1), b.max(p.1)));
        let s = SCALE as f64;
        let x0 = ((minx * s).floor().max(0.0)) as usize;
        let x1 = ((maxx * s).ceil() as usize).min(w);
        let y0 = ((miny * s).floor().max(0.0)) as usize;
        let y1 = ((maxy * s).ceil() as usize).min(h);
        for y in y0..y1 {
            for x in x0..x1 {
                if inside(poly, (x as f64 + 0.5) / s, (y as f64 + 0.5) / s) {
                    px[y * w + x] = 0;
                }
            }
        }
    }
    (w, h, px)
}

fn decode_svg(svg: &str) -> Vec<String> {
    let (w, h, px) = rasterise_svg(svg);
    decode_qr(w, h, |x, y| px[y * w + x])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn png_decodes_to_the_qr_payload() {
    let app = app(StoreKind::Memory).await;
    let login = app.browser().create().await;
    let payload = login.created["qr_payload"].as_str().unwrap().to_string();
    assert_eq!(payload, app.url(&format!("/m/{}", login.id)));

    // Public: no cookie, no secret.
    let r = send(raw_client().get(app.url(login.created["qr_png"].as_str().unwrap()))).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(r.headers["content-type"], "image/png");
    assert!(r.body.starts_with(b"\x89PNG\r\n\x1a\n"));
    assert_eq!(decode_png(&r.body), vec![payload]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn svg_decodes_to_the_qr_payload() {
    let app = app(StoreKind::Memory).await;
    let login = app.browser().create().await;
    let payload = login.created["qr_payload"].as_str().unwrap().to_string();

    let r = send(raw_client().get(app.url(login.created["qr_svg"].as_str().unwrap()))).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(r.headers["content-type"], "image/svg+xml");
    let svg = r.text();
    assert!(svg.starts_with("<svg"), "{svg}");
    assert_eq!(decode_svg(&svg), vec![payload]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn qr_codes_use_the_configured_public_url() {
    let mut cfg = config();
    cfg.public_url = Some("https://login.example.com/".into());
    let app = app_with(StoreKind::Memory, cfg, None).await;
    let login = app.browser().create_header().await;
    let payload = format!("https://login.example.com/m/{}", login.id);
    assert_eq!(login.created["qr_payload"], payload);
    let png = send(raw_client().get(app.url(&format!("/v1/logins/{}/qr.png", login.id)))).await;
    assert_eq!(decode_png(&png.body), vec![payload.clone()]);
    let svg = send(raw_client().get(app.url(&format!("/v1/logins/{}/qr.svg", login.id)))).await;
    assert_eq!(decode_svg(&svg.text()), vec![payload]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn different_logins_get_different_codes() {
    let app = app(StoreKind::Memory).await;
    let browser = app.browser();
    let a = browser.create().await;
    let b = browser.create().await;
    assert_ne!(a.id, b.id);
    let qa = send(raw_client().get(app.url(&format!("/v1/logins/{}/qr.png", a.id)))).await;
    let qb = send(raw_client().get(app.url(&format!("/v1/logins/{}/qr.png", b.id)))).await;
    assert_eq!(
        decode_png(&qa.body),
        vec![a.created["qr_payload"].as_str().unwrap()]
    );
    assert_eq!(
        decode_png(&qb.body),
        vec![b.created["qr_payload"].as_str().unwrap()]
    );
}

/// SPEC §3: the QR images are "public; cacheable for the login's life".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn qr_images_are_cacheable() {
    let app = app(StoreKind::Memory).await;
    let login = app.browser().create().await;
    for ext in ["png", "svg"] {
        let r = send(raw_client().get(app.url(&format!("/v1/logins/{}/qr.{ext}", login.id)))).await;
        assert_eq!(r.status, StatusCode::OK);
        let cc = r
            .headers
            .get("cache-control")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        assert!(
            cc.contains("public") && cc.contains("max-age=") && !cc.contains("no-store"),
            "qr.{ext} Cache-Control is {cc:?}, want public with a max-age"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn qr_of_a_malformed_id_is_a_400() {
    let app = app(StoreKind::Memory).await;
    for ext in ["png", "svg"] {
        let r = send(raw_client().get(app.url(&format!("/v1/logins/not-an-id/qr.{ext}")))).await;
        r.assert_error(StatusCode::BAD_REQUEST, "bad_request");
    }
}

/// `qr::svg` and `qr::png` of `PUBLIC_URL/m/{id}` decode to exactly that text
/// for many random login ids and PUBLIC_URLs of several lengths (each of
/// which lands in a different QR version), and a payload too long for any QR
/// code is an error, not a panic.
#[test]
fn random_ids_and_public_url_lengths_decode_exactly() {
    use qrlogin_core::LoginId;
    use qrlogin_server::qr;

    let long = format!("https://{}.example.com/qr", "sub".repeat(44));
    assert!((145..=155).contains(&long.len()), "{}", long.len());
    let urls = [
        "http://a.io".to_string(),
        "http://127.0.0.1:8080".to_string(),
        "https://login.example.com".to_string(),
        long,
    ];
    let mut sizes = std::collections::BTreeSet::new();
    for url in &urls {
        for _ in 0..15 {
            let payload = format!("{url}/m/{}", LoginId::random());
            let m = qr::encode(&payload).expect("encodes");
            sizes.insert(m.size());
            let png = qr::png(&payload).expect("png");
            assert_eq!(decode_png(&png), vec![payload.clone()], "png of {payload}");
            let svg = qr::svg(&payload).expect("svg");
            assert_eq!(decode_svg(&svg), vec![payload.clone()], "svg of {payload}");
        }
    }
    assert!(sizes.len() >= 3, "several QR versions exercised: {sizes:?}");

    // Version 40 at level M holds 2,331 bytes.
    let too_long = format!(
        "https://{}.example.com/m/{}",
        "x".repeat(2400),
        LoginId::random()
    );
    assert!(matches!(qr::encode(&too_long), Err(qr::QrError::TooLong)));
    assert!(matches!(qr::svg(&too_long), Err(qr::QrError::TooLong)));
    assert!(matches!(qr::png(&too_long), Err(qr::QrError::TooLong)));
}

/// A PUBLIC_URL too long for any QR code makes the QR routes answer a JSON
/// 500, not panic.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn too_long_public_url_is_a_500_not_a_panic() {
    let mut cfg = config();
    cfg.public_url = Some(format!("https://{}.example.com", "x".repeat(2400)));
    let app = app_with(StoreKind::Memory, cfg, None).await;
    let login = app.browser().create_header().await;
    for ext in ["png", "svg"] {
        let r = send(raw_client().get(app.url(&format!("/v1/logins/{}/qr.{ext}", login.id)))).await;
        r.assert_error(StatusCode::INTERNAL_SERVER_ERROR, "internal");
    }
}
