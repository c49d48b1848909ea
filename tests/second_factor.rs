//! The SecurID-style second factor, as the RSA troubleshooting page tells it:
//! first login with the tokencode alone, then a new PIN; later PIN + tokencode
//! as one entry; "Invalid Tokencode or PIN" whatever part was wrong.

mod common;

use common::{
    Backend, MEMBER_PASSWORD, bearer, login_session, member, reason, reset_client, server, tenant, users_client,
};
use identity::{crypto::totp, pb};
use tonic::Code;

struct Token {
    secret: Vec<u8>,
    /// The time step of the first code a story uses; later codes use later steps.
    step: i64,
}

impl Token {
    fn code(&self, offset: i64) -> String {
        totp::code_at(&self.secret, self.step + offset).unwrap()
    }
}

fn base32_decode(text: &str) -> Vec<u8> {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let (mut bits, mut value, mut out) = (0u32, 0u32, Vec::new());
    for c in text.bytes().filter(|c| *c != b'=') {
        value = (value << 5) | ALPHABET.iter().position(|a| *a == c).expect("base32") as u32;
        bits += 5;
        if bits >= 8 {
            bits -= 8;
            out.push((value >> bits) as u8);
        }
    }
    out
}

async fn assign(server: &common::TestServer, manager: &str, login: &str) -> Token {
    let response = users_client(server)
        .await
        .assign_token(bearer(pb::AssignTokenRequest { user_login: login.to_owned() }, manager))
        .await
        .expect("token assigned")
        .into_inner();
    assert!(response.otpauth_uri.starts_with(&format!("otpauth://totp/identity:{login}?")), "{}", response.otpauth_uri);
    assert!(response.qr_code_svg.starts_with("<svg") && response.qr_code_png.starts_with(b"\x89PNG"));
    let secret = response.otpauth_uri.split("secret=").nth(1).unwrap().split('&').next().unwrap();
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    Token { secret: base32_decode(secret), step: now / totp::STEP_SECS }
}

async fn start(server: &common::TestServer, login: &str, password: &str) -> pb::Challenge {
    match common::try_login(server, login, password).await.expect("password accepted").result {
        Some(pb::login_response::Result::Challenge(challenge)) => challenge,
        other => panic!("expected a passcode challenge, got {other:?}"),
    }
}

async fn submit(
    server: &common::TestServer,
    challenge: &pb::Challenge,
    passcode: &str,
) -> Result<pb::SubmitPasscodeResponse, tonic::Status> {
    common::auth_client(server)
        .await
        .submit_passcode(pb::SubmitPasscodeRequest {
            challenge_id: challenge.challenge_id.clone(),
            passcode: passcode.to_owned(),
        })
        .await
        .map(tonic::Response::into_inner)
}

async fn set_pin(
    server: &common::TestServer,
    challenge: &pb::Challenge,
    pin: &str,
) -> Result<pb::Session, tonic::Status> {
    common::auth_client(server)
        .await
        .set_new_pin(pb::SetNewPinRequest { challenge_id: challenge.challenge_id.clone(), pin: pin.to_owned() })
        .await
        .map(|r| r.into_inner().session.expect("session"))
}

/// A user with a token and PIN `2468`, the first code (offset 0) already used.
async fn enrolled(server: &common::TestServer, suffix: &str) -> (String, String, Token) {
    let t = tenant(server);
    let manager = login_session(server, &t.manager_login, &t.manager_password).await;
    let login = format!("{}_{suffix}", t.prefix);
    member(server, &manager, &login, pb::Role::Reader, "").await;
    let token = assign(server, &manager, &login).await;
    let challenge = start(server, &login, MEMBER_PASSWORD).await;
    let next = submit(server, &challenge, &token.code(0)).await.expect("tokencode alone").result;
    let Some(pb::submit_passcode_response::Result::Challenge(new_pin)) = next else {
        panic!("expected NEW_PIN, got {next:?}")
    };
    set_pin(server, &new_pin, "2468").await.expect("PIN accepted");
    (login, manager, token)
}

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
