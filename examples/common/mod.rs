//! What the examples share.

/// A boolean as Python prints it, so that the ports print the seed's lines exactly.
pub fn py(b: bool) -> &'static str {
    if b { "True" } else { "False" }
}
