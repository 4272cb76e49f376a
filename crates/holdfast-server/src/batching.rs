//! Group commit: requests that arrive while earlier batches are being
//! committed go out together. One loop, shared by client writes and the
//! audit trail.
//!
//! A batch is cut as soon as a commit slot is free, so a lone request waits
//! for nothing; under load, everything that queued while the slots were busy
//! leaves in the next batch, and one Raft append, one fsync and one apply
//! serve all of it.

use std::future::Future;
use std::sync::Arc;

use tokio::sync::{mpsc, watch, Semaphore};

/// How large batches may grow and how many may be committing at once.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    /// Most items per batch.
    pub items: usize,
    /// A batch stops growing once its items' sizes reach this; a single
    /// larger item still goes (alone).
    pub bytes: usize,
    /// Batches committing at once.
    pub in_flight: usize,
}

/// Takes items from `rx` and hands them to `commit` in batches until the
/// channel closes or `shutdown` turns true. Each `commit` runs in its own
/// task and holds one of `limits.in_flight` slots until it finishes.
pub(crate) async fn run<T, F, Fut>(
    mut rx: mpsc::Receiver<T>,
    limits: Limits,
    size: impl Fn(&T) -> usize,
    mut shutdown: watch::Receiver<bool>,
    commit: F,
) where
    T: Send + 'static,
    F: Fn(Vec<T>) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let slots = Arc::new(Semaphore::new(limits.in_flight.max(1)));
    // An item that would have overfilled the previous batch opens the next.
    let mut carried: Option<T> = None;
    loop {
        let first = match carried.take() {
            Some(item) => item,
            None => tokio::select! {
                item = rx.recv() => match item { Some(item) => item, None => return },
                _ = shutdown.wait_for(|stop| *stop) => return,
            },
        };
        // Wait for a free slot first: while all slots are busy, arriving
        // items pile up and leave together in the next batch.
        let permit = tokio::select! {
            permit = slots.clone().acquire_owned() => match permit { Ok(p) => p, Err(_) => return },
            _ = shutdown.wait_for(|stop| *stop) => return,
        };
        let mut bytes = size(&first);
        let mut batch = vec![first];
        while batch.len() < limits.items && bytes < limits.bytes {
            let Ok(item) = rx.try_recv() else { break };
            let item_bytes = size(&item);
            if bytes + item_bytes > limits.bytes {
                carried = Some(item);
                break;
            }
            bytes += item_bytes;
            batch.push(item);
        }
        let committing = commit(batch);
        tokio::spawn(async move {
            committing.await;
            drop(permit);
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    /// Runs the loop with one slot held by a commit that waits on a gate,
    /// so items sent meanwhile must pile up and leave as one batch.
    #[tokio::test]
    async fn items_queued_behind_a_busy_slot_leave_together_within_limits() {
        let (tx, rx) = mpsc::channel::<usize>(1024);
        let (_stop_tx, stop_rx) = watch::channel(false);
        let seen: Arc<Mutex<Vec<Vec<usize>>>> = Arc::default();
        let (gate_tx, gate_rx) = watch::channel(false);
        let (batches_tx, mut batches_rx) = mpsc::unbounded_channel();
        let limits = Limits { items: 4, bytes: 100, in_flight: 1 };
        let recorded = seen.clone();
        tokio::spawn(run(
            rx,
            limits,
            |item: &usize| *item,
            stop_rx,
            move |batch| {
                recorded.lock().unwrap().push(batch.clone());
                let mut gate = gate_rx.clone();
                let batches_tx = batches_tx.clone();
                async move {
                    let _ = gate.wait_for(|open| *open).await;
                    let _ = batches_tx.send(());
                }
            },
        ));
        tx.send(1).await.unwrap();
        // The first item leaves alone; the gate keeps its slot busy.
        while seen.lock().unwrap().is_empty() {
            tokio::task::yield_now().await;
        }
        // The item cap (4) cuts the first run of tens; 95 would take the
        // next batch over 100 bytes, so it opens its own, and so does 20.
        for item in [10, 10, 10, 10, 10, 95, 20] {
            tx.send(item).await.unwrap();
        }
        gate_tx.send_replace(true);
        for _ in 0..5 {
            batches_rx.recv().await.unwrap();
        }
        let seen = seen.lock().unwrap().clone();
        assert_eq!(seen, vec![vec![1], vec![10, 10, 10, 10], vec![10], vec![95], vec![20]]);
    }
}
