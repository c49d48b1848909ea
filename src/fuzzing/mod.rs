//! The bad-input harness shared by the cargo-fuzz targets (`tests/fuzz`) and
//! the property tests (`tests/stories/properties.rs`). Each entry in [`TARGETS`] takes
//! arbitrary bytes, feeds them to one parser or to the XML writer, and panics
//! when an invariant breaks, so libFuzzer and proptest hunt the same bugs. The
//! `check_*` functions hold the invariants for inputs already decoded.

use std::collections::HashSet;

use axum::http::{HeaderMap, HeaderValue, header};
use base64::{Engine, engine::general_purpose::STANDARD};

use crate::{
    domain::{
        Error, UserLogin,
        login::{LoginRule, TAIL_ALPHABET, parse_email, parse_login_prefix},
        page_token, passcode,
    },
    gateway::legacy::{Credentials, Failure, FailureKind, Params, Targets, parse_params},
};

mod reply;

pub use self::reply::{
    REASON_CODES, Reply, ReplyUser, check_reply, expected_reply, is_xml_char, read_reply, xml_reply, xml_text,
};

/// A fuzz target's entry: any bytes in, a panic when an invariant breaks.
pub type Entry = fn(&[u8]);

/// Every fuzz target: its file under `tests/fuzz/fuzz_targets/` and its entry.
pub const TARGETS: &[(&str, Entry)] = &[
    ("legacy_params", legacy_params),
    ("basic_auth", basic_auth),
    ("xml_reply", xml_reply),
    ("login", login),
    ("passcode", passcode),
    ("page_token", page_token),
];

/// The longest refusal message the parameter parser may write: five unknown
/// names of at most 64 characters each, and the words around them.
pub const PARAMS_MESSAGE_MAX: usize = 400;

/// Two fields of one input. 0xFF never occurs in UTF-8, so splitting there
/// rules out no text in either field.
fn split(data: &[u8]) -> (&[u8], &[u8]) {
    match data.iter().position(|&b| b == 0xFF) {
        Some(at) => (&data[..at], &data[at + 1..]),
        None => (data, &[]),
    }
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}
// ---- the legacy API's query string and form body ----

/// Query string, 0xFF, form body.
pub fn legacy_params(data: &[u8]) {
    let (query, body) = split(data);
    let _ = check_params(query, body);
}

/// `parse_params`, with what must hold of any answer.
pub fn check_params(query: &[u8], body: &[u8]) -> Result<Params, Failure> {
    let result = parse_params(query, body);
    match &result {
        Ok(params) => {
            if let Targets::Logins(logins) = &params.targets {
                assert!(!logins.is_empty(), "an empty list of logins was accepted");
                let mut seen = HashSet::new();
                for login in logins {
                    assert!(!login.is_empty() && login.trim() == login && !login.contains(','), "login {login:?}");
                    assert!(seen.insert(login), "login {login:?} named twice");
                }
            }
            let again = parse_params(encode_params(params).as_bytes(), b"");
            assert_eq!(again.as_ref().ok(), Some(params), "the canonical request reads differently");
        }
        Err(failure) => {
            assert!(
                matches!(
                    failure.kind(),
                    FailureKind::UnknownParameter | FailureKind::MissingParameter | FailureKind::InvalidValue
                ),
                "{failure:?}"
            );
            assert!(failure.message().chars().count() <= PARAMS_MESSAGE_MAX, "{failure:?}");
        }
    }
    result
}

/// The query string that asks for `params`. A list that is just `all` gets
/// a trailing comma: that names the login `all`, not everyone.
pub fn encode_params(params: &Params) -> String {
    let logins = match &params.targets {
        Targets::All => "all".to_owned(),
        Targets::Logins(logins) if logins.join(",").trim() == "all" => "all,".to_owned(),
        Targets::Logins(logins) => logins.join(","),
    };
    url::form_urlencoded::Serializer::new(String::new())
        .append_pair("user_logins", &logins)
        .append_pair("email", if params.notify_by_email { "1" } else { "0" })
        .finish()
}

// ---- HTTP Basic credentials ----

/// Flags byte (bit 0: a cookie comes too), then the bytes tried both as an
/// `Authorization` value and as the decoded `user:password` pair.
pub fn basic_auth(data: &[u8]) {
    let Some((&flags, rest)) = data.split_first() else {
        return;
    };
    let _ = check_authorization(rest, flags & 1 == 1);
    check_basic_pair(rest);
}

/// What `Authorization: <value>` (and maybe a cookie) reads as; `None` when
/// the value cannot be an HTTP header value at all.
pub fn check_authorization(value: &[u8], cookie: bool) -> Option<Credentials> {
    let value = HeaderValue::from_bytes(value).ok()?;
    let mut headers = HeaderMap::new();
    headers.insert(header::AUTHORIZATION, value.clone());
    if cookie {
        headers.insert(header::COOKIE, HeaderValue::from_static("session=1"));
    }
    let credentials = Credentials::from_headers(&headers);
    if cookie {
        assert!(matches!(credentials, Credentials::Refused), "a cookie must refuse the request");
    }
    if let Credentials::Basic(user, password) = &credentials {
        assert!(!user.contains(':'), "user {user:?}");
        let value = value.to_str().expect("accepted values are visible ASCII");
        let (scheme, encoded) = value.trim().split_once(' ').expect("accepted values have a scheme");
        assert!(scheme.eq_ignore_ascii_case("basic"));
        // Canonical base64 only, so one pair has one accepted spelling.
        assert_eq!(STANDARD.encode(format!("{user}:{}", password.expose())), encoded.trim());
    }
    Some(credentials)
}

/// `pair` as the decoded credentials: read back exactly when it is UTF-8 with
/// a colon, split at the first colon; malformed otherwise.
pub fn check_basic_pair(pair: &[u8]) {
    let value = format!("Basic {}", STANDARD.encode(pair));
    let credentials = check_authorization(value.as_bytes(), false).expect("base64 is a valid header value");
    match (std::str::from_utf8(pair).ok().and_then(|pair| pair.split_once(':')), credentials) {
        (Some((user, password)), Credentials::Basic(read_user, read_password)) => {
            assert_eq!((read_user.as_str(), read_password.expose()), (user, password));
        }
        (None, Credentials::Malformed) => {}
        (expected, _) => panic!("{pair:?} should read as {expected:?}"),
    }
}

// ---- login names, prefixes, email addresses and the login rule ----

/// The bytes as text, tried as a login, a prefix, an email address, and a
/// login to read a platform code from under every allowed rule.
pub fn login(data: &[u8]) {
    check_login(&String::from_utf8_lossy(data));
}

pub fn check_login(value: &str) {
    let valid = (3..=64).contains(&value.chars().count())
        && value.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
        && value.starts_with(|c: char| c.is_ascii_alphanumeric());
    match UserLogin::parse(value) {
        Ok(login) => assert!(valid && login.as_str() == value, "{value:?} accepted"),
        Err(Error::InvalidArgument { field: "user_login", .. }) => assert!(!valid, "{value:?} refused"),
        Err(other) => panic!("{value:?}: {other:?}"),
    }
    let valid_prefix = (2..=16).contains(&value.len())
        && value.starts_with(|c: char| c.is_ascii_lowercase())
        && value.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
    assert_eq!(parse_login_prefix(value).is_ok(), valid_prefix, "prefix {value:?}");
    if let Ok(email) = parse_email(value) {
        let (local, domain) = email.split_once('@').expect("an accepted address has an @");
        assert!(email == value.trim() && email.len() <= crate::domain::login::EMAIL_MAX, "{value:?}");
        assert!(!local.is_empty() && !domain.contains('@') && domain.contains('.'), "{value:?}");
        assert!(!email.chars().any(|c| c.is_whitespace() || c.is_control()), "{value:?}");
        assert!(domain.split('.').all(|label| !label.is_empty()), "{value:?}");
        assert_eq!(parse_email(&email).as_ref(), Ok(&email), "accepted addresses are read back unchanged");
    }
    for separator in ['_', '-', '.'] {
        for tail_length in [4, 6, 16] {
            check_platform_code(&LoginRule { separator, tail_length }, value);
        }
    }
}

/// A platform code read from `login` sits between the last separator and a
/// tail of the rule's length drawn from the tail alphabet.
pub fn check_platform_code<'a>(rule: &LoginRule, login: &'a str) -> Option<&'a str> {
    let code = rule.platform_code(login)?;
    let (_, rest) = login.rsplit_once(rule.separator).expect("a code follows a separator");
    let tail = rest.strip_prefix(code).expect("the code starts right after the separator");
    assert!(!code.is_empty() && !code.contains(rule.separator), "{login:?} gave {code:?}");
    assert!(tail.len() == rule.tail_length && tail.bytes().all(|b| TAIL_ALPHABET.contains(&b)), "{login:?}");
    Some(code)
}

// ---- passcodes and PINs ----

/// Mode byte (bit 0: new-PIN mode), then the passcode, also tried as a new PIN.
pub fn passcode(data: &[u8]) {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let value = String::from_utf8_lossy(rest);
    let _ = check_passcode(&value, mode & 1 == 1);
    check_new_pin(&value);
}

pub fn check_passcode(value: &str, new_pin_mode: bool) -> Result<passcode::Passcode<'_>, Error> {
    let digits = value.bytes().all(|b| b.is_ascii_digit());
    let length_ok = if new_pin_mode {
        value.len() == passcode::TOKENCODE_DIGITS
    } else {
        (passcode::PIN_MIN + passcode::TOKENCODE_DIGITS..=passcode::PIN_MAX + passcode::TOKENCODE_DIGITS)
            .contains(&value.len())
    };
    let result = passcode::parse(value, new_pin_mode);
    match &result {
        Ok(parsed) => {
            assert!(digits && length_ok, "{value:?} accepted");
            assert_eq!(parsed.tokencode.len(), passcode::TOKENCODE_DIGITS);
            assert_eq!(format!("{}{}", parsed.pin.unwrap_or_default(), parsed.tokencode), value);
            assert_eq!(parsed.pin.is_none(), new_pin_mode);
        }
        // One answer for every malformed passcode: nothing hints at the part that was wrong.
        Err(error) => assert!(*error == Error::InvalidPasscode && !(digits && length_ok), "{value:?}: {error:?}"),
    }
    result
}

pub fn check_new_pin(value: &str) {
    let valid =
        (passcode::PIN_MIN..=passcode::PIN_MAX).contains(&value.len()) && value.bytes().all(|b| b.is_ascii_digit());
    match passcode::check_new_pin(value) {
        Ok(()) => assert!(valid, "PIN {value:?} accepted"),
        Err(error) => assert!(error == Error::PinRejected && !valid, "PIN {value:?}: {error:?}"),
    }
}

// ---- page tokens ----

/// A page size (first four bytes), then token, 0xFF, and a text that is both
/// the query's single filter and a cursor to round-trip.
pub fn page_token(data: &[u8]) {
    let (size, rest) = data.split_at(data.len().min(4));
    let mut size_bytes = [0u8; 4];
    size_bytes[..size.len()].copy_from_slice(size);
    check_page_size(i32::from_le_bytes(size_bytes));
    let (token, filter) = split(rest);
    let filter = text(filter);
    let fingerprint = page_token::fingerprint(&[&filter]);
    let _ = check_page_token(&String::from_utf8_lossy(token), &fingerprint);
    check_cursor(&filter, &fingerprint, usize::from(rest.first().copied().unwrap_or(0)));
}

/// What `decode` makes of any token.
pub fn check_page_token(token: &str, fingerprint: &str) -> Result<Option<String>, Error> {
    let result = page_token::decode(token, fingerprint);
    match &result {
        Ok(None) => assert!(token.is_empty(), "{token:?} read as no token"),
        Ok(Some(cursor)) => {
            assert!(!token.is_empty() && !cursor.is_empty(), "{token:?}");
            let other = page_token::fingerprint(&[fingerprint]);
            assert!(page_token::decode(token, &other).is_err(), "{token:?} accepted for another query");
            let again = page_token::encode(cursor, fingerprint);
            assert_eq!(page_token::decode(&again, fingerprint).as_ref(), Ok(&Some(cursor.clone())));
        }
        Err(error) => assert!(error.to_string().starts_with("page_token is not a token"), "{error}"),
    }
    result
}

/// The longest cursor a token must carry: listings page by login (at most 64
/// characters) or by audit id.
pub const CURSOR_MAX: usize = 64;

/// A token made for `cursor` gives it back for its own query only, and the
/// token with the character at `position` changed is refused.
pub fn check_cursor(cursor: &str, fingerprint: &str, position: usize) {
    let cursor: String = cursor.chars().take(CURSOR_MAX).collect();
    let token = page_token::encode(&cursor, fingerprint);
    assert!(token.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'), "{token:?}");
    let read = page_token::decode(&token, fingerprint);
    if cursor.is_empty() {
        assert!(read.is_err(), "an empty cursor was accepted");
        return;
    }
    assert_eq!(read, Ok(Some(cursor.clone())));
    assert!(page_token::decode(&token, &page_token::fingerprint(&[fingerprint])).is_err());
    let at = position % token.len();
    let original = token.as_bytes()[at];
    let replacement = if original == b'A' { b'B' } else { b'A' };
    let mut altered = token.into_bytes();
    altered[at] = replacement;
    let altered = String::from_utf8(altered).expect("base64url is ASCII");
    assert!(page_token::decode(&altered, fingerprint).is_err(), "altered token {altered:?} accepted");
}

pub fn check_page_size(requested: i32) {
    let (default, max) = (50, 500);
    match page_token::page_size(requested, default, max) {
        Ok(size) if requested == 0 => assert_eq!(size, default),
        Ok(size) => assert_eq!(size, u64::try_from(requested).expect("positive").min(max)),
        Err(_) => assert!(requested < 0),
    }
}
