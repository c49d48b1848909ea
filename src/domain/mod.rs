//! Business rules in plain Rust: no I/O, no async, exhaustively unit-tested.

pub mod client_address;
pub mod error;
pub mod governance;
pub mod link;
pub mod login;
pub mod page_token;
pub mod passcode;
pub mod password_policy;
pub mod permissions;
pub mod platform;
pub mod request_id;
pub mod retention;
pub mod role;
pub mod secret;
pub mod status;
pub mod user_ref;

pub use error::{Error, ErrorReason};
pub use login::UserLogin;
pub use role::{Role, StatusReason, UserStatus};
pub use secret::Secret;
pub use user_ref::UserRef;
