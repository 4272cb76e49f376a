//! Build script: generates the holdfast v1 gRPC code and its file descriptor set.

use std::env;
use std::io;
use std::path::PathBuf;

/// The API contract; paths are relative to this crate so the build does not
/// depend on where the workspace is checked out.
const PROTO_ROOT: &str = "../../proto";
const PROTO_FILES: [&str; 4] = [
    "../../proto/holdfast/v1/registry.proto",
    "../../proto/holdfast/v1/cluster.proto",
    "../../proto/holdfast/v1/raft.proto",
    "../../proto/holdfast/v1/access.proto",
];

fn main() -> io::Result<()> {
    // The protos live outside this crate, where cargo does not look by
    // default: without these lines an edited .proto is silently not rebuilt.
    println!("cargo:rerun-if-changed=build.rs");
    for file in PROTO_FILES {
        println!("cargo:rerun-if-changed={file}");
    }
    let out_dir = PathBuf::from(env::var("OUT_DIR").map_err(io::Error::other)?);
    // The descriptor set is served by gRPC reflection so `grpcurl` can
    // discover the API without the .proto files.
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .file_descriptor_set_path(out_dir.join("holdfast_descriptor.bin"))
        .compile_protos(&PROTO_FILES, &[PROTO_ROOT])?;
    Ok(())
}
