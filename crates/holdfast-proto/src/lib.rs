//! The wire of the holdfast v1 API: generated gRPC code, and the
//! connection wrapper both ends write through ([`coalesce`]).
//!
//! Everything in [`v1`] comes from `proto/holdfast/v1/*.proto`;
//! conversions to domain types live in the crates that use it, never here.

pub mod coalesce;

/// Package `holdfast.v1`: the Registry, Cluster, Access, Audit and Raft services, with both
/// client and server stubs.
pub mod v1 {
    // Generated code is not held to the workspace lints.
    #![allow(clippy::all, clippy::pedantic, missing_docs)]
    tonic::include_proto!("holdfast.v1");
}

/// Encoded `FileDescriptorSet` of every holdfast proto file, for
/// `tonic-reflection`.
pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("holdfast_descriptor");
