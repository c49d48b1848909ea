//! How a request names a user: by login, which a rename changes, or by the
//! immutable id, or both, which must then agree.

use super::Error;

/// Longest id accepted: ids are UUIDs (36 characters); anything far longer is
/// refused before it reaches a query.
pub const ID_MAX: usize = 64;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UserRef {
    pub login: String,
    pub id: String,
}

impl UserRef {
    pub fn new(login: impl Into<String>, id: impl Into<String>) -> Self {
        UserRef { login: login.into(), id: id.into() }
    }

    pub fn by_login(login: impl Into<String>) -> Self {
        UserRef { login: login.into(), id: String::new() }
    }

    pub fn is_empty(&self) -> bool {
        self.login.is_empty() && self.id.is_empty()
    }

    /// The checks made before any lookup: a name is given and the id is not absurd.
    pub fn check(&self) -> Result<(), Error> {
        if self.is_empty() {
            return Err(Error::invalid("user_login", "or user_id is required"));
        }
        if self.id.len() > ID_MAX {
            return Err(Error::invalid("user_id", format!("must be at most {ID_MAX} characters")));
        }
        Ok(())
    }

    /// Whether the lookup goes by id (the login, if also given, is then checked against the user found).
    pub fn by_id(&self) -> Option<&str> {
        (!self.id.is_empty()).then_some(self.id.as_str())
    }

    /// Refuses a user found by id whose login is not the one also given:
    /// the caller meant two different users, or one under a stale login.
    pub fn agrees_with(&self, id: &str, login: &str) -> Result<(), Error> {
        let id_differs = !self.id.is_empty() && self.id != id;
        let login_differs = !self.login.is_empty() && self.login != login;
        if id_differs || login_differs {
            return Err(Error::invalid(
                "user_id",
                format!("names `{login}`, not user_login `{}`: give one of them, or both of the same user", self.login),
            ));
        }
        Ok(())
    }

    /// How a "no such user" answer names what was asked for.
    pub fn describe(&self) -> String {
        match self.by_id() {
            Some(id) => format!("id `{id}`"),
            None => format!("login `{}`", self.login),
        }
    }
}

impl std::fmt::Display for UserRef {
    /// The login when given (what people read), else the id.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.login.is_empty() { f.write_str(&self.id) } else { f.write_str(&self.login) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_user_is_named_by_login_id_or_both() {
        assert!(UserRef::default().check().is_err());
        assert!(UserRef::by_login("alice").check().is_ok());
        assert!(UserRef::new("", "0b7c").check().is_ok());
        assert!(UserRef::new("", "x".repeat(ID_MAX + 1)).check().is_err());
        assert_eq!(UserRef::by_login("alice").by_id(), None);
        assert_eq!(UserRef::new("alice", "0b7c").by_id(), Some("0b7c"));
    }

    #[test]
    fn both_names_must_be_of_the_same_user() {
        assert!(UserRef::new("alice", "0b7c").agrees_with("0b7c", "alice").is_ok());
        assert!(UserRef::new("", "0b7c").agrees_with("0b7c", "alice").is_ok());
        let stale = UserRef::new("alice", "0b7c").agrees_with("0b7c", "alice2").unwrap_err();
        assert!(matches!(stale, Error::InvalidArgument { field: "user_id", .. }));
        assert!(UserRef::new("alice", "0b7c").agrees_with("9999", "alice").is_err());
    }

    #[test]
    fn answers_name_what_was_asked_for() {
        assert_eq!(UserRef::by_login("alice").describe(), "login `alice`");
        assert_eq!(UserRef::new("alice", "0b7c").describe(), "id `0b7c`");
        assert_eq!(UserRef::new("", "0b7c").to_string(), "0b7c");
    }
}
