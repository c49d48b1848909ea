//! Compiles `proto/identity/v1/*.proto` with protox (pure Rust, no system
//! `protoc`), generates tonic servers and clients, and keeps the encoded
//! descriptor set for server reflection.

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
        .build_client(true)
        .build_server(true)
        // A new RPC without a handler must not compile (no UNIMPLEMENTED defaults).
        .generate_default_stubs(false)
        .compile_fds(fds)?;
    Ok(())
}
