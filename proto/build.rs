//! Generates the CRI v1 message types and gRPC client/server code from
//! `cri/api.proto`. The schema is parsed with `protox`, so no system `protoc`
//! is needed.

use std::env;
use std::path::PathBuf;

const PROTO_DIR: &str = "cri";
const PROTO_FILE: &str = "cri/api.proto";

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed={PROTO_FILE}");

    let mut compiler = protox::Compiler::new([PROTO_DIR])?;
    compiler
        .include_source_info(true)
        .include_imports(true)
        .open_file(PROTO_FILE)?;

    // Encoded through protox rather than `prost_types`, because
    // `prost_types::FieldOptions` has no `debug_redact` field and would drop
    // that option from the `AuthConfig` secrets.
    let out_dir = PathBuf::from(env::var("OUT_DIR")?);
    std::fs::write(
        out_dir.join("cri_descriptor.bin"),
        compiler.encode_file_descriptor_set(),
    )?;

    // `AuthConfig` gets a hand-written `Debug` in `lib.rs` that hides its
    // secrets, since prost ignores the schema's `debug_redact` option.
    tonic_prost_build::configure()
        .build_server(true)
        .build_client(true)
        .skip_debug([".runtime.v1.AuthConfig"])
        .compile_fds(compiler.file_descriptor_set())?;

    Ok(())
}
