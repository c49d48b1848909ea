//! The password policy (DESIGN §7): length, the login inside it, and strength
//! as estimated by zxcvbn.

use super::{Error, Secret};

#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PasswordPolicy {
    pub min_length: usize,
    pub max_length: usize,
    /// zxcvbn score (0-4) a password must reach.
    pub min_strength: u8,
}

impl Default for PasswordPolicy {
    fn default() -> Self {
        Self { min_length: 12, max_length: 128, min_strength: 3 }
    }
}

impl PasswordPolicy {
    /// Checks a chosen password. `context` holds words that must not make a
    /// password guessable (login, names, email), given to the estimator.
    pub fn check(&self, password: &Secret, login: &str, context: &[&str]) -> Result<(), Error> {
        let value = password.expose();
        let length = value.chars().count();
        if length < self.min_length || length > self.max_length {
            return Err(Error::invalid(
                "new_password",
                format!("must be {} to {} characters long", self.min_length, self.max_length),
            ));
        }
        if !login.is_empty() && value.to_lowercase().contains(&login.to_lowercase()) {
            return Err(Error::invalid("new_password", "must not contain the login"));
        }
        let mut inputs = vec![login];
        inputs.extend_from_slice(context);
        let score = u8::from(zxcvbn::zxcvbn(value, &inputs).score());
        if score < self.min_strength {
            return Err(Error::invalid(
                "new_password",
                "is too easy to guess: use a longer passphrase of unrelated words, or mix in digits and symbols",
            ));
        }
        Ok(())
    }

    /// The rules for a person, as shown beside a new-password form.
    pub fn rules(&self) -> Vec<String> {
        vec![
            format!("{} to {} characters", self.min_length, self.max_length),
            "must not contain your login".to_owned(),
            "must be hard to guess: a passphrase of several unrelated words works well".to_owned(),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(password: &str, login: &str) -> Result<(), Error> {
        PasswordPolicy::default().check(&Secret::new(password), login, &[])
    }

    #[test]
    fn length_bounds_are_inclusive() {
        assert!(check("Tr0ub4dor&3xQ", "fran").is_ok());
        assert!(check("x7#Kq!9vL@2m", "fran").is_ok(), "12 characters is enough");
        assert!(check("x7#Kq!9vL@2", "fran").is_err(), "11 characters is not");
        assert!(check(&"x7#Kq!9vL@2m".repeat(11), "fran").is_err(), "132 characters is too many");
    }

    #[test]
    fn the_login_may_not_appear_in_any_case() {
        assert!(check("zebra-Fran_M-orbit-42", "fran_m").is_err());
        assert!(check("zebra-kettle-orbit-42", "fran_m").is_ok());
    }

    #[test]
    fn guessable_passwords_are_refused() {
        assert!(check("password1234", "fran").is_err());
        assert!(check("aaaaaaaaaaaaaaaa", "fran").is_err());
        assert!(check("correct horse battery staple", "fran").is_ok());
    }
}
