//! Software tokens: TOTP (RFC 6238: HMAC-SHA1, 6 digits, 30 s steps) via
//! totp-rs, provisioning URIs, and QR codes for enrolment screens.

use subtle::ConstantTimeEq;
use totp_rs::{Algorithm, Builder, Totp};

use crate::domain::Error;

pub const STEP_SECS: i64 = 30;
/// Steps of clock skew tolerated either way.
pub const SKEW_STEPS: i64 = 1;
pub const SECRET_BYTES: usize = 20;

fn totp(secret: &[u8], issuer: &str, account: &str) -> Result<Totp, Error> {
    Builder::new()
        .with_algorithm(Algorithm::SHA1)
        .with_digits(6)
        .with_skew(0)
        .with_step_duration(30)
        .with_secret(secret.to_vec())
        .with_issuer(Some(issuer))
        .with_account_name(account)
        .build()
        .map_err(|e| Error::internal(format!("totp: {e}")))
}

/// A new random secret (160 bits, as RFC 4226 recommends).
pub fn new_secret() -> [u8; SECRET_BYTES] {
    super::random::bytes::<SECRET_BYTES>()
}

/// `otpauth://totp/<issuer>:<account>?secret=…&issuer=…` for authenticator apps.
pub fn provisioning_uri(secret: &[u8], issuer: &str, account: &str) -> Result<String, Error> {
    totp(secret, issuer, account)?.to_url().map_err(|e| Error::internal(format!("totp url: {e}")))
}

/// The tokencode of time step `step`.
pub fn code_at(secret: &[u8], step: i64) -> Result<String, Error> {
    let time = u64::try_from(step.saturating_mul(STEP_SECS)).unwrap_or(0);
    Ok(totp(secret, "identity", "user")?.generate(time).to_string())
}

/// The step whose tokencode `code` is, within the skew around `now_secs`,
/// newest first; compared in constant time.
pub fn matching_step(secret: &[u8], code: &str, now_secs: i64) -> Result<Option<i64>, Error> {
    let current = now_secs.div_euclid(STEP_SECS);
    for step in (current - SKEW_STEPS..=current + SKEW_STEPS).rev() {
        if code_at(secret, step)?.as_bytes().ct_eq(code.as_bytes()).into() {
            return Ok(Some(step));
        }
    }
    Ok(None)
}

/// The provisioning URI as a QR code: an SVG document and a PNG image.
pub fn qr_codes(uri: &str) -> Result<(String, Vec<u8>), Error> {
    let qr = qrcodegen::QrCode::encode_text(uri, qrcodegen::QrCodeEcc::Medium)
        .map_err(|e| Error::internal(format!("qr: {e:?}")))?;
    Ok((svg(&qr), png(&qr)?))
}

const BORDER: i32 = 4;

fn svg(qr: &qrcodegen::QrCode) -> String {
    let size = qr.size() + 2 * BORDER;
    let mut path = String::new();
    for y in 0..qr.size() {
        for x in 0..qr.size() {
            if qr.get_module(x, y) {
                path.push_str(&format!("M{},{}h1v1h-1z", x + BORDER, y + BORDER));
            }
        }
    }
    format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 {size} {size}\" shape-rendering=\"crispEdges\">\
         <rect width=\"100%\" height=\"100%\" fill=\"#fff\"/><path d=\"{path}\" fill=\"#000\"/></svg>"
    )
}

fn png(qr: &qrcodegen::QrCode) -> Result<Vec<u8>, Error> {
    const SCALE: i32 = 6;
    let side = (qr.size() + 2 * BORDER) * SCALE;
    let side_u32 = u32::try_from(side).map_err(Error::internal)?;
    let mut pixels = Vec::with_capacity(usize::try_from(side * side).unwrap_or(0));
    for py in 0..side {
        for px in 0..side {
            let (x, y) = (px / SCALE - BORDER, py / SCALE - BORDER);
            pixels.push(if qr.get_module(x, y) { 0u8 } else { 255u8 });
        }
    }
    let mut out = Vec::new();
    let mut encoder = png::Encoder::new(&mut out, side_u32, side_u32);
    encoder.set_color(png::ColorType::Grayscale);
    encoder.set_depth(png::BitDepth::Eight);
    let mut writer = encoder.write_header().map_err(Error::internal)?;
    writer.write_image_data(&pixels).map_err(Error::internal)?;
    writer.finish().map_err(Error::internal)?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 6238 appendix B, SHA-1, truncated to 6 digits.
    #[test]
    fn codes_match_the_rfc_vectors() {
        let secret = b"12345678901234567890";
        assert_eq!(code_at(secret, 59 / 30).unwrap(), "287082");
        assert_eq!(code_at(secret, 1_111_111_109 / 30).unwrap(), "081804");
        assert_eq!(code_at(secret, 2_000_000_000 / 30).unwrap(), "279037");
    }

    #[test]
    fn one_step_of_skew_either_way_and_no_more() {
        let secret = new_secret();
        let now = 1_700_000_000;
        let step = now / STEP_SECS;
        for offset in -1..=1 {
            let code = code_at(&secret, step + offset).unwrap();
            assert_eq!(matching_step(&secret, &code, now).unwrap(), Some(step + offset));
        }
        let too_old = code_at(&secret, step - 2).unwrap();
        assert_eq!(matching_step(&secret, &too_old, now).unwrap().filter(|s| *s == step - 2), None);
    }

    #[test]
    fn provisioning_uris_and_qr_codes() {
        let uri = provisioning_uri(&new_secret(), "identity", "fran_m").unwrap();
        assert!(uri.starts_with("otpauth://totp/identity:fran_m?secret="), "{uri}");
        let (svg, png) = qr_codes(&uri).unwrap();
        assert!(svg.starts_with("<svg") && svg.contains("<path"));
        assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
    }
}
