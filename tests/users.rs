//! Users and their administrators: who may see and change whom (DESIGN §1),
//! the status machine, lookups, pagination, and one audit row per change.

mod common;

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
    assert!(welcome[0].body_text.contains(&reader.user_login));
    assert!(welcome[0].body_text.contains("http://127.0.0.1:8080/activate/"), "{}", welcome[0].body_text);

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
        .get_user(bearer(pb::GetUserRequest { user_login: contact.user_login.clone() }, &token))
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

    users.get_user(bearer(pb::GetUserRequest { user_login: red.user_login.clone() }, &um)).await.expect("own unit");
    let outside =
        users.get_user(bearer(pb::GetUserRequest { user_login: blue.user_login.clone() }, &um)).await.unwrap_err();
    assert_eq!(outside.code(), Code::PermissionDenied);
    let manager = users.get_user(bearer(pb::GetUserRequest { user_login: t.manager_login.clone() }, &um)).await;
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

async fn managers_cannot_touch_administrators_and_nobody_administers_themselves(backend: Backend) {
    let server = server(backend);
    let (t, manager) = manager_session(server).await;
    let p = &t.prefix;
    let admin = member(server, &manager, &format!("{p}_admin"), Role::Administrator, "").await;
    let other_manager = create_user(server, &manager, &format!("{p}_mgr2"), Role::Manager, "").await;
    let mut users = users_client(server).await;
    let mut reset = reset_client(server).await;
    let admin_login = format!("{p}_admin");

    let update =
        pb::UpdateUserRequest { user_login: admin_login.clone(), first_name: Some("Z".into()), ..Default::default() };
    assert_eq!(users.update_user(bearer(update, &manager)).await.unwrap_err().code(), Code::PermissionDenied);
    let delete = pb::DeleteUserRequest { user_login: admin_login.clone() };
    assert_eq!(users.delete_user(bearer(delete, &manager)).await.unwrap_err().code(), Code::PermissionDenied);
    let by_manager =
        pb::ResetPasswordsRequest { user_logins: vec![admin_login.clone()], all: false, notify_by_email: false };
    let refused = reset.reset_passwords(bearer(by_manager, &manager)).await.unwrap().into_inner();
    assert_eq!(refused.results[0].reason(), pb::ResetReason::OutOfScope);

    // An Administrator administers Managers, but not themselves.
    let by_admin = pb::ResetPasswordsRequest {
        user_logins: vec![other_manager.user_login.clone(), admin_login.clone()],
        all: false,
        notify_by_email: false,
    };
    let outcome = reset.reset_passwords(bearer(by_admin, &admin)).await.unwrap().into_inner();
    assert!(outcome.results[0].changed);
    assert_eq!(outcome.results[1].reason(), pb::ResetReason::Self_);

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
                    },
                    &manager,
                ))
                .await
                .map(|_| ()),
        ),
        (
            "delete",
            users
                .delete_user(bearer(pb::DeleteUserRequest { user_login: t.manager_login.clone() }, &manager))
                .await
                .map(|_| ()),
        ),
    ] {
        assert_eq!(result.unwrap_err().code(), Code::PermissionDenied, "{what} on oneself");
    }
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

    let deleted = users.delete_user(bearer(pb::DeleteUserRequest { user_login: login.clone() }, &token)).await.unwrap();
    assert_eq!(deleted.into_inner().user.unwrap().status(), UserStatus::Deleted);
    let again =
        users.delete_user(bearer(pb::DeleteUserRequest { user_login: login.clone() }, &token)).await.unwrap_err();
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
        .get_user(bearer(pb::GetUserRequest { user_login: other.manager_login.clone() }, &token))
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
                pb::SetUserStatusRequest { user_login: login.clone(), status: status.into(), reason: String::new() },
                &token,
            ))
            .await
            .unwrap();
    }
    users.delete_user(bearer(pb::DeleteUserRequest { user_login: login.clone() }, &token)).await.unwrap();

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
    let operator = unique("op");
    let output = common::identity_cli(
        &["operator", "create", "--login", &operator, "--email", "ops@example.com", "--password-stdin"],
        &[("IDENTITY_DATABASE_URL", &server.database_url)],
        Some("operator pass phrase long\n"),
    );
    assert!(output.status.success(), "{}", common::stderr(&output));
    let op_token = login_session(server, &operator, "operator pass phrase long").await;
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
    managers_cannot_touch_administrators_and_nobody_administers_themselves,
    the_status_machine_guards_every_change,
    listing_pages_stay_stable_while_users_are_added,
    managers_find_usernames_by_email_or_name_in_their_scope,
    another_subscriptions_users_do_not_exist,
    bad_input_is_refused_clearly_and_writes_nothing,
    every_change_leaves_exactly_one_audit_row,
    platform_operators_create_subscriptions,
);
