//! Linearizable reads share leadership confirmations (ReadIndex batching).
//!
//! Confirming leadership costs a heartbeat round to a quorum. Instead of one
//! round per read, at most one round is in flight: reads arriving while it
//! runs wait for the next one, which starts after they arrived — so each read
//! is still ordered after every write acknowledged before it began.

use std::sync::{Arc, Mutex};

use holdfast_storage::{Raft, ReadView};
use holdfast_types::TypeConfig;
use openraft::errors::{LinearizableReadError, RaftError};
use tokio::sync::oneshot;

use crate::error::ServerError;

type Confirmation = Result<(), RaftError<TypeConfig, LinearizableReadError<TypeConfig>>>;

#[derive(Default)]
struct Waiting {
    readers: Vec<oneshot::Sender<Confirmation>>,
    round_running: bool,
}

/// Confirms that this node leads (a ReadIndex round) and waits until its
/// read index is applied here. Meanwhile applies sync at once rather than
/// wait for a log append's sync to cover them: the applied index this
/// waits for moves only after their sync.
pub(crate) async fn ensure_linearizable(raft: &Raft, view: &ReadView) -> Confirmation {
    let _prompt = view.prompt_apply_syncs();
    raft.ensure_linearizable(openraft::ReadPolicy::ReadIndex).await.map(|_| ())
}

/// Coalesces `ensure_linearizable` calls of concurrent reads.
pub struct ReadBarrier {
    raft: Raft,
    view: ReadView,
    waiting: Mutex<Waiting>,
}

impl ReadBarrier {
    pub fn new(raft: Raft, view: ReadView) -> Arc<Self> {
        Arc::new(Self { raft, view, waiting: Mutex::default() })
    }

    /// Returns once a leadership confirmation that started after this call
    /// succeeded and its read index is applied locally.
    pub async fn wait(self: &Arc<Self>) -> Result<(), ServerError> {
        let (tx, rx) = oneshot::channel();
        let start_round = {
            let mut waiting = self.waiting.lock().unwrap_or_else(|p| p.into_inner());
            waiting.readers.push(tx);
            !std::mem::replace(&mut waiting.round_running, true)
        };
        if start_round {
            tokio::spawn(self.clone().run_rounds());
        }
        match rx.await {
            Ok(result) => Ok(result?),
            Err(_) => Err(ServerError::Raft("the read barrier stopped".into())),
        }
    }

    /// Runs rounds back to back while readers are waiting.
    async fn run_rounds(self: Arc<Self>) {
        loop {
            let readers = {
                let mut waiting = self.waiting.lock().unwrap_or_else(|p| p.into_inner());
                if waiting.readers.is_empty() {
                    waiting.round_running = false;
                    return;
                }
                std::mem::take(&mut waiting.readers)
            };
            let result = ensure_linearizable(&self.raft, &self.view).await;
            for reader in readers {
                let _ = reader.send(result.clone());
            }
        }
    }
}
