//! Generated protobuf messages, tonic servers and clients of `identity.v1`.
#![allow(clippy::all, clippy::pedantic)]

tonic::include_proto!("identity.v1");

/// The encoded descriptors of `identity.v1`, for server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("identity_descriptor");
