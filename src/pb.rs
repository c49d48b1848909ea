//! Generated protobuf messages, tonic servers and clients of `identity.v1`:
//! generated once, in `identity-client` (its `server` feature), so the
//! service and the services that call it share one copy of the code.

pub use identity_client::pb::*;
