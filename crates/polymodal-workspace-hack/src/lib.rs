//! Empty on purpose: this package exists for its `Cargo.toml`, which asks
//! for one feature set of the third-party crates whichever workspace
//! members a build selects (see there and `docs/architecture.md`, "One
//! build").
