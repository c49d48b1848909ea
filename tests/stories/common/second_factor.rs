//! The second factor from the client's side: a token assigned by a manager
//! (its TOTP secret read from the otpauth URI), passcode challenges, PINs.

use identity::{crypto::totp, pb};

use super::{MEMBER_PASSWORD, bearer, login_session, member, tenant, users_client};

pub struct Token {
    pub secret: Vec<u8>,
    /// The time step of the first code a story uses; later codes use later steps.
    pub step: i64,
}

impl Token {
    pub fn code(&self, offset: i64) -> String {
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

pub async fn assign(server: &super::TestServer, manager: &str, login: &str) -> Token {
    let response = users_client(server)
        .await
        .assign_token(bearer(pb::AssignTokenRequest { user_login: login.to_owned(), ..Default::default() }, manager))
        .await
        .expect("token assigned")
        .into_inner();
    assert!(response.otpauth_uri.starts_with(&format!("otpauth://totp/identity:{login}?")), "{}", response.otpauth_uri);
    assert!(response.qr_code_svg.starts_with("<svg") && response.qr_code_png.starts_with(b"\x89PNG"));
    token_from_uri(&response.otpauth_uri)
}

/// The token an `otpauth://totp/…` URI provisions, as an authenticator app reads it.
pub fn token_from_uri(uri: &str) -> Token {
    let secret = uri.split("secret=").nth(1).unwrap().split('&').next().unwrap();
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    Token { secret: base32_decode(secret), step: now / totp::STEP_SECS }
}

pub async fn start(server: &super::TestServer, login: &str, password: &str) -> pb::Challenge {
    match super::try_login(server, login, password).await.expect("password accepted").result {
        Some(pb::login_response::Result::Challenge(challenge)) => challenge,
        other => panic!("expected a passcode challenge, got {other:?}"),
    }
}

pub async fn submit(
    server: &super::TestServer,
    challenge: &pb::Challenge,
    passcode: &str,
) -> Result<pb::SubmitPasscodeResponse, tonic::Status> {
    super::auth_client(server)
        .await
        .submit_passcode(pb::SubmitPasscodeRequest {
            challenge_id: challenge.challenge_id.clone(),
            passcode: passcode.to_owned(),
        })
        .await
        .map(tonic::Response::into_inner)
}

pub async fn set_pin(
    server: &super::TestServer,
    challenge: &pb::Challenge,
    pin: &str,
) -> Result<pb::Session, tonic::Status> {
    super::auth_client(server)
        .await
        .set_new_pin(pb::SetNewPinRequest { challenge_id: challenge.challenge_id.clone(), pin: pin.to_owned() })
        .await
        .map(|r| r.into_inner().session.expect("session"))
}

/// A user with a token and PIN `2468`, the first code (offset 0) already used.
pub async fn enrolled(server: &super::TestServer, suffix: &str) -> (String, String, Token) {
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
