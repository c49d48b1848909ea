//! The rules an access token must pass, without I/O: compact JWS parsing, the
//! Ed25519 signature against a known key, then `iss`, `aud`, `exp` and `nbf`.
//! The identity service issues EdDSA only; the algorithm is ours to pin, never
//! the token's to choose.

use std::collections::HashMap;

use base64::{Engine as _, engine::general_purpose::URL_SAFE_NO_PAD};
use ed25519_dalek::{Signature, Verifier as _, VerifyingKey};
use serde::Deserialize;

use crate::pb::{self, Role};

/// Far above any token the service issues (it refuses the same size); checked
/// before any decoding, so a huge header costs nothing.
pub const MAX_TOKEN_BYTES: usize = 8 * 1024;

/// Why a token is refused. Each is final for that token.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rejection {
    /// No `authorization` header (or metadata).
    Missing,
    /// An `authorization` header that is not `Bearer <token>`.
    NotBearer,
    Malformed,
    BadSignature,
    /// Signed by a key the identity service does not publish.
    UnknownKey,
    Expired,
    NotYetValid,
    WrongIssuer,
    WrongAudience,
    /// A role this client does not know: refused rather than guessed.
    UnknownRole,
    /// The session was ended (logout, password change, lockout …).
    Revoked,
}

impl Rejection {
    /// The words the refusal carries (a gRPC message, an HTTP `error_description`).
    pub fn message(self) -> &'static str {
        match self {
            Rejection::Missing => "this call needs an `authorization: Bearer <access token>` header",
            Rejection::NotBearer => "the authorization header must be `Bearer <access token>`",
            Rejection::Malformed => "the access token is malformed",
            Rejection::BadSignature => "the access token's signature does not verify",
            Rejection::UnknownKey => "the access token is signed by an unknown key",
            Rejection::Expired => "the access token has expired: refresh or log in again",
            Rejection::NotYetValid => "the access token is not valid yet",
            Rejection::WrongIssuer => "the access token was issued by someone else",
            Rejection::WrongAudience => "the access token is meant for another audience",
            Rejection::UnknownRole => "the access token names an unknown role",
            Rejection::Revoked => "the session has ended: log in again",
        }
    }

    /// The refusal `ValidateToken` answered with, when it answered one.
    pub(crate) fn from_reason(reason: pb::TokenInvalidReason) -> Self {
        use pb::TokenInvalidReason as R;
        match reason {
            R::BadSignature => Rejection::BadSignature,
            R::Expired => Rejection::Expired,
            R::NotYetValid => Rejection::NotYetValid,
            R::WrongIssuer => Rejection::WrongIssuer,
            R::WrongAudience => Rejection::WrongAudience,
            R::UnknownKey => Rejection::UnknownKey,
            R::Revoked => Rejection::Revoked,
            R::Malformed | R::Unspecified => Rejection::Malformed,
        }
    }
}

/// Who is calling: what a handler reads from the request's extensions.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Caller {
    /// The user's immutable id (`sub`).
    pub user_id: String,
    /// The login at the time the token was issued (logins can be renamed).
    pub login: String,
    pub subscription_id: String,
    pub role: Role,
    /// The session (`sid`): every token of one login shares it.
    pub session_id: String,
    /// This token (`jti`).
    pub token_id: String,
    /// When the token expires, in Unix seconds.
    pub expires_at: i64,
}

/// The Ed25519 keys of a JWKS, by `kid`, decoded once.
#[derive(Clone, Debug, Default)]
pub struct KeySet {
    keys: HashMap<String, VerifyingKey>,
}

impl KeySet {
    /// The usable keys of `jwks`: a key of another type or with a broken `x`
    /// is left out (and logged) rather than failing the others.
    pub fn from_jwks(jwks: &[pb::Jwk]) -> Self {
        let mut keys = HashMap::with_capacity(jwks.len());
        for jwk in jwks {
            match decode_jwk(jwk) {
                Some(key) => {
                    keys.insert(jwk.kid.clone(), key);
                }
                None => tracing::warn!(kid = %jwk.kid, kty = %jwk.kty, crv = %jwk.crv, "unusable JWKS key skipped"),
            }
        }
        Self { keys }
    }

    pub fn get(&self, kid: &str) -> Option<&VerifyingKey> {
        self.keys.get(kid)
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}

fn decode_jwk(jwk: &pb::Jwk) -> Option<VerifyingKey> {
    // `alg` and `use` are optional in RFC 7517; when present they must fit.
    let fits = jwk.kty == "OKP"
        && jwk.crv == "Ed25519"
        && !jwk.kid.is_empty()
        && (jwk.alg.is_empty() || jwk.alg == "EdDSA")
        && (jwk.r#use.is_empty() || jwk.r#use == "sig");
    if !fits {
        return None;
    }
    let raw: [u8; 32] = URL_SAFE_NO_PAD.decode(&jwk.x).ok()?.try_into().ok()?;
    VerifyingKey::from_bytes(&raw).ok()
}

/// A compact JWS split and decoded, its signature not yet checked.
#[derive(Debug)]
pub struct Parsed<'a> {
    pub kid: String,
    signing_input: &'a str,
    payload: &'a str,
    signature: Signature,
}

#[derive(Deserialize)]
struct Header {
    alg: String,
    kid: Option<String>,
    /// Extensions a verifier must understand (RFC 7515 §4.1.11): we know none.
    crit: Option<serde::de::IgnoredAny>,
}

#[derive(Deserialize)]
struct Claims {
    iss: String,
    aud: Audience,
    sub: String,
    exp: i64,
    #[serde(default)]
    nbf: Option<i64>,
    jti: String,
    sid: String,
    subscription: String,
    role: String,
    login: String,
}

/// RFC 7519 allows one audience or several.
#[derive(Deserialize)]
#[serde(untagged)]
enum Audience {
    One(String),
    Many(Vec<String>),
}

impl Audience {
    fn contains(&self, wanted: &str) -> bool {
        match self {
            Audience::One(aud) => aud == wanted,
            Audience::Many(auds) => auds.iter().any(|aud| aud == wanted),
        }
    }
}

/// What a token must say to be accepted.
#[derive(Clone, Debug)]
pub struct Expected {
    pub issuer: String,
    pub audience: String,
    /// Clock skew tolerated on `exp` and `nbf`, in seconds.
    pub leeway_secs: i64,
}

/// Splits a compact JWS and reads its header: `alg` must be `EdDSA`, a `kid` must be named.
pub fn parse(token: &str) -> Result<Parsed<'_>, Rejection> {
    if token.len() > MAX_TOKEN_BYTES {
        return Err(Rejection::Malformed);
    }
    let (signing_input, signature) = token.rsplit_once('.').ok_or(Rejection::Malformed)?;
    let (header, payload) = signing_input.split_once('.').ok_or(Rejection::Malformed)?;
    let header: Header = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(header).map_err(|_| Rejection::Malformed)?)
        .map_err(|_| Rejection::Malformed)?;
    if header.alg != "EdDSA" || header.crit.is_some() {
        return Err(Rejection::Malformed);
    }
    let kid = header.kid.filter(|kid| !kid.is_empty()).ok_or(Rejection::UnknownKey)?;
    let signature: [u8; 64] =
        URL_SAFE_NO_PAD.decode(signature).ok().and_then(|s| s.try_into().ok()).ok_or(Rejection::Malformed)?;
    Ok(Parsed { kid, signing_input, payload, signature: Signature::from_bytes(&signature) })
}

/// The signature with `key`, then the claims against `expected` at `now_secs`.
pub fn verify(
    parsed: &Parsed<'_>,
    key: &VerifyingKey,
    expected: &Expected,
    now_secs: i64,
) -> Result<Caller, Rejection> {
    key.verify(parsed.signing_input.as_bytes(), &parsed.signature).map_err(|_| Rejection::BadSignature)?;
    // Only a signed payload is parsed: what reaches serde is the service's own JSON.
    let claims: Claims =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parsed.payload).map_err(|_| Rejection::Malformed)?)
            .map_err(|_| Rejection::Malformed)?;
    if claims.iss != expected.issuer {
        return Err(Rejection::WrongIssuer);
    }
    if !claims.aud.contains(&expected.audience) {
        return Err(Rejection::WrongAudience);
    }
    if now_secs >= claims.exp.saturating_add(expected.leeway_secs) {
        return Err(Rejection::Expired);
    }
    if claims.nbf.is_some_and(|nbf| now_secs < nbf.saturating_sub(expected.leeway_secs)) {
        return Err(Rejection::NotYetValid);
    }
    let role = Role::from_str_name(&format!("ROLE_{}", claims.role))
        .filter(|role| *role != Role::Unspecified)
        .ok_or(Rejection::UnknownRole)?;
    Ok(Caller {
        user_id: claims.sub,
        login: claims.login,
        subscription_id: claims.subscription,
        role,
        session_id: claims.sid,
        token_id: claims.jti,
        expires_at: claims.exp,
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use ed25519_dalek::{Signer as _, SigningKey};
    use serde_json::{Value, json};

    use super::*;

    pub const NOW: i64 = 1_800_000_000;
    pub const ISS: &str = "https://identity.example";
    pub const AUD: &str = "identity";

    pub fn key(seed: u8) -> SigningKey {
        SigningKey::from_bytes(&[seed; 32])
    }

    pub fn kid(key: &SigningKey) -> String {
        format!("kid-{}", URL_SAFE_NO_PAD.encode(&key.verifying_key().to_bytes()[..6]))
    }

    pub fn jwk(key: &SigningKey) -> pb::Jwk {
        pb::Jwk {
            kty: "OKP".to_owned(),
            crv: "Ed25519".to_owned(),
            x: URL_SAFE_NO_PAD.encode(key.verifying_key().to_bytes()),
            kid: kid(key),
            alg: "EdDSA".to_owned(),
            r#use: "sig".to_owned(),
        }
    }

    pub fn claims() -> Value {
        json!({
            "iss": ISS, "aud": AUD, "sub": "user-1", "exp": NOW + 900, "iat": NOW, "nbf": NOW,
            "jti": "jti-1", "sid": "session-1", "subscription": "sub-1", "role": "UNIT_MANAGER", "login": "alice",
        })
    }

    pub fn sign_with_header(key: &SigningKey, header: &Value, claims: &Value) -> String {
        let header = URL_SAFE_NO_PAD.encode(serde_json::to_vec(header).unwrap());
        let payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(claims).unwrap());
        let input = format!("{header}.{payload}");
        let signature = URL_SAFE_NO_PAD.encode(key.sign(input.as_bytes()).to_bytes());
        format!("{input}.{signature}")
    }

    pub fn sign(key: &SigningKey, claims: &Value) -> String {
        sign_with_header(key, &json!({"typ": "JWT", "alg": "EdDSA", "kid": kid(key)}), claims)
    }

    fn expected() -> Expected {
        Expected { issuer: ISS.to_owned(), audience: AUD.to_owned(), leeway_secs: 30 }
    }

    fn check(keys: &KeySet, token: &str, now: i64) -> Result<Caller, Rejection> {
        let parsed = parse(token)?;
        let key = keys.get(&parsed.kid).ok_or(Rejection::UnknownKey)?;
        verify(&parsed, key, &expected(), now)
    }

    fn keys(signers: &[&SigningKey]) -> KeySet {
        KeySet::from_jwks(&signers.iter().map(|k| jwk(k)).collect::<Vec<_>>())
    }

    #[test]
    fn a_token_of_a_published_key_gives_its_caller() {
        let signer = key(1);
        let caller = check(&keys(&[&signer]), &sign(&signer, &claims()), NOW).unwrap();
        assert_eq!(
            caller,
            Caller {
                user_id: "user-1".to_owned(),
                login: "alice".to_owned(),
                subscription_id: "sub-1".to_owned(),
                role: Role::UnitManager,
                session_id: "session-1".to_owned(),
                token_id: "jti-1".to_owned(),
                expires_at: NOW + 900,
            }
        );
    }

    #[test]
    fn a_token_signed_by_another_key_under_a_known_kid_has_a_bad_signature() {
        let (signer, forger) = (key(1), key(2));
        let forged = sign_with_header(&forger, &json!({"alg": "EdDSA", "kid": kid(&signer)}), &claims());
        assert_eq!(check(&keys(&[&signer]), &forged, NOW), Err(Rejection::BadSignature));
    }

    #[test]
    fn a_token_of_an_unpublished_key_or_without_kid_names_an_unknown_key() {
        let (signer, stranger) = (key(1), key(2));
        assert_eq!(check(&keys(&[&signer]), &sign(&stranger, &claims()), NOW), Err(Rejection::UnknownKey));
        let no_kid = sign_with_header(&signer, &json!({"alg": "EdDSA"}), &claims());
        assert_eq!(check(&keys(&[&signer]), &no_kid, NOW), Err(Rejection::UnknownKey));
    }

    #[test]
    fn a_tampered_payload_breaks_the_signature() {
        let signer = key(1);
        let token = sign(&signer, &claims());
        let parts: Vec<&str> = token.split('.').collect();
        let mut forged = claims();
        forged["role"] = json!("ADMINISTRATOR");
        let payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&forged).unwrap());
        let tampered = format!("{}.{payload}.{}", parts[0], parts[2]);
        assert_eq!(check(&keys(&[&signer]), &tampered, NOW), Err(Rejection::BadSignature));
    }

    #[test]
    fn expiry_and_not_before_allow_the_leeway_and_no_more() {
        let signer = key(1);
        let keys = keys(&[&signer]);
        let token = sign(&signer, &claims());
        let exp = NOW + 900;
        assert!(check(&keys, &token, exp + 29).is_ok());
        assert_eq!(check(&keys, &token, exp + 30), Err(Rejection::Expired));
        assert!(check(&keys, &token, NOW - 30).is_ok());
        assert_eq!(check(&keys, &token, NOW - 31), Err(Rejection::NotYetValid));
    }

    #[test]
    fn issuer_and_audience_must_match_exactly() {
        let signer = key(1);
        let keys = keys(&[&signer]);
        for (field, value, rejection) in [
            ("iss", json!("https://identity.example/"), Rejection::WrongIssuer),
            ("iss", json!("https://evil.example"), Rejection::WrongIssuer),
            ("aud", json!("Identity"), Rejection::WrongAudience),
            ("aud", json!(["billing", "reports"]), Rejection::WrongAudience),
        ] {
            let mut wrong = claims();
            wrong[field] = value;
            assert_eq!(check(&keys, &sign(&signer, &wrong), NOW), Err(rejection), "{field}");
        }
        let mut several = claims();
        several["aud"] = json!(["billing", AUD]);
        assert!(check(&keys, &sign(&signer, &several), NOW).is_ok());
    }

    #[test]
    fn other_algorithms_and_critical_extensions_are_refused() {
        let signer = key(1);
        let keys = keys(&[&signer]);
        for header in [
            json!({"alg": "none", "kid": kid(&signer)}),
            json!({"alg": "HS256", "kid": kid(&signer)}),
            json!({"alg": "ES256", "kid": kid(&signer)}),
            json!({"alg": "EdDSA", "kid": kid(&signer), "crit": ["exp"]}),
        ] {
            assert_eq!(check(&keys, &sign_with_header(&signer, &header, &claims()), NOW), Err(Rejection::Malformed));
        }
    }

    #[test]
    fn an_unknown_role_or_missing_claim_is_refused() {
        let signer = key(1);
        let keys = keys(&[&signer]);
        let mut odd = claims();
        odd["role"] = json!("SUPERUSER");
        assert_eq!(check(&keys, &sign(&signer, &odd), NOW), Err(Rejection::UnknownRole));
        let mut missing = claims();
        missing.as_object_mut().unwrap().remove("sid");
        assert_eq!(check(&keys, &sign(&signer, &missing), NOW), Err(Rejection::Malformed));
    }

    #[test]
    fn truncated_garbage_and_oversized_tokens_are_refused_without_panic() {
        let signer = key(1);
        let keys = keys(&[&signer]);
        let token = sign(&signer, &claims());
        for end in 0..token.len() {
            assert!(check(&keys, &token[..end], NOW).is_err());
        }
        for garbage in ["", ".", "..", "a.b.c", "🦀.🦀.🦀", "e30.e30.e30"] {
            assert!(check(&keys, garbage, NOW).is_err(), "{garbage}");
        }
        let huge = format!("{token}{}", "A".repeat(MAX_TOKEN_BYTES));
        assert_eq!(check(&keys, &huge, NOW), Err(Rejection::Malformed));
    }

    #[test]
    fn unusable_jwks_entries_are_skipped_and_the_rest_kept() {
        let good = jwk(&key(1));
        let rsa = pb::Jwk { kty: "RSA".to_owned(), kid: "rsa".to_owned(), ..good.clone() };
        let short = pb::Jwk { x: "AAAA".to_owned(), kid: "short".to_owned(), ..good.clone() };
        let encrypting = pb::Jwk { r#use: "enc".to_owned(), kid: "enc".to_owned(), ..good.clone() };
        let set = KeySet::from_jwks(&[rsa, short, encrypting, good.clone()]);
        assert_eq!(set.len(), 1);
        assert!(set.get(&good.kid).is_some());
    }
}
