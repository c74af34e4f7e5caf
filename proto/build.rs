//! Compiles the .proto files with protox (pure Rust) and generates tonic code, a file
//! descriptor set for server reflection, and serde implementations (pbjson: the proto3 JSON
//! mapping, as grpcurl prints it) for the operator client's `--json`.
use std::{env, path::PathBuf};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let proto = "proto/milliwatt/media/v1/media.proto";
    println!("cargo:rerun-if-changed=proto");
    let fds = protox::compile([proto], ["proto"])?;
    let out = PathBuf::from(env::var("OUT_DIR")?);
    let descriptor = prost::Message::encode_to_vec(&fds);
    std::fs::write(out.join("milliwatt_media_v1_descriptor.bin"), &descriptor)?;
    tonic_prost_build::configure()
        // Well-known types with serde support, so the whole message derives its JSON.
        .extern_path(".google.protobuf.Timestamp", "::pbjson_types::Timestamp")
        .compile_fds(fds)?;
    pbjson_build::Builder::new()
        .register_descriptors(&descriptor)?
        .preserve_proto_field_names()
        // Every field, defaults too: a script reading `--json` finds each key on each line.
        .emit_fields()
        .build(&[".milliwatt.media.v1"])?;
    Ok(())
}
