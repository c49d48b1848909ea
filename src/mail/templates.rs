//! Email bodies, text and HTML, rendered by minijinja from the templates in
//! `src/mail/templates/`: a `.txt` and an `.html` variant per email. The HTML
//! variants are auto-escaped (by their extension), the text ones are not.

use std::sync::LazyLock;

use minijinja::{Environment, UndefinedBehavior, Value, context};

pub struct Rendered {
    pub kind: &'static str,
    pub subject: String,
    pub text: String,
    pub html: String,
}

/// Every email's two variants, named `<kind>.txt` and `<kind>.html`.
const KINDS: [(&str, &str, &str); 9] = [
    ("account_locked", include_str!("templates/account_locked.txt"), include_str!("templates/account_locked.html")),
    ("welcome", include_str!("templates/welcome.txt"), include_str!("templates/welcome.html")),
    ("password_reset", include_str!("templates/password_reset.txt"), include_str!("templates/password_reset.html")),
    ("forgot_password", include_str!("templates/forgot_password.txt"), include_str!("templates/forgot_password.html")),
    (
        "account_inactive",
        include_str!("templates/account_inactive.txt"),
        include_str!("templates/account_inactive.html"),
    ),
    ("pin_reset", include_str!("templates/pin_reset.txt"), include_str!("templates/pin_reset.html")),
    ("rescue_notice", include_str!("templates/rescue_notice.txt"), include_str!("templates/rescue_notice.html")),
    ("account_rescued", include_str!("templates/account_rescued.txt"), include_str!("templates/account_rescued.html")),
    (
        "token_enrollment",
        include_str!("templates/token_enrollment.txt"),
        include_str!("templates/token_enrollment.html"),
    ),
];

static TEMPLATES: LazyLock<Environment<'static>> = LazyLock::new(|| {
    let mut env = Environment::new();
    // Text bodies end with a newline, as a mail reader expects.
    env.set_keep_trailing_newline(true);
    // A value a template names but the code does not pass is a bug, not an empty string.
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    let sources =
        KINDS.iter().flat_map(|&(kind, text, html)| [(format!("{kind}.txt"), text), (format!("{kind}.html"), html)]);
    for (name, source) in std::iter::once(("base.html".to_owned(), include_str!("templates/base.html"))).chain(sources)
    {
        env.add_template_owned(name, source).expect("the email templates shipped in the binary parse (tested)");
    }
    env
});

fn render(kind: &'static str, subject: String, values: Value) -> Rendered {
    // The sources are compiled in and every kind is rendered by a test below
    // with the values its function passes, so a failure here is a bug in this file.
    let variant = |extension: &str| {
        TEMPLATES
            .get_template(&format!("{kind}.{extension}"))
            .and_then(|template| template.render(&values))
            .unwrap_or_else(|e| panic!("the {kind}.{extension} email template renders: {e:#}"))
    };
    Rendered { kind, subject, text: variant("txt"), html: variant("html") }
}

pub fn account_locked(login: &str, attempts: i32) -> Rendered {
    render("account_locked", "Your account was locked".to_owned(), context! { login, attempts })
}

/// The welcome email: the login, where to log in, and the one-time link
/// that activates the account.
pub fn welcome(login: &str, login_url: &str, link: &str, ttl_hours: u64) -> Rendered {
    render("welcome", "Your new account".to_owned(), context! { login, login_url, link, ttl_hours })
}

/// An admin reset the password: a one-time link shows the new one.
pub fn password_reset(login: &str, link: &str, ttl_hours: u64) -> Rendered {
    password_reset_by(login, link, ttl_hours, "your Manager")
}

/// [`password_reset`], done by `by` ("your Manager", "platform support").
pub fn password_reset_by(login: &str, link: &str, ttl_hours: u64, by: &str) -> Rendered {
    render("password_reset", "Your password was reset".to_owned(), context! { login, link, ttl_hours, by })
}

/// Self-service reset of an ACTIVE account: a link to choose a new password,
/// or, where the subscription generates passwords (`user_chooses` false), a
/// link that shows one.
pub fn forgot_password(login: &str, link: &str, ttl_hours: u64, user_chooses: bool) -> Rendered {
    render("forgot_password", "Reset your password".to_owned(), context! { login, link, ttl_hours, user_chooses })
}

/// Self-service reset of an INACTIVE account: no link, whom to ask instead.
pub fn account_inactive(login: &str) -> Rendered {
    render("account_inactive", "Your account is inactive".to_owned(), context! { login })
}

/// An admin reset the PIN: the next login takes the tokencode alone.
pub fn pin_reset(login: &str) -> Rendered {
    pin_reset_by(login, "your Manager")
}

/// [`pin_reset`], done by `by` ("your Manager", "platform support").
pub fn pin_reset_by(login: &str, by: &str) -> Rendered {
    render("pin_reset", "Your PIN was reset".to_owned(), context! { login, by })
}

/// Tells a subscription's Managers that platform support rescued one of its
/// accounts: what was done, by whom, and why.
pub fn rescue_notice(target_login: &str, what: &str, by: &str, reason: &str) -> Rendered {
    let subject = format!("Support acted on the account {target_login}");
    render("rescue_notice", subject, context! { target_login, what, by, reason })
}

/// Tells the user that platform support acted on their account (a rescue
/// whose own email says nothing else: a re-activation, a replaced token).
pub fn account_rescued(login: &str, what: &str, reason: &str) -> Rendered {
    render("account_rescued", "Support acted on your account".to_owned(), context! { login, what, reason })
}

/// Support replaced a lost token: a one-time link shows the new one, to the
/// user alone.
pub fn token_enrollment(login: &str, link: &str, ttl_hours: u64, reason: &str) -> Rendered {
    render("token_enrollment", "Your token was replaced".to_owned(), context! { login, link, ttl_hours, reason })
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOSTILE: &str = "<script>alert('x')</script>&\"";
    const LINK: &str = "https://id.example.com/activate/AbC-123_x?a=1&b=2";

    /// Every email, with the hostile value wherever a caller's text goes.
    fn every_email() -> Vec<Rendered> {
        vec![
            account_locked(HOSTILE, 5),
            welcome(HOSTILE, "https://app.example.com/login", LINK, 72),
            password_reset(HOSTILE, LINK, 24),
            password_reset_by(HOSTILE, LINK, 24, HOSTILE),
            forgot_password(HOSTILE, LINK, 1, true),
            forgot_password(HOSTILE, LINK, 1, false),
            account_inactive(HOSTILE),
            pin_reset(HOSTILE),
            pin_reset_by(HOSTILE, HOSTILE),
            rescue_notice(HOSTILE, HOSTILE, HOSTILE, HOSTILE),
            account_rescued(HOSTILE, HOSTILE, HOSTILE),
            token_enrollment(HOSTILE, LINK, 24, HOSTILE),
        ]
    }

    /// What a browser shows for an HTML-escaped value.
    fn unescape(html: &str) -> String {
        [("&lt;", "<"), ("&gt;", ">"), ("&quot;", "\""), ("&#x27;", "'"), ("&#x2f;", "/"), ("&amp;", "&")]
            .iter()
            .fold(html.to_owned(), |out, (entity, c)| out.replace(entity, c))
    }

    #[test]
    fn every_kind_has_both_variants_and_its_own_kind() {
        let kinds: Vec<&str> = every_email().iter().map(|m| m.kind).collect();
        for (kind, _, _) in KINDS {
            assert!(kinds.contains(&kind), "{kind} is not rendered by the tests");
        }
        for mail in every_email() {
            assert!(mail.text.ends_with(".\n"), "{}: {:?}", mail.kind, mail.text);
            assert!(mail.html.starts_with("<!DOCTYPE html>") && mail.html.contains("</body>"), "{}", mail.kind);
        }
    }

    #[test]
    fn values_are_escaped_in_html_and_kept_verbatim_in_text() {
        for mail in every_email() {
            assert!(!mail.html.contains("<script"), "{}: {}", mail.kind, mail.html);
            assert!(!mail.html.contains("'x'") && !mail.html.contains("&\""), "{}: {}", mail.kind, mail.html);
            assert!(mail.html.contains("&lt;script&gt;alert(&#x27;x&#x27;)"), "{}: {}", mail.kind, mail.html);
            assert!(unescape(&mail.html).contains(HOSTILE), "{}: {}", mail.kind, mail.html);
            assert!(mail.text.contains(HOSTILE), "{}: {}", mail.kind, mail.text);
        }
    }

    #[test]
    fn text_bodies_carry_no_html() {
        for mail in [
            account_locked("ann_l1", 5),
            welcome("ann_l1", "https://app.example.com/login", LINK, 72),
            password_reset_by("ann_l1", LINK, 24, "platform support"),
            forgot_password("ann_l1", LINK, 1, true),
            account_inactive("ann_l1"),
            pin_reset("ann_l1"),
            rescue_notice("ann_l1", "password reset", "ops_l1", "locked out on a Sunday"),
        ] {
            assert!(!mail.text.contains('<') && !mail.text.contains("&amp;"), "{}: {}", mail.kind, mail.text);
            assert!(mail.text.contains("ann_l1"), "{}: {}", mail.kind, mail.text);
        }
    }

    #[test]
    fn links_are_in_both_bodies() {
        let link_in = |mail: &Rendered| {
            assert!(mail.text.contains(&format!("\n{LINK}\n")), "{}: a line of its own: {}", mail.kind, mail.text);
            assert!(unescape(&mail.html).contains(&format!("<a href=\"{LINK}\">")), "{}: {}", mail.kind, mail.html);
        };
        let welcome = welcome("ann_l1", "https://app.example.com/login", LINK, 72);
        link_in(&welcome);
        let login_page = "<a href=\"https://app.example.com/login\">https://app.example.com/login</a>";
        assert!(unescape(&welcome.html).contains(login_page), "{}", welcome.html);
        assert!(welcome.text.contains("Username: ann_l1\nLogin page: https://app.example.com/login\n"));
        link_in(&password_reset("ann_l1", LINK, 24));
        link_in(&forgot_password("ann_l1", LINK, 1, true));
        link_in(&forgot_password("ann_l1", LINK, 1, false));
    }

    #[test]
    fn the_sentences_readers_and_stories_rely_on() {
        let locked = account_locked("ann_l1", 5);
        assert_eq!(locked.subject, "Your account was locked");
        assert!(locked.text.starts_with("Your account ann_l1 was locked after 5 failed login attempts in a row.\n\n"));

        let welcome = welcome("ann_l1", "https://app.example.com/login", LINK, 72);
        assert!(welcome.text.contains("one-time link (valid 72 hours):\n"), "{}", welcome.text);

        let chooses = forgot_password("ann_l1", LINK, 1, true);
        assert!(chooses.text.contains("Choose a new password with this one-time link (valid 1 hours)"));
        assert!(chooses.html.contains(">Choose a new password</a>"), "{}", chooses.html);
        let generated = forgot_password("ann_l1", LINK, 1, false);
        assert!(generated.text.contains("Get a new password, shown once, with this one-time link"));
        assert!(generated.html.contains(">Get a new password, shown once</a>"), "{}", generated.html);

        assert!(password_reset("ann_l1", LINK, 24).text.contains("was reset by your Manager.\n"));
        assert!(pin_reset_by("ann_l1", "platform support").text.contains("was reset by platform support.\n"));
        assert!(account_inactive("ann_l1").text.contains("Your account is inactive — contact your Manager"));

        let notice = rescue_notice("ann_l1", "password reset", "ops_l1", "locked out");
        assert_eq!(notice.subject, "Support acted on the account ann_l1");
        assert!(notice.text.contains("What: password reset\nBy: ops_l1\nReason given: locked out\n"));
    }
}
