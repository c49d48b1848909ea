//! Access tokens: Ed25519-signed JWTs, the ring of published keys that signs
//! and verifies them, and the JWKS that lets other services verify them too.

use std::{fmt, sync::LazyLock};

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use ed25519_dalek::{
    SigningKey, VerifyingKey,
    pkcs8::{DecodePrivateKey, EncodePrivateKey},
};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation, errors::ErrorKind};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::{domain::Error, store::entities::signing_key};

/// The JOSE name of the only algorithm issued and accepted.
pub const ALGORITHM: &str = "EdDSA";

/// Far above any token this service issues; refused before any parsing.
pub const MAX_TOKEN_BYTES: usize = 8 * 1024;

/// Clock skew tolerated between this service and its replicas, in seconds.
const LEEWAY_SECS: i64 = 30;

/// The claims of an access token. Times are Unix seconds, as JWT requires.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessClaims {
    pub iss: String,
    pub aud: String,
    /// User id.
    pub sub: String,
    pub exp: i64,
    pub iat: i64,
    pub nbf: i64,
    pub jti: String,
    /// Session id.
    pub sid: String,
    /// Subscription id.
    pub subscription: String,
    /// e.g. "MANAGER".
    pub role: String,
    pub login: String,
}

/// Why a token is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenRejection {
    Malformed,
    BadSignature,
    Expired,
    NotYetValid,
    WrongIssuer,
    WrongAudience,
    UnknownKey,
}

/// A key pair ready to be stored in `signing_keys`.
#[derive(Clone)]
pub struct NewKey {
    /// RFC 7638 thumbprint: the same key always gets the same kid.
    pub kid: String,
    pub private_pkcs8_der: Vec<u8>,
    pub public_raw: [u8; 32],
}

impl fmt::Debug for NewKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NewKey").field("kid", &self.kid).field("private_pkcs8_der", &"***").finish_non_exhaustive()
    }
}

/// One key of a JWKS, with the RFC 7517 member names.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JwkKey {
    pub kty: String,
    pub crv: String,
    /// The raw public key, base64url without padding.
    pub x: String,
    pub kid: String,
    pub alg: String,
    #[serde(rename = "use")]
    pub use_: String,
}

pub fn generate_key() -> NewKey {
    new_key(&SigningKey::from_bytes(&super::random::bytes::<32>()))
}

/// Reads an Ed25519 private key from a PKCS#8 PEM file's content.
pub fn key_from_pem(pem: &str) -> Result<NewKey, Error> {
    let not_ed25519 = || {
        Error::invalid(
            "signing_key_file",
            "is not an Ed25519 private key in PKCS#8 PEM (make one with `openssl genpkey -algorithm ed25519`)",
        )
    };
    let der = EncodingKey::from_ed_pem(pem.as_bytes()).map_err(|_| not_ed25519())?;
    let key = SigningKey::from_pkcs8_der(der.as_bytes()).map_err(|_| not_ed25519())?;
    Ok(new_key(&key))
}

fn new_key(key: &SigningKey) -> NewKey {
    let public_raw = key.verifying_key().to_bytes();
    NewKey {
        kid: thumbprint(&public_raw),
        // Encoding a 32-byte seed and its public key into a fixed DER
        // structure has no failure case.
        private_pkcs8_der: key.to_pkcs8_der().expect("an Ed25519 key always encodes as PKCS#8").as_bytes().to_vec(),
        public_raw,
    }
}

/// RFC 7638: SHA-256 over the required members in lexical order, no whitespace.
fn thumbprint(public_raw: &[u8; 32]) -> String {
    let jwk = format!(r#"{{"crv":"Ed25519","kty":"OKP","x":"{}"}}"#, URL_SAFE_NO_PAD.encode(public_raw));
    URL_SAFE_NO_PAD.encode(Sha256::digest(jwk.as_bytes()))
}

/// The published keys: one signs, all of them verify.
#[derive(Clone, Debug)]
pub struct KeyRing {
    signer_kid: String,
    signer: EncodingKey,
    verifiers: Vec<Verifier>,
}

#[derive(Clone, Debug)]
struct Verifier {
    kid: String,
    public_raw: [u8; 32],
    key: DecodingKey,
}

impl KeyRing {
    /// The newest live, non-retired key that has a private key signs; every
    /// live key (`expires_at` absent or after `now_ms`) verifies.
    pub fn from_rows(rows: Vec<signing_key::Model>, now_ms: i64) -> Result<Self, Error> {
        Self::build(rows, now_ms, None)
    }

    /// For a key configured from a file, whose row holds no private key: it
    /// signs whatever the rows say, and verifies even before its row is read.
    pub fn from_rows_with_signer(rows: Vec<signing_key::Model>, now_ms: i64, signer: &NewKey) -> Result<Self, Error> {
        Self::build(rows, now_ms, Some(signer))
    }

    fn build(mut rows: Vec<signing_key::Model>, now_ms: i64, configured: Option<&NewKey>) -> Result<Self, Error> {
        rows.retain(|row| row.expires_at.is_none_or(|at| at > now_ms));
        let mut verifiers: Vec<Verifier> = rows.iter().filter_map(verifier).collect();
        let (signer_kid, private_der, public_raw) = match configured {
            Some(key) => (&key.kid, &key.private_pkcs8_der, key.public_raw),
            None => {
                let row = rows
                    .iter()
                    .filter(|row| row.retired_at.is_none() && !row.private_key.is_empty())
                    .max_by(|a, b| (a.created_at, &a.kid).cmp(&(b.created_at, &b.kid)))
                    .ok_or_else(|| Error::internal("no signing key is published"))?;
                let public_raw = verifiers
                    .iter()
                    .find(|v| v.kid == row.kid)
                    .ok_or_else(|| Error::internal(format!("signing key {} is unusable", row.kid)))?
                    .public_raw;
                (&row.kid, &row.private_key, public_raw)
            }
        };
        let private = SigningKey::from_pkcs8_der(private_der)
            .map_err(|e| Error::internal(format!("signing key {signer_kid}: {e}")))?;
        // A private key stored beside the wrong public key would sign tokens
        // that no one can verify.
        if private.verifying_key().to_bytes() != public_raw {
            return Err(Error::internal(format!("signing key {signer_kid}: private and public keys differ")));
        }
        if !verifiers.iter().any(|v| &v.kid == signer_kid) {
            verifiers.push(Verifier {
                kid: signer_kid.clone(),
                public_raw,
                key: DecodingKey::from_ed_der(&public_raw),
            });
        }
        Ok(Self { signer_kid: signer_kid.clone(), signer: EncodingKey::from_ed_der(private_der), verifiers })
    }

    pub fn signing_kid(&self) -> &str {
        &self.signer_kid
    }

    pub fn has_kid(&self, kid: &str) -> bool {
        self.verifier(kid).is_some()
    }

    pub fn sign(&self, claims: &AccessClaims) -> Result<String, Error> {
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = Some(self.signer_kid.clone());
        jsonwebtoken::encode(&header, claims, &self.signer).map_err(Error::internal)
    }

    /// Checks signature, `exp`/`nbf` against `now_secs` (the service's clock),
    /// `iss` and `aud`. Revocation is the caller's business.
    pub fn verify(
        &self,
        token: &str,
        issuer: &str,
        audience: &str,
        now_secs: i64,
    ) -> Result<AccessClaims, TokenRejection> {
        let signed = self.verify_signature(token)?;
        check_claims(&signed.claims, issuer, audience, now_secs)?;
        Ok(signed.claims)
    }

    /// The claims of a token one of our keys signed, checked no further.
    pub fn verify_signature(&self, token: &str) -> Result<Signed, TokenRejection> {
        if token.len() > MAX_TOKEN_BYTES {
            return Err(TokenRejection::Malformed);
        }
        let header = jsonwebtoken::decode_header(token).map_err(|_| TokenRejection::Malformed)?;
        // The algorithm is ours to choose, never the token's: honouring its
        // `alg` would let a forger HMAC-sign with our public key.
        if header.alg != Algorithm::EdDSA {
            return Err(TokenRejection::Malformed);
        }
        let verifier = header.kid.as_deref().and_then(|kid| self.verifier(kid)).ok_or(TokenRejection::UnknownKey)?;
        let claims = jsonwebtoken::decode::<AccessClaims>(token, &verifier.key, &VALIDATION)
            .map_err(|e| match e.kind() {
                ErrorKind::InvalidSignature => TokenRejection::BadSignature,
                _ => TokenRejection::Malformed,
            })?
            .claims;
        Ok(Signed { kid: verifier.kid.clone(), claims })
    }

    /// Every key that may still verify a live token.
    pub fn jwks(&self) -> Vec<JwkKey> {
        self.verifiers
            .iter()
            .map(|v| JwkKey {
                kty: "OKP".to_owned(),
                crv: "Ed25519".to_owned(),
                x: URL_SAFE_NO_PAD.encode(v.public_raw),
                kid: v.kid.clone(),
                alg: ALGORITHM.to_owned(),
                use_: "sig".to_owned(),
            })
            .collect()
    }

    fn verifier(&self, kid: &str) -> Option<&Verifier> {
        self.verifiers.iter().find(|v| v.kid == kid)
    }
}

/// A row that cannot verify is logged and left out rather than failing the
/// whole ring: the other keys must keep working.
fn verifier(row: &signing_key::Model) -> Option<Verifier> {
    let public_raw = <[u8; 32]>::try_from(row.public_key.as_slice())
        .ok()
        .filter(|raw| row.algorithm == ALGORITHM && VerifyingKey::from_bytes(raw).is_ok());
    let Some(public_raw) = public_raw else {
        tracing::warn!(kid = %row.kid, algorithm = %row.algorithm, "unusable signing key row skipped");
        return None;
    };
    Some(Verifier {
        kid: row.kid.clone(),
        public_raw,
        // jsonwebtoken's EdDSA verifier takes the raw 32-byte key here, not DER.
        key: DecodingKey::from_ed_der(&public_raw),
    })
}

/// A token whose signature verified, and the key that made it.
#[derive(Clone, Debug)]
pub struct Signed {
    pub kid: String,
    pub claims: AccessClaims,
}

/// The checks of a token's claims that depend on time and on who asks:
/// `iss`, `aud`, then `exp` and `nbf` with the leeway.
pub fn check_claims(claims: &AccessClaims, issuer: &str, audience: &str, now_secs: i64) -> Result<(), TokenRejection> {
    if claims.iss != issuer {
        return Err(TokenRejection::WrongIssuer);
    }
    if claims.aud != audience {
        return Err(TokenRejection::WrongAudience);
    }
    if now_secs >= claims.exp.saturating_add(LEEWAY_SECS) {
        return Err(TokenRejection::Expired);
    }
    if now_secs < claims.nbf.saturating_sub(LEEWAY_SECS) {
        return Err(TokenRejection::NotYetValid);
    }
    Ok(())
}

/// Signature and algorithm only: claims are checked in `verify`, against the
/// service's injectable clock rather than the system time jsonwebtoken reads.
static VALIDATION: LazyLock<Validation> = LazyLock::new(|| {
    let mut validation = Validation::new(Algorithm::EdDSA);
    validation.required_spec_claims.clear();
    validation.validate_exp = false;
    validation.validate_nbf = false;
    validation.validate_aud = false;
    validation
});

#[cfg(test)]
mod tests {
    use base64::engine::general_purpose::STANDARD;

    use super::*;

    const NOW_MS: i64 = 1_800_000_000_000;
    const NOW: i64 = NOW_MS / 1000;
    const ISS: &str = "https://identity.example";
    const AUD: &str = "identity";
    const HOUR_MS: i64 = 3_600_000;

    fn claims() -> AccessClaims {
        AccessClaims {
            iss: ISS.to_owned(),
            aud: AUD.to_owned(),
            sub: "user-1".to_owned(),
            exp: NOW + 900,
            iat: NOW,
            nbf: NOW,
            jti: "jti-1".to_owned(),
            sid: "session-1".to_owned(),
            subscription: "sub-1".to_owned(),
            role: "MANAGER".to_owned(),
            login: "alice".to_owned(),
        }
    }

    fn row(key: &NewKey, created_at: i64, retired_at: Option<i64>, expires_at: Option<i64>) -> signing_key::Model {
        signing_key::Model {
            kid: key.kid.clone(),
            algorithm: ALGORITHM.to_owned(),
            private_key: key.private_pkcs8_der.clone(),
            public_key: key.public_raw.to_vec(),
            created_at,
            retired_at,
            expires_at,
            revoked_at: None,
        }
    }

    fn ring(key: &NewKey) -> KeyRing {
        KeyRing::from_rows(vec![row(key, NOW_MS - HOUR_MS, None, None)], NOW_MS).unwrap()
    }

    fn verify(ring: &KeyRing, token: &str) -> Result<AccessClaims, TokenRejection> {
        ring.verify(token, ISS, AUD, NOW)
    }

    fn b64json(value: &serde_json::Value) -> String {
        URL_SAFE_NO_PAD.encode(serde_json::to_vec(value).unwrap())
    }

    #[test]
    fn a_signed_token_verifies_with_its_claims() {
        let key = generate_key();
        let ring = ring(&key);
        let token = ring.sign(&claims()).unwrap();

        assert_eq!(verify(&ring, &token), Ok(claims()));
        let header = jsonwebtoken::decode_header(&token).unwrap();
        assert_eq!(header.alg, Algorithm::EdDSA);
        assert_eq!(header.typ.as_deref(), Some("JWT"));
        assert_eq!(header.kid.as_deref(), Some(key.kid.as_str()));
        assert_eq!(ring.signing_kid(), key.kid);
    }

    #[test]
    fn a_tampered_payload_breaks_the_signature() {
        let ring = ring(&generate_key());
        let token = ring.sign(&claims()).unwrap();
        let parts: Vec<&str> = token.split('.').collect();
        let forged = AccessClaims { role: "ADMINISTRATOR".to_owned(), ..claims() };
        let payload = b64json(&serde_json::to_value(forged).unwrap());
        let tampered = format!("{}.{payload}.{}", parts[0], parts[2]);

        assert_eq!(verify(&ring, &tampered), Err(TokenRejection::BadSignature));
    }

    #[test]
    fn time_claims_are_checked_against_the_given_clock_with_leeway() {
        let ring = ring(&generate_key());
        let token = ring.sign(&claims()).unwrap();
        let exp = claims().exp;

        assert!(ring.verify(&token, ISS, AUD, exp + LEEWAY_SECS - 1).is_ok());
        assert_eq!(ring.verify(&token, ISS, AUD, exp + LEEWAY_SECS), Err(TokenRejection::Expired));
        assert!(ring.verify(&token, ISS, AUD, NOW - LEEWAY_SECS).is_ok());
        assert_eq!(ring.verify(&token, ISS, AUD, NOW - LEEWAY_SECS - 1), Err(TokenRejection::NotYetValid));
    }

    #[test]
    fn issuer_and_audience_must_match_exactly() {
        let ring = ring(&generate_key());
        let token = ring.sign(&claims()).unwrap();

        assert_eq!(ring.verify(&token, "https://identity.example/", AUD, NOW), Err(TokenRejection::WrongIssuer));
        assert_eq!(ring.verify(&token, ISS, "Identity", NOW), Err(TokenRejection::WrongAudience));
    }

    #[test]
    fn a_token_from_an_unknown_key_is_refused() {
        let stranger = ring(&generate_key());
        let ring = ring(&generate_key());
        let token = stranger.sign(&claims()).unwrap();

        assert_eq!(verify(&ring, &token), Err(TokenRejection::UnknownKey));
        assert!(!ring.has_kid(stranger.signing_kid()));
    }

    #[test]
    fn a_token_without_kid_is_refused() {
        let key = generate_key();
        let token = jsonwebtoken::encode(
            &Header::new(Algorithm::EdDSA),
            &claims(),
            &EncodingKey::from_ed_der(&key.private_pkcs8_der),
        )
        .unwrap();

        assert_eq!(verify(&ring(&key), &token), Err(TokenRejection::UnknownKey));
    }

    #[test]
    fn an_unsigned_alg_none_token_is_refused() {
        let key = generate_key();
        let header = serde_json::json!({"alg": "none", "typ": "JWT", "kid": key.kid});
        let payload = serde_json::to_value(claims()).unwrap();
        let token = format!("{}.{}.", b64json(&header), b64json(&payload));

        assert_eq!(verify(&ring(&key), &token), Err(TokenRejection::Malformed));
    }

    #[test]
    fn an_hmac_token_keyed_with_the_public_key_is_refused() {
        let key = generate_key();
        let mut header = Header::new(Algorithm::HS256);
        header.kid = Some(key.kid.clone());
        let ring = ring(&key);
        for secret in [key.public_raw.to_vec(), ring.jwks()[0].x.as_bytes().to_vec()] {
            let token = jsonwebtoken::encode(&header, &claims(), &EncodingKey::from_secret(&secret)).unwrap();
            assert_eq!(verify(&ring, &token), Err(TokenRejection::Malformed));
        }
    }

    #[test]
    fn truncated_and_oversized_tokens_are_malformed_without_panic() {
        let ring = ring(&generate_key());
        let token = ring.sign(&claims()).unwrap();

        assert_eq!(verify(&ring, &token[..token.len() / 2]), Err(TokenRejection::Malformed));
        for end in 0..token.len() {
            assert!(verify(&ring, &token[..end]).is_err());
        }
        let huge = format!("{token}{}", "A".repeat(1 << 20));
        assert_eq!(verify(&ring, &huge), Err(TokenRejection::Malformed));
        assert_eq!(verify(&ring, "..."), Err(TokenRejection::Malformed));
        assert_eq!(verify(&ring, ""), Err(TokenRejection::Malformed));
    }

    #[test]
    fn a_retired_key_still_verifies_while_the_newer_one_signs() {
        let old = generate_key();
        let new = generate_key();
        let old_token = ring(&old).sign(&claims()).unwrap();
        let rows = vec![
            row(&old, NOW_MS - 2 * HOUR_MS, Some(NOW_MS - HOUR_MS), Some(NOW_MS + HOUR_MS)),
            row(&new, NOW_MS - HOUR_MS, None, None),
        ];
        let ring = KeyRing::from_rows(rows, NOW_MS).unwrap();

        assert_eq!(ring.signing_kid(), new.kid);
        assert!(verify(&ring, &old_token).is_ok());
        let new_token = ring.sign(&claims()).unwrap();
        assert_eq!(jsonwebtoken::decode_header(&new_token).unwrap().kid, Some(new.kid.clone()));
    }

    #[test]
    fn an_expired_key_no_longer_verifies_or_publishes() {
        let old = generate_key();
        let new = generate_key();
        let old_token = ring(&old).sign(&claims()).unwrap();
        let rows = vec![
            row(&old, NOW_MS - 2 * HOUR_MS, Some(NOW_MS - HOUR_MS), Some(NOW_MS - 1)),
            row(&new, NOW_MS - HOUR_MS, None, None),
        ];
        let ring = KeyRing::from_rows(rows, NOW_MS).unwrap();

        assert_eq!(verify(&ring, &old_token), Err(TokenRejection::UnknownKey));
        assert!(!ring.has_kid(&old.kid));
        assert_eq!(ring.jwks().len(), 1);
    }

    #[test]
    fn a_ring_needs_a_key_that_can_sign() {
        let key = generate_key();
        let retired = row(&key, NOW_MS - HOUR_MS, Some(NOW_MS), Some(NOW_MS + HOUR_MS));
        assert!(KeyRing::from_rows(vec![retired], NOW_MS).is_err());
        assert!(KeyRing::from_rows(vec![], NOW_MS).is_err());

        let mut public_only = row(&key, NOW_MS - HOUR_MS, None, None);
        public_only.private_key.clear();
        assert!(KeyRing::from_rows(vec![public_only.clone()], NOW_MS).is_err());
        let ring = KeyRing::from_rows_with_signer(vec![public_only], NOW_MS, &key).unwrap();
        assert_eq!(ring.signing_kid(), key.kid);
        assert_eq!(ring.jwks().len(), 1);
    }

    #[test]
    fn jwks_lists_every_verifying_key() {
        let old = generate_key();
        let new = generate_key();
        let rows = vec![
            row(&old, NOW_MS - 2 * HOUR_MS, Some(NOW_MS - HOUR_MS), Some(NOW_MS + HOUR_MS)),
            row(&new, NOW_MS - HOUR_MS, None, None),
        ];
        let jwks = KeyRing::from_rows(rows, NOW_MS).unwrap().jwks();

        assert_eq!(jwks.len(), 2);
        for key in [&old, &new] {
            let jwk = jwks.iter().find(|j| j.kid == key.kid).unwrap();
            assert_eq!(URL_SAFE_NO_PAD.decode(&jwk.x).unwrap(), key.public_raw.to_vec());
            assert_eq!((&*jwk.kty, &*jwk.crv, &*jwk.alg, &*jwk.use_), ("OKP", "Ed25519", "EdDSA", "sig"));
        }
        let json = serde_json::to_value(&jwks[0]).unwrap();
        assert_eq!(json["use"], "sig");
    }

    // RFC 8037 appendix A.1 (the key) and A.3 (its thumbprint).
    const RFC8037_X: &str = "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo";
    const RFC8037_KID: &str = "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k";
    const RFC8037_PEM: &str = "-----BEGIN PRIVATE KEY-----
MC4CAQAwBQYDK2VwBCIEIJ1hsZ3v/VpguoRK9JLsLMREScVpezJpGXA7rAMcrn9g
-----END PRIVATE KEY-----
";

    #[test]
    fn kid_is_the_rfc7638_thumbprint() {
        let x: [u8; 32] = URL_SAFE_NO_PAD.decode(RFC8037_X).unwrap().try_into().unwrap();
        assert_eq!(thumbprint(&x), RFC8037_KID);
    }

    #[test]
    fn a_pem_key_keeps_its_kid_and_signs() {
        let key = key_from_pem(RFC8037_PEM).unwrap();
        assert_eq!(key.kid, RFC8037_KID);
        assert_eq!(URL_SAFE_NO_PAD.encode(key.public_raw), RFC8037_X);
        assert_eq!(key_from_pem(RFC8037_PEM).unwrap().kid, key.kid);

        let ring = ring(&key);
        assert!(verify(&ring, &ring.sign(&claims()).unwrap()).is_ok());
    }

    #[test]
    fn generated_keys_round_trip_through_pem() {
        let key = generate_key();
        let pem = format!(
            "-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----\n",
            STANDARD.encode(&key.private_pkcs8_der)
        );
        assert_eq!(key_from_pem(&pem).unwrap().kid, key.kid);
        assert_ne!(generate_key().kid, key.kid);
    }

    #[test]
    fn other_pem_keys_are_refused_with_a_clear_message() {
        let p256 = "-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgLZmJgfVq2Dg0h5kJ
N3pN+wMusPMPzVfuSLSjHV5hIxyhRANCAAQBip8Y7Il0Nq+BfWfDELmkywXFSNP7
H5GZewGybBqPh6TFqjkiXS+w9GXXdqYn2nf0UezA7AVeMY80Jtzlr/W7
-----END PRIVATE KEY-----
";
        let ed25519_public = "-----BEGIN PUBLIC KEY-----
MCowBQYDK2VwAyEAIxD3kqGZ7osBXXNV47uJCNLbz6tHTnBXE+u16i9ww/Y=
-----END PUBLIC KEY-----
";
        for pem in [p256, ed25519_public, "not a key", ""] {
            let error = key_from_pem(pem).unwrap_err();
            assert!(error.to_string().contains("not an Ed25519 private key"), "{error}");
        }
    }
}
