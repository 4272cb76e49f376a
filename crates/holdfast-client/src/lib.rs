//! Typed async client for holdfast: follows the leader, retries with request ids.
//!
//! ```no_run
//! # async fn demo() -> Result<(), holdfast_client::ClientError> {
//! use holdfast_client::{Client, ReadOptions, WriteOptions};
//!
//! let client = Client::connect(vec!["127.0.0.1:7001".into(), "127.0.0.1:7002".into()])?;
//! let written = client
//!     .put("population", "UA-123", "record bytes", WriteOptions::default())
//!     .await?;
//! let record = client.get("population", "UA-123", ReadOptions::default()).await?;
//! assert_eq!(record.map(|r| r.revision), Some(written.revision));
//! # Ok(())
//! # }
//! ```
//!
//! How it behaves:
//! - Channels are made lazily, one per endpoint, and shared by clones.
//! - Writes, linearizable reads and membership calls go to the leader. A
//!   follower's `holdfast-leader` hint is followed at once (a new address is
//!   added to the endpoint set); without a hint the next endpoint is tried
//!   after a short backoff. The leader is remembered for later calls.
//! - Every write carries a request id, the same on every retry, so retrying
//!   a write whose outcome is unknown is safe. A failed write says whether
//!   it was applied: [`ClientError::outcome`].
//! - With [`ClientBuilder::tls`] every connection is mutual TLS: the client
//!   presents its certificate (which names it to the server) and checks each
//!   node's certificate against the CA bundle under the host it dialled.
//! - The client knows gRPC, not Raft: it has no openraft or storage types.

mod access_api;
mod client;
mod cluster_api;
mod dial;
mod endpoint;
mod error;
mod keys_api;
mod member;
mod pool;
mod record;
mod registry_api;
mod retry;
mod tls;

pub use access_api::{AccessList, AuditEntry, AuditPage, Grant, WhoAmI};
pub use client::{Client, ClientBuilder, DEFAULT_MAX_RETRIES, DEFAULT_MEMBERSHIP_TIMEOUT, DEFAULT_TIMEOUT};
pub use cluster_api::EndpointStatus;
pub use endpoint::{display_endpoint, normalize_endpoint, normalize_endpoint_for};
pub use error::{ClientError, Outcome, CURRENT_REVISION_METADATA, LEADER_METADATA, NOT_PROPOSED_METADATA};
pub use keys_api::{KeyInfo, KeyStatus};
pub use member::{Member, Members, NodeStatus, Placement, Role, Survival};
pub use record::{
    new_request_id, Consistency, HistoryPage, ReadOptions, Record, ScanEntry, ScanPage, WriteOptions, WriteResult,
};
pub use tls::ClientTls;
