//! The SecurID-style second factor, as the RSA troubleshooting page tells it:
//! first login with the tokencode alone, then a new PIN; later PIN + tokencode
//! as one entry; "Invalid Tokencode or PIN" whatever part was wrong.

use crate::common;

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
    // The lock ended the challenge: a right and a wrong passcode get the same answer.
    let right = submit(server, &challenge, &format!("2468{}", token.code(1))).await.unwrap_err();
    let wrong = submit(server, &challenge, "1111000000").await.unwrap_err();
    for status in [&right, &wrong] {
        assert_eq!(status.code(), Code::Unauthenticated);
        assert!(status.message().contains("expired or was already completed"), "{}", status.message());
    }
    assert_eq!((right.message(), reason(&right)), (wrong.message(), reason(&wrong)));
    // And the password, right or wrong, gets "Invalid credentials".
    for password in [MEMBER_PASSWORD, "not the password"] {
        let by_password = common::try_login(server, &login, password).await.unwrap_err();
        assert_eq!(
            (by_password.message(), reason(&by_password).as_str()),
            ("Invalid credentials", "INVALID_CREDENTIALS")
        );
    }
    assert_eq!(common::audit_count(server, "user.lockout", &login, None).await, 1);
}

async fn expired_challenges_are_refused(backend: Backend) {
    let server = server(backend);
    let (login, _, token) = enrolled(server, "late").await;
    let challenge = start(server, &login, MEMBER_PASSWORD).await;
    let store = common::store(server).await;
    let user = identity::store::users::find_by_login(store.connection(), &login).await.unwrap().unwrap();
    common::execute_sql(
        server,
        &format!(
            "UPDATE login_challenges SET expires_at = {} WHERE user_id = '{}'",
            common::a_minute_ago_ms(),
            user.id
        ),
    )
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
    reset
        .reset_pin(bearer(pb::ResetPinRequest { user_login: login.clone(), ..Default::default() }, &manager))
        .await
        .expect("PIN reset");
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
    let no_token = reset
        .reset_pin(bearer(pb::ResetPinRequest { user_login: plain.clone(), ..Default::default() }, &other_manager))
        .await
        .unwrap_err();
    assert_eq!((no_token.code(), reason(&no_token).as_str()), (Code::FailedPrecondition, "NO_TOKEN"));
    let self_assign = users_client(server)
        .await
        .assign_token(bearer(
            pb::AssignTokenRequest { user_login: t.manager_login.clone(), ..Default::default() },
            &other_manager,
        ))
        .await
        .unwrap_err();
    assert_eq!(self_assign.code(), Code::PermissionDenied, "nobody assigns themselves a token through admin paths");
}

async fn is_refused(server: &common::TestServer, session: &pb::Session) -> bool {
    let mut auth = common::auth_client(server).await;
    let check = auth
        .validate_token(pb::ValidateTokenRequest { access_token: session.access_token.clone() })
        .await
        .expect("validate")
        .into_inner();
    let refresh = auth.refresh(pb::RefreshRequest { refresh_token: session.refresh_token.clone() }).await;
    !check.valid && refresh.is_err_and(|status| status.code() == Code::Unauthenticated)
}

/// A token assigned after a compromise, or a PIN reset, ends the sessions
/// made before it: they no longer validate or refresh. Others' sessions live on.
async fn assigning_a_token_or_resetting_a_pin_ends_earlier_sessions(backend: Backend) {
    let server = server(backend);
    let t = tenant(server);
    let manager = common::login(server, &t.manager_login, &t.manager_password).await;
    let login = format!("{}_hygiene", t.prefix);
    member(server, &manager.access_token, &login, pb::Role::Reader, "").await;
    let password_only = common::login(server, &login, MEMBER_PASSWORD).await;

    let token = assign(server, &manager.access_token, &login).await;
    assert!(is_refused(server, &password_only).await, "a password-only session outlived the token's assignment");

    let challenge = start(server, &login, MEMBER_PASSWORD).await;
    let next = submit(server, &challenge, &token.code(0)).await.unwrap().result;
    let Some(pb::submit_passcode_response::Result::Challenge(new_pin)) = next else { panic!("{next:?}") };
    let with_token = set_pin(server, &new_pin, "2468").await.expect("PIN accepted");
    assert!(!is_refused(server, &with_token).await, "a session made with the token is live");

    let mut reset = reset_client(server).await;
    reset
        .reset_pin(bearer(
            pb::ResetPinRequest { user_login: login.clone(), ..Default::default() },
            &manager.access_token,
        ))
        .await
        .unwrap();
    assert!(is_refused(server, &with_token).await, "a session outlived the PIN reset");
    assert!(!is_refused(server, &manager).await, "the Manager's own session is untouched");
}

/// A passcode challenge is what a password opened: a password change, by an
/// admin reset or by the user, voids the challenges opened before it. The
/// refusal is "expired", not "Invalid Tokencode or PIN": the passcode given is
/// good, as the challenge opened with the new password then shows.
async fn a_password_change_voids_open_challenges(backend: Backend) {
    let server = server(backend);
    let (login, manager, token) = enrolled(server, "void").await;
    let before_reset = start(server, &login, MEMBER_PASSWORD).await;
    let reset_to = common::reset_password(server, &manager, &login).await;
    let good = format!("2468{}", token.code(1));
    let voided = submit(server, &before_reset, &good).await.unwrap_err();
    assert_eq!(voided.code(), Code::Unauthenticated);
    assert!(voided.message().contains("expired or was already completed"), "{}", voided.message());

    let after_reset = start(server, &login, &reset_to).await;
    let result = submit(server, &after_reset, &good).await.unwrap().result;
    let Some(pb::submit_passcode_response::Result::Session(session)) = result else { panic!("{result:?}") };

    // The user's own change voids the same way (no fresh tokencode is needed
    // to tell: a live challenge would answer "Invalid Tokencode or PIN").
    let before_change = start(server, &login, &reset_to).await;
    let change = pb::ChangePasswordRequest {
        current_password: reset_to.clone(),
        new_password: "lantern zebra orbit kettle".to_owned(),
        captcha: None,
    };
    let generated = common::auth_client(server)
        .await
        .change_password(bearer(change, &session.access_token))
        .await
        .expect("password changed")
        .into_inner()
        .generated_password;
    assert!(generated.is_empty(), "the users of this subscription choose their passwords");
    let voided = submit(server, &before_change, &good).await.unwrap_err();
    assert!(voided.message().contains("expired or was already completed"), "{}", voided.message());
    assert!(is_refused(server, &session).await, "the change ended the session too");
}

on_both_backends!(
    assigning_a_token_or_resetting_a_pin_ends_earlier_sessions,
    a_password_change_voids_open_challenges,
    first_login_sets_a_pin_then_pin_and_tokencode_log_in,
    a_wrong_pin_and_a_wrong_tokencode_look_the_same,
    passcode_failures_count_towards_lockout,
    expired_challenges_are_refused,
    a_lost_token_is_replaced_and_a_pin_can_be_reset,
);
