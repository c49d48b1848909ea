//! The bad-input harness shared by the cargo-fuzz targets (`tests/fuzz`) and
//! the property tests (`tests/properties.rs`). Each entry in [`TARGETS`] takes
//! arbitrary bytes, feeds them to one parser or to the XML writer, and panics
//! when an invariant breaks, so libFuzzer and proptest hunt the same bugs. The
//! `check_*` functions hold the invariants for inputs already decoded.

use std::collections::HashSet;

use axum::http::{HeaderMap, HeaderValue, header};
use base64::{Engine, engine::general_purpose::STANDARD};
use quick_xml::{
    Reader, XmlVersion,
    escape::resolve_predefined_entity,
    events::{BytesStart, Event},
};
use time::{OffsetDateTime, format_description::well_known::Rfc3339};

use crate::{
    domain::{
        Error, Secret, UserLogin,
        login::{LoginRule, TAIL_ALPHABET, parse_email, parse_login_prefix},
        page_token, passcode,
    },
    gateway::{
        legacy::{Credentials, Failing, Failure, Params, Targets, parse_params},
        xml::{Changed, NotChanged, Outcome, render},
    },
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

/// The REASON codes of the DTD.
pub const REASON_CODES: [&str; 7] =
    ["UNKNOWN_USER", "DELETED", "CONTACT", "SELF", "OUT_OF_SCOPE", "THROTTLED", "OTHER"];

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
                matches!(failure.kind(), Failing::UnknownParameter | Failing::MissingParameter | Failing::InvalidValue),
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

// ---- the legacy XML reply ----

/// Flags byte (0: FAILED), then fields split at 0xFF: the API user, then for
/// FAILED the message, otherwise (kind byte + login, text) pairs: kind 0 a
/// change without password, 1 a change with the text as password, else not
/// changed with the text as message.
pub fn xml_reply(data: &[u8]) {
    let Some((&flags, rest)) = data.split_first() else {
        return;
    };
    let mut fields = rest.split(|&b| b == 0xFF);
    let username = text(fields.next().unwrap_or_default());
    let outcome = if flags == 0 {
        let number = u32::try_from(rest.len()).unwrap_or(u32::MAX);
        Outcome::Failed { number, message: text(fields.next().unwrap_or_default()) }
    } else {
        let (mut changed, mut not_changed) = (Vec::new(), Vec::new());
        while let (Some(login), Some(extra)) = (fields.next(), fields.next()) {
            let (kind, login) = login.split_first().map_or((0, login), |(k, l)| (*k, l));
            let (login, extra) = (text(login), text(extra));
            match kind {
                0 => changed.push(Changed { user_login: login, password: None }),
                1 => changed.push(Changed { user_login: login, password: Some(Secret::new(extra)) }),
                k => not_changed.push(NotChanged {
                    user_login: login,
                    code: REASON_CODES[usize::from(k) % REASON_CODES.len()],
                    message: extra,
                }),
            }
        }
        Outcome::Done { changed, not_changed }
    };
    let at = OffsetDateTime::from_unix_timestamp(1_752_495_777).expect("a 2025 instant");
    check_reply("password_change_output.dtd", &username, at, &outcome);
}

/// Renders the reply, reads it back as a conforming XML parser would, and
/// checks that it says what `outcome` says. Returns the document.
pub fn check_reply(dtd_url: &str, username: &str, at: OffsetDateTime, outcome: &Outcome) -> Vec<u8> {
    let document = render(dtd_url, username, at, outcome);
    match read_reply(&document) {
        Ok(read) => assert_eq!(read, expected_reply(username, at, outcome), "{}", String::from_utf8_lossy(&document)),
        Err(error) => panic!("not well-formed ({error}):\n{}", String::from_utf8_lossy(&document)),
    }
    document
}

/// A reply as a reader sees it.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Reply {
    pub api_name: String,
    pub username: String,
    pub at: String,
    pub status: String,
    pub number: Option<String>,
    pub message: String,
    pub changed: Option<Vec<ReplyUser>>,
    pub not_changed: Option<Vec<ReplyUser>>,
}

#[derive(Debug, PartialEq, Eq)]
pub struct ReplyUser {
    pub login: String,
    pub password: Option<String>,
    /// REASON's code and text.
    pub reason: Option<(String, String)>,
}

/// What the reply must carry for `text`: XML 1.0 cannot hold most control
/// characters, not even as references, so those read as U+FFFD.
pub fn xml_text(text: &str) -> String {
    text.chars().map(|c| if is_xml_char(c) { c } else { '\u{FFFD}' }).collect()
}

/// The `Char` production of XML 1.0.
pub fn is_xml_char(c: char) -> bool {
    matches!(c, '\t' | '\n' | '\r' | '\u{20}'..='\u{D7FF}' | '\u{E000}'..='\u{FFFD}' | '\u{10000}'..)
}

/// The reply `render` must write for this outcome.
pub fn expected_reply(username: &str, at: OffsetDateTime, outcome: &Outcome) -> Reply {
    let mut reply = Reply {
        api_name: crate::gateway::xml::API_NAME.to_owned(),
        username: xml_text(username),
        at: at.replace_nanosecond(0).unwrap_or(at).format(&Rfc3339).unwrap_or_default(),
        status: outcome.status().to_owned(),
        ..Reply::default()
    };
    match outcome {
        Outcome::Failed { number, message } => {
            reply.number = Some(number.to_string());
            reply.message = xml_text(message);
        }
        Outcome::Done { changed, not_changed } => {
            reply.message = if not_changed.is_empty() {
                crate::gateway::xml::SUCCESS_MESSAGE.to_owned()
            } else {
                format!(
                    "{} of {} users could not be changed: see NOT_CHANGED",
                    not_changed.len(),
                    changed.len() + not_changed.len()
                )
            };
            let users = changed.iter().map(|user| ReplyUser {
                login: xml_text(&user.user_login),
                password: user.password.as_ref().map(|p| xml_text(p.expose())),
                reason: None,
            });
            reply.changed = Some(users.collect());
            let users = not_changed.iter().map(|user| ReplyUser {
                login: xml_text(&user.user_login),
                password: None,
                reason: Some((user.code.to_owned(), xml_text(&user.message))),
            });
            reply.not_changed = (!not_changed.is_empty()).then(|| users.collect());
        }
    }
    reply
}

/// An element as read: name, attribute values after normalisation, and
/// children (text already joined, references resolved).
#[derive(Debug)]
struct Element {
    name: String,
    attributes: Vec<(String, String)>,
    children: Vec<Node>,
}

#[derive(Debug)]
enum Node {
    Element(Element),
    Text(String),
}

/// Reads a reply with the checks of a conforming XML 1.0 parser that matter
/// here (characters, references, nesting, attributes, one root), then the
/// structure of the DTD; `xmllint --valid` stays the judge of validity.
pub fn read_reply(document: &[u8]) -> Result<Reply, String> {
    let source = std::str::from_utf8(document).map_err(|e| format!("not UTF-8: {e}"))?;
    if let Some(bad) = source.chars().find(|&c| !is_xml_char(c)) {
        return Err(format!("character U+{:04X} is not allowed in XML 1.0", bad as u32));
    }
    let mut reader = Reader::from_str(source);
    let mut stack: Vec<Element> = Vec::new();
    let (mut declared, mut doctype, mut root) = (false, false, None);
    loop {
        let event = reader.read_event().map_err(|e| format!("at {}: {e}", reader.buffer_position()))?;
        let text = match event {
            Event::Decl(decl) => {
                let version = decl.version().map_err(|e| e.to_string())?;
                if declared || root.is_some() || !stack.is_empty() || version.as_ref() != "1.0" {
                    return Err("misplaced or unexpected XML declaration".into());
                }
                declared = true;
                continue;
            }
            Event::DocType(_) => {
                if doctype || root.is_some() || !stack.is_empty() {
                    return Err("misplaced DOCTYPE".into());
                }
                doctype = true;
                continue;
            }
            Event::Start(start) => {
                stack.push(element(&start)?);
                continue;
            }
            Event::Empty(start) => {
                let element = element(&start)?;
                close(&mut stack, &mut root, element)?;
                continue;
            }
            Event::End(_) => {
                let element = stack.pop().ok_or("unmatched end tag")?;
                close(&mut stack, &mut root, element)?;
                continue;
            }
            Event::Text(text) => {
                if text.contains("]]>") {
                    return Err("`]]>` in character data".into());
                }
                text.xml10_content().into_owned()
            }
            Event::CData(data) => data.xml10_content().into_owned(),
            Event::GeneralRef(reference) => match reference.resolve_char_ref().map_err(|e| e.to_string())? {
                Some(c) if is_xml_char(c) => c.to_string(),
                Some(c) => return Err(format!("reference to U+{:04X}", c as u32)),
                None => {
                    let name: &str = &reference;
                    resolve_predefined_entity(name).ok_or(format!("undefined entity &{name};"))?.to_owned()
                }
            },
            Event::Comment(_) | Event::PI(_) => continue,
            Event::Eof => break,
        };
        match stack.last_mut() {
            Some(parent) => match parent.children.last_mut() {
                Some(Node::Text(previous)) => previous.push_str(&text),
                _ => parent.children.push(Node::Text(text)),
            },
            None if text.trim_matches(['\t', '\n', '\r', ' ']).is_empty() => {}
            None => return Err("text outside the root element".into()),
        }
    }
    if !declared || !doctype {
        return Err("no XML declaration or no DOCTYPE".into());
    }
    if !stack.is_empty() {
        return Err("unclosed elements".into());
    }
    reply(root.ok_or("no root element")?)
}

fn element(start: &BytesStart<'_>) -> Result<Element, String> {
    let name = start.name().as_ref().to_owned();
    let mut attributes = Vec::new();
    for attribute in start.attributes().with_checks(true) {
        let attribute = attribute.map_err(|e| format!("attribute of {name}: {e}"))?;
        if attribute.value.contains('<') {
            return Err(format!("`<` in an attribute of {name}"));
        }
        let key = attribute.key.as_ref().to_owned();
        let value = attribute.normalized_value(XmlVersion::Explicit1_0).map_err(|e| format!("{name}@{key}: {e}"))?;
        if let Some(bad) = value.chars().find(|&c| !is_xml_char(c)) {
            return Err(format!("{name}@{key} holds U+{:04X}", bad as u32));
        }
        attributes.push((key, value.into_owned()));
    }
    Ok(Element { name, attributes, children: Vec::new() })
}

fn close(stack: &mut [Element], root: &mut Option<Element>, element: Element) -> Result<(), String> {
    match stack.last_mut() {
        Some(parent) => parent.children.push(Node::Element(element)),
        None if root.is_none() => *root = Some(element),
        None => return Err("a second root element".into()),
    }
    Ok(())
}

fn reply(root: Element) -> Result<Reply, String> {
    let [api, ret] = elements(&root, "PASSWORD_CHANGE_OUTPUT", &[])?[..] else {
        return Err("PASSWORD_CHANGE_OUTPUT must hold API and RETURN".into());
    };
    if !elements(api, "API", &["name", "username", "at"])?.is_empty() {
        return Err("API is not empty".into());
    }
    let mut reply = Reply {
        api_name: attribute(api, "API", "name")?,
        username: attribute(api, "API", "username")?,
        at: attribute(api, "API", "at")?,
        ..Reply::default()
    };
    let ret_children = elements(ret, "RETURN", &["status", "number"])?;
    reply.status = attribute(ret, "RETURN", "status")?;
    reply.number = ret.attributes.iter().find(|(k, _)| k == "number").map(|(_, v)| v.clone());
    let mut children = ret_children.into_iter();
    reply.message = pcdata(children.next().ok_or("RETURN has no MESSAGE")?, "MESSAGE", &[])?;
    for list in children {
        let users = user_list(list)?;
        let slot = match list.name.as_str() {
            "CHANGES" if reply.changed.is_none() && reply.not_changed.is_none() => &mut reply.changed,
            "NOT_CHANGED" if reply.not_changed.is_none() => &mut reply.not_changed,
            other => return Err(format!("unexpected {other} in RETURN")),
        };
        *slot = Some(users);
    }
    Ok(reply)
}

/// The child elements of an element that holds no text but white space.
fn elements<'a>(element: &'a Element, name: &str, allowed: &[&str]) -> Result<Vec<&'a Element>, String> {
    if element.name != name {
        return Err(format!("{} where {name} belongs", element.name));
    }
    check_attributes(element, allowed)?;
    let mut children = Vec::new();
    for child in &element.children {
        match child {
            Node::Element(child) => children.push(child),
            Node::Text(text) if text.trim_matches(['\t', '\n', '\r', ' ']).is_empty() => {}
            Node::Text(text) => return Err(format!("text {text:?} in {name}")),
        }
    }
    Ok(children)
}

/// The text of an element that holds only text.
fn pcdata(element: &Element, name: &str, allowed: &[&str]) -> Result<String, String> {
    if element.name != name {
        return Err(format!("{} where {name} belongs", element.name));
    }
    check_attributes(element, allowed)?;
    let mut text = String::new();
    for child in &element.children {
        match child {
            Node::Text(part) => text.push_str(part),
            Node::Element(child) => return Err(format!("{} inside {name}", child.name)),
        }
    }
    Ok(text)
}

fn check_attributes(element: &Element, allowed: &[&str]) -> Result<(), String> {
    match element.attributes.iter().find(|(key, _)| !allowed.contains(&key.as_str())) {
        Some((key, _)) => Err(format!("{}@{key} is not declared", element.name)),
        None => Ok(()),
    }
}

fn attribute(element: &Element, name: &str, key: &str) -> Result<String, String> {
    let value = element.attributes.iter().find(|(k, _)| k == key).map(|(_, v)| v.clone());
    value.ok_or(format!("{name}@{key} is missing"))
}

fn user_list(list: &Element) -> Result<Vec<ReplyUser>, String> {
    let [inner] = elements(list, &list.name, &["count"])?[..] else {
        return Err(format!("{} must hold one USER_LIST", list.name));
    };
    let mut users = Vec::new();
    for user in elements(inner, "USER_LIST", &[])? {
        let children = elements(user, "USER", &[])?;
        let login = pcdata(children.first().ok_or("USER without USER_LOGIN")?, "USER_LOGIN", &[])?;
        let (password, reason) = match children.get(1..).unwrap_or_default() {
            [] => (None, None),
            [password] if password.name == "PASSWORD" => (Some(pcdata(password, "PASSWORD", &[])?), None),
            [reason] => {
                let code = attribute(reason, "REASON", "code")?;
                if !REASON_CODES.contains(&code.as_str()) {
                    return Err(format!("REASON code {code:?} is not in the DTD"));
                }
                (None, Some((code, pcdata(reason, "REASON", &["code"])?)))
            }
            _ => return Err("USER holds more than USER_LOGIN and one PASSWORD or REASON".into()),
        };
        users.push(ReplyUser { login, password, reason });
    }
    if attribute(list, &list.name, "count")? != users.len().to_string() {
        return Err(format!("{}@count is not the number of users", list.name));
    }
    Ok(users)
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
