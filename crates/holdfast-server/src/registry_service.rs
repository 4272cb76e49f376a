//! The client API: `holdfast.v1.Registry` — put, get, delete, history, scan.
//!
//! Writes are validated, turned into one Raft command (batched with other
//! writes arriving meanwhile) and answered only after the entry is committed
//! and applied. Linearizable reads confirm leadership with a quorum
//! (ReadIndex) before reading the local state machine — except a
//! strict-audited get on the leader, which reads first and lets the commit
//! of its audit event confirm it (`get_confirmed_by_audit`).

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use holdfast_proto::v1 as pb;
use holdfast_proto::v1::registry_server::Registry;
use holdfast_storage::{Raft, ReadView};
use holdfast_types::record::{page_limit, validate_record_id, validate_request_id, validate_value};
use holdfast_types::{
    AuditOp, AuditOutcome, BatchedWrite, CommandResult, CommittedLeaderId, LogId, Permission, RecordVersion,
    RegistryName, Revision, WriteMeta,
};
use openraft::async_runtime::WatchReceiver;
use tonic::{Request, Response, Status};

use crate::audit::Auditor;
use crate::auth::{Authorizer, Caller};
use crate::error::{to_status, ServerError};
use crate::metrics::NodeMetrics;
use crate::read_barrier::ReadBarrier;
use crate::records::RecordCodec;
use crate::writes::WriteBatcher;

/// Serves the registry API of one node.
pub struct RegistryService {
    raft: Raft,
    view: ReadView,
    codec: RecordCodec,
    unsafe_local_reads: bool,
    auth: Authorizer,
    auditor: Auditor,
    barrier: Arc<ReadBarrier>,
    writes: WriteBatcher,
    metrics: Arc<NodeMetrics>,
}

/// What the registry service is built from.
pub struct RegistryParts {
    pub raft: Raft,
    pub view: ReadView,
    pub codec: RecordCodec,
    pub unsafe_local_reads: bool,
    pub auth: Authorizer,
    pub auditor: Auditor,
    pub writes: WriteBatcher,
    pub metrics: Arc<NodeMetrics>,
}

impl RegistryService {
    pub fn new(parts: RegistryParts) -> Self {
        let RegistryParts { raft, view, codec, unsafe_local_reads, auth, auditor, writes, metrics } = parts;
        let barrier = ReadBarrier::new(raft.clone(), view.clone());
        Self { raft, view, codec, unsafe_local_reads, auth, auditor, barrier, writes, metrics }
    }

    /// Records a read that looked at a record (found or not). In strict mode
    /// the answer waits until the trail has it.
    async fn audit_read(
        &self,
        caller: &Caller,
        registry: &RegistryName,
        record: &[u8],
        op: AuditOp,
        revision: Revision,
        outcome: AuditOutcome,
    ) -> Result<(), ServerError> {
        self.auditor.record_read(vec![self.auditor.event(caller.name(), registry, record, op, revision, outcome)]).await
    }

    /// Waits until this node may serve a read of the given consistency.
    async fn read_barrier(&self, consistency: i32) -> Result<(), ServerError> {
        if consistency == pb::Consistency::Stale as i32 || self.unsafe_local_reads {
            return Ok(());
        }
        self.barrier.wait().await
    }

    async fn write(&self, command: BatchedWrite) -> Result<(Revision, bool), ServerError> {
        let (result, duplicate) = match self.writes.write(command).await? {
            CommandResult::Duplicate(first) => (*first, true),
            other => (other, false),
        };
        match result {
            CommandResult::Written { revision } => Ok((revision, duplicate)),
            CommandResult::Conflict { current } => Err(ServerError::Conflict { current }),
            CommandResult::NotFound => Err(ServerError::NotFound("no such record".into())),
            CommandResult::None | CommandResult::Duplicate(_) | CommandResult::Batch(_) => {
                Err(ServerError::Raft("unexpected apply result".into()))
            }
        }
    }

    /// The leader id of this node's term when a linearizable get may use its
    /// strict audit commit as its leadership confirmation: strict trail,
    /// linearizable read, and this node leads and has applied an entry of
    /// its own term — so its state holds every entry of earlier terms (every
    /// write an earlier leader acknowledged), as well as every write it
    /// acknowledged itself (answered once applied).
    fn audit_can_confirm(&self, consistency: i32) -> Option<CommittedLeaderId> {
        if consistency == pb::Consistency::Stale as i32 || self.unsafe_local_reads || !self.auditor.is_strict() {
            return None;
        }
        let metrics = self.raft.metrics();
        let metrics = metrics.borrow_watched();
        if metrics.current_leader != Some(metrics.id) {
            return None;
        }
        let applied = metrics.last_applied?.leader_id;
        (applied.term == metrics.current_term && applied.node_id == metrics.id).then_some(applied)
    }

    /// A linearizable get in one Raft round instead of two: the strict trail
    /// must commit the read's event before answering anyway, and that commit
    /// confirms what ReadIndex's heartbeat round would.
    ///
    /// The record is read from local state once [`Self::audit_can_confirm`]
    /// has seen this node lead term T with an entry of T applied: that state
    /// holds every write acknowledged by a leader of T or earlier before the
    /// read. The event naming what was read is then proposed, and if this
    /// node appended the entry holding it as leader of T (its log id names
    /// T and this node) and that entry is committed — by this leader or a
    /// later one — no leader of a later term acknowledged a write W before
    /// the read either. W and the entry would both be committed, so the
    /// entry comes first in the log; W's leader held the entry when it
    /// appended W, and can only have received it from this node before its
    /// own term began; the entry exists only after the read, so W was
    /// appended after the read. The read is then the linearizable answer,
    /// and the event describes it. Otherwise (the batch went to another
    /// leader, or leadership moved meanwhile) `None`: the caller takes the
    /// usual path, and the trail keeps one more event than strictly needed
    /// — it never misses a read.
    ///
    /// The commit is all the answer waits for: the state machine answers an
    /// audit entry as soon as it is committed, before applying it.
    async fn get_confirmed_by_audit(
        &self,
        caller: &Caller,
        registry: &RegistryName,
        record: &[u8],
        leader: CommittedLeaderId,
    ) -> Result<Option<Result<pb::GetResponse, ServerError>>, ServerError> {
        let (version, applied) = self.view.get(registry.clone(), record.to_vec(), None).await?;
        let (revision, outcome) = read_outcome(version.as_ref(), false);
        // Opened first: a value that fails to open returns an error and no
        // data, and leaves no read in the trail (as on the usual path).
        let answer = self.get_answer(registry, record, version, false, applied);
        if returns_nothing(&answer) {
            return Ok(Some(answer));
        }
        let event = self.auditor.event(caller.name(), registry, record, AuditOp::Get, revision, outcome);
        let confirmed = confirms(leader, self.auditor.record_read_confirming(event).await?);
        self.metrics.get_confirmed_by_audit(confirmed);
        Ok(confirmed.then_some(answer))
    }

    /// The answer to a get once its read is confirmed and audited.
    fn get_answer(
        &self,
        registry: &RegistryName,
        record: &[u8],
        version: Option<RecordVersion>,
        at_revision: bool,
        applied: Revision,
    ) -> Result<pb::GetResponse, ServerError> {
        match version {
            Some(v) if at_revision || !v.is_tombstone() => {
                let opened = self.open_version(registry, record, v)?.1;
                Ok(pb::GetResponse { record: Some(opened), applied_revision: applied })
            }
            _ => Err(ServerError::NotFound(format!("no record with that id in registry {registry}"))),
        }
    }

    /// Opens a stored version: the client's record id (when the value
    /// carries it) and the revision as the API returns it.
    fn open_version(
        &self,
        registry: &RegistryName,
        stored_record: &[u8],
        v: RecordVersion,
    ) -> Result<(Option<Vec<u8>>, pb::RecordRevision), ServerError> {
        let (record_id, value) = match &v.value {
            Some(stored) => {
                let (id, value) = self.codec.open(registry, stored_record, v.revision, stored)?;
                (Some(id), value)
            }
            None => (None, Vec::new()),
        };
        let revision = pb::RecordRevision {
            revision: v.revision,
            deleted: v.value.is_none(),
            value,
            create_revision: v.create_revision,
            commit_time_ms: v.commit_time_ms,
            actor: v.actor,
            reason: v.reason,
        };
        Ok((record_id, revision))
    }
}

/// Whether the entry that committed a get's audit event confirms the read
/// made under `leader` (see `RegistryService::get_confirmed_by_audit`): this
/// node appended it as that same leader. `None`: another leader took the
/// batch.
fn confirms(leader: CommittedLeaderId, entry: Option<LogId>) -> bool {
    entry.is_some_and(|entry| entry.leader_id == leader)
}

/// Whether a get's answer is an error that returns no data and says
/// nothing about the record (a value that failed to open): such a read is
/// not recorded. "Not found" does say something, and is recorded.
fn returns_nothing(answer: &Result<pb::GetResponse, ServerError>) -> bool {
    matches!(answer, Err(e) if !matches!(e, ServerError::NotFound(_)))
}

/// What a get saw, as its audit event records it.
fn read_outcome(version: Option<&RecordVersion>, at_revision: bool) -> (Revision, AuditOutcome) {
    match version {
        Some(v) if at_revision || !v.is_tombstone() => (v.revision, AuditOutcome::Ok),
        _ => (0, AuditOutcome::NotFound),
    }
}

fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

/// Validates write options and builds the metadata stored with the revision.
/// The actor is the authenticated identity; only a plaintext node, which
/// knows no identities, stores the actor the client names.
fn write_meta(
    options: Option<pb::WriteOptions>,
    caller: &Caller,
) -> Result<(WriteMeta, Option<Revision>), ServerError> {
    let options = options.unwrap_or_default();
    use holdfast_types::limits::{ACTOR_BYTES_MAX, REASON_BYTES_MAX};
    use holdfast_types::ValidationError;
    if options.actor.len() > ACTOR_BYTES_MAX {
        return Err(ValidationError::ActorTooLong(options.actor.len()).into());
    }
    if options.reason.len() > REASON_BYTES_MAX {
        return Err(ValidationError::ReasonTooLong(options.reason.len()).into());
    }
    // A client that sends no request id gets no retry protection, but the
    // write is still recorded under a fresh id so history stays uniform.
    let request_id = if options.request_id.is_empty() {
        format!("server-{:032x}", rand::random::<u128>())
    } else {
        validate_request_id(&options.request_id)?;
        options.request_id
    };
    let actor = match caller {
        Caller::Identity(identity) => identity.clone(),
        Caller::Anonymous | Caller::Unidentified => options.actor,
    };
    let meta = WriteMeta { request_id, actor, reason: options.reason, commit_time_ms: now_ms() };
    Ok((meta, options.if_revision))
}

#[tonic::async_trait]
impl Registry for RegistryService {
    async fn put(&self, request: Request<pb::PutRequest>) -> Result<Response<pb::PutResponse>, Status> {
        let caller = self.auth.caller(&request);
        let req = request.into_inner();
        let run = async {
            let registry = RegistryName::parse(&req.registry)?;
            validate_record_id(&req.record_id)?;
            let record = self.codec.storage_record(&registry, &req.record_id);
            self.auditor.authorize(&self.auth, &caller, &registry, &record, AuditOp::Put, Permission::Write)?;
            validate_value(&req.value)?;
            let (meta, if_revision) = write_meta(req.options, &caller)?;
            let value = self.codec.seal(&registry, &req.record_id, &req.value)?;
            let command = BatchedWrite::Put { registry, record, value, if_revision, meta };
            // The state machine records the write's audit event with it.
            let (revision, duplicate) = self.write(command).await?;
            Ok(pb::PutResponse { revision, duplicate })
        };
        run.await.map(Response::new).map_err(to_status)
    }

    async fn delete(&self, request: Request<pb::DeleteRequest>) -> Result<Response<pb::DeleteResponse>, Status> {
        let caller = self.auth.caller(&request);
        let req = request.into_inner();
        let run = async {
            let registry = RegistryName::parse(&req.registry)?;
            validate_record_id(&req.record_id)?;
            let record = self.codec.storage_record(&registry, &req.record_id);
            self.auditor.authorize(&self.auth, &caller, &registry, &record, AuditOp::Delete, Permission::Write)?;
            let (meta, if_revision) = write_meta(req.options, &caller)?;
            let command = BatchedWrite::Delete { registry, record, if_revision, meta };
            let (revision, duplicate) = self.write(command).await?;
            Ok(pb::DeleteResponse { revision, duplicate })
        };
        run.await.map(Response::new).map_err(to_status)
    }

    async fn get(&self, request: Request<pb::GetRequest>) -> Result<Response<pb::GetResponse>, Status> {
        let caller = self.auth.caller(&request);
        let req = request.into_inner();
        let run = async {
            let registry = RegistryName::parse(&req.registry)?;
            validate_record_id(&req.record_id)?;
            let record = self.codec.storage_record(&registry, &req.record_id);
            self.auditor.authorize(&self.auth, &caller, &registry, &record, AuditOp::Get, Permission::Read)?;
            let at = (req.at_revision > 0).then_some(req.at_revision);
            if let Some(leader) = self.audit_can_confirm(req.consistency).filter(|_| at.is_none()) {
                if let Some(answer) = self.get_confirmed_by_audit(&caller, &registry, &record, leader).await? {
                    return answer;
                }
            }
            self.read_barrier(req.consistency).await?;
            let (version, applied) = self.view.get(registry.clone(), record.clone(), at).await?;
            let (revision, outcome) = read_outcome(version.as_ref(), at.is_some());
            let answer = self.get_answer(&registry, &record, version, at.is_some(), applied);
            if !returns_nothing(&answer) {
                self.audit_read(&caller, &registry, &record, AuditOp::Get, revision, outcome).await?;
            }
            answer
        };
        run.await.map(Response::new).map_err(to_status)
    }

    async fn history(&self, request: Request<pb::HistoryRequest>) -> Result<Response<pb::HistoryResponse>, Status> {
        let caller = self.auth.caller(&request);
        let req = request.into_inner();
        let run = async {
            let registry = RegistryName::parse(&req.registry)?;
            validate_record_id(&req.record_id)?;
            let limit = page_limit(req.limit)?;
            let record = self.codec.storage_record(&registry, &req.record_id);
            self.auditor.authorize(&self.auth, &caller, &registry, &record, AuditOp::History, Permission::Read)?;
            self.read_barrier(req.consistency).await?;
            let page = self.view.history(registry.clone(), record.clone(), req.after_revision, limit).await?;
            let last = page.versions.last().map_or(0, |v| v.revision);
            let revisions = page
                .versions
                .into_iter()
                .map(|v| Ok(self.open_version(&registry, &record, v)?.1))
                .collect::<Result<_, ServerError>>()?;
            let outcome = if last == 0 { AuditOutcome::NotFound } else { AuditOutcome::Ok };
            self.audit_read(&caller, &registry, &record, AuditOp::History, last, outcome).await?;
            Ok(pb::HistoryResponse {
                revisions,
                next_after_revision: page.next_after.unwrap_or(0),
                applied_revision: page.applied,
            })
        };
        run.await.map(Response::new).map_err(to_status)
    }

    async fn scan(&self, request: Request<pb::ScanRequest>) -> Result<Response<pb::ScanResponse>, Status> {
        let caller = self.auth.caller(&request);
        let req = request.into_inner();
        let run = async {
            let registry = RegistryName::parse(&req.registry)?;
            let limit = page_limit(req.limit)?;
            self.auditor.authorize(&self.auth, &caller, &registry, &[], AuditOp::Scan, Permission::Read)?;
            self.read_barrier(req.consistency).await?;
            let after = (!req.page_token.is_empty()).then_some(req.page_token);
            let page = self.view.scan(registry.clone(), after, limit).await?;
            let mut entries = Vec::with_capacity(page.entries.len());
            let mut events = Vec::with_capacity(page.entries.len());
            for (stored_record, version) in page.entries {
                events.push(self.auditor.event(
                    caller.name(),
                    &registry,
                    &stored_record,
                    AuditOp::Scan,
                    version.revision,
                    AuditOutcome::Ok,
                ));
                let (record_id, record) = self.open_version(&registry, &stored_record, version)?;
                entries.push(pb::ScanEntry { record_id: record_id.unwrap_or(stored_record), record: Some(record) });
            }
            // Every record a scan returns counts as looked at.
            self.auditor.record_read(events).await?;
            Ok(pb::ScanResponse {
                entries,
                next_page_token: page.next_after.unwrap_or_default(),
                applied_revision: page.applied,
            })
        };
        run.await.map(Response::new).map_err(to_status)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use prost::Message;

    #[test]
    fn only_an_entry_appended_by_the_same_leader_confirms_a_read() {
        let leader = |term, node_id| CommittedLeaderId { term, node_id };
        let entry = |term, node_id| Some(LogId::new(leader(term, node_id), 42));
        assert!(confirms(leader(3, 1), entry(3, 1)));
        assert!(!confirms(leader(3, 1), None), "handed to another leader");
        assert!(!confirms(leader(3, 1), entry(4, 1)), "this node leads again, in a later term");
        assert!(!confirms(leader(3, 1), entry(3, 2)), "another node's entry");
        assert!(!confirms(leader(4, 1), entry(3, 1)), "an older term's entry");
    }

    /// Every check a request meets before anything is proposed or read,
    /// applied to whatever the decoder produced.
    fn validate_all(registry: &str, record_id: &[u8], value: &[u8], options: Option<pb::WriteOptions>) {
        let _ = RegistryName::parse(registry);
        let _ = validate_record_id(record_id);
        let _ = validate_value(value);
        let _ = write_meta(options, &Caller::Anonymous);
    }

    proptest! {
        /// The request decoders and validation never panic on bytes from the
        /// network: a malformed frame becomes an error, never a crash.
        #[test]
        fn request_decoders_refuse_garbage_without_panicking(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
            if let Ok(r) = pb::PutRequest::decode(bytes.as_slice()) {
                validate_all(&r.registry, &r.record_id, &r.value, r.options);
            }
            if let Ok(r) = pb::DeleteRequest::decode(bytes.as_slice()) {
                validate_all(&r.registry, &r.record_id, &[], r.options);
            }
            if let Ok(r) = pb::GetRequest::decode(bytes.as_slice()) {
                validate_all(&r.registry, &r.record_id, &[], None);
            }
            if let Ok(r) = pb::HistoryRequest::decode(bytes.as_slice()) {
                validate_all(&r.registry, &r.record_id, &[], None);
                let _ = page_limit(r.limit);
            }
            if let Ok(r) = pb::ScanRequest::decode(bytes.as_slice()) {
                let _ = RegistryName::parse(&r.registry);
                let _ = page_limit(r.limit);
            }
            let _ = pb::GrantRequest::decode(bytes.as_slice());
            let _ = pb::TrailRequest::decode(bytes.as_slice());
            let _ = pb::RaftMessage::decode(bytes.as_slice());
        }

        /// Valid requests with bytes flipped decode to an error or to a
        /// request that validation judges like any other.
        #[test]
        fn mutated_requests_never_panic(at in 0usize..512, bit in 0u8..8) {
            let valid = pb::PutRequest {
                registry: "population".into(),
                record_id: b"UA-1".to_vec(),
                value: vec![7; 300],
                options: Some(pb::WriteOptions { request_id: "r-1".into(), if_revision: Some(3), ..Default::default() }),
            }
            .encode_to_vec();
            let mut bytes = valid.clone();
            let i = at % bytes.len();
            bytes[i] ^= 1 << bit;
            if let Ok(r) = pb::PutRequest::decode(bytes.as_slice()) {
                validate_all(&r.registry, &r.record_id, &r.value, r.options);
            }
        }
    }
}
