//! Integration tests of the RocksDB storage: openraft's conformance suite,
//! durability across reopen and across a killed writer, snapshots and bad
//! input from disk.

mod t10_conformance;
mod t20_state_machine;
mod t30_crash;
