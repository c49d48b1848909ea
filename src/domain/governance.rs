//! The rule that keeps a subscription governable (DESIGN §1): it always keeps
//! at least one ACTIVE Manager, so someone of its own can always administer
//! it. Lockout is the one exception (it protects the account, and platform
//! operators rescue a locked last Manager).

use super::{Role, UserStatus};

/// A user's place before or after a change: the rule looks at nothing else.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Standing {
    pub role: Role,
    pub status: UserStatus,
}

impl Standing {
    fn is_active_manager(self) -> bool {
        self.role == Role::Manager && self.status == UserStatus::Active
    }
}

/// Whether moving a user from `before` to `after` would leave the
/// subscription without an ACTIVE Manager, given how many other users of it
/// are ACTIVE Managers.
pub fn removes_last_active_manager(before: Standing, after: Standing, other_active_managers: u64) -> bool {
    before.is_active_manager() && !after.is_active_manager() && other_active_managers == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_last_active_manager_is_kept() {
        let mut checked = 0;
        for before_role in Role::ALL {
            for after_role in Role::ALL {
                for before_status in UserStatus::ALL {
                    for after_status in UserStatus::ALL {
                        for others in [0, 1, 2] {
                            let before = Standing { role: before_role, status: before_status };
                            let after = Standing { role: after_role, status: after_status };
                            let expected = before_role == Role::Manager
                                && before_status == UserStatus::Active
                                && !(after_role == Role::Manager && after_status == UserStatus::Active)
                                && others == 0;
                            assert_eq!(removes_last_active_manager(before, after, others), expected);
                            checked += 1;
                        }
                    }
                }
            }
        }
        assert_eq!(checked, 9 * 9 * 4 * 4 * 3);
    }

    #[test]
    fn the_rule_in_words() {
        let manager = Standing { role: Role::Manager, status: UserStatus::Active };
        let deactivated = Standing { status: UserStatus::Inactive, ..manager };
        let deleted = Standing { status: UserStatus::Deleted, ..manager };
        let demoted = Standing { role: Role::Administrator, ..manager };
        for after in [deactivated, deleted, demoted] {
            assert!(removes_last_active_manager(manager, after, 0), "{after:?}");
            assert!(!removes_last_active_manager(manager, after, 1), "another Manager remains: {after:?}");
        }
        let pending = Standing { status: UserStatus::PendingActivation, ..manager };
        assert!(!removes_last_active_manager(pending, deleted, 0), "a pending Manager governs nothing yet");
    }
}
