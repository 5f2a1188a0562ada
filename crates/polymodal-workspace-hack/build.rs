// A build script is required for Cargo to resolve build-dependencies, and
// the `syn` features this package asks for are build-side (see Cargo.toml).
fn main() {}
