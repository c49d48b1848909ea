//! Generates the service side of `identity.v1`: the tonic servers and the
//! encoded descriptor set for reflection. The messages and clients are
//! `identity-client`'s (`crates/client/build.rs`), shared through
//! `extern_path`, so the workspace generates each message once and the
//! services that call this one never compile its servers.

use std::{env, fs, path::PathBuf};

const PROTOS: [&str; 7] = [
    "proto/identity/v1/types.proto",
    "proto/identity/v1/errors.proto",
    "proto/identity/v1/auth.proto",
    "proto/identity/v1/users.proto",
    "proto/identity/v1/reset.proto",
    "proto/identity/v1/platform.proto",
    "proto/identity/v1/support.proto",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    for proto in PROTOS {
        println!("cargo:rerun-if-changed={proto}");
    }
    let fds = protox::compile(PROTOS, ["proto"])?;
    let out_dir = PathBuf::from(env::var("OUT_DIR")?);
    fs::write(out_dir.join("identity_descriptor.bin"), prost::Message::encode_to_vec(&fds))?;
    tonic_prost_build::configure()
        .build_client(false)
        .build_server(true)
        .extern_path(".identity.v1", "::identity_client::pb")
        // A new RPC without a handler must not compile (no UNIMPLEMENTED defaults).
        .generate_default_stubs(false)
        .compile_fds(fds)?;
    Ok(())
}
