//! `identity.v1.Users`: proto in, use case, proto out.

use std::sync::Arc;

use tonic::{Request, Response, Status};

use super::convert::{
    action_to_proto, caller, context, role_from_proto, role_to_proto, status_from_proto, timestamp, timestamp_ms,
    user_to_proto,
};
use crate::{
    app::{
        App, access, audit_log,
        bootstrap::{self, BootstrapRequest, Creator, LinkDelivery},
        second_factor,
        users::{self, ListInput, NewUserInput, UserChanges},
    },
    domain::{Error, UserRef, permissions::is_platform_operator},
    pb::{self, users_server::Users},
};

pub struct UsersService {
    app: Arc<App>,
}

impl UsersService {
    pub fn new(app: Arc<App>) -> Self {
        Self { app }
    }
}

fn optional_role(value: i32, field: &'static str) -> Result<Option<crate::domain::Role>, Error> {
    match pb::Role::try_from(value) {
        Ok(pb::Role::Unspecified) => Ok(None),
        Ok(role) => Ok(role_from_proto(role)),
        Err(_) => Err(Error::invalid(field, "is not a known role")),
    }
}

#[tonic::async_trait]
impl Users for UsersService {
    async fn create_subscription(
        &self,
        request: Request<pb::CreateSubscriptionRequest>,
    ) -> Result<Response<pb::CreateSubscriptionResponse>, Status> {
        let (caller, ctx) = (caller(&request)?, context(&request));
        let operator = access::active_user(&self.app, &caller).await?;
        if !is_platform_operator(operator.role) {
            return Err(Error::PermissionDenied("only platform operators create subscriptions".to_owned()).into());
        }
        let body = request.into_inner();
        let manager = body.manager.ok_or_else(|| Error::invalid("manager", "is required"))?;
        let mut input = BootstrapRequest::new(&body.login_prefix, &body.name, &manager.email);
        input.manager_login = (!manager.user_login.is_empty()).then_some(manager.user_login);
        input.manager_first_name = manager.first_name;
        input.manager_last_name = manager.last_name;
        input.users_define_own_password = body.users_define_own_password;
        if body.lockout_threshold != 0 {
            input.lockout_threshold = i32::try_from(body.lockout_threshold).unwrap_or(i32::MAX);
        }
        let creator = Creator { user: Some(&operator), source_ip: ctx.source_ip };
        let created = bootstrap::create_subscription(&self.app, input, LinkDelivery::Email, creator).await?;
        let manager = users::views(&self.app, vec![created.manager]).await?.remove(0);
        let s = created.subscription;
        Ok(Response::new(pb::CreateSubscriptionResponse {
            subscription: Some(pb::Subscription {
                id: s.id,
                name: s.name,
                login_prefix: s.login_prefix,
                platform_id: s.platform_id,
                users_define_own_password: s.users_define_own_password,
                lockout_threshold: u32::try_from(s.lockout_threshold).unwrap_or(0),
                create_time: timestamp(s.created_at),
            }),
            manager: Some(user_to_proto(manager)),
        }))
    }

    async fn create_business_unit(
        &self,
        request: Request<pb::CreateBusinessUnitRequest>,
    ) -> Result<Response<pb::CreateBusinessUnitResponse>, Status> {
        let (caller, ctx) = (caller(&request)?, context(&request));
        let unit = users::create_business_unit(&self.app, &caller, &request.into_inner().name, &ctx).await?;
        Ok(Response::new(pb::CreateBusinessUnitResponse {
            business_unit: Some(pb::BusinessUnit {
                id: unit.id,
                name: unit.name,
                create_time: timestamp(unit.created_at),
            }),
        }))
    }

    async fn create_user(
        &self,
        request: Request<pb::CreateUserRequest>,
    ) -> Result<Response<pb::CreateUserResponse>, Status> {
        let (caller, ctx) = (caller(&request)?, context(&request));
        let body = request.into_inner();
        let input = NewUserInput {
            user_login: body.user_login,
            email: body.email,
            first_name: body.first_name,
            last_name: body.last_name,
            role: optional_role(body.role, "role")?,
            business_unit: body.business_unit,
        };
        let view = users::create_user(&self.app, &caller, input, &ctx).await?;
        Ok(Response::new(pb::CreateUserResponse { user: Some(user_to_proto(view)) }))
    }

    async fn get_user(&self, request: Request<pb::GetUserRequest>) -> Result<Response<pb::GetUserResponse>, Status> {
        let caller = caller(&request)?;
        let body = request.into_inner();
        let view = users::get_user(&self.app, &caller, &UserRef::new(body.user_login, body.user_id)).await?;
        Ok(Response::new(pb::GetUserResponse { user: Some(user_to_proto(view)) }))
    }

    async fn list_users(
        &self,
        request: Request<pb::ListUsersRequest>,
    ) -> Result<Response<pb::ListUsersResponse>, Status> {
        let caller = caller(&request)?;
        let body = request.into_inner();
        let status = match pb::UserStatus::try_from(body.status) {
            Ok(pb::UserStatus::Unspecified) => None,
            Ok(status) => Some(status_from_proto(status)),
            Err(_) => return Err(Error::invalid("status", "is not a known status").into()),
        };
        let input = ListInput {
            page_size: body.page_size,
            page_token: body.page_token,
            business_unit: body.business_unit,
            role: optional_role(body.role, "role")?,
            status: status.flatten(),
            query: body.query,
        };
        let (views, next_page_token) = users::list_users(&self.app, &caller, input).await?;
        Ok(Response::new(pb::ListUsersResponse {
            users: views.into_iter().map(user_to_proto).collect(),
            next_page_token,
        }))
    }

    async fn lookup_username(
        &self,
        request: Request<pb::LookupUsernameRequest>,
    ) -> Result<Response<pb::LookupUsernameResponse>, Status> {
        let caller = caller(&request)?;
        let body = request.into_inner();
        let found = users::lookup_username(&self.app, &caller, &body.email, &body.name).await?;
        Ok(Response::new(pb::LookupUsernameResponse { users: found.into_iter().map(user_to_proto).collect() }))
    }

    async fn update_user(
        &self,
        request: Request<pb::UpdateUserRequest>,
    ) -> Result<Response<pb::UpdateUserResponse>, Status> {
        let (caller, ctx) = (caller(&request)?, context(&request));
        let body = request.into_inner();
        let role = match body.role {
            Some(value) => Some(optional_role(value, "role")?.ok_or_else(|| Error::invalid("role", "must be a role"))?),
            None => None,
        };
        let changes = UserChanges {
            email: body.email,
            first_name: body.first_name,
            last_name: body.last_name,
            role,
            business_unit: body.business_unit,
        };
        let target = UserRef::new(body.user_login, body.user_id);
        let view = users::update_user(&self.app, &caller, &target, changes, &ctx).await?;
        Ok(Response::new(pb::UpdateUserResponse { user: Some(user_to_proto(view)) }))
    }

    async fn set_user_status(
        &self,
        request: Request<pb::SetUserStatusRequest>,
    ) -> Result<Response<pb::SetUserStatusResponse>, Status> {
        let (caller, ctx) = (caller(&request)?, context(&request));
        let body = request.into_inner();
        let wanted = pb::UserStatus::try_from(body.status).ok().and_then(status_from_proto);
        let target = UserRef::new(body.user_login, body.user_id);
        let view = users::set_user_status(&self.app, &caller, &target, wanted, &body.reason, &ctx).await?;
        Ok(Response::new(pb::SetUserStatusResponse { user: Some(user_to_proto(view)) }))
    }

    async fn delete_user(
        &self,
        request: Request<pb::DeleteUserRequest>,
    ) -> Result<Response<pb::DeleteUserResponse>, Status> {
        let (caller, ctx) = (caller(&request)?, context(&request));
        let body = request.into_inner();
        let view = users::delete_user(&self.app, &caller, &UserRef::new(body.user_login, body.user_id), &ctx).await?;
        Ok(Response::new(pb::DeleteUserResponse { user: Some(user_to_proto(view)) }))
    }

    async fn assign_token(
        &self,
        request: Request<pb::AssignTokenRequest>,
    ) -> Result<Response<pb::AssignTokenResponse>, Status> {
        let (caller, ctx) = (caller(&request)?, context(&request));
        let body = request.into_inner();
        let target = UserRef::new(body.user_login, body.user_id);
        let token = second_factor::assign_token(&self.app, &caller, &target, &ctx).await?;
        Ok(Response::new(pb::AssignTokenResponse {
            otpauth_uri: token.otpauth_uri.into_exposed(),
            qr_code_png: token.qr_png,
            qr_code_svg: token.qr_svg,
        }))
    }

    async fn list_audit_events(
        &self,
        request: Request<pb::ListAuditEventsRequest>,
    ) -> Result<Response<pb::ListAuditEventsResponse>, Status> {
        let caller = caller(&request)?;
        let body = request.into_inner();
        let filter = audit_log::AuditFilter {
            page_size: body.page_size,
            page_token: body.page_token,
            actor_login: body.actor_login,
            target_login: body.target_login,
            actor_id: body.actor_id,
            target_id: body.target_id,
            action: body.action,
            from_ms: timestamp_ms(body.start_time),
            until_ms: timestamp_ms(body.end_time),
        };
        let (rows, next_page_token) = audit_log::list(&self.app, &caller, filter).await?;
        let events = rows
            .into_iter()
            .map(|row| pb::AuditEvent {
                id: row.id,
                time: timestamp(row.occurred_at),
                subscription_id: row.subscription_id.unwrap_or_default(),
                actor_login: row.actor_login.unwrap_or_default(),
                action: row.action,
                target_login: row.target_login.unwrap_or_default(),
                outcome: if row.outcome == "SUCCESS" { pb::AuditOutcome::Success } else { pb::AuditOutcome::Failure }
                    .into(),
                reason: row.reason.unwrap_or_default(),
                source_ip: row.source_ip.unwrap_or_default(),
                detail: row.detail.unwrap_or_default(),
                actor_id: row.actor_user_id.unwrap_or_default(),
                target_id: row.target_user_id.unwrap_or_default(),
            })
            .collect();
        Ok(Response::new(pb::ListAuditEventsResponse { events, next_page_token }))
    }

    async fn get_capabilities(
        &self,
        request: Request<pb::GetCapabilitiesRequest>,
    ) -> Result<Response<pb::GetCapabilitiesResponse>, Status> {
        let caller = caller(&request)?;
        let (allowed, business_units) = users::capabilities(&self.app, &caller).await?;
        Ok(Response::new(pb::GetCapabilitiesResponse {
            administers_users: allowed.administers_users,
            reads_audit_log: allowed.reads_audit_log,
            creates_business_units: allowed.creates_business_units,
            creatable_roles: allowed.creatable_roles.into_iter().map(|r| role_to_proto(r).into()).collect(),
            business_units,
        }))
    }

    async fn get_user_actions(
        &self,
        request: Request<pb::GetUserActionsRequest>,
    ) -> Result<Response<pb::GetUserActionsResponse>, Status> {
        let caller = caller(&request)?;
        let body = request.into_inner();
        let (view, actions) =
            users::user_actions(&self.app, &caller, &UserRef::new(body.user_login, body.user_id)).await?;
        Ok(Response::new(pb::GetUserActionsResponse {
            user: Some(user_to_proto(view)),
            actions: actions.into_iter().map(|a| action_to_proto(a).into()).collect(),
        }))
    }
}
