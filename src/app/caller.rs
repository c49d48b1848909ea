//! Who is calling, as established once by the authentication layer, and
//! where the call comes from.

use crate::domain::Role;

/// An authenticated caller: built from a verified, unrevoked access token.
/// Handlers receive it typed; they never parse tokens.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Caller {
    pub user_id: String,
    pub user_login: String,
    pub subscription_id: String,
    pub role: Role,
    pub session_id: String,
}

/// Facts about the request that use cases record (audit) or act on (throttling).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RequestContext {
    pub source_ip: Option<String>,
}
