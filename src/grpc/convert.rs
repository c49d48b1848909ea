//! Conversions between proto messages and domain values.

use prost_types::Timestamp;
use tonic::{Request, Status};

use crate::{
    app::{
        caller::{Caller, RequestContext},
        forgot::CaptchaSolution,
        sessions::IssuedSession,
        users::UserView,
    },
    crypto::jwt::TokenRejection,
    domain::{Role, StatusReason, UserStatus, permissions::Action},
    pb,
};

pub fn timestamp(ms: i64) -> Option<Timestamp> {
    Some(Timestamp { seconds: ms.div_euclid(1000), nanos: i32::try_from(ms.rem_euclid(1000) * 1_000_000).unwrap_or(0) })
}

/// Milliseconds since the epoch of an optional proto timestamp.
pub fn timestamp_ms(timestamp: Option<Timestamp>) -> Option<i64> {
    timestamp.map(|t| t.seconds.saturating_mul(1000).saturating_add(i64::from(t.nanos / 1_000_000)))
}

/// The caller the authentication layer established.
pub fn caller<T>(request: &Request<T>) -> Result<Caller, Status> {
    request
        .extensions()
        .get::<Caller>()
        .cloned()
        .ok_or_else(|| crate::domain::Error::Unauthenticated("this call needs an access token".to_owned()).into())
}

pub fn context<T>(request: &Request<T>) -> RequestContext {
    request.extensions().get::<RequestContext>().cloned().unwrap_or_default()
}

pub fn captcha(solution: pb::CaptchaSolution) -> CaptchaSolution {
    CaptchaSolution { challenge: solution.challenge, nonce: solution.nonce }
}

pub fn session(issued: IssuedSession) -> pb::Session {
    pb::Session {
        access_token: issued.access_token.into_exposed(),
        refresh_token: issued.refresh_token.into_exposed(),
        expires_at: timestamp(issued.access_expires_at_ms),
        refresh_expires_at: timestamp(issued.refresh_expires_at_ms),
        token_type: "Bearer".to_owned(),
        session_id: issued.session_id,
        user_id: issued.user_id,
        user_login: issued.user_login,
    }
}

pub fn role_to_proto(role: Role) -> pb::Role {
    match role {
        Role::Administrator => pb::Role::Administrator,
        Role::Manager => pb::Role::Manager,
        Role::UnitManager => pb::Role::UnitManager,
        Role::Scanner => pb::Role::Scanner,
        Role::Reader => pb::Role::Reader,
        Role::Auditor => pb::Role::Auditor,
        Role::RemediationUser => pb::Role::RemediationUser,
        Role::Contact => pb::Role::Contact,
        Role::PlatformOperator => pb::Role::PlatformOperator,
    }
}

pub fn action_to_proto(action: Action) -> pb::UserAction {
    match action {
        Action::View => pb::UserAction::View,
        Action::Update => pb::UserAction::Update,
        Action::ChangeLogin => pb::UserAction::ChangeLogin,
        Action::ResetPassword => pb::UserAction::ResetPassword,
        Action::SetStatus => pb::UserAction::SetStatus,
        Action::Delete => pb::UserAction::Delete,
        Action::AssignToken => pb::UserAction::AssignToken,
        Action::ResetPin => pb::UserAction::ResetPin,
    }
}

pub fn role_from_proto(role: pb::Role) -> Option<Role> {
    Role::ALL.into_iter().find(|r| role_to_proto(*r) == role)
}

pub fn status_to_proto(status: UserStatus) -> pb::UserStatus {
    match status {
        UserStatus::Active => pb::UserStatus::Active,
        UserStatus::Inactive => pb::UserStatus::Inactive,
        UserStatus::PendingActivation => pb::UserStatus::PendingActivation,
        UserStatus::Deleted => pb::UserStatus::Deleted,
    }
}

/// None for `USER_STATUS_UNSPECIFIED`.
pub fn status_from_proto(status: pb::UserStatus) -> Option<UserStatus> {
    UserStatus::ALL.into_iter().find(|s| status_to_proto(*s) == status)
}

pub fn user_to_proto(view: UserView) -> pb::User {
    let user = view.user;
    let role = role_to_proto(user.role);
    let status = status_to_proto(user.status);
    let reason = match user.status_reason {
        Some(StatusReason::Locked) => pb::StatusReason::Locked,
        Some(StatusReason::Administrative) => pb::StatusReason::Administrative,
        Some(StatusReason::SelfService) => pb::StatusReason::SelfService,
        None => pb::StatusReason::Unspecified,
    };
    pb::User {
        id: user.id,
        user_login: user.user_login,
        email: user.email,
        first_name: user.first_name,
        last_name: user.last_name,
        role: role.into(),
        business_unit: view.business_unit.unwrap_or_default(),
        status: status.into(),
        status_reason: reason.into(),
        subscription_id: user.subscription_id,
        has_token: view.has_token,
        create_time: timestamp(user.created_at),
        update_time: timestamp(user.updated_at),
        last_login_time: user.last_login_at.and_then(timestamp),
    }
}

pub fn rejection_to_proto(rejection: TokenRejection) -> pb::TokenInvalidReason {
    match rejection {
        TokenRejection::Malformed => pb::TokenInvalidReason::Malformed,
        TokenRejection::BadSignature => pb::TokenInvalidReason::BadSignature,
        TokenRejection::Expired => pb::TokenInvalidReason::Expired,
        TokenRejection::NotYetValid => pb::TokenInvalidReason::NotYetValid,
        TokenRejection::WrongIssuer => pb::TokenInvalidReason::WrongIssuer,
        TokenRejection::WrongAudience => pb::TokenInvalidReason::WrongAudience,
        TokenRejection::UnknownKey => pb::TokenInvalidReason::UnknownKey,
    }
}

pub fn rejection_text(rejection: TokenRejection) -> &'static str {
    match rejection {
        TokenRejection::Malformed => "malformed",
        TokenRejection::BadSignature => "bad signature",
        TokenRejection::Expired => "expired",
        TokenRejection::NotYetValid => "not yet valid",
        TokenRejection::WrongIssuer => "wrong issuer",
        TokenRejection::WrongAudience => "wrong audience",
        TokenRejection::UnknownKey => "unknown signing key",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_split_milliseconds() {
        assert_eq!(timestamp(1_500), Some(Timestamp { seconds: 1, nanos: 500_000_000 }));
        assert_eq!(timestamp(-1), Some(Timestamp { seconds: -1, nanos: 999_000_000 }));
    }

    #[test]
    fn timestamps_and_milliseconds_round_trip() {
        for ms in [0, 1_500, 1_700_000_000_123] {
            assert_eq!(timestamp_ms(timestamp(ms)), Some(ms));
        }
        assert_eq!(timestamp_ms(None), None);
    }

    #[test]
    fn roles_round_trip_through_proto() {
        for role in Role::ALL {
            assert_eq!(role_from_proto(role_to_proto(role)), Some(role));
        }
        assert_eq!(role_from_proto(pb::Role::Unspecified), None);
    }
}
