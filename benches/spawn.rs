//! Placeholder, replaced by the spawn benchmark.
fn main() {}
