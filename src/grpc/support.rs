//! `identity.v1.Support`: proto in, use case, proto out.

use std::sync::Arc;

use tonic::{Request, Response, Status};

use super::convert::{caller, context, user_to_proto};
use crate::{
    app::{
        App,
        support::{self, Rescued, RescuedBy},
    },
    domain::{UserRef, permissions::Rescue},
    pb::{self, support_server::Support},
};

pub struct SupportService {
    app: Arc<App>,
}

impl SupportService {
    pub fn new(app: Arc<App>) -> Self {
        Self { app }
    }

    async fn rescue<T>(
        &self,
        request: &Request<T>,
        target: UserRef,
        rescue: Rescue,
        reason: &str,
    ) -> Result<Rescued, Status> {
        let (caller, ctx) = (caller(request)?, context(request));
        Ok(support::rescue(&self.app, RescuedBy::Operator(&caller), &target, rescue, reason, &ctx).await?)
    }
}

fn notified(rescued: &Rescued) -> u32 {
    u32::try_from(rescued.managers_notified).unwrap_or(u32::MAX)
}

#[tonic::async_trait]
impl Support for SupportService {
    async fn reset_user_password(
        &self,
        request: Request<pb::ResetUserPasswordRequest>,
    ) -> Result<Response<pb::ResetUserPasswordResponse>, Status> {
        let body = request.get_ref();
        let done = self
            .rescue(
                &request,
                UserRef::new(body.user_login.clone(), body.user_id.clone()),
                Rescue::ResetPassword,
                &body.reason,
            )
            .await?;
        let managers_notified = notified(&done);
        Ok(Response::new(pb::ResetUserPasswordResponse { user: Some(user_to_proto(done.user)), managers_notified }))
    }

    async fn reactivate_user(
        &self,
        request: Request<pb::ReactivateUserRequest>,
    ) -> Result<Response<pb::ReactivateUserResponse>, Status> {
        let body = request.get_ref();
        let done = self
            .rescue(
                &request,
                UserRef::new(body.user_login.clone(), body.user_id.clone()),
                Rescue::Reactivate,
                &body.reason,
            )
            .await?;
        let managers_notified = notified(&done);
        Ok(Response::new(pb::ReactivateUserResponse {
            welcome_link_sent: done.link_emailed,
            user: Some(user_to_proto(done.user)),
            managers_notified,
        }))
    }

    async fn reset_user_pin(
        &self,
        request: Request<pb::ResetUserPinRequest>,
    ) -> Result<Response<pb::ResetUserPinResponse>, Status> {
        let body = request.get_ref();
        let done = self
            .rescue(
                &request,
                UserRef::new(body.user_login.clone(), body.user_id.clone()),
                Rescue::ResetPin,
                &body.reason,
            )
            .await?;
        let managers_notified = notified(&done);
        Ok(Response::new(pb::ResetUserPinResponse { user: Some(user_to_proto(done.user)), managers_notified }))
    }

    async fn replace_user_token(
        &self,
        request: Request<pb::ReplaceUserTokenRequest>,
    ) -> Result<Response<pb::ReplaceUserTokenResponse>, Status> {
        let body = request.get_ref();
        let done = self
            .rescue(
                &request,
                UserRef::new(body.user_login.clone(), body.user_id.clone()),
                Rescue::ReplaceToken,
                &body.reason,
            )
            .await?;
        let managers_notified = notified(&done);
        Ok(Response::new(pb::ReplaceUserTokenResponse {
            enrollment_link_sent: done.link_emailed,
            user: Some(user_to_proto(done.user)),
            managers_notified,
        }))
    }
}
