//! Generated protobuf messages and tonic clients of `identity.v1`.
#![allow(clippy::all, clippy::pedantic)]

tonic::include_proto!("identity.v1");
