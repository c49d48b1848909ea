//! sea-orm entities, one per table of the initial migration.

pub mod audit_event;
pub mod business_unit;
pub mod email_outbox;
pub mod link;
pub mod login_challenge;
pub mod maintenance_window;
pub mod password_credential;
pub mod rate_counter;
pub mod refresh_token;
pub mod second_factor;
pub mod session;
pub mod signing_key;
pub mod spent_nonce;
pub mod subscription;
pub mod user;
mod vocabulary;
