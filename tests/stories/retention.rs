//! Data has a lifetime (DESIGN §8): a month of ordinary traffic, lived on the
//! service's own clock in seconds, leaves every table under a size set by the
//! traffic of a few days; delivered emails keep no body; once everything has
//! expired, housekeeping leaves nothing behind.

use std::{collections::BTreeMap, sync::Arc, time::Duration};

use identity::{
    clock::{AdvancingClock, Clock},
    crypto::totp,
    pb::{self, Role},
};

use crate::common::{
    self, Backend, MEMBER_PASSWORD, TestServer, auth_client, bearer, login, member, reset_client,
    second_factor::{self, Token},
    tenant,
};

/// Every table housekeeping purges, with the days a row may outlive its
/// creation under the story's settings (lifetime + grace, rounded up).
const TABLES: [(&str, i64); 8] = [
    // Sessions and their refresh tokens live `REFRESH_DAYS`.
    ("sessions", REFRESH_DAYS + 1),
    ("refresh_tokens", REFRESH_DAYS + 1),
    // Five minutes, then the grace.
    ("login_challenges", 1),
    // A day (or less, when superseded), then the grace.
    ("activation_tokens", 2),
    ("spent_nonces", 1),
    // Hourly windows at the longest.
    ("rate_counters", 1),
    ("audit_events", AUDIT_DAYS + 1),
    ("email_outbox", AUDIT_DAYS + 1),
];

const REFRESH_DAYS: i64 = 2;
const AUDIT_DAYS: i64 = 7;
const MONTH: i64 = 30;
const DAY: Duration = Duration::from_secs(86_400);

struct World {
    server: TestServer,
    clock: Arc<AdvancingClock>,
    manager_login: String,
    manager_password: String,
    /// Logs in, refreshes twice and logs out every day.
    leaver: String,
    /// Logs in and refreshes twice every day; asks for a new password by email.
    forgetful: String,
    /// Reset by the manager every day, with the link by email.
    reset_target: String,
    /// Logs in with password, PIN and tokencode every day.
    token_user: String,
    token: Token,
}

async fn a_simulated_month_leaves_every_table_under_a_fixed_size(backend: Backend) {
    let clock = AdvancingClock::new();
    let server = common::start_with_clock(backend, clock.clone(), |mut config| {
        config.tokens.refresh_ttl_secs = u64::try_from(REFRESH_DAYS).unwrap() * 86_400;
        config.retention.audit_days = u32::try_from(AUDIT_DAYS).unwrap();
        config.retention.grace_secs = 3600;
        config.retention.interval_secs = 1;
        config.retention.stale_after_secs = 3600;
        // Small batches, so that a run deletes in many statements.
        config.retention.batch_rows = 20;
        config.retention.max_batches_per_run = 1000;
        config.retention.batch_pause_ms = 0;
        config.mail.poll_interval_ms = 100;
        config.platform.status_cache_ms = 0;
        config
    });
    let world = populate(server, clock).await;

    // Day one after a run: what a day of this traffic adds to each table.
    world.clock.advance(DAY);
    purged_up_to_now(&world).await;
    let before = counts(&world.server).await;
    one_day(&world, 1).await;
    let after = counts(&world.server).await;
    let per_day: BTreeMap<&str, i64> = TABLES.iter().map(|(table, _)| (*table, after[table] - before[table])).collect();
    for (table, added) in &per_day {
        assert!(*added > 0, "a day of traffic writes to {table}: the story must exercise every table");
    }

    let mut largest = BTreeMap::new();
    for day in 2..=MONTH {
        world.clock.advance(DAY);
        if day % 5 == 0 {
            purged_up_to_now(&world).await;
        }
        one_day(&world, day).await;
        delivered(&world.server).await;
        for (table, count) in counts(&world.server).await {
            let seen = largest.entry(table).or_insert(0);
            *seen = (*seen).max(count);
        }
    }
    world.clock.advance(DAY);
    purged_up_to_now(&world).await;
    let settled = counts(&world.server).await;
    eprintln!("[{backend:?}] retention: per day {per_day:?}; after a month {settled:?}; largest seen {largest:?}");
    for (table, days) in TABLES {
        // The story waits for a run every fifth day only: up to five more days
        // may pile up before one, on a busy machine a sixth.
        let bound = per_day[table] * (days + 7);
        assert!(largest[table] <= bound, "{table} reached {} rows, over {bound}", largest[table]);
        assert!(settled[table] <= per_day[table] * (days + 1), "{table}: {} rows after a run", settled[table]);
    }
    assert_eq!(status_of(&world.server, "housekeeping").await.0, pb::ComponentState::Operational);

    // Delivered emails kept their metadata, not their bodies (the one-time links).
    let store = common::store(&world.server).await;
    let outbox = identity::store::outbox::backlog_stats(store.connection()).await.unwrap();
    assert_eq!(outbox.pending, 0, "the story waited for every delivery");
    use identity::store::entities::email_outbox;
    use sea_orm::EntityTrait;
    let mails = email_outbox::Entity::find().all(store.connection()).await.unwrap();
    assert!(!mails.is_empty());
    for mail in &mails {
        assert!(mail.sent_at.is_some(), "{} delivered", mail.id);
        assert!(mail.body_text.is_empty() && mail.body_html.is_empty(), "{} kept its body", mail.id);
        assert!(!mail.recipient.is_empty() && !mail.kind.is_empty(), "the record of delivery stays");
    }

    // A year and more later, nothing of the month is left.
    world.clock.advance(DAY * 500);
    purged_up_to_now(&world).await;
    for (table, count) in counts(&world.server).await {
        assert_eq!(count, 0, "{table} still holds rows past every lifetime");
    }
    let (_, detail) = status_of(&world.server, "housekeeping").await;
    assert!(detail.starts_with("expired data purged"), "{detail}");
}

/// A tenant with the story's four kinds of user.
async fn populate(server: TestServer, clock: Arc<AdvancingClock>) -> World {
    let t = tenant(&server);
    let manager = login(&server, &t.manager_login, &t.manager_password).await.access_token;
    let name = |suffix: &str| format!("{}_{suffix}", t.prefix);
    let (leaver, forgetful, reset_target, token_user) =
        (name("leaver"), name("forgetful"), name("reset"), name("token"));
    for user in [&leaver, &forgetful, &reset_target, &token_user] {
        member(&server, &manager, user, Role::Reader, "").await;
    }
    let mut token = second_factor::assign(&server, &manager, &token_user).await;
    token.step = step_at(&clock);
    let challenge = second_factor::start(&server, &token_user, MEMBER_PASSWORD).await;
    let next = second_factor::submit(&server, &challenge, &token.code(0)).await.expect("tokencode alone").result;
    let Some(pb::submit_passcode_response::Result::Challenge(new_pin)) = next else {
        panic!("expected NEW_PIN, got {next:?}")
    };
    second_factor::set_pin(&server, &new_pin, "2468").await.expect("PIN accepted");
    World {
        server,
        clock,
        manager_login: t.manager_login,
        manager_password: t.manager_password,
        leaver,
        forgetful,
        reset_target,
        token_user,
        token,
    }
}

/// The TOTP step of the service's clock: the simulated day, not today.
fn step_at(clock: &AdvancingClock) -> i64 {
    clock.now_ms() / 1000 / totp::STEP_SECS
}

/// One day of traffic: logins, refreshes, a logout, a reset by email, a
/// forgotten password, a login with a token.
async fn one_day(world: &World, day: i64) {
    let server = &world.server;
    let mut auth = auth_client(server).await;
    let manager = login(server, &world.manager_login, &world.manager_password).await.access_token;

    for user in [&world.leaver, &world.forgetful] {
        let mut session = login(server, user, MEMBER_PASSWORD).await;
        for _ in 0..2 {
            let refreshed = auth
                .refresh(pb::RefreshRequest { refresh_token: session.refresh_token.clone() })
                .await
                .unwrap_or_else(|status| panic!("day {day}: refresh of {user}: {status:?}"));
            session = refreshed.into_inner().session.expect("a session");
        }
        if user == &world.leaver {
            auth.logout(bearer(pb::LogoutRequest {}, &session.access_token)).await.expect("logout");
        }
    }

    let reset = pb::ResetPasswordsRequest {
        user_logins: vec![world.reset_target.clone()],
        all: false,
        notify_by_email: true,
        ..Default::default()
    };
    let results = reset_client(server).await.reset_passwords(bearer(reset, &manager)).await.unwrap().into_inner();
    assert!(results.results.iter().all(|r| r.changed), "day {day}: {results:?}");

    let mut users = common::users_client(server).await;
    let found = users
        .get_user(bearer(pb::GetUserRequest { user_login: world.forgetful.clone(), ..Default::default() }, &manager))
        .await;
    let email = found.unwrap().into_inner().user.unwrap().email;
    let forgot = pb::RequestPasswordResetRequest {
        user_login: world.forgetful.clone(),
        email,
        captcha: Some(common::solved_captcha(server).await),
    };
    reset_client(server).await.request_password_reset(forgot).await.expect("asked for a link");

    let challenge = second_factor::start(server, &world.token_user, MEMBER_PASSWORD).await;
    let passcode = format!("2468{}", totp::code_at(&world.token.secret, step_at(&world.clock)).unwrap());
    let opened = second_factor::submit(server, &challenge, &passcode).await;
    assert!(
        matches!(
            opened,
            Ok(pb::SubmitPasscodeResponse { result: Some(pb::submit_passcode_response::Result::Session(_)) })
        ),
        "day {day}: {opened:?}"
    );
}

/// Waits until every email is delivered and a housekeeping run has started
/// after the clock's latest move and succeeded.
async fn purged_up_to_now(world: &World) {
    delivered(&world.server).await;
    let store = common::store(&world.server).await;
    let conn = store.connection();
    // A run that finished after the move may have begun before it: wait for the one after.
    let mut after = world.clock.now_ms();
    let mut runs = 0;
    for _ in 0..300 {
        let run = identity::store::purge::last_run(conn, identity::app::housekeeping::CHORE).await.unwrap();
        if let Some(run) = run.filter(|run| run.last_success_at > after) {
            runs += 1;
            if runs >= 2 && !run.backlog_left {
                return;
            }
            after = run.last_success_at;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("no complete housekeeping run within 15 s");
}

/// Waits until the day's emails are delivered, so each is sent (and kept) from the day it was written.
async fn delivered(server: &TestServer) {
    let store = common::store(server).await;
    for _ in 0..200 {
        if identity::store::outbox::backlog_stats(store.connection()).await.unwrap().pending == 0 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("emails still pending after 5 s");
}

async fn counts(server: &TestServer) -> BTreeMap<&'static str, i64> {
    let store = common::store(server).await;
    let mut counts = BTreeMap::new();
    for (table, _) in TABLES {
        let statement = sea_orm::Statement::from_string(store.backend(), format!("SELECT COUNT(*) FROM {table}"));
        use sea_orm::ConnectionTrait;
        let row = store.connection().query_one_raw(statement).await.unwrap().unwrap();
        counts.insert(table, row.try_get_by_index::<i64>(0).unwrap());
    }
    counts
}

async fn status_of(server: &TestServer, component: &str) -> (pb::ComponentState, String) {
    let mut platform = pb::platform_client::PlatformClient::new(server.channel().await);
    let status = platform.get_status(pb::GetStatusRequest {}).await.unwrap().into_inner();
    let found = status.components.iter().find(|c| c.name == component).expect("the component is reported");
    (found.state(), found.detail.clone())
}

on_both_backends!(a_simulated_month_leaves_every_table_under_a_fixed_size);
