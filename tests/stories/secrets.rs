//! Secrets at rest: whoever reads the database (a backup, a dump) finds no
//! usable credential; the data key rotates while the service serves, and a
//! missing one stops the start by name; a leaked signing key is withdrawn
//! from every replica within the revocation bound.

use std::{
    path::Path,
    time::{Duration, Instant},
};

use identity::pb;

use crate::common::{
    self, Backend, MEMBER_PASSWORD, TestServer, bearer,
    second_factor::{self as tokens},
    tools::Tool,
};

/// Every file of the SQLite database (the main file, its WAL and shared
/// memory), or a `pg_dump` of the PostgreSQL one. None: pg_dump is missing
/// (skipped locally, a failure under CI).
fn dump(backend: Backend, server: &TestServer) -> Option<Vec<u8>> {
    match backend {
        Backend::Sqlite => {
            let mut bytes = Vec::new();
            for entry in std::fs::read_dir(&server.dir).unwrap().flatten() {
                if entry.file_name().to_string_lossy().starts_with("identity.db") {
                    bytes.extend(std::fs::read(entry.path()).unwrap());
                }
            }
            assert!(bytes.len() > 4096, "the database files were read");
            Some(bytes)
        }
        Backend::Postgres => {
            if !common::tools::require(&[Tool::PgDump]) {
                return None;
            }
            let output =
                std::process::Command::new("pg_dump").arg("--dbname").arg(&server.database_url).output().unwrap();
            assert!(output.status.success(), "pg_dump: {}", String::from_utf8_lossy(&output.stderr));
            Some(output.stdout)
        }
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && haystack.windows(needle.len()).any(|window| window == needle)
}

async fn refresh(server: &TestServer, refresh_token: &str) -> pb::Session {
    let response = common::auth_client(server)
        .await
        .refresh(pb::RefreshRequest { refresh_token: refresh_token.to_owned() })
        .await
        .unwrap()
        .into_inner();
    response.session.expect("a new session")
}

async fn emailed_reset(server: &TestServer, manager: &str, login: &str) -> String {
    let request = pb::ResetPasswordsRequest {
        user_logins: vec![login.to_owned()],
        all: false,
        notify_by_email: true,
        ..Default::default()
    };
    common::reset_client(server).await.reset_passwords(bearer(request, manager)).await.unwrap();
    common::latest_link(server, login, "password_reset").await
}

async fn a_dump_of_the_database_reveals_no_credential(backend: Backend) {
    let server = common::start(backend, |config| config);
    let t = common::tenant(&server);
    let p = &t.prefix;
    // (what, the secret) for every credential the scenario makes.
    let mut secrets: Vec<(String, Vec<u8>)> = vec![
        ("chosen Manager password".into(), t.manager_password.clone().into()),
        ("chosen member password".into(), MEMBER_PASSWORD.into()),
    ];
    let manager = common::login(&server, &t.manager_login, &t.manager_password).await;
    let renewed = refresh(&server, &manager.refresh_token).await;
    secrets.push(("refresh token (renewed)".into(), renewed.refresh_token.clone().into()));
    let token = &renewed.access_token;

    // A welcome link left live, and one redeemed by a member who then signs in.
    let pending = format!("{p}_pending");
    common::create_user(&server, token, &pending, pb::Role::Reader, "").await;
    secrets.push(("live welcome link".into(), common::latest_link(&server, &pending, "welcome").await.into()));
    let reader = format!("{p}_reader");
    common::member(&server, token, &reader, pb::Role::Reader, "").await;
    let session = common::login(&server, &reader, MEMBER_PASSWORD).await;
    secrets.push(("refresh token".into(), session.refresh_token.into()));

    // Admin resets by email (email=1): one link left live, one redeemed for its generated password.
    let emailed = format!("{p}_emailed");
    common::member(&server, token, &emailed, pb::Role::Reader, "").await;
    secrets.push(("live reset link".into(), emailed_reset(&server, token, &emailed).await.into()));
    let shown = format!("{p}_shown");
    common::member(&server, token, &shown, pb::Role::Reader, "").await;
    let link = emailed_reset(&server, token, &shown).await;
    let redeemed = common::reset_client(&server)
        .await
        .redeem_activation(pb::RedeemActivationRequest { token: link, new_password: String::new(), captcha: None })
        .await
        .unwrap()
        .into_inner();
    assert!(!redeemed.generated_password.is_empty(), "the link shows a generated password");
    let session = common::login(&server, &shown, &redeemed.generated_password).await;
    secrets.push(("password shown once by a link".into(), redeemed.generated_password.into()));
    secrets.push(("refresh token".into(), session.refresh_token.into()));
    // An admin reset that hands the password back.
    let returned = format!("{p}_returned");
    common::member(&server, token, &returned, pb::Role::Reader, "").await;
    secrets.push((
        "password shown once to the Manager".into(),
        common::reset_password(&server, token, &returned).await.into(),
    ));

    // Forgot password: the link waits in the outbox.
    let request = pb::RequestPasswordResetRequest {
        user_login: reader.clone(),
        email: format!("{reader}@example.com"),
        captcha: Some(common::solved_captcha(&server).await),
    };
    common::reset_client(&server).await.request_password_reset(request).await.unwrap();
    common::await_mail(&server, &reader, "forgot_password").await;
    secrets.push((
        "live forgot-password link".into(),
        common::latest_link(&server, &reader, "forgot_password").await.into(),
    ));

    // A token assigned, a PIN set, a session from it.
    let holder = format!("{p}_holder");
    common::member(&server, token, &holder, pb::Role::Reader, "").await;
    let assigned = common::users_client(&server)
        .await
        .assign_token(bearer(pb::AssignTokenRequest { user_login: holder.clone(), ..Default::default() }, token))
        .await
        .unwrap()
        .into_inner();
    let base32 = assigned.otpauth_uri.split("secret=").nth(1).unwrap().split('&').next().unwrap().to_owned();
    let totp = tokens::token_from_uri(&assigned.otpauth_uri);
    let challenge = tokens::start(&server, &holder, MEMBER_PASSWORD).await;
    let next = tokens::submit(&server, &challenge, &totp.code(0)).await.unwrap().result;
    let Some(pb::submit_passcode_response::Result::Challenge(new_pin)) = next else { panic!("expected NEW_PIN") };
    let pin = "90817263";
    let session = tokens::set_pin(&server, &new_pin, pin).await.unwrap();
    secrets.extend([
        ("TOTP secret (base32)".into(), base32.clone().into_bytes()),
        ("TOTP secret (base32, lower case)".into(), base32.to_lowercase().into_bytes()),
        ("TOTP secret (bytes)".into(), totp.secret.clone()),
        ("PIN".into(), pin.into()),
        ("refresh token after the PIN".into(), session.refresh_token.into()),
    ]);

    let Some(dump) = dump(backend, &server) else { return };
    let found: Vec<&str> =
        secrets.iter().filter(|(_, secret)| contains(&dump, secret)).map(|(what, _)| what.as_str()).collect();
    assert!(found.is_empty(), "the database reveals: {found:?}");
    // The search would have found them: the dump holds what is not secret.
    assert!(contains(&dump, holder.as_bytes()) && contains(&dump, format!("{reader}@example.com").as_bytes()));
}

/// A key file as the operator writes one.
fn write_key(dir: &Path, id: &str) {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join(id), identity::crypto::data_keys::generate_key_text()).unwrap();
}

async fn the_data_key_rotates_while_serving_and_a_missing_one_is_named(backend: Backend) {
    let keys = common::scratch_dir("data-keys");
    write_key(&keys, "k1");
    let with_keys = |dir: std::path::PathBuf, current: &'static str| {
        move |mut config: identity::config::Config| {
            config.data_keys.dir = Some(dir);
            config.data_keys.current = Some(current.to_owned());
            config
        }
    };
    let first = common::start(backend, with_keys(keys.clone(), "k1"));
    let (login, _manager, totp) = tokens::enrolled(&first, "rotated").await;
    let store = common::store(&first).await;
    let rows = identity::store::secrets::rows_per_key(store.connection()).await.unwrap();
    assert_eq!(rows.keys().collect::<Vec<_>>(), [&Some("k1".to_owned())], "every secret is sealed under k1");

    // k2 joins the folder; a replica that encrypts with it serves beside the first.
    write_key(&keys, "k2");
    let second = common::start_with(backend, Some(first.database_url.clone()), with_keys(keys.clone(), "k2"));
    let env = [
        ("IDENTITY_DATABASE_URL", first.database_url.as_str()),
        ("IDENTITY_DATA_KEYS__DIR", keys.to_str().unwrap()),
        ("IDENTITY_DATA_KEYS__CURRENT", "k2"),
    ];
    let output = common::identity_cli(&["keys", "rotate-data-key", "--batch", "2"], &env, None);
    let said = common::stdout(&output);
    assert!(output.status.success(), "{}", common::stderr(&output));
    assert!(said.contains("data key k1 encrypts no row: it may be removed"), "{said}");
    let rows = identity::store::secrets::rows_per_key(store.connection()).await.unwrap();
    assert_eq!(rows.keys().collect::<Vec<_>>(), [&Some("k2".to_owned())]);
    // The token still works, through the replica that holds k2.
    let challenge = tokens::start(&second, &login, MEMBER_PASSWORD).await;
    let answer = tokens::submit(&second, &challenge, &format!("2468{}", totp.code(1))).await.unwrap();
    assert!(matches!(answer.result, Some(pb::submit_passcode_response::Result::Session(_))), "{answer:?}");
    drop(first);

    // k1 can go. Without k2, no start: the error names the key.
    std::fs::remove_file(keys.join("k1")).unwrap();
    let elsewhere = common::scratch_dir("other-keys");
    write_key(&elsewhere, "k3");
    let mut config = common::test_config(&second.database_url, &second.dir);
    config.data_keys.dir = Some(elsewhere);
    let error = match identity::server::Server::build(config).await {
        Ok(_) => panic!("started without the key its rows need"),
        Err(error) => format!("{error:#}"),
    };
    assert!(error.contains("data key `k2`") && error.contains("not configured"), "{error}");
    // A file of the right name but other bytes (a key made anew) is refused too.
    let impostor = common::scratch_dir("impostor-keys");
    write_key(&impostor, "k2");
    let mut config = common::test_config(&second.database_url, &second.dir);
    config.data_keys.dir = Some(impostor);
    let error = match identity::server::Server::build(config).await {
        Ok(_) => panic!("started with another key under the same id"),
        Err(error) => format!("{error:#}"),
    };
    assert!(error.contains("`k2`") && error.contains("is not the data key that encrypted the rows"), "{error}");
}

/// The `kid` in a JWT's header.
fn kid_of(jwt: &str) -> String {
    use base64::Engine;
    let header = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(jwt.split('.').next().unwrap()).unwrap();
    serde_json::from_slice::<serde_json::Value>(&header).unwrap()["kid"].as_str().unwrap().to_owned()
}

async fn valid_on(server: &TestServer, token: &str) -> bool {
    let request = pb::ValidateTokenRequest { access_token: token.to_owned() };
    common::auth_client(server).await.validate_token(request).await.unwrap().into_inner().valid
}

async fn published_on(server: &TestServer) -> Vec<String> {
    let jwks = common::auth_client(server).await.get_jwks(pb::GetJwksRequest {}).await.unwrap().into_inner();
    jwks.keys.into_iter().map(|key| key.kid).collect()
}

async fn a_revoked_signing_key_is_refused_by_every_replica_within_the_bound(backend: Backend) {
    let a = common::start(backend, |config| config);
    let b = common::start_with(backend, Some(a.database_url.clone()), |config| config);
    let t = common::tenant(&a);
    let leaked = common::login(&a, &t.manager_login, &t.manager_password).await;
    let kid = kid_of(&leaked.access_token);
    assert!(valid_on(&a, &leaked.access_token).await && valid_on(&b, &leaked.access_token).await);
    assert!(published_on(&b).await.contains(&kid));

    let output = common::identity_cli(&["keys", "revoke", &kid], &[("IDENTITY_DATABASE_URL", &a.database_url)], None);
    assert!(output.status.success(), "{}", common::stderr(&output));
    let revoked_at = Instant::now();
    let said = common::stdout(&output);
    assert!(said.contains(&format!("signing key {kid} revoked")) && said.contains("new signing key"), "{said}");

    // Both replicas refuse the leaked key's tokens within the bound (1 s), and stop publishing it.
    let bound = Duration::from_millis(identity::config::TokenConfig::default().revocation_cache_ms);
    tokio::time::sleep(bound.saturating_sub(revoked_at.elapsed())).await;
    for replica in [&a, &b] {
        assert!(!valid_on(replica, &leaked.access_token).await, "a replica trusts a revoked key past the bound");
        assert!(!published_on(replica).await.contains(&kid), "JWKS still publishes {kid}");
    }
    // A new key signs, and every replica trusts it.
    let fresh = common::login(&b, &t.manager_login, &t.manager_password).await;
    assert_ne!(kid_of(&fresh.access_token), kid);
    assert!(valid_on(&a, &fresh.access_token).await && valid_on(&b, &fresh.access_token).await);
    // Revoking it twice says so.
    let again = common::identity_cli(&["keys", "revoke", &kid], &[("IDENTITY_DATABASE_URL", &a.database_url)], None);
    assert!(!again.status.success() && common::stderr(&again).contains("revoked already"));
}

on_both_backends!(
    a_dump_of_the_database_reveals_no_credential,
    the_data_key_rotates_while_serving_and_a_missing_one_is_named,
    a_revoked_signing_key_is_refused_by_every_replica_within_the_bound,
);
