//! Forged, bent and oversized access tokens, shown both to `ValidateToken`
//! and to the bearer layer in front of every protected RPC: every one is
//! refused, none makes the service panic. The servers sign with a PEM key
//! this file made (`tokens.signing_key_file`), so it can also sign tokens
//! whose claims are wrong. And a revoked session is refused on every replica
//! within the documented staleness (`tokens.revocation_cache_ms`).

use crate::common;

use std::{
    path::PathBuf,
    time::{Duration, Instant},
};

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use common::{
    Backend, MEMBER_PASSWORD, TestServer, auth_client, bearer,
    panics::{assert_healthy, watch_panics},
    users_client,
};
use identity::{
    crypto::jwt::{NewKey, generate_key},
    pb::{self, TokenInvalidReason},
};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};
use tonic::Code;

// ---- fixtures -------------------------------------------------------------------

/// An Ed25519 key in a PKCS#8 PEM file, for `tokens.signing_key_file`.
fn key_file() -> (NewKey, PathBuf) {
    let key = generate_key();
    let body = base64::engine::general_purpose::STANDARD.encode(&key.private_pkcs8_der);
    let path = common::scratch_dir("signing-key").join("signing.pem");
    std::fs::write(&path, format!("-----BEGIN PRIVATE KEY-----\n{body}\n-----END PRIVATE KEY-----\n")).unwrap();
    (key, path)
}

/// A replica signing with the key in `pem`, on `database_url` (None: a fresh database).
fn replica(backend: Backend, database_url: Option<String>, pem: &std::path::Path) -> TestServer {
    let pem = pem.to_path_buf();
    common::start_with(backend, database_url, move |mut config| {
        config.tokens.signing_key_file = Some(pem);
        config
    })
}

/// A replica signing with a key this file holds, and a logged-in Reader of a new tenant on it.
async fn member_session(backend: Backend) -> (NewKey, TestServer, String, pb::Session) {
    let (key, pem) = key_file();
    let server = replica(backend, None, &pem);
    let t = common::tenant(&server);
    let manager = common::login(&server, &t.manager_login, &t.manager_password).await;
    let login = format!("{}_member", t.prefix);
    common::member(&server, &manager.access_token, &login, pb::Role::Reader, "").await;
    let session = common::login(&server, &login, MEMBER_PASSWORD).await;
    (key, server, login, session)
}

fn claims_of(token: &str) -> Value {
    let payload = token.split('.').nth(1).expect("a JWT");
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap()
}

fn with(claims: &Value, key: &str, value: Value) -> Value {
    let mut claims = claims.clone();
    claims[key] = value;
    claims
}

fn without(claims: &Value, key: &str) -> Value {
    let mut claims = claims.clone();
    claims.as_object_mut().unwrap().remove(key);
    claims
}

fn sign(header: &Header, claims: &Value, key: &NewKey) -> String {
    jsonwebtoken::encode(header, claims, &EncodingKey::from_ed_der(&key.private_pkcs8_der)).unwrap()
}

fn eddsa(kid: Option<&str>) -> Header {
    let mut header = Header::new(Algorithm::EdDSA);
    header.kid = kid.map(str::to_owned);
    header
}

/// A JWT assembled by hand: any header, any payload, any signature.
fn assemble(header: &Value, claims: &Value, signature: &str) -> String {
    let part = |value: &Value| URL_SAFE_NO_PAD.encode(serde_json::to_vec(value).unwrap());
    format!("{}.{}.{signature}", part(header), part(claims))
}

/// Any header over any payload bytes, with a real Ed25519 signature by `key`.
fn sign_raw(header: &Value, payload: &[u8], key: &NewKey) -> String {
    use ed25519_dalek::{Signer, SigningKey, pkcs8::DecodePrivateKey};
    let input =
        format!("{}.{}", URL_SAFE_NO_PAD.encode(serde_json::to_vec(header).unwrap()), URL_SAFE_NO_PAD.encode(payload));
    let signature = SigningKey::from_pkcs8_der(&key.private_pkcs8_der).unwrap().sign(input.as_bytes());
    format!("{input}.{}", URL_SAFE_NO_PAD.encode(signature.to_bytes()))
}

fn hmac(algorithm: Algorithm, kid: &str, claims: &Value, secret: &[u8]) -> String {
    let mut header = Header::new(algorithm);
    header.kid = Some(kid.to_owned());
    jsonwebtoken::encode(&header, claims, &EncodingKey::from_secret(secret)).unwrap()
}

/// The public key as an attacker finds it: raw, base64url (the JWKS `x`), and
/// as a PEM SubjectPublicKeyInfo, the classic key-confusion secrets.
fn public_key_forms(public_raw: &[u8; 32]) -> Vec<(&'static str, Vec<u8>)> {
    // SPKI prefix of an Ed25519 public key (RFC 8410).
    let mut spki = vec![0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00];
    spki.extend_from_slice(public_raw);
    let pem = format!(
        "-----BEGIN PUBLIC KEY-----\n{}\n-----END PUBLIC KEY-----\n",
        base64::engine::general_purpose::STANDARD.encode(&spki)
    );
    vec![
        ("raw", public_raw.to_vec()),
        ("base64url", URL_SAFE_NO_PAD.encode(public_raw).into_bytes()),
        ("PEM", pem.into_bytes()),
        ("DER", spki),
    ]
}

async fn validate(server: &TestServer, token: &str) -> pb::ValidateTokenResponse {
    auth_client(server)
        .await
        .validate_token(pb::ValidateTokenRequest { access_token: token.to_owned() })
        .await
        .expect("ValidateToken answers every token")
        .into_inner()
}

/// A protected call (the caller reading themself) with `authorization` set to `value`.
async fn protected_call(server: &TestServer, value: tonic::metadata::AsciiMetadataValue, login: &str) -> tonic::Status {
    let mut request = tonic::Request::new(pb::GetUserRequest { user_login: login.to_owned(), ..Default::default() });
    request.metadata_mut().insert("authorization", value);
    users_client(server).await.get_user(request).await.expect_err("a forged token must not pass")
}

async fn protected_with(server: &TestServer, token: &str, login: &str) -> tonic::Status {
    protected_call(server, format!("Bearer {token}").parse().expect("ASCII"), login).await
}

// ---- forged and bent tokens ------------------------------------------------------------

async fn forged_and_bent_tokens_are_refused_everywhere(backend: Backend) {
    watch_panics();
    let (key, server, login, session) = member_session(backend).await;
    let genuine = claims_of(&session.access_token);
    assert_eq!(jsonwebtoken::decode_header(&session.access_token).unwrap().kid.as_deref(), Some(key.kid.as_str()));
    let kid = key.kid.as_str();
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let parts: Vec<&str> = session.access_token.split('.').collect();
    let stranger = generate_key();
    let ended = common::login(&server, &login, MEMBER_PASSWORD).await;
    auth_client(&server).await.logout(bearer(pb::LogoutRequest {}, &ended.access_token)).await.unwrap();

    use TokenInvalidReason::*;
    // (what, token, the reason ValidateToken must give; None: any reason)
    let mut cases: Vec<(String, String, Option<TokenInvalidReason>)> = vec![
        // The algorithm is the server's choice, never the token's.
        (
            "alg none, no signature".into(),
            assemble(&json!({"alg": "none", "typ": "JWT", "kid": kid}), &genuine, ""),
            Some(Malformed),
        ),
        ("alg None, no signature".into(), assemble(&json!({"alg": "None", "kid": kid}), &genuine, ""), Some(Malformed)),
        (
            "alg none, genuine signature".into(),
            assemble(&json!({"alg": "none", "kid": kid}), &genuine, parts[2]),
            Some(Malformed),
        ),
        ("no alg".into(), assemble(&json!({"kid": kid}), &genuine, parts[2]), Some(Malformed)),
        // Keys the server does not hold.
        (
            "unknown kid, stranger's key".into(),
            sign(&eddsa(Some(&stranger.kid)), &genuine, &stranger),
            Some(UnknownKey),
        ),
        ("no kid, stranger's key".into(), sign(&eddsa(None), &genuine, &stranger), Some(UnknownKey)),
        ("our kid, stranger's key".into(), sign(&eddsa(Some(kid)), &genuine, &stranger), Some(BadSignature)),
        ("kid path traversal".into(), sign(&eddsa(Some("../../../../etc/passwd")), &genuine, &key), Some(UnknownKey)),
        ("kid SQL injection".into(), sign(&eddsa(Some("x' OR '1'='1")), &genuine, &key), Some(UnknownKey)),
        ("oversized kid".into(), sign(&eddsa(Some(&"k".repeat(4000))), &genuine, &key), None),
        // Claims bent under the server's own key.
        (
            "expired an hour ago".into(),
            sign(&eddsa(Some(kid)), &with(&genuine, "exp", json!(now - 3600)), &key),
            Some(Expired),
        ),
        (
            "expired beyond the 30 s skew".into(),
            sign(&eddsa(Some(kid)), &with(&genuine, "exp", json!(now - 45)), &key),
            Some(Expired),
        ),
        (
            "not valid for an hour".into(),
            sign(&eddsa(Some(kid)), &with(&genuine, "nbf", json!(now + 3600)), &key),
            Some(NotYetValid),
        ),
        (
            "wrong issuer".into(),
            sign(&eddsa(Some(kid)), &with(&genuine, "iss", json!("https://evil.example")), &key),
            Some(WrongIssuer),
        ),
        (
            "wrong audience".into(),
            sign(&eddsa(Some(kid)), &with(&genuine, "aud", json!("another-service")), &key),
            Some(WrongAudience),
        ),
        (
            "audience as a list".into(),
            sign(&eddsa(Some(kid)), &with(&genuine, "aud", json!(["identity", "x"])), &key),
            None,
        ),
        ("no exp".into(), sign(&eddsa(Some(kid)), &without(&genuine, "exp"), &key), Some(Malformed)),
        ("exp as text".into(), sign(&eddsa(Some(kid)), &with(&genuine, "exp", json!("never")), &key), Some(Malformed)),
        ("no session".into(), sign(&eddsa(Some(kid)), &without(&genuine, "sid"), &key), Some(Malformed)),
        (
            "a session that never existed".into(),
            sign(&eddsa(Some(kid)), &with(&genuine, "sid", json!("0190f0f0-0000-7000-8000-000000000000")), &key),
            Some(Revoked),
        ),
        ("a logged-out session".into(), ended.access_token.clone(), Some(Revoked)),
        // The genuine token, altered.
        (
            "payload granting Administrator".into(),
            format!(
                "{}.{}.{}",
                parts[0],
                URL_SAFE_NO_PAD.encode(serde_json::to_vec(&with(&genuine, "role", json!("ADMINISTRATOR"))).unwrap()),
                parts[2]
            ),
            Some(BadSignature),
        ),
        ("signature cut short".into(), session.access_token[..session.access_token.len() - 10].to_owned(), None),
        ("no signature part".into(), format!("{}.{}", parts[0], parts[1]), Some(Malformed)),
        ("header only".into(), parts[0].to_owned(), Some(Malformed)),
        ("four parts".into(), format!("{}.x", session.access_token), Some(Malformed)),
        ("payload not base64".into(), format!("{}.%%%%.{}", parts[0], parts[2]), None),
        (
            "payload not JSON, signed".into(),
            sign_raw(&json!({"alg": "EdDSA", "kid": kid}), b"not json", &key),
            Some(Malformed),
        ),
        (
            "payload not JSON, unsigned".into(),
            format!("{}.{}.{}", parts[0], URL_SAFE_NO_PAD.encode("{"), parts[2]),
            None,
        ),
        ("garbage".into(), "a.b.c".into(), Some(Malformed)),
        ("just over 8 KiB".into(), format!("{}.{}.{}", parts[0], "A".repeat(8 * 1024), parts[2]), Some(Malformed)),
        ("1 MB".into(), format!("{}.{}.{}", parts[0], "A".repeat(1_000_000), parts[2]), Some(Malformed)),
    ];
    // HMAC keyed with the public key, in every form an attacker could find it.
    let jwks = auth_client(&server).await.get_jwks(pb::GetJwksRequest {}).await.unwrap().into_inner();
    let published: [u8; 32] =
        URL_SAFE_NO_PAD.decode(&jwks.keys.iter().find(|k| k.kid == kid).unwrap().x).unwrap().try_into().unwrap();
    assert_eq!(published, key.public_raw);
    for (form, secret) in public_key_forms(&published) {
        for algorithm in [Algorithm::HS256, Algorithm::HS512] {
            cases.push((
                format!("{algorithm:?} keyed with the {form} public key"),
                hmac(algorithm, kid, &genuine, &secret),
                Some(Malformed),
            ));
        }
    }
    // A header that names its own key (embedded JWK, or a URL to fetch it from).
    let stranger_x = URL_SAFE_NO_PAD.encode(stranger.public_raw);
    for (what, extra) in [
        ("embedded jwk", json!({"jwk": {"kty": "OKP", "crv": "Ed25519", "x": stranger_x, "kid": stranger.kid}})),
        ("jku", json!({"jku": "http://127.0.0.1:9/jwks.json"})),
        ("x5u", json!({"x5u": "http://127.0.0.1:9/cert.pem"})),
    ] {
        let mut header = json!({"alg": "EdDSA", "typ": "JWT", "kid": stranger.kid});
        header.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        let token = sign_raw(&header, &serde_json::to_vec(&genuine).unwrap(), &stranger);
        cases.push((format!("{what} naming the stranger's key"), token, Some(UnknownKey)));
    }

    for (what, token, expected) in &cases {
        let verdict = validate(&server, token).await;
        assert!(!verdict.valid, "{what}: ValidateToken accepted it");
        assert_ne!(verdict.invalid_reason(), Unspecified, "{what}: no reason given");
        if let Some(expected) = expected {
            assert_eq!(verdict.invalid_reason(), *expected, "{what}");
        }
        let claims_leak =
            [&verdict.user_id, &verdict.user_login, &verdict.subscription_id, &verdict.session_id, &verdict.token_id];
        assert!(
            claims_leak.iter().all(|c| c.is_empty()) && verdict.issued_at.is_none(),
            "{what}: claims of an invalid token"
        );
        // Metadata travels as HTTP/2 headers; past the server's header limit (16 KiB)
        // the refusal comes from HTTP/2 itself, below.
        if token.len() < 12 * 1024 {
            let refused = protected_with(&server, token, &login).await;
            assert_eq!(refused.code(), Code::Unauthenticated, "{what}: {refused:?}");
            assert!(!refused.message().contains(token.as_str()), "{what}: the token is echoed");
        }
    }

    // The bearer layer's own edge cases.
    let mut edge = 0;
    for (what, value) in [
        ("no scheme", session.access_token.clone()),
        ("Basic scheme", format!("Basic {}", base64::engine::general_purpose::STANDARD.encode("a:b"))),
        ("Bearer and nothing", "Bearer ".to_owned()),
        ("Bearer and spaces", "Bearer      ".to_owned()),
        ("two tokens", format!("Bearer {} {}", session.access_token, session.access_token)),
    ] {
        let refused = protected_call(&server, value.parse().unwrap(), &login).await;
        assert_eq!(refused.code(), Code::Unauthenticated, "{what}: {refused:?}");
        edge += 1;
    }
    let no_header = users_client(&server)
        .await
        .get_user(pb::GetUserRequest { user_login: login.clone(), ..Default::default() })
        .await;
    assert_eq!(no_header.unwrap_err().code(), Code::Unauthenticated);
    // Bytes that are not text in the header (HTTP allows obs-text; it is no token).
    let obs_text = tonic::metadata::AsciiMetadataValue::try_from(b"Bearer \xff\xfe\xfd".as_slice())
        .expect("HTTP header values may carry obs-text");
    assert_eq!(protected_call(&server, obs_text, &login).await.code(), Code::Unauthenticated);
    // A 1 MB header: refused by HTTP/2 before any handler; the connection survives or is replaced.
    let huge = format!("Bearer {}.{}.{}", parts[0], "A".repeat(1_000_000), parts[2]);
    let refused = protected_call(&server, huge.parse().unwrap(), &login).await;
    assert_ne!(refused.code(), Code::Ok);
    eprintln!("[{backend:?}] 1 MB bearer header: {:?} {}", refused.code(), refused.message());
    // A 2 MiB token is over the gRPC message limit: refused before decoding.
    let over_limit = auth_client(&server)
        .await
        .validate_token(pb::ValidateTokenRequest { access_token: "A".repeat(2 * 1024 * 1024) })
        .await
        .unwrap_err();
    assert_eq!(over_limit.code(), Code::OutOfRange);
    edge += 4;

    // Nothing of that disturbed the genuine session.
    assert!(validate(&server, &session.access_token).await.valid);
    let own = users_client(&server)
        .await
        .get_user(bearer(pb::GetUserRequest { user_login: login.clone(), ..Default::default() }, &session.access_token))
        .await;
    assert_eq!(own.expect("the genuine token still works").into_inner().user.unwrap().user_login, login);
    eprintln!(
        "[{backend:?}] tokens: {} forged or bent tokens refused by ValidateToken and the bearer layer, {edge} bearer edge cases",
        cases.len()
    );
    assert_healthy(&server).await;
}

// ---- remembered signatures ------------------------------------------------------------------

/// A replica remembers the signatures it has checked (`tokens.verified_cache_entries`);
/// what it remembers must never outlive the token's own rules: the clock is
/// read again on every call, and a remembered signature covers only its own token.
async fn remembered_signatures_still_meet_the_clock(backend: Backend) {
    watch_panics();
    let (key, server, login, session) = member_session(backend).await;
    let genuine = claims_of(&session.access_token);

    // Valid for about two more seconds: `exp` 28 s ago, within the 30 s leeway.
    let exp = time::OffsetDateTime::now_utc().unix_timestamp() - 28;
    let short = sign(&eddsa(Some(&key.kid)), &with(&genuine, "exp", json!(exp)), &key);
    assert!(validate(&server, &short).await.valid);
    assert!(validate(&server, &short).await.valid, "checked again, from memory");

    // The remembered signature under a longer-lived payload is another token, and forged.
    let signature = short.rsplit('.').next().unwrap();
    let header = json!({"typ": "JWT", "alg": "EdDSA", "kid": key.kid});
    let stretched = assemble(&header, &with(&genuine, "exp", json!(exp + 3600)), signature);
    assert_eq!(validate(&server, &stretched).await.invalid_reason(), TokenInvalidReason::BadSignature);

    let expired_at = std::time::UNIX_EPOCH + Duration::from_secs(u64::try_from(exp + 30).unwrap());
    if let Ok(wait) = expired_at.duration_since(std::time::SystemTime::now()) {
        tokio::time::sleep(wait + Duration::from_millis(1100)).await;
    }
    let verdict = validate(&server, &short).await;
    assert_eq!((verdict.valid, verdict.invalid_reason()), (false, TokenInvalidReason::Expired));
    let refused = protected_with(&server, &short, &login).await;
    assert_eq!(refused.code(), Code::Unauthenticated);
    assert!(validate(&server, &session.access_token).await.valid);
    assert_healthy(&server).await;
}

// ---- revocation across replicas ------------------------------------------------------------

/// Polls `server` until `token` is refused; returns how long that took.
async fn refused_within(server: &TestServer, token: &str, bound: Duration) -> Duration {
    let started = Instant::now();
    loop {
        let verdict = validate(server, token).await;
        if !verdict.valid {
            assert_eq!(verdict.invalid_reason(), TokenInvalidReason::Revoked);
            return started.elapsed();
        }
        assert!(started.elapsed() < bound, "still accepted after {:?}", started.elapsed());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn revoked_sessions_are_refused_on_every_replica(backend: Backend) {
    watch_panics();
    let (_, pem) = key_file();
    let a = replica(backend, None, &pem);
    let b = replica(backend, Some(a.database_url.clone()), &pem);
    let staleness = Duration::from_millis(identity::config::TokenConfig::default().revocation_cache_ms);
    // The documented bound, plus a margin for a busy machine.
    let bound = staleness + Duration::from_millis(1500);
    let t = common::tenant(&a);
    let manager = common::login(&a, &t.manager_login, &t.manager_password).await;
    let login = format!("{}_member", t.prefix);
    common::member(&a, &manager.access_token, &login, pb::Role::Reader, "").await;

    // Logout on A: A refuses at once, B within the staleness bound.
    let session = common::login(&a, &login, MEMBER_PASSWORD).await;
    for replica in [&a, &b] {
        // Both replicas have now cached the session as live.
        assert!(validate(replica, &session.access_token).await.valid);
        assert_eq!(protected_with(replica, "not-a-token", &login).await.code(), Code::Unauthenticated);
    }
    auth_client(&a).await.logout(bearer(pb::LogoutRequest {}, &session.access_token)).await.unwrap();
    assert_eq!(validate(&a, &session.access_token).await.invalid_reason(), TokenInvalidReason::Revoked);
    let after_logout = refused_within(&b, &session.access_token, bound).await;
    let refused = protected_with(&b, &session.access_token, &login).await;
    assert_eq!(refused.code(), Code::Unauthenticated);
    let mut on_b = auth_client(&b).await;
    let refresh = on_b.refresh(pb::RefreshRequest { refresh_token: session.refresh_token.clone() }).await;
    assert!(refresh.is_err(), "the refresh token of an ended session is refused on B too");

    // A password change on B ends every session of the user, on A too.
    let first = common::login(&a, &login, MEMBER_PASSWORD).await;
    let second = common::login(&b, &login, MEMBER_PASSWORD).await;
    for token in [&first.access_token, &second.access_token] {
        assert!(validate(&a, token).await.valid && validate(&b, token).await.valid);
    }
    let change = pb::ChangePasswordRequest {
        current_password: MEMBER_PASSWORD.into(),
        new_password: "a different pass phrase".into(),
        captcha: None,
    };
    auth_client(&b).await.change_password(bearer(change, &second.access_token)).await.unwrap();
    let mut after_change = Duration::ZERO;
    for token in [&first.access_token, &second.access_token] {
        assert!(!validate(&b, token).await.valid, "B made the change: refused there at once");
        after_change = after_change.max(refused_within(&a, token, bound).await);
        assert_eq!(protected_with(&a, token, &login).await.code(), Code::Unauthenticated);
    }
    eprintln!(
        "[{backend:?}] revocation seen by the other replica after {} ms (logout) and {} ms (password change); \
         documented staleness {} ms",
        after_logout.as_millis(),
        after_change.as_millis(),
        staleness.as_millis()
    );
    assert_healthy(&a).await;
    assert_healthy(&b).await;
}

on_both_backends!(
    forged_and_bent_tokens_are_refused_everywhere,
    remembered_signatures_still_meet_the_clock,
    revoked_sessions_are_refused_on_every_replica
);
