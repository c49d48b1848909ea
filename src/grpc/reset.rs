//! `identity.v1.Reset`: proto in, use case, proto out.

use std::sync::Arc;

use tonic::{Request, Response, Status};

use super::convert::{self, caller, context, timestamp};
use crate::{
    app::{
        App, forgot,
        redemption::{self, LinkProblem},
        reset::{self, NotReset, ResetInput},
    },
    domain::{Secret, UserRef, link::LinkPurpose},
    pb::{self, reset_server::Reset},
};

pub struct ResetService {
    app: Arc<App>,
}

impl ResetService {
    pub fn new(app: Arc<App>) -> Self {
        Self { app }
    }
}

fn reason_to_proto(reason: NotReset) -> pb::ResetReason {
    match reason {
        NotReset::UnknownUser => pb::ResetReason::UnknownUser,
        NotReset::Deleted => pb::ResetReason::Deleted,
        NotReset::Contact => pb::ResetReason::Contact,
        NotReset::SelfTarget => pb::ResetReason::Self_,
        NotReset::OutOfScope => pb::ResetReason::OutOfScope,
        NotReset::Throttled => pb::ResetReason::Throttled,
    }
}

fn purpose_to_proto(purpose: LinkPurpose) -> pb::ActivationPurpose {
    match purpose {
        LinkPurpose::Welcome => pb::ActivationPurpose::Welcome,
        LinkPurpose::AdminReset => pb::ActivationPurpose::AdminReset,
        LinkPurpose::ForgotPassword => pb::ActivationPurpose::ForgotPassword,
        LinkPurpose::TokenEnrollment => pb::ActivationPurpose::TokenEnrollment,
    }
}

fn problem_to_proto(problem: LinkProblem) -> pb::ActivationInvalidReason {
    match problem {
        LinkProblem::Unknown => pb::ActivationInvalidReason::Unknown,
        LinkProblem::Used => pb::ActivationInvalidReason::Used,
        LinkProblem::Expired => pb::ActivationInvalidReason::Expired,
        LinkProblem::Superseded => pb::ActivationInvalidReason::Superseded,
        LinkProblem::AccountUnavailable => pb::ActivationInvalidReason::AccountUnavailable,
    }
}

#[tonic::async_trait]
impl Reset for ResetService {
    async fn reset_pin(&self, request: Request<pb::ResetPinRequest>) -> Result<Response<pb::ResetPinResponse>, Status> {
        let (caller, ctx) = (caller(&request)?, context(&request));
        let body = request.into_inner();
        let target = UserRef::new(body.user_login, body.user_id);
        crate::app::second_factor::reset_pin(&self.app, &caller, &target, &ctx).await?;
        Ok(Response::new(pb::ResetPinResponse {}))
    }

    async fn get_captcha_challenge(
        &self,
        _request: Request<pb::GetCaptchaChallengeRequest>,
    ) -> Result<Response<pb::GetCaptchaChallengeResponse>, Status> {
        let challenge = crate::app::forgot::captcha_challenge(&self.app).await;
        Ok(Response::new(pb::GetCaptchaChallengeResponse {
            challenge: challenge.challenge,
            difficulty_bits: challenge.difficulty_bits,
            expires_at: timestamp(challenge.expires_at_ms),
            algorithm: crate::crypto::captcha::ALGORITHM.to_owned(),
        }))
    }

    async fn request_password_reset(
        &self,
        request: Request<pb::RequestPasswordResetRequest>,
    ) -> Result<Response<pb::RequestPasswordResetResponse>, Status> {
        let ctx = context(&request);
        let body = request.into_inner();
        let captcha = body.captcha.unwrap_or_default();
        let input = forgot::ForgotInput {
            user_login: body.user_login,
            email: body.email,
            captcha_challenge: captcha.challenge,
            captcha_nonce: captcha.nonce,
        };
        let message = forgot::request_password_reset(&self.app, input, &ctx).await?;
        Ok(Response::new(pb::RequestPasswordResetResponse { message: message.to_owned() }))
    }

    async fn inspect_activation(
        &self,
        request: Request<pb::InspectActivationRequest>,
    ) -> Result<Response<pb::InspectActivationResponse>, Status> {
        let token = Secret::new(request.into_inner().token);
        let response = match redemption::inspect(&self.app, &token).await? {
            Ok(info) => pb::InspectActivationResponse {
                valid: true,
                invalid_reason: pb::ActivationInvalidReason::Unspecified.into(),
                purpose: purpose_to_proto(info.purpose).into(),
                user_login: info.user_login,
                user_id: info.user_id,
                expires_at: timestamp(info.expires_at_ms),
                requires_new_password: info.requires_new_password,
                password_rules: info.password_rules,
            },
            Err(problem) => pb::InspectActivationResponse {
                valid: false,
                invalid_reason: problem_to_proto(problem).into(),
                ..Default::default()
            },
        };
        Ok(Response::new(response))
    }

    async fn redeem_activation(
        &self,
        request: Request<pb::RedeemActivationRequest>,
    ) -> Result<Response<pb::RedeemActivationResponse>, Status> {
        let ctx = context(&request);
        let body = request.into_inner();
        let redeemed = redemption::redeem(
            &self.app,
            &Secret::new(body.token),
            Secret::new(body.new_password),
            body.captcha.map(convert::captcha),
            &ctx,
        )
        .await?;
        let (otpauth_uri, qr_code_svg) = match redeemed.token {
            Some(token) => (token.otpauth_uri.into_exposed(), token.qr_svg),
            None => (String::new(), String::new()),
        };
        Ok(Response::new(pb::RedeemActivationResponse {
            user_login: redeemed.user_login,
            user_id: redeemed.user_id,
            generated_password: redeemed.generated_password.map(Secret::into_exposed).unwrap_or_default(),
            otpauth_uri,
            qr_code_svg,
        }))
    }

    async fn reset_passwords(
        &self,
        request: Request<pb::ResetPasswordsRequest>,
    ) -> Result<Response<pb::ResetPasswordsResponse>, Status> {
        let (caller, ctx) = (caller(&request)?, context(&request));
        let body = request.into_inner();
        let input = ResetInput {
            user_logins: body.user_logins,
            user_ids: body.user_ids,
            all: body.all,
            notify_by_email: body.notify_by_email,
            request_id: body.request_id,
        };
        let outcomes = reset::reset_passwords(&self.app, &caller, input, &ctx).await?;
        let results = outcomes
            .into_iter()
            .map(|outcome| pb::ResetResult {
                user_login: outcome.user_login,
                user_id: outcome.user_id,
                changed: outcome.not_reset.is_none(),
                password: outcome.password.map(Secret::into_exposed).unwrap_or_default(),
                reason: outcome.not_reset.map_or(pb::ResetReason::Unspecified, reason_to_proto).into(),
                message: outcome.not_reset.map(NotReset::message).unwrap_or_default().to_owned(),
            })
            .collect();
        Ok(Response::new(pb::ResetPasswordsResponse { results }))
    }
}
