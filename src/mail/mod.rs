//! Emails: what they say (templates). Delivery reads the outbox.

pub mod templates;
