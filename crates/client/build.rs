//! Compiles `proto/identity/v1/*.proto` (at the workspace root) with protox
//! (pure Rust, no system `protoc`) into the messages and tonic clients. The
//! service's own `build.rs` generates its servers against these messages, so
//! callers build clients alone and each message is generated once.

const PROTOS: [&str; 7] = [
    "../../proto/identity/v1/types.proto",
    "../../proto/identity/v1/errors.proto",
    "../../proto/identity/v1/auth.proto",
    "../../proto/identity/v1/users.proto",
    "../../proto/identity/v1/reset.proto",
    "../../proto/identity/v1/platform.proto",
    "../../proto/identity/v1/support.proto",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    for proto in PROTOS {
        println!("cargo:rerun-if-changed={proto}");
    }
    let fds = protox::compile(PROTOS, ["../../proto"])?;
    tonic_prost_build::configure().build_client(true).build_server(false).compile_fds(fds)?;
    Ok(())
}
