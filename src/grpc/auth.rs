//! `identity.v1.Auth`: proto in, use case, proto out.

use std::sync::Arc;

use tonic::{Request, Response, Status};

use super::convert::{self, caller, context, session, timestamp};
use crate::{
    app::{
        App, credentials,
        login::{self, LoginOutcome},
        second_factor::{self, ChallengeKind, ChallengeView, PasscodeOutcome},
        sessions::{self, TokenProblem},
    },
    domain::{Error, Secret, UserRef},
    pb::{self, auth_server::Auth, login_response, submit_passcode_response},
};

fn challenge(view: ChallengeView) -> pb::Challenge {
    pb::Challenge {
        challenge_id: view.challenge_id.into_exposed(),
        kind: match view.kind {
            ChallengeKind::Passcode => pb::ChallengeKind::Passcode,
            ChallengeKind::NewPin => pb::ChallengeKind::NewPin,
        }
        .into(),
        expires_at: timestamp(view.expires_at_ms),
        prompt: view.prompt.to_owned(),
        tokencode_only: view.tokencode_only,
    }
}

pub struct AuthService {
    app: Arc<App>,
}

impl AuthService {
    pub fn new(app: Arc<App>) -> Self {
        Self { app }
    }
}

#[tonic::async_trait]
impl Auth for AuthService {
    async fn login(&self, request: Request<pb::LoginRequest>) -> Result<Response<pb::LoginResponse>, Status> {
        let ctx = context(&request);
        let body = request.into_inner();
        let outcome = login::login(&self.app, &body.user_login, Secret::new(body.password), &ctx).await;
        let label = match &outcome {
            Ok(LoginOutcome::Session(_)) => "session",
            Ok(LoginOutcome::Challenge(_)) => "challenge",
            Err(error) => error.reason().as_str(),
        };
        metrics::counter!(crate::telemetry::metrics::LOGIN_OUTCOMES, "outcome" => label).increment(1);
        let result = match outcome? {
            LoginOutcome::Session(issued) => login_response::Result::Session(session(issued)),
            LoginOutcome::Challenge(view) => login_response::Result::Challenge(challenge(view)),
        };
        Ok(Response::new(pb::LoginResponse { result: Some(result) }))
    }

    async fn submit_passcode(
        &self,
        request: Request<pb::SubmitPasscodeRequest>,
    ) -> Result<Response<pb::SubmitPasscodeResponse>, Status> {
        let ctx = context(&request);
        let body = request.into_inner();
        let outcome = second_factor::submit_passcode(
            &self.app,
            &Secret::new(body.challenge_id),
            &Secret::new(body.passcode),
            &ctx,
        )
        .await?;
        let result = match outcome {
            PasscodeOutcome::Session(issued) => submit_passcode_response::Result::Session(session(issued)),
            PasscodeOutcome::NewPin(view) => submit_passcode_response::Result::Challenge(challenge(view)),
        };
        Ok(Response::new(pb::SubmitPasscodeResponse { result: Some(result) }))
    }

    async fn set_new_pin(
        &self,
        request: Request<pb::SetNewPinRequest>,
    ) -> Result<Response<pb::SetNewPinResponse>, Status> {
        let ctx = context(&request);
        let body = request.into_inner();
        let issued =
            second_factor::set_new_pin(&self.app, &Secret::new(body.challenge_id), &Secret::new(body.pin), &ctx)
                .await?;
        Ok(Response::new(pb::SetNewPinResponse { session: Some(session(issued)) }))
    }

    async fn refresh(&self, request: Request<pb::RefreshRequest>) -> Result<Response<pb::RefreshResponse>, Status> {
        let ctx = context(&request);
        let token = Secret::new(request.into_inner().refresh_token);
        let issued = sessions::refresh(&self.app, &token, &ctx).await?;
        Ok(Response::new(pb::RefreshResponse { session: Some(session(issued)) }))
    }

    async fn logout(&self, request: Request<pb::LogoutRequest>) -> Result<Response<pb::LogoutResponse>, Status> {
        let caller = caller(&request)?;
        sessions::logout(&self.app, &caller, &context(&request)).await?;
        Ok(Response::new(pb::LogoutResponse {}))
    }

    async fn validate_token(
        &self,
        request: Request<pb::ValidateTokenRequest>,
    ) -> Result<Response<pb::ValidateTokenResponse>, Status> {
        let token = request.into_inner().access_token;
        if token.is_empty() {
            return Err(Error::invalid("access_token", "is required").into());
        }
        let verdict = sessions::validate(&self.app, &token).await.and_then(|signed| {
            let claims = &signed.claims;
            let (issued, expires) = (claims.iat, claims.exp);
            let token_id = claims.jti.clone();
            sessions::caller_from(claims).map(|caller| (caller, token_id, issued, expires))
        });
        let response = match verdict {
            Ok((caller, token_id, issued, expires)) => pb::ValidateTokenResponse {
                valid: true,
                invalid_reason: pb::TokenInvalidReason::Unspecified.into(),
                user_id: caller.user_id,
                user_login: caller.user_login,
                subscription_id: caller.subscription_id,
                role: convert::role_to_proto(caller.role).into(),
                session_id: caller.session_id,
                token_id,
                issued_at: timestamp(issued * 1000),
                expires_at: timestamp(expires * 1000),
            },
            Err(problem) => pb::ValidateTokenResponse {
                valid: false,
                invalid_reason: match problem {
                    TokenProblem::Revoked => pb::TokenInvalidReason::Revoked,
                    TokenProblem::Invalid(rejection) => convert::rejection_to_proto(rejection),
                }
                .into(),
                role: pb::Role::Unspecified.into(),
                ..Default::default()
            },
        };
        Ok(Response::new(response))
    }

    async fn get_jwks(&self, _request: Request<pb::GetJwksRequest>) -> Result<Response<pb::GetJwksResponse>, Status> {
        // A withdrawn key leaves the set within the revocation bound, as its tokens do.
        self.app.keys.refresh_if_stale(&self.app.store, self.app.clock.now_ms()).await;
        let keys = self
            .app
            .keys
            .ring()
            .jwks()
            .into_iter()
            .map(|key| pb::Jwk { kty: key.kty, crv: key.crv, x: key.x, kid: key.kid, alg: key.alg, r#use: key.use_ })
            .collect();
        Ok(Response::new(pb::GetJwksResponse { keys }))
    }

    async fn change_password(
        &self,
        request: Request<pb::ChangePasswordRequest>,
    ) -> Result<Response<pb::ChangePasswordResponse>, Status> {
        let (caller, ctx) = (caller(&request)?, context(&request));
        let body = request.into_inner();
        let generated = credentials::change_password(
            &self.app,
            &caller,
            Secret::new(body.current_password),
            Secret::new(body.new_password),
            body.captcha.map(convert::captcha),
            &ctx,
        )
        .await?;
        Ok(Response::new(pb::ChangePasswordResponse {
            generated_password: generated.map(Secret::into_exposed).unwrap_or_default(),
        }))
    }

    async fn get_password_policy(
        &self,
        request: Request<pb::GetPasswordPolicyRequest>,
    ) -> Result<Response<pb::GetPasswordPolicyResponse>, Status> {
        let policy = credentials::password_policy(&self.app, &caller(&request)?).await?;
        Ok(Response::new(pb::GetPasswordPolicyResponse { user_chooses: policy.user_chooses, rules: policy.rules }))
    }

    async fn change_user_login(
        &self,
        request: Request<pb::ChangeUserLoginRequest>,
    ) -> Result<Response<pb::ChangeUserLoginResponse>, Status> {
        let (caller, ctx) = (caller(&request)?, context(&request));
        let body = request.into_inner();
        let (renamed_id, renamed) = credentials::change_user_login(
            &self.app,
            &caller,
            &UserRef::new(body.user_login, body.user_id),
            &body.new_user_login,
            Secret::new(body.current_password),
            &ctx,
        )
        .await?;
        Ok(Response::new(pb::ChangeUserLoginResponse { user_login: renamed.to_string(), user_id: renamed_id }))
    }
}
