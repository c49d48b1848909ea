//! tonic services: map proto messages to `app` calls and back, nothing else.

pub mod auth;
pub mod connection_age;
pub mod convert;
pub mod layer;
pub mod platform;
pub mod reset;
pub mod status;
pub mod support;
pub mod tls;
pub mod users;

use std::sync::Arc;

use tonic::server::NamedService;

use self::{
    auth::AuthService, platform::PlatformService, reset::ResetService, support::SupportService, users::UsersService,
};
use crate::{
    app::App,
    config::Config,
    pb::{
        auth_server::AuthServer, platform_server::PlatformServer, reset_server::ResetServer,
        support_server::SupportServer, users_server::UsersServer,
    },
};

// build.rs turns tonic's default method stubs off: every RPC in the proto
// needs its handler here, or the crate does not compile.

pub struct Services {
    pub auth: AuthServer<AuthService>,
    pub users: UsersServer<UsersService>,
    pub reset: ResetServer<ResetService>,
    pub platform: PlatformServer<PlatformService>,
    pub support: SupportServer<SupportService>,
}

/// Fully-qualified names of the identity services, for health reporting:
/// the generated servers' own names (a test checks the proto has no other).
pub const SERVICE_NAMES: [&str; 5] = [
    <AuthServer<AuthService> as NamedService>::NAME,
    <UsersServer<UsersService> as NamedService>::NAME,
    <ResetServer<ResetService> as NamedService>::NAME,
    <PlatformServer<PlatformService> as NamedService>::NAME,
    <SupportServer<SupportService> as NamedService>::NAME,
];

/// Smallest limit on a request message, in bytes. Every request but a big
/// ResetPasswords batch is a few KiB at most; tonic's default (4 MiB) would let
/// any caller make each call buffer that much.
pub const MIN_REQUEST_LIMIT_BYTES: usize = 1024 * 1024;

/// Largest request message accepted: room for a ResetPasswords batch of
/// `reset.max_batch` logins of the longest valid length, and never less than
/// [`MIN_REQUEST_LIMIT_BYTES`]. Larger messages get OUT_OF_RANGE before decoding.
pub fn request_limit_bytes(config: &Config) -> usize {
    // Each login costs its bytes plus a tag and a length prefix on the wire.
    let batch = config.reset.max_batch.saturating_mul(crate::domain::login::LOGIN_MAX + 8);
    batch.max(MIN_REQUEST_LIMIT_BYTES)
}

pub fn services(app: Arc<App>) -> Services {
    let limit = request_limit_bytes(&app.config);
    Services {
        auth: AuthServer::new(AuthService::new(Arc::clone(&app))).max_decoding_message_size(limit),
        users: UsersServer::new(UsersService::new(Arc::clone(&app))).max_decoding_message_size(limit),
        reset: ResetServer::new(ResetService::new(Arc::clone(&app))).max_decoding_message_size(limit),
        platform: PlatformServer::new(PlatformService::new(Arc::clone(&app))).max_decoding_message_size(limit),
        support: SupportServer::new(SupportService::new(app)).max_decoding_message_size(limit),
    }
}

#[cfg(test)]
mod tests {
    use prost::Message;

    use super::*;

    #[test]
    fn the_service_names_are_exactly_the_services_of_the_proto() {
        let set = prost_types::FileDescriptorSet::decode(crate::pb::FILE_DESCRIPTOR_SET).unwrap();
        let mut published: Vec<String> = set
            .file
            .iter()
            .flat_map(|file| file.service.iter().map(move |service| format!("{}.{}", file.package(), service.name())))
            .collect();
        published.sort();
        let mut named: Vec<String> = SERVICE_NAMES.iter().map(|name| (*name).to_owned()).collect();
        named.sort();
        assert_eq!(named, published);
    }
}
