//! The end-to-end stories, as one test binary with a module per story family
//! (crates.io's `tests/integration`, Kanidm's testkit). One binary links the
//! whole service once; each extra file directly under `tests/` would link it
//! again, so new stories go in a module here (`tidy` checks it).
#![forbid(unsafe_code)]
// A story that meets the unexpected fails on the spot, with its line: that is
// what an unwrap in a test is for.
#![allow(clippy::unwrap_used)]

#[macro_use]
mod common;

mod attacks;
mod auth;
mod auth_policies;
mod bench_smoke;
mod client;
mod cluster_transport;
mod deploy;
mod faults;
mod foundation;
mod gateway;
mod mail;
mod pages;
mod platform;
mod properties;
mod races;
mod reset;
mod retention;
mod retry_safe_resets;
mod scale_out;
mod second_factor;
mod secrets;
mod telemetry;
mod tidy;
mod tokens;
mod user_pages;
mod users;
mod users_by_id;
