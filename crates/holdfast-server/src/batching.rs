//! Group commit: requests that arrive while earlier batches are being
//! committed go out together. One loop, shared by client writes and the
//! audit trail.
//!
//! A batch leaves as soon as nothing is committing, so a lone request waits
//! for nothing (its caller may even commit it without the loop, see
//! [`Shared::try_alone`]); under load, everything that queues while a batch commits
//! leaves in the next one, and one Raft append, one fsync and one apply
//! serve all of it. Only full batches commit side by side: a second
//! half-full batch in flight would halve the batches and double what every
//! replica spends per batch (measured: about a quarter more CPU per put at
//! 64 clients with four half-full batches in flight than with one).
//!
//! Callers that send again as soon as they are answered (a service working
//! through a queue) would otherwise settle into two groups that alternate:
//! one committing while the other queues, each half of them. So a batch
//! that is not full, cut soon after a batch of at least
//! [`REGROUP_MIN_ITEMS`] was answered, waits until three quarters as many
//! items as that batch held have joined it — the answered callers ride with
//! the ones that queued — but no longer than that batch took to commit
//! after its answer, nor `wait_max` after it began to be cut. Callers who
//! do not send again at once (independent traffic) let such a wait run
//! out with fewer than a quarter of them back; the next
//! [`REGROUP_SKIP_AFTER_TIMEOUT`] batches then do not wait.

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{mpsc, watch, OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

/// The smallest answered batch whose callers a following batch waits for.
/// Fewer callers are not worth a wait: a batch of a few costs little more
/// than the wait would save, and callers that do not send again at once
/// (light, independent traffic) would only be delayed.
pub(crate) const REGROUP_MIN_ITEMS: usize = 8;

/// Batches that leave without waiting for answered callers after such a
/// wait ran out with fewer than a quarter of them back: traffic whose
/// callers do not come straight back pays for one wait in this many
/// batches, not for every one.
pub(crate) const REGROUP_SKIP_AFTER_TIMEOUT: u32 = 8;

/// How large batches may grow and how many may be committing at once.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    /// Most items per batch.
    pub items: usize,
    /// A batch stops growing once its items' sizes reach this (or the next
    /// item would take it over); a single larger item still goes (alone).
    pub bytes: usize,
    /// Batches committing at once.
    pub in_flight: usize,
    /// How long a batch that is not full may wait in all — for the batches
    /// committing to finish, then for answered callers to send again —
    /// taking what arrives meanwhile, before it leaves (beside the batches
    /// still committing). Commits take milliseconds; one stuck far longer
    /// (a deposed leader's unanswered proposal) must not hold every later
    /// batch back.
    pub wait_max: Duration,
}

impl Limits {
    /// Batches of at most `items` items and `bytes` bytes, up to four full
    /// ones committing at once (one being appended and synced while the
    /// others replicate), and a batch that is not full waiting at most
    /// 100 ms — a few times a commit's latency under load — for the ones
    /// committing.
    pub(crate) fn new(items: usize, bytes: usize) -> Self {
        Self { items, bytes, in_flight: 4, wait_max: Duration::from_millis(100) }
    }
}

/// Takes items from `rx` and hands them to `commit` in batches until the
/// channel closes or `shutdown` turns true. Each `commit` runs in its own
/// task and holds one of `limits.in_flight` slots until it finishes.
pub(crate) async fn run<T, F, Fut>(
    rx: mpsc::Receiver<T>,
    limits: Limits,
    size: impl Fn(&T) -> usize,
    shutdown: watch::Receiver<bool>,
    commit: F,
) where
    T: Send + 'static,
    F: Fn(Vec<T>) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    run_shared(rx, limits, Shared::new(&limits), size, shutdown, commit).await;
}

/// What the loop shares with callers that commit a lone item themselves
/// (see [`Shared::try_alone`]): its slots and the batch answered last.
#[derive(Clone)]
pub(crate) struct Shared {
    slots: Arc<Semaphore>,
    in_flight: usize,
    answered: LastAnswered,
}

impl Shared {
    pub(crate) fn new(limits: &Limits) -> Self {
        let in_flight = limits.in_flight.max(1);
        Self { slots: Arc::new(Semaphore::new(in_flight)), in_flight, answered: LastAnswered::default() }
    }

    /// Lets a caller commit one item itself, without the handoffs to the
    /// loop and back, in a case where the loop too would send that item
    /// alone at once: nothing is queued (`queue_empty`) or committing, and
    /// the batch answered last held fewer than [`REGROUP_MIN_ITEMS`] (after
    /// a larger one, however long ago, items go through the loop, which
    /// knows whether to wait for its callers). The returned guard
    /// holds one slot, as a batch of one would: items arriving meanwhile
    /// queue and leave after it (a full batch, or one whose wait ran out,
    /// beside it). Dropping the guard early (the caller gave up waiting)
    /// frees the slot while the item may still be committing.
    pub(crate) fn try_alone(&self, queue_empty: bool) -> Option<Committing> {
        if !queue_empty {
            return None;
        }
        // Every slot free: nothing is committing. A batch records its
        // answer before it frees its slot, so this reads the latest.
        let mut permits = self.slots.clone().try_acquire_many_owned(u32::try_from(self.in_flight).ok()?).ok()?;
        if self.answered.get().is_some_and(|last| last.items >= REGROUP_MIN_ITEMS) {
            return None;
        }
        drop(permits.split(self.in_flight - 1));
        Some(Committing::new(permits, 1, &self.answered))
    }
}

/// A slot held by a committing batch (or a caller committing one item
/// itself, see [`Shared::try_alone`]); dropping it records the batch as
/// answered, then frees the slot, so whoever takes the slot next reads
/// that answer.
pub(crate) struct Committing {
    _permit: OwnedSemaphorePermit,
    items: usize,
    started: Instant,
    answered: LastAnswered,
}

impl Committing {
    fn new(permit: OwnedSemaphorePermit, items: usize, answered: &LastAnswered) -> Self {
        Self { _permit: permit, items, started: Instant::now(), answered: answered.clone() }
    }
}

impl Drop for Committing {
    fn drop(&mut self) {
        // Runs before the fields drop: the answer is in before the slot is free.
        self.answered.record(self.items, self.started);
    }
}

/// The batch answered last, as the loop, its commits and lone writers
/// share it.
#[derive(Clone, Default)]
struct LastAnswered(Arc<Mutex<Option<Answered>>>);

impl LastAnswered {
    fn get(&self) -> Option<Answered> {
        *self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A batch of `items` that began to commit at `started` is answered now.
    fn record(&self, items: usize, started: Instant) {
        let at = Instant::now();
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = Some(Answered { at, items, took: at - started });
    }
}

/// Closes the slots when the loop ends, however it ends.
struct CloseOnDrop(Arc<Semaphore>);

impl Drop for CloseOnDrop {
    fn drop(&mut self) {
        self.0.close();
    }
}

/// [`run`] with slots shared with callers that may commit alone.
pub(crate) async fn run_shared<T, F, Fut>(
    mut rx: mpsc::Receiver<T>,
    limits: Limits,
    shared: Shared,
    size: impl Fn(&T) -> usize,
    mut shutdown: watch::Receiver<bool>,
    commit: F,
) where
    T: Send + 'static,
    F: Fn(Vec<T>) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let Shared { slots, in_flight, answered } = shared;
    // Once the loop is gone, nobody goes alone either.
    let _close = CloseOnDrop(slots.clone());
    // Batches left to cut without regrouping, after a regroup ran out.
    let mut skip_regroups = 0;
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
        let permit = tokio::select! {
            permit = slots.clone().acquire_owned() => match permit { Ok(p) => p, Err(_) => return },
            _ = shutdown.wait_for(|stop| *stop) => return,
        };
        // However it waits, a batch that is not full leaves `wait_max` after
        // this at the latest.
        let cut_by = Instant::now() + limits.wait_max;
        let mut batch = Batch::new(first, &size);
        carried = batch.fill(&mut rx, &limits, &size);
        if carried.is_none() && !batch.is_full(&limits) && in_flight > 1 {
            // Not full: wait until nothing else is committing (all the
            // other slots free at once), growing meanwhile; leave early
            // when full or after `wait_max`. Only the own slot is kept.
            let others = slots.clone().acquire_many_owned(u32::try_from(in_flight - 1).unwrap_or(u32::MAX));
            let deadline = tokio::time::sleep_until(cut_by);
            tokio::pin!(others, deadline);
            loop {
                tokio::select! {
                    _ = &mut others => {
                        carried = batch.fill(&mut rx, &limits, &size);
                        break;
                    }
                    item = rx.recv() => match item {
                        Some(item) => {
                            carried = batch.add(item, &limits, &size);
                            if carried.is_some() || batch.is_full(&limits) {
                                break;
                            }
                        }
                        // Closed: this batch goes, and the loop ends after.
                        None => break,
                    },
                    _ = &mut deadline => break,
                    _ = shutdown.wait_for(|stop| *stop) => return,
                }
            }
        }
        match answered.get() {
            _ if carried.is_some() || batch.is_full(&limits) => {}
            _ if skip_regroups > 0 => skip_regroups -= 1,
            Some(last) if last.items >= REGROUP_MIN_ITEMS => {
                let until = cut_by.min(last.at + last.took);
                tokio::select! {
                    regrouped = batch.regroup(last.items * 3 / 4, until, &mut rx, &limits, &size) => {
                        match regrouped {
                            Regrouped::Joined => {}
                            Regrouped::RanOut => skip_regroups = REGROUP_SKIP_AFTER_TIMEOUT,
                            Regrouped::Overfilled(item) => carried = Some(item),
                        }
                    }
                    _ = shutdown.wait_for(|stop| *stop) => return,
                }
            }
            _ => {}
        }
        let slot = Committing::new(permit, batch.items.len(), &answered);
        let committing = commit(batch.items);
        tokio::spawn(async move {
            committing.await;
            drop(slot);
        });
    }
}

/// The batch answered last: its callers may be about to send again.
#[derive(Debug, Clone, Copy)]
struct Answered {
    at: Instant,
    items: usize,
    /// How long it took to commit.
    took: Duration,
}

/// How a regrouping batch stopped waiting.
enum Regrouped<T> {
    /// As many items joined as it waited for, it filled up, the channel
    /// closed, or the wait ran out with at least a quarter of them joined.
    Joined,
    /// The wait ran out with fewer than a quarter of them joined.
    RanOut,
    /// This item would have overfilled it.
    Overfilled(T),
}

/// A batch being cut.
struct Batch<T> {
    items: Vec<T>,
    bytes: usize,
}

impl<T> Batch<T> {
    fn new(first: T, size: &impl Fn(&T) -> usize) -> Self {
        let bytes = size(&first);
        Self { items: vec![first], bytes }
    }

    fn is_full(&self, limits: &Limits) -> bool {
        self.items.len() >= limits.items || self.bytes >= limits.bytes
    }

    /// Adds `item`, or returns it if it would take the batch over its
    /// byte limit.
    fn add(&mut self, item: T, limits: &Limits, size: &impl Fn(&T) -> usize) -> Option<T> {
        let item_bytes = size(&item);
        if self.bytes + item_bytes > limits.bytes {
            return Some(item);
        }
        self.bytes += item_bytes;
        self.items.push(item);
        None
    }

    /// Waits until `until` for `more` items to join (or the batch to fill).
    /// Callers coming back more slowly than the wait (a quarter in time)
    /// still make it worth the next one; fewer than that mean they are not
    /// coming back at once.
    async fn regroup(
        &mut self,
        more: usize,
        until: Instant,
        rx: &mut mpsc::Receiver<T>,
        limits: &Limits,
        size: &impl Fn(&T) -> usize,
    ) -> Regrouped<T> {
        let had = self.items.len();
        let want = had + more;
        let deadline = tokio::time::sleep_until(until);
        tokio::pin!(deadline);
        while self.items.len() < want && !self.is_full(limits) {
            tokio::select! {
                item = rx.recv() => match item {
                    Some(item) => {
                        if let Some(item) = self.add(item, limits, size) {
                            return Regrouped::Overfilled(item);
                        }
                    }
                    None => return Regrouped::Joined,
                },
                _ = &mut deadline => {
                    return if self.items.len() - had < more / 4 { Regrouped::RanOut } else { Regrouped::Joined };
                }
            }
        }
        Regrouped::Joined
    }

    /// Adds the items already queued, up to the limits; returns an item
    /// that would have overfilled the batch.
    fn fill(&mut self, rx: &mut mpsc::Receiver<T>, limits: &Limits, size: &impl Fn(&T) -> usize) -> Option<T> {
        while !self.is_full(limits) {
            let Ok(item) = rx.try_recv() else { break };
            if let Some(item) = self.add(item, limits, size) {
                return Some(item);
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    /// Longer than any of these tests may take.
    const PATIENT: Duration = Duration::from_secs(3600);
    /// How long a test waits for what must happen.
    const DEADLINE: Duration = Duration::from_secs(10);

    fn limits(in_flight: usize, wait_max: Duration) -> Limits {
        Limits { items: 4, bytes: 100, in_flight, wait_max }
    }

    /// The loop over `usize` items (each its own size), whose commits
    /// record their batch and then hold their slots until the gate opens.
    struct Gated {
        seen: Arc<Mutex<Vec<Vec<usize>>>>,
        gate: watch::Sender<bool>,
        done: mpsc::UnboundedReceiver<()>,
        _stop: watch::Sender<bool>,
    }

    impl Gated {
        fn start(rx: mpsc::Receiver<usize>, limits: Limits) -> Self {
            Self::start_shared(rx, limits, Shared::new(&limits))
        }

        fn start_shared(rx: mpsc::Receiver<usize>, limits: Limits, shared: Shared) -> Self {
            let (stop, stop_rx) = watch::channel(false);
            let seen: Arc<Mutex<Vec<Vec<usize>>>> = Arc::default();
            let (gate, gate_rx) = watch::channel(false);
            let (done_tx, done) = mpsc::unbounded_channel();
            let recorded = seen.clone();
            tokio::spawn(run_shared(
                rx,
                limits,
                shared,
                |item: &usize| *item,
                stop_rx,
                move |batch| {
                    recorded.lock().unwrap().push(batch.clone());
                    let mut gate = gate_rx.clone();
                    let done_tx = done_tx.clone();
                    async move {
                        let _ = gate.wait_for(|open| *open).await;
                        let _ = done_tx.send(());
                    }
                },
            ));
            Self { seen, gate, done, _stop: stop }
        }

        fn seen(&self) -> Vec<Vec<usize>> {
            self.seen.lock().unwrap().clone()
        }

        /// Yields until `count` batches have left.
        async fn wait_for_batches(&self, count: usize) {
            let left = async {
                while self.seen.lock().unwrap().len() < count {
                    tokio::task::yield_now().await;
                }
            };
            tokio::time::timeout(DEADLINE, left).await.unwrap_or_else(|_| panic!("{count} batches: {:?}", self.seen()));
        }

        /// Waits until `count` batches have left, letting (virtual) time
        /// pass meanwhile.
        async fn wait_for_batches_in_time(&self, count: usize) {
            let left = async {
                while self.seen.lock().unwrap().len() < count {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            };
            tokio::time::timeout(DEADLINE, left).await.unwrap_or_else(|_| panic!("{count} batches: {:?}", self.seen()));
        }

        /// Yields long enough for the loop to send anything it could: the
        /// single-threaded test runtime runs it whenever this task yields.
        async fn settle(&self) {
            for _ in 0..100 {
                tokio::task::yield_now().await;
            }
        }

        /// Sends `committing` (one batch, which leaves and holds a slot),
        /// then `next`, which must not leave until the first finishes.
        async fn waits_beside(&mut self, tx: &mpsc::Sender<usize>, committing: &[usize], next: usize, why: &str) {
            let before = self.seen().len();
            for item in committing {
                tx.send(*item).await.unwrap();
            }
            self.wait_for_batches(before + 1).await;
            tx.send(next).await.unwrap();
            self.settle().await;
            assert_eq!(self.seen().len(), before + 1, "{why}");
            self.release(2).await;
        }

        /// Opens the gate and waits until `count` commits have finished,
        /// then closes it again.
        async fn release(&mut self, count: usize) {
            self.gate.send_replace(true);
            for _ in 0..count {
                tokio::time::timeout(DEADLINE, self.done.recv()).await.expect("commits finish").unwrap();
            }
            self.gate.send_replace(false);
        }
    }

    /// Runs the loop with one slot held by a commit that waits on a gate,
    /// so items sent meanwhile must pile up and leave as one batch.
    #[tokio::test]
    async fn items_queued_behind_a_busy_slot_leave_together_within_limits() {
        let (tx, rx) = mpsc::channel::<usize>(1024);
        let mut gated = Gated::start(rx, limits(1, PATIENT));
        tx.send(1).await.unwrap();
        // The first item leaves alone; the gate keeps its slot busy.
        gated.wait_for_batches(1).await;
        // The item cap (4) cuts the first run of tens; 95 would take the
        // next batch over 100 bytes, so it opens its own, and so does 20.
        for item in [10, 10, 10, 10, 10, 95, 20] {
            tx.send(item).await.unwrap();
        }
        gated.release(5).await;
        assert_eq!(gated.seen(), vec![vec![1], vec![10, 10, 10, 10], vec![10], vec![95], vec![20]]);
    }

    /// Two slots: full batches commit side by side; a batch that is not
    /// full waits until nothing is committing, though a slot is free.
    #[tokio::test]
    async fn only_full_batches_commit_side_by_side() {
        let (tx, rx) = mpsc::channel::<usize>(1024);
        // Nine items queued before the loop starts: two full batches and
        // one more item.
        for _ in 0..9 {
            tx.send(10).await.unwrap();
        }
        let mut gated = Gated::start(rx, limits(2, PATIENT));
        gated.wait_for_batches(2).await;
        gated.settle().await;
        assert_eq!(gated.seen().len(), 2, "no slot is free for the third batch");
        gated.release(3).await;

        // A full batch commits; 7 alone is not full: it waits, though the
        // second slot is free.
        gated.waits_beside(&tx, &[10; 4], 7, "a half-full batch left beside a full one").await;
        // The same beside a batch that is not full either.
        gated.waits_beside(&tx, &[5], 3, "a half-full batch left beside another").await;
        assert_eq!(gated.seen(), vec![vec![10; 4], vec![10; 4], vec![10], vec![10; 4], vec![7], vec![5], vec![3]]);
    }

    /// Waits until no batch holds a slot (its answer is recorded first).
    async fn all_slots_free(shared: &Shared) {
        let free = async {
            while shared.slots.available_permits() < shared.in_flight {
                tokio::task::yield_now().await;
            }
        };
        tokio::time::timeout(DEADLINE, free).await.expect("the answered batch frees its slot");
    }

    /// A caller may commit one item itself only where the loop would send
    /// it alone at once: nothing queued, nothing committing, and no batch
    /// large enough to regroup after just answered. It holds one slot, as
    /// a batch of one would: an item queued behind it waits, a full batch
    /// leaves beside it. Once the loop has stopped nobody goes alone.
    #[tokio::test]
    async fn a_lone_item_goes_alone_only_where_the_loop_would_send_it_alone() {
        let (tx, rx) = mpsc::channel::<usize>(1024);
        let limits = Limits { items: 64, bytes: 10_000, in_flight: 2, wait_max: PATIENT };
        let shared = Shared::new(&limits);
        let mut gated = Gated::start_shared(rx, limits, shared.clone());
        assert!(shared.try_alone(false).is_none(), "something is queued");
        let alone = shared.try_alone(true).expect("nothing queued or committing");
        assert!(shared.try_alone(true).is_none(), "one goes alone at a time");
        tx.send(1).await.unwrap();
        gated.settle().await;
        assert!(gated.seen().is_empty(), "an item queued behind the lone commit waits for it");
        for _ in 1..64 {
            tx.send(1).await.unwrap();
        }
        gated.wait_for_batches(1).await;
        assert_eq!(gated.seen()[0].len(), 64, "a full batch leaves beside the lone commit");
        assert!(shared.try_alone(true).is_none(), "a batch is committing");
        drop(alone);
        gated.release(1).await;
        all_slots_free(&shared).await;
        assert!(shared.try_alone(true).is_none(), "callers of a large batch regroup in the loop");

        // A batch of one answered: the next lone item may go alone again.
        tx.send(1).await.unwrap();
        gated.wait_for_batches(2).await;
        gated.release(1).await;
        all_slots_free(&shared).await;
        drop(shared.try_alone(true).expect("a batch of one was answered"));

        drop(tx);
        tokio::time::timeout(DEADLINE, async {
            while !shared.slots.is_closed() {
                tokio::task::yield_now().await;
            }
        })
        .await
        .expect("the loop ends when its channel closes");
        assert!(shared.try_alone(true).is_none(), "the loop has stopped");
    }

    /// Limits under which batches of up to 64 one-byte items regroup.
    fn roomy() -> Limits {
        Limits { items: 64, bytes: 10_000, in_flight: 1, wait_max: PATIENT }
    }

    /// Sends `items` items, which leave as one batch (nothing waits them
    /// out), lets that batch commit for a (virtual) second while `queued`
    /// more items queue behind it, then answers it.
    async fn answer_after_a_second(tx: &mpsc::Sender<usize>, gated: &mut Gated, items: usize, queued: usize) {
        let before = gated.seen().len();
        for _ in 0..items {
            tx.send(1).await.unwrap();
        }
        gated.wait_for_batches(before + 1).await;
        tokio::time::sleep(Duration::from_secs(1)).await;
        for _ in 0..queued {
            tx.send(1).await.unwrap();
        }
        gated.release(1).await;
    }

    /// A lone item leaves, commits and is answered: a batch of one, too
    /// small to regroup after, so the next items leave as they come.
    async fn lone_item_answered(tx: &mpsc::Sender<usize>, gated: &mut Gated) {
        tx.send(1).await.unwrap();
        gated.wait_for_batches(1).await;
        gated.release(1).await;
    }

    /// Runs the loop until a batch of ten commits for a (virtual) second
    /// and two more items queue behind it, then answers the ten.
    async fn ten_answered_two_queued(tx: &mpsc::Sender<usize>, gated: &mut Gated) {
        lone_item_answered(tx, gated).await;
        answer_after_a_second(tx, gated, 10, 2).await;
        assert_eq!(gated.seen()[1], vec![1; 10]);
    }

    /// How long after the ten were answered the two queued items left,
    /// alone, when none of the ten came back.
    async fn two_queued_leave_after(limits: Limits) -> Duration {
        let (tx, rx) = mpsc::channel::<usize>(1024);
        let mut gated = Gated::start(rx, limits);
        ten_answered_two_queued(&tx, &mut gated).await;
        let answered = tokio::time::Instant::now();
        gated.wait_for_batches_in_time(3).await;
        assert_eq!(gated.seen()[2], vec![1, 1]);
        let waited = answered.elapsed();
        gated.release(1).await;
        waited
    }

    /// Callers answered together and sending again join the callers that
    /// queued meanwhile: the batch after a batch of ten waits for three
    /// quarters as many to join it.
    #[tokio::test(start_paused = true)]
    async fn a_batch_after_a_large_answered_one_waits_for_its_callers() {
        let (tx, rx) = mpsc::channel::<usize>(1024);
        let mut gated = Gated::start(rx, roomy());
        ten_answered_two_queued(&tx, &mut gated).await;
        gated.settle().await;
        assert_eq!(gated.seen().len(), 2, "two items wait for the ten answered callers");
        for _ in 0..7 {
            tx.send(1).await.unwrap();
        }
        // Virtual time stands still while this task only yields: the batch
        // must leave on the items alone.
        gated.settle().await;
        assert_eq!(gated.seen().len(), 3, "2 queued + 7 of the 10 answered (three quarters) leave");
        assert_eq!(gated.seen()[2], vec![1; 9]);
        gated.release(1).await;
    }

    /// However long the answered batch took, a batch waits at most
    /// `wait_max` in all.
    #[tokio::test(start_paused = true)]
    async fn a_regrouping_batch_waits_at_most_the_wait_max() {
        let waited = two_queued_leave_after(Limits { wait_max: Duration::from_millis(300), ..roomy() }).await;
        assert!(waited >= Duration::from_millis(250), "left after {waited:?}");
        assert!(waited < Duration::from_millis(900), "waited {waited:?}, past the wait_max");
    }

    /// After a batch of fewer than `REGROUP_MIN_ITEMS`, and for
    /// `REGROUP_SKIP_AFTER_TIMEOUT` batches after a wait that ran out, a
    /// batch leaves without waiting.
    #[tokio::test(start_paused = true)]
    async fn batches_after_small_ones_or_a_wait_that_ran_out_do_not_wait() {
        let (tx, rx) = mpsc::channel::<usize>(1024);
        let mut gated = Gated::start(rx, roomy());
        // Seven answered after a (virtual) second: the next one leaves at once.
        lone_item_answered(&tx, &mut gated).await;
        answer_after_a_second(&tx, &mut gated, 7, 1).await;
        gated.settle().await;
        assert_eq!(gated.seen().len(), 3, "no wait after a batch of seven");

        // Ten answered, and nobody comes back: the wait runs out.
        gated.release(1).await;
        answer_after_a_second(&tx, &mut gated, 10, 1).await;
        gated.wait_for_batches_in_time(5).await;
        // Ten again: this time the next batch leaves at once.
        gated.release(1).await;
        answer_after_a_second(&tx, &mut gated, 10, 1).await;
        gated.settle().await;
        assert_eq!(gated.seen().len(), 7, "no wait right after one ran out");
        gated.release(1).await;
    }

    /// The wait lasts at most as long as the answered batch took to commit.
    #[tokio::test(start_paused = true)]
    async fn a_regrouping_batch_leaves_when_its_wait_runs_out() {
        let waited = two_queued_leave_after(roomy()).await;
        assert!(waited >= Duration::from_millis(900), "left after {waited:?}, before its wait ran out");
        assert!(waited < Duration::from_secs(2), "waited {waited:?}, longer than the answered commit took");
    }

    /// A batch that is not full stops waiting for a stuck commit after
    /// `wait_max` and leaves beside it.
    #[tokio::test]
    async fn a_stuck_commit_holds_the_next_batch_only_for_the_wait_max() {
        let (tx, rx) = mpsc::channel::<usize>(1024);
        let mut gated = Gated::start(rx, limits(2, Duration::from_millis(20)));
        tx.send(5).await.unwrap();
        gated.wait_for_batches(1).await;
        // The gate stays shut: the batch of 5 never finishes meanwhile.
        tx.send(7).await.unwrap();
        gated.wait_for_batches(2).await;
        assert_eq!(gated.seen(), vec![vec![5], vec![7]]);
        gated.release(2).await;
    }
}
