//! The legacy reply document, written with quick-xml (escaping, CDATA), valid
//! against `password_change_output.dtd` in every case.

use quick_xml::{
    Writer,
    events::{BytesCData, BytesDecl, BytesEnd, BytesStart, BytesText, Event},
};
use time::{OffsetDateTime, macros::format_description};

use crate::domain::Secret;

pub const API_NAME: &str = "password_change.php";
pub const SUCCESS_MESSAGE: &str = "The operation was successfully completed";

/// The MESSAGE of a reset that ran: success, or how many users it could not change.
pub fn done_message(changed: usize, not_changed: usize) -> String {
    if not_changed == 0 {
        SUCCESS_MESSAGE.to_owned()
    } else {
        format!("{not_changed} of {} users could not be changed: see NOT_CHANGED", changed + not_changed)
    }
}

/// A target that was reset; `password` only when the request had email=0.
pub struct Changed {
    pub user_login: String,
    pub password: Option<Secret>,
}

/// A target that was not reset, with the reason code of the DTD and a sentence.
pub struct NotChanged {
    pub user_login: String,
    pub code: &'static str,
    pub message: String,
}

pub enum Outcome {
    /// SUCCESS when `not_changed` is empty, WARNING otherwise.
    Done {
        changed: Vec<Changed>,
        not_changed: Vec<NotChanged>,
    },
    Failed {
        number: u32,
        message: String,
    },
}

impl Outcome {
    pub fn status(&self) -> &'static str {
        match self {
            Outcome::Done { not_changed, .. } if not_changed.is_empty() => "SUCCESS",
            Outcome::Done { .. } => "WARNING",
            Outcome::Failed { .. } => "FAILED",
        }
    }
}

/// The whole document: declaration, DOCTYPE naming `dtd_url`, and the report.
pub fn render(dtd_url: &str, username: &str, at: OffsetDateTime, outcome: &Outcome) -> Vec<u8> {
    let mut writer = Writer::new_with_indent(Vec::new(), b' ', 2);
    // Writing into a Vec cannot fail.
    let _ = write_document(&mut writer, dtd_url, username, at, outcome);
    let mut bytes = writer.into_inner();
    bytes.push(b'\n');
    bytes
}

fn write_document(
    w: &mut Writer<Vec<u8>>,
    dtd_url: &str,
    username: &str,
    at: OffsetDateTime,
    outcome: &Outcome,
) -> std::io::Result<()> {
    w.write_event(Event::Decl(BytesDecl::new("1.0", Some("UTF-8"), None)))?;
    let doctype = format!("PASSWORD_CHANGE_OUTPUT SYSTEM \"{}\"", dtd_url.replace('"', "%22"));
    w.write_event(Event::DocType(BytesText::from_escaped(doctype)))?;
    w.write_event(Event::Start(BytesStart::new("PASSWORD_CHANGE_OUTPUT")))?;
    let at = at.format(format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]Z")).unwrap_or_default();
    w.create_element("API")
        .with_attribute(("name", API_NAME))
        .with_attribute(("username", xml_safe(username).as_str()))
        .with_attribute(("at", at.as_str()))
        .write_empty()?;

    let mut ret = BytesStart::new("RETURN");
    ret.push_attribute(("status", outcome.status()));
    if let Outcome::Failed { number, .. } = outcome {
        ret.push_attribute(("number", number.to_string().as_str()));
    }
    w.write_event(Event::Start(ret))?;
    match outcome {
        Outcome::Failed { message, .. } => text_element(w, "MESSAGE", message)?,
        Outcome::Done { changed, not_changed } => {
            text_element(w, "MESSAGE", &done_message(changed.len(), not_changed.len()))?;
            user_list(w, "CHANGES", changed.len(), |w| {
                for user in changed {
                    w.create_element("USER").write_inner_content(|w| {
                        text_element(w, "USER_LOGIN", &user.user_login)?;
                        if let Some(password) = &user.password {
                            w.write_event(Event::Start(BytesStart::new("PASSWORD")))?;
                            // Neither `]]>` nor `\r` occurs in generated passwords; both are
                            // kept anyway: `]]>` split across two sections, and `\r` (which
                            // parsers read inside CDATA as `\n`) as a reference between sections.
                            for (i, line) in xml_safe(password.expose()).split('\r').enumerate() {
                                if i > 0 {
                                    w.write_event(Event::Text(BytesText::from_escaped("&#13;")))?;
                                }
                                for part in BytesCData::escaped(line) {
                                    w.write_event(Event::CData(part))?;
                                }
                            }
                            w.write_event(Event::End(BytesEnd::new("PASSWORD")))?;
                        }
                        Ok(())
                    })?;
                }
                Ok(())
            })?;
            if !not_changed.is_empty() {
                user_list(w, "NOT_CHANGED", not_changed.len(), |w| {
                    for user in not_changed {
                        w.create_element("USER").write_inner_content(|w| {
                            text_element(w, "USER_LOGIN", &user.user_login)?;
                            w.create_element("REASON")
                                .with_attribute(("code", user.code))
                                .write_text_content(BytesText::new(&xml_safe(&user.message)))?;
                            Ok(())
                        })?;
                    }
                    Ok(())
                })?;
            }
        }
    }
    w.write_event(Event::End(BytesEnd::new("RETURN")))?;
    w.write_event(Event::End(BytesEnd::new("PASSWORD_CHANGE_OUTPUT")))?;
    Ok(())
}

fn user_list(
    w: &mut Writer<Vec<u8>>,
    name: &str,
    count: usize,
    users: impl FnOnce(&mut Writer<Vec<u8>>) -> std::io::Result<()>,
) -> std::io::Result<()> {
    w.create_element(name).with_attribute(("count", count.to_string().as_str())).write_inner_content(|w| {
        w.create_element("USER_LIST").write_inner_content(users)?;
        Ok(())
    })?;
    Ok(())
}

fn text_element(w: &mut Writer<Vec<u8>>, name: &str, text: &str) -> std::io::Result<()> {
    w.create_element(name).write_text_content(BytesText::new(&xml_safe(text)))?;
    Ok(())
}

/// Escaping cannot make every character legal: XML 1.0 forbids most control
/// characters even as references. Echoed input (a login that does not exist)
/// may carry them, so they become U+FFFD.
fn xml_safe(text: &str) -> String {
    text.chars()
        .map(|c| match c {
            '\t' | '\n' | '\r' => c,
            c if (c as u32) < 0x20 || c == '\u{FFFE}' || c == '\u{FFFF}' => '\u{FFFD}',
            c => c,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at() -> OffsetDateTime {
        time::macros::datetime!(2025-07-14 12:22:57 UTC)
    }

    fn text(outcome: &Outcome) -> String {
        String::from_utf8(render("https://id.example.com/password_change_output.dtd", "john_d", at(), outcome)).unwrap()
    }

    #[test]
    fn success_has_the_legacy_shape() {
        let outcome = Outcome::Done {
            changed: vec![
                Changed { user_login: "fran_m".into(), password: None },
                Changed { user_login: "mike_fn".into(), password: None },
            ],
            not_changed: vec![],
        };
        let xml = text(&outcome);
        assert!(xml.starts_with("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<!DOCTYPE PASSWORD_CHANGE_OUTPUT SYSTEM \"https://id.example.com/password_change_output.dtd\">"), "{xml}");
        assert!(
            xml.contains("<API name=\"password_change.php\" username=\"john_d\" at=\"2025-07-14T12:22:57Z\"/>"),
            "{xml}"
        );
        assert!(xml.contains("<RETURN status=\"SUCCESS\">"), "{xml}");
        assert!(xml.contains("<MESSAGE>The operation was successfully completed</MESSAGE>"), "{xml}");
        assert!(xml.contains("<CHANGES count=\"2\">"), "{xml}");
        assert!(xml.contains("<USER_LOGIN>mike_fn</USER_LOGIN>"), "{xml}");
        assert!(!xml.contains("PASSWORD>"), "{xml}");
        assert!(!xml.contains("NOT_CHANGED"), "{xml}");
    }

    #[test]
    fn passwords_are_cdata_split_around_the_end_marker() {
        let outcome = Outcome::Done {
            changed: vec![Changed { user_login: "a".into(), password: Some(Secret::new("x]]>y<&".to_owned())) }],
            not_changed: vec![],
        };
        let xml = text(&outcome);
        assert!(xml.contains("<PASSWORD><![CDATA[x]]]]><![CDATA[>y<&]]></PASSWORD>"), "{xml}");
    }

    #[test]
    fn warnings_list_the_users_not_changed_and_input_is_escaped() {
        let outcome = Outcome::Done {
            changed: vec![],
            not_changed: vec![NotChanged {
                user_login: "<b>&\u{1}".into(),
                code: "UNKNOWN_USER",
                message: "No such user".into(),
            }],
        };
        let xml = text(&outcome);
        assert!(xml.contains("<RETURN status=\"WARNING\">"), "{xml}");
        assert!(xml.contains("<CHANGES count=\"0\">"), "{xml}");
        assert!(xml.contains("<NOT_CHANGED count=\"1\">"), "{xml}");
        assert!(xml.contains("<USER_LOGIN>&lt;b&gt;&amp;\u{FFFD}</USER_LOGIN>"), "{xml}");
        assert!(xml.contains("<REASON code=\"UNKNOWN_USER\">No such user</REASON>"), "{xml}");
    }

    #[test]
    fn failures_carry_their_number() {
        let xml = text(&Outcome::Failed { number: 2000, message: "Invalid credentials".into() });
        assert!(xml.contains("<RETURN status=\"FAILED\" number=\"2000\">"), "{xml}");
        assert!(xml.contains("<MESSAGE>Invalid credentials</MESSAGE>"), "{xml}");
        assert!(!xml.contains("CHANGES"), "{xml}");
    }
}
