//! Group commit: requests that arrive while earlier batches are being
//! committed go out together. One loop, shared by client writes and the
//! audit trail.
//!
//! A batch leaves as soon as nothing is committing, so a lone request waits
//! for nothing; under load, everything that queued while a batch committed
//! leaves in the next one, and one Raft append, one fsync and one apply
//! serve all of it. Only full batches commit side by side: a second
//! half-full batch in flight would halve the batches and double what every
//! replica spends per batch (measured: about a quarter more CPU per put at
//! 64 clients with four half-full batches in flight than with one).

use std::future::Future;
use std::sync::Arc;

use tokio::sync::{mpsc, watch, OwnedSemaphorePermit, Semaphore};

/// How large batches may grow and how many full ones may be committing at
/// once.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    /// Most items per batch.
    pub items: usize,
    /// A batch stops growing once its items' sizes reach this; a single
    /// larger item still goes (alone).
    pub bytes: usize,
    /// Batches committing at once, when they are full. A batch that is not
    /// full waits until nothing else is committing.
    pub in_flight: usize,
}

/// Takes items from `rx` and hands them to `commit` in batches until the
/// channel closes or `shutdown` turns true. Each `commit` runs in its own
/// task and holds its slots until it finishes: one slot for a full batch,
/// all `limits.in_flight` for any other.
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
    let in_flight = limits.in_flight.max(1);
    let slots = Arc::new(Semaphore::new(in_flight));
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
        // Wait for a free slot first: while the slots are busy, arriving
        // items pile up and leave together in the next batch.
        let Some(mut permit) = acquire(&slots, 1, &mut shutdown).await else { return };
        let mut batch = Batch { items: vec![first], bytes: 0 };
        batch.bytes = size(&batch.items[0]);
        carried = batch.fill(&mut rx, &limits, &size);
        if carried.is_none() && !batch.is_full(&limits) && in_flight > 1 {
            // Not full: wait for the batches committing to finish, then
            // take what arrived meanwhile too.
            let Some(rest) = acquire(&slots, in_flight - 1, &mut shutdown).await else { return };
            permit.merge(rest);
            carried = batch.fill(&mut rx, &limits, &size);
        }
        let committing = commit(batch.items);
        tokio::spawn(async move {
            committing.await;
            drop(permit);
        });
    }
}

/// `count` slots, or `None` once the semaphore closes or shutdown starts.
async fn acquire(
    slots: &Arc<Semaphore>,
    count: usize,
    shutdown: &mut watch::Receiver<bool>,
) -> Option<OwnedSemaphorePermit> {
    // Counts are at most `Limits::in_flight`, far below u32::MAX.
    let count = u32::try_from(count).unwrap_or(u32::MAX);
    tokio::select! {
        permit = slots.clone().acquire_many_owned(count) => permit.ok(),
        _ = shutdown.wait_for(|stop| *stop) => None,
    }
}

/// A batch being cut.
struct Batch<T> {
    items: Vec<T>,
    bytes: usize,
}

impl<T> Batch<T> {
    fn is_full(&self, limits: &Limits) -> bool {
        self.items.len() >= limits.items || self.bytes >= limits.bytes
    }

    /// Adds the items already queued, up to the limits; returns an item
    /// that would have overfilled the batch.
    fn fill(&mut self, rx: &mut mpsc::Receiver<T>, limits: &Limits, size: &impl Fn(&T) -> usize) -> Option<T> {
        while !self.is_full(limits) {
            let Ok(item) = rx.try_recv() else { break };
            let item_bytes = size(&item);
            if self.bytes + item_bytes > limits.bytes {
                return Some(item);
            }
            self.bytes += item_bytes;
            self.items.push(item);
        }
        None
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

    /// Two slots: full batches commit side by side, a batch that is not
    /// full waits until nothing is committing, though a slot is free.
    #[tokio::test]
    async fn only_full_batches_commit_side_by_side() {
        let (tx, rx) = mpsc::channel::<usize>(1024);
        let (_stop_tx, stop_rx) = watch::channel(false);
        let seen: Arc<Mutex<Vec<Vec<usize>>>> = Arc::default();
        let (gate_tx, gate_rx) = watch::channel(false);
        let (batches_tx, mut batches_rx) = mpsc::unbounded_channel();
        // Nine items queued before the loop starts: two full batches and
        // one more item.
        for _ in 0..9 {
            tx.send(10).await.unwrap();
        }
        let recorded = seen.clone();
        tokio::spawn(run(
            rx,
            Limits { items: 4, bytes: 100, in_flight: 2 },
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
        let batches = |n: usize| seen.lock().unwrap().len() == n;
        while !batches(2) {
            tokio::task::yield_now().await;
        }
        // The single-threaded test runtime runs the loop whenever this
        // task yields: had it anything to send, it would have.
        for _ in 0..100 {
            tokio::task::yield_now().await;
        }
        assert!(batches(2), "no slot is free for the third batch");
        gate_tx.send_replace(true);
        for _ in 0..3 {
            batches_rx.recv().await.unwrap();
        }

        gate_tx.send_replace(false);
        tx.send(5).await.unwrap();
        while !batches(4) {
            tokio::task::yield_now().await;
        }
        // One slot is free, but the batch of 5 is committing and 7 alone
        // is not a full batch: it waits.
        tx.send(7).await.unwrap();
        for _ in 0..100 {
            tokio::task::yield_now().await;
        }
        assert!(batches(4), "a half-full batch left beside another");
        gate_tx.send_replace(true);
        for _ in 0..2 {
            batches_rx.recv().await.unwrap();
        }
        let seen = seen.lock().unwrap().clone();
        assert_eq!(seen, vec![vec![10; 4], vec![10; 4], vec![10], vec![5], vec![7]]);
    }
}
