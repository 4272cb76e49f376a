//! Record vocabulary of the client API (records, pages, read and write options) and its proto conversions.

use holdfast_proto::v1 as pb;

/// One revision of a record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// The revision that wrote this version (global, increasing with the log).
    pub revision: u64,
    /// The value; `None` for a tombstone.
    pub value: Option<Vec<u8>>,
    /// True when this revision deleted the record.
    pub deleted: bool,
    /// The revision at which the record was (last) created.
    pub create_revision: u64,
    /// When the revision was committed, in milliseconds since the Unix epoch.
    pub commit_time_ms: u64,
    /// Who made the change.
    pub actor: String,
    /// Why the change was made.
    pub reason: String,
}

/// How fresh a read must be.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Consistency {
    /// The leader confirms its leadership with a quorum, then reads.
    #[default]
    Linearizable,
    /// Any replica answers from its own applied state, possibly behind.
    Stale,
}

/// Options for `get`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReadOptions {
    pub consistency: Consistency,
    /// Read the record as it was at this revision; `None` for the latest.
    pub at_revision: Option<u64>,
}

/// Options for `put` and `delete`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WriteOptions {
    /// Compare-and-swap: the revision the writer last saw; `Some(0)` means
    /// "the record must not exist".
    pub if_revision: Option<u64>,
    /// Why the change is made; kept in history.
    pub reason: String,
    /// Who makes the change; kept in history.
    pub actor: String,
    /// Idempotency key; a UUID v4 is generated when `None`. Every retry of
    /// the call reuses it, so the server applies the write at most once.
    pub request_id: Option<String>,
}

/// The result of an applied write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WriteResult {
    /// The revision the write created.
    pub revision: u64,
    /// True when the server had already applied this request id and this is
    /// its first result, replayed.
    pub duplicate: bool,
    /// The request id the write was sent with.
    pub request_id: String,
}

/// One page of a record's history, oldest first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryPage {
    pub revisions: Vec<Record>,
    /// Pass as `after_revision` to get the next page; `None` on the last page.
    pub next_after_revision: Option<u64>,
    /// The revision the answering replica had applied.
    pub applied_revision: u64,
}

/// A record found by a scan, with its latest revision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScanEntry {
    pub record_id: Vec<u8>,
    pub record: Record,
}

/// One page of a registry scan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScanPage {
    pub entries: Vec<ScanEntry>,
    /// Pass as `page_token` to get the next page; `None` when the scan is complete.
    pub next_page_token: Option<Vec<u8>>,
    /// The revision the answering replica had applied.
    pub applied_revision: u64,
}

/// A fresh idempotency key for a write (UUID v4). Generate one up front when
/// the caller itself may need to retry a write whose outcome was unknown.
pub fn new_request_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// The request id a write is sent with: the caller's, or a new one.
pub(crate) fn resolve_request_id(options: &WriteOptions) -> String {
    match &options.request_id {
        Some(id) if !id.is_empty() => id.clone(),
        _ => new_request_id(),
    }
}

pub(crate) fn write_options_to_pb(options: &WriteOptions, request_id: &str) -> pb::WriteOptions {
    pb::WriteOptions {
        request_id: request_id.to_owned(),
        if_revision: options.if_revision,
        reason: options.reason.clone(),
        actor: options.actor.clone(),
    }
}

pub(crate) fn consistency_to_pb(consistency: Consistency) -> i32 {
    let value = match consistency {
        Consistency::Linearizable => pb::Consistency::Linearizable,
        Consistency::Stale => pb::Consistency::Stale,
    };
    value as i32
}

impl From<pb::RecordRevision> for Record {
    fn from(revision: pb::RecordRevision) -> Self {
        Self {
            revision: revision.revision,
            value: (!revision.deleted).then_some(revision.value),
            deleted: revision.deleted,
            create_revision: revision.create_revision,
            commit_time_ms: revision.commit_time_ms,
            actor: revision.actor,
            reason: revision.reason,
        }
    }
}

impl From<pb::HistoryResponse> for HistoryPage {
    fn from(response: pb::HistoryResponse) -> Self {
        Self {
            revisions: response.revisions.into_iter().map(Record::from).collect(),
            next_after_revision: (response.next_after_revision != 0).then_some(response.next_after_revision),
            applied_revision: response.applied_revision,
        }
    }
}

impl TryFrom<pb::ScanResponse> for ScanPage {
    type Error = crate::ClientError;

    fn try_from(response: pb::ScanResponse) -> Result<Self, Self::Error> {
        let entries = response
            .entries
            .into_iter()
            .map(|entry| {
                let record = entry
                    .record
                    .ok_or_else(|| crate::ClientError::InvalidResponse("scan entry without a record".to_owned()))?;
                Ok(ScanEntry { record_id: entry.record_id, record: record.into() })
            })
            .collect::<Result<_, crate::ClientError>>()?;
        Ok(Self {
            entries,
            next_page_token: (!response.next_page_token.is_empty()).then_some(response.next_page_token),
            applied_revision: response.applied_revision,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caller_request_id_is_kept() {
        let options = WriteOptions { request_id: Some("my-id".to_owned()), ..WriteOptions::default() };
        assert_eq!(resolve_request_id(&options), "my-id");
        assert_eq!(write_options_to_pb(&options, "my-id").request_id, "my-id");
    }

    #[test]
    fn missing_request_id_gets_a_fresh_uuid() {
        for request_id in [None, Some(String::new())] {
            let options = WriteOptions { request_id, ..WriteOptions::default() };
            let first = resolve_request_id(&options);
            let second = resolve_request_id(&options);
            assert_ne!(first, second);
            assert!(uuid::Uuid::parse_str(&first).is_ok(), "{first}");
        }
    }

    #[test]
    fn tombstone_has_no_value() {
        let record = Record::from(pb::RecordRevision {
            revision: 7,
            value: Vec::new(),
            deleted: true,
            ..pb::RecordRevision::default()
        });
        assert_eq!(record.value, None);
        assert!(record.deleted);
    }

    #[test]
    fn last_pages_have_no_continuation() {
        let history = HistoryPage::from(pb::HistoryResponse::default());
        assert_eq!(history.next_after_revision, None);
        let scan = ScanPage::try_from(pb::ScanResponse::default());
        assert!(matches!(scan, Ok(ScanPage { next_page_token: None, .. })));
    }
}
