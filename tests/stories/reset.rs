//! Password resets and one-time links, as the support pages tell them: a
//! Manager resets a batch; users get a link to view the new password once;
//! links survive scanners and die on first use; forgotten passwords are
//! recovered by email without telling strangers who exists.

use crate::common;
use crate::common::tools::Tool;

use std::time::{Duration, Instant};

use common::{
    Backend, MEMBER_PASSWORD, bearer, create_user, latest_link, login, login_session, member, reason, reset_client,
    server, tenant, try_login, users_client,
};
use identity::pb::{self, ResetReason, Role, UserStatus};
use tonic::Code;

async fn manager_session(server: &common::TestServer) -> (common::Tenant, String) {
    let t = tenant(server);
    let token = login_session(server, &t.manager_login, &t.manager_password).await;
    (t, token)
}

fn batch(logins: &[&str], notify_by_email: bool) -> pb::ResetPasswordsRequest {
    pb::ResetPasswordsRequest {
        user_logins: logins.iter().map(|l| (*l).to_owned()).collect(),
        all: false,
        notify_by_email,
        ..Default::default()
    }
}

async fn a_batch_of_ten_mixed_targets_gets_exactly_the_right_outcomes(backend: Backend) {
    let server = server(backend);
    let (t, token) = manager_session(server).await;
    let p = &t.prefix;
    let (r1, r2, r3) = (format!("{p}_r1"), format!("{p}_r2"), format!("{p}_r3"));
    create_user(server, &token, &r1, Role::Reader, "").await;
    create_user(server, &token, &r2, Role::Scanner, "").await;
    let r3_session = member(server, &token, &r3, Role::Auditor, "").await;
    let contact = create_user(server, &token, &format!("{p}_c"), Role::Contact, "").await.user_login;
    let deleted = create_user(server, &token, &format!("{p}_d"), Role::Reader, "").await.user_login;
    users_client(server)
        .await
        .delete_user(bearer(pb::DeleteUserRequest { user_login: deleted.clone(), ..Default::default() }, &token))
        .await
        .unwrap();
    let admin = create_user(server, &token, &format!("{p}_a"), Role::Administrator, "").await.user_login;
    let stranger = tenant(server).manager_login;
    let unknown = format!("{p}_nobody");

    let targets =
        [&r1, &r2, &r3, &contact, &deleted, &admin, &t.manager_login, &unknown, &stranger, &format!(" {r1} ")];
    let response = reset_client(server)
        .await
        .reset_passwords(bearer(batch(&targets.map(String::as_str), false), &token))
        .await
        .unwrap()
        .into_inner();
    let outcomes: Vec<(String, bool, ResetReason)> =
        response.results.iter().map(|r| (r.user_login.clone(), r.changed, r.reason())).collect();
    assert_eq!(
        outcomes,
        [
            (r1.clone(), true, ResetReason::Unspecified),
            (r2.clone(), true, ResetReason::Unspecified),
            (r3.clone(), true, ResetReason::Unspecified),
            (contact, false, ResetReason::Contact),
            (deleted, false, ResetReason::Deleted),
            (admin, true, ResetReason::Unspecified),
            (t.manager_login.clone(), false, ResetReason::Self_),
            (unknown, false, ResetReason::UnknownUser),
            (stranger, false, ResetReason::UnknownUser),
        ],
        "one result per distinct target, in request order"
    );
    for result in &response.results {
        assert_eq!(result.password.is_empty(), !result.changed, "passwords only for the changed");
        assert_eq!(result.message.is_empty(), result.changed, "a reason for a person when not changed");
        if result.changed {
            assert!(result.password.len() >= 16 && !result.password.contains("]]>"));
            login(server, &result.user_login, &result.password).await;
        }
    }
    let mut users = users_client(server).await;
    for pending in [&r1, &r2] {
        let user = users
            .get_user(bearer(pb::GetUserRequest { user_login: pending.clone(), ..Default::default() }, &token))
            .await
            .unwrap();
        assert_eq!(user.into_inner().user.unwrap().status(), UserStatus::Active, "email=0 activates {pending}");
    }
    let old =
        common::auth_client(server).await.validate_token(pb::ValidateTokenRequest { access_token: r3_session }).await;
    assert!(!old.unwrap().into_inner().valid, "a reset revokes the target's sessions");
    assert_eq!(try_login(server, &r3, MEMBER_PASSWORD).await.unwrap_err().message(), "Invalid credentials");
    assert_eq!(common::audit_count(server, "password.reset", &r1, Some("SUCCESS")).await, 1);
    assert_eq!(common::audit_count(server, "password.reset", &t.manager_login, Some("FAILURE")).await, 1);
}

async fn email_one_sends_a_link_that_shows_the_password_once(backend: Backend) {
    let server = server(backend);
    let (t, token) = manager_session(server).await;
    let target = format!("{}_viewer", t.prefix);
    create_user(server, &token, &target, Role::Reader, "").await;
    let response = reset_client(server).await.reset_passwords(bearer(batch(&[&target], true), &token)).await.unwrap();
    let result = &response.into_inner().results[0];
    assert!(result.changed && result.password.is_empty(), "notified users' passwords never come back");

    let link = latest_link(server, &target, "password_reset").await;
    let mut reset = reset_client(server).await;
    for _ in 0..5 {
        let seen =
            reset.inspect_activation(pb::InspectActivationRequest { token: link.clone() }).await.unwrap().into_inner();
        assert!(seen.valid, "inspecting never consumes");
        assert_eq!((seen.purpose(), seen.user_login.as_str()), (pb::ActivationPurpose::AdminReset, target.as_str()));
        assert!(!seen.requires_new_password);
    }
    let redeemed = reset
        .redeem_activation(pb::RedeemActivationRequest {
            token: link.clone(),
            new_password: String::new(),
            captcha: None,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(redeemed.user_login, target);
    login(server, &target, &redeemed.generated_password).await;
    let user = users_client(server)
        .await
        .get_user(bearer(pb::GetUserRequest { user_login: target.clone(), ..Default::default() }, &token))
        .await;
    assert_eq!(user.unwrap().into_inner().user.unwrap().status(), UserStatus::Active, "viewing the password activates");

    let again = reset
        .redeem_activation(pb::RedeemActivationRequest {
            token: link.clone(),
            new_password: String::new(),
            captcha: None,
        })
        .await;
    let again = again.unwrap_err();
    assert_eq!((again.code(), again.message()), (Code::FailedPrecondition, "The activation key is not valid"));
    assert_eq!(reason(&again), "ACTIVATION_KEY_USED");
    let seen = reset.inspect_activation(pb::InspectActivationRequest { token: link }).await.unwrap().into_inner();
    assert_eq!((seen.valid, seen.invalid_reason()), (false, pb::ActivationInvalidReason::Used));
}

/// New hashes this server has computed, as its `/metrics` reports them.
fn hashes_made(metrics_url: &str) -> u64 {
    // The metrics recorder is one per process and a scrape writes this server's
    // count into it before rendering: servers of this binary scrape one at a time.
    static SCRAPING: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _alone = SCRAPING.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    let scraped = common::http::curl(&[metrics_url]);
    assert_eq!(scraped.status, 200, "{}", scraped.body);
    let line = scraped.body.lines().find(|line| line.starts_with("identity_hash_pool_hashes_made "));
    line.and_then(|line| line.rsplit(' ').next()).and_then(|n| n.parse().ok()).expect("the hashes made counter")
}

async fn the_fourth_admin_reset_in_an_hour_is_throttled(backend: Backend) {
    if !common::tools::require(&[Tool::Curl]) {
        return;
    }
    // A server of its own, so that its hash count is this story's alone.
    let metrics_port = common::free_port();
    let server = &common::start(backend, move |mut config| {
        config.metrics_addr = Some(std::net::SocketAddr::from(([127, 0, 0, 1], metrics_port)));
        config
    });
    let metrics_url = format!("http://127.0.0.1:{metrics_port}/metrics");
    let (t, token) = manager_session(server).await;
    let (busy, calm) = (format!("{}_busy", t.prefix), format!("{}_calm", t.prefix));
    create_user(server, &token, &busy, Role::Reader, "").await;
    create_user(server, &token, &calm, Role::Reader, "").await;
    let mut reset = reset_client(server).await;
    for _ in 0..3 {
        let result = reset.reset_passwords(bearer(batch(&[&busy], false), &token)).await.unwrap().into_inner();
        assert!(result.results[0].changed);
    }
    let before = hashes_made(&metrics_url);
    let fourth = reset.reset_passwords(bearer(batch(&[&busy, &calm], false), &token)).await.unwrap().into_inner();
    assert_eq!((fourth.results[0].changed, fourth.results[0].reason()), (false, ResetReason::Throttled));
    assert!(fourth.results[1].changed, "other users are not affected");
    // The throttled target was refused before hashing: one hash, for `calm` alone.
    assert_eq!(hashes_made(&metrics_url) - before, 1);
    let fifth = reset.reset_passwords(bearer(batch(&[&busy], false), &token)).await.unwrap().into_inner();
    assert_eq!(fifth.results[0].reason(), ResetReason::Throttled);
    assert_eq!(hashes_made(&metrics_url) - before, 1, "a repeated throttled batch costs no argon2 work");
}

async fn twenty_concurrent_redemptions_of_one_link_succeed_once(backend: Backend) {
    let server = server(backend);
    let (t, token) = manager_session(server).await;
    let target = format!("{}_race", t.prefix);
    create_user(server, &token, &target, Role::Reader, "").await;
    reset_client(server).await.reset_passwords(bearer(batch(&[&target], true), &token)).await.unwrap();
    let link = latest_link(server, &target, "password_reset").await;
    let mut calls = Vec::new();
    for _ in 0..20 {
        let mut reset = reset_client(server).await;
        let token = link.clone();
        calls.push(tokio::spawn(async move {
            reset
                .redeem_activation(pb::RedeemActivationRequest { token, new_password: String::new(), captcha: None })
                .await
        }));
    }
    let mut passwords = Vec::new();
    for call in calls {
        match call.await.unwrap() {
            Ok(response) => passwords.push(response.into_inner().generated_password),
            Err(status) => assert_eq!(status.message(), "The activation key is not valid"),
        }
    }
    assert_eq!(passwords.len(), 1, "exactly one redemption wins");
    login(server, &target, &passwords[0]).await;
}

async fn superseded_and_expired_links_are_refused(backend: Backend) {
    let server = server(backend);
    let (t, token) = manager_session(server).await;
    let target = format!("{}_links", t.prefix);
    create_user(server, &token, &target, Role::Reader, "").await;
    let welcome = latest_link(server, &target, "welcome").await;
    let mut reset = reset_client(server).await;
    let inspect = |token: String| pb::InspectActivationRequest { token };
    assert!(reset.inspect_activation(inspect(welcome.clone())).await.unwrap().into_inner().valid);

    reset.reset_passwords(bearer(batch(&[&target], true), &token)).await.unwrap();
    let first = latest_link(server, &target, "password_reset").await;
    reset.reset_passwords(bearer(batch(&[&target], true), &token)).await.unwrap();
    let second = latest_link(server, &target, "password_reset").await;
    let superseded = reset.inspect_activation(inspect(first.clone())).await.unwrap().into_inner();
    assert_eq!((superseded.valid, superseded.invalid_reason()), (false, pb::ActivationInvalidReason::Superseded));
    let redeem = reset
        .redeem_activation(pb::RedeemActivationRequest { token: first, new_password: String::new(), captcha: None })
        .await;
    assert_eq!(reason(&redeem.unwrap_err()), "ACTIVATION_KEY_SUPERSEDED");
    let old_welcome = reset.inspect_activation(inspect(welcome)).await.unwrap().into_inner();
    assert_eq!(
        (old_welcome.valid, old_welcome.invalid_reason()),
        (false, pb::ActivationInvalidReason::Superseded),
        "a reset voids every earlier link, whatever its purpose"
    );

    // Time travel for this one link: its expiry moves into the past.
    let hash = identity::crypto::random::token_hash(&second);
    common::execute_sql(
        server,
        &format!("UPDATE activation_tokens SET expires_at = {} WHERE token_hash = '{hash}'", common::a_minute_ago_ms()),
    )
    .await;
    let expired = reset.inspect_activation(inspect(second.clone())).await.unwrap().into_inner();
    assert_eq!((expired.valid, expired.invalid_reason()), (false, pb::ActivationInvalidReason::Expired));
    let redeem = reset
        .redeem_activation(pb::RedeemActivationRequest { token: second, new_password: String::new(), captcha: None })
        .await;
    assert_eq!(redeem.unwrap_err().message(), "The activation key is not valid");
    let unknown = reset.inspect_activation(inspect("no-such-token".into())).await.unwrap().into_inner();
    assert_eq!(unknown.invalid_reason(), pb::ActivationInvalidReason::Unknown);
}

async fn a_welcome_link_lets_the_user_choose_a_password(backend: Backend) {
    let server = server(backend);
    let (t, token) = manager_session(server).await;
    let target = format!("{}_newbie", t.prefix);
    create_user(server, &token, &target, Role::Reader, "").await;
    let link = latest_link(server, &target, "welcome").await;
    let mut reset = reset_client(server).await;
    let seen =
        reset.inspect_activation(pb::InspectActivationRequest { token: link.clone() }).await.unwrap().into_inner();
    assert!(seen.requires_new_password && !seen.password_rules.is_empty());
    let weak = reset
        .redeem_activation(pb::RedeemActivationRequest {
            token: link.clone(),
            new_password: "password".into(),
            captcha: None,
        })
        .await;
    assert_eq!(weak.unwrap_err().code(), Code::InvalidArgument);
    let still =
        reset.inspect_activation(pb::InspectActivationRequest { token: link.clone() }).await.unwrap().into_inner();
    assert!(still.valid, "a refused password does not burn the link");
    let pending = try_login(server, &target, "not yet any password").await.unwrap_err();
    assert_eq!(pending.message(), "Invalid credentials");
    reset
        .redeem_activation(pb::RedeemActivationRequest {
            token: link,
            new_password: "violet canyon thunder mug".into(),
            captcha: None,
        })
        .await
        .unwrap();
    login(server, &target, "violet canyon thunder mug").await;
}

async fn forgot_password_answers_the_same_and_emails_only_the_owner(backend: Backend) {
    let server = server(backend);
    let (t, token) = manager_session(server).await;
    let p = &t.prefix;
    let (active, inactive) = (format!("{p}_active"), format!("{p}_frozen"));
    member(server, &token, &active, Role::Reader, "").await;
    member(server, &token, &inactive, Role::Reader, "").await;
    users_client(server)
        .await
        .set_user_status(bearer(
            pb::SetUserStatusRequest {
                user_login: inactive.clone(),
                status: UserStatus::Inactive.into(),
                reason: String::new(),
                ..Default::default()
            },
            &token,
        ))
        .await
        .unwrap();
    let mut reset = reset_client(server).await;
    let mut answers = Vec::new();
    for (login_name, email) in [
        (active.clone(), format!("{active}@example.com")),
        (active.clone(), "someone.else@example.com".to_owned()),
        (format!("{p}_ghost"), "ghost@example.com".to_owned()),
        (inactive.clone(), format!("{inactive}@EXAMPLE.com")),
    ] {
        let request = pb::RequestPasswordResetRequest {
            user_login: login_name,
            email,
            captcha: Some(common::solved_captcha(server).await),
        };
        answers.push(reset.request_password_reset(request).await.expect("always answered").into_inner().message);
    }
    assert!(answers.windows(2).all(|pair| pair[0] == pair[1]), "identical answers: {answers:?}");

    // The emails follow the answer.
    let deadline = Instant::now() + Duration::from_secs(10);
    while common::audit_count(server, "password.forgot", &inactive, None).await == 0 {
        assert!(Instant::now() < deadline, "the self-service reset never completed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let link = latest_link(server, &active, "forgot_password").await;
    latest_link_absent(server, &inactive, "forgot_password").await;
    reset
        .redeem_activation(pb::RedeemActivationRequest {
            token: link,
            new_password: "saffron glacier piano owl".into(),
            captcha: None,
        })
        .await
        .unwrap();
    login(server, &active, "saffron glacier piano owl").await;

    let solution = common::solved_captcha(server).await;
    let first = pb::RequestPasswordResetRequest {
        user_login: format!("{p}_x"),
        email: "x@example.com".into(),
        captcha: Some(solution.clone()),
    };
    reset.request_password_reset(first.clone()).await.unwrap();
    let replay = reset.request_password_reset(first).await.unwrap_err();
    assert_eq!(replay.code(), Code::InvalidArgument);
    assert!(replay.message().contains("already used"), "{}", replay.message());
    let unsolved = pb::RequestPasswordResetRequest {
        user_login: "x".into(),
        email: "x@example.com".into(),
        captcha: Some(pb::CaptchaSolution {
            challenge: common::solved_captcha(server).await.challenge,
            nonce: "1".into(),
        }),
    };
    // Nonce "1" almost never meets 8 bits; when it does, the request is simply answered.
    if let Err(status) = reset.request_password_reset(unsolved).await {
        assert_eq!(status.code(), Code::InvalidArgument);
    }
    let missing =
        pb::RequestPasswordResetRequest { user_login: "x".into(), email: "x@example.com".into(), captcha: None };
    assert_eq!(reset.request_password_reset(missing).await.unwrap_err().code(), Code::InvalidArgument);

    let repeated = format!("{p}_again");
    for attempt in 0..4 {
        let request = pb::RequestPasswordResetRequest {
            user_login: repeated.clone(),
            email: "again@example.com".into(),
            captcha: Some(common::solved_captcha(server).await),
        };
        let outcome = reset.request_password_reset(request).await;
        if attempt < 3 {
            outcome.unwrap();
        } else {
            assert_eq!(reason(&outcome.unwrap_err()), "THROTTLED", "3 requests per login per hour");
        }
    }
}

async fn latest_link_absent(server: &common::TestServer, login: &str, kind: &str) {
    use identity::store::entities::email_outbox;
    use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
    let store = common::store(server).await;
    let user = identity::store::users::find_by_login(store.connection(), login).await.unwrap().unwrap();
    let mails = email_outbox::Entity::find()
        .filter(email_outbox::Column::UserId.eq(user.id))
        .all(store.connection())
        .await
        .unwrap();
    assert!(!mails.iter().any(|m| m.kind == kind), "{login} must get no {kind} email");
    if kind == "forgot_password" {
        assert!(mails.iter().any(|m| m.kind == "account_inactive"), "an inactive account is told whom to ask");
    }
}

async fn a_database_failure_mid_batch_commits_nothing(backend: Backend) {
    let server = server(backend);
    let (t, token) = manager_session(server).await;
    let p = &t.prefix;
    let names = [format!("{p}_f1"), format!("{p}_f2"), format!("{p}_f3")];
    let mut ids = Vec::new();
    for name in &names {
        member(server, &token, name, Role::Reader, "").await;
        let store = common::store(server).await;
        ids.push(identity::store::users::find_by_login(store.connection(), name).await.unwrap().unwrap().id);
    }
    let victim = &ids[1];
    let trigger = format!("fail_{}", &t.prefix);
    match backend {
        Backend::Sqlite => {
            common::execute_sql(
                server,
                &format!(
                    "CREATE TRIGGER {trigger} BEFORE INSERT ON password_credentials WHEN NEW.user_id = '{victim}' \
                     BEGIN SELECT RAISE(ABORT, 'injected fault'); END"
                ),
            )
            .await
        }
        Backend::Postgres => {
            common::execute_sql(
                server,
                &format!(
                    "CREATE FUNCTION {trigger}() RETURNS trigger AS $$ BEGIN \
                     IF NEW.user_id = '{victim}' THEN RAISE EXCEPTION 'injected fault'; END IF; RETURN NEW; END $$ LANGUAGE plpgsql; \
                     CREATE TRIGGER {trigger} BEFORE INSERT OR UPDATE ON password_credentials FOR EACH ROW EXECUTE FUNCTION {trigger}();"
                ),
            )
            .await
        }
    }
    let failed = reset_client(server)
        .await
        .reset_passwords(bearer(batch(&names.iter().map(String::as_str).collect::<Vec<_>>(), false), &token))
        .await
        .unwrap_err();
    assert_eq!(failed.code(), Code::Internal);
    assert!(!failed.message().contains("injected"), "internals stay out of the answer");
    match backend {
        Backend::Sqlite => common::execute_sql(server, &format!("DROP TRIGGER {trigger}")).await,
        Backend::Postgres => {
            common::execute_sql(
                server,
                &format!("DROP TRIGGER {trigger} ON password_credentials; DROP FUNCTION {trigger}();"),
            )
            .await
        }
    }
    for name in &names {
        login(server, name, MEMBER_PASSWORD).await;
        assert_eq!(common::audit_count(server, "password.reset", name, None).await, 0, "no audit row for {name}");
    }
}

async fn the_emailed_link_arrives_over_smtp_and_works(backend: Backend) {
    if !common::tools::require(&[Tool::SmtpServer]) {
        return;
    }
    let sink = common::smtp::SmtpSink::start();
    let url = sink.url();
    let server = common::start(backend, move |mut config| {
        config.smtp_url = Some(url);
        config
    });
    let (t, token) = manager_session(&server).await;
    let target = format!("{}_mailed", t.prefix);
    create_user(&server, &token, &target, Role::Reader, "").await;
    reset_client(&server).await.reset_passwords(bearer(batch(&[&target], true), &token)).await.unwrap();
    let received = sink.wait_for(2, Duration::from_secs(20)).await;
    let reset_mail = received.iter().find(|m| m.contains("Subject: Your password was reset")).expect("the reset email");
    assert!(reset_mail.contains("Message-ID: <"), "{reset_mail}");
    let unfolded = reset_mail.replace("=\r\n", "").replace("=\n", "").replace("=3D", "=");
    let link = common::link_token(&unfolded);
    let redeemed = reset_client(&server)
        .await
        .redeem_activation(pb::RedeemActivationRequest { token: link, new_password: String::new(), captcha: None })
        .await
        .expect("the emailed link works")
        .into_inner();
    login(&server, &target, &redeemed.generated_password).await;
}

async fn hourly_reset_counts_survive_housekeeping(backend: Backend) {
    // Housekeeping every second, login throttle windows of one second: the
    // hourly reset counters must still be kept whole.
    let server = common::start(backend, |mut config| {
        config.tokens.key_reload_secs = 1;
        config.throttle.window_secs = 1;
        config
    });
    let (t, token) = manager_session(&server).await;
    let target = format!("{}_kept", t.prefix);
    create_user(&server, &token, &target, Role::Reader, "").await;
    let mut reset = reset_client(&server).await;
    for _ in 0..3 {
        assert!(
            reset.reset_passwords(bearer(batch(&[&target], false), &token)).await.unwrap().into_inner().results[0]
                .changed
        );
    }
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let fourth = reset.reset_passwords(bearer(batch(&[&target], false), &token)).await.unwrap().into_inner();
    assert_eq!(fourth.results[0].reason(), ResetReason::Throttled);
}

async fn concurrent_resets_leave_one_live_link(backend: Backend) {
    let server = server(backend);
    let (t, token) = manager_session(server).await;
    let target = format!("{}_twice", t.prefix);
    create_user(server, &token, &target, Role::Reader, "").await;
    let mut calls = Vec::new();
    for _ in 0..3 {
        let (mut reset, token, target) = (reset_client(server).await, token.clone(), target.clone());
        calls.push(tokio::spawn(async move { reset.reset_passwords(bearer(batch(&[&target], true), &token)).await }));
    }
    for call in calls {
        assert!(call.await.unwrap().expect("each batch commits").into_inner().results[0].changed);
    }
    use identity::store::entities::link;
    use sea_orm::{ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter};
    let store = common::store(server).await;
    let user = identity::store::users::find_by_login(store.connection(), &target).await.unwrap().unwrap();
    let live = link::Entity::find()
        .filter(link::Column::UserId.eq(user.id))
        .filter(link::Column::UsedAt.is_null())
        .filter(link::Column::SupersededAt.is_null())
        .count(store.connection())
        .await
        .unwrap();
    assert_eq!(live, 1, "only the newest link stays live");
}

async fn hammering_forgot_password_makes_the_captcha_harder(backend: Backend) {
    // Base 8 bits, up to 12, one more bit per doubling past 3 requests a minute.
    let server = &common::start(backend, |mut config| {
        config.captcha.max_difficulty_bits = 12;
        config.captcha.busy_requests_per_minute = 3;
        config
    });
    let mut reset = reset_client(server).await;
    let difficulty = |challenge: &pb::GetCaptchaChallengeResponse| challenge.difficulty_bits;
    let quiet = reset.get_captcha_challenge(pb::GetCaptchaChallengeRequest {}).await.unwrap().into_inner();
    assert_eq!(difficulty(&quiet), 8, "quiet: the base difficulty");

    let prefix = common::unique("h");
    for n in 0..8 {
        let request = pb::RequestPasswordResetRequest {
            user_login: format!("{prefix}_{n}"),
            email: "nobody@example.com".to_owned(),
            captcha: Some(common::solved_captcha(server).await),
        };
        reset.request_password_reset(request).await.expect("answered");
    }
    // Replicas read the rate at most once a second.
    let deadline = Instant::now() + Duration::from_secs(5);
    let hard = loop {
        let challenge = reset.get_captcha_challenge(pb::GetCaptchaChallengeRequest {}).await.unwrap().into_inner();
        if difficulty(&challenge) > 8 || Instant::now() >= deadline {
            break challenge;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    // 8 requests in the last minute against 3: two doublings past it (one when
    // a minute boundary fell in between and the sliding estimate rounded down).
    assert!((9..=10).contains(&difficulty(&hard)), "hammered: harder challenges, got {}", difficulty(&hard));
    // The harder challenge is a real one: solved, it is accepted.
    let nonce = identity::crypto::captcha::solve(&hard.challenge, hard.difficulty_bits);
    let request = pb::RequestPasswordResetRequest {
        user_login: format!("{prefix}_last"),
        email: "nobody@example.com".to_owned(),
        captcha: Some(pb::CaptchaSolution { challenge: hard.challenge, nonce: nonce.to_string() }),
    };
    reset.request_password_reset(request).await.expect("a solved harder challenge is accepted");
}

on_both_backends!(
    hammering_forgot_password_makes_the_captcha_harder,
    concurrent_resets_leave_one_live_link,
    hourly_reset_counts_survive_housekeeping,
    the_emailed_link_arrives_over_smtp_and_works,
    a_batch_of_ten_mixed_targets_gets_exactly_the_right_outcomes,
    email_one_sends_a_link_that_shows_the_password_once,
    the_fourth_admin_reset_in_an_hour_is_throttled,
    twenty_concurrent_redemptions_of_one_link_succeed_once,
    superseded_and_expired_links_are_refused,
    a_welcome_link_lets_the_user_choose_a_password,
    forgot_password_answers_the_same_and_emails_only_the_owner,
    a_database_failure_mid_batch_commits_nothing,
);
