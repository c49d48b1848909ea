//! Two replicas, one database: two real `identity serve` processes share a
//! PostgreSQL database (and, the same way, one SQLite file) and behave as
//! one service. Lockout counts attempts made on either, a refresh token
//! reused on the other replica kills the session, an activation link is
//! redeemed once whichever replica is asked, and a logout on one is honoured
//! by the other within the revocation cache's bound.

use crate::common;

use std::time::{Duration, Instant};

use common::{
    Backend, MEMBER_PASSWORD, bearer, create_user, fresh_database, latest_link, login, member, process::ServerProcess,
    reason, scratch_dir, tenant, try_login,
};
use identity::pb::{self, Role};
use tonic::Code;

/// `tokens.revocation_cache_ms` of both replicas, and how long a test waits beyond it.
const REVOCATION_CACHE_MS: u64 = 500;
const MARGIN: Duration = Duration::from_secs(3);

fn replicas(database_url: &str) -> (ServerProcess, ServerProcess) {
    let cache = REVOCATION_CACHE_MS.to_string();
    // One service, one public URL: it is also the tokens' issuer. No reuse grace:
    // the story replays a rotated refresh token on the other replica at once.
    let env = [
        ("IDENTITY_TOKENS__REVOCATION_CACHE_MS", cache.as_str()),
        ("IDENTITY_PUBLIC_URL", "https://identity.test"),
        ("IDENTITY_TOKENS__REFRESH_REUSE_GRACE_SECS", "0"),
    ];
    let a = ServerProcess::spawn(database_url, &env);
    let b = ServerProcess::spawn(database_url, &env);
    (a, b)
}

async fn two_replicas_behave_as_one(backend: Backend) {
    let database_url = fresh_database(backend, &scratch_dir("scale-out")).await;
    let (a, b) = replicas(&database_url);
    let (a, b) = (a.test_server(), b.test_server());
    let t = tenant(&a);
    let manager = login(&b, &t.manager_login, &t.manager_password).await;
    assert!(
        common::auth_client(&a)
            .await
            .validate_token(pb::ValidateTokenRequest { access_token: manager.access_token.clone() })
            .await
            .unwrap()
            .into_inner()
            .valid,
        "a token from B is valid on A: the signing keys live in the database"
    );

    // Lockout: five wrong passwords, alternating replicas, lock the account once.
    let victim = format!("{}_victim", t.prefix);
    member(&a, &manager.access_token, &victim, Role::Reader, "").await;
    for attempt in 0..5 {
        let replica = if attempt % 2 == 0 { &a } else { &b };
        let status = try_login(replica, &victim, "not the password at all").await.unwrap_err();
        assert_eq!(reason(&status), "INVALID_CREDENTIALS", "attempt {attempt}");
    }
    // Locked on both replicas: the right password is refused as a wrong one,
    // and each refusal is audited as meeting the lock.
    for replica in [&a, &b] {
        let status = try_login(replica, &victim, MEMBER_PASSWORD).await.unwrap_err();
        assert_eq!(reason(&status), "INVALID_CREDENTIALS", "locked on both replicas");
    }
    assert_eq!(common::audit_count(&a, "user.lockout", &victim, None).await, 1, "locked exactly once");
    assert_eq!(common::audit_count(&a, "auth.login", &victim, Some("FAILURE")).await, 7);
    {
        use identity::store::entities::audit_event;
        use sea_orm::{ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter};
        let store = common::store(&a).await;
        let met_the_lock = audit_event::Entity::find()
            .filter(audit_event::Column::TargetLogin.eq(victim.as_str()))
            .filter(audit_event::Column::Reason.eq("ACCOUNT_LOCKED"))
            .count(store.connection())
            .await
            .unwrap();
        assert_eq!(met_the_lock, 2, "one per replica");
    }

    // Refresh reuse: rotated on A, replayed on B, the session dies everywhere.
    let reader = format!("{}_reader", t.prefix);
    member(&a, &manager.access_token, &reader, Role::Reader, "").await;
    let first = login(&a, &reader, MEMBER_PASSWORD).await;
    let rotated = refresh(&a, &first.refresh_token).await.expect("first use rotates");
    let replay = refresh(&b, &first.refresh_token).await.unwrap_err();
    assert_eq!(replay.code(), Code::Unauthenticated);
    assert!(replay.message().contains("already used"), "{}", replay.message());
    let after = refresh(&a, &rotated.refresh_token).await.unwrap_err();
    assert_eq!(after.code(), Code::Unauthenticated, "the rotated token died with the session");
    assert_refused_within_cache(&a, &rotated.access_token).await;
    assert_refused_within_cache(&b, &rotated.access_token).await;

    // Activation: the same link sent to both replicas at once is redeemed once.
    let newcomer = format!("{}_new", t.prefix);
    create_user(&a, &manager.access_token, &newcomer, Role::Reader, "").await;
    let link = latest_link(&a, &newcomer, "welcome").await;
    let first_password = "first replica wins this race";
    let second_password = "second replica wins this race";
    let (on_a, on_b) = tokio::join!(redeem(&a, &link, first_password), redeem(&b, &link, second_password));
    let winners = [&on_a, &on_b].iter().filter(|result| result.is_ok()).count();
    assert_eq!(winners, 1, "exactly one redemption: {on_a:?} / {on_b:?}");
    let winning_password = if on_a.is_ok() { first_password } else { second_password };
    login(&b, &newcomer, winning_password).await;
    login(&a, &newcomer, winning_password).await;

    // Logout on B: A refuses the token within the revocation cache's bound.
    let session = login(&a, &reader, MEMBER_PASSWORD).await;
    assert!(validate(&b, &session.access_token).await.valid);
    common::auth_client(&b).await.logout(bearer(pb::LogoutRequest {}, &session.access_token)).await.expect("logout");
    assert_refused_within_cache(&a, &session.access_token).await;
    let call = common::users_client(&a)
        .await
        .get_user(bearer(
            pb::GetUserRequest { user_login: reader.clone(), ..Default::default() },
            &session.access_token,
        ))
        .await
        .unwrap_err();
    assert_eq!(call.code(), Code::Unauthenticated, "the bearer layer of A refuses it too");
}

async fn redeem(
    server: &common::TestServer,
    token: &str,
    password: &str,
) -> Result<tonic::Response<pb::RedeemActivationResponse>, tonic::Status> {
    common::reset_client(server)
        .await
        .redeem_activation(pb::RedeemActivationRequest {
            token: token.to_owned(),
            new_password: password.to_owned(),
            captcha: None,
        })
        .await
}

async fn refresh(server: &common::TestServer, token: &str) -> Result<pb::Session, tonic::Status> {
    common::auth_client(server)
        .await
        .refresh(pb::RefreshRequest { refresh_token: token.to_owned() })
        .await
        .map(|response| response.into_inner().session.expect("a session"))
}

async fn validate(server: &common::TestServer, token: &str) -> pb::ValidateTokenResponse {
    common::auth_client(server)
        .await
        .validate_token(pb::ValidateTokenRequest { access_token: token.to_owned() })
        .await
        .expect("ValidateToken answers")
        .into_inner()
}

/// The token stops validating no later than the cache's staleness bound (plus margin).
async fn assert_refused_within_cache(server: &common::TestServer, token: &str) {
    let deadline = Instant::now() + Duration::from_millis(REVOCATION_CACHE_MS) + MARGIN;
    loop {
        let answer = validate(server, token).await;
        if !answer.valid {
            assert_eq!(answer.invalid_reason(), pb::TokenInvalidReason::Revoked);
            return;
        }
        assert!(Instant::now() < deadline, "still valid {REVOCATION_CACHE_MS} ms after revocation");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

on_both_backends!(two_replicas_behave_as_one);
