//! Login names, subscription prefixes, email addresses, and the rule that
//! builds new logins as `<prefix><separator><platform code><random tail>`
//! (DESIGN §6) so that the platform can be read back from a username.

use std::fmt;

use super::Error;

pub const LOGIN_MIN: usize = 3;
pub const LOGIN_MAX: usize = 64;
pub const EMAIL_MAX: usize = 254;

/// A validated, case-sensitive login.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct UserLogin(String);

impl UserLogin {
    /// 3-64 characters of ASCII letters, digits, `_`, `-` and `.`, starting
    /// with a letter or digit.
    pub fn parse(value: &str) -> Result<Self, Error> {
        let length = value.chars().count();
        if !(LOGIN_MIN..=LOGIN_MAX).contains(&length) {
            return Err(Error::invalid("user_login", format!("must be {LOGIN_MIN} to {LOGIN_MAX} characters long")));
        }
        if !value.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.')) {
            return Err(Error::invalid("user_login", "may contain only letters, digits, '_', '-' and '.'"));
        }
        if !value.starts_with(|c: char| c.is_ascii_alphanumeric()) {
            return Err(Error::invalid("user_login", "must start with a letter or a digit"));
        }
        Ok(Self(value.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for UserLogin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A subscription's login prefix: 2-16 lower-case letters and digits,
/// starting with a letter.
pub fn parse_login_prefix(value: &str) -> Result<String, Error> {
    let valid = (2..=16).contains(&value.len())
        && value.starts_with(|c: char| c.is_ascii_lowercase())
        && value.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    if valid {
        Ok(value.to_owned())
    } else {
        Err(Error::invalid("login_prefix", "must be 2 to 16 lower-case letters and digits, starting with a letter"))
    }
}

/// A plausible email address: one `@`, a non-empty local part, a dotted
/// domain, no white space, at most 254 characters. Deliverability is proven
/// by the activation link, not by syntax.
pub fn parse_email(value: &str) -> Result<String, Error> {
    let trimmed = value.trim();
    let invalid = || Error::invalid("email", "must be an address such as name@example.com");
    if trimmed.is_empty() || trimmed.len() > EMAIL_MAX || trimmed.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(invalid());
    }
    let (local, domain) = trimmed.split_once('@').ok_or_else(invalid)?;
    let domain_ok = !domain.contains('@')
        && domain.contains('.')
        && domain.split('.').all(|label| !label.is_empty() && !label.starts_with('-') && !label.ends_with('-'));
    if local.is_empty() || !domain_ok {
        return Err(invalid());
    }
    Ok(trimmed.to_owned())
}

/// How generated logins are built and read back.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LoginRule {
    pub separator: char,
    pub tail_length: usize,
}

/// Characters of the random tail: lower-case letters and digits without the
/// look-alikes `0 o 1 l i`, so a login read aloud or copied by hand survives.
pub const TAIL_ALPHABET: &[u8] = b"abcdefghjkmnpqrstuvwxyz23456789";

impl LoginRule {
    /// Builds `<prefix><separator><code><tail>`.
    pub fn compose(&self, prefix: &str, platform_code: &str, tail: &str) -> Result<UserLogin, Error> {
        UserLogin::parse(&format!("{prefix}{}{platform_code}{tail}", self.separator))
    }

    /// The platform code inside a login built by [`LoginRule::compose`]: the
    /// part after the last separator, less the random tail.
    pub fn platform_code<'a>(&self, login: &'a str) -> Option<&'a str> {
        let (_, rest) = login.rsplit_once(self.separator)?;
        let code_len = rest.len().checked_sub(self.tail_length)?;
        let (code, tail) = rest.split_at_checked(code_len)?;
        let tail_ok = tail.bytes().all(|b| TAIL_ALPHABET.contains(&b));
        (!code.is_empty() && tail_ok).then_some(code)
    }
}

/// Each login once, in the order first named, white space trimmed, empty
/// names dropped: how a batch (gRPC or the legacy API's comma list) reads the
/// logins it is given.
pub fn distinct_logins<'a>(logins: impl IntoIterator<Item = &'a str>) -> Vec<String> {
    // A set, not a scan of the list: a legacy body of 128 KiB names tens of thousands of logins.
    let mut seen = std::collections::HashSet::new();
    logins
        .into_iter()
        .map(str::trim)
        .filter(|login| !login.is_empty() && seen.insert(*login))
        .map(str::to_owned)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logins_are_checked_for_length_characters_and_first_character() {
        for good in ["abc", "john_d", "fran.m-2", "A1", "Z9z", &"a".repeat(64)] {
            if good.len() >= LOGIN_MIN {
                assert!(UserLogin::parse(good).is_ok(), "{good}");
            }
        }
        for bad in ["", "ab", "_abc", ".abc", "has space", "ünï", "semi;colon", &"a".repeat(65)] {
            assert!(UserLogin::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn logins_keep_their_case() {
        assert_ne!(UserLogin::parse("John_D").unwrap(), UserLogin::parse("john_d").unwrap());
    }

    #[test]
    fn prefixes_are_lower_case_letters_and_digits() {
        assert!(parse_login_prefix("acme").is_ok());
        assert!(parse_login_prefix("acme2").is_ok());
        for bad in ["a", "Acme", "2acme", "ac-me", "abcdefghijklmnopq"] {
            assert!(parse_login_prefix(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn emails_need_a_local_part_and_a_dotted_domain() {
        assert_eq!(parse_email(" fran@example.com ").unwrap(), "fran@example.com");
        for bad in [
            "",
            "fran",
            "fran@",
            "@example.com",
            "fran@example",
            "fr an@example.com",
            "a@b@c.com",
            "a@.com",
            "a@-x.com",
        ] {
            assert!(parse_email(bad).is_err(), "{bad}");
        }
        assert!(parse_email(&format!("{}@example.com", "a".repeat(250))).is_err());
    }

    #[test]
    fn a_composed_login_gives_back_its_platform_code() {
        let rule = LoginRule { separator: '_', tail_length: 6 };
        let login = rule.compose("acme", "us2", "k7q4ab").unwrap();
        assert_eq!(login.as_str(), "acme_us2k7q4ab");
        assert_eq!(rule.platform_code(login.as_str()), Some("us2"));
    }

    #[test]
    fn logins_not_built_by_the_rule_have_no_platform_code() {
        let rule = LoginRule { separator: '_', tail_length: 6 };
        assert_eq!(rule.platform_code("johnd"), None);
        assert_eq!(rule.platform_code("john_d"), None);
        assert_eq!(rule.platform_code("acme_k7q4ab"), None, "tail only, no code");
        assert_eq!(rule.platform_code("acme_us2K7Q4AB"), None, "tail outside the alphabet");
    }

    #[test]
    fn batches_name_each_login_once_in_order() {
        assert_eq!(distinct_logins(["fran_m", " mike_fn ", "fran_m", "", "ann", "  "]), ["fran_m", "mike_fn", "ann"]);
        assert!(distinct_logins([",", ""].into_iter().flat_map(|s| s.split(','))).is_empty());
    }
}
