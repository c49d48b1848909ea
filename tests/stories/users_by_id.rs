//! A login can be renamed; a user's id cannot. Callers that keep ids keep
//! reaching the same person: every RPC that names a user takes the id as well
//! as the login, and every answer that names a user carries the id.

use crate::common;

use common::{
    Backend, bearer, create_user, login, login_session, member, reason, reset_client, server, tenant, users_client,
};
use identity::pb::{self, Role};
use tonic::Code;

async fn a_renamed_user_is_still_reached_by_id(backend: Backend) {
    let server = server(backend);
    let t = tenant(server);
    let token = login_session(server, &t.manager_login, &t.manager_password).await;
    let session = login(server, &t.manager_login, &t.manager_password).await;
    assert!(!session.user_id.is_empty(), "a session names its user's id");

    let old = format!("{}_old", t.prefix);
    let reader_token = member(server, &token, &old, Role::Reader, "").await;
    let mut users = users_client(server).await;
    let by_login =
        users.get_user(bearer(pb::GetUserRequest { user_login: old.clone(), ..Default::default() }, &token)).await;
    let id = by_login.unwrap().into_inner().user.unwrap().id;
    drop(reader_token);

    // Renamed by id: the answer names the id and the new login.
    let new = format!("{}_new", t.prefix);
    let renamed = common::auth_client(server)
        .await
        .change_user_login(bearer(
            pb::ChangeUserLoginRequest { user_id: id.clone(), new_user_login: new.clone(), ..Default::default() },
            &token,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!((renamed.user_id.as_str(), renamed.user_login.as_str()), (id.as_str(), new.as_str()));

    // The id still reaches the user; the old login names nobody.
    let get = |user_login: &str, user_id: &str| pb::GetUserRequest {
        user_login: user_login.to_owned(),
        user_id: user_id.to_owned(),
    };
    let found = users.get_user(bearer(get("", &id), &token)).await.unwrap().into_inner().user.unwrap();
    assert_eq!((found.id.as_str(), found.user_login.as_str()), (id.as_str(), new.as_str()));
    let gone = users.get_user(bearer(get(&old, ""), &token)).await.unwrap_err();
    assert_eq!((gone.code(), reason(&gone).as_str()), (Code::NotFound, "NOT_FOUND"));
    assert!(users.get_user(bearer(get(&new, &id), &token)).await.is_ok(), "both, agreeing");

    // A stale login beside the id: the caller meant someone else, or no one.
    let stale = users.get_user(bearer(get(&old, &id), &token)).await.unwrap_err();
    assert_eq!((stale.code(), reason(&stale).as_str()), (Code::InvalidArgument, "INVALID_ARGUMENT"));
    let other = users.get_user(bearer(get(&t.manager_login, &id), &token)).await.unwrap_err();
    assert_eq!(other.code(), Code::InvalidArgument);

    // An unknown id, and another tenant's user's id, are both "no such user".
    let unknown = users.get_user(bearer(get("", &uuid::Uuid::new_v4().to_string()), &token)).await.unwrap_err();
    assert_eq!((unknown.code(), reason(&unknown).as_str()), (Code::NotFound, "NOT_FOUND"));
    let elsewhere = tenant(server);
    let elsewhere_token = login_session(server, &elsewhere.manager_login, &elsewhere.manager_password).await;
    let foreign = users.get_user(bearer(get("", &id), &elsewhere_token)).await.unwrap_err();
    assert_eq!((foreign.code(), reason(&foreign).as_str()), (Code::NotFound, "NOT_FOUND"));
    let foreign_mixed = users.get_user(bearer(get(&elsewhere.manager_login, &id), &elsewhere_token)).await;
    assert_eq!(foreign_mixed.unwrap_err().code(), Code::NotFound, "another tenant's id reveals nothing");
    let absurd = users.get_user(bearer(get("", &"x".repeat(500)), &token)).await.unwrap_err();
    assert_eq!(absurd.code(), Code::InvalidArgument);

    // The audit trail follows the id across the rename.
    let events = users
        .list_audit_events(bearer(pb::ListAuditEventsRequest { target_id: id.clone(), ..Default::default() }, &token))
        .await
        .unwrap()
        .into_inner()
        .events;
    let actions: Vec<&str> = events.iter().map(|e| e.action.as_str()).collect();
    assert!(actions.contains(&"user.create") && actions.contains(&"user.login.change"), "{actions:?}");
    assert!(events.iter().all(|e| e.target_id == id), "every event names the id");
    assert!(events.iter().any(|e| e.actor_id == session.user_id), "and the actor's id");
}

async fn every_administrative_rpc_takes_the_id(backend: Backend) {
    let server = server(backend);
    let t = tenant(server);
    let token = login_session(server, &t.manager_login, &t.manager_password).await;
    let target = format!("{}_t", t.prefix);
    let id = create_user(server, &token, &target, Role::Scanner, "").await.id;
    let mut users = users_client(server).await;

    let updated = users
        .update_user(bearer(
            pb::UpdateUserRequest { user_id: id.clone(), first_name: Some("Renée".to_owned()), ..Default::default() },
            &token,
        ))
        .await
        .unwrap()
        .into_inner()
        .user
        .unwrap();
    assert_eq!((updated.id.as_str(), updated.first_name.as_str()), (id.as_str(), "Renée"));

    let reset = reset_client(server)
        .await
        .reset_passwords(bearer(
            pb::ResetPasswordsRequest {
                user_ids: vec![id.clone(), "no-such-id".to_owned()],
                user_logins: vec![target.clone()],
                ..Default::default()
            },
            &token,
        ))
        .await
        .unwrap()
        .into_inner()
        .results;
    let outcomes: Vec<(&str, &str, bool)> =
        reset.iter().map(|r| (r.user_login.as_str(), r.user_id.as_str(), r.changed)).collect();
    assert_eq!(
        outcomes,
        [(target.as_str(), id.as_str(), true), ("", "no-such-id", false)],
        "one user named by login and by id is reset once; an unknown id is named back"
    );
    assert_eq!(reset[1].reason(), pb::ResetReason::UnknownUser);
    login(server, &target, &reset[0].password).await;

    users
        .assign_token(bearer(pb::AssignTokenRequest { user_id: id.clone(), ..Default::default() }, &token))
        .await
        .unwrap();
    reset_client(server)
        .await
        .reset_pin(bearer(pb::ResetPinRequest { user_id: id.clone(), ..Default::default() }, &token))
        .await
        .unwrap();
    let status = pb::SetUserStatusRequest {
        user_id: id.clone(),
        status: pb::UserStatus::Inactive.into(),
        reason: "on leave".to_owned(),
        ..Default::default()
    };
    let inactive = users.set_user_status(bearer(status, &token)).await.unwrap().into_inner().user.unwrap();
    assert_eq!(inactive.status(), pb::UserStatus::Inactive);

    // Platform support rescues by id too.
    let (_, operator_token) = common::operator(server).await;
    let rescued = pb::support_client::SupportClient::new(server.channel().await)
        .reactivate_user(bearer(
            pb::ReactivateUserRequest { user_id: id.clone(), reason: "ticket 42".to_owned(), ..Default::default() },
            &operator_token,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(rescued.user.unwrap().status(), pb::UserStatus::Active);

    let deleted = users
        .delete_user(bearer(pb::DeleteUserRequest { user_id: id.clone(), ..Default::default() }, &token))
        .await
        .unwrap()
        .into_inner()
        .user
        .unwrap();
    assert_eq!((deleted.id.as_str(), deleted.status()), (id.as_str(), pb::UserStatus::Deleted));
}

on_both_backends!(a_renamed_user_is_still_reached_by_id, every_administrative_rpc_takes_the_id);
