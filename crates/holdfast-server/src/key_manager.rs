//! Keeping the replicated keyring healthy, on the leader: create the first
//! data key, re-seal revisions stored under older keys after a rotation, and
//! drop a retired key once nothing needs it. Every step is a Raft command,
//! so the work survives leader changes and restarts: a new leader simply
//! starts another pass.

use std::sync::Arc;
use std::time::Duration;

use holdfast_storage::{Raft, ReadView};
use holdfast_types::Command;
use openraft::async_runtime::WatchReceiver;
use sha2::{Digest, Sha256};
use tokio::sync::watch;

use crate::crypto::Crypto;
use crate::error::ServerError;

/// Pause between steps; re-encryption is background work and yields to
/// client traffic.
const TICK: Duration = Duration::from_millis(200);
/// Stored revisions examined per step, bounding each step's work.
const VERSIONS_PER_STEP: usize = 256;

/// Progress of one pass over every stored revision.
#[derive(Default)]
struct Pass {
    cursor: Option<Vec<u8>>,
    /// Revisions still sealed under an old key seen during this pass.
    old_seen: u64,
    /// The log index when the pass began: only revisions applied by then are
    /// sure to be covered.
    started_at_log_index: u64,
}

/// Runs until `shutdown`; acts only while this node leads.
pub(crate) async fn run(raft: Raft, view: ReadView, crypto: Arc<Crypto>, mut shutdown: watch::Receiver<bool>) {
    let mut pass = Pass::default();
    loop {
        tokio::select! {
            _ = tokio::time::sleep(TICK) => {}
            _ = shutdown.wait_for(|s| *s) => return,
        }
        // Cheap checks first: most ticks there is nothing to do, and only a
        // leader acts (and then confirms it leads before writing).
        let state = view.keyring().borrow().clone();
        let idle = state.current.is_some() && state.wrapped.len() == 1;
        let leads = raft.metrics().borrow_watched().state == openraft::ServerState::Leader;
        if idle || !leads || crate::read_barrier::ensure_linearizable(&raft, &view).await.is_err() {
            pass = Pass::default();
            continue;
        }
        if let Err(e) = step(&raft, &view, &crypto, &mut pass).await {
            tracing::warn!(error = %e, "key maintenance step failed; will retry");
            pass = Pass::default();
        }
    }
}

async fn step(raft: &Raft, view: &ReadView, crypto: &Crypto, pass: &mut Pass) -> Result<(), ServerError> {
    let state = view.keyring().borrow().clone();
    let Some(current) = state.current else {
        let wrapped = crypto.new_wrapped_key(1)?;
        raft.client_write(Command::AddDataKey { key_id: 1, wrapped }).await?;
        tracing::info!("created the cluster's first data key");
        return Ok(());
    };
    let old: Vec<u32> = state.wrapped.keys().copied().filter(|id| *id != current).collect();
    if old.is_empty() {
        return Ok(());
    }
    if pass.cursor.is_none() && pass.old_seen == 0 {
        pass.started_at_log_index = raft.metrics().borrow_watched().last_log_index.unwrap_or(0);
    }
    let batch = view.versions(pass.cursor.take(), VERSIONS_PER_STEP).await?;
    for stored in &batch.versions {
        let Some(value) = &stored.version.value else { continue };
        if Crypto::key_id_of(value) == Some(current) {
            continue;
        }
        pass.old_seen += 1;
        let revision = stored.version.revision;
        if let Some(resealed) = crypto.reseal(&stored.registry, &stored.record, revision, value)? {
            let expected_sha256: [u8; 32] = Sha256::digest(value).into();
            let command = Command::Reseal {
                registry: stored.registry.clone(),
                record: stored.record.clone(),
                revision,
                value: resealed,
                expected_sha256,
            };
            raft.client_write(command).await?;
        }
    }
    match batch.resume {
        Some(resume) => pass.cursor = Some(resume),
        None => {
            // A whole pass over applied state that found nothing under an
            // old key, begun after every earlier entry was applied, proves no
            // stored revision needs those keys.
            let applied = view.applied_index();
            if pass.old_seen == 0 && applied >= pass.started_at_log_index {
                for key_id in old {
                    raft.client_write(Command::RetireKey { key_id }).await?;
                    tracing::info!(key_id, "retired a data key no stored revision needs");
                }
            }
            *pass = Pass::default();
        }
    }
    Ok(())
}
