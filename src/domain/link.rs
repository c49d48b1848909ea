//! What a one-time link is for.

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum LinkPurpose {
    /// Welcome email of a new user: activates the account.
    Welcome,
    /// Admin reset with email: shows the generated password once.
    AdminReset,
    /// Self-service reset: the user chooses a new password.
    ForgotPassword,
    /// A replaced token, from support: shows the new token's provisioning once.
    TokenEnrollment,
}

impl LinkPurpose {
    pub const ALL: [LinkPurpose; 4] =
        [LinkPurpose::Welcome, LinkPurpose::AdminReset, LinkPurpose::ForgotPassword, LinkPurpose::TokenEnrollment];

    pub fn as_str(self) -> &'static str {
        match self {
            LinkPurpose::Welcome => "WELCOME",
            LinkPurpose::AdminReset => "ADMIN_RESET",
            LinkPurpose::ForgotPassword => "FORGOT_PASSWORD",
            LinkPurpose::TokenEnrollment => "TOKEN_ENROLLMENT",
        }
    }

    pub fn parse(value: &str) -> Option<LinkPurpose> {
        LinkPurpose::ALL.into_iter().find(|p| p.as_str() == value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn purposes_round_trip() {
        for purpose in LinkPurpose::ALL {
            assert_eq!(LinkPurpose::parse(purpose.as_str()), Some(purpose));
        }
    }
}
