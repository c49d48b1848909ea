//! Email bodies, text and HTML. Every inserted value is HTML-escaped in the
//! HTML body.

pub struct Rendered {
    pub kind: &'static str,
    pub subject: String,
    pub text: String,
    pub html: String,
}

pub fn account_locked(login: &str, attempts: i32) -> Rendered {
    let text = format!(
        "Your account {login} was locked after {attempts} failed login attempts in a row.\n\n\
         If this was not you, someone may be guessing your password.\n\
         Contact your Manager to re-activate the account.\n"
    );
    let html = page(&format!(
        "<p>Your account <strong>{}</strong> was locked after {attempts} failed login attempts in a row.</p>\
         <p>If this was not you, someone may be guessing your password.</p>\
         <p>Contact your Manager to re-activate the account.</p>",
        escape(login)
    ));
    Rendered { kind: "account_locked", subject: "Your account was locked".to_owned(), text, html }
}

/// The welcome email: the login, where to log in, and the one-time link
/// that activates the account.
pub fn welcome(login: &str, login_url: &str, link: &str, ttl_hours: u64) -> Rendered {
    let text = format!(
        "Welcome! An account was created for you.\n\n\
         Username: {login}\n\
         Login page: {login_url}\n\n\
         Activate your account with this one-time link (valid {ttl_hours} hours):\n{link}\n\n\
         The link opens a page with a button; nothing happens until you press it.\n"
    );
    let html = page(&format!(
        "<p>Welcome! An account was created for you.</p>\
         <p>Username: <strong>{}</strong><br>Login page: <a href=\"{}\">{}</a></p>\
         <p><a href=\"{}\">Activate your account</a> (one-time link, valid {ttl_hours} hours).</p>\
         <p>The link opens a page with a button; nothing happens until you press it.</p>",
        escape(login),
        escape(login_url),
        escape(login_url),
        escape(link)
    ));
    Rendered { kind: "welcome", subject: "Your new account".to_owned(), text, html }
}

/// An admin reset the password: a one-time link shows the new one.
pub fn password_reset(login: &str, link: &str, ttl_hours: u64) -> Rendered {
    password_reset_by(login, link, ttl_hours, "your Manager")
}

/// [`password_reset`], done by `by` ("your Manager", "platform support").
pub fn password_reset_by(login: &str, link: &str, ttl_hours: u64, by: &str) -> Rendered {
    let text = format!(
        "The password of your account {login} was reset by {by}.\n\n\
         View your new password once with this link (valid {ttl_hours} hours):\n{link}\n\n\
         The link opens a page with a button; the password is shown only after you press it.\n"
    );
    let html = page(&format!(
        "<p>The password of your account <strong>{}</strong> was reset by {}.</p>\
         <p><a href=\"{}\">View your new password</a> (one-time link, valid {ttl_hours} hours).</p>\
         <p>The link opens a page with a button; the password is shown only after you press it.</p>",
        escape(login),
        escape(by),
        escape(link)
    ));
    Rendered { kind: "password_reset", subject: "Your password was reset".to_owned(), text, html }
}

/// Self-service reset of an ACTIVE account: a link to choose a new password.
pub fn forgot_password(login: &str, link: &str, ttl_hours: u64) -> Rendered {
    let text = format!(
        "Someone (hopefully you) asked to reset the password of {login}.\n\n\
         Choose a new password with this one-time link (valid {ttl_hours} hours):\n{link}\n\n\
         If you did not ask, ignore this email: your password stays as it is.\n"
    );
    let html = page(&format!(
        "<p>Someone (hopefully you) asked to reset the password of <strong>{}</strong>.</p>\
         <p><a href=\"{}\">Choose a new password</a> (one-time link, valid {ttl_hours} hours).</p>\
         <p>If you did not ask, ignore this email: your password stays as it is.</p>",
        escape(login),
        escape(link)
    ));
    Rendered { kind: "forgot_password", subject: "Reset your password".to_owned(), text, html }
}

/// Self-service reset of an INACTIVE account: no link, whom to ask instead.
pub fn account_inactive(login: &str) -> Rendered {
    let text = format!(
        "Someone (hopefully you) asked to reset the password of {login}.\n\n\
         Your account is inactive — contact your Manager to re-activate it; then you can reset your password.\n"
    );
    let html = page(&format!(
        "<p>Someone (hopefully you) asked to reset the password of <strong>{}</strong>.</p>\
         <p>Your account is inactive — contact your Manager to re-activate it; then you can reset your password.</p>",
        escape(login)
    ));
    Rendered { kind: "account_inactive", subject: "Your account is inactive".to_owned(), text, html }
}

/// An admin reset the PIN: the next login takes the tokencode alone.
pub fn pin_reset(login: &str) -> Rendered {
    pin_reset_by(login, "your Manager")
}

/// [`pin_reset`], done by `by` ("your Manager", "platform support").
pub fn pin_reset_by(login: &str, by: &str) -> Rendered {
    let text = format!(
        "The PIN of your token for {login} was reset by {by}.\n\n\
         At your next login, enter the tokencode only; you will then choose a new PIN of 4 to 8 digits.\n"
    );
    let html = page(&format!(
        "<p>The PIN of your token for <strong>{}</strong> was reset by {}.</p>\
         <p>At your next login, enter the tokencode only; you will then choose a new PIN of 4 to 8 digits.</p>",
        escape(login),
        escape(by)
    ));
    Rendered { kind: "pin_reset", subject: "Your PIN was reset".to_owned(), text, html }
}

/// Tells a subscription's Managers that platform support rescued one of its
/// accounts: what was done, by whom, and why.
pub fn rescue_notice(target_login: &str, what: &str, by: &str, reason: &str) -> Rendered {
    let text = format!(
        "Platform support acted on the account {target_login} of your subscription.\n\n\
         What: {what}\n\
         By: {by}\n\
         Reason given: {reason}\n\n\
         If nobody in your subscription asked for this, contact platform support.\n"
    );
    let html = page(&format!(
        "<p>Platform support acted on the account <strong>{}</strong> of your subscription.</p>\
         <p>What: {}<br>By: {}<br>Reason given: {}</p>\
         <p>If nobody in your subscription asked for this, contact platform support.</p>",
        escape(target_login),
        escape(what),
        escape(by),
        escape(reason)
    ));
    Rendered { kind: "rescue_notice", subject: format!("Support acted on the account {target_login}"), text, html }
}

fn page(body: &str) -> String {
    format!("<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"></head><body>{body}</body></html>")
}

/// Escapes the five characters that matter in HTML text and attributes.
pub fn escape(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            _ => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_escaped_in_html() {
        let mail = account_locked("<script>", 5);
        assert!(mail.html.contains("&lt;script&gt;"));
        assert!(!mail.html.contains("<script>"));
        assert!(mail.text.contains("<script> was locked after 5 failed"));
    }
}
