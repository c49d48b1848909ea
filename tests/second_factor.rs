//! The SecurID-style second factor, as the RSA troubleshooting page tells it:
//! first login with the tokencode alone, then a new PIN; later PIN + tokencode
//! as one entry; "Invalid Tokencode or PIN" whatever part was wrong.

mod common;

use common::{
    Backend, MEMBER_PASSWORD, bearer, login_session, member, reason, reset_client,
    second_factor::{assign, enrolled, set_pin, start, submit},
    server, tenant, users_client,
};
use identity::pb;
use tonic::Code;

async fn first_login_sets_a_pin_then_pin_and_tokencode_log_in(backend: Backend) {
    let server = server(backend);
    let t = tenant(server);
    let manager = login_session(server, &t.manager_login, &t.manager_password).await;
    let login = format!("{}_rsa", t.prefix);
    member(server, &manager, &login, pb::Role::Reader, "").await;
    let token = assign(server, &manager, &login).await;

    let challenge = start(server, &login, MEMBER_PASSWORD).await;
    assert_eq!(challenge.kind(), pb::ChallengeKind::Passcode);
    assert!(challenge.prompt.contains("tokencode only"), "{}", challenge.prompt);
    let pin_and_code = submit(server, &challenge, &format!("1234{}", token.code(0))).await.unwrap_err();
    assert_eq!(pin_and_code.message(), "Invalid Tokencode or PIN", "no PIN exists yet: the tokencode alone");
    let next = submit(server, &challenge, &token.code(0)).await.unwrap().result;
    let Some(pb::submit_passcode_response::Result::Challenge(new_pin)) = next else { panic!("{next:?}") };
    assert_eq!(new_pin.kind(), pb::ChallengeKind::NewPin);

    for rejected in ["123", "123456789", "12a4", ""] {
        let status = set_pin(server, &new_pin, rejected).await.unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument, "{rejected:?}");
        assert!(status.message().starts_with("Your new PIN has been rejected"), "{}", status.message());
    }
    let session = set_pin(server, &new_pin, "2468").await.expect("a 4-digit PIN");
    assert!(!session.access_token.is_empty());
    assert_eq!(set_pin(server, &new_pin, "2468").await.unwrap_err().code(), Code::Unauthenticated, "single use");

    let challenge = start(server, &login, MEMBER_PASSWORD).await;
    assert!(challenge.prompt.contains("PIN followed by the tokencode"), "{}", challenge.prompt);
    let replay = submit(server, &challenge, &format!("2468{}", token.code(0))).await.unwrap_err();
    assert_eq!(replay.message(), "Invalid Tokencode or PIN", "a tokencode is accepted once");
    let result = submit(server, &challenge, &format!("2468{}", token.code(1))).await.unwrap().result;
    assert!(matches!(result, Some(pb::submit_passcode_response::Result::Session(_))), "{result:?}");
    let again = submit(server, &challenge, &format!("2468{}", token.code(1))).await.unwrap_err();
    assert_eq!(again.code(), Code::Unauthenticated, "a challenge is single-use");
}

async fn a_wrong_pin_and_a_wrong_tokencode_look_the_same(backend: Backend) {
    let server = server(backend);
    let (login, _, token) = enrolled(server, "same").await;
    let challenge = start(server, &login, MEMBER_PASSWORD).await;
    let wrong_pin = submit(server, &challenge, &format!("1357{}", token.code(1))).await.unwrap_err();
    let wrong_code =
        submit(server, &challenge, &format!("2468{:06}", (token.code(1).parse::<u32>().unwrap() + 1) % 1_000_000))
            .await
            .unwrap_err();
    let garbage = submit(server, &challenge, "not a passcode").await.unwrap_err();
    for status in [&wrong_pin, &wrong_code, &garbage] {
        assert_eq!((status.code(), status.message()), (Code::Unauthenticated, "Invalid Tokencode or PIN"));
        assert_eq!(reason(status), "INVALID_PASSCODE");
    }
    let ok = submit(server, &challenge, &format!("2468{}", token.code(1))).await.unwrap().result;
    assert!(matches!(ok, Some(pb::submit_passcode_response::Result::Session(_))), "the challenge survives failures");
}

async fn passcode_failures_count_towards_lockout(backend: Backend) {
    let server = server(backend);
    let (login, _, token) = enrolled(server, "lock").await;
    let challenge = start(server, &login, MEMBER_PASSWORD).await;
    for _ in 0..5 {
        assert_eq!(submit(server, &challenge, "1111000000").await.unwrap_err().message(), "Invalid Tokencode or PIN");
    }
    let locked = submit(server, &challenge, &format!("2468{}", token.code(1))).await.unwrap_err();
    assert_eq!(reason(&locked), "ACCOUNT_LOCKED");
    let by_password = common::try_login(server, &login, MEMBER_PASSWORD).await.unwrap_err();
    assert_eq!(reason(&by_password), "ACCOUNT_LOCKED");
    assert_eq!(common::audit_count(server, "user.lockout", &login, None).await, 1);
}

async fn expired_challenges_are_refused(backend: Backend) {
    let server = server(backend);
    let (login, _, token) = enrolled(server, "late").await;
    let challenge = start(server, &login, MEMBER_PASSWORD).await;
    let store = common::store(server).await;
    let user = identity::store::users::find_by_login(store.connection(), &login).await.unwrap().unwrap();
    common::execute_sql(server, &format!("UPDATE login_challenges SET expires_at = 1 WHERE user_id = '{}'", user.id))
        .await;
    let late = submit(server, &challenge, &format!("2468{}", token.code(1))).await.unwrap_err();
    assert_eq!(late.code(), Code::Unauthenticated);
    assert!(late.message().contains("expired"), "{}", late.message());
}

async fn a_lost_token_is_replaced_and_a_pin_can_be_reset(backend: Backend) {
    let server = server(backend);
    let (login, manager, old) = enrolled(server, "lost").await;
    let new = assign(server, &manager, &login).await;
    let challenge = start(server, &login, MEMBER_PASSWORD).await;
    assert!(challenge.prompt.contains("tokencode only"), "a new token means a new PIN");
    let with_old = submit(server, &challenge, &old.code(1)).await.unwrap_err();
    assert_eq!(with_old.message(), "Invalid Tokencode or PIN", "the lost token no longer works");
    let next = submit(server, &challenge, &new.code(0)).await.unwrap().result;
    let Some(pb::submit_passcode_response::Result::Challenge(new_pin)) = next else { panic!("{next:?}") };
    set_pin(server, &new_pin, "97531").await.unwrap();

    let mut reset = reset_client(server).await;
    reset.reset_pin(bearer(pb::ResetPinRequest { user_login: login.clone() }, &manager)).await.expect("PIN reset");
    let challenge = start(server, &login, MEMBER_PASSWORD).await;
    let next = submit(server, &challenge, &new.code(1)).await.unwrap().result;
    let Some(pb::submit_passcode_response::Result::Challenge(new_pin)) = next else { panic!("{next:?}") };
    set_pin(server, &new_pin, "8642").await.expect("a new PIN after the reset");
    assert_eq!(common::audit_count(server, "pin.reset", &login, Some("SUCCESS")).await, 1);
    assert_eq!(common::audit_count(server, "token.assign", &login, Some("SUCCESS")).await, 2);
    common::assert_mail_sent(server, &login, "pin_reset").await;

    let t = tenant(server);
    let other_manager = login_session(server, &t.manager_login, &t.manager_password).await;
    let plain = format!("{}_plain", t.prefix);
    member(server, &other_manager, &plain, pb::Role::Reader, "").await;
    let no_token =
        reset.reset_pin(bearer(pb::ResetPinRequest { user_login: plain.clone() }, &other_manager)).await.unwrap_err();
    assert_eq!((no_token.code(), reason(&no_token).as_str()), (Code::FailedPrecondition, "NO_TOKEN"));
    let self_assign = users_client(server)
        .await
        .assign_token(bearer(pb::AssignTokenRequest { user_login: t.manager_login.clone() }, &other_manager))
        .await
        .unwrap_err();
    assert_eq!(self_assign.code(), Code::PermissionDenied, "nobody assigns themselves a token through admin paths");
}

on_both_backends!(
    first_login_sets_a_pin_then_pin_and_tokencode_log_in,
    a_wrong_pin_and_a_wrong_tokencode_look_the_same,
    passcode_failures_count_towards_lockout,
    expired_challenges_are_refused,
    a_lost_token_is_replaced_and_a_pin_can_be_reset,
);
