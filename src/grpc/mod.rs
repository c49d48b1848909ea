//! tonic services: map proto messages to `app` calls and back, nothing else.

pub mod auth;
pub mod convert;
pub mod layer;
pub mod platform;
pub mod reset;
pub mod status;
pub mod users;

use std::sync::Arc;

use self::{auth::AuthService, platform::PlatformService, reset::ResetService, users::UsersService};
use crate::{
    app::App,
    pb::{
        auth_server::AuthServer, platform_server::PlatformServer, reset_server::ResetServer, users_server::UsersServer,
    },
};

// RPCs not implemented yet answer UNIMPLEMENTED through the generated defaults.

pub struct Services {
    pub auth: AuthServer<AuthService>,
    pub users: UsersServer<UsersService>,
    pub reset: ResetServer<ResetService>,
    pub platform: PlatformServer<PlatformService>,
}

/// Fully-qualified names of the identity services, for health reporting.
pub const SERVICE_NAMES: [&str; 4] =
    ["identity.v1.Auth", "identity.v1.Users", "identity.v1.Reset", "identity.v1.Platform"];

pub fn services(app: Arc<App>) -> Services {
    Services {
        auth: AuthServer::new(AuthService::new(Arc::clone(&app))),
        users: UsersServer::new(UsersService::new(Arc::clone(&app))),
        reset: ResetServer::new(ResetService::new(Arc::clone(&app))),
        platform: PlatformServer::new(PlatformService::new(app)),
    }
}
