//! Generated protobuf messages and tonic clients of `identity.v1` (and, with
//! the `server` feature, the tonic servers and the descriptor set).
#![allow(clippy::all, clippy::pedantic)]

tonic::include_proto!("identity.v1");

/// The encoded descriptors of `identity.v1`, for server reflection.
#[cfg(feature = "server")]
pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("identity_descriptor");
