//! Races against a real server, on SQLite and PostgreSQL: many callers at the
//! same instant on one account, one link, one refresh token or overlapping
//! batches. Each story says what exactly one winner, or no lost row, means.

use crate::common;

use std::{collections::HashMap, sync::Arc};

use common::{Backend, MEMBER_PASSWORD, TestServer, bearer, create_user, latest_link, member, reason, tenant};
use identity::{
    pb::{self, Role},
    store::{
        entities::{audit_event, email_outbox, rate_counter},
        users,
    },
};
use sea_orm::{ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter};
use tokio::{sync::Barrier, task::JoinSet};
use tonic::{Code, transport::Channel};

/// Runs `calls` copies of `call` at the same instant (all released by one
/// barrier) and returns their results in completion order.
async fn all_at_once<T, F, Fut>(calls: usize, call: F) -> Vec<T>
where
    T: Send + 'static,
    F: Fn(usize) -> Fut,
    Fut: Future<Output = T> + Send + 'static,
{
    let barrier = Arc::new(Barrier::new(calls));
    let mut set = JoinSet::new();
    for i in 0..calls {
        let (barrier, future) = (Arc::clone(&barrier), call(i));
        set.spawn(async move {
            barrier.wait().await;
            future.await
        });
    }
    set.join_all().await
}

async fn manager(server: &TestServer) -> (common::Tenant, String) {
    let t = tenant(server);
    let token = common::login_session(server, &t.manager_login, &t.manager_password).await;
    (t, token)
}

async fn user_row(server: &TestServer, login: &str) -> identity::store::entities::user::Model {
    let store = common::store(server).await;
    users::find_by_login(store.connection(), login).await.expect("read the user").expect("the user exists")
}

async fn outbox_count(server: &TestServer, user_id: &str, kind: &str) -> u64 {
    let store = common::store(server).await;
    email_outbox::Entity::find()
        .filter(email_outbox::Column::UserId.eq(user_id))
        .filter(email_outbox::Column::Kind.eq(kind))
        .count(store.connection())
        .await
        .expect("count outbox rows")
}

async fn audit_rows(server: &TestServer, action: &str, target_login: &str) -> Vec<audit_event::Model> {
    let store = common::store(server).await;
    audit_event::Entity::find()
        .filter(audit_event::Column::Action.eq(action))
        .filter(audit_event::Column::TargetLogin.eq(target_login))
        .all(store.connection())
        .await
        .expect("read audit rows")
}

fn tally(codes: impl IntoIterator<Item = String>) -> HashMap<String, usize> {
    let mut counts = HashMap::new();
    for code in codes {
        *counts.entry(code).or_insert(0) += 1;
    }
    counts
}

/// One login's outcome as a key for [`tally`]: `OK`, or the status code and reason.
async fn login_outcome(channel: Channel, user_login: String, password: String) -> String {
    let request = pb::LoginRequest { user_login, password };
    match pb::auth_client::AuthClient::new(channel).login(request).await {
        Ok(_) => "OK".to_owned(),
        Err(status) => format!("{:?} {}", status.code(), reason(&status)),
    }
}

const WRONG_LOGINS: usize = 200;

/// 200 wrong passwords at once on one account: it locks exactly once. The
/// hashing pool is kept small (one worker, 16 waiting, argon2 at 4 MiB) so
/// that part of the flood is turned away before the password check with
/// RESOURCE_EXHAUSTED / OVERLOADED. An *attempt* is a call that reached the
/// password check: it answers "Invalid credentials" and leaves exactly one
/// `auth.login` FAILURE row; a turned-away call leaves none.
async fn two_hundred_wrong_logins_lock_the_account_exactly_once(backend: Backend) {
    let server = common::start(backend, |mut config| {
        config.argon2.memory_kib = 4096;
        config.hashing.workers = 1;
        config.hashing.queue = 16;
        config
    });
    let (t, token) = manager(&server).await;
    let login = format!("{}_target", t.prefix);
    member(&server, &token, &login, Role::Reader, "").await;
    let channel = server.channel().await;

    let results =
        all_at_once(WRONG_LOGINS, |i| login_outcome(channel.clone(), login.clone(), format!("wrong password {i}")))
            .await;
    let counts = tally(results);
    let attempts = counts.get("Unauthenticated INVALID_CREDENTIALS").copied().unwrap_or(0);
    let overloaded = counts.get("ResourceExhausted OVERLOADED").copied().unwrap_or(0);
    eprintln!(
        "{backend:?}: {WRONG_LOGINS} wrong logins: {attempts} reached the password check, {overloaded} OVERLOADED"
    );
    assert_eq!(attempts + overloaded, WRONG_LOGINS, "only those two outcomes: {counts:?}");
    assert!(attempts >= 5, "enough attempts to reach the threshold: {counts:?}");

    let user = user_row(&server, &login).await;
    assert_eq!(
        (user.status, user.status_reason, user.failed_logins),
        (identity::domain::UserStatus::Inactive, Some(identity::domain::StatusReason::Locked), 5),
        "locked by the fifth counted failure; later ones count nothing"
    );
    assert_eq!(audit_rows(&server, "user.lockout", &login).await.len(), 1, "one lockout");
    assert_eq!(outbox_count(&server, &user.id, "account_locked").await, 1, "one lockout email");
    let failures = common::audit_count(&server, "auth.login", &login, Some("FAILURE")).await;
    assert_eq!(failures, attempts as u64, "one audit row per attempt, none for calls turned away");

    // Locked, the right password is refused like a wrong one.
    let refused = common::try_login(&server, &login, MEMBER_PASSWORD).await.unwrap_err();
    assert_eq!((refused.code(), reason(&refused).as_str()), (Code::Unauthenticated, "INVALID_CREDENTIALS"));
}

const REDEEMERS: usize = 20;

/// 20 redemptions of one link at once, each with its own password: exactly
/// one wins and its password is the one stored; the others are told the key
/// is used. The same for a reset link, whose password is shown to one only.
async fn twenty_redemptions_of_one_link_let_exactly_one_through(backend: Backend) {
    let server = common::start(backend, |config| config);
    let (t, token) = manager(&server).await;
    let login = format!("{}_new", t.prefix);
    create_user(&server, &token, &login, Role::Reader, "").await;
    let link = latest_link(&server, &login, "welcome").await;
    let channel = server.channel().await;

    let results = redeem_all(&channel, &link, true).await;
    let (winners, losers): (Vec<_>, Vec<_>) = results.into_iter().partition(Result::is_ok);
    assert_eq!(winners.len(), 1, "exactly one redemption wins: {losers:?}");
    let losers = tally(losers.into_iter().map(|l| l.unwrap_err()));
    assert_eq!(losers, HashMap::from([("FailedPrecondition ACTIVATION_KEY_USED".to_owned(), REDEEMERS - 1)]));
    let (chosen, _) = winners.into_iter().next().unwrap().unwrap();
    common::login(&server, &login, &chosen).await;
    let other = if chosen.ends_with(" 0") { format!("{MEMBER_PASSWORD} 1") } else { format!("{MEMBER_PASSWORD} 0") };
    assert_eq!(common::try_login(&server, &login, &other).await.unwrap_err().code(), Code::Unauthenticated);
    assert_eq!(audit_rows(&server, "activation.redeem", &login).await.len(), 1);

    // A reset link reveals its generated password once, to one of the 20.
    let reset = pb::ResetPasswordsRequest {
        user_logins: vec![login.clone()],
        all: false,
        notify_by_email: true,
        ..Default::default()
    };
    common::reset_client(&server).await.reset_passwords(bearer(reset, &token)).await.expect("reset by email");
    let link = latest_link(&server, &login, "password_reset").await;
    let results = redeem_all(&channel, &link, false).await;
    let shown: Vec<String> = results.iter().filter_map(|r| r.as_ref().ok()).map(|(_, shown)| shown.clone()).collect();
    assert_eq!(shown.len(), 1, "one caller sees the password: {results:?}");
    assert!(!shown[0].is_empty());
    common::login(&server, &login, &shown[0]).await;
    assert_eq!(audit_rows(&server, "activation.redeem", &login).await.len(), 2);
}

type Redemption = Result<(String, String), String>;

/// Redeems `link` 20 times at once: Ok((chosen password, shown password)) or
/// Err("code reason").
async fn redeem_all(channel: &Channel, link: &str, with_password: bool) -> Vec<Redemption> {
    all_at_once(REDEEMERS, |i| {
        let mut reset = pb::reset_client::ResetClient::new(channel.clone());
        let new_password = if with_password { format!("{MEMBER_PASSWORD} {i}") } else { String::new() };
        let request =
            pb::RedeemActivationRequest { token: link.to_owned(), new_password: new_password.clone(), captcha: None };
        async move {
            match reset.redeem_activation(request).await {
                Ok(response) => Ok((new_password, response.into_inner().generated_password)),
                Err(status) => Err(format!("{:?} {}", status.code(), reason(&status))),
            }
        }
    })
    .await
}

const USERS: usize = 30;
const ROUNDS: usize = 3;

/// Two batch resets at once over overlapping users, listed in opposite
/// orders, one returning passwords (email=0), one sending links (email=1;
/// which one alternates per round). Per user the later reset wins: exactly
/// one of the two new passwords works. A link that lost says SUPERSEDED when
/// opened; a returned password that lost is refused, and the live link shows
/// the one that works. Every reset is audited and emailed. (On PostgreSQL,
/// opposite orders used to deadlock: one whole batch failed with INTERNAL.)
async fn overlapping_batch_resets_leave_one_generated_password_per_user(backend: Backend) {
    let server = common::start(backend, |mut config| {
        config.reset.admin_resets_per_hour = 100;
        config
    });
    let (t, token) = manager(&server).await;
    let logins: Vec<String> = (0..USERS).map(|i| format!("{}_u{i:02}", t.prefix)).collect();
    for login in &logins {
        create_user(&server, &token, login, Role::Reader, "").await;
    }
    let all: Vec<&str> = logins.iter().map(String::as_str).collect();
    // Activated by a first reset, so that neither batch changes a status.
    for result in common::reset_results(&server, &token, &all).await {
        assert!(result.changed, "{result:?}");
    }
    // Users 0..20 in order and users 10..30 in reverse (overlap: 10..20);
    // which of the two goes by email alternates from round to round.
    let sets: [Vec<String>; 2] = [logins[..20].to_vec(), logins[10..].iter().rev().cloned().collect()];
    let channel = server.channel().await;
    let mut emails_expected: HashMap<&str, u64> = HashMap::new();
    let mut resets_expected: HashMap<&str, usize> = logins.iter().map(|l| (l.as_str(), 1)).collect();
    let mut later_by_email = 0;
    for round in 1..=ROUNDS {
        let by_email = round % 2;
        let results = all_at_once(2, |i| {
            let mut reset = pb::reset_client::ResetClient::new(channel.clone());
            let request = pb::ResetPasswordsRequest {
                user_logins: sets[i].clone(),
                all: false,
                notify_by_email: i == by_email,
                ..Default::default()
            };
            let token = token.clone();
            async move { (i, reset.reset_passwords(bearer(request, &token)).await) }
        })
        .await;
        let mut returned = HashMap::new();
        for (i, result) in results {
            let response = result.unwrap_or_else(|status| panic!("round {round}: batch {i} failed: {status:?}"));
            for r in response.into_inner().results {
                assert!(r.changed, "round {round}: {r:?}");
                if i != by_email {
                    returned.insert(r.user_login, r.password);
                }
            }
        }
        for login in &logins {
            let linked = sets[by_email].contains(login);
            *resets_expected.entry(login).or_default() +=
                usize::from(linked) + usize::from(returned.contains_key(login));
            *emails_expected.entry(login).or_default() += u64::from(linked);
            let returned_works = match returned.get(login) {
                Some(password) => common::try_login(&server, login, password).await.is_ok(),
                None => false,
            };
            let link = if linked { Some(latest_link(&server, login, "password_reset").await) } else { None };
            let link_state = match &link {
                Some(link) => Some(inspect(&channel, link).await),
                None => None,
            };
            match (returned.contains_key(login), linked) {
                (true, false) => assert!(returned_works, "round {round}: {login}: the returned password works"),
                (false, true) => assert_eq!(link_state, Some(LinkState::Live), "round {round}: {login}"),
                _ => {
                    // Exactly one of the two generated passwords is the final one.
                    let expected = if returned_works { LinkState::Superseded } else { LinkState::Live };
                    assert_eq!(link_state, Some(expected), "round {round}: {login}: returned works: {returned_works}");
                    later_by_email += usize::from(!returned_works);
                }
            }
            if link_state == Some(LinkState::Live) {
                let shown = redeem(&channel, &link.expect("a link")).await;
                assert!(
                    common::try_login(&server, login, &shown).await.is_ok(),
                    "round {round}: the emailed one works"
                );
                if let Some(password) = returned.get(login) {
                    let stale = common::try_login(&server, login, password).await.unwrap_err();
                    assert_eq!(stale.code(), Code::Unauthenticated, "round {round}: the returned one was superseded");
                }
            }
        }
    }
    for login in &logins {
        let rows = audit_rows(&server, "password.reset", login).await;
        assert_eq!(rows.len(), resets_expected[login.as_str()], "{login}: every reset on record");
        assert!(rows.iter().all(|r| r.outcome == "SUCCESS"), "{login}: {rows:?}");
        let user = user_row(&server, login).await;
        let emails = outbox_count(&server, &user.id, "password_reset").await;
        assert_eq!(emails, emails_expected[login.as_str()], "{login}: one email per reset by email");
    }
    eprintln!("{backend:?}: {ROUNDS} rounds × 10 contested users: the reset by email came last {later_by_email} times");
}

#[derive(Debug, PartialEq, Eq)]
enum LinkState {
    Live,
    Superseded,
}

async fn inspect(channel: &Channel, link: &str) -> LinkState {
    let response = pb::reset_client::ResetClient::new(channel.clone())
        .inspect_activation(pb::InspectActivationRequest { token: link.to_owned() })
        .await
        .expect("inspect")
        .into_inner();
    match (response.valid, response.invalid_reason()) {
        (true, _) => LinkState::Live,
        (false, pb::ActivationInvalidReason::Superseded) => LinkState::Superseded,
        (false, other) => panic!("a reset link is live or superseded, not {other:?}"),
    }
}

async fn redeem(channel: &Channel, link: &str) -> String {
    pb::reset_client::ResetClient::new(channel.clone())
        .redeem_activation(pb::RedeemActivationRequest {
            token: link.to_owned(),
            new_password: String::new(),
            captcha: None,
        })
        .await
        .expect("redeem")
        .into_inner()
        .generated_password
}

const REFRESHERS: usize = 8;
const SESSIONS: usize = 5;

/// One refresh token presented 8 times at once: one call rotates it, the
/// others are reuse, which ends the whole session (the winner's new tokens
/// too), with one audit row per session.
async fn concurrent_refreshes_rotate_once_and_the_rest_revoke_the_session(backend: Backend) {
    let server = common::start(backend, |config| config);
    let (t, token) = manager(&server).await;
    let login = format!("{}_r", t.prefix);
    member(&server, &token, &login, Role::Reader, "").await;
    let channel = server.channel().await;
    for round in 1..=SESSIONS {
        let session = common::login(&server, &login, MEMBER_PASSWORD).await;
        let results = all_at_once(REFRESHERS, |_| {
            let mut auth = pb::auth_client::AuthClient::new(channel.clone());
            let request = pb::RefreshRequest { refresh_token: session.refresh_token.clone() };
            async move { auth.refresh(request).await.map(|r| r.into_inner().session.expect("a session")) }
        })
        .await;
        let (rotated, reused): (Vec<_>, Vec<_>) = results.into_iter().partition(Result::is_ok);
        assert_eq!(rotated.len(), 1, "round {round}: one rotation: {reused:?}");
        for status in reused.into_iter().map(Result::unwrap_err) {
            assert_eq!(status.code(), Code::Unauthenticated, "round {round}");
            assert!(status.message().contains("already used"), "round {round}: reuse detected: {status:?}");
        }
        let winner = rotated.into_iter().next().unwrap().unwrap();
        let mut auth = pb::auth_client::AuthClient::new(channel.clone());
        let again = auth.refresh(pb::RefreshRequest { refresh_token: winner.refresh_token.clone() }).await;
        assert_eq!(again.unwrap_err().code(), Code::Unauthenticated, "round {round}: the session is over");
        let check = auth
            .validate_token(pb::ValidateTokenRequest { access_token: winner.access_token.clone() })
            .await
            .expect("validate")
            .into_inner();
        assert!(!check.valid, "round {round}: the winner's access token is revoked too");
        assert_eq!(audit_rows(&server, "session.refresh_reuse", &login).await.len(), round, "one row per session");
    }
}

/// Callers that give up mid-call (a deadline, a closed connection, a gateway
/// client gone) must leave nothing half-done: logins abandoned at every
/// moment of their course, then the service still logs people in at once and
/// no database transaction stays open. Before `Store::begin_write` began in a
/// task of its own, this story hung on PostgreSQL in two runs out of two: sqlx
/// returned a connection whose `BEGIN` was abandoned in flight to its pool
/// inside a transaction; the next statement run on it, a login's throttle
/// count, kept its row locked for good and every later login waited forever.
async fn abandoned_logins_leave_no_transaction_open(backend: Backend) {
    let server = common::start(backend, |config| config);
    let (t, token) = manager(&server).await;
    let login = format!("{}_member", t.prefix);
    member(&server, &token, &login, Role::Reader, "").await;
    let channel = server.channel().await;
    // Deadlines spread over one login's own time, measured under the same
    // load of eight steady lanes, abandon calls at every step of it, the
    // transaction's BEGIN included.
    let mut warmup = JoinSet::new();
    for _ in 0..8 {
        let (server_url, login) = (server.url(), login.clone());
        warmup.spawn(async move {
            let channel = tonic::transport::Channel::from_shared(server_url).unwrap().connect().await.unwrap();
            let mut timings = Vec::new();
            for _ in 0..5 {
                let started = std::time::Instant::now();
                let request = pb::LoginRequest { user_login: login.clone(), password: MEMBER_PASSWORD.to_owned() };
                pb::auth_client::AuthClient::new(channel.clone()).login(request).await.expect("a login");
                timings.push(started.elapsed());
            }
            timings
        });
    }
    let mut timings: Vec<std::time::Duration> = warmup.join_all().await.into_iter().flatten().collect();
    timings.sort();
    let typical = timings[timings.len() / 2];
    let mut lanes = JoinSet::new();
    const LANES: u64 = 8;
    const PER_LANE: u64 = 400;
    let total = usize::try_from(LANES * PER_LANE).unwrap();
    for lane in 0..LANES {
        let (channel, login) = (channel.clone(), login.clone());
        lanes.spawn(async move {
            let mut answered = 0;
            for i in 0..PER_LANE {
                let share = 0.1 + 1.4 * (((lane * PER_LANE + i) * 7919) % 1000) as f64 / 1000.0;
                let request = pb::LoginRequest { user_login: login.clone(), password: MEMBER_PASSWORD.to_owned() };
                let mut client = pb::auth_client::AuthClient::new(channel.clone());
                if tokio::time::timeout(typical.mul_f64(share), client.login(request)).await.is_ok() {
                    answered += 1;
                }
            }
            answered
        });
    }
    let answered: usize = lanes.join_all().await.into_iter().sum();
    assert!(answered < total, "no call was abandoned");

    let started = std::time::Instant::now();
    let after =
        tokio::time::timeout(std::time::Duration::from_secs(15), common::login(&server, &login, MEMBER_PASSWORD)).await;
    assert!(after.is_ok(), "a login after the abandoned ones waited over 15 s");
    let waited = started.elapsed();

    let mut stale = Vec::new();
    if backend == Backend::Postgres {
        let store = common::store(&server).await;
        // Transactions of the service last milliseconds; one older than 2 s was left open.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            let rows = sea_orm::ConnectionTrait::query_all_raw(
                store.connection(),
                sea_orm::Statement::from_string(
                    sea_orm::DbBackend::Postgres,
                    "SELECT pid::text || ' ' || state || ': ' || left(query, 80) FROM pg_stat_activity \
                     WHERE datname = current_database() AND pid <> pg_backend_pid() \
                     AND xact_start < now() - interval '2 seconds'",
                ),
            )
            .await
            .expect("read pg_stat_activity");
            stale = rows.iter().map(|row| row.try_get_by_index::<String>(0).expect("a text column")).collect();
            if stale.is_empty() || std::time::Instant::now() > deadline {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        }
    }
    eprintln!(
        "[{backend:?}] abandoned logins: {} of {total} abandoned (a login takes {} µs), {answered} answered; \
         the next login took {} ms",
        total - answered,
        typical.as_micros(),
        waited.as_millis()
    );
    assert!(stale.is_empty(), "transactions left open: {stale:?}");
}

// ---- logins racing password events --------------------------------------------

/// A subscription whose accounts lock only after 100 failures (the races below
/// make old-password logins fail on purpose), made through the API by a
/// platform operator, and its activated Manager: (prefix, manager session).
async fn patient_subscription(server: &TestServer) -> (String, String) {
    let (_, operator) = common::operator(server).await;
    let prefix = common::unique("p");
    let manager = format!("{prefix}_mgr");
    let request = pb::CreateSubscriptionRequest {
        name: "Racing".into(),
        login_prefix: prefix.clone(),
        users_define_own_password: true,
        lockout_threshold: 100,
        manager: Some(pb::create_subscription_request::NewManager {
            user_login: manager.clone(),
            email: format!("{prefix}@example.com"),
            first_name: "Mia".into(),
            last_name: "Manager".into(),
        }),
    };
    common::users_client(server).await.create_subscription(bearer(request, &operator)).await.expect("subscription");
    let link = latest_link(server, &manager, "welcome").await;
    common::reset_client(server)
        .await
        .redeem_activation(pb::RedeemActivationRequest {
            token: link,
            new_password: MEMBER_PASSWORD.into(),
            captcha: None,
        })
        .await
        .expect("manager activated");
    (prefix, common::login_session(server, &manager, MEMBER_PASSWORD).await)
}

/// How a round changes the password.
#[derive(Clone, Copy, Debug)]
enum PasswordEvent {
    /// The user's own ChangePassword.
    Change,
    /// A Manager's ResetPasswords, the password returned (email=0).
    AdminReset,
}

/// What the logins of one round saw.
#[derive(Default)]
struct RaceTally {
    sessions: Vec<pb::Session>,
    /// Logins sent before the change returned and answered after it.
    in_flight: usize,
    refused: usize,
}

const RACERS: usize = 12;
const RACE_ROUNDS: usize = 4;
const RACE_BOUND: std::time::Duration = std::time::Duration::from_secs(120);

/// `RACERS` lanes log in with `old` over and over, on the servers given in
/// turn, while `event` sets a new password on `servers[0]`; every lane has had
/// a session before the event starts, and each stops once it has seen the
/// event finish. Returns the new password and what the lanes saw.
async fn race_a_password_event(
    servers: &[&TestServer],
    login: &str,
    old: &str,
    event: PasswordEvent,
    manager: &str,
    round: usize,
) -> (String, RaceTally) {
    use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
    // The user's own session for ChangePassword is made before the lanes start.
    let own = match event {
        PasswordEvent::Change => Some(common::login_session(servers[0], login, old).await),
        PasswordEvent::AdminReset => None,
    };
    let (began, finished) = (Arc::new(AtomicBool::new(false)), Arc::new(AtomicBool::new(false)));
    let ready = Arc::new(Barrier::new(RACERS + 1));
    let mut lanes = JoinSet::new();
    for lane in 0..RACERS {
        let channel = servers[lane % servers.len()].channel().await;
        let (began, finished, ready) = (Arc::clone(&began), Arc::clone(&finished), Arc::clone(&ready));
        let (login, old) = (login.to_owned(), old.to_owned());
        lanes.spawn(async move {
            let mut auth = pb::auth_client::AuthClient::new(channel);
            let (mut tally, mut waited) = (RaceTally::default(), false);
            loop {
                let sent_before_the_end = !finished.load(SeqCst);
                let answer = auth.login(pb::LoginRequest { user_login: login.clone(), password: old.clone() }).await;
                if sent_before_the_end && finished.load(SeqCst) {
                    tally.in_flight += 1;
                }
                match answer.map(|r| r.into_inner().result) {
                    Ok(Some(pb::login_response::Result::Session(session))) => tally.sessions.push(session),
                    Ok(other) => panic!("lane {lane}: a session or a refusal, not {other:?}"),
                    Err(status) => {
                        assert_eq!(reason(&status), "INVALID_CREDENTIALS", "lane {lane}: {status:?}");
                        assert!(began.load(SeqCst), "lane {lane}: the old password was refused before the change");
                        tally.refused += 1;
                    }
                }
                if !waited {
                    ready.wait().await;
                    waited = true;
                }
                if !sent_before_the_end {
                    return tally;
                }
            }
        });
    }
    ready.wait().await;
    began.store(true, SeqCst);
    let new = match event {
        PasswordEvent::Change => {
            let new = format!("{MEMBER_PASSWORD} round {round}");
            let request = pb::ChangePasswordRequest {
                current_password: old.to_owned(),
                new_password: new.clone(),
                captcha: None,
            };
            let own = own.expect("the user's session");
            common::auth_client(servers[0]).await.change_password(bearer(request, &own)).await.expect("changed");
            new
        }
        PasswordEvent::AdminReset => common::reset_password(servers[0], manager, login).await,
    };
    finished.store(true, SeqCst);
    let mut tally = RaceTally::default();
    for lane in lanes.join_all().await {
        tally.sessions.extend(lane.sessions);
        tally.in_flight += lane.in_flight;
        tally.refused += lane.refused;
    }
    (new, tally)
}

/// Logins with the old password in flight on every side of a ChangePassword
/// (odd rounds: a Manager's reset) keep no session: every session they got
/// is refused by ValidateToken and Refresh once the change has returned, and
/// the old password no longer logs in. A login that checked the password
/// before the change used to open its session after the change had revoked
/// the existing ones, and keep it for the refresh token's 30 days.
async fn logins_racing_a_password_change_keep_no_session(backend: Backend) {
    let server = common::start(backend, |mut config| {
        // A password check long enough for a dozen logins to be in flight at once.
        config.argon2.memory_kib = 2048;
        config.reset.admin_resets_per_hour = 100;
        config
    });
    let (prefix, manager) = patient_subscription(&server).await;
    let login = format!("{prefix}_racer");
    member(&server, &manager, &login, Role::Reader, "").await;
    let mut password = MEMBER_PASSWORD.to_owned();
    let mut auth = common::auth_client(&server).await;
    for round in 0..RACE_ROUNDS {
        let event = if round % 2 == 0 { PasswordEvent::Change } else { PasswordEvent::AdminReset };
        let servers = [&server];
        let race = race_a_password_event(&servers, &login, &password, event, &manager, round);
        let (new, tally) = tokio::time::timeout(RACE_BOUND, race).await.expect("the race ends in time");
        for session in &tally.sessions {
            let check = auth
                .validate_token(pb::ValidateTokenRequest { access_token: session.access_token.clone() })
                .await
                .expect("validate")
                .into_inner();
            assert!(!check.valid, "round {round} ({event:?}): a session from the old password is still valid");
            let refresh = auth.refresh(pb::RefreshRequest { refresh_token: session.refresh_token.clone() }).await;
            assert_eq!(refresh.map(|_| ()).unwrap_err().code(), Code::Unauthenticated, "round {round}: refreshed");
        }
        let stale = common::try_login(&server, &login, &password).await.unwrap_err();
        assert_eq!(reason(&stale), "INVALID_CREDENTIALS", "round {round}: the old password still logs in");
        common::login(&server, &login, &new).await;
        eprintln!(
            "[{backend:?}] round {round} ({event:?}): {} sessions from the old password, all refused afterwards; \
             {} logins in flight when the change returned, {} refused",
            tally.sessions.len(),
            tally.in_flight,
            tally.refused
        );
        password = new;
    }
}

/// Two replicas with different argon2 parameters, so that every successful
/// login rehashes the password, log in with the old password while the user
/// changes it (odd rounds: a Manager resets it). Afterwards the new password
/// works on both and the old one on neither: a rehash of the old password
/// that committed after the change used to write it back, silently undoing
/// the change (and losing the password a reset had returned).
async fn rehashing_logins_never_bring_an_old_password_back(backend: Backend) {
    let first = common::start(backend, |mut config| {
        config.argon2.memory_kib = 1024;
        config.reset.admin_resets_per_hour = 100;
        config
    });
    let second = common::start_with(backend, Some(first.database_url.clone()), |mut config| {
        config.argon2.memory_kib = 2048;
        config
    });
    let (prefix, manager) = patient_subscription(&first).await;
    let login = format!("{prefix}_rehash");
    member(&first, &manager, &login, Role::Reader, "").await;
    let mut password = MEMBER_PASSWORD.to_owned();
    let store = common::store(&first).await;
    let user = users::find_by_login(store.connection(), &login).await.unwrap().expect("the user");
    for round in 0..RACE_ROUNDS {
        let event = if round % 2 == 0 { PasswordEvent::Change } else { PasswordEvent::AdminReset };
        let servers = [&first, &second];
        let race = race_a_password_event(&servers, &login, &password, event, &manager, round);
        let (new, tally) = tokio::time::timeout(RACE_BOUND, race).await.expect("the race ends in time");
        let stored = users::password_hash(store.connection(), &user.id).await.unwrap().expect("a hash");
        for server in [&first, &second] {
            let stale = common::try_login(server, &login, &password).await.unwrap_err();
            assert_eq!(reason(&stale), "INVALID_CREDENTIALS", "round {round} ({event:?}): the old password is back");
        }
        // The new password, on each replica in turn: each rehashes it for its own parameters.
        for server in [&first, &second, &first] {
            common::login(server, &login, &new).await;
        }
        eprintln!(
            "[{backend:?}] round {round} ({event:?}): {} rehashing logins with the old password, {} in flight \
             when the change returned; the stored hash after the race has m={}",
            tally.sessions.len(),
            tally.in_flight,
            stored.split("m=").nth(1).and_then(|rest| rest.split(',').next()).unwrap_or("?")
        );
        password = new;
    }
}

const SAME_ADDRESS_LOGINS: usize = 48;
const CROWD: usize = 8;

/// 48 logins at once from one address on 8 accounts, three right and three
/// wrong passwords each. Every attempt takes a slot on its account's counter
/// row and on the address's; a success gives both back in one statement inside
/// its transaction. No call may fail on those rows' locks (a deadlock answers
/// UNAVAILABLE), and afterwards the counters hold exactly the failures.
async fn logins_from_one_address_at_once_give_back_exactly_their_successes(backend: Backend) {
    let server = common::start(backend, |mut config| {
        config.throttle.login_per_ip = 1_000;
        config.throttle.login_per_user = 1_000;
        // One window for the whole story: a new one would start counting afresh.
        config.throttle.window_secs = 3_600;
        config
    });
    let (t, token) = manager(&server).await;
    let logins: Vec<String> = (0..CROWD).map(|i| format!("{}_crowd{i}", t.prefix)).collect();
    for login in &logins {
        member(&server, &token, login, Role::Reader, "").await;
    }
    let channel = server.channel().await;
    let results = all_at_once(SAME_ADDRESS_LOGINS, |i| {
        let wrong = (i / CROWD) % 2 == 1;
        let password = if wrong { format!("wrong password {i}") } else { MEMBER_PASSWORD.to_owned() };
        login_outcome(channel.clone(), logins[i % CROWD].clone(), password)
    })
    .await;
    let counts = tally(results);
    let half = SAME_ADDRESS_LOGINS / 2;
    assert_eq!(counts.get("OK"), Some(&half), "{counts:?}");
    assert_eq!(counts.get("Unauthenticated INVALID_CREDENTIALS"), Some(&half), "{counts:?}");

    let store = common::store(&server).await;
    let counters = rate_counter::Entity::find().all(store.connection()).await.expect("read the counters");
    // The manager's login left its rows at 0.
    let held = |prefix: &str| -> Vec<i32> {
        counters.iter().filter(|row| row.key.starts_with(prefix) && row.count > 0).map(|row| row.count).collect()
    };
    assert_eq!(held("login:ip:"), [half as i32], "the address holds its failures only");
    assert_eq!(held("login:user:"), [3; CROWD], "each account holds its own three failures");
}

on_both_backends!(
    logins_from_one_address_at_once_give_back_exactly_their_successes,
    logins_racing_a_password_change_keep_no_session,
    rehashing_logins_never_bring_an_old_password_back,
    two_hundred_wrong_logins_lock_the_account_exactly_once,
    twenty_redemptions_of_one_link_let_exactly_one_through,
    overlapping_batch_resets_leave_one_generated_password_per_user,
    concurrent_refreshes_rotate_once_and_the_rest_revoke_the_session,
    abandoned_logins_leave_no_transaction_open,
);
