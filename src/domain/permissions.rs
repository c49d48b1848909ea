//! The permission table of DESIGN §1, as one pure function: every service and
//! the legacy gateway ask [`may`] before acting on another user.
//!
//! The table follows the legacy API page word for word: Managers and
//! Administrators administer every other user of the subscription (each
//! other included), Unit Managers the users of their own unit. Nobody is
//! beyond reach: every role that can be created can be administered by
//! someone, and platform operators rescue any account (see [`may_rescue`]).

use super::{Role, UserStatus};

/// The user asking.
#[derive(Clone, Copy, Debug)]
pub struct Actor<'a> {
    pub user_id: &'a str,
    pub subscription_id: &'a str,
    pub role: Role,
    pub business_unit_id: Option<&'a str>,
}

/// The user acted upon.
#[derive(Clone, Copy, Debug)]
pub struct Target<'a> {
    pub user_id: &'a str,
    pub subscription_id: &'a str,
    pub role: Role,
    pub business_unit_id: Option<&'a str>,
    pub status: UserStatus,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Action {
    View,
    Update,
    ChangeLogin,
    ResetPassword,
    SetStatus,
    Delete,
    AssignToken,
    ResetPin,
}

impl Action {
    pub const ALL: [Action; 8] = [
        Action::View,
        Action::Update,
        Action::ChangeLogin,
        Action::ResetPassword,
        Action::SetStatus,
        Action::Delete,
        Action::AssignToken,
        Action::ResetPin,
    ];

    /// Actions that need the target to hold a login.
    fn needs_login(self) -> bool {
        matches!(self, Action::ChangeLogin | Action::ResetPassword | Action::AssignToken | Action::ResetPin)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    Allow,
    Deny(Denial),
}

/// Why not, in the order the checks run: a caller never learns more about a
/// user outside its scope than that it is out of scope.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Denial {
    /// Another tenant's user: reported as not found, never as forbidden.
    OtherSubscription,
    /// Admin paths never act on the caller.
    SelfTarget,
    OutOfScope,
    Deleted,
    /// Contacts have no login to reset, rename or protect.
    Contact,
}

pub fn may(actor: &Actor, action: Action, target: &Target) -> Decision {
    if actor.subscription_id != target.subscription_id {
        return Decision::Deny(Denial::OtherSubscription);
    }
    let is_self = actor.user_id == target.user_id;
    if action == Action::View {
        return if is_self || sees(actor, target) { Decision::Allow } else { Decision::Deny(Denial::OutOfScope) };
    }
    if is_self {
        return Decision::Deny(Denial::SelfTarget);
    }
    if !administers(actor, target) {
        return Decision::Deny(Denial::OutOfScope);
    }
    if target.status == UserStatus::Deleted {
        return Decision::Deny(Denial::Deleted);
    }
    if action.needs_login() && !target.role.can_log_in() {
        return Decision::Deny(Denial::Contact);
    }
    Decision::Allow
}

/// Whether the actor's role covers the target (DESIGN §1 table).
fn administers(actor: &Actor, target: &Target) -> bool {
    match actor.role {
        Role::Administrator | Role::Manager => true,
        Role::UnitManager => same_unit(actor, target),
        Role::Scanner
        | Role::Reader
        | Role::Auditor
        | Role::RemediationUser
        | Role::Contact
        | Role::PlatformOperator => false,
    }
}

/// Whom the actor may look at: everyone a Manager or Administrator works
/// with (Administrators included), a Unit Manager's own unit.
fn sees(actor: &Actor, target: &Target) -> bool {
    match actor.role {
        Role::Administrator | Role::Manager => true,
        Role::UnitManager => same_unit(actor, target),
        _ => false,
    }
}

fn same_unit(actor: &Actor, target: &Target) -> bool {
    !target.role.is_subscription_wide()
        && actor.business_unit_id.is_some()
        && actor.business_unit_id == target.business_unit_id
}

/// Whether a role may create users of `new_role` in `unit` (or subscription-wide).
/// Managers and Administrators provision every role, and administer whatever
/// they create, so no account is ever out of everyone's reach. Operators are
/// made only by `identity operator create`, never through the API.
pub fn may_create(actor_role: Role, actor_unit: Option<&str>, new_role: Role, unit: Option<&str>) -> bool {
    let allowed = match actor_role {
        Role::Administrator | Role::Manager => true,
        Role::UnitManager => !new_role.is_subscription_wide() && actor_unit.is_some() && actor_unit == unit,
        _ => false,
    };
    allowed && new_role != Role::PlatformOperator
}

/// Whom an actor works with in listings, lookups and batch resets: the same
/// table as [`may`], read by role.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scope<'a> {
    /// Managers and Administrators: the whole subscription.
    Subscription,
    /// Unit Managers: their own unit (none: nobody).
    Unit(Option<&'a str>),
    /// Everyone else: only themself.
    Themself,
}

pub fn scope(role: Role, unit: Option<&str>) -> Scope<'_> {
    match role {
        Role::Administrator | Role::Manager => Scope::Subscription,
        Role::UnitManager => Scope::Unit(unit),
        _ => Scope::Themself,
    }
}

impl Scope<'_> {
    /// Whether the actor administers anyone at all (resets, lookups).
    pub fn administers_anyone(self) -> bool {
        self != Scope::Themself
    }
}

/// Every action [`may`] allows `actor` on `target`, in [`Action::ALL`] order:
/// what a page offers, from the same table every changing call applies.
pub fn allowed_actions(actor: &Actor, target: &Target) -> Vec<Action> {
    Action::ALL.into_iter().filter(|action| may(actor, *action, target) == Decision::Allow).collect()
}

/// What an actor may do beyond its own account, by role and unit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Capabilities {
    pub administers_users: bool,
    pub reads_audit_log: bool,
    pub creates_business_units: bool,
    /// The roles [`may_create`] allows in the actor's own unit (or
    /// subscription-wide), in [`Role::ALL`] order.
    pub creatable_roles: Vec<Role>,
}

pub fn capabilities(role: Role, unit: Option<&str>) -> Capabilities {
    let creatable_roles = Role::ALL
        .into_iter()
        // Asked for the actor's own unit: a Manager places users in any unit alike.
        .filter(|new_role| {
            may_create(role, unit, *new_role, (!new_role.is_subscription_wide()).then_some(unit).flatten())
        })
        .collect();
    Capabilities {
        administers_users: scope(role, unit).administers_anyone() && unit_or_wide(role, unit),
        reads_audit_log: may_read_audit(role),
        creates_business_units: matches!(role, Role::Administrator | Role::Manager),
        creatable_roles,
    }
}

/// A Unit Manager without a unit administers nobody.
fn unit_or_wide(role: Role, unit: Option<&str>) -> bool {
    role != Role::UnitManager || unit.is_some()
}

/// Whether the role may read the subscription's audit log.
pub fn may_read_audit(role: Role) -> bool {
    matches!(role, Role::Administrator | Role::Manager | Role::Auditor)
}

/// Whether the role runs the platform (subscriptions, maintenance windows).
pub fn is_platform_operator(role: Role) -> bool {
    role == Role::PlatformOperator
}

/// What a platform operator may do for a user of any subscription: the
/// rescue cases of the seeds ("contact Support to have your password reset").
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Rescue {
    /// A new generated password, revealed once through an emailed link.
    ResetPassword,
    /// INACTIVE becomes ACTIVE; PENDING_ACTIVATION gets a fresh welcome link.
    Reactivate,
    ResetPin,
    ReplaceToken,
}

impl Rescue {
    pub const ALL: [Rescue; 4] = [Rescue::ResetPassword, Rescue::Reactivate, Rescue::ResetPin, Rescue::ReplaceToken];

    /// The audit action of this rescue.
    pub fn audit_action(self) -> &'static str {
        match self {
            Rescue::ResetPassword => "support.password.reset",
            Rescue::Reactivate => "support.user.reactivate",
            Rescue::ResetPin => "support.pin.reset",
            Rescue::ReplaceToken => "support.token.replace",
        }
    }

    /// In words, for the Managers' notice and the CLI.
    pub fn describe(self) -> &'static str {
        match self {
            Rescue::ResetPassword => "reset the password (a one-time link was emailed to the user)",
            Rescue::Reactivate => "re-activated the account",
            Rescue::ResetPin => "reset the PIN (the user chooses a new one at the next login)",
            Rescue::ReplaceToken => "replaced the token (a one-time link to the new one was emailed to the user)",
        }
    }
}

/// Who rescues: an operator account over gRPC, or the command line on the
/// service's own host (break-glass, no account needed).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rescuer<'a> {
    Account { user_id: &'a str, role: Role },
    CommandLine,
}

/// Why a rescue is refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RescueDenial {
    /// Only platform operators (and the command line) rescue.
    NotAnOperator,
    /// An operator does not rescue their own account: another operator or
    /// the command line does.
    SelfTarget,
    Deleted,
    Contact,
    /// Re-activation of an ACTIVE account: nothing to rescue.
    AlreadyActive,
}

/// The rescue rule: operators (or the command line) act on any user of any
/// subscription that holds a login and is not deleted, never on themselves.
pub fn may_rescue(rescuer: Rescuer, rescue: Rescue, target: &Target) -> Result<(), RescueDenial> {
    if let Rescuer::Account { user_id, role } = rescuer {
        if role != Role::PlatformOperator {
            return Err(RescueDenial::NotAnOperator);
        }
        if user_id == target.user_id {
            return Err(RescueDenial::SelfTarget);
        }
    }
    if target.status == UserStatus::Deleted {
        return Err(RescueDenial::Deleted);
    }
    if !target.role.can_log_in() {
        return Err(RescueDenial::Contact);
    }
    if rescue == Rescue::Reactivate && target.status == UserStatus::Active {
        return Err(RescueDenial::AlreadyActive);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use Role::*;

    #[test]
    fn allowed_actions_are_exactly_what_may_allows() {
        let actor = Actor { user_id: "a", subscription_id: "s", role: UnitManager, business_unit_id: Some(UNIT_A) };
        let mut target = Target {
            user_id: "t",
            subscription_id: "s",
            role: Reader,
            business_unit_id: Some(UNIT_A),
            status: UserStatus::Active,
        };
        assert_eq!(allowed_actions(&actor, &target), Action::ALL.to_vec());
        target.business_unit_id = Some(UNIT_B);
        assert!(allowed_actions(&actor, &target).is_empty(), "another unit: not even View");
        target.business_unit_id = Some(UNIT_A);
        target.role = Contact;
        assert_eq!(
            allowed_actions(&actor, &target),
            vec![Action::View, Action::Update, Action::SetStatus, Action::Delete],
            "a Contact has no login to reset or protect"
        );
        let me = Target { user_id: "a", role: UnitManager, ..target };
        assert_eq!(allowed_actions(&actor, &me), vec![Action::View], "admin paths never act on the caller");
    }

    #[test]
    fn capabilities_follow_the_role() {
        let manager = capabilities(Manager, None);
        assert!(manager.administers_users && manager.reads_audit_log && manager.creates_business_units);
        assert!(!manager.creatable_roles.contains(&PlatformOperator));
        assert!(manager.creatable_roles.contains(&Administrator) && manager.creatable_roles.contains(&Contact));
        let unit_manager = capabilities(UnitManager, Some(UNIT_A));
        assert!(unit_manager.administers_users && !unit_manager.reads_audit_log);
        assert!(!unit_manager.creates_business_units);
        assert!(unit_manager.creatable_roles.iter().all(|r| !r.is_subscription_wide()));
        assert!(unit_manager.creatable_roles.contains(&UnitManager));
        assert!(!capabilities(UnitManager, None).administers_users, "a Unit Manager without a unit");
        for role in [Reader, Scanner, Contact, RemediationUser] {
            let none = capabilities(role, Some(UNIT_A));
            assert!(!none.administers_users && none.creatable_roles.is_empty() && !none.reads_audit_log, "{role}");
        }
        let auditor = capabilities(Auditor, Some(UNIT_A));
        assert!(!auditor.administers_users && auditor.reads_audit_log);
    }

    const UNIT_A: &str = "unit-a";
    const UNIT_B: &str = "unit-b";

    /// DESIGN §1, written out: may `actor` administer `target` when both sit in
    /// the same unit (`same`) or in different units (`other`)? Subscription-wide
    /// roles sit in no unit.
    fn expected_scope(actor: Role, target: Role, same_unit: bool) -> bool {
        match actor {
            Administrator | Manager => true,
            UnitManager => !matches!(target, Administrator | Manager | PlatformOperator) && same_unit,
            _ => false,
        }
    }

    /// Who may look at whom: Managers and Administrators see everyone, Unit
    /// Managers their unit, everyone else only themselves.
    fn expected_view(actor: Role, target: Role, same_unit: bool) -> bool {
        match actor {
            Administrator | Manager => true,
            UnitManager => !matches!(target, Administrator | Manager | PlatformOperator) && same_unit,
            _ => false,
        }
    }

    fn unit_of(role: Role, unit: &'static str) -> Option<&'static str> {
        (!role.is_subscription_wide()).then_some(unit)
    }

    #[test]
    fn every_role_target_unit_self_status_and_action() {
        let mut checked = 0;
        for actor_role in Role::ALL {
            for target_role in Role::ALL {
                for same_unit in [true, false] {
                    for is_self in [true, false] {
                        for status in UserStatus::ALL {
                            for action in Action::ALL {
                                let actor = Actor {
                                    user_id: "actor",
                                    subscription_id: "sub",
                                    role: actor_role,
                                    business_unit_id: unit_of(actor_role, UNIT_A),
                                };
                                let target = Target {
                                    user_id: if is_self { "actor" } else { "target" },
                                    subscription_id: "sub",
                                    role: target_role,
                                    business_unit_id: unit_of(target_role, if same_unit { UNIT_A } else { UNIT_B }),
                                    status,
                                };
                                let in_scope = expected_scope(actor_role, target_role, same_unit);
                                let expected = if action == Action::View {
                                    if is_self || expected_view(actor_role, target_role, same_unit) {
                                        Decision::Allow
                                    } else {
                                        Decision::Deny(Denial::OutOfScope)
                                    }
                                } else if is_self {
                                    Decision::Deny(Denial::SelfTarget)
                                } else if !in_scope {
                                    Decision::Deny(Denial::OutOfScope)
                                } else if status == UserStatus::Deleted {
                                    Decision::Deny(Denial::Deleted)
                                } else if target_role == Contact
                                    && matches!(
                                        action,
                                        Action::ChangeLogin
                                            | Action::ResetPassword
                                            | Action::AssignToken
                                            | Action::ResetPin
                                    )
                                {
                                    Decision::Deny(Denial::Contact)
                                } else {
                                    Decision::Allow
                                };
                                assert_eq!(
                                    may(&actor, action, &target),
                                    expected,
                                    "{actor_role:?} {action:?} {target_role:?} same_unit={same_unit} self={is_self} {status:?}"
                                );
                                checked += 1;
                            }
                        }
                    }
                }
            }
        }
        assert_eq!(checked, 9 * 9 * 2 * 2 * 4 * 8);
    }

    #[test]
    fn the_table_in_words() {
        let actor = |role| Actor { user_id: "a", subscription_id: "s", role, business_unit_id: unit_of(role, UNIT_A) };
        let target = |role, unit| Target {
            user_id: "t",
            subscription_id: "s",
            role,
            business_unit_id: unit_of(role, unit),
            status: UserStatus::Active,
        };
        let reset = |a, t| may(&actor(a), Action::ResetPassword, &t);
        // Administrators: every user, Managers and other Administrators included.
        assert_eq!(reset(Administrator, target(Manager, UNIT_A)), Decision::Allow);
        assert_eq!(reset(Administrator, target(Administrator, UNIT_A)), Decision::Allow);
        // Managers: every user, Administrators and other Managers included, whatever the unit.
        assert_eq!(reset(Manager, target(Reader, UNIT_B)), Decision::Allow);
        assert_eq!(reset(Manager, target(Administrator, UNIT_A)), Decision::Allow);
        assert_eq!(reset(Manager, target(Manager, UNIT_A)), Decision::Allow);
        // Unit Managers: their own unit only.
        assert_eq!(reset(UnitManager, target(Scanner, UNIT_A)), Decision::Allow);
        assert_eq!(reset(UnitManager, target(Scanner, UNIT_B)), Decision::Deny(Denial::OutOfScope));
        assert_eq!(reset(UnitManager, target(Manager, UNIT_A)), Decision::Deny(Denial::OutOfScope));
        // Everyone else: nobody.
        for role in [Scanner, Reader, Auditor, RemediationUser, Contact, PlatformOperator] {
            assert_eq!(reset(role, target(Reader, UNIT_A)), Decision::Deny(Denial::OutOfScope));
        }
        // What a Manager creates, a Manager can take back.
        for action in Action::ALL {
            assert_eq!(may(&actor(Manager), action, &target(Administrator, UNIT_A)), Decision::Allow, "{action:?}");
        }
        // Contacts cannot be reset, but can be administered otherwise.
        assert_eq!(reset(Manager, target(Contact, UNIT_A)), Decision::Deny(Denial::Contact));
        assert_eq!(may(&actor(Manager), Action::Update, &target(Contact, UNIT_A)), Decision::Allow);
    }

    #[test]
    fn another_subscription_is_invisible() {
        let actor = Actor { user_id: "a", subscription_id: "s1", role: Administrator, business_unit_id: None };
        let target = Target {
            user_id: "t",
            subscription_id: "s2",
            role: Reader,
            business_unit_id: Some(UNIT_A),
            status: UserStatus::Active,
        };
        for action in Action::ALL {
            assert_eq!(may(&actor, action, &target), Decision::Deny(Denial::OtherSubscription));
        }
    }

    #[test]
    fn a_unit_manager_without_a_unit_administers_nobody() {
        let actor = Actor { user_id: "a", subscription_id: "s", role: UnitManager, business_unit_id: None };
        let target = Target {
            user_id: "t",
            subscription_id: "s",
            role: Reader,
            business_unit_id: None,
            status: UserStatus::Active,
        };
        assert_eq!(may(&actor, Action::Update, &target), Decision::Deny(Denial::OutOfScope));
    }

    #[test]
    fn scopes_follow_the_table() {
        for role in Role::ALL {
            let scope = scope(role, Some(UNIT_A));
            let reader = Target {
                user_id: "t",
                subscription_id: "s",
                role: Reader,
                business_unit_id: Some(UNIT_B),
                status: UserStatus::Active,
            };
            let actor = Actor { user_id: "a", subscription_id: "s", role, business_unit_id: unit_of(role, UNIT_A) };
            let anywhere = may(&actor, Action::ResetPassword, &reader) == Decision::Allow;
            assert_eq!(scope == Scope::Subscription, anywhere, "{role:?}");
            assert_eq!(scope.administers_anyone(), matches!(role, Administrator | Manager | UnitManager), "{role:?}");
        }
        assert_eq!(scope(UnitManager, Some(UNIT_A)), Scope::Unit(Some(UNIT_A)));
        assert_eq!(scope(UnitManager, None), Scope::Unit(None));
    }

    #[test]
    fn who_may_create_whom() {
        assert!(may_create(Administrator, None, Administrator, None));
        assert!(may_create(Manager, None, Manager, None));
        assert!(may_create(Manager, None, Administrator, None), "someone must create the first Administrator");
        assert!(may_create(Administrator, None, Manager, None));
        assert!(may_create(UnitManager, Some(UNIT_A), Reader, Some(UNIT_A)));
        assert!(!may_create(UnitManager, Some(UNIT_A), Reader, Some(UNIT_B)));
        assert!(!may_create(UnitManager, Some(UNIT_A), Manager, None));
        for role in [Scanner, Reader, Auditor, RemediationUser, Contact, PlatformOperator] {
            assert!(!may_create(role, Some(UNIT_A), Reader, Some(UNIT_A)));
        }
        assert!(!may_create(Administrator, None, PlatformOperator, None), "operators come from the CLI only");
    }

    /// DESIGN §1: every role that can be created can be reset, re-activated,
    /// deactivated and deleted by someone of its own subscription.
    #[test]
    fn nobody_is_beyond_reach() {
        for created in Role::ALL {
            let creatable = Role::ALL
                .into_iter()
                .any(|creator| may_create(creator, unit_of(creator, UNIT_A), created, unit_of(created, UNIT_A)));
            if !creatable {
                assert_eq!(created, PlatformOperator, "only operators come from elsewhere (the CLI)");
                continue;
            }
            let target = Target {
                user_id: "t",
                subscription_id: "s",
                role: created,
                business_unit_id: unit_of(created, UNIT_A),
                status: UserStatus::Active,
            };
            let actions: &[Action] = if created.can_log_in() {
                &Action::ALL
            } else {
                &[Action::View, Action::Update, Action::SetStatus, Action::Delete]
            };
            for &action in actions {
                let someone = Role::ALL.into_iter().any(|role| {
                    let actor =
                        Actor { user_id: "a", subscription_id: "s", role, business_unit_id: unit_of(role, UNIT_A) };
                    may(&actor, action, &target) == Decision::Allow
                });
                assert!(someone, "nobody may {action:?} a {created:?}");
            }
        }
    }

    #[test]
    fn operators_rescue_anyone_with_a_login_but_themselves() {
        let target = |role, status| Target {
            user_id: "t",
            subscription_id: "any",
            role,
            business_unit_id: unit_of(role, UNIT_A),
            status,
        };
        let operator = Rescuer::Account { user_id: "op", role: PlatformOperator };
        for rescue in Rescue::ALL {
            for role in Role::ALL {
                for status in UserStatus::ALL {
                    let target = target(role, status);
                    let expected = if status == UserStatus::Deleted {
                        Err(RescueDenial::Deleted)
                    } else if role == Contact {
                        Err(RescueDenial::Contact)
                    } else if rescue == Rescue::Reactivate && status == UserStatus::Active {
                        Err(RescueDenial::AlreadyActive)
                    } else {
                        Ok(())
                    };
                    assert_eq!(may_rescue(operator, rescue, &target), expected);
                    assert_eq!(may_rescue(Rescuer::CommandLine, rescue, &target), expected, "break-glass");
                    for role in Role::ALL.into_iter().filter(|&r| r != PlatformOperator) {
                        assert_eq!(
                            may_rescue(Rescuer::Account { user_id: "x", role }, rescue, &target),
                            Err(RescueDenial::NotAnOperator),
                            "a {role:?} is no operator"
                        );
                    }
                }
            }
            let own = Target { user_id: "op", ..target(PlatformOperator, UserStatus::Inactive) };
            assert_eq!(may_rescue(operator, rescue, &own), Err(RescueDenial::SelfTarget));
            assert_eq!(may_rescue(Rescuer::CommandLine, rescue, &own), Ok(()), "the CLI rescues operators");
        }
    }
}
