//! Bad input (issue #11): property tests over every parser that reads
//! untrusted input — the legacy API's query string and form body, HTTP Basic
//! credentials, login names, passcodes, page tokens — and over the legacy XML
//! writer, whose every reply must be well-formed, valid against its DTD
//! (judged by `xmllint --valid`, in batches) and read back by libxml2 exactly
//! as written. The invariants live in `identity::fuzzing`, shared with the
//! cargo-fuzz targets under `tests/fuzz`, whose seed corpus is replayed here.

use std::{cell::RefCell, collections::HashSet, net::IpAddr, path::Path, process::Command};

use crate::common::{self, tools::Tool};

use identity::{
    crypto::random,
    domain::{
        Error, Secret, UserLogin,
        client_address::{TrustedProxy, client_address, forwarded_chain},
        login::LoginRule,
        login::TAIL_ALPHABET,
        page_token, passcode, password_policy,
    },
    fuzzing::{self, Reply},
    gateway::{
        DTD,
        legacy::{Credentials, FailureKind, Params, Targets},
        xml::{Changed, NotChanged, Outcome},
    },
};
use proptest::{
    collection::vec,
    option,
    prelude::*,
    sample::select,
    test_runner::{Config, TestRunner},
};
use time::OffsetDateTime;

/// Cases per property: enough to meet every fragment below many times, few
/// enough that the whole file stays within seconds in a debug build.
const CASES: u32 = 1000;

fn config() -> Config {
    // Failures become named regression tests below, not files in the tree.
    Config { cases: CASES, failure_persistence: None, ..Config::default() }
}

/// Text that goes after the places parsers and writers get wrong: markup,
/// references, CDATA ends, line ends, control characters XML cannot carry,
/// non-characters, and any Unicode at all.
fn tricky_text() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        3 => vec(any::<char>(), 0..6).prop_map(String::from_iter),
        3 => "[a-zA-Z0-9_.-]{1,8}",
        4 => select(vec![
            "]]>", "]]", "]", ">", "<", "&", "&amp;", "&#0;", "&#x1;", "\"", "'", "\r", "\r\n", "\n", "\t", " ",
            "\u{0}", "\u{1}", "\u{8}", "\u{b}", "\u{c}", "\u{1b}", "\u{1f}", "\u{7f}", "\u{85}", "\u{2028}",
            "\u{d7ff}", "\u{e000}", "\u{fffd}", "\u{fffe}", "\u{ffff}", "\u{feff}", "\u{10ffff}", "é", "日本",
            "😀", "<![CDATA[", "]]]]><![CDATA[>", "<!--", "-->", "<?xml", "%22", ",", ":",
        ]).prop_map(str::to_owned),
    ];
    vec(piece, 0..8).prop_map(|pieces| pieces.concat())
}

/// Query-string fragments: percent-encoding edge cases, separators, the two
/// known parameter names and their values.
#[rustfmt::skip]
const QUERY_PIECES: &[&str] = &[
    "user_logins", "email", "all", "=", "&", ";", ",", "+", "%", "%2", "%zz", "%2C", "%2c", "%26", "%3D", "%00",
    "%FF", "%C3", "%C3%A9", "%E2%80%A8", "%20", "%09", "0", "1", "2", " ", "user%5Flogins", "USER_LOGINS", "\u{0}", "é",
];

fn query_text() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        select(QUERY_PIECES).prop_map(str::to_owned),
        "[a-z0-9_.-]{1,6}",
        vec(any::<char>(), 1..4).prop_map(String::from_iter),
    ];
    vec(piece, 0..24).prop_map(|pieces| pieces.concat())
}

fn bytes(max: usize) -> impl Strategy<Value = Vec<u8>> {
    vec(any::<u8>(), 0..max)
}

// ---- the legacy API's query string and form body ----

/// What `parse_params` should make of `user_logins=<raw>`: `all` (trimmed)
/// is everyone; otherwise the comma-separated logins, trimmed, without empty
/// ones, each once, in order of first appearance.
fn expected_targets(raw: &str) -> Option<Targets> {
    if raw.trim() == "all" {
        return Some(Targets::All);
    }
    let mut seen = HashSet::new();
    let logins: Vec<String> =
        raw.split(',').map(str::trim).filter(|l| !l.is_empty() && seen.insert(*l)).map(str::to_owned).collect();
    (!logins.is_empty()).then_some(Targets::Logins(logins))
}

fn pair(key: &str, value: &str) -> String {
    url::form_urlencoded::Serializer::new(String::new()).append_pair(key, value).finish()
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn params_parsing_never_panics_on_bytes(query in bytes(256), body in bytes(256)) {
        let _ = fuzzing::check_params(&query, &body);
    }

    #[test]
    fn params_parsing_survives_percent_encoding_edges(query in query_text(), body in query_text()) {
        let _ = fuzzing::check_params(query.as_bytes(), body.as_bytes());
    }

    /// Any list of logins, however spelled, split between the query string
    /// and the body in either order, reads back as the model says.
    #[test]
    fn encoded_logins_are_read_back(
        logins in vec(tricky_text(), 0..6),
        email in any::<bool>(),
        logins_in_body in any::<bool>(),
    ) {
        let raw = logins.join(",");
        let (logins_pair, email_pair) = (pair("user_logins", &raw), pair("email", if email { "1" } else { "0" }));
        let (query, body) = if logins_in_body { (email_pair, logins_pair) } else { (logins_pair, email_pair) };
        let result = fuzzing::check_params(query.as_bytes(), body.as_bytes());
        match expected_targets(&raw) {
            Some(targets) => prop_assert_eq!(result.unwrap(), Params { targets, notify_by_email: email }),
            None => prop_assert_eq!(result.unwrap_err().kind(), FailureKind::MissingParameter),
        }
    }

    #[test]
    fn unknown_names_are_refused_and_named(
        logins in "[a-z]{1,8}",
        unknown in vec("[a-zA-Z0-9_]{1,100}", 1..9),
    ) {
        prop_assume!(unknown.iter().all(|name| name != "user_logins" && name != "email"));
        let mut query = pair("user_logins", &logins);
        for name in &unknown {
            query.push('&');
            query.push_str(&pair(name, "1"));
        }
        let failure = fuzzing::check_params(query.as_bytes(), b"").unwrap_err();
        prop_assert_eq!(failure.kind(), FailureKind::UnknownParameter);
        let named: Vec<String> = unknown.iter().take(5).map(|n| n.chars().take(64).collect()).collect();
        prop_assert_eq!(failure.message(), format!("Unrecognized parameter(s): {}", named.join(", ")));
    }

    #[test]
    fn email_must_be_zero_or_one(logins in "[a-z]{1,8}", email in tricky_text()) {
        prop_assume!(email != "0" && email != "1");
        let query = format!("{}&{}", pair("user_logins", &logins), pair("email", &email));
        let failure = fuzzing::check_params(query.as_bytes(), b"").unwrap_err();
        prop_assert_eq!(failure.kind(), FailureKind::InvalidValue);
    }

    /// A parameter given twice is refused even when both spellings agree, in
    /// the query, in the body, or across the two.
    #[test]
    fn repeated_parameters_are_refused(name in select(vec!["user_logins", "email"]), where_ in 0..3u8) {
        let once = pair(name, "1");
        let (query, body) = match where_ {
            0 => (format!("{once}&{once}&user_logins=a"), String::new()),
            1 => ("user_logins=a".to_owned(), format!("{once}&{once}")),
            _ => (once.clone(), format!("{once}&user_logins=a")),
        };
        let failure = fuzzing::check_params(query.as_bytes(), body.as_bytes()).unwrap_err();
        prop_assert_eq!(failure.kind(), FailureKind::InvalidValue);
    }
}

/// Nearly 128 KiB (the default `gateway.max_body_bytes`) of distinct logins.
/// Each login used to be compared with every one kept before it: 20,000
/// logins took 0.5-0.7 s of CPU in a release build (3.5 ms now), before the
/// credentials were even checked, and (extrapolated) about 1.4 h at the
/// largest allowed limit (16 MiB).
#[test]
fn a_body_of_the_largest_size_is_read_in_one_pass() {
    let logins: Vec<String> = (0..20_000).map(|i| format!("u{i}")).collect();
    let body = format!("email=0&user_logins={}", logins.join(","));
    assert!(body.len() <= 128 * 1024);
    let params = fuzzing::check_params(b"", body.as_bytes()).unwrap();
    assert_eq!(params.targets, Targets::Logins(logins));
}

// ---- HTTP Basic credentials ----

fn authorization(value: &str) -> Option<Credentials> {
    fuzzing::check_authorization(value.as_bytes(), false)
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn basic_credentials_round_trip(
        user in tricky_text(),
        password in tricky_text(),
        scheme in select(vec!["Basic", "basic", "BASIC", "bAsIc"]),
        padding in select(vec![("", " "), (" ", " "), ("", "  "), ("\t", " \t"), (" ", " ")]),
    ) {
        let user = user.replace(':', "");
        let encoded = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, format!("{user}:{password}"));
        let value = format!("{}{scheme}{}{encoded}{}", padding.0, padding.1, padding.0);
        match authorization(&value) {
            Some(Credentials::Basic(read_user, read_password)) => {
                prop_assert_eq!(read_user, user);
                prop_assert_eq!(read_password, Secret::new(password));
            }
            _ => prop_assert!(false, "{value:?} was not read as Basic credentials"),
        }
    }

    #[test]
    fn any_authorization_value_is_read_safely(value in bytes(200), cookie in any::<bool>()) {
        let _ = fuzzing::check_authorization(&value, cookie);
    }

    #[test]
    fn any_decoded_pair_is_read_exactly_or_refused(pair in prop_oneof![bytes(64), tricky_text().prop_map(String::into_bytes)]) {
        fuzzing::check_basic_pair(&pair);
    }

    #[test]
    fn other_schemes_are_refused(scheme in "[A-Za-z][A-Za-z0-9-]{0,12}", rest in "[A-Za-z0-9+/=._~-]{1,40}") {
        prop_assume!(!scheme.eq_ignore_ascii_case("basic"));
        let credentials = authorization(&format!("{scheme} {rest}"));
        prop_assert!(matches!(credentials, Some(Credentials::Refused)));
    }

    #[test]
    fn broken_basic_values_are_malformed(garbage in "[A-Za-z0-9+/=!*]{0,40}") {
        let base64_ok = base64::Engine::decode(&base64::engine::general_purpose::STANDARD, &garbage)
            .ok()
            .and_then(|bytes| String::from_utf8(bytes).ok())
            .is_some_and(|pair| pair.contains(':'));
        let credentials = authorization(&format!("Basic {garbage}"));
        prop_assert_eq!(matches!(credentials, Some(Credentials::Basic(..))), base64_ok);
        prop_assert!(base64_ok || matches!(credentials, Some(Credentials::Malformed)));
    }
}

#[test]
fn credentials_other_than_basic_are_told_apart() {
    assert!(matches!(Credentials::from_headers(&Default::default()), Credentials::Missing));
    assert!(matches!(authorization("Basic"), Some(Credentials::Malformed)));
    assert!(matches!(authorization("Basic dXNlcg=="), Some(Credentials::Malformed)), "no colon");
    assert!(matches!(authorization("Basic //79"), Some(Credentials::Malformed)), "not UTF-8");
    assert!(matches!(authorization("Basic dXNlcjpwdw"), Some(Credentials::Malformed)), "no padding");
    assert!(matches!(authorization("Bearer abc.def.ghi"), Some(Credentials::Refused)));
    assert!(matches!(fuzzing::check_authorization(b"Basic dXNlcjpwdw==", true), Some(Credentials::Refused)));
    assert!(
        matches!(authorization("Basic dXNlcjpwdw=="), Some(Credentials::Basic(u, p)) if u == "user" && p.expose() == "pw")
    );
    assert!(matches!(authorization("Basic OnB3"), Some(Credentials::Basic(u, _)) if u.is_empty()), "empty user");
}

// ---- the legacy XML reply ----

/// An outcome as plain data, since outcomes are neither `Debug` nor `Clone`.
#[derive(Clone, Debug)]
enum Spec {
    Failed(u32, String),
    Done(Vec<(String, Option<String>)>, Vec<(String, usize, String)>),
}

impl Spec {
    fn outcome(&self) -> Outcome {
        match self {
            Spec::Failed(number, message) => Outcome::Failed { number: *number, message: message.clone() },
            Spec::Done(changed, not_changed) => Outcome::Done {
                changed: changed
                    .iter()
                    .map(|(login, password)| Changed {
                        user_login: login.clone(),
                        password: password.clone().map(Secret::new),
                    })
                    .collect(),
                not_changed: not_changed
                    .iter()
                    .map(|(login, code, message)| NotChanged {
                        user_login: login.clone(),
                        code: fuzzing::REASON_CODES[*code],
                        message: message.clone(),
                    })
                    .collect(),
            },
        }
    }
}

fn spec() -> impl Strategy<Value = Spec> {
    prop_oneof![
        (any::<u32>(), tricky_text()).prop_map(|(number, message)| Spec::Failed(number, message)),
        (
            vec((tricky_text(), option::of(tricky_text())), 0..4),
            vec((tricky_text(), 0..fuzzing::REASON_CODES.len(), tricky_text()), 0..4),
        )
            .prop_map(|(changed, not_changed)| Spec::Done(changed, not_changed)),
    ]
}

/// Every instant `render` can be asked to date, to the second.
fn instant() -> impl Strategy<Value = OffsetDateTime> {
    (0i64..=253_402_300_799).prop_map(|secs| OffsetDateTime::from_unix_timestamp(secs).unwrap())
}

const DTD_NAME: &str = "password_change_output.dtd";

/// Writes the documents next to the DTD, has `xmllint --valid` judge them all
/// in one run, then has libxml2 canonicalise them (CDATA becomes text, every
/// reference resolved) and checks that it read what `expected` says.
fn judge_with_libxml2(documents: &[(Vec<u8>, Reply)]) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join(DTD_NAME), DTD).unwrap();
    let files: Vec<_> = (0..documents.len()).map(|i| dir.path().join(format!("{i:04}.xml"))).collect();
    for (file, (document, _)) in files.iter().zip(documents) {
        std::fs::write(file, document).unwrap();
    }
    let valid = Command::new("xmllint").arg("--noout").arg("--valid").args(&files).output().expect("xmllint runs");
    let complaints = String::from_utf8_lossy(&valid.stderr);
    assert!(valid.status.success() && complaints.is_empty(), "xmllint --valid: {complaints}");

    let c14n = Command::new("xmllint").arg("--c14n").args(&files).output().expect("xmllint runs");
    assert!(c14n.status.success(), "xmllint --c14n: {}", String::from_utf8_lossy(&c14n.stderr));
    let canonical = String::from_utf8(c14n.stdout).expect("canonical XML is UTF-8");
    // A closing root tag cannot occur inside a document's text: `<` is always escaped.
    let end = "</PASSWORD_CHANGE_OUTPUT>";
    let parts: Vec<&str> = canonical.split_inclusive(end).filter(|part| part.contains(end)).collect();
    assert_eq!(parts.len(), documents.len());
    for ((_, expected), part) in documents.iter().zip(parts) {
        let reparsed = format!("<?xml version=\"1.0\"?><!DOCTYPE PASSWORD_CHANGE_OUTPUT SYSTEM \"{DTD_NAME}\">{part}");
        let read = fuzzing::read_reply(reparsed.as_bytes()).unwrap_or_else(|e| panic!("{e}: {part}"));
        assert_eq!(&read, expected, "libxml2 read {part}");
    }
}

/// Arbitrary API users, logins, passwords, messages and numbers: every reply
/// is well-formed and says exactly what happened (checked in process for each
/// case), valid against the DTD, and read the same by libxml2.
#[test]
fn replies_are_well_formed_valid_and_faithful_for_any_text() {
    if !common::tools::require(&[Tool::Xmllint]) {
        return;
    }
    let documents = RefCell::new(Vec::new());
    let mut runner = TestRunner::new(config());
    runner
        .run(&(tricky_text(), spec(), instant()), |(username, spec, at)| {
            let outcome = spec.outcome();
            let document = fuzzing::check_reply(DTD_NAME, &username, at, &outcome);
            documents.borrow_mut().push((document, fuzzing::expected_reply(&username, at, &outcome)));
            Ok(())
        })
        .unwrap();
    judge_with_libxml2(&documents.into_inner());
}

/// Passwords are the one value that must survive byte for byte: any text
/// XML 1.0 can carry, `]]>`, carriage returns and markup included, reads back
/// exactly, and every generated password is such text.
#[test]
fn passwords_in_cdata_read_back_exactly() {
    if !common::tools::require(&[Tool::Xmllint]) {
        return;
    }
    let at = OffsetDateTime::from_unix_timestamp(1_752_495_777).unwrap();
    let policy = password_policy::PasswordPolicy::default();
    let documents = RefCell::new(Vec::new());
    let mut runner = TestRunner::new(config());
    let representable =
        tricky_text().prop_map(|text| fuzzing::xml_text(&text)).prop_filter("non-empty", |t| !t.is_empty());
    runner
        .run(&(representable, "[a-z][a-z0-9_]{2,20}"), |(password, login)| {
            let generated = random::password(&policy, &login);
            prop_assert!(generated.expose().chars().all(fuzzing::is_xml_char));
            let changed = vec![
                Changed { user_login: login.clone(), password: Some(Secret::new(password.clone())) },
                Changed { user_login: login.clone(), password: Some(generated.clone()) },
            ];
            let outcome = Outcome::Done { changed, not_changed: vec![] };
            let document = fuzzing::check_reply(DTD_NAME, "api", at, &outcome);
            let read = fuzzing::read_reply(&document).unwrap();
            let passwords: Vec<_> = read.changed.as_ref().unwrap().iter().map(|u| u.password.clone()).collect();
            prop_assert_eq!(passwords, vec![Some(password), Some(generated.expose().to_owned())]);
            documents.borrow_mut().push((document, read));
            Ok(())
        })
        .unwrap();
    judge_with_libxml2(&documents.into_inner());
}

#[test]
fn text_xml_cannot_carry_reads_as_replacement_characters() {
    if !common::tools::require(&[Tool::Xmllint]) {
        return;
    }
    let at = OffsetDateTime::from_unix_timestamp(0).unwrap();
    let outcome = Outcome::Done {
        changed: vec![Changed { user_login: "a\u{0}b".into(), password: Some(Secret::new("p\u{1b}\r\n]]>q")) }],
        not_changed: vec![NotChanged { user_login: "\u{ffff}".into(), code: "OTHER", message: "m\u{8}".into() }],
    };
    let document = fuzzing::check_reply(DTD_NAME, "u\u{7}\t\"", at, &outcome);
    let read = fuzzing::read_reply(&document).unwrap();
    assert_eq!(read.username, "u\u{fffd}\t\"");
    let changed = &read.changed.as_ref().unwrap()[0];
    assert_eq!((changed.login.as_str(), changed.password.as_deref()), ("a\u{fffd}b", Some("p\u{fffd}\r\n]]>q")));
    assert_eq!(read.not_changed.as_ref().unwrap()[0].login, "\u{fffd}");
    judge_with_libxml2(&[(document, read)]);
}

// ---- login names, prefixes, email addresses and the login rule ----

proptest! {
    #![proptest_config(config())]

    #[test]
    fn login_checks_match_their_rules_on_any_text(value in prop_oneof![
        tricky_text(),
        "[A-Za-z0-9_.-]{0,70}",
        "[a-z][a-z0-9]{0,17}",
        "[^@\\s]{0,10}@[a-z0-9.-]{0,12}",
        " ?[a-z0-9._%+-]{1,12}@([a-z0-9-]{1,10}\\.){1,3}[a-z]{2,6} ?",
    ]) {
        fuzzing::check_login(&value);
    }

    #[test]
    fn long_text_is_refused_without_harm(value in vec(any::<char>(), 60..400).prop_map(String::from_iter)) {
        fuzzing::check_login(&value);
    }

    /// A login built by the rule gives back its platform code, whichever
    /// separator and tail length the deployment chose.
    #[test]
    fn composed_logins_give_back_their_platform_code(
        prefix in "[a-z][a-z0-9]{1,15}",
        code in "[a-z0-9]{1,8}",
        separator in select(vec!['_', '-', '.']),
        tail_length in 4usize..=16,
        seed in vec(0..TAIL_ALPHABET.len(), 16),
    ) {
        let tail: String = seed[..tail_length].iter().map(|&i| char::from(TAIL_ALPHABET[i])).collect();
        let rule = LoginRule { separator, tail_length };
        let login = rule.compose(&prefix, &code, &tail).unwrap();
        prop_assert_eq!(login.as_str(), format!("{prefix}{separator}{code}{tail}"));
        prop_assert_eq!(UserLogin::parse(login.as_str()).unwrap(), login.clone());
        prop_assert_eq!(fuzzing::check_platform_code(&rule, login.as_str()), Some(code.as_str()));
    }
}

// ---- passcodes and PINs ----

proptest! {
    #![proptest_config(config())]

    #[test]
    fn passcodes_split_into_pin_and_tokencode(pin in "[0-9]{4,8}", tokencode in "[0-9]{6}") {
        let typed = format!("{pin}{tokencode}");
        let parsed = fuzzing::check_passcode(&typed, false).unwrap();
        prop_assert_eq!(parsed, passcode::Passcode { pin: Some(&pin), tokencode: &tokencode });
        let parsed = fuzzing::check_passcode(&tokencode, true).unwrap();
        prop_assert_eq!(parsed, passcode::Passcode { pin: None, tokencode: &tokencode });
        fuzzing::check_new_pin(&pin);
        prop_assert!(passcode::check_new_pin(&pin).is_ok());
    }

    /// Digits of other scripts, signs, spaces and wrong lengths: one answer.
    #[test]
    fn anything_else_is_an_invalid_passcode(
        value in prop_oneof![
            tricky_text(),
            "[0-9]{0,20}",
            "[0-9]{3,8}[٠-٩０-９ +-][0-9]{0,6}",
        ],
        new_pin_mode in any::<bool>(),
    ) {
        let _ = fuzzing::check_passcode(&value, new_pin_mode);
        fuzzing::check_new_pin(&value);
    }
}

// ---- page tokens ----

proptest! {
    #![proptest_config(config())]

    /// A token gives back its cursor for its own filters only, and changing
    /// any one of its characters, cutting it or extending it gets it refused.
    #[test]
    fn page_tokens_round_trip_and_refuse_any_alteration(
        cursor in prop_oneof!["[a-zA-Z0-9_.-]{1,64}", tricky_text()],
        filters in vec(tricky_text(), 0..4),
        replacement in "[A-Za-z0-9_-]",
        cut in 1usize..8,
    ) {
        let filters: Vec<&str> = filters.iter().map(String::as_str).collect();
        let fingerprint = page_token::fingerprint(&filters);
        let token = page_token::encode(&cursor, &fingerprint);
        for position in 0..token.len() {
            fuzzing::check_cursor(&cursor, &fingerprint, position);
            let mut altered = token.clone();
            altered.replace_range(position..=position, &replacement);
            if altered != token {
                prop_assert!(page_token::decode(&altered, &fingerprint).is_err(), "{altered} accepted");
            }
        }
        let truncated = &token[..token.len().saturating_sub(cut)];
        prop_assert!(truncated.is_empty() || page_token::decode(truncated, &fingerprint).is_err());
        let extended = token.clone() + &replacement;
        prop_assert!(page_token::decode(&extended, &fingerprint).is_err());
    }

    #[test]
    fn any_token_is_read_safely(token in prop_oneof![
        tricky_text(),
        "[A-Za-z0-9_-]{0,80}",
        "[A-Za-z0-9_-]{1020,1030}",
        tricky_text().prop_map(|t| base64::Engine::encode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, t)),
        (tricky_text(), tricky_text()).prop_map(|(a, f)| {
            let json = serde_json::json!({ "a": a, "f": f, "x": 1 }).to_string();
            base64::Engine::encode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, json)
        }),
    ]) {
        let _ = fuzzing::check_page_token(&token, &page_token::fingerprint(&[]));
    }

    #[test]
    fn page_sizes_default_cap_and_refuse_negatives(requested in any::<i32>()) {
        fuzzing::check_page_size(requested);
    }
}

/// The format the fuzz seeds were written in (tests/fuzz/seeds/page_token),
/// and a token whose check is the query's alone, as tokens were before
/// alterations of the cursor were caught.
#[test]
fn tokens_check_their_query_and_their_cursor() {
    let fingerprint = page_token::fingerprint(&["unit"]);
    let seed = "eyJhIjoiZnJhbl9tIiwiZiI6IjRlMGY4MTI3MWI4M2VkMjkifQ";
    assert_eq!(page_token::decode(seed, &fingerprint), Ok(Some("fran_m".to_owned())));
    let unchecked = serde_json::json!({ "a": "fran_m", "f": fingerprint }).to_string();
    let unchecked = base64::Engine::encode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, unchecked);
    let error = page_token::decode(&unchecked, &fingerprint).unwrap_err();
    assert_eq!(error, Error::invalid("page_token", "is not a token this query returned: start again without it"));
}

// ---- X-Forwarded-For ----

fn address() -> impl Strategy<Value = IpAddr> {
    prop_oneof![
        any::<[u8; 4]>().prop_map(IpAddr::from),
        any::<[u8; 16]>().prop_map(IpAddr::from),
        (0u8..4).prop_map(|last| IpAddr::from([10, 0, 0, last])),
    ]
}

proptest! {
    #![proptest_config(config())]

    /// Whatever a client writes at the left of `x-forwarded-for`, it cannot
    /// choose the address a trusted proxy reports, and an untrusted peer is
    /// always taken at its word.
    #[test]
    fn clients_cannot_choose_their_forwarded_address(
        peer in address(),
        chain in vec(address(), 0..4),
        claims in vec(prop_oneof![address().prop_map(|ip| ip.to_string()), tricky_text()], 0..4),
    ) {
        let trusted: Vec<TrustedProxy> = vec!["10.0.0.0/30".parse().unwrap()];
        let header: Vec<String> = chain.iter().map(IpAddr::to_string).collect();
        let honest = client_address(Some(peer), Some(&header.join(", ")), &trusted).unwrap();
        let spoofed = [claims.clone(), header.clone()].concat().join(",");
        let answer = client_address(Some(peer), Some(&spoofed), &trusted).unwrap();
        let is_trusted = |ip: &IpAddr| trusted.iter().any(|proxy| proxy.contains(ip));
        if !is_trusted(&peer) {
            prop_assert_eq!(answer, peer);
        } else if !is_trusted(&honest) {
            prop_assert_eq!(answer, honest);
        } else {
            // Every hop was a trusted proxy: the client's claims are all that is left.
            prop_assert!(answer == honest || spoofed.contains(&answer.to_string()));
        }
    }

    /// Proxies that add a line of their own instead of extending the client's
    /// change nothing: however the entries are split into header lines, the
    /// answer is that of one line, and a forged first line cannot choose it.
    #[test]
    fn header_lines_read_as_one_list(
        peer in address(),
        chain in vec(address(), 1..5),
        claims in vec(prop_oneof![address().prop_map(|ip| ip.to_string()), tricky_text()], 0..3),
        cuts in vec(any::<bool>(), 0..8),
    ) {
        let trusted: Vec<TrustedProxy> = vec!["10.0.0.0/30".parse().unwrap()];
        let mut entries: Vec<String> = claims.clone();
        entries.extend(chain.iter().map(IpAddr::to_string));
        let one_line = client_address(Some(peer), Some(&entries.join(",")), &trusted);
        // Split the same entries into several lines wherever `cuts` says.
        // Entries per line, joined afterwards: an empty entry must stay an entry.
        let mut lines: Vec<Vec<&str>> = vec![Vec::new()];
        for (i, entry) in entries.iter().enumerate() {
            lines.last_mut().unwrap().push(entry);
            if cuts.get(i).copied().unwrap_or(false) && i + 1 < entries.len() {
                lines.push(Vec::new());
            }
        }
        let lines: Vec<String> = lines.iter().map(|line| line.join(",")).collect();
        let joined = forwarded_chain(lines.iter().map(|line| Some(line.as_str())));
        prop_assert_eq!(client_address(Some(peer), joined.as_deref(), &trusted), one_line);
        // The client's claims on a line of their own, first, choose nothing the proxies saw.
        let honest = client_address(Some(peer), Some(&chain.iter().map(IpAddr::to_string).collect::<Vec<_>>().join(",")), &trusted);
        let forged_first = forwarded_chain([Some(claims.join(",").as_str()), Some(chain.iter().map(IpAddr::to_string).collect::<Vec<_>>().join(",").as_str())]);
        let answer = client_address(Some(peer), forged_first.as_deref(), &trusted);
        let is_trusted = |ip: &IpAddr| trusted.iter().any(|proxy| proxy.contains(ip));
        if honest.is_some_and(|ip| !is_trusted(&ip)) {
            prop_assert_eq!(answer, honest);
        }
    }
}

// ---- the fuzz targets: their entries, their files, their seed corpus ----

fn fuzz_dir() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fuzz"))
}

proptest! {
    #![proptest_config(config())]

    /// What libFuzzer would start from: each entry on arbitrary bytes.
    #[test]
    fn fuzz_entries_hold_on_arbitrary_bytes(target in 0..fuzzing::TARGETS.len(), data in bytes(512)) {
        (fuzzing::TARGETS[target].1)(&data);
    }
}

/// The fuzz crate is not built in CI (docs/RELIABILITY.md says why): each
/// target must stay a one-line call of its entry, and every entry must have
/// a target, a `[[bin]]` and a seed corpus, which is replayed here.
#[test]
fn fuzz_targets_call_their_entries_and_their_seeds_hold() {
    let manifest = std::fs::read_to_string(fuzz_dir().join("Cargo.toml")).unwrap();
    let mut files: Vec<String> = std::fs::read_dir(fuzz_dir().join("fuzz_targets"))
        .unwrap()
        .map(|entry| entry.unwrap().file_name().into_string().unwrap())
        .collect();
    files.sort();
    let mut names: Vec<String> = fuzzing::TARGETS.iter().map(|(name, _)| format!("{name}.rs")).collect();
    names.sort();
    assert_eq!(files, names);
    for (name, entry) in fuzzing::TARGETS {
        let source = std::fs::read_to_string(fuzz_dir().join(format!("fuzz_targets/{name}.rs"))).unwrap();
        assert!(source.contains(&format!("identity::fuzzing::{name}(data)")), "{name}.rs");
        assert!(manifest.contains(&format!("name = \"{name}\"\npath = \"fuzz_targets/{name}.rs\"")), "{name}");
        let seeds: Vec<_> = std::fs::read_dir(fuzz_dir().join("seeds").join(name)).unwrap().collect();
        assert!(!seeds.is_empty(), "no seeds for {name}");
        for seed in seeds {
            entry(&std::fs::read(seed.unwrap().path()).unwrap());
        }
    }
}
