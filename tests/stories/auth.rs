//! Logins, lockout, sessions and tokens, told as the support pages tell them:
//! "Invalid credentials" for any wrong pair, frozen accounts after repeated
//! failures, sessions that rotate and die when stolen tokens are replayed.

use crate::common;

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use common::{Backend, auth_client, bearer, login, reason, server, tenant, try_login};
use identity::pb::{self, TokenInvalidReason};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use tonic::Code;

async fn validate(server: &common::TestServer, token: &str) -> pb::ValidateTokenResponse {
    auth_client(server)
        .await
        .validate_token(pb::ValidateTokenRequest { access_token: token.to_owned() })
        .await
        .expect("ValidateToken answers")
        .into_inner()
}

async fn unknown_login_and_wrong_password_get_the_same_answer(backend: Backend) {
    let server = server(backend);
    let t = tenant(server);
    let wrong_password = try_login(server, &t.manager_login, "not the password").await.unwrap_err();
    let unknown_login = try_login(server, &format!("{}_nobody", t.prefix), "not the password").await.unwrap_err();
    let wrong_case_login = try_login(server, &t.manager_login.to_uppercase(), &t.manager_password).await.unwrap_err();
    let wrong_case_password =
        try_login(server, &t.manager_login, &t.manager_password.to_uppercase()).await.unwrap_err();
    for status in [&wrong_password, &unknown_login, &wrong_case_login, &wrong_case_password] {
        assert_eq!(status.code(), Code::Unauthenticated);
        assert_eq!(status.message(), "Invalid credentials");
        assert_eq!(reason(status), "INVALID_CREDENTIALS");
    }
    login(server, &t.manager_login, &t.manager_password).await;
}

async fn a_session_validates_refreshes_and_dies_on_refresh_reuse(backend: Backend) {
    let server = server(backend);
    let t = tenant(server);
    let session = login(server, &t.manager_login, &t.manager_password).await;
    assert_eq!(session.token_type, "Bearer");
    assert_eq!(session.user_login, t.manager_login);

    let claims = validate(server, &session.access_token).await;
    assert!(claims.valid);
    assert_eq!(claims.user_login, t.manager_login);
    assert_eq!(claims.role(), pb::Role::Manager);
    assert_eq!(claims.session_id, session.session_id);

    // The token names its key, and JWKS publishes that key.
    let header = jsonwebtoken::decode_header(&session.access_token).unwrap();
    assert_eq!(header.alg, Algorithm::EdDSA);
    let jwks = auth_client(server).await.get_jwks(pb::GetJwksRequest {}).await.unwrap().into_inner();
    let jwk = jwks.keys.iter().find(|k| Some(&k.kid) == header.kid.as_ref()).expect("signing key in JWKS");
    assert_eq!(
        (jwk.kty.as_str(), jwk.crv.as_str(), jwk.alg.as_str(), jwk.r#use.as_str()),
        ("OKP", "Ed25519", "EdDSA", "sig")
    );

    let mut auth = auth_client(server).await;
    let rotated = auth
        .refresh(pb::RefreshRequest { refresh_token: session.refresh_token.clone() })
        .await
        .expect("first refresh rotates")
        .into_inner()
        .session
        .unwrap();
    assert_ne!(rotated.refresh_token, session.refresh_token);
    assert_eq!(rotated.session_id, session.session_id);
    assert!(validate(server, &rotated.access_token).await.valid);

    // Replaying the old refresh token is theft: the whole session is revoked.
    let replay = auth.refresh(pb::RefreshRequest { refresh_token: session.refresh_token.clone() }).await.unwrap_err();
    assert_eq!(replay.code(), Code::Unauthenticated);
    assert!(replay.message().contains("already used"), "{}", replay.message());
    let after = validate(server, &rotated.access_token).await;
    assert!(!after.valid);
    assert_eq!(after.invalid_reason(), TokenInvalidReason::Revoked);
    let newest = auth.refresh(pb::RefreshRequest { refresh_token: rotated.refresh_token }).await.unwrap_err();
    assert_eq!(newest.code(), Code::Unauthenticated, "the thief's rotated token dies with the session");
    assert_eq!(common::audit_count(server, "session.refresh_reuse", &t.manager_login, None).await, 1);

    let junk = auth.refresh(pb::RefreshRequest { refresh_token: "junk".into() }).await.unwrap_err();
    assert_eq!(junk.code(), Code::Unauthenticated);
}

/// Two tabs of one browser refreshing with the same token at once are one
/// holder, not a thief: within the grace both get tokens and the session
/// stands. After it, the old token is a replay again.
async fn refreshes_racing_within_the_grace_keep_the_session(backend: Backend) {
    let server = common::start(backend, |mut config| {
        config.tokens.refresh_reuse_grace_secs = 1;
        config
    });
    let t = tenant(&server);
    let session = login(&server, &t.manager_login, &t.manager_password).await;
    let mut auth = auth_client(&server).await;
    let refresh = |token: &str| pb::RefreshRequest { refresh_token: token.to_owned() };
    let first = auth.refresh(refresh(&session.refresh_token)).await.expect("the first tab").into_inner();
    let second = auth.refresh(refresh(&session.refresh_token)).await.expect("the second tab").into_inner();
    let (first, second) = (first.session.unwrap(), second.session.unwrap());
    assert_ne!(first.refresh_token, second.refresh_token);
    assert!(validate(&server, &first.access_token).await.valid && validate(&server, &second.access_token).await.valid);
    assert_eq!(common::audit_count(&server, "session.refresh_reuse", &t.manager_login, None).await, 0);

    tokio::time::sleep(std::time::Duration::from_millis(1300)).await;
    let replay = auth.refresh(refresh(&session.refresh_token)).await.unwrap_err();
    assert!(replay.message().contains("already used"), "{}", replay.message());
    assert!(!validate(&server, &second.access_token).await.valid, "past the grace a reuse ends the session");
}

async fn concurrent_refreshes_with_one_token_rotate_once(backend: Backend) {
    let server = server(backend);
    let t = tenant(server);
    let session = login(server, &t.manager_login, &t.manager_password).await;
    let mut calls = Vec::new();
    for _ in 0..8 {
        let mut auth = auth_client(server).await;
        let token = session.refresh_token.clone();
        calls.push(tokio::spawn(async move { auth.refresh(pb::RefreshRequest { refresh_token: token }).await }));
    }
    let mut rotated = 0;
    for call in calls {
        match call.await.unwrap() {
            Ok(_) => rotated += 1,
            Err(status) => assert_eq!(status.code(), Code::Unauthenticated),
        }
    }
    assert_eq!(rotated, 1, "exactly one concurrent refresh rotates");
    assert_eq!(common::audit_count(server, "session.refresh_reuse", &t.manager_login, None).await, 1);
}

async fn logout_ends_the_session(backend: Backend) {
    let server = server(backend);
    let t = tenant(server);
    let session = login(server, &t.manager_login, &t.manager_password).await;
    let mut auth = auth_client(server).await;
    auth.logout(bearer(pb::LogoutRequest {}, &session.access_token)).await.expect("logout");
    let after = validate(server, &session.access_token).await;
    assert_eq!((after.valid, after.invalid_reason()), (false, TokenInvalidReason::Revoked));
    let again = auth.logout(bearer(pb::LogoutRequest {}, &session.access_token)).await.unwrap_err();
    assert_eq!(again.code(), Code::Unauthenticated);
    assert!(auth.refresh(pb::RefreshRequest { refresh_token: session.refresh_token }).await.is_err());
}

async fn protected_calls_need_a_valid_bearer_token(backend: Backend) {
    let server = server(backend);
    let mut auth = auth_client(server).await;
    let missing = auth.logout(pb::LogoutRequest {}).await.unwrap_err();
    assert_eq!(missing.code(), Code::Unauthenticated);
    assert!(missing.message().contains("Bearer"), "{}", missing.message());
    let garbage = auth.logout(bearer(pb::LogoutRequest {}, "not.a.jwt")).await.unwrap_err();
    assert_eq!(garbage.code(), Code::Unauthenticated);
    let mut users = pb::users_client::UsersClient::new(server.channel().await);
    let anonymous =
        users.get_user(pb::GetUserRequest { user_login: "x".into(), ..Default::default() }).await.unwrap_err();
    assert_eq!(anonymous.code(), Code::Unauthenticated);
}

async fn fifty_concurrent_wrong_passwords_lock_the_account_exactly_once(backend: Backend) {
    let server = server(backend);
    let t = tenant(server);
    let mut attempts = Vec::new();
    for _ in 0..50 {
        let (server_login, mut auth) = (t.manager_login.clone(), auth_client(server).await);
        attempts.push(tokio::spawn(async move {
            auth.login(pb::LoginRequest { user_login: server_login, password: "wrong password".into() }).await
        }));
    }
    for attempt in attempts {
        let status = attempt.await.unwrap().unwrap_err();
        assert_eq!(status.message(), "Invalid credentials", "a wrong password always gets the same answer");
    }
    // Locked, the right password gets the wrong one's answer: no oracle left.
    assert_locked_like_a_wrong_password(server, &t.manager_login, &t.manager_password).await;

    assert_eq!(common::audit_count(server, "user.lockout", &t.manager_login, None).await, 1, "locked exactly once");
    assert_eq!(
        common::audit_count(server, "auth.login", &t.manager_login, Some("FAILURE")).await,
        52,
        "every attempt audited: fifty guesses, then the right and a wrong password above"
    );
    let store = common::store(server).await;
    let user = identity::store::users::find_by_login(store.connection(), &t.manager_login).await.unwrap().unwrap();
    assert_eq!(
        (user.status, user.status_reason),
        (identity::domain::UserStatus::Inactive, Some(identity::domain::StatusReason::Locked))
    );
    assert_eq!(user.failed_logins, 5, "attempts on an INACTIVE account count no further");
    use sea_orm::{ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter};
    let notices = identity::store::entities::email_outbox::Entity::find()
        .filter(identity::store::entities::email_outbox::Column::UserId.eq(user.id.clone()))
        .filter(identity::store::entities::email_outbox::Column::Kind.eq("account_locked"))
        .count(store.connection())
        .await
        .unwrap();
    assert_eq!(notices, 1, "one 'your account was locked' email");
}

async fn fifty_concurrent_correct_logins_never_lock(backend: Backend) {
    let server = server(backend);
    let t = tenant(server);
    let mut attempts = Vec::new();
    for _ in 0..50 {
        let (user, password, mut auth) =
            (t.manager_login.clone(), t.manager_password.clone(), auth_client(server).await);
        attempts.push(tokio::spawn(async move { auth.login(pb::LoginRequest { user_login: user, password }).await }));
    }
    for attempt in attempts {
        attempt.await.unwrap().expect("every correct login succeeds");
    }
    login(server, &t.manager_login, &t.manager_password).await;
}

async fn a_success_resets_the_failure_count(backend: Backend) {
    let server = server(backend);
    let t = tenant(server);
    for _ in 0..4 {
        try_login(server, &t.manager_login, "wrong").await.unwrap_err();
    }
    login(server, &t.manager_login, &t.manager_password).await;
    for _ in 0..4 {
        try_login(server, &t.manager_login, "wrong").await.unwrap_err();
    }
    login(server, &t.manager_login, &t.manager_password).await;
    for _ in 0..5 {
        try_login(server, &t.manager_login, "wrong").await.unwrap_err();
    }
    assert_locked_like_a_wrong_password(server, &t.manager_login, &t.manager_password).await;
}

/// On an account locked after failed attempts, the right password and a
/// wrong one get the same answer, "Invalid credentials"; only the audit log
/// tells that the attempts met a lock.
async fn assert_locked_like_a_wrong_password(server: &common::TestServer, login: &str, password: &str) {
    use identity::store::entities::audit_event;
    use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect};
    let right = try_login(server, login, password).await.unwrap_err();
    let wrong = try_login(server, login, "certainly not the password").await.unwrap_err();
    for status in [&right, &wrong] {
        assert_eq!(
            (status.code(), status.message(), reason(status).as_str()),
            (Code::Unauthenticated, "Invalid credentials", "INVALID_CREDENTIALS")
        );
    }
    let store = common::store(server).await;
    let last_two: Vec<Option<String>> = audit_event::Entity::find()
        .filter(audit_event::Column::Action.eq("auth.login"))
        .filter(audit_event::Column::TargetLogin.eq(login))
        .order_by_desc(audit_event::Column::OccurredAt)
        .order_by_desc(audit_event::Column::Id)
        .limit(2)
        .all(store.connection())
        .await
        .unwrap()
        .into_iter()
        .map(|row| row.reason)
        .collect();
    assert_eq!(last_two, [Some("ACCOUNT_LOCKED".to_owned()), Some("ACCOUNT_LOCKED".to_owned())], "the audit tells");
}

/// Signs arbitrary claims with the server's own current key, as a forger who
/// stole nothing but wants to bend the claims cannot — except in these tests.
async fn server_signed(server: &common::TestServer, claims: serde_json::Value) -> String {
    let store = common::store(server).await;
    let keys = identity::store::keys::published(store.connection(), 0).await.unwrap();
    let key = keys
        .iter()
        .filter(|k| k.retired_at.is_none() && !k.private_key.is_empty())
        .max_by_key(|k| k.created_at)
        .expect("a signing key");
    let mut header = Header::new(Algorithm::EdDSA);
    header.kid = Some(key.kid.clone());
    jsonwebtoken::encode(&header, &claims, &EncodingKey::from_ed_der(&key.private_key)).unwrap()
}

async fn validate_token_refuses_forged_expired_and_foreign_tokens(backend: Backend) {
    let server = server(backend);
    let t = tenant(server);
    let session = login(server, &t.manager_login, &t.manager_password).await;
    let genuine: serde_json::Value = {
        let payload = session.access_token.split('.').nth(1).unwrap();
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap()
    };
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let with = |key: &str, value: serde_json::Value| {
        let mut claims = genuine.clone();
        claims[key] = value;
        claims
    };
    let cases = [
        ("expired", server_signed(server, with("exp", (now - 3600).into())).await, TokenInvalidReason::Expired),
        (
            "not yet valid",
            server_signed(server, with("nbf", (now + 3600).into())).await,
            TokenInvalidReason::NotYetValid,
        ),
        (
            "wrong audience",
            server_signed(server, with("aud", "someone-else".into())).await,
            TokenInvalidReason::WrongAudience,
        ),
        (
            "wrong issuer",
            server_signed(server, with("iss", "https://evil.example".into())).await,
            TokenInvalidReason::WrongIssuer,
        ),
    ];
    for (what, token, expected) in cases {
        let verdict = validate(server, &token).await;
        assert_eq!((verdict.valid, verdict.invalid_reason()), (false, expected), "{what}");
        assert!(verdict.user_id.is_empty(), "no claims leak out of an invalid token ({what})");
    }

    let header = jsonwebtoken::decode_header(&session.access_token).unwrap();
    let kid = header.kid.clone().unwrap();
    let parts: Vec<&str> = session.access_token.split('.').collect();

    // alg: none, with the genuine payload.
    let none_header = URL_SAFE_NO_PAD.encode(format!(r#"{{"alg":"none","typ":"JWT","kid":"{kid}"}}"#));
    let alg_none = format!("{none_header}.{}.", parts[1]);
    // HS256 keyed with the published public key (the classic confusion attack).
    let jwks = auth_client(server).await.get_jwks(pb::GetJwksRequest {}).await.unwrap().into_inner();
    let public = URL_SAFE_NO_PAD.decode(&jwks.keys.iter().find(|k| k.kid == kid).unwrap().x).unwrap();
    let mut hs_header = Header::new(Algorithm::HS256);
    hs_header.kid = Some(kid.clone());
    let hs256 = jsonwebtoken::encode(&hs_header, &genuine, &EncodingKey::from_secret(&public)).unwrap();
    // Signed by a key the server never published.
    let stranger = identity::crypto::jwt::generate_key();
    let mut unknown_header = Header::new(Algorithm::EdDSA);
    unknown_header.kid = Some(stranger.kid.clone());
    let unknown_kid =
        jsonwebtoken::encode(&unknown_header, &genuine, &EncodingKey::from_ed_der(&stranger.private_pkcs8_der))
            .unwrap();
    // The genuine token with a payload that grants more.
    let forged_payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&with("role", "ADMINISTRATOR".into())).unwrap());
    let tampered = format!("{}.{forged_payload}.{}", parts[0], parts[2]);
    let truncated = session.access_token[..session.access_token.len() - 10].to_owned();
    let huge = format!("{}.{}.{}", parts[0], "A".repeat(1_000_000), parts[2]);

    for (what, token) in [
        ("alg none", alg_none),
        ("HS256 with the public key", hs256),
        ("unknown kid", unknown_kid),
        ("tampered payload", tampered),
        ("truncated", truncated),
        ("1 MB", huge),
        ("garbage", "a.b.c".to_owned()),
    ] {
        let verdict = validate(server, &token).await;
        assert!(!verdict.valid, "{what} must be refused");
        assert_ne!(verdict.invalid_reason(), TokenInvalidReason::Unspecified, "{what} has a reason");
    }
    assert!(validate(server, &session.access_token).await.valid, "the genuine token still validates");
}

async fn changing_the_password_revokes_every_session(backend: Backend) {
    let server = server(backend);
    let t = tenant(server);
    let first = login(server, &t.manager_login, &t.manager_password).await;
    let second = login(server, &t.manager_login, &t.manager_password).await;
    let mut auth = auth_client(server).await;

    let weak = auth
        .change_password(bearer(
            pb::ChangePasswordRequest {
                current_password: t.manager_password.clone(),
                new_password: "short".into(),
                captcha: None,
            },
            &first.access_token,
        ))
        .await
        .unwrap_err();
    assert_eq!(weak.code(), Code::InvalidArgument);
    assert!(weak.message().contains("12 to 128 characters"), "{}", weak.message());
    let with_login = auth
        .change_password(bearer(
            pb::ChangePasswordRequest {
                current_password: t.manager_password.clone(),
                new_password: format!("zebra {} orbit lantern", t.manager_login),
                captcha: None,
            },
            &first.access_token,
        ))
        .await
        .unwrap_err();
    assert!(with_login.message().contains("must not contain the login"), "{}", with_login.message());
    let wrong_current = auth
        .change_password(bearer(
            pb::ChangePasswordRequest {
                current_password: "nope".into(),
                new_password: "zebra kettle orbit lantern".into(),
                captcha: None,
            },
            &first.access_token,
        ))
        .await
        .unwrap_err();
    assert_eq!(wrong_current.code(), Code::InvalidArgument);
    assert!(wrong_current.message().contains("current_password is not correct"));

    let new_password = "zebra kettle orbit lantern";
    auth.change_password(bearer(
        pb::ChangePasswordRequest {
            current_password: t.manager_password.clone(),
            new_password: new_password.into(),
            captcha: None,
        },
        &first.access_token,
    ))
    .await
    .expect("password changed");
    for session in [&first, &second] {
        let verdict = validate(server, &session.access_token).await;
        assert_eq!((verdict.valid, verdict.invalid_reason()), (false, TokenInvalidReason::Revoked));
    }
    assert_eq!(
        try_login(server, &t.manager_login, &t.manager_password).await.unwrap_err().message(),
        "Invalid credentials"
    );
    login(server, &t.manager_login, new_password).await;
    assert_eq!(common::audit_count(server, "password.change", &t.manager_login, Some("SUCCESS")).await, 1);
}

async fn changing_ones_login_needs_the_password_and_a_free_name(backend: Backend) {
    let server = server(backend);
    let t = tenant(server);
    let other = tenant(server);
    let session = login(server, &t.manager_login, &t.manager_password).await;
    let mut auth = auth_client(server).await;
    let rename = |new: &str, password: &str| pb::ChangeUserLoginRequest {
        user_login: String::new(),
        new_user_login: new.to_owned(),
        current_password: password.to_owned(),
        ..Default::default()
    };

    let taken =
        auth.change_user_login(bearer(rename(&other.manager_login, &t.manager_password), &session.access_token)).await;
    assert_eq!(taken.unwrap_err().code(), Code::AlreadyExists);
    let invalid =
        auth.change_user_login(bearer(rename("no spaces allowed", &t.manager_password), &session.access_token)).await;
    let invalid = invalid.unwrap_err();
    assert_eq!(invalid.code(), Code::InvalidArgument);
    assert!(invalid.message().starts_with("new_user_login"), "{}", invalid.message());
    let no_password =
        auth.change_user_login(bearer(rename(&format!("{}_new", t.prefix), ""), &session.access_token)).await;
    assert_eq!(no_password.unwrap_err().code(), Code::InvalidArgument);

    let new_login = format!("{}_renamed", t.prefix);
    let renamed = auth
        .change_user_login(bearer(rename(&new_login, &t.manager_password), &session.access_token))
        .await
        .expect("renamed")
        .into_inner();
    assert_eq!(renamed.user_login, new_login);
    assert!(!validate(server, &session.access_token).await.valid, "renaming ends every session");
    assert_eq!(
        try_login(server, &t.manager_login, &t.manager_password).await.unwrap_err().message(),
        "Invalid credentials"
    );
    login(server, &new_login, &t.manager_password).await;
    assert_eq!(common::audit_count(server, "user.login.change", &new_login, Some("SUCCESS")).await, 1);
}

async fn audit_rows_name_the_source_address(backend: Backend) {
    let server = server(backend);
    let t = tenant(server);
    login(server, &t.manager_login, &t.manager_password).await;
    use identity::store::entities::audit_event;
    use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
    let store = common::store(server).await;
    let rows = audit_event::Entity::find()
        .filter(audit_event::Column::Action.eq("auth.login"))
        .filter(audit_event::Column::TargetLogin.eq(t.manager_login.clone()))
        .all(store.connection())
        .await
        .unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].source_ip.as_deref(), Some("127.0.0.1"));
    assert_eq!(rows[0].outcome, "SUCCESS");
}

async fn guessing_the_current_password_locks_like_failed_logins(backend: Backend) {
    let server = server(backend);
    let t = tenant(server);
    let session = login(server, &t.manager_login, &t.manager_password).await;
    let mut auth = auth_client(server).await;
    for _ in 0..5 {
        let guess = pb::ChangePasswordRequest {
            current_password: "guess".into(),
            new_password: "zebra kettle orbit lantern".into(),
            captcha: None,
        };
        let status = auth.change_password(bearer(guess, &session.access_token)).await.unwrap_err();
        assert!(status.code() == Code::InvalidArgument || status.code() == Code::Unauthenticated, "{status:?}");
    }
    assert_locked_like_a_wrong_password(server, &t.manager_login, &t.manager_password).await;
    assert_eq!(common::audit_count(server, "user.lockout", &t.manager_login, None).await, 1);
    // Five guesses, then the two refused logins just above.
    assert_eq!(common::audit_count(server, "auth.login", &t.manager_login, Some("FAILURE")).await, 7);
    let verdict = validate(server, &session.access_token).await;
    assert!(!verdict.valid, "the lockout ends the session that was guessing");
}

on_both_backends!(
    guessing_the_current_password_locks_like_failed_logins,
    unknown_login_and_wrong_password_get_the_same_answer,
    a_session_validates_refreshes_and_dies_on_refresh_reuse,
    refreshes_racing_within_the_grace_keep_the_session,
    concurrent_refreshes_with_one_token_rotate_once,
    logout_ends_the_session,
    protected_calls_need_a_valid_bearer_token,
    fifty_concurrent_wrong_passwords_lock_the_account_exactly_once,
    fifty_concurrent_correct_logins_never_lock,
    a_success_resets_the_failure_count,
    validate_token_refuses_forged_expired_and_foreign_tokens,
    changing_the_password_revokes_every_session,
    changing_ones_login_needs_the_password_and_a_free_name,
    audit_rows_name_the_source_address,
);
