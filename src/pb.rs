//! `identity.v1` for the service: the messages and clients of
//! `identity-client` (generated once, shared with the services that call this
//! one), and the tonic servers and the descriptor set generated here (build.rs).
#![allow(clippy::all, clippy::pedantic)]

pub use identity_client::pb::*;

include!(concat!(env!("OUT_DIR"), "/identity.v1.rs"));

/// The encoded descriptors of `identity.v1`, for server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("identity_descriptor");
