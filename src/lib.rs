//! `identity`: a gRPC identity microservice — accounts, logins, JWT sessions,
//! argon2 passwords, a PIN + tokencode second factor, lockout, password resets
//! with one-time links, and a legacy XML gateway.
#![forbid(unsafe_code)]

pub mod app;
pub mod clock;
pub mod config;
pub mod crypto;
pub mod domain;
pub mod fuzzing;
pub mod gateway;
pub mod grpc;
pub mod mail;
pub mod pb;
pub mod server;
pub mod store;
pub mod telemetry;
