//! Named limits on everything a client can send or ask for. Each says why.

/// Longest registry name. Registry names are short namespaces
/// (`population`, `passports`); a long name is a mistake, not a need.
pub const REGISTRY_NAME_BYTES_MAX: usize = 64;

/// Longest record id. Ids are identifiers (a passport number, a cadastral
/// number), not payloads.
pub const RECORD_ID_BYTES_MAX: usize = 256;

/// Largest record value. Registry records are documents of a few KiB; a
/// megabyte bounds Raft entry size so replication and snapshots stay smooth.
pub const VALUE_BYTES_MAX: usize = 1024 * 1024;

/// Longest actor name and reason stored with a revision.
pub const ACTOR_BYTES_MAX: usize = 256;
/// Longest reason text stored with a revision.
pub const REASON_BYTES_MAX: usize = 1024;

/// Longest client request id. Clients use UUIDs; 128 bytes leaves room for
/// prefixes.
pub const REQUEST_ID_BYTES_MAX: usize = 128;

/// Largest page of history or scan results, so one call cannot pin a node.
pub const PAGE_LIMIT_MAX: u32 = 1000;
/// Page size when the client does not ask for one.
pub const PAGE_LIMIT_DEFAULT: u32 = 100;

/// How many recent request ids the state machine remembers for idempotent
/// retries (the oldest are forgotten first). A client retries within
/// seconds; a million writes covers far more than any retry window at our
/// write rates while bounding disk use.
pub const REQUEST_IDS_REMEMBERED: u64 = 1_000_000;

/// Most client writes one Raft entry carries. Concurrent writes are grouped
/// so that one append, one fsync and one apply serve many; the revision
/// layout leaves room for `1 << REVISION_POSITION_BITS` per entry.
pub const WRITE_BATCH_COMMANDS_MAX: usize = 1 << crate::record::REVISION_POSITION_BITS;

/// A batch of writes stops growing once its writes (ids, values and
/// metadata) reach this many bytes, so that an `AppendEntries` of up to 256
/// such entries stays inside the 64 MiB Raft message limit (a single larger
/// write still goes alone).
pub const WRITE_BATCH_BYTES_MAX: usize = 256 * 1024;

/// Largest gRPC message a node accepts: a max-size value plus envelope and
/// metadata overhead.
pub const GRPC_MESSAGE_BYTES_MAX: usize = VALUE_BYTES_MAX + 64 * 1024;
