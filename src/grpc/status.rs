//! The one mapping from domain errors to gRPC statuses: code, the message a
//! person reads, and `google.rpc.ErrorInfo` with a stable reason (domain
//! `identity.v1`), plus RetryInfo for throttling and BadRequest for bad fields.

use std::collections::HashMap;

use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

use crate::domain::Error;

pub const ERROR_DOMAIN: &str = "identity.v1";

impl From<Error> for Status {
    fn from(error: Error) -> Self {
        let code = match &error {
            Error::InvalidArgument { .. } | Error::PinRejected => Code::InvalidArgument,
            Error::InvalidCredentials | Error::InvalidPasscode | Error::Unauthenticated(_) => Code::Unauthenticated,
            Error::PermissionDenied(_) => Code::PermissionDenied,
            Error::NotFound(_) => Code::NotFound,
            Error::AlreadyExists(_) => Code::AlreadyExists,
            Error::AccountUnavailable(_) | Error::IllegalTransition { .. } | Error::FailedPrecondition { .. } => {
                Code::FailedPrecondition
            }
            Error::Throttled { .. } | Error::Overloaded => Code::ResourceExhausted,
            Error::Unavailable => Code::Unavailable,
            Error::Internal(detail) => {
                tracing::error!(%detail, "internal error");
                Code::Internal
            }
        };
        let mut details = ErrorDetails::with_error_info(error.reason(), ERROR_DOMAIN, HashMap::new());
        match &error {
            Error::Throttled { retry_after } => {
                details.set_retry_info(Some(*retry_after));
            }
            Error::InvalidArgument { field, message } => {
                details.add_bad_request_violation(*field, message.clone());
            }
            _ => {}
        }
        Status::with_error_details(code, error.to_string(), details)
    }
}

/// The reason of a status made by this module, for clients and tests.
pub fn reason(status: &Status) -> Option<String> {
    status.get_error_details().error_info().map(|info| info.reason.clone())
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::domain::error::AccountProblem;

    #[test]
    fn each_error_gets_its_code_message_and_reason() {
        let cases = [
            (Error::InvalidCredentials, Code::Unauthenticated, "INVALID_CREDENTIALS"),
            (Error::AccountUnavailable(AccountProblem::Inactive), Code::FailedPrecondition, "ACCOUNT_INACTIVE"),
            (Error::Throttled { retry_after: Duration::from_secs(3) }, Code::ResourceExhausted, "THROTTLED"),
            (Error::Overloaded, Code::ResourceExhausted, "OVERLOADED"),
            (Error::invalid("email", "must be an address"), Code::InvalidArgument, "INVALID_ARGUMENT"),
            (Error::NotFound("no such user".into()), Code::NotFound, "NOT_FOUND"),
            (Error::Unavailable, Code::Unavailable, "UNAVAILABLE"),
        ];
        for (error, code, reason_text) in cases {
            let message = error.to_string();
            let status = Status::from(error);
            assert_eq!(status.code(), code);
            assert_eq!(status.message(), message);
            assert_eq!(reason(&status).as_deref(), Some(reason_text));
        }
    }

    #[test]
    fn throttling_says_when_to_retry_and_bad_fields_are_named() {
        let status = Status::from(Error::Throttled { retry_after: Duration::from_secs(7) });
        let retry = status.get_error_details().retry_info().cloned().unwrap();
        assert_eq!(retry.retry_delay, Some(Duration::from_secs(7)));

        let status = Status::from(Error::invalid("email", "must be an address"));
        let violations = status.get_error_details().bad_request().cloned().unwrap().field_violations;
        assert_eq!(violations[0].field, "email");
    }
}
