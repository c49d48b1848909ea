//! Auth policies that need a server configured on purpose: throttling ahead
//! of lockout, a bounded hashing pool, re-hashing with new parameters, key
//! rotation, and tokens checked by an independent JWT library.

use crate::common;

use std::time::{Duration, Instant};

use common::{Backend, auth_client, login, reason, start, tenant, try_login};
use identity::{config::Argon2Config, pb};
use tonic::Code;
use tonic_types::StatusExt;

fn login_from(ip: &str, user_login: &str, password: &str) -> tonic::Request<pb::LoginRequest> {
    let mut request =
        tonic::Request::new(pb::LoginRequest { user_login: user_login.to_owned(), password: password.to_owned() });
    request.metadata_mut().insert("x-forwarded-for", ip.parse().unwrap());
    request
}

async fn guessing_is_throttled_before_it_can_lock_the_account(backend: Backend) {
    let server = start(backend, |mut config| {
        config.throttle.login_per_user = 3;
        config
    });
    let t = tenant(&server);
    for _ in 0..3 {
        assert_eq!(try_login(&server, &t.manager_login, "guess").await.unwrap_err().message(), "Invalid credentials");
    }
    let throttled = try_login(&server, &t.manager_login, "guess").await.unwrap_err();
    assert_eq!((throttled.code(), reason(&throttled).as_str()), (Code::ResourceExhausted, "THROTTLED"));
    let retry = throttled.get_error_details().retry_info().and_then(|r| r.retry_delay).expect("a retry delay");
    assert!(retry > Duration::ZERO && retry <= Duration::from_secs(60), "{retry:?}");
    // Even the right password waits: a throttled attempt never reaches the check.
    let right_but_throttled = try_login(&server, &t.manager_login, &t.manager_password).await.unwrap_err();
    assert_eq!(reason(&right_but_throttled), "THROTTLED");

    let store = common::store(&server).await;
    let user = identity::store::users::find_by_login(store.connection(), &t.manager_login).await.unwrap().unwrap();
    assert_eq!(
        (user.status, user.failed_logins),
        (identity::domain::UserStatus::Active, 3),
        "throttled attempts do not count to lockout"
    );
    // Three guesses, and the window's first throttled attempt: later ones are only counted.
    assert_eq!(common::audit_count(&server, "auth.login", &t.manager_login, Some("FAILURE")).await, 4);
}

async fn successful_logins_give_their_throttle_slot_back(backend: Backend) {
    let server = start(backend, |mut config| {
        config.throttle.login_per_user = 2;
        config
    });
    let t = tenant(&server);
    for _ in 0..10 {
        login(&server, &t.manager_login, &t.manager_password).await;
    }
}

async fn one_source_address_cannot_spray_many_accounts(backend: Backend) {
    let server = start(backend, |mut config| {
        config.throttle.login_per_ip = 3;
        config
    });
    let t = tenant(&server);
    let mut auth = auth_client(&server).await;
    for i in 0..3 {
        let status = auth.login(login_from("203.0.113.7", &format!("{}_{i}", t.prefix), "guess")).await.unwrap_err();
        assert_eq!(status.message(), "Invalid credentials");
    }
    let sprayer = auth.login(login_from("203.0.113.7", &t.manager_login, &t.manager_password)).await.unwrap_err();
    assert_eq!(reason(&sprayer), "THROTTLED");
    auth.login(login_from("203.0.113.8", &t.manager_login, &t.manager_password))
        .await
        .expect("another address is not affected");
}

async fn stored_hashes_follow_new_parameters_on_login(backend: Backend) {
    let server = start(backend, |mut config| {
        config.argon2 = Argon2Config { memory_kib: 128, ..common::cheap_argon2() };
        config
    });
    let t = tenant(&server); // hashed by the CLI with m=64
    let store = common::store(&server).await;
    let user = identity::store::users::find_by_login(store.connection(), &t.manager_login).await.unwrap().unwrap();
    let before = identity::store::users::password_hash(store.connection(), &user.id).await.unwrap().unwrap();
    assert!(before.contains("m=64,"), "{before}");
    login(&server, &t.manager_login, &t.manager_password).await;
    let after = identity::store::users::password_hash(store.connection(), &user.id).await.unwrap().unwrap();
    assert!(after.contains("m=128,"), "re-hashed with the configured parameters: {after}");
    login(&server, &t.manager_login, &t.manager_password).await;
}

async fn a_full_hashing_pool_refuses_quickly_and_recovers(backend: Backend) {
    let server = start(backend, |mut config| {
        config.hashing.workers = 1;
        config.hashing.queue = 1;
        // Unknown logins are checked against a dummy hash made with these: slow on purpose.
        config.argon2 = Argon2Config { memory_kib: 16 * 1024, iterations: 3, ..Argon2Config::default() };
        config
    });
    let mut calls = Vec::new();
    for i in 0..40 {
        let mut auth = auth_client(&server).await;
        calls.push(tokio::spawn(async move {
            auth.login(pb::LoginRequest { user_login: format!("nobody{i}"), password: "pw".into() }).await
        }));
    }
    let (mut overloaded, mut checked) = (0, 0);
    for call in calls {
        let status = call.await.unwrap().unwrap_err();
        match reason(&status).as_str() {
            "OVERLOADED" => {
                assert_eq!(status.code(), Code::ResourceExhausted);
                overloaded += 1;
            }
            "INVALID_CREDENTIALS" => checked += 1,
            other => panic!("unexpected {other}: {status:?}"),
        }
    }
    assert!(overloaded > 0 && checked > 0, "overloaded={overloaded} checked={checked}");
    let after = try_login(&server, "nobody", "pw").await.unwrap_err();
    assert_eq!(reason(&after), "INVALID_CREDENTIALS", "the pool recovers");
}

async fn old_tokens_still_verify_after_a_key_rotation(backend: Backend) {
    let server = start(backend, |mut config| {
        config.tokens.key_reload_secs = 1;
        config
    });
    let t = tenant(&server);
    let before = login(&server, &t.manager_login, &t.manager_password).await;
    let old_kid = jsonwebtoken::decode_header(&before.access_token).unwrap().kid.unwrap();

    let rotate = common::identity_cli(&["keys", "rotate"], &[("IDENTITY_DATABASE_URL", &server.database_url)], None);
    assert!(rotate.status.success(), "{}", common::stderr(&rotate));
    let new_kid =
        common::stdout(&rotate).split("new signing key ").nth(1).unwrap().split(';').next().unwrap().to_owned();
    assert_ne!(new_kid, old_kid);

    let deadline = Instant::now() + Duration::from_secs(10);
    let after = loop {
        let session = login(&server, &t.manager_login, &t.manager_password).await;
        let kid = jsonwebtoken::decode_header(&session.access_token).unwrap().kid.unwrap();
        if kid == new_kid {
            break session;
        }
        assert!(Instant::now() < deadline, "the server never picked up the new key");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let mut auth = auth_client(&server).await;
    for token in [&before.access_token, &after.access_token] {
        let verdict =
            auth.validate_token(pb::ValidateTokenRequest { access_token: token.clone() }).await.unwrap().into_inner();
        assert!(verdict.valid, "tokens of the old and the new key are both valid");
    }
    let jwks = auth.get_jwks(pb::GetJwksRequest {}).await.unwrap().into_inner();
    let kids: Vec<&str> = jwks.keys.iter().map(|k| k.kid.as_str()).collect();
    assert!(kids.contains(&old_kid.as_str()) && kids.contains(&new_kid.as_str()), "{kids:?}");

    let list = common::identity_cli(&["keys", "list"], &[("IDENTITY_DATABASE_URL", &server.database_url)], None);
    let listing = common::stdout(&list);
    assert!(
        listing.contains(&format!("{old_kid} verify-only")) && listing.contains(&format!("{new_kid} signing")),
        "{listing}"
    );
}

on_both_backends!(
    guessing_is_throttled_before_it_can_lock_the_account,
    successful_logins_give_their_throttle_slot_back,
    one_source_address_cannot_spray_many_accounts,
    stored_hashes_follow_new_parameters_on_login,
    a_full_hashing_pool_refuses_quickly_and_recovers,
    old_tokens_still_verify_after_a_key_rotation,
);

/// An independent implementation (Python's PyJWT) verifies our tokens with
/// nothing but the published JWKS.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pyjwt_verifies_tokens_with_the_published_jwks() {
    if !common::tools::require(&[common::tools::Tool::PyJwt]) {
        return;
    }
    let server = common::server(Backend::Sqlite);
    let t = tenant(server);
    let session = login(server, &t.manager_login, &t.manager_password).await;
    let jwks = auth_client(server).await.get_jwks(pb::GetJwksRequest {}).await.unwrap().into_inner();
    let keys: Vec<serde_json::Value> = jwks
        .keys
        .iter()
        .map(|k| serde_json::json!({"kty": k.kty, "crv": k.crv, "x": k.x, "kid": k.kid, "alg": k.alg, "use": k.r#use}))
        .collect();
    let script = r#"
import json, sys, jwt
jwks, token = json.loads(sys.argv[1]), sys.argv[2]
kid = jwt.get_unverified_header(token)["kid"]
key = jwt.PyJWKSet.from_dict(jwks)[kid].key
claims = jwt.decode(token, key, algorithms=["EdDSA"], audience="identity", issuer="http://127.0.0.1:8080")
print(claims["login"], claims["role"])
"#;
    let output = std::process::Command::new("python3")
        .args(["-c", script, &serde_json::json!({ "keys": keys }).to_string(), &session.access_token])
        .output()
        .unwrap();
    assert!(output.status.success(), "PyJWT refused the token: {}", String::from_utf8_lossy(&output.stderr));
    assert_eq!(String::from_utf8_lossy(&output.stdout).trim(), format!("{} MANAGER", t.manager_login));
}

async fn a_manager_renames_a_users_login_but_not_outside_their_scope(backend: Backend) {
    let server = common::server(backend);
    let t = tenant(server);
    let manager = common::login_session(server, &t.manager_login, &t.manager_password).await;
    let reader = format!("{}_old", t.prefix);
    let session = common::member(server, &manager, &reader, pb::Role::Reader, "").await;
    let mut auth = auth_client(server).await;
    let rename = pb::ChangeUserLoginRequest {
        user_login: reader.clone(),
        new_user_login: format!("{}_new", t.prefix),
        current_password: String::new(),
        ..Default::default()
    };
    let renamed = auth.change_user_login(common::bearer(rename, &manager)).await.expect("renamed").into_inner();
    assert_eq!(renamed.user_login, format!("{}_new", t.prefix));
    let verdict = auth.validate_token(pb::ValidateTokenRequest { access_token: session.clone() }).await.unwrap();
    assert!(!verdict.into_inner().valid, "the renamed user's sessions end");
    login(server, &format!("{}_new", t.prefix), common::MEMBER_PASSWORD).await;
    let back = pb::ChangeUserLoginRequest {
        user_login: t.manager_login.clone(),
        new_user_login: format!("{}_boss", t.prefix),
        current_password: String::new(),
        ..Default::default()
    };
    let reader_session = common::login_session(server, &format!("{}_new", t.prefix), common::MEMBER_PASSWORD).await;
    let denied = auth.change_user_login(common::bearer(back, &reader_session)).await.unwrap_err();
    assert_eq!(denied.code(), Code::PermissionDenied, "a Reader renames nobody else");
}

async fn subscriptions_without_chosen_passwords_generate_them(backend: Backend) {
    let server = common::server(backend);
    let operator = common::operator(server).await.1;
    let prefix = common::unique("g");
    let request = pb::CreateSubscriptionRequest {
        name: "Generated".into(),
        login_prefix: prefix.clone(),
        users_define_own_password: false,
        lockout_threshold: 0,
        manager: Some(pb::create_subscription_request::NewManager {
            user_login: format!("{prefix}_mgr"),
            email: "gen@example.com".into(),
            first_name: String::new(),
            last_name: String::new(),
        }),
    };
    pb::users_client::UsersClient::new(server.channel().await)
        .create_subscription(common::bearer(request, &operator))
        .await
        .unwrap();
    let manager = format!("{prefix}_mgr");
    let link = common::latest_link(server, &manager, "welcome").await;
    let mut reset = common::reset_client(server).await;
    let seen =
        reset.inspect_activation(pb::InspectActivationRequest { token: link.clone() }).await.unwrap().into_inner();
    assert!(!seen.requires_new_password, "this subscription generates passwords");
    let first = reset
        .redeem_activation(pb::RedeemActivationRequest { token: link, new_password: String::new(), captcha: None })
        .await
        .unwrap()
        .into_inner()
        .generated_password;
    let session = login(server, &manager, &first).await;
    let mut auth = auth_client(server).await;
    let chosen = pb::ChangePasswordRequest {
        current_password: first.clone(),
        new_password: "my own choice please".into(),
        captcha: None,
    };
    let refused = auth.change_password(common::bearer(chosen, &session.access_token)).await.unwrap_err();
    assert_eq!(refused.code(), Code::InvalidArgument);
    let generate = pb::ChangePasswordRequest { current_password: first, new_password: String::new(), captcha: None };
    let generated = auth.change_password(common::bearer(generate, &session.access_token)).await.unwrap().into_inner();
    assert!(generated.generated_password.len() >= 16);
    login(server, &manager, &generated.generated_password).await;
}

async fn a_configured_pem_key_signs_and_retires_database_keys(backend: Backend) {
    use base64::Engine;
    let first = start(backend, |config| config); // creates and signs with a database key
    let key = identity::crypto::jwt::generate_key();
    let body = base64::engine::general_purpose::STANDARD.encode(&key.private_pkcs8_der);
    let pem_path = common::scratch_dir("pem").join("signing.pem");
    std::fs::write(&pem_path, format!("-----BEGIN PRIVATE KEY-----\n{body}\n-----END PRIVATE KEY-----\n")).unwrap();
    let url = first.database_url.clone();
    let path = pem_path.clone();
    let second = common::start_with(backend, Some(url), move |mut config| {
        config.tokens.signing_key_file = Some(path);
        config
    });
    let t = tenant(&second);
    let session = login(&second, &t.manager_login, &t.manager_password).await;
    let kid = jsonwebtoken::decode_header(&session.access_token).unwrap().kid.unwrap();
    assert_eq!(kid, key.kid, "the configured key signs");
    let verdict = auth_client(&second)
        .await
        .validate_token(pb::ValidateTokenRequest { access_token: session.access_token })
        .await
        .unwrap()
        .into_inner();
    assert!(verdict.valid);
    let list = common::identity_cli(&["keys", "list"], &[("IDENTITY_DATABASE_URL", &second.database_url)], None);
    let listing = common::stdout(&list);
    assert!(listing.contains(&format!("{} signing", key.kid)), "{listing}");
    assert_eq!(listing.matches("verify-only").count(), 1, "the database key now only verifies: {listing}");
    use identity::store::keys;
    let store = common::store(&second).await;
    let published = keys::published(store.connection(), 0).await.unwrap();
    let pinned = published.iter().find(|k| k.kid == key.kid).unwrap();
    assert!(pinned.private_key.is_empty(), "the private key stays in the file");
}

async fn the_password_policy_is_configurable(backend: Backend) {
    let server = start(backend, |mut config| {
        config.password_policy.min_length = 24;
        config
    });
    let t = tenant(&server);
    let session = login(&server, &t.manager_login, &t.manager_password).await;
    let mut auth = auth_client(&server).await;
    let short = pb::ChangePasswordRequest {
        current_password: t.manager_password.clone(),
        new_password: "zebra kettle orbit lamp".into(),
        captcha: None,
    };
    let refused = auth.change_password(common::bearer(short, &session.access_token)).await.unwrap_err();
    assert!(refused.message().contains("24 to 128 characters"), "{}", refused.message());
    let long = pb::ChangePasswordRequest {
        current_password: t.manager_password.clone(),
        new_password: "zebra kettle orbit lantern".into(),
        captcha: None,
    };
    auth.change_password(common::bearer(long, &session.access_token)).await.expect("long enough");
}

on_both_backends!(
    the_password_policy_is_configurable,
    a_manager_renames_a_users_login_but_not_outside_their_scope,
    subscriptions_without_chosen_passwords_generate_them,
    a_configured_pem_key_signs_and_retires_database_keys,
);
