//! Auth policies that need a server configured on purpose: throttling ahead
//! of lockout, a bounded hashing pool, re-hashing with new parameters, key
//! rotation, and tokens checked by an independent JWT library.

mod common;

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
    assert_eq!((user.status.as_str(), user.failed_logins), ("ACTIVE", 3), "throttled attempts do not count to lockout");
    assert_eq!(common::audit_count(&server, "auth.login", &t.manager_login, Some("FAILURE")).await, 5);
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
    let has_pyjwt = std::process::Command::new("python3")
        .args(["-c", "import jwt, cryptography"])
        .status()
        .is_ok_and(|s| s.success());
    if !has_pyjwt {
        assert!(std::env::var_os("CI").is_none(), "CI must install PyJWT (pip install 'pyjwt[crypto]')");
        eprintln!("PyJWT is not installed: skipping");
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
