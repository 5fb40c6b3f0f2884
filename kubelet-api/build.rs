//! Compiles the kubelet protos with protox (pure Rust, no `protoc`) and generates tonic/prost code.
//! Each API is compiled on its own into its own directory under `OUT_DIR`: several packages have
//! bare names (`v1beta1`, `v1`, `v1alpha1`), and pod resources and DRA health are both `v1`, so
//! one would otherwise overwrite the other's `v1.rs`.

use std::{env, fs, path::PathBuf};

type BoxError = Box<dyn std::error::Error>;

fn main() -> Result<(), BoxError> {
    println!("cargo:rerun-if-changed=proto");
    let out = PathBuf::from(env::var_os("OUT_DIR").ok_or("OUT_DIR is not set")?);
    compile("deviceplugin/v1beta1/api.proto", out.join("deviceplugin"))?;
    compile("podresources/v1/api.proto", out.join("podresources"))?;
    compile("pluginregistration/v1/api.proto", out.join("pluginregistration"))?;
    compile("dra/v1/api.proto", out.join("dra/v1"))?;
    compile("dra/v1beta1/api.proto", out.join("dra/v1beta1"))?;
    compile("dra-health/v1/api.proto", out.join("dra-health/v1"))?;
    compile("dra-health/v1alpha1/api.proto", out.join("dra-health/v1alpha1"))?;
    Ok(())
}

fn compile(file: &str, out_dir: PathBuf) -> Result<(), BoxError> {
    let descriptors = protox::compile([file], ["proto"])?;
    fs::create_dir_all(&out_dir)?;
    tonic_prost_build::configure().build_client(true).build_server(true).out_dir(out_dir).compile_fds(descriptors)?;
    Ok(())
}
