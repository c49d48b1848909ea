//! Compiles `proto/identity/v1/*.proto` (at the workspace root) with protox
//! (pure Rust, no system `protoc`), generates tonic clients and servers, and
//! keeps the encoded descriptor set for server reflection. The servers and the
//! descriptor set are compiled only with the `server` feature (the identity
//! service's), so callers build clients alone, and the protos are compiled
//! once for the whole workspace.

use std::{env, fs, path::PathBuf};

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
    let out_dir = PathBuf::from(env::var("OUT_DIR")?);
    fs::write(out_dir.join("identity_descriptor.bin"), prost::Message::encode_to_vec(&fds))?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .server_mod_attribute(".", r#"#[cfg(feature = "server")]"#)
        // A new RPC without a handler must not compile (no UNIMPLEMENTED defaults).
        .generate_default_stubs(false)
        .compile_fds(fds)?;
    Ok(())
}
