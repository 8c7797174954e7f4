//! Compiles the .proto files in `proto/` with protox (pure Rust; no `protoc` needed).
fn main() -> Result<(), Box<dyn std::error::Error>> {
    let files = ["proto/jaeger/model.proto", "proto/otlp/trace.proto"];
    for f in files {
        println!("cargo:rerun-if-changed={f}");
    }
    let descriptors = protox::compile(files, ["proto"])?;
    prost_build::Config::new().bytes(["."]).compile_fds(descriptors)?;
    Ok(())
}
