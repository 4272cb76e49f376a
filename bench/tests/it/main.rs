//! Tests of the holdfast-bench binary as `cargo xtask bench` runs it.

mod t10_compare;
