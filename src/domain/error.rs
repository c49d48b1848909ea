//! What went wrong, in business words. The gRPC layer maps each variant to a
//! status code, a stable reason string and the message a person reads, in one
//! place (`grpc::status`).

use std::time::Duration;

use super::UserStatus;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    #[error("{field} {message}")]
    InvalidArgument { field: &'static str, message: String },

    /// Unknown login or wrong password: the one message for both.
    #[error("Invalid credentials")]
    InvalidCredentials,

    #[error("Invalid Tokencode or PIN")]
    InvalidPasscode,

    #[error("Your new PIN has been rejected: a PIN has 4 to 8 digits")]
    PinRejected,

    #[error("{0}")]
    AccountUnavailable(AccountProblem),

    /// No usable bearer token.
    #[error("{0}")]
    Unauthenticated(String),

    #[error("{0}")]
    PermissionDenied(String),

    #[error("{0}")]
    NotFound(String),

    #[error("{0}")]
    AlreadyExists(String),

    /// A status transition the status machine does not allow.
    #[error("cannot change a user from {from} to {to}")]
    IllegalTransition { from: UserStatus, to: UserStatus },

    /// Any other state problem; `reason` is the stable machine-readable code.
    #[error("{message}")]
    FailedPrecondition { reason: &'static str, message: String },

    /// Too many attempts for now: try again after `retry_after`.
    #[error("Too many attempts: try again in {} seconds", retry_after.as_secs().max(1))]
    Throttled { retry_after: Duration },

    /// The password-hashing pool is full.
    #[error("The service is busy: try again shortly")]
    Overloaded,

    /// The database or another dependency cannot be reached.
    #[error("The service is temporarily unavailable: try again shortly")]
    Unavailable,

    /// A bug or a broken invariant. The detail goes to the log, never to the caller.
    #[error("internal error")]
    Internal(String),
}

/// Why a correct password still cannot log in. A lock after failed attempts
/// is not among them: it is answered as `InvalidCredentials`, whatever the
/// password, so that it never tells a right guess from a wrong one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AccountProblem {
    #[error(
        "Your account is pending activation: use the activation link in your welcome email, or ask your Manager for a new one"
    )]
    PendingActivation,
    #[error("Your account is inactive — contact your Manager")]
    Inactive,
}

impl Error {
    pub fn invalid(field: &'static str, message: impl Into<String>) -> Self {
        Error::InvalidArgument { field, message: message.into() }
    }

    pub fn internal(detail: impl std::fmt::Display) -> Self {
        Error::Internal(detail.to_string())
    }

    /// Stable machine-readable reason, for `google.rpc.ErrorInfo` and clients' scripts.
    pub fn reason(&self) -> &'static str {
        match self {
            Error::InvalidArgument { .. } => "INVALID_ARGUMENT",
            Error::InvalidCredentials => "INVALID_CREDENTIALS",
            Error::InvalidPasscode => "INVALID_PASSCODE",
            Error::PinRejected => "PIN_REJECTED",
            Error::AccountUnavailable(AccountProblem::PendingActivation) => "ACCOUNT_PENDING_ACTIVATION",
            Error::AccountUnavailable(AccountProblem::Inactive) => "ACCOUNT_INACTIVE",
            Error::Unauthenticated(_) => "UNAUTHENTICATED",
            Error::PermissionDenied(_) => "PERMISSION_DENIED",
            Error::NotFound(_) => "NOT_FOUND",
            Error::AlreadyExists(_) => "ALREADY_EXISTS",
            Error::IllegalTransition { .. } => "ILLEGAL_STATUS_TRANSITION",
            Error::FailedPrecondition { reason, .. } => reason,
            Error::Throttled { .. } => "THROTTLED",
            Error::Overloaded => "OVERLOADED",
            Error::Unavailable => "UNAVAILABLE",
            Error::Internal(_) => "INTERNAL",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_quote_the_support_pages() {
        assert_eq!(Error::InvalidCredentials.to_string(), "Invalid credentials");
        assert_eq!(Error::InvalidPasscode.to_string(), "Invalid Tokencode or PIN");
        assert!(Error::PinRejected.to_string().starts_with("Your new PIN has been rejected"));
        assert_eq!(
            Error::AccountUnavailable(AccountProblem::Inactive).to_string(),
            "Your account is inactive — contact your Manager"
        );
    }

    #[test]
    fn internal_details_stay_out_of_the_message() {
        let error = Error::internal("connection string postgres://secret@db");
        assert_eq!(error.to_string(), "internal error");
    }

    #[test]
    fn an_illegal_transition_names_both_states() {
        let error = Error::IllegalTransition { from: UserStatus::Deleted, to: UserStatus::Active };
        assert_eq!(error.to_string(), "cannot change a user from DELETED to ACTIVE");
    }
}
