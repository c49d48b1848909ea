//! A batch reset whose answer was lost can be sent again: with the same
//! request id, the caller gets the first outcome back, and nobody is reset or
//! emailed twice, however many copies race.

use crate::common;
use crate::common::tools::Tool;

use std::time::Duration;

use common::{Backend, bearer, create_user, login, login_session, reason, reset_client, server, tenant};
use identity::pb::{self, Role};
use tonic::Code;

fn request(logins: &[&str], notify_by_email: bool, request_id: &str) -> pb::ResetPasswordsRequest {
    pb::ResetPasswordsRequest {
        user_logins: logins.iter().map(|l| (*l).to_owned()).collect(),
        notify_by_email,
        request_id: request_id.to_owned(),
        ..Default::default()
    }
}

fn outcomes(results: &[pb::ResetResult]) -> Vec<(String, String, bool, String, i32)> {
    results.iter().map(|r| (r.user_login.clone(), r.user_id.clone(), r.changed, r.password.clone(), r.reason)).collect()
}

async fn a_replay_returns_the_first_outcome_and_resets_nobody_twice(backend: Backend) {
    let server = server(backend);
    let t = tenant(server);
    let token = login_session(server, &t.manager_login, &t.manager_password).await;
    let (a, b) = (format!("{}_a", t.prefix), format!("{}_b", t.prefix));
    create_user(server, &token, &a, Role::Reader, "").await;
    create_user(server, &token, &b, Role::Scanner, "").await;
    let contact = create_user(server, &token, &format!("{}_c", t.prefix), Role::Contact, "").await.user_login;
    let id = uuid::Uuid::new_v4().to_string();
    let mut reset = reset_client(server).await;

    let first = reset.reset_passwords(bearer(request(&[&a, &b, &contact], false, &id), &token)).await.unwrap();
    let first = outcomes(&first.into_inner().results);
    assert!(first[0].2 && first[1].2 && !first[2].2, "{first:?}");
    // A retry, with the targets listed in another order: the same request.
    let again = reset.reset_passwords(bearer(request(&[&contact, &b, &a], false, &id), &token)).await.unwrap();
    assert_eq!(outcomes(&again.into_inner().results), first, "the first outcome, passwords included");
    login(server, &a, &first[0].3).await;
    login(server, &b, &first[1].3).await;
    assert_eq!(common::audit_count(server, "password.reset", &a, Some("SUCCESS")).await, 1, "reset once");

    // The same id for something else is refused, whatever differs.
    for other in [request(&[&a], false, &id), request(&[&a, &b, &contact], true, &id)] {
        let refused = reset.reset_passwords(bearer(other, &token)).await.unwrap_err();
        assert_eq!((refused.code(), reason(&refused).as_str()), (Code::FailedPrecondition, "REQUEST_ID_REUSED"));
    }
    // Another caller's identical id is another request.
    let other_manager = tenant(server);
    let other_token = login_session(server, &other_manager.manager_login, &other_manager.manager_password).await;
    let theirs = reset.reset_passwords(bearer(request(&[&a], false, &id), &other_token)).await.unwrap();
    assert_eq!(theirs.into_inner().results[0].reason(), pb::ResetReason::UnknownUser);

    // What the database keeps does not show the passwords.
    use sea_orm::ConnectionTrait;
    let store = common::store(server).await;
    let rows = store
        .connection()
        .query_all_raw(sea_orm::Statement::from_string(
            store.connection().get_database_backend(),
            "SELECT outcome FROM reset_requests",
        ))
        .await
        .unwrap();
    assert!(!rows.is_empty());
    for row in rows {
        let sealed: Vec<u8> = row.try_get_by_index(0).unwrap();
        let text = String::from_utf8_lossy(&sealed);
        assert!(!text.contains(&first[0].3) && !text.contains(&a), "the stored outcome is sealed");
    }

    // Malformed ids are refused before anything happens.
    let short = reset.reset_passwords(bearer(request(&[&a], false, "abc"), &token)).await.unwrap_err();
    assert_eq!(short.code(), Code::InvalidArgument);
}

async fn concurrent_duplicates_reset_once(backend: Backend) {
    let server = server(backend);
    let t = tenant(server);
    let token = login_session(server, &t.manager_login, &t.manager_password).await;
    let target = format!("{}_raced", t.prefix);
    create_user(server, &token, &target, Role::Reader, "").await;
    let id = uuid::Uuid::new_v4().to_string();
    let mut calls = tokio::task::JoinSet::new();
    for _ in 0..8 {
        let (mut reset, token, req) = (reset_client(server).await, token.clone(), request(&[&target], false, &id));
        calls.spawn(async move { reset.reset_passwords(bearer(req, &token)).await.map(|r| r.into_inner().results) });
    }
    let mut answers = Vec::new();
    while let Some(answer) = calls.join_next().await {
        answers.push(outcomes(&answer.unwrap().unwrap_or_else(|status| panic!("{status:?}"))));
    }
    assert!(answers.windows(2).all(|pair| pair[0] == pair[1]), "one outcome for all: {answers:?}");
    assert!(answers[0][0].2);
    login(server, &target, &answers[0][0].3).await;
    assert_eq!(common::audit_count(server, "password.reset", &target, None).await, 1, "reset once");
}

async fn a_replayed_email_reset_sends_no_second_email(backend: Backend) {
    if !common::tools::require(&[Tool::SmtpServer]) {
        return;
    }
    let sink = common::smtp::SmtpSink::start();
    let url = sink.url();
    let server = common::start(backend, move |mut config| {
        config.smtp_url = Some(url);
        config.mail.poll_interval_ms = 100;
        config
    });
    let t = tenant(&server);
    let token = login_session(&server, &t.manager_login, &t.manager_password).await;
    let target = format!("{}_mailed", t.prefix);
    create_user(&server, &token, &target, Role::Reader, "").await;
    // The welcome email, then the reset's.
    sink.wait_for(1, Duration::from_secs(20)).await;
    let id = uuid::Uuid::new_v4().to_string();
    let mut reset = reset_client(&server).await;
    let first = reset.reset_passwords(bearer(request(&[&target], true, &id), &token)).await.unwrap().into_inner();
    let again = reset.reset_passwords(bearer(request(&[&target], true, &id), &token)).await.unwrap().into_inner();
    assert_eq!(outcomes(&first.results), outcomes(&again.results));
    assert!(first.results[0].changed && first.results[0].password.is_empty());
    sink.wait_for(2, Duration::from_secs(20)).await;
    // Time for a second email to arrive, were one queued.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let resets = sink.messages().iter().filter(|m| m.contains("Subject: Your password was reset")).count();
    assert_eq!(resets, 1, "one reset email for one reset");
    assert_eq!(common::mail_count(&server, &target, "password_reset").await, 1);
}

on_both_backends!(
    a_replay_returns_the_first_outcome_and_resets_nobody_twice,
    concurrent_duplicates_reset_once,
    a_replayed_email_reset_sends_no_second_email,
);
