//! The embedded proof-of-work captcha: no third-party service, no state until
//! a solution is accepted.
//!
//! A challenge is self-contained and signed by the server:
//!
//! ```text
//! v1.<expires_at_ms>.<difficulty_bits>.<16 random bytes, base64url>.<HMAC-SHA256 of everything before the last '.', base64url>
//! ```
//!
//! A client solves it by finding a decimal `nonce` such that
//! `SHA-256(challenge || ":" || nonce)` starts with `difficulty_bits` zero bits
//! ([`solve`] is the reference algorithm: try 0, 1, 2, … in order). The
//! server checks the signature, the expiry and the work without keeping
//! anything per challenge; single use is the caller's job: it spends
//! [`Verified::spent_key`] in the database (`store::nonces::spend`) before
//! acting on the request.
//!
//! The check sits behind [`CaptchaVerifier`], so an external captcha
//! (hCaptcha, Turnstile, …) can be plugged in later by implementing the trait.

use std::{fmt, fmt::Write as _, future::Future, pin::Pin};

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

type HmacSha256 = Hmac<Sha256>;

/// The `algorithm` announced to clients with each challenge.
pub const ALGORITHM: &str = "sha256-leading-zero-bits";

/// Longest challenge string accepted, in bytes (issued ones are about 90).
pub const MAX_CHALLENGE_LEN: usize = 512;
/// Longest nonce accepted, in decimal digits (any `u64` fits).
pub const MAX_NONCE_LEN: usize = 20;
/// Most zero bits a challenge can ask for: a SHA-256 digest has 256 bits.
pub const MAX_DIFFICULTY_BITS: u32 = 256;

const VERSION: &str = "v1";
const RANDOM_BYTES: usize = 16;
/// base64url without padding of 16 bytes.
const RANDOM_CHARS: usize = 22;
/// base64url without padding of a 32-byte HMAC-SHA256 tag.
const TAG_CHARS: usize = 43;

/// A freshly issued challenge, for `GetCaptchaChallenge`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Challenge {
    /// Opaque to the client; passed back unchanged with the nonce.
    pub challenge: String,
    pub difficulty_bits: u32,
    pub expires_at_ms: i64,
}

/// An accepted solution. Not yet spent: the caller records `spent_key` once
/// (e.g. in `spent_nonces`, kept until `expires_at_ms`) and refuses the
/// request when it was already there.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verified {
    /// `captcha:` and 32 hex characters (128 bits of SHA-256 of the challenge).
    pub spent_key: String,
    /// When the challenge expires; the spent key need not outlive it.
    pub expires_at_ms: i64,
}

/// Why a solution is refused. Callers should answer all of them the same way
/// to the client; the variants are for logs and tests.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CaptchaError {
    /// Too long, not a challenge of ours, or a nonce that is not 1–20 digits.
    #[error("malformed captcha solution")]
    Malformed,
    /// Not signed with this server's key (forged, altered, or another key).
    #[error("captcha challenge has a bad signature")]
    BadSignature,
    #[error("captcha challenge has expired")]
    Expired,
    /// The nonce does not give enough leading zero bits.
    #[error("captcha challenge is not solved")]
    Unsolved,
}

/// Issues a challenge valid for `ttl_ms` from `now_ms`, signed with `key`.
/// `difficulty_bits` above 256 is lowered to 256 (beyond that nothing could solve it).
pub fn issue(key: &[u8], difficulty_bits: u32, ttl_ms: i64, now_ms: i64) -> Challenge {
    let difficulty_bits = difficulty_bits.min(MAX_DIFFICULTY_BITS);
    let expires_at_ms = now_ms.saturating_add(ttl_ms.max(0)).max(0);
    let random = URL_SAFE_NO_PAD.encode(super::random::bytes::<RANDOM_BYTES>());
    let payload = format!("{VERSION}.{expires_at_ms}.{difficulty_bits}.{random}");
    let tag = URL_SAFE_NO_PAD.encode(signer(key, &payload).finalize().into_bytes());
    Challenge { challenge: format!("{payload}.{tag}"), difficulty_bits, expires_at_ms }
}

/// Checks a solution: sizes, format, signature (constant time), expiry, then
/// the work asked for by the difficulty signed into the challenge. Pure and
/// cheap (one HMAC and one SHA-256 over less than 600 bytes); never panics.
pub fn verify(key: &[u8], challenge: &str, nonce: &str, now_ms: i64) -> Result<Verified, CaptchaError> {
    if challenge.len() > MAX_CHALLENGE_LEN
        || nonce.is_empty()
        || nonce.len() > MAX_NONCE_LEN
        || !nonce.bytes().all(|b| b.is_ascii_digit())
    {
        return Err(CaptchaError::Malformed);
    }
    let parsed = parse(challenge).ok_or(CaptchaError::Malformed)?;
    signer(key, parsed.payload).verify_slice(&parsed.tag).map_err(|_| CaptchaError::BadSignature)?;
    if now_ms >= parsed.expires_at_ms {
        return Err(CaptchaError::Expired);
    }
    let digest = Sha256::new().chain_update(challenge).chain_update(b":").chain_update(nonce).finalize();
    if leading_zero_bits(&digest) < parsed.difficulty_bits {
        return Err(CaptchaError::Unsolved);
    }
    Ok(Verified { spent_key: spent_key(challenge), expires_at_ms: parsed.expires_at_ms })
}

/// Number of leading zero bits of `digest`, most significant bit of the first byte first.
pub fn leading_zero_bits(digest: &[u8]) -> u32 {
    let mut bits = 0;
    for byte in digest {
        bits += byte.leading_zeros();
        if *byte != 0 {
            break;
        }
    }
    bits
}

/// The reference client algorithm: the first nonce 0, 1, 2, … (in decimal)
/// such that SHA-256(challenge ":" nonce) starts with `difficulty_bits` zero
/// bits. About 2^difficulty_bits hashes on average; do not ask for more than
/// a few dozen bits.
pub fn solve(challenge: &str, difficulty_bits: u32) -> u64 {
    let prefix = Sha256::new().chain_update(challenge).chain_update(b":");
    let mut text = String::with_capacity(MAX_NONCE_LEN);
    let mut nonce = 0u64;
    loop {
        text.clear();
        let _ = write!(text, "{nonce}");
        let digest = prefix.clone().chain_update(&text).finalize();
        if leading_zero_bits(&digest) >= difficulty_bits {
            return nonce;
        }
        nonce = nonce.wrapping_add(1);
    }
}

/// Checks a captcha solution. [`ProofOfWork`] is the embedded one; an
/// external service (hCaptcha, Turnstile) would implement this with an HTTP
/// call, putting its own response token in `challenge`/`nonce` as it sees fit.
/// Single use is not the verifier's job: the caller spends
/// [`Verified::spent_key`].
pub trait CaptchaVerifier: Send + Sync {
    fn verify<'a>(
        &'a self,
        challenge: &'a str,
        nonce: &'a str,
        now_ms: i64,
    ) -> Pin<Box<dyn Future<Output = Result<Verified, CaptchaError>> + Send + 'a>>;
}

/// The requests per window, estimated over a sliding window from two fixed
/// ones: all of the current window so far, and the part of the previous
/// window that the sliding one still covers (`elapsed_ms` into the current).
/// A fixed window alone would drop to nothing at each boundary while an
/// attack goes on.
pub fn recent_rate(previous: u64, current: u64, elapsed_ms: i64, window_ms: i64) -> u64 {
    let window = u128::try_from(window_ms.max(1)).unwrap_or(1);
    let elapsed = u128::try_from(elapsed_ms.clamp(0, window_ms.max(1))).unwrap_or(0);
    let carried = u128::from(previous) * (window - elapsed) / window;
    u64::try_from(carried).unwrap_or(u64::MAX).saturating_add(current)
}

/// The difficulty to ask for while `recent` requests were made in the last
/// window: `base` up to `busy`, then one bit more each time the rate doubles
/// past it (`busy`+1 to 2·`busy`: one more, up to 4·`busy`: two more, …),
/// never above `max`. Each bit doubles a solution's work, so an attacker's
/// own rate makes every further request of theirs dearer.
pub fn difficulty_under_pressure(base: u32, max: u32, busy: u64, recent: u64) -> u32 {
    let busy = busy.max(1);
    if recent <= busy {
        return base.min(max.max(base));
    }
    // ceil(recent / busy) > 1: the number of doublings is the bits needed to write it minus one.
    let ratio = recent.div_ceil(busy);
    let extra = u64::BITS - (ratio - 1).leading_zeros();
    base.saturating_add(extra).min(max.max(base)).min(MAX_DIFFICULTY_BITS)
}

/// The embedded proof-of-work captcha, with its signing key and settings.
#[derive(Clone)]
pub struct ProofOfWork {
    key: Vec<u8>,
    difficulty_bits: u32,
    ttl_ms: i64,
    /// The difficulty last worked out from the request rate, and when: the
    /// rate is read from the database at most once per [`PRESSURE_CACHE_MS`],
    /// however often challenges are asked for.
    pressure: std::sync::Arc<std::sync::Mutex<Option<(i64, u32)>>>,
}

/// How long a difficulty worked out from the request rate is reused.
pub const PRESSURE_CACHE_MS: i64 = 1000;

impl ProofOfWork {
    pub fn new(key: Vec<u8>, difficulty_bits: u32, ttl_ms: i64) -> Self {
        Self { key, difficulty_bits: difficulty_bits.min(MAX_DIFFICULTY_BITS), ttl_ms, pressure: Default::default() }
    }

    /// A challenge of `difficulty_bits`, never easier than the configured base.
    pub fn issue_with(&self, difficulty_bits: u32, now_ms: i64) -> Challenge {
        issue(&self.key, difficulty_bits.max(self.difficulty_bits), self.ttl_ms, now_ms)
    }

    /// The difficulty remembered at most [`PRESSURE_CACHE_MS`] before `now_ms`.
    pub fn remembered_difficulty(&self, now_ms: i64) -> Option<u32> {
        let remembered = *self.pressure.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        remembered.filter(|&(at, _)| (0..PRESSURE_CACHE_MS).contains(&(now_ms - at))).map(|(_, bits)| bits)
    }

    /// The difficulty last remembered, however old (when the rate cannot be read).
    pub fn last_difficulty(&self) -> u32 {
        let remembered = *self.pressure.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        remembered.map_or(self.difficulty_bits, |(_, bits)| bits)
    }

    pub fn remember_difficulty(&self, now_ms: i64, difficulty_bits: u32) {
        *self.pressure.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = Some((now_ms, difficulty_bits));
    }

    /// From the `captcha` configuration; without `captcha.hmac_key` a random
    /// key for this process only (challenges then fail on other replicas and
    /// after a restart).
    pub fn from_config(config: &crate::config::CaptchaConfig) -> Self {
        let key = config.key_bytes().unwrap_or_else(|| super::random::bytes::<32>().to_vec());
        let ttl_ms = i64::try_from(config.ttl_secs.saturating_mul(1000)).unwrap_or(i64::MAX);
        Self::new(key, config.difficulty_bits, ttl_ms)
    }

    pub fn issue(&self, now_ms: i64) -> Challenge {
        issue(&self.key, self.difficulty_bits, self.ttl_ms, now_ms)
    }

    pub fn difficulty_bits(&self) -> u32 {
        self.difficulty_bits
    }

    pub fn ttl_ms(&self) -> i64 {
        self.ttl_ms
    }
}

impl fmt::Debug for ProofOfWork {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProofOfWork")
            .field("key", &"***")
            .field("difficulty_bits", &self.difficulty_bits)
            .field("ttl_ms", &self.ttl_ms)
            .finish()
    }
}

impl CaptchaVerifier for ProofOfWork {
    fn verify<'a>(
        &'a self,
        challenge: &'a str,
        nonce: &'a str,
        now_ms: i64,
    ) -> Pin<Box<dyn Future<Output = Result<Verified, CaptchaError>> + Send + 'a>> {
        Box::pin(std::future::ready(verify(&self.key, challenge, nonce, now_ms)))
    }
}

struct Parsed<'a> {
    /// Everything the tag covers: the challenge up to its last '.'.
    payload: &'a str,
    expires_at_ms: i64,
    difficulty_bits: u32,
    tag: Vec<u8>,
}

fn parse(challenge: &str) -> Option<Parsed<'_>> {
    let (payload, tag) = challenge.rsplit_once('.')?;
    let mut parts = payload.split('.');
    let (version, expires, difficulty, random) = (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() || version != VERSION {
        return None;
    }
    let expires_at_ms: i64 = decimal(expires, 19)?.parse().ok()?;
    let difficulty_bits: u32 = decimal(difficulty, 3)?.parse().ok()?;
    if difficulty_bits > MAX_DIFFICULTY_BITS || random.len() != RANDOM_CHARS || tag.len() != TAG_CHARS {
        return None;
    }
    // Strict decoding (no padding, no stray trailing bits): one spelling per
    // challenge, so one spent key per challenge.
    if URL_SAFE_NO_PAD.decode(random).ok()?.len() != RANDOM_BYTES {
        return None;
    }
    let tag = URL_SAFE_NO_PAD.decode(tag).ok()?;
    Some(Parsed { payload, expires_at_ms, difficulty_bits, tag })
}

/// `text` when it is 1 to `max` ASCII digits.
fn decimal(text: &str, max: usize) -> Option<&str> {
    ((1..=max).contains(&text.len()) && text.bytes().all(|b| b.is_ascii_digit())).then_some(text)
}

fn signer(key: &[u8], payload: &str) -> HmacSha256 {
    // HMAC takes keys of any length: a long one is hashed, a short one padded.
    let mut mac = match HmacSha256::new_from_slice(key) {
        Ok(mac) => mac,
        Err(_) => unreachable!("HMAC accepts keys of any length"),
    };
    mac.update(payload.as_bytes());
    mac
}

fn spent_key(challenge: &str) -> String {
    let digest = Sha256::digest(challenge.as_bytes());
    let mut key = String::with_capacity(8 + 32);
    key.push_str("captcha:");
    for byte in &digest[..16] {
        let _ = write!(key, "{byte:02x}");
    }
    key
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &[u8] = b"0123456789abcdef0123456789abcdef";
    const NOW: i64 = 1_800_000_000_000;
    const TTL: i64 = 300_000;

    fn tamper(challenge: &str, index: usize, value: &str) -> String {
        let mut parts: Vec<&str> = challenge.split('.').collect();
        parts[index] = value;
        parts.join(".")
    }

    #[test]
    fn a_solved_challenge_verifies() {
        for bits in [8, 12] {
            let issued = issue(KEY, bits, TTL, NOW);
            assert_eq!(issued.difficulty_bits, bits);
            assert_eq!(issued.expires_at_ms, NOW + TTL);
            assert!(issued.challenge.starts_with(&format!("v1.{}.{bits}.", NOW + TTL)));
            let nonce = solve(&issued.challenge, bits).to_string();
            let verified = verify(KEY, &issued.challenge, &nonce, NOW + 1000).unwrap();
            assert_eq!(verified.expires_at_ms, NOW + TTL);
            assert!(verified.spent_key.starts_with("captcha:"));
            assert_eq!(verified.spent_key.len(), 8 + 32);
            assert!(verified.spent_key[8..].bytes().all(|b| b.is_ascii_hexdigit()));
            // The same challenge always gives the same key.
            assert_eq!(verify(KEY, &issued.challenge, &nonce, NOW + 2000).unwrap().spent_key, verified.spent_key);
        }
    }

    #[test]
    fn the_difficulty_rises_a_bit_per_doubling_of_the_rate_up_to_the_cap() {
        let bits = |recent| difficulty_under_pressure(18, 22, 60, recent);
        assert_eq!([bits(0), bits(60)], [18, 18], "up to the busy rate, the base");
        assert_eq!([bits(61), bits(120)], [19, 19]);
        assert_eq!([bits(121), bits(240)], [20, 20]);
        assert_eq!([bits(241), bits(480), bits(481)], [21, 21, 22]);
        assert_eq!(bits(u64::MAX), 22, "never above the cap");
        // A cap below the base (not a valid configuration) never lowers the base.
        assert_eq!(difficulty_under_pressure(18, 10, 60, 10_000), 18);
        assert_eq!(difficulty_under_pressure(8, 12, 0, 2), 9, "a busy rate of 0 counts as 1");
    }

    #[test]
    fn the_recent_rate_slides_across_window_boundaries() {
        // Just past a boundary the previous window still counts almost whole.
        assert_eq!(recent_rate(100, 0, 0, 60_000), 100);
        assert_eq!(recent_rate(100, 10, 30_000, 60_000), 60);
        assert_eq!(recent_rate(100, 10, 60_000, 60_000), 10);
        assert_eq!(recent_rate(u64::MAX, u64::MAX, 0, 60_000), u64::MAX);
        assert_eq!(recent_rate(5, 1, -3, 0), 6, "odd inputs neither panic nor go negative");
    }

    #[test]
    fn challenges_under_pressure_are_harder_and_still_verify() {
        let pow = ProofOfWork::new(KEY.to_vec(), 8, TTL);
        assert_eq!(pow.issue_with(4, NOW).difficulty_bits, 8, "never below the base");
        let harder = pow.issue_with(10, NOW);
        assert_eq!(harder.difficulty_bits, 10);
        let nonce = solve(&harder.challenge, 10).to_string();
        assert!(verify(KEY, &harder.challenge, &nonce, NOW).is_ok());
        assert_eq!(pow.remembered_difficulty(NOW), None);
        pow.remember_difficulty(NOW, 10);
        assert_eq!(pow.remembered_difficulty(NOW + PRESSURE_CACHE_MS - 1), Some(10));
        assert_eq!(pow.remembered_difficulty(NOW + PRESSURE_CACHE_MS), None);
        assert_eq!(pow.last_difficulty(), 10);
    }

    #[test]
    fn challenges_are_distinct_and_short() {
        let a = issue(KEY, 18, TTL, NOW);
        let b = issue(KEY, 18, TTL, NOW);
        assert_ne!(a.challenge, b.challenge);
        assert!(a.challenge.len() < 100, "{}", a.challenge);
        // Different challenges give different spent keys (at difficulty 0 any nonce solves).
        let a0 = issue(KEY, 0, TTL, NOW);
        let b0 = issue(KEY, 0, TTL, NOW);
        assert_ne!(
            verify(KEY, &a0.challenge, "0", NOW).unwrap().spent_key,
            verify(KEY, &b0.challenge, "0", NOW).unwrap().spent_key
        );
    }

    #[test]
    fn a_wrong_nonce_is_unsolved() {
        let issued = issue(KEY, 12, TTL, NOW);
        let good = solve(&issued.challenge, 12);
        let bad = (good + 1..)
            .find(|n| {
                let digest = Sha256::digest(format!("{}:{n}", issued.challenge));
                leading_zero_bits(&digest) < 12
            })
            .unwrap();
        assert_eq!(verify(KEY, &issued.challenge, &bad.to_string(), NOW), Err(CaptchaError::Unsolved));
    }

    #[test]
    fn a_tampered_challenge_has_a_bad_signature() {
        let issued = issue(KEY, 12, TTL, NOW);
        // Asking for no work at all: any nonce would do, were it signed.
        let easier = tamper(&issued.challenge, 2, "0");
        assert_eq!(verify(KEY, &easier, "0", NOW), Err(CaptchaError::BadSignature));
        // Extending the expiry.
        let later = (NOW + 10 * TTL).to_string();
        let longer = tamper(&issued.challenge, 1, &later);
        let nonce = solve(&longer, 12).to_string();
        assert_eq!(verify(KEY, &longer, &nonce, NOW), Err(CaptchaError::BadSignature));
        // Another random part.
        let other = tamper(&issued.challenge, 3, "AAAAAAAAAAAAAAAAAAAAAA");
        assert_eq!(verify(KEY, &other, &solve(&other, 12).to_string(), NOW), Err(CaptchaError::BadSignature));
    }

    #[test]
    fn another_key_has_a_bad_signature() {
        let issued = issue(b"another key, another server......", 8, TTL, NOW);
        let nonce = solve(&issued.challenge, 8).to_string();
        assert_eq!(verify(KEY, &issued.challenge, &nonce, NOW), Err(CaptchaError::BadSignature));
    }

    #[test]
    fn an_expired_challenge_is_refused() {
        let issued = issue(KEY, 8, TTL, NOW);
        let nonce = solve(&issued.challenge, 8).to_string();
        assert!(verify(KEY, &issued.challenge, &nonce, NOW + TTL - 1).is_ok());
        assert_eq!(verify(KEY, &issued.challenge, &nonce, NOW + TTL), Err(CaptchaError::Expired));
        assert_eq!(verify(KEY, &issued.challenge, &nonce, i64::MAX), Err(CaptchaError::Expired));
    }

    #[test]
    fn malformed_input_is_refused_without_panicking() {
        let issued = issue(KEY, 8, TTL, NOW);
        let c = issued.challenge.as_str();
        let nonce = solve(c, 8).to_string();
        let huge = "v1.".repeat(1000);
        let cases: Vec<(String, String)> = vec![
            (String::new(), nonce.clone()),
            (c.to_owned(), String::new()),
            (huge.clone(), nonce.clone()),
            (c.to_owned(), "1".repeat(10_000)),
            (c.to_owned(), "12a".to_owned()),
            (c.to_owned(), "-1".to_owned()),
            (c.to_owned(), " 1".to_owned()),
            (c.to_owned(), "１".to_owned()), // a full-width digit is not ASCII
            (c.to_owned(), "1".repeat(21)),
            ("v1".to_owned(), nonce.clone()),
            ("....".to_owned(), nonce.clone()),
            (".....".to_owned(), nonce.clone()),
            (c.rsplit_once('.').unwrap().0.to_owned(), nonce.clone()),
            (format!("{c}.extra"), nonce.clone()),
            (tamper(c, 0, "v2"), nonce.clone()),
            (tamper(c, 1, ""), nonce.clone()),
            (tamper(c, 1, "-5"), nonce.clone()),
            (tamper(c, 1, "99999999999999999999"), nonce.clone()),
            (tamper(c, 2, "257"), nonce.clone()),
            (tamper(c, 2, "4294967296"), nonce.clone()),
            (tamper(c, 3, "!!!!!!!!!!!!!!!!!!!!!!"), nonce.clone()),
            (tamper(c, 3, "AAAA"), nonce.clone()),
            (tamper(c, 4, &"!".repeat(TAG_CHARS)), nonce.clone()),
            (tamper(c, 4, "AAAA"), nonce.clone()),
            (tamper(c, 4, &format!("{}=", c.rsplit_once('.').unwrap().1)), nonce.clone()),
            ("é".repeat(200), nonce.clone()),
        ];
        for (challenge, nonce) in &cases {
            assert_eq!(verify(KEY, challenge, nonce, NOW), Err(CaptchaError::Malformed), "{challenge:?} {nonce:?}");
        }
        // 20 digits is the limit, not an error in itself.
        assert_ne!(verify(KEY, c, &"9".repeat(20), NOW), Err(CaptchaError::Malformed));
    }

    #[test]
    fn a_tag_spelt_another_way_is_refused() {
        let issued = issue(KEY, 0, TTL, NOW);
        let (payload, tag) = issued.challenge.rsplit_once('.').unwrap();
        // The last of 43 characters carries 4 bits and 2 zero padding bits; set one of those.
        let last = tag.as_bytes()[TAG_CHARS - 1];
        let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        let index = alphabet.iter().position(|&b| b == last).unwrap();
        let twisted = char::from(alphabet[index | 1]);
        let respelt = format!("{payload}.{}{twisted}", &tag[..TAG_CHARS - 1]);
        assert_eq!(verify(KEY, &respelt, "0", NOW), Err(CaptchaError::Malformed));
        assert!(verify(KEY, &issued.challenge, "0", NOW).is_ok());
    }

    #[test]
    fn random_inputs_never_panic() {
        let issued = issue(KEY, 8, TTL, NOW);
        for i in 0..2000u32 {
            let cut = (i as usize * 7) % (issued.challenge.len() + 1);
            let mut challenge = issued.challenge[..cut].to_owned();
            challenge.push_str(&String::from_utf8_lossy(&super::super::random::bytes::<8>()));
            let result = verify(KEY, &challenge, &i.to_string(), NOW);
            assert!(result.is_err());
        }
    }

    #[test]
    fn leading_zero_bits_counts_from_the_first_byte() {
        assert_eq!(leading_zero_bits(&[]), 0);
        assert_eq!(leading_zero_bits(&[0x80]), 0);
        assert_eq!(leading_zero_bits(&[0x01]), 7);
        assert_eq!(leading_zero_bits(&[0x00, 0x00, 0xff]), 16);
        assert_eq!(leading_zero_bits(&[0x00, 0x0f, 0x00]), 12);
        assert_eq!(leading_zero_bits(&[0x00, 0x00]), 16);
        assert_eq!(leading_zero_bits(&[0x00; 32]), 256);
        assert_eq!(leading_zero_bits(&[0x00, 0x01, 0x00]), 15);
    }

    #[test]
    fn solve_finds_the_first_nonce_in_the_wire_format() {
        // SHA-256(challenge ":" decimal nonce), computed here independently of `solve`.
        // The same answer as the JavaScript and Python sketches in docs/decisions.md.
        assert_eq!(solve("abc", 12), 4959);
        let nonce = solve("abc", 8);
        let digest = Sha256::digest(format!("abc:{nonce}").as_bytes());
        assert_eq!(digest[0], 0);
        assert!((0..nonce).all(|n| Sha256::digest(format!("abc:{n}").as_bytes())[0] != 0));
    }

    #[tokio::test]
    async fn proof_of_work_is_a_captcha_verifier() {
        let pow = ProofOfWork::new(KEY.to_vec(), 8, TTL);
        let issued = pow.issue(NOW);
        assert_eq!(issued.difficulty_bits, 8);
        let nonce = solve(&issued.challenge, 8).to_string();
        let verifier: &dyn CaptchaVerifier = &pow;
        assert!(verifier.verify(&issued.challenge, &nonce, NOW).await.is_ok());
        assert!(!format!("{pow:?}").contains("0123456789abcdef"));
    }
}

#[cfg(test)]
mod config_tests {
    use super::*;
    use crate::config::{CaptchaConfig, Config};
    use base64::engine::general_purpose::{STANDARD, URL_SAFE};

    #[test]
    fn keys_are_read_in_either_base64_alphabet() {
        let bytes: Vec<u8> = (200u8..240).collect(); // 40 bytes, with '+' '/' or '-' '_' in the text
        for text in [STANDARD.encode(&bytes), URL_SAFE.encode(&bytes), URL_SAFE_NO_PAD.encode(&bytes)] {
            let config = CaptchaConfig { hmac_key: Some(format!("{text}\n")), ..CaptchaConfig::default() };
            assert_eq!(config.key_bytes(), Some(bytes.clone()), "{text}");
        }
        let short = CaptchaConfig { hmac_key: Some(STANDARD.encode([7u8; 31])), ..CaptchaConfig::default() };
        assert_eq!(short.key_bytes(), None);
        assert_eq!(CaptchaConfig::default().key_bytes(), None);
        assert!(
            !format!("{:?}", CaptchaConfig { hmac_key: Some("secret".into()), ..CaptchaConfig::default() })
                .contains("secret")
        );
    }

    #[test]
    fn captcha_settings_are_validated() {
        let config = Config::default();
        assert_eq!((config.captcha.difficulty_bits, config.captcha.ttl_secs), (18, 300));
        config.validate().unwrap();
        for (change, key) in [
            ((0, 300, None), "captcha.difficulty_bits"),
            ((33, 300, None), "captcha.difficulty_bits"),
            ((18, 29, None), "captcha.ttl_secs"),
            ((18, 3601, None), "captcha.ttl_secs"),
            ((18, 300, Some("too short".to_owned())), "captcha.hmac_key"),
            ((18, 300, Some("not base64 at all, not base64 at all, not base64 at all".to_owned())), "captcha.hmac_key"),
        ] {
            let (difficulty_bits, ttl_secs, hmac_key) = change;
            let captcha =
                CaptchaConfig { difficulty_bits, ttl_secs, hmac_key, max_difficulty_bits: 32, ..Default::default() };
            let config = Config { captcha, ..Config::default() };
            let error = config.validate().unwrap_err().to_string();
            assert!(error.contains(&format!("`{key}`")), "{error}");
        }
        for (captcha, key) in [
            (CaptchaConfig { max_difficulty_bits: 17, ..Default::default() }, "captcha.max_difficulty_bits"),
            (CaptchaConfig { max_difficulty_bits: 33, ..Default::default() }, "captcha.max_difficulty_bits"),
            (CaptchaConfig { busy_requests_per_minute: 0, ..Default::default() }, "captcha.busy_requests_per_minute"),
        ] {
            let error = Config { captcha, ..Config::default() }.validate().unwrap_err().to_string();
            assert!(error.contains(&format!("`{key}`")), "{error}");
        }
        let good = CaptchaConfig { hmac_key: Some(STANDARD.encode([1u8; 32])), ..CaptchaConfig::default() };
        Config { captcha: good.clone(), ..Config::default() }.validate().unwrap();
        // Processes configured with one key accept each other's challenges.
        let shared = CaptchaConfig { difficulty_bits: 8, ..good };
        let (a, b) = (ProofOfWork::from_config(&shared), ProofOfWork::from_config(&shared));
        assert_eq!((a.difficulty_bits(), a.ttl_ms()), (8, 300_000));
        let issued = a.issue(1_000);
        let nonce = solve(&issued.challenge, 8).to_string();
        assert!(verify(&b.key, &issued.challenge, &nonce, 2_000).is_ok());
        assert_eq!(b.key, vec![1u8; 32]);
        // Without a key each process makes its own.
        let c = ProofOfWork::from_config(&CaptchaConfig::default());
        let d = ProofOfWork::from_config(&CaptchaConfig::default());
        assert_ne!(c.key, d.key);
        assert_eq!(c.key.len(), 32);
    }
}
