//! Emails: what they say (templates), how they travel (transport), and the
//! dispatcher that delivers the outbox.

pub mod dispatcher;
pub mod templates;
pub mod transport;
