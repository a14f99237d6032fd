//! Generates the gRPC code and the file descriptor set served by reflection.
//!
//! `protoc` comes from `protoc-bin-vendored`, so a fresh machine needs nothing installed.

use std::{env, path::PathBuf};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protoc = protoc_bin_vendored::protoc_bin_path()?;
    // SAFETY of intent: build scripts are single-threaded; prost-build reads PROTOC.
    unsafe { env::set_var("PROTOC", protoc) };
    let out_dir = PathBuf::from(env::var("OUT_DIR")?);
    tonic_prost_build::configure()
        .file_descriptor_set_path(out_dir.join("mapreg_descriptor.bin"))
        .compile_protos(
            &[
                "proto/mapreg/v1/resources.proto",
                "proto/mapreg/v1/registry.proto",
                "proto/mapreg/v1/change_feed.proto",
                "proto/mapreg/v1/gateways.proto",
            ],
            &["proto"],
        )?;
    // Between the nodes of one store: internal, not in the descriptors reflection serves.
    tonic_prost_build::configure()
        .extern_path(".mapreg.v1", "crate::pb")
        .compile_protos(&["src/cluster/peer.proto"], &["src/cluster", "proto"])?;
    // The baseline service of `mapreg-bench`: not served by mapreg, not in its descriptors.
    tonic_prost_build::configure().compile_protos(
        &["src/bin/mapreg-bench/echo.proto"],
        &["src/bin/mapreg-bench"],
    )?;
    println!("cargo:rerun-if-changed=proto");
    println!("cargo:rerun-if-changed=src/bin/mapreg-bench/echo.proto");
    println!("cargo:rerun-if-changed=src/cluster/peer.proto");
    Ok(())
}
