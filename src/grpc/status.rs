//! The one mapping from domain errors to gRPC statuses: code, the message a
//! person reads, and `google.rpc.ErrorInfo` with a stable reason (domain
//! `identity.v1`), plus RetryInfo for throttling and BadRequest for bad fields.
//! The code follows from the reason alone ([`code`]), so one reason never
//! travels with two codes.

use std::collections::HashMap;

use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

use crate::{
    domain::{Error, ErrorReason},
    pb,
};

pub const ERROR_DOMAIN: &str = "identity.v1";

/// The prefix of `identity.v1.ErrorReason` value names; `ErrorInfo.reason` is the rest.
pub const PROTO_PREFIX: &str = "ERROR_REASON_";

impl From<Error> for Status {
    fn from(error: Error) -> Self {
        let reason = error.reason();
        if let Error::Internal(detail) = &error {
            tracing::error!(%detail, "internal error");
        }
        let mut details = ErrorDetails::with_error_info(reason.as_str(), ERROR_DOMAIN, HashMap::new());
        match &error {
            Error::Throttled { retry_after } => {
                details.set_retry_info(Some(*retry_after));
            }
            Error::InvalidArgument { field, message } => {
                details.add_bad_request_violation(*field, message.clone());
            }
            _ => {}
        }
        Status::with_error_details(code(reason), error.to_string(), details)
    }
}

/// The gRPC code each reason comes with, as `proto/identity/v1/errors.proto`
/// documents it.
pub fn code(reason: ErrorReason) -> Code {
    use ErrorReason as R;
    match reason {
        R::InvalidArgument | R::PinRejected => Code::InvalidArgument,
        R::InvalidCredentials | R::InvalidPasscode | R::Unauthenticated => Code::Unauthenticated,
        R::PermissionDenied => Code::PermissionDenied,
        R::NotFound => Code::NotFound,
        R::AlreadyExists => Code::AlreadyExists,
        R::AccountPendingActivation
        | R::AccountInactive
        | R::IllegalStatusTransition
        | R::ConcurrentChange
        | R::LastManager
        | R::UserDeleted
        | R::UserIsContact
        | R::AlreadyActive
        | R::NoToken
        | R::WrongChallenge
        | R::BatchTooLarge
        | R::RequestIdReused
        | R::ActivationKeyUnknown
        | R::ActivationKeyUsed
        | R::ActivationKeyExpired
        | R::ActivationKeySuperseded
        | R::ActivationAccountUnavailable
        | R::MaintenanceOverlap
        | R::MaintenanceOver
        | R::PinnedSigningKey => Code::FailedPrecondition,
        R::Throttled | R::Overloaded => Code::ResourceExhausted,
        R::Unavailable => Code::Unavailable,
        R::Internal => Code::Internal,
    }
}

/// The published value of each reason; the compiler makes every new domain
/// reason name its proto value, and a unit test checks the names agree.
pub fn to_proto(reason: ErrorReason) -> pb::ErrorReason {
    use ErrorReason as R;
    match reason {
        R::InvalidArgument => pb::ErrorReason::InvalidArgument,
        R::PinRejected => pb::ErrorReason::PinRejected,
        R::InvalidCredentials => pb::ErrorReason::InvalidCredentials,
        R::InvalidPasscode => pb::ErrorReason::InvalidPasscode,
        R::Unauthenticated => pb::ErrorReason::Unauthenticated,
        R::PermissionDenied => pb::ErrorReason::PermissionDenied,
        R::AccountPendingActivation => pb::ErrorReason::AccountPendingActivation,
        R::AccountInactive => pb::ErrorReason::AccountInactive,
        R::NotFound => pb::ErrorReason::NotFound,
        R::AlreadyExists => pb::ErrorReason::AlreadyExists,
        R::IllegalStatusTransition => pb::ErrorReason::IllegalStatusTransition,
        R::ConcurrentChange => pb::ErrorReason::ConcurrentChange,
        R::LastManager => pb::ErrorReason::LastManager,
        R::UserDeleted => pb::ErrorReason::UserDeleted,
        R::UserIsContact => pb::ErrorReason::UserIsContact,
        R::AlreadyActive => pb::ErrorReason::AlreadyActive,
        R::NoToken => pb::ErrorReason::NoToken,
        R::WrongChallenge => pb::ErrorReason::WrongChallenge,
        R::BatchTooLarge => pb::ErrorReason::BatchTooLarge,
        R::RequestIdReused => pb::ErrorReason::RequestIdReused,
        R::ActivationKeyUnknown => pb::ErrorReason::ActivationKeyUnknown,
        R::ActivationKeyUsed => pb::ErrorReason::ActivationKeyUsed,
        R::ActivationKeyExpired => pb::ErrorReason::ActivationKeyExpired,
        R::ActivationKeySuperseded => pb::ErrorReason::ActivationKeySuperseded,
        R::ActivationAccountUnavailable => pb::ErrorReason::ActivationAccountUnavailable,
        R::MaintenanceOverlap => pb::ErrorReason::MaintenanceOverlap,
        R::MaintenanceOver => pb::ErrorReason::MaintenanceOver,
        R::PinnedSigningKey => pb::ErrorReason::PinnedSigningKey,
        R::Throttled => pb::ErrorReason::Throttled,
        R::Overloaded => pb::ErrorReason::Overloaded,
        R::Unavailable => pb::ErrorReason::Unavailable,
        R::Internal => pb::ErrorReason::Internal,
    }
}

/// The reason text of a status made by this module, for clients and tests.
pub fn reason(status: &Status) -> Option<String> {
    status.get_error_details().error_info().map(|info| info.reason.clone())
}

/// The reason of a refusal, for the gateway's mappings: `None` when the status
/// carries no identity ErrorInfo (the transport made it) or a reason this
/// build does not know (a newer server).
pub fn error_reason(status: &Status) -> Option<pb::ErrorReason> {
    let details = status.get_error_details();
    let info = details.error_info().filter(|info| info.domain == ERROR_DOMAIN)?;
    pb::ErrorReason::from_str_name(&format!("{PROTO_PREFIX}{}", info.reason))
        .filter(|reason| *reason != pb::ErrorReason::Unspecified)
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
            (
                Error::FailedPrecondition { reason: ErrorReason::BatchTooLarge, message: "too many".into() },
                Code::FailedPrecondition,
                "BATCH_TOO_LARGE",
            ),
            (Error::PinRejected, Code::InvalidArgument, "PIN_REJECTED"),
            (Error::internal("boom"), Code::Internal, "INTERNAL"),
        ];
        for (error, code, reason_text) in cases {
            let message = error.to_string();
            let status = Status::from(error);
            assert_eq!(status.code(), code);
            assert_eq!(status.message(), message);
            assert_eq!(reason(&status).as_deref(), Some(reason_text));
        }
    }

    /// The proto enum as published by reflection: its values, from the descriptor set.
    fn published_reasons() -> Vec<(String, i32)> {
        use prost::Message;
        let set = prost_types::FileDescriptorSet::decode(pb::FILE_DESCRIPTOR_SET).unwrap();
        let file = set.file.iter().find(|f| f.name() == "identity/v1/errors.proto").expect("errors.proto is published");
        let errors = file.enum_type.iter().find(|e| e.name() == "ErrorReason").expect("ErrorReason is published");
        errors.value.iter().map(|v| (v.name().to_owned(), v.number())).collect()
    }

    #[test]
    fn every_reason_is_published_under_its_own_name_and_nothing_else_is() {
        let published = published_reasons();
        assert_eq!(published[0], ("ERROR_REASON_UNSPECIFIED".to_owned(), 0));
        // Every domain reason has its value, with the same name and a distinct number…
        let mut numbers = std::collections::HashSet::new();
        for reason in ErrorReason::ALL {
            let value = to_proto(reason);
            assert_eq!(value.as_str_name(), format!("{PROTO_PREFIX}{}", reason.as_str()), "{reason:?}");
            assert!(numbers.insert(value as i32), "{reason:?} shares its proto value");
            let status = Status::from(Error::FailedPrecondition { reason, message: String::new() });
            assert_eq!(error_reason(&status), Some(value), "{reason:?} reads back");
            assert_eq!(status.code(), code(reason));
        }
        // …and every published value but UNSPECIFIED is one of them.
        assert_eq!(numbers.len(), published.len() - 1, "a proto value has no domain reason: {published:?}");
    }

    #[test]
    fn an_unknown_or_foreign_reason_reads_as_none() {
        let foreign = ErrorDetails::with_error_info("THROTTLED", "example.com", HashMap::new());
        assert_eq!(error_reason(&Status::with_error_details(Code::ResourceExhausted, "", foreign)), None);
        let newer = ErrorDetails::with_error_info("SOMETHING_NEW", ERROR_DOMAIN, HashMap::new());
        assert_eq!(error_reason(&Status::with_error_details(Code::FailedPrecondition, "", newer)), None);
        assert_eq!(error_reason(&Status::out_of_range("too big")), None);
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
