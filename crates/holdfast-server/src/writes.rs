//! Client writes go through one batcher per node: concurrent puts and
//! deletes become one `Command::Batch` entry, so one Raft append, one fsync
//! on each replica and one apply serve them all. Nothing is acknowledged
//! before its entry is committed (synced on a quorum) and applied.

use std::time::Duration;

use holdfast_storage::Raft;
use holdfast_types::limits::{WRITE_BATCH_BYTES_MAX, WRITE_BATCH_COMMANDS_MAX};
use holdfast_types::{BatchedWrite, Command, CommandResult};
use tokio::sync::{mpsc, oneshot, watch};

use crate::batching::{self, Limits, Shared};
use crate::error::{ensure_leading, ServerError};

/// Writes waiting for a batch; when full, callers wait (backpressure).
const QUEUE_WRITES_MAX: usize = 16 * 1024;

struct PendingWrite {
    write: BatchedWrite,
    done: oneshot::Sender<Result<CommandResult, ServerError>>,
}

/// Hands client writes to Raft in batches.
#[derive(Clone)]
pub struct WriteBatcher {
    tx: mpsc::Sender<PendingWrite>,
    raft: Raft,
    /// The batching loop's slots, for a write that may go alone.
    shared: Shared,
}

impl WriteBatcher {
    /// Starts the batching task; it ends at shutdown.
    pub fn start(raft: Raft, shutdown: watch::Receiver<bool>) -> (Self, tokio::task::JoinHandle<()>) {
        let (tx, rx) = mpsc::channel(QUEUE_WRITES_MAX);
        let limits = Limits::new(WRITE_BATCH_COMMANDS_MAX, WRITE_BATCH_BYTES_MAX);
        let shared = Shared::new(&limits);
        let proposer = raft.clone();
        let task =
            tokio::spawn(batching::run_shared(rx, limits, shared.clone(), write_bytes, shutdown, move |batch| {
                propose(proposer.clone(), batch)
            }));
        (Self { tx, raft, shared }, task)
    }

    /// Proposes `write` and returns its result once it is committed and
    /// applied.
    ///
    /// A write that the loop would send alone at once (nothing queued or
    /// committing, light traffic) is proposed right here instead: two
    /// task handoffs fewer on the way in and one on the way out.
    pub async fn write(&self, write: BatchedWrite) -> Result<CommandResult, ServerError> {
        if let Some(_alone) = self.shared.try_alone(self.tx.capacity() == self.tx.max_capacity()) {
            return client_write(&self.raft, Command::from(write)).await;
        }
        let (done, wait) = oneshot::channel();
        let stopped = || ServerError::NotReady("the node is shutting down".into());
        self.tx.send(PendingWrite { write, done }).await.map_err(|_| stopped())?;
        wait.await.map_err(|_| stopped())?
    }
}

/// Roughly what a write adds to an entry, for the batch size cap: its ids,
/// value and metadata plus a margin for the encoding.
fn write_bytes(pending: &PendingWrite) -> usize {
    const ENCODING_MARGIN: usize = 64;
    let w = pending.write.as_write();
    let meta = w.meta.request_id.len() + w.meta.actor.len() + w.meta.reason.len();
    w.registry.as_str().len() + w.record.len() + w.value.map_or(0, <[u8]>::len) + meta + ENCODING_MARGIN
}

/// Propose and wait for Raft's answer for at most this long. A proposal
/// can be left unanswered (a deposed leader whose entry is never truncated
/// nor committed); its slot must not be held forever, or every later write
/// on the node would queue behind it (and each batch that is not full waits
/// for it up to `Limits::new`'s wait).
const PROPOSAL_TIMEOUT: Duration = Duration::from_secs(10);

/// `raft.client_write` with [`PROPOSAL_TIMEOUT`]; a timeout leaves the
/// outcome unknown (the entry may still commit).
async fn client_write(raft: &Raft, command: Command) -> Result<CommandResult, ServerError> {
    match tokio::time::timeout(PROPOSAL_TIMEOUT, propose_as_leader(raft, command)).await {
        Ok(result) => result,
        Err(_) => Err(ServerError::Timeout(format!(
            "the write was proposed but not answered within {} s; it may or may not be applied",
            PROPOSAL_TIMEOUT.as_secs()
        ))),
    }
}

/// Proposes `command` if this node leads, and returns its applied result.
///
/// A client is told "not the leader" (which promises the write was not
/// applied) only when the command never reached the log: openraft answers
/// `ForwardToLeader` when it refuses a proposal before appending it, and
/// `LogEntryDiscarded` when it drops an appended entry after losing
/// leadership, whose outcome is unknown (a later leader holding a copy may
/// still commit it; a retry with the same request id is safe).
pub(crate) async fn propose_as_leader(raft: &Raft, command: Command) -> Result<CommandResult, ServerError> {
    ensure_leading(raft)?;
    raft.client_write(command).await.map(|response| response.data).map_err(Into::into)
}

/// Proposes one batch and hands each writer its own result. A lone write
/// is proposed as itself.
async fn propose(raft: Raft, mut batch: Vec<PendingWrite>) {
    if batch.len() == 1 {
        let PendingWrite { write, done } = batch.remove(0);
        let _ = done.send(client_write(&raft, Command::from(write)).await);
        return;
    }
    let (writes, waiters): (Vec<_>, Vec<_>) = batch.into_iter().map(|p| (p.write, p.done)).unzip();
    match client_write(&raft, Command::Batch { writes }).await {
        Ok(result) => match result {
            CommandResult::Batch(results) if results.len() == waiters.len() => {
                for (done, result) in waiters.into_iter().zip(results) {
                    let _ = done.send(Ok(result));
                }
            }
            other => {
                tracing::error!(result = ?other, "a write batch applied with a result that does not match it");
                for done in waiters {
                    let _ = done.send(Err(ServerError::Raft("unexpected apply result".into())));
                }
            }
        },
        Err(error) => {
            for done in waiters {
                let _ = done.send(Err(error.for_another_waiter()));
            }
        }
    }
}
