//! Users and their administrators: who may see and change whom (DESIGN §1),
//! the status machine, lookups, pagination, and one audit row per change.

use crate::common;

use common::{Backend, bearer, create_user, login_session, member, reset_client, server, tenant, unique, users_client};
use identity::pb::{self, Role, UserStatus};
use tonic::Code;

async fn manager_session(server: &common::TestServer) -> (common::Tenant, String) {
    let t = tenant(server);
    let token = login_session(server, &t.manager_login, &t.manager_password).await;
    (t, token)
}

async fn add_unit(server: &common::TestServer, token: &str, name: &str) {
    users_client(server)
        .await
        .create_business_unit(bearer(pb::CreateBusinessUnitRequest { name: name.into() }, token))
        .await
        .unwrap();
}

async fn new_users_start_pending_with_a_welcome_email_and_contacts_get_nothing(backend: Backend) {
    let server = server(backend);
    let (t, token) = manager_session(server).await;
    let reader = create_user(server, &token, &format!("{}_reader", t.prefix), Role::Reader, "").await;
    assert_eq!(reader.status(), UserStatus::PendingActivation);
    assert_eq!(reader.business_unit, "Unassigned", "an empty unit means Unassigned");

    let generated = create_user(server, &token, "", Role::Scanner, "").await;
    assert!(generated.user_login.starts_with(&format!("{}_l1", t.prefix)), "{}", generated.user_login);
    assert_eq!(generated.user_login.len(), t.prefix.len() + 1 + 2 + 6);

    use identity::store::entities::email_outbox;
    use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
    let store = common::store(server).await;
    let welcome = email_outbox::Entity::find()
        .filter(email_outbox::Column::UserId.eq(reader.id.clone()))
        .all(store.connection())
        .await
        .unwrap();
    assert_eq!(welcome.len(), 1);
    assert_eq!(welcome[0].kind, "welcome");
    // Queued bodies carry the link: the database holds them encrypted.
    assert!(!welcome[0].body_text.contains("/activate/"), "a queued body in clear");
    let text = common::email_text(server, &welcome[0]).await;
    assert!(text.contains(&reader.user_login));
    assert!(text.contains("http://127.0.0.1:8080/activate/"), "{text}");

    let contact = create_user(server, &token, &format!("{}_contact", t.prefix), Role::Contact, "").await;
    assert_eq!(contact.status(), UserStatus::Active, "a Contact has nothing to activate");
    let mails = email_outbox::Entity::find()
        .filter(email_outbox::Column::UserId.eq(contact.id.clone()))
        .all(store.connection())
        .await
        .unwrap();
    assert!(mails.is_empty(), "Contacts get no credentials at all");
    for _ in 0..6 {
        let refused = common::try_login(server, &contact.user_login, "anything at all").await.unwrap_err();
        assert_eq!(refused.message(), "Invalid credentials", "Contacts cannot log in");
    }
    let still = users_client(server)
        .await
        .get_user(bearer(pb::GetUserRequest { user_login: contact.user_login.clone(), ..Default::default() }, &token))
        .await
        .unwrap()
        .into_inner()
        .user
        .unwrap();
    assert_eq!(still.status(), UserStatus::Active, "guessing a Contact's login locks nothing");
    let reset = common::reset_results(server, &token, &[&contact.user_login]).await;
    assert_eq!(reset[0].reason(), pb::ResetReason::Contact);
}

async fn unit_managers_see_and_change_only_their_own_unit(backend: Backend) {
    let server = server(backend);
    let (t, token) = manager_session(server).await;
    add_unit(server, &token, "Red").await;
    add_unit(server, &token, "Blue").await;
    let p = &t.prefix;
    let um = member(server, &token, &format!("{p}_um"), Role::UnitManager, "Red").await;
    let red = create_user(server, &token, &format!("{p}_red"), Role::Reader, "Red").await;
    let blue = create_user(server, &token, &format!("{p}_blue"), Role::Reader, "Blue").await;
    let mut users = users_client(server).await;

    users
        .get_user(bearer(pb::GetUserRequest { user_login: red.user_login.clone(), ..Default::default() }, &um))
        .await
        .expect("own unit");
    let outside = users
        .get_user(bearer(pb::GetUserRequest { user_login: blue.user_login.clone(), ..Default::default() }, &um))
        .await
        .unwrap_err();
    assert_eq!(outside.code(), Code::PermissionDenied);
    let manager = users
        .get_user(bearer(pb::GetUserRequest { user_login: t.manager_login.clone(), ..Default::default() }, &um))
        .await;
    assert_eq!(manager.unwrap_err().code(), Code::PermissionDenied);

    let listed = users.list_users(bearer(pb::ListUsersRequest::default(), &um)).await.unwrap().into_inner();
    let logins: Vec<&str> = listed.users.iter().map(|u| u.user_login.as_str()).collect();
    assert_eq!(logins, [format!("{p}_red"), format!("{p}_um")], "a Unit Manager lists their unit only");
    let blue_filter = pb::ListUsersRequest { business_unit: "Blue".into(), ..Default::default() };
    assert!(users.list_users(bearer(blue_filter, &um)).await.unwrap().into_inner().users.is_empty());

    let change = pb::UpdateUserRequest {
        user_login: blue.user_login.clone(),
        first_name: Some("X".into()),
        ..Default::default()
    };
    assert_eq!(users.update_user(bearer(change, &um)).await.unwrap_err().code(), Code::PermissionDenied);
    let deactivate = pb::SetUserStatusRequest {
        user_login: blue.user_login.clone(),
        status: UserStatus::Inactive.into(),
        reason: String::new(),
        ..Default::default()
    };
    assert_eq!(users.set_user_status(bearer(deactivate, &um)).await.unwrap_err().code(), Code::PermissionDenied);
    let new_blue = pb::CreateUserRequest {
        email: "x@example.com".into(),
        role: Role::Reader.into(),
        business_unit: "Blue".into(),
        ..Default::default()
    };
    assert_eq!(users.create_user(bearer(new_blue, &um)).await.unwrap_err().code(), Code::PermissionDenied);
    let new_red = pb::CreateUserRequest {
        email: "y@example.com".into(),
        role: Role::Scanner.into(),
        business_unit: "Red".into(),
        ..Default::default()
    };
    users.create_user(bearer(new_red, &um)).await.expect("a Unit Manager creates in their unit");

    let reset = common::reset_results(server, &um, &[&red.user_login, &blue.user_login]).await;
    assert!(reset[0].changed);
    assert_eq!((reset[1].changed, reset[1].reason()), (false, pb::ResetReason::OutOfScope));
}

/// The review's backdoor: a Manager creates an Administrator (or promotes a
/// Reader to one). Another Manager must be able to take it all back.
async fn an_administrator_a_manager_made_is_administered_by_another_manager(backend: Backend) {
    let server = server(backend);
    let (t, manager) = manager_session(server).await;
    let p = &t.prefix;
    let admin_login = format!("{p}_admin");
    let admin = member(server, &manager, &admin_login, Role::Administrator, "").await;
    let second = member(server, &manager, &format!("{p}_mgr2"), Role::Manager, "").await;
    let reader = create_user(server, &manager, &format!("{p}_reader"), Role::Reader, "").await;
    let mut users = users_client(server).await;
    let mut reset = reset_client(server).await;

    // The first Manager promotes a Reader too; the second demotes it back.
    let promote = pb::UpdateUserRequest {
        user_login: reader.user_login.clone(),
        role: Some(Role::Administrator.into()),
        ..Default::default()
    };
    users.update_user(bearer(promote, &manager)).await.expect("Managers provision Administrators");
    let demote = pb::UpdateUserRequest {
        user_login: reader.user_login.clone(),
        role: Some(Role::Reader.into()),
        ..Default::default()
    };
    let demoted = users.update_user(bearer(demote, &second)).await.expect("another Manager demotes it");
    assert_eq!(demoted.into_inner().user.unwrap().role(), Role::Reader);

    // The second Manager resets, deactivates and deletes the planted Administrator.
    let by_second = pb::ResetPasswordsRequest {
        user_logins: vec![admin_login.clone()],
        all: false,
        notify_by_email: false,
        ..Default::default()
    };
    let outcome = reset.reset_passwords(bearer(by_second, &second)).await.unwrap().into_inner();
    assert!(outcome.results[0].changed, "{:?}", outcome.results[0]);
    let stale = users
        .get_user(bearer(pb::GetUserRequest { user_login: admin_login.clone(), ..Default::default() }, &admin))
        .await;
    assert_eq!(stale.unwrap_err().code(), Code::Unauthenticated, "the reset revoked the Administrator's session");
    let deactivate = pb::SetUserStatusRequest {
        user_login: admin_login.clone(),
        status: UserStatus::Inactive.into(),
        reason: "planted".into(),
        ..Default::default()
    };
    let deactivated = users.set_user_status(bearer(deactivate, &second)).await.expect("deactivated");
    assert_eq!(deactivated.into_inner().user.unwrap().status(), UserStatus::Inactive);
    let delete = pb::DeleteUserRequest { user_login: admin_login.clone(), ..Default::default() };
    let deleted = users.delete_user(bearer(delete, &second)).await.expect("deleted");
    assert_eq!(deleted.into_inner().user.unwrap().status(), UserStatus::Deleted);
    let gone = common::try_login(server, &admin_login, common::MEMBER_PASSWORD).await.unwrap_err();
    assert_eq!(gone.message(), "Invalid credentials");

    // Administrators administer each other and Managers, never themselves.
    let other_admin = member(server, &manager, &format!("{p}_admin2"), Role::Administrator, "").await;
    let third_admin = create_user(server, &manager, &format!("{p}_admin3"), Role::Administrator, "").await;
    let by_admin = pb::ResetPasswordsRequest {
        user_logins: vec![third_admin.user_login.clone(), format!("{p}_mgr2"), format!("{p}_admin2")],
        all: false,
        notify_by_email: false,
        ..Default::default()
    };
    let outcome = reset.reset_passwords(bearer(by_admin, &other_admin)).await.unwrap().into_inner();
    assert!(outcome.results[0].changed && outcome.results[1].changed, "{:?}", outcome.results);
    assert_eq!(outcome.results[2].reason(), pb::ResetReason::Self_);

    for (what, result) in [
        (
            "update",
            users
                .update_user(bearer(
                    pb::UpdateUserRequest {
                        user_login: t.manager_login.clone(),
                        last_name: Some("Me".into()),
                        ..Default::default()
                    },
                    &manager,
                ))
                .await
                .map(|_| ()),
        ),
        (
            "status",
            users
                .set_user_status(bearer(
                    pb::SetUserStatusRequest {
                        user_login: t.manager_login.clone(),
                        status: UserStatus::Inactive.into(),
                        reason: String::new(),
                        ..Default::default()
                    },
                    &manager,
                ))
                .await
                .map(|_| ()),
        ),
        (
            "delete",
            users
                .delete_user(bearer(
                    pb::DeleteUserRequest { user_login: t.manager_login.clone(), ..Default::default() },
                    &manager,
                ))
                .await
                .map(|_| ()),
        ),
    ] {
        assert_eq!(result.unwrap_err().code(), Code::PermissionDenied, "{what} on oneself");
    }
}

/// DESIGN §1: a subscription always keeps at least one ACTIVE Manager.
async fn the_last_active_manager_cannot_be_deactivated_deleted_or_demoted(backend: Backend) {
    let server = server(backend);
    let (t, manager) = manager_session(server).await;
    let p = &t.prefix;
    let admin = member(server, &manager, &format!("{p}_admin"), Role::Administrator, "").await;
    let mut users = users_client(server).await;
    let last = |status: tonic::Status| {
        assert_eq!((status.code(), common::reason(&status)), (Code::FailedPrecondition, "LAST_MANAGER".to_owned()));
        assert!(status.message().contains("last active Manager"), "{}", status.message());
    };
    let deactivate = |login: &str| pb::SetUserStatusRequest {
        user_login: login.to_owned(),
        status: UserStatus::Inactive.into(),
        reason: String::new(),
        ..Default::default()
    };
    let demote = |login: &str| pb::UpdateUserRequest {
        user_login: login.to_owned(),
        role: Some(Role::Reader.into()),
        ..Default::default()
    };
    last(users.set_user_status(bearer(deactivate(&t.manager_login), &admin)).await.unwrap_err());
    last(
        users
            .delete_user(bearer(
                pb::DeleteUserRequest { user_login: t.manager_login.clone(), ..Default::default() },
                &admin,
            ))
            .await
            .unwrap_err(),
    );
    last(users.update_user(bearer(demote(&t.manager_login), &admin)).await.unwrap_err());
    login_session(server, &t.manager_login, &t.manager_password).await;
    assert_eq!(common::audit_count(server, "user.status.change", &t.manager_login, None).await, 0, "nothing changed");

    // A pending second Manager does not count; an active one does.
    let second_login = format!("{p}_mgr2");
    create_user(server, &admin, &second_login, Role::Manager, "").await;
    last(users.set_user_status(bearer(deactivate(&t.manager_login), &admin)).await.unwrap_err());
    let link = common::latest_link(server, &second_login, "welcome").await;
    reset_client(server)
        .await
        .redeem_activation(pb::RedeemActivationRequest {
            token: link,
            new_password: common::MEMBER_PASSWORD.into(),
            captcha: None,
        })
        .await
        .expect("the second Manager activates");
    users.set_user_status(bearer(deactivate(&t.manager_login), &admin)).await.expect("another Manager remains");
    last(users.update_user(bearer(demote(&second_login), &admin)).await.unwrap_err());
    last(
        users
            .delete_user(bearer(
                pb::DeleteUserRequest { user_login: second_login.clone(), ..Default::default() },
                &admin,
            ))
            .await
            .unwrap_err(),
    );

    // Concurrent removals of the last two: exactly one wins.
    let reactivate = pb::SetUserStatusRequest {
        user_login: t.manager_login.clone(),
        status: UserStatus::Active.into(),
        reason: String::new(),
        ..Default::default()
    };
    users.set_user_status(bearer(reactivate, &admin)).await.expect("re-activated");
    let mut racers = Vec::new();
    for login in [t.manager_login.clone(), second_login.clone()] {
        let (mut users, admin) = (users_client(server).await, admin.clone());
        racers.push(tokio::spawn(async move {
            users.delete_user(bearer(pb::DeleteUserRequest { user_login: login, ..Default::default() }, &admin)).await
        }));
    }
    let mut won = 0;
    for racer in racers {
        match racer.await.unwrap() {
            Ok(_) => won += 1,
            Err(status) => last(status),
        }
    }
    assert_eq!(won, 1, "one Manager must remain");
}

/// A link mailed before a deactivation does not come back to life with the account.
async fn a_deactivation_voids_live_links(backend: Backend) {
    let server = server(backend);
    let (t, manager) = manager_session(server).await;
    let login = format!("{}_leaver", t.prefix);
    member(server, &manager, &login, Role::Reader, "").await;
    let mut users = users_client(server).await;
    let user = users
        .get_user(bearer(pb::GetUserRequest { user_login: login.clone(), ..Default::default() }, &manager))
        .await
        .unwrap();
    let mut reset = reset_client(server).await;
    let forgot = pb::RequestPasswordResetRequest {
        user_login: login.clone(),
        email: user.into_inner().user.unwrap().email,
        captcha: Some(common::solved_captcha(server).await),
    };
    reset.request_password_reset(forgot).await.expect("asked for a link");
    common::await_mail(server, &login, "forgot_password").await;
    let token = common::latest_link(server, &login, "forgot_password").await;
    let inspect = pb::InspectActivationRequest { token: token.clone() };
    assert!(reset.inspect_activation(inspect.clone()).await.unwrap().into_inner().valid);
    for status in [UserStatus::Inactive, UserStatus::Active] {
        let change = pb::SetUserStatusRequest {
            user_login: login.clone(),
            status: status.into(),
            reason: String::new(),
            ..Default::default()
        };
        users.set_user_status(bearer(change, &manager)).await.expect("status changed");
    }
    let after = reset.inspect_activation(inspect).await.unwrap().into_inner();
    assert!(!after.valid, "the account is back, its old link is not");
    assert_eq!(after.invalid_reason(), pb::ActivationInvalidReason::Superseded);

    // A lockout is a deactivation too.
    let welcome_login = format!("{}_newcomer", t.prefix);
    create_user(server, &manager, &welcome_login, Role::Reader, "").await;
    let welcome = common::latest_link(server, &welcome_login, "welcome").await;
    reset
        .redeem_activation(pb::RedeemActivationRequest {
            token: welcome,
            new_password: common::MEMBER_PASSWORD.into(),
            captcha: None,
        })
        .await
        .expect("activated");
    let forgot = pb::RequestPasswordResetRequest {
        user_login: welcome_login.clone(),
        email: format!("{welcome_login}@example.com"),
        captcha: Some(common::solved_captcha(server).await),
    };
    reset.request_password_reset(forgot).await.expect("asked for a link");
    common::await_mail(server, &welcome_login, "forgot_password").await;
    let token = common::latest_link(server, &welcome_login, "forgot_password").await;
    lock_out(server, &welcome_login).await;
    let reactivate = pb::SetUserStatusRequest {
        user_login: welcome_login,
        status: UserStatus::Active.into(),
        reason: String::new(),
        ..Default::default()
    };
    users.set_user_status(bearer(reactivate, &manager)).await.expect("re-activated");
    let after = reset.inspect_activation(pb::InspectActivationRequest { token }).await.unwrap().into_inner();
    assert_eq!(after.invalid_reason(), pb::ActivationInvalidReason::Superseded, "a lock voids live links");
}

async fn support_client(server: &common::TestServer) -> pb::support_client::SupportClient<tonic::transport::Channel> {
    pb::support_client::SupportClient::new(server.channel().await)
}

async fn lock_out(server: &common::TestServer, login: &str) {
    for _ in 0..5 {
        common::try_login(server, login, "not the password at all").await.unwrap_err();
    }
    let store = common::store(server).await;
    let user = identity::store::users::find_by_login(store.connection(), login).await.unwrap().unwrap();
    assert_eq!(
        (user.status, user.status_reason),
        (identity::domain::UserStatus::Inactive, Some(identity::domain::StatusReason::Locked))
    );
}

/// Seed 000: "If you are the only user in the subscription … contact Support".
async fn an_operator_rescues_a_lone_locked_manager(backend: Backend) {
    let server = server(backend);
    let t = tenant(server);
    lock_out(server, &t.manager_login).await;
    let (operator, op) = common::operator(server).await;
    let (_, stranger) = manager_session(server).await;
    let mut support = support_client(server).await;
    let request = |reason: &str| pb::ReactivateUserRequest {
        user_login: t.manager_login.clone(),
        reason: reason.into(),
        ..Default::default()
    };

    let refused = support.reactivate_user(bearer(request("ticket 1"), &stranger)).await.unwrap_err();
    assert_eq!(refused.code(), Code::PermissionDenied, "another subscription's Manager cannot rescue");
    let unknown =
        pb::ReactivateUserRequest { user_login: unique("nobody"), reason: "ticket 1".into(), ..Default::default() };
    let refused = support.reactivate_user(bearer(unknown.clone(), &stranger)).await.unwrap_err();
    assert_eq!(refused.code(), Code::PermissionDenied, "a non-operator learns nothing about logins");
    assert_eq!(support.reactivate_user(bearer(unknown, &op)).await.unwrap_err().code(), Code::NotFound);
    for reason in ["", "   "] {
        let status = support.reactivate_user(bearer(request(reason), &op)).await.unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument, "a rescue states its reason");
        assert!(status.message().contains("reason"), "{}", status.message());
    }

    let done = support.reactivate_user(bearer(request("ticket SUP-1001"), &op)).await.expect("rescued").into_inner();
    assert_eq!(done.user.unwrap().status(), UserStatus::Active);
    assert!(!done.welcome_link_sent);
    assert_eq!(done.managers_notified, 1, "the (now active) Manager is told");
    let again = support.reactivate_user(bearer(request("ticket SUP-1001"), &op)).await.unwrap_err();
    assert_eq!(common::reason(&again), "ALREADY_ACTIVE");
    let manager = login_session(server, &t.manager_login, &t.manager_password).await;
    common::assert_mail_sent(server, &t.manager_login, "rescue_notice").await;

    // Audited in the Manager's own subscription, under the operator's login, with the reason.
    let events = users_client(server)
        .await
        .list_audit_events(bearer(
            pb::ListAuditEventsRequest { action: "support.user.reactivate".into(), ..Default::default() },
            &manager,
        ))
        .await
        .unwrap()
        .into_inner()
        .events;
    assert_eq!(events.len(), 1);
    assert_eq!(
        (events[0].actor_login.as_str(), events[0].target_login.as_str()),
        (operator.as_str(), t.manager_login.as_str())
    );
    assert!(events[0].detail.contains("SUP-1001"), "{}", events[0].detail);

    // The Manager also forgot the password: a one-time link with a generated one.
    let reset = pb::ResetUserPasswordRequest {
        user_login: t.manager_login.clone(),
        reason: "ticket SUP-1002".into(),
        ..Default::default()
    };
    let done = support.reset_user_password(bearer(reset, &op)).await.expect("reset").into_inner();
    assert_eq!(done.managers_notified, 1);
    let stale = users_client(server).await.list_users(bearer(pb::ListUsersRequest::default(), &manager)).await;
    assert_eq!(stale.unwrap_err().code(), Code::Unauthenticated, "the rescue revoked every session");
    let link = common::latest_link(server, &t.manager_login, "password_reset").await;
    let revealed = reset_client(server)
        .await
        .redeem_activation(pb::RedeemActivationRequest { token: link, new_password: String::new(), captcha: None })
        .await
        .expect("the link reveals the new password")
        .into_inner();
    assert!(!revealed.generated_password.is_empty());
    login_session(server, &t.manager_login, &revealed.generated_password).await;
    let old = common::try_login(server, &t.manager_login, &t.manager_password).await.unwrap_err();
    assert_eq!(old.message(), "Invalid credentials");

    // Operators do not rescue themselves; deleted users and Contacts are refused.
    let own = pb::ResetUserPinRequest { user_login: operator.clone(), reason: "mine".into(), ..Default::default() };
    assert_eq!(support.reset_user_pin(bearer(own, &op)).await.unwrap_err().code(), Code::PermissionDenied);
    let no_token = pb::ResetUserPinRequest {
        user_login: t.manager_login.clone(),
        reason: "ticket 3".into(),
        ..Default::default()
    };
    assert_eq!(common::reason(&support.reset_user_pin(bearer(no_token, &op)).await.unwrap_err()), "NO_TOKEN");
}

/// A lost token and a forgotten PIN, rescued for a user whose Managers are gone.
async fn an_operator_replaces_a_token_and_resets_a_pin(backend: Backend) {
    use common::second_factor;
    let server = server(backend);
    let (t, manager) = manager_session(server).await;
    let (_, op) = common::operator(server).await;
    let mut support = support_client(server).await;
    // Nothing to replace: a first token is the Managers' to assign.
    let bare = format!("{}_bare", t.prefix);
    member(server, &manager, &bare, Role::Scanner, "").await;
    let first = pb::ReplaceUserTokenRequest { user_login: bare, reason: "ticket 6".into(), ..Default::default() };
    assert_eq!(common::reason(&support.replace_user_token(bearer(first, &op)).await.unwrap_err()), "NO_TOKEN");

    // An enrolled user, signed in with PIN + tokencode, loses the phone.
    let (login, _, token) = second_factor::enrolled(server, "phone").await;
    let challenge = second_factor::start(server, &login, common::MEMBER_PASSWORD).await;
    let signed_in = second_factor::submit(server, &challenge, &format!("2468{}", token.code(1))).await.unwrap();
    let Some(pb::submit_passcode_response::Result::Session(session)) = signed_in.result else {
        panic!("expected a session, got {signed_in:?}")
    };
    let replace = pb::ReplaceUserTokenRequest {
        user_login: login.clone(),
        reason: "lost phone, ticket 7".into(),
        ..Default::default()
    };
    let replaced = support.replace_user_token(bearer(replace, &op)).await.expect("replaced").into_inner();
    assert!(replaced.enrollment_link_sent, "the new token goes to the user, never to the operator");
    assert!(replaced.user.unwrap().has_token);
    let own = pb::GetUserRequest { user_login: login.clone(), ..Default::default() };
    let stale = users_client(server).await.get_user(bearer(own, &session.access_token)).await;
    assert_eq!(stale.unwrap_err().code(), Code::Unauthenticated, "a new token ends the old sessions");
    let old = second_factor::start(server, &login, common::MEMBER_PASSWORD).await;
    let refused = second_factor::submit(server, &old, &format!("2468{}", token.code(2))).await.unwrap_err();
    assert_eq!(refused.message(), "Invalid Tokencode or PIN", "the lost token no longer works");

    // The user opens the emailed link: it shows the new token once.
    let link = common::latest_link(server, &login, "token_enrollment").await;
    let mut reset = reset_client(server).await;
    let seen = reset.inspect_activation(pb::InspectActivationRequest { token: link.clone() }).await.unwrap();
    let seen = seen.into_inner();
    assert_eq!((seen.purpose(), seen.requires_new_password), (pb::ActivationPurpose::TokenEnrollment, false));
    let redeem = || pb::RedeemActivationRequest { token: link.clone(), new_password: String::new(), captcha: None };
    let shown = reset.redeem_activation(redeem()).await.expect("the link shows the token").into_inner();
    assert!(shown.otpauth_uri.starts_with("otpauth://totp/") && shown.qr_code_svg.contains("<svg"));
    assert!(shown.generated_password.is_empty(), "a token link changes no password");
    let again = reset.redeem_activation(redeem()).await.unwrap_err();
    assert_eq!(common::reason(&again), "ACTIVATION_KEY_USED", "shown once");
    // The new token signs in: tokencode alone, then a new PIN.
    let new_token = second_factor::token_from_uri(&shown.otpauth_uri);
    let challenge = second_factor::start(server, &login, common::MEMBER_PASSWORD).await;
    let next = second_factor::submit(server, &challenge, &new_token.code(0)).await.expect("new tokencode").result;
    let Some(pb::submit_passcode_response::Result::Challenge(new_pin)) = next else {
        panic!("expected a new-PIN challenge, got {next:?}")
    };
    second_factor::set_pin(server, &new_pin, "1357").await.expect("a new PIN");

    let pin = pb::ResetUserPinRequest {
        user_login: login.clone(),
        reason: "forgot PIN, ticket 8".into(),
        ..Default::default()
    };
    support.reset_user_pin(bearer(pin, &op)).await.expect("PIN reset");
    common::assert_mail_sent(server, &login, "pin_reset").await;
    for action in ["support.token.replace", "support.pin.reset"] {
        assert_eq!(common::audit_count(server, action, &login, None).await, 1, "{action}");
    }
}

/// Operators rescue each other too; their subscription has no Managers, so
/// the other operators hear of it. Support's resets share the hourly limit.
async fn operators_hear_of_an_operators_rescue_and_resets_are_rate_limited(backend: Backend) {
    let server = server(backend);
    let (_, rescuer) = common::operator(server).await;
    let (bystander, _) = common::operator(server).await;
    let (locked, _) = common::operator(server).await;
    lock_out(server, &locked).await;
    let mut support = support_client(server).await;
    let reactivate =
        pb::ReactivateUserRequest { user_login: locked.clone(), reason: "INC-7".into(), ..Default::default() };
    let done = support.reactivate_user(bearer(reactivate, &rescuer)).await.expect("re-activated").into_inner();
    assert!(done.managers_notified >= 1, "the other operators are told");
    common::assert_mail_sent(server, &bystander, "rescue_notice").await;
    common::assert_mail_sent(server, &locked, "account_rescued").await;

    let reset =
        || pb::ResetUserPasswordRequest { user_login: locked.clone(), reason: "INC-8".into(), ..Default::default() };
    for _ in 0..3 {
        support.reset_user_password(bearer(reset(), &rescuer)).await.expect("reset by link");
    }
    let flooded = support.reset_user_password(bearer(reset(), &rescuer)).await.unwrap_err();
    assert_eq!(flooded.code(), Code::ResourceExhausted, "no more than 3 reset links an hour, whoever sends them");
}

/// Break-glass: the command line rescues with no account at all.
async fn the_command_line_rescues_without_any_account(backend: Backend) {
    let server = server(backend);
    let t = tenant(server);
    lock_out(server, &t.manager_login).await;
    let db = [("IDENTITY_DATABASE_URL", server.database_url.as_str())];
    let missing =
        common::identity_cli(&["support", "reactivate", "--login", &t.manager_login, "--reason", " "], &db, None);
    assert!(!missing.status.success());
    assert!(common::stderr(&missing).contains("reason"), "{}", common::stderr(&missing));
    let output = common::identity_cli(
        &["support", "reactivate", "--login", &t.manager_login, "--reason", "INC-42", "--by", "alice"],
        &db,
        None,
    );
    assert!(output.status.success(), "{}", common::stderr(&output));
    let printed = common::stdout(&output);
    assert!(printed.contains("re-activated the account") && printed.contains("ACTIVE"), "{printed}");
    assert!(printed.contains("1 Manager(s) notified"), "{printed}");
    login_session(server, &t.manager_login, &t.manager_password).await;
    assert_eq!(common::audit_count(server, "support.user.reactivate", &t.manager_login, None).await, 1);

    let output = common::identity_cli(
        &["support", "reset-password", "--login", &t.manager_login, "--reason", "INC-43"],
        &db,
        None,
    );
    assert!(output.status.success(), "{}", common::stderr(&output));
    assert!(common::stdout(&output).contains("one-time link"), "{}", common::stdout(&output));
    common::assert_mail_sent(server, &t.manager_login, "password_reset").await;
    let unknown = common::identity_cli(&["support", "reset-pin", "--login", "nobody_here", "--reason", "x"], &db, None);
    assert!(!unknown.status.success());
    assert!(common::stderr(&unknown).contains("no user with login"), "{}", common::stderr(&unknown));
}

/// Logins are global: "that login is taken" answers are few per caller and audited.
async fn taken_login_answers_are_throttled_per_caller_and_audited(backend: Backend) {
    let server = common::start(backend, |mut config| {
        config.throttle.taken_login_answers_per_hour = 3;
        config.throttle.taken_login_answers_per_subscription_per_hour = 5;
        config
    });
    let server = &server;
    let (victim, _) = manager_session(server).await;
    let (t, prober) = manager_session(server).await;
    let mut users = users_client(server).await;
    let create = |login: String| pb::CreateUserRequest {
        user_login: login,
        email: "x@example.com".into(),
        role: Role::Reader.into(),
        ..Default::default()
    };
    let colleague = member(server, &prober, &format!("{}_mgr2", t.prefix), Role::Manager, "").await;
    for n in 0..5 {
        users
            .create_user(bearer(create(format!("{}_free{n}", t.prefix)), &prober))
            .await
            .expect("free logins cost nothing");
    }
    for _ in 0..3 {
        let taken = users.create_user(bearer(create(victim.manager_login.clone()), &prober)).await.unwrap_err();
        assert_eq!(taken.code(), Code::AlreadyExists);
    }
    let throttled = users.create_user(bearer(create(format!("{}_free9", t.prefix)), &prober)).await.unwrap_err();
    assert_eq!(throttled.code(), Code::ResourceExhausted, "even a free login, once the caller has had its answers");
    let rename = pb::ChangeUserLoginRequest {
        user_login: String::new(),
        new_user_login: victim.manager_login.clone(),
        current_password: t.manager_password.clone(),
        ..Default::default()
    };
    let throttled = common::auth_client(server).await.change_user_login(bearer(rename, &prober)).await.unwrap_err();
    assert_eq!(throttled.code(), Code::ResourceExhausted, "renames share the caller's answers");
    assert_eq!(common::audit_count(server, "user.login.taken", &victim.manager_login, Some("FAILURE")).await, 3);

    // More accounts do not buy more answers: the subscription's budget is shared.
    for _ in 0..2 {
        let taken = users.create_user(bearer(create(victim.manager_login.clone()), &colleague)).await.unwrap_err();
        assert_eq!(taken.code(), Code::AlreadyExists);
    }
    let throttled = users.create_user(bearer(create(victim.manager_login.clone()), &colleague)).await.unwrap_err();
    assert_eq!(throttled.code(), Code::ResourceExhausted, "the subscription has had its 5 answers this hour");
}

async fn the_status_machine_guards_every_change(backend: Backend) {
    let server = server(backend);
    let (t, token) = manager_session(server).await;
    let p = &t.prefix;
    let login = format!("{p}_worker");
    let session = member(server, &token, &login, Role::Scanner, "").await;
    let pending = create_user(server, &token, &format!("{p}_pending"), Role::Reader, "").await;
    let mut users = users_client(server).await;
    let status = |user_login: &str, status: UserStatus| pb::SetUserStatusRequest {
        user_login: user_login.to_owned(),
        status: status.into(),
        reason: "audit note".into(),
        ..Default::default()
    };

    let inactive =
        users.set_user_status(bearer(status(&login, UserStatus::Inactive), &token)).await.unwrap().into_inner();
    assert_eq!(inactive.user.unwrap().status(), UserStatus::Inactive);
    let revoked = common::auth_client(server)
        .await
        .validate_token(pb::ValidateTokenRequest { access_token: session.clone() })
        .await
        .unwrap()
        .into_inner();
    assert!(!revoked.valid, "deactivation ends the user's sessions");
    let twice = users.set_user_status(bearer(status(&login, UserStatus::Inactive), &token)).await.unwrap_err();
    assert_eq!(twice.code(), Code::FailedPrecondition);
    assert_eq!(twice.message(), "cannot change a user from INACTIVE to INACTIVE");
    users.set_user_status(bearer(status(&login, UserStatus::Active), &token)).await.expect("re-activated");
    let from_pending =
        users.set_user_status(bearer(status(&pending.user_login, UserStatus::Inactive), &token)).await.unwrap_err();
    assert_eq!(from_pending.message(), "cannot change a user from PENDING_ACTIVATION to INACTIVE");
    let to_deleted = users.set_user_status(bearer(status(&login, UserStatus::Deleted), &token)).await.unwrap_err();
    assert_eq!(to_deleted.code(), Code::InvalidArgument, "deletion has its own RPC");

    let deleted = users
        .delete_user(bearer(pb::DeleteUserRequest { user_login: login.clone(), ..Default::default() }, &token))
        .await
        .unwrap();
    assert_eq!(deleted.into_inner().user.unwrap().status(), UserStatus::Deleted);
    let again = users
        .delete_user(bearer(pb::DeleteUserRequest { user_login: login.clone(), ..Default::default() }, &token))
        .await
        .unwrap_err();
    assert_eq!((again.code(), again.message()), (Code::FailedPrecondition, format!("`{login}` is deleted").as_str()));
    let reuse = users
        .create_user(bearer(
            pb::CreateUserRequest {
                user_login: login.clone(),
                email: "z@example.com".into(),
                role: Role::Reader.into(),
                ..Default::default()
            },
            &token,
        ))
        .await
        .unwrap_err();
    assert_eq!(reuse.code(), Code::AlreadyExists, "a deleted login is never reused");
    let reset = common::reset_results(server, &token, &[&login]).await;
    assert_eq!(reset[0].reason(), pb::ResetReason::Deleted);
}

async fn listing_pages_stay_stable_while_users_are_added(backend: Backend) {
    let server = server(backend);
    let (t, token) = manager_session(server).await;
    let p = t.prefix.clone();
    for i in 0..30 {
        create_user(server, &token, &format!("{p}_a{i:02}"), Role::Reader, "").await;
    }
    let inserter = {
        let (token, p) = (token.clone(), p.clone());
        let url = server.url();
        tokio::spawn(async move {
            let channel = tonic::transport::Channel::from_shared(url).unwrap().connect().await.unwrap();
            let mut users = pb::users_client::UsersClient::new(channel);
            for i in 0..20 {
                let request = pb::CreateUserRequest {
                    user_login: format!("{p}_b{i:02}"),
                    email: "b@example.com".into(),
                    role: Role::Reader.into(),
                    ..Default::default()
                };
                users.create_user(bearer(request, &token)).await.unwrap();
            }
        })
    };
    let mut users = users_client(server).await;
    let mut seen = Vec::new();
    let mut page_token = String::new();
    loop {
        let request = pb::ListUsersRequest { page_size: 7, page_token: page_token.clone(), ..Default::default() };
        let page = users.list_users(bearer(request, &token)).await.unwrap().into_inner();
        assert!(page.users.len() <= 7);
        seen.extend(page.users.into_iter().map(|u| u.user_login));
        if page.next_page_token.is_empty() {
            break;
        }
        page_token = page.next_page_token;
        tokio::task::yield_now().await;
    }
    inserter.await.unwrap();
    let mut sorted = seen.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(seen, sorted, "pages come in order, without duplicates");
    for i in 0..30 {
        assert!(seen.contains(&format!("{p}_a{i:02}")), "a{i:02} was skipped");
    }

    let filtered = pb::ListUsersRequest { page_size: 5, role: Role::Reader.into(), ..Default::default() };
    let first = users.list_users(bearer(filtered, &token)).await.unwrap().into_inner();
    let replayed =
        pb::ListUsersRequest { page_size: 5, page_token: first.next_page_token.clone(), ..Default::default() };
    let mismatch = users.list_users(bearer(replayed, &token)).await.unwrap_err();
    assert_eq!(mismatch.code(), Code::InvalidArgument, "a token belongs to its filters");
    let tampered = pb::ListUsersRequest { page_token: format!("{}x", first.next_page_token), ..Default::default() };
    assert_eq!(users.list_users(bearer(tampered, &token)).await.unwrap_err().code(), Code::InvalidArgument);
    let negative = pb::ListUsersRequest { page_size: -1, ..Default::default() };
    assert_eq!(users.list_users(bearer(negative, &token)).await.unwrap_err().code(), Code::InvalidArgument);
    let huge = pb::ListUsersRequest { page_size: 1_000_000, ..Default::default() };
    assert!(users.list_users(bearer(huge, &token)).await.unwrap().into_inner().users.len() <= 500);
    let search = pb::ListUsersRequest { query: format!("{p}_A0"), ..Default::default() };
    assert_eq!(
        users.list_users(bearer(search, &token)).await.unwrap().into_inner().users.len(),
        10,
        "case-insensitive text"
    );
}

async fn managers_find_usernames_by_email_or_name_in_their_scope(backend: Backend) {
    let server = server(backend);
    let (t, token) = manager_session(server).await;
    let login = format!("{}_fran", t.prefix);
    let mut users = users_client(server).await;
    users
        .create_user(bearer(
            pb::CreateUserRequest {
                user_login: login.clone(),
                email: format!("Fran.M.{}@Example.com", t.prefix),
                first_name: "Fran".into(),
                last_name: "Martin".into(),
                role: Role::Reader.into(),
                business_unit: String::new(),
            },
            &token,
        ))
        .await
        .unwrap();
    for (email, name) in
        [(format!("fran.m.{}@example.com", t.prefix), String::new()), (String::new(), "fran martin".to_owned())]
    {
        let found = users
            .lookup_username(bearer(pb::LookupUsernameRequest { email, name }, &token))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(found.users.iter().map(|u| u.user_login.as_str()).collect::<Vec<_>>(), [login.as_str()]);
    }
    let other = tenant(server);
    let other_token = login_session(server, &other.manager_login, &other.manager_password).await;
    let elsewhere = users
        .lookup_username(bearer(
            pb::LookupUsernameRequest { email: String::new(), name: "Fran Martin".into() },
            &other_token,
        ))
        .await
        .unwrap()
        .into_inner();
    assert!(elsewhere.users.is_empty(), "another subscription finds nothing");
    let empty = users.lookup_username(bearer(pb::LookupUsernameRequest::default(), &token)).await.unwrap_err();
    assert_eq!(empty.code(), Code::InvalidArgument);
    let reader = member(server, &token, &format!("{}_rd", t.prefix), Role::Reader, "").await;
    let denied = users
        .lookup_username(bearer(pb::LookupUsernameRequest { email: "a@b.co".into(), name: String::new() }, &reader))
        .await;
    assert_eq!(denied.unwrap_err().code(), Code::PermissionDenied);
}

async fn another_subscriptions_users_do_not_exist(backend: Backend) {
    let server = server(backend);
    let (_, token) = manager_session(server).await;
    let other = tenant(server);
    let mut users = users_client(server).await;
    let get = users
        .get_user(bearer(pb::GetUserRequest { user_login: other.manager_login.clone(), ..Default::default() }, &token))
        .await
        .unwrap_err();
    assert_eq!(get.code(), Code::NotFound);
    assert!(
        !get.message().contains(&other.prefix) || get.message().contains("no user with login"),
        "{}",
        get.message()
    );
    let update = pb::UpdateUserRequest {
        user_login: other.manager_login.clone(),
        first_name: Some("x".into()),
        ..Default::default()
    };
    assert_eq!(users.update_user(bearer(update, &token)).await.unwrap_err().code(), Code::NotFound);
    let reset = common::reset_results(server, &token, &[&other.manager_login]).await;
    assert_eq!(reset[0].reason(), pb::ResetReason::UnknownUser);
}

async fn bad_input_is_refused_clearly_and_writes_nothing(backend: Backend) {
    let server = server(backend);
    let (t, token) = manager_session(server).await;
    let mut users = users_client(server).await;
    let base = pb::CreateUserRequest {
        user_login: format!("{}_bad", t.prefix),
        email: "ok@example.com".into(),
        role: Role::Reader.into(),
        ..Default::default()
    };
    let cases = [
        ("email", pb::CreateUserRequest { email: "not-an-email".into(), ..base.clone() }),
        ("role", pb::CreateUserRequest { role: Role::Unspecified.into(), ..base.clone() }),
        ("role", pb::CreateUserRequest { role: 99, ..base.clone() }),
        ("first_name", pb::CreateUserRequest { first_name: "x".repeat(101), ..base.clone() }),
        ("business_unit", pb::CreateUserRequest { business_unit: "Nowhere".into(), ..base.clone() }),
        ("user_login", pb::CreateUserRequest { user_login: "bad login!".into(), ..base.clone() }),
        ("user_login", pb::CreateUserRequest { user_login: "x".repeat(65), ..base.clone() }),
    ];
    for (field, request) in cases {
        let status = users.create_user(bearer(request, &token)).await.unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument, "{field}");
        assert!(status.message().starts_with(field), "{field}: {}", status.message());
    }
    let listed = users.list_users(bearer(pb::ListUsersRequest::default(), &token)).await.unwrap().into_inner();
    assert_eq!(listed.users.len(), 1, "nothing but the Manager was written");
    let duplicate_unit =
        users.create_business_unit(bearer(pb::CreateBusinessUnitRequest { name: "Unassigned".into() }, &token));
    assert_eq!(duplicate_unit.await.unwrap_err().code(), Code::AlreadyExists);
    let empty_unit = users.create_business_unit(bearer(pb::CreateBusinessUnitRequest { name: "  ".into() }, &token));
    assert_eq!(empty_unit.await.unwrap_err().code(), Code::InvalidArgument);
}

async fn every_change_leaves_exactly_one_audit_row(backend: Backend) {
    let server = server(backend);
    let (t, token) = manager_session(server).await;
    let p = &t.prefix;
    let login = format!("{p}_audited");
    add_unit(server, &token, "Green").await;
    create_user(server, &token, &login, Role::Reader, "").await;
    let mut users = users_client(server).await;
    users
        .update_user(bearer(
            pb::UpdateUserRequest {
                user_login: login.clone(),
                business_unit: Some("Green".into()),
                ..Default::default()
            },
            &token,
        ))
        .await
        .unwrap();
    common::reset_password(server, &token, &login).await;
    for status in [UserStatus::Inactive, UserStatus::Active] {
        users
            .set_user_status(bearer(
                pb::SetUserStatusRequest {
                    user_login: login.clone(),
                    status: status.into(),
                    reason: String::new(),
                    ..Default::default()
                },
                &token,
            ))
            .await
            .unwrap();
    }
    users
        .delete_user(bearer(pb::DeleteUserRequest { user_login: login.clone(), ..Default::default() }, &token))
        .await
        .unwrap();

    let events = users
        .list_audit_events(bearer(
            pb::ListAuditEventsRequest { target_login: login.clone(), ..Default::default() },
            &token,
        ))
        .await
        .unwrap()
        .into_inner()
        .events;
    let actions: Vec<&str> = events.iter().map(|e| e.action.as_str()).collect();
    assert_eq!(
        actions,
        ["user.delete", "user.status.change", "user.status.change", "password.reset", "user.update", "user.create"],
        "newest first, one row per change"
    );
    assert!(events.iter().all(|e| e.actor_login == t.manager_login && e.source_ip == "127.0.0.1"));
    let units = users
        .list_audit_events(bearer(
            pb::ListAuditEventsRequest { action: "business_unit.create".into(), ..Default::default() },
            &token,
        ))
        .await
        .unwrap()
        .into_inner()
        .events;
    assert_eq!(units.len(), 1);

    let auditor = member(server, &token, &format!("{p}_auditor"), Role::Auditor, "").await;
    let paged = users
        .list_audit_events(bearer(pb::ListAuditEventsRequest { page_size: 2, ..Default::default() }, &auditor))
        .await
        .expect("Auditors read the audit log")
        .into_inner();
    assert_eq!(paged.events.len(), 2);
    assert!(!paged.next_page_token.is_empty());
    let reader = member(server, &token, &format!("{p}_reader2"), Role::Reader, "").await;
    let denied = users.list_audit_events(bearer(pb::ListAuditEventsRequest::default(), &reader)).await.unwrap_err();
    assert_eq!(denied.code(), Code::PermissionDenied);
}

async fn platform_operators_create_subscriptions(backend: Backend) {
    let server = server(backend);
    let (_, op_token) = common::operator(server).await;
    let prefix = unique("s");
    let request = pb::CreateSubscriptionRequest {
        name: "Acme".into(),
        login_prefix: prefix.clone(),
        users_define_own_password: false,
        lockout_threshold: 3,
        manager: Some(pb::create_subscription_request::NewManager {
            user_login: String::new(),
            email: "boss@acme.example".into(),
            first_name: "Ann".into(),
            last_name: "Boss".into(),
        }),
    };
    let mut users = users_client(server).await;
    let created = users.create_subscription(bearer(request.clone(), &op_token)).await.expect("created").into_inner();
    let subscription = created.subscription.unwrap();
    assert_eq!((subscription.login_prefix.as_str(), subscription.lockout_threshold), (prefix.as_str(), 3));
    let manager = created.manager.unwrap();
    assert_eq!((manager.role(), manager.status()), (Role::Manager, UserStatus::PendingActivation));
    assert!(manager.user_login.starts_with(&format!("{prefix}_l1")));

    let again = users.create_subscription(bearer(request.clone(), &op_token)).await.unwrap_err();
    assert_eq!(again.code(), Code::AlreadyExists);
    let reserved = pb::CreateSubscriptionRequest { login_prefix: "platform".into(), ..request.clone() };
    assert_eq!(users.create_subscription(bearer(reserved, &op_token)).await.unwrap_err().code(), Code::InvalidArgument);
    let (_, manager_token) = manager_session(server).await;
    let by_manager = pb::CreateSubscriptionRequest { login_prefix: unique("s"), ..request };
    assert_eq!(
        users.create_subscription(bearer(by_manager, &manager_token)).await.unwrap_err().code(),
        Code::PermissionDenied
    );
}

on_both_backends!(
    new_users_start_pending_with_a_welcome_email_and_contacts_get_nothing,
    unit_managers_see_and_change_only_their_own_unit,
    an_administrator_a_manager_made_is_administered_by_another_manager,
    the_last_active_manager_cannot_be_deactivated_deleted_or_demoted,
    an_operator_rescues_a_lone_locked_manager,
    an_operator_replaces_a_token_and_resets_a_pin,
    the_command_line_rescues_without_any_account,
    operators_hear_of_an_operators_rescue_and_resets_are_rate_limited,
    a_deactivation_voids_live_links,
    taken_login_answers_are_throttled_per_caller_and_audited,
    the_status_machine_guards_every_change,
    listing_pages_stay_stable_while_users_are_added,
    managers_find_usernames_by_email_or_name_in_their_scope,
    another_subscriptions_users_do_not_exist,
    bad_input_is_refused_clearly_and_writes_nothing,
    every_change_leaves_exactly_one_audit_row,
    platform_operators_create_subscriptions,
);
