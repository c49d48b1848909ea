//! Roles and the account status vocabulary, with their stored spellings.

use std::fmt;

/// A user's role inside a subscription (DESIGN §1).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Role {
    Administrator,
    Manager,
    UnitManager,
    Scanner,
    Reader,
    Auditor,
    RemediationUser,
    Contact,
    /// Runs the platform: creates subscriptions, schedules maintenance.
    PlatformOperator,
}

impl Role {
    pub const ALL: [Role; 9] = [
        Role::Administrator,
        Role::Manager,
        Role::UnitManager,
        Role::Scanner,
        Role::Reader,
        Role::Auditor,
        Role::RemediationUser,
        Role::Contact,
        Role::PlatformOperator,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Administrator => "ADMINISTRATOR",
            Role::Manager => "MANAGER",
            Role::UnitManager => "UNIT_MANAGER",
            Role::Scanner => "SCANNER",
            Role::Reader => "READER",
            Role::Auditor => "AUDITOR",
            Role::RemediationUser => "REMEDIATION_USER",
            Role::Contact => "CONTACT",
            Role::PlatformOperator => "PLATFORM_OPERATOR",
        }
    }

    pub fn parse(value: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|role| role.as_str() == value)
    }

    /// Managers, Administrators (and platform operators) act on the whole
    /// subscription and belong to no business unit.
    pub fn is_subscription_wide(self) -> bool {
        matches!(self, Role::Administrator | Role::Manager | Role::PlatformOperator)
    }

    /// Contacts have no login at all.
    pub fn can_log_in(self) -> bool {
        self != Role::Contact
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match self {
            Role::Administrator => "Administrator",
            Role::Manager => "Manager",
            Role::UnitManager => "Unit Manager",
            Role::Scanner => "Scanner",
            Role::Reader => "Reader",
            Role::Auditor => "Auditor",
            Role::RemediationUser => "Remediation User",
            Role::Contact => "Contact",
            Role::PlatformOperator => "Platform Operator",
        };
        f.write_str(name)
    }
}

/// The account status machine's states (DESIGN §1).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum UserStatus {
    PendingActivation,
    Active,
    Inactive,
    Deleted,
}

impl UserStatus {
    pub const ALL: [UserStatus; 4] =
        [UserStatus::PendingActivation, UserStatus::Active, UserStatus::Inactive, UserStatus::Deleted];

    pub fn as_str(self) -> &'static str {
        match self {
            UserStatus::PendingActivation => "PENDING_ACTIVATION",
            UserStatus::Active => "ACTIVE",
            UserStatus::Inactive => "INACTIVE",
            UserStatus::Deleted => "DELETED",
        }
    }

    pub fn parse(value: &str) -> Option<UserStatus> {
        UserStatus::ALL.into_iter().find(|status| status.as_str() == value)
    }
}

impl fmt::Display for UserStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why an account is in its current status.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum StatusReason {
    /// Consecutive failed logins or passcodes reached the lockout threshold.
    Locked,
    /// A Manager, Unit Manager or Administrator changed it.
    Administrative,
    /// The user's own action (an activation link redeemed).
    SelfService,
}

impl StatusReason {
    pub const ALL: [StatusReason; 3] = [StatusReason::Locked, StatusReason::Administrative, StatusReason::SelfService];

    pub fn as_str(self) -> &'static str {
        match self {
            StatusReason::Locked => "LOCKED",
            StatusReason::Administrative => "ADMINISTRATIVE",
            StatusReason::SelfService => "SELF_SERVICE",
        }
    }

    pub fn parse(value: &str) -> Option<StatusReason> {
        StatusReason::ALL.into_iter().find(|reason| reason.as_str() == value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_spellings_round_trip() {
        for role in Role::ALL {
            assert_eq!(Role::parse(role.as_str()), Some(role));
        }
        for status in UserStatus::ALL {
            assert_eq!(UserStatus::parse(status.as_str()), Some(status));
        }
        for reason in StatusReason::ALL {
            assert_eq!(StatusReason::parse(reason.as_str()), Some(reason));
        }
        assert_eq!(Role::parse("manager"), None, "spellings are case-sensitive");
    }

    #[test]
    fn only_contacts_cannot_log_in_and_only_managers_and_admins_span_the_subscription() {
        for role in Role::ALL {
            assert_eq!(role.can_log_in(), role != Role::Contact);
            assert_eq!(
                role.is_subscription_wide(),
                matches!(role, Role::Administrator | Role::Manager | Role::PlatformOperator)
            );
        }
    }
}
