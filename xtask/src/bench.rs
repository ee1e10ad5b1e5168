//! `cargo xtask bench ...`: benchmarks run side by side in one process run.

use crate::Result;

/// Dispatches `bench <name> [args]`.
pub(crate) fn main(args: &[&str]) -> Result {
    match args {
        _ => Err("usage: cargo xtask bench <overhead [N] | api>".into()),
    }
}
