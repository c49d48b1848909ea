//! What went wrong, in business words. Every error has one [`ErrorReason`],
//! the stable machine-readable code clients match on; the gRPC layer maps the
//! reason to a status code and `google.rpc.ErrorInfo`, in one place
//! (`grpc::status`), and the proto's `identity.v1.ErrorReason` publishes the list.

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

    /// Any other state problem, named by its reason (one of the
    /// FAILED_PRECONDITION reasons of [`ErrorReason`]).
    #[error("{message}")]
    FailedPrecondition { reason: ErrorReason, message: String },

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
    pub fn reason(&self) -> ErrorReason {
        match self {
            Error::InvalidArgument { .. } => ErrorReason::InvalidArgument,
            Error::InvalidCredentials => ErrorReason::InvalidCredentials,
            Error::InvalidPasscode => ErrorReason::InvalidPasscode,
            Error::PinRejected => ErrorReason::PinRejected,
            Error::AccountUnavailable(AccountProblem::PendingActivation) => ErrorReason::AccountPendingActivation,
            Error::AccountUnavailable(AccountProblem::Inactive) => ErrorReason::AccountInactive,
            Error::Unauthenticated(_) => ErrorReason::Unauthenticated,
            Error::PermissionDenied(_) => ErrorReason::PermissionDenied,
            Error::NotFound(_) => ErrorReason::NotFound,
            Error::AlreadyExists(_) => ErrorReason::AlreadyExists,
            Error::IllegalTransition { .. } => ErrorReason::IllegalStatusTransition,
            Error::FailedPrecondition { reason, .. } => *reason,
            Error::Throttled { .. } => ErrorReason::Throttled,
            Error::Overloaded => ErrorReason::Overloaded,
            Error::Unavailable => ErrorReason::Unavailable,
            Error::Internal(_) => ErrorReason::Internal,
        }
    }
}

/// The one list of machine-readable error reasons. It mirrors the proto enum
/// `identity.v1.ErrorReason` value for value (`ERROR_REASON_<text>`, a unit
/// test in `grpc::status` holds them together), and [`ErrorReason::as_str`]
/// is the text `ErrorInfo.reason` carries — unchanged since clients first
/// matched on it, so never rename one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorReason {
    InvalidArgument,
    PinRejected,
    InvalidCredentials,
    InvalidPasscode,
    Unauthenticated,
    PermissionDenied,
    AccountPendingActivation,
    AccountInactive,
    NotFound,
    AlreadyExists,
    IllegalStatusTransition,
    ConcurrentChange,
    LastManager,
    UserDeleted,
    UserIsContact,
    AlreadyActive,
    NoToken,
    WrongChallenge,
    BatchTooLarge,
    RequestIdReused,
    ActivationKeyUnknown,
    ActivationKeyUsed,
    ActivationKeyExpired,
    ActivationKeySuperseded,
    ActivationAccountUnavailable,
    MaintenanceOverlap,
    MaintenanceOver,
    PinnedSigningKey,
    Throttled,
    Overloaded,
    Unavailable,
    Internal,
}

impl ErrorReason {
    /// Every reason, for the tests that hold this list and the proto together.
    pub const ALL: [ErrorReason; 32] = [
        ErrorReason::InvalidArgument,
        ErrorReason::PinRejected,
        ErrorReason::InvalidCredentials,
        ErrorReason::InvalidPasscode,
        ErrorReason::Unauthenticated,
        ErrorReason::PermissionDenied,
        ErrorReason::AccountPendingActivation,
        ErrorReason::AccountInactive,
        ErrorReason::NotFound,
        ErrorReason::AlreadyExists,
        ErrorReason::IllegalStatusTransition,
        ErrorReason::ConcurrentChange,
        ErrorReason::LastManager,
        ErrorReason::UserDeleted,
        ErrorReason::UserIsContact,
        ErrorReason::AlreadyActive,
        ErrorReason::NoToken,
        ErrorReason::WrongChallenge,
        ErrorReason::BatchTooLarge,
        ErrorReason::RequestIdReused,
        ErrorReason::ActivationKeyUnknown,
        ErrorReason::ActivationKeyUsed,
        ErrorReason::ActivationKeyExpired,
        ErrorReason::ActivationKeySuperseded,
        ErrorReason::ActivationAccountUnavailable,
        ErrorReason::MaintenanceOverlap,
        ErrorReason::MaintenanceOver,
        ErrorReason::PinnedSigningKey,
        ErrorReason::Throttled,
        ErrorReason::Overloaded,
        ErrorReason::Unavailable,
        ErrorReason::Internal,
    ];

    /// The text of `google.rpc.ErrorInfo.reason`, audit rows and metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorReason::InvalidArgument => "INVALID_ARGUMENT",
            ErrorReason::PinRejected => "PIN_REJECTED",
            ErrorReason::InvalidCredentials => "INVALID_CREDENTIALS",
            ErrorReason::InvalidPasscode => "INVALID_PASSCODE",
            ErrorReason::Unauthenticated => "UNAUTHENTICATED",
            ErrorReason::PermissionDenied => "PERMISSION_DENIED",
            ErrorReason::AccountPendingActivation => "ACCOUNT_PENDING_ACTIVATION",
            ErrorReason::AccountInactive => "ACCOUNT_INACTIVE",
            ErrorReason::NotFound => "NOT_FOUND",
            ErrorReason::AlreadyExists => "ALREADY_EXISTS",
            ErrorReason::IllegalStatusTransition => "ILLEGAL_STATUS_TRANSITION",
            ErrorReason::ConcurrentChange => "CONCURRENT_CHANGE",
            ErrorReason::LastManager => "LAST_MANAGER",
            ErrorReason::UserDeleted => "USER_DELETED",
            ErrorReason::UserIsContact => "USER_IS_CONTACT",
            ErrorReason::AlreadyActive => "ALREADY_ACTIVE",
            ErrorReason::NoToken => "NO_TOKEN",
            ErrorReason::WrongChallenge => "WRONG_CHALLENGE",
            ErrorReason::BatchTooLarge => "BATCH_TOO_LARGE",
            ErrorReason::RequestIdReused => "REQUEST_ID_REUSED",
            ErrorReason::ActivationKeyUnknown => "ACTIVATION_KEY_UNKNOWN",
            ErrorReason::ActivationKeyUsed => "ACTIVATION_KEY_USED",
            ErrorReason::ActivationKeyExpired => "ACTIVATION_KEY_EXPIRED",
            ErrorReason::ActivationKeySuperseded => "ACTIVATION_KEY_SUPERSEDED",
            ErrorReason::ActivationAccountUnavailable => "ACTIVATION_ACCOUNT_UNAVAILABLE",
            ErrorReason::MaintenanceOverlap => "MAINTENANCE_OVERLAP",
            ErrorReason::MaintenanceOver => "MAINTENANCE_OVER",
            ErrorReason::PinnedSigningKey => "PINNED_SIGNING_KEY",
            ErrorReason::Throttled => "THROTTLED",
            ErrorReason::Overloaded => "OVERLOADED",
            ErrorReason::Unavailable => "UNAVAILABLE",
            ErrorReason::Internal => "INTERNAL",
        }
    }
}

impl std::fmt::Display for ErrorReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
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
    fn every_reason_is_listed_once_with_its_own_text() {
        let texts: std::collections::HashSet<&str> = ErrorReason::ALL.iter().map(|r| r.as_str()).collect();
        assert_eq!(texts.len(), ErrorReason::ALL.len());
        assert_eq!(Error::AccountUnavailable(AccountProblem::Inactive).reason().as_str(), "ACCOUNT_INACTIVE");
    }

    #[test]
    fn an_illegal_transition_names_both_states() {
        let error = Error::IllegalTransition { from: UserStatus::Deleted, to: UserStatus::Active };
        assert_eq!(error.to_string(), "cannot change a user from DELETED to ACTIVE");
    }
}
