//! The account status machine of DESIGN §1, as a pure transition function.

use super::{Error, StatusReason, UserStatus};

/// What happens to an account.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum StatusEvent {
    /// An activation link redeemed, or an admin reset that returned the password.
    Activate,
    /// Consecutive failures reached the lockout threshold.
    Lock,
    /// A Manager or Unit Manager deactivates the account.
    Deactivate,
    /// A Manager or Unit Manager re-activates the account.
    Reactivate,
    Delete,
}

impl StatusEvent {
    pub const ALL: [StatusEvent; 5] = [
        StatusEvent::Activate,
        StatusEvent::Lock,
        StatusEvent::Deactivate,
        StatusEvent::Reactivate,
        StatusEvent::Delete,
    ];
}

/// The status after `event`, with its reason; illegal moves name both states.
pub fn transition(from: UserStatus, event: StatusEvent) -> Result<(UserStatus, StatusReason), Error> {
    use StatusEvent::*;
    use UserStatus::*;
    let to = match event {
        Activate => Active,
        Lock | Deactivate => Inactive,
        Reactivate => Active,
        Delete => Deleted,
    };
    let allowed = matches!(
        (from, event),
        (PendingActivation, Activate) | (Active, Lock) | (Active, Deactivate) | (Inactive, Reactivate)
    ) || (event == Delete && from != Deleted);
    if !allowed {
        return Err(Error::IllegalTransition { from, to });
    }
    let reason = match event {
        Lock => StatusReason::Locked,
        Activate => StatusReason::SelfService,
        Deactivate | Reactivate | Delete => StatusReason::Administrative,
    };
    Ok((to, reason))
}

/// Only ACTIVE accounts log in.
pub fn can_log_in(status: UserStatus) -> bool {
    status == UserStatus::Active
}

#[cfg(test)]
mod tests {
    use super::*;
    use StatusEvent::*;
    use UserStatus::*;

    #[test]
    fn every_state_and_event() {
        let legal = [
            (PendingActivation, Activate, Active),
            (Active, Lock, Inactive),
            (Active, Deactivate, Inactive),
            (Inactive, Reactivate, Active),
            (PendingActivation, Delete, Deleted),
            (Active, Delete, Deleted),
            (Inactive, Delete, Deleted),
        ];
        for from in UserStatus::ALL {
            for event in StatusEvent::ALL {
                let expected = legal.iter().find(|(f, e, _)| *f == from && *e == event).map(|(_, _, to)| *to);
                match (transition(from, event), expected) {
                    (Ok((to, _)), Some(expected)) => assert_eq!(to, expected, "{from:?} {event:?}"),
                    (Err(Error::IllegalTransition { from: f, .. }), None) => assert_eq!(f, from),
                    (got, want) => panic!("{from:?} {event:?}: got {got:?}, want {want:?}"),
                }
            }
        }
    }

    #[test]
    fn lockout_is_recorded_as_the_reason() {
        assert_eq!(transition(Active, Lock).unwrap(), (Inactive, StatusReason::Locked));
        assert_eq!(transition(Active, Deactivate).unwrap(), (Inactive, StatusReason::Administrative));
    }

    #[test]
    fn illegal_moves_name_both_states() {
        let error = transition(Deleted, Reactivate).unwrap_err();
        assert_eq!(error.to_string(), "cannot change a user from DELETED to ACTIVE");
        let error = transition(PendingActivation, Deactivate).unwrap_err();
        assert_eq!(error.to_string(), "cannot change a user from PENDING_ACTIVATION to INACTIVE");
    }

    #[test]
    fn only_active_accounts_log_in() {
        for status in UserStatus::ALL {
            assert_eq!(can_log_in(status), status == Active);
        }
    }
}
