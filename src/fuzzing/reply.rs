//! The legacy XML reply: rendered from decoded input, then read back with the
//! checks of a conforming XML 1.0 parser and compared with what it must say.

use quick_xml::{
    Reader, XmlVersion,
    escape::resolve_predefined_entity,
    events::{BytesStart, Event},
};
use time::{OffsetDateTime, format_description::well_known::Rfc3339};

use super::text;
use crate::{
    domain::Secret,
    gateway::xml::{API_NAME, Changed, NotChanged, Outcome, done_message, render},
};

/// The REASON codes of the DTD.
pub const REASON_CODES: [&str; 7] =
    ["UNKNOWN_USER", "DELETED", "CONTACT", "SELF", "OUT_OF_SCOPE", "THROTTLED", "OTHER"];

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
        api_name: API_NAME.to_owned(),
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
            reply.message = done_message(changed.len(), not_changed.len());
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
