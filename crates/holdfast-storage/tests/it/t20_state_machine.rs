//! Applying commands, reading them back, snapshots between two stores, and
//! durability across reopening the database.

use holdfast_storage::{Snapshot, StateMachineStore, Store, StoreOptions};
use holdfast_types::record::{applied_revision, revision_of};
use holdfast_types::{
    AuditEvent, AuditOp, AuditOutcome, BatchedWrite, Command, CommandResult, Entry, Permission, RegistryName, Scope,
    WriteMeta,
};
use holdfast_types::{CommittedLeaderId, LogId};
use openraft::storage::RaftStateMachine;
use openraft::{EntryPayload, RaftSnapshotBuilder};

fn reg() -> RegistryName {
    RegistryName::parse("population").expect("valid name")
}

fn meta(request_id: &str) -> WriteMeta {
    WriteMeta { request_id: request_id.into(), actor: "clerk".into(), reason: "test".into(), commit_time_ms: 1 }
}

fn entry(index: u64, command: Command) -> Entry {
    Entry {
        log_id: LogId::new(CommittedLeaderId { term: 1, node_id: 1 }, index),
        payload: EntryPayload::Normal(command),
    }
}

/// The revision of the lone write in the entry at `index`.
fn rev(index: u64) -> u64 {
    revision_of(index, 0)
}

fn put(record: &str, value: &str, if_revision: Option<u64>, request_id: &str) -> Command {
    Command::Put {
        registry: reg(),
        record: record.as_bytes().to_vec(),
        value: value.as_bytes().to_vec(),
        if_revision,
        meta: meta(request_id),
    }
}

fn delete(record: &str, request_id: &str) -> Command {
    Command::Delete { registry: reg(), record: record.as_bytes().to_vec(), if_revision: None, meta: meta(request_id) }
}

/// A fresh state machine in `dir` that remembers `count` request ids.
async fn remembering(dir: &std::path::Path, count: u64) -> StateMachineStore {
    let store = Store::open(dir, &StoreOptions::small()).expect("store opens");
    store.remember_requests(count).state_machine().await.expect("state machine opens")
}

/// Builds a snapshot of `sm` and installs it into a new store under `dir`.
async fn moved_by_snapshot(sm: &mut StateMachineStore, dir: &std::path::Path) -> StateMachineStore {
    let snapshot = sm.get_snapshot_builder().await.build_snapshot().await.expect("snapshot built");
    let other = Store::open(dir, &StoreOptions::small()).expect("store opens");
    let mut other_sm = other.state_machine().await.expect("state machine opens");
    install(&other, &mut other_sm, snapshot).await;
    other_sm
}

/// Sends `snapshot` to `store` as a leader would: its file, copied into a
/// receiving file, then installed.
async fn install(store: &Store, sm: &mut StateMachineStore, snapshot: Snapshot) {
    let mut receiving = store.snapshot_receiving_file().await.expect("receiving file");
    let mut source = snapshot.snapshot.into_file().await.expect("snapshot file");
    tokio::io::copy(&mut source, &mut receiving).await.expect("snapshot copied");
    sm.install_snapshot(&snapshot.meta, receiving.into()).await.expect("snapshot installed");
}

/// A record's value is stored once, in its history version; `records`
/// holds where the latest one is. So a get, a scan and a conditional write
/// all see a reseal of the latest version, and a past version stays as it was.
#[tokio::test]
async fn latest_reads_follow_each_record_to_its_latest_version_in_history() {
    use sha2::{Digest, Sha256};

    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), &StoreOptions::small()).unwrap();
    let mut sm = store.state_machine().await.unwrap();
    let reseal = Command::Reseal {
        registry: reg(),
        record: b"a".to_vec(),
        revision: rev(2),
        value: b"v2-resealed".to_vec(),
        expected_sha256: Sha256::digest(b"v2").into(),
    };
    sm.apply_batch(vec![
        entry(1, put("a", "v1", None, "r1")),
        entry(2, put("a", "v2", None, "r2")),
        entry(3, put("b", "w1", None, "r3")),
    ])
    .await
    .unwrap();
    let results = sm.apply_batch(vec![entry(4, reseal)]).await.unwrap();
    assert_eq!(results, vec![CommandResult::Written { revision: rev(2) }]);

    let view = sm.read_view();
    let (latest, _) = view.get(reg(), b"a".to_vec(), None).await.unwrap();
    let latest = latest.expect("a is live");
    assert_eq!(latest.value.as_deref(), Some(&b"v2-resealed"[..]));
    assert_eq!((latest.revision, latest.create_revision), (rev(2), rev(1)));
    let (past, _) = view.get(reg(), b"a".to_vec(), Some(rev(1))).await.unwrap();
    assert_eq!(past.unwrap().value.as_deref(), Some(&b"v1"[..]));
    let page = view.scan(reg(), None, 10).await.unwrap();
    let scanned: Vec<_> = page.entries.iter().map(|(r, v)| (r.as_slice(), v.value.as_deref(), v.revision)).collect();
    assert_eq!(scanned, vec![(&b"a"[..], Some(&b"v2-resealed"[..]), rev(2)), (&b"b"[..], Some(&b"w1"[..]), rev(3))]);

    // The head carries the revision a condition checks and the creation
    // revision a later version keeps.
    let results = sm
        .apply_batch(vec![entry(5, put("a", "v3", Some(rev(1)), "r5")), entry(6, put("a", "v3", Some(rev(2)), "r6"))])
        .await
        .unwrap();
    assert_eq!(results, vec![CommandResult::Conflict { current: rev(2) }, CommandResult::Written { revision: rev(6) }]);
    let (latest, _) = view.get(reg(), b"a".to_vec(), None).await.unwrap();
    let latest = latest.expect("a is live");
    assert_eq!((latest.value.as_deref(), latest.create_revision), (Some(&b"v3"[..]), rev(1)));
}

#[tokio::test]
async fn apply_reads_history_conditions_and_dedup() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), &StoreOptions::small()).unwrap();
    let mut sm = store.state_machine().await.unwrap();
    let results = sm
        .apply_batch(vec![
            entry(1, put("a", "v1", Some(0), "r1")),
            entry(2, put("a", "v2", Some(rev(1)), "r2")),
            entry(3, put("a", "v3", Some(rev(1)), "r3")),
            entry(4, put("a", "v1-again", None, "r1")),
            entry(5, Command::Delete { registry: reg(), record: b"a".to_vec(), if_revision: None, meta: meta("r5") }),
            entry(6, Command::Delete { registry: reg(), record: b"a".to_vec(), if_revision: None, meta: meta("r6") }),
        ])
        .await
        .unwrap();
    assert_eq!(results[0], CommandResult::Written { revision: rev(1) });
    assert_eq!(results[1], CommandResult::Written { revision: rev(2) });
    assert_eq!(results[2], CommandResult::Conflict { current: rev(2) });
    assert_eq!(results[3], CommandResult::Duplicate(Box::new(CommandResult::Written { revision: rev(1) })));
    assert_eq!(results[4], CommandResult::Written { revision: rev(5) });
    assert_eq!(results[5], CommandResult::NotFound);

    let view = sm.read_view();
    let (latest, applied) = view.get(reg(), b"a".to_vec(), None).await.unwrap();
    assert!(latest.is_none(), "deleted record is not live");
    assert_eq!(applied, applied_revision(6));
    assert!(applied >= rev(6) && applied < rev(7));
    let (past, _) = view.get(reg(), b"a".to_vec(), Some(rev(4))).await.unwrap();
    assert_eq!(past.unwrap().value.as_deref(), Some(&b"v2"[..]));
    let page = view.history(reg(), b"a".to_vec(), 0, 2).await.unwrap();
    assert_eq!(page.versions.iter().map(|v| v.revision).collect::<Vec<_>>(), vec![rev(1), rev(2)]);
    assert_eq!(page.next_after, Some(rev(2)));
    let page = view.history(reg(), b"a".to_vec(), rev(2), 10).await.unwrap();
    assert_eq!(page.versions.len(), 1);
    assert!(page.versions[0].is_tombstone());
    assert_eq!(page.next_after, None);

    // Every applied write left its audit event in the same batch; the
    // duplicate retry, which changed nothing, left none.
    let trail = view.audit_trail(reg(), b"a".to_vec(), None, 100).await.unwrap();
    let seen: Vec<_> = trail.events.iter().map(|e| (e.op, e.outcome, e.revision)).collect();
    assert_eq!(
        seen,
        vec![
            (AuditOp::Put, AuditOutcome::Ok, rev(1)),
            (AuditOp::Put, AuditOutcome::Ok, rev(2)),
            (AuditOp::Put, AuditOutcome::Conflict, rev(2)),
            (AuditOp::Delete, AuditOutcome::Ok, rev(5)),
            (AuditOp::Delete, AuditOutcome::NotFound, 0),
        ]
    );
    assert!(trail.events.iter().all(|e| e.identity == "clerk" && e.node == 1));
}

#[tokio::test]
async fn state_survives_reopen_and_snapshot_moves_it() {
    let dir = tempfile::tempdir().unwrap();
    let digest_before;
    {
        let store = Store::open(dir.path(), &StoreOptions::small()).unwrap();
        let mut sm = store.state_machine().await.unwrap();
        let entries: Vec<Entry> =
            (1..=50).map(|i| entry(i, put(&format!("rec-{i}"), "x", None, &format!("q{i}")))).collect();
        sm.apply_batch(entries).await.unwrap();
        digest_before = sm.read_view().digest().await.unwrap();
    }
    let store = Store::open(dir.path(), &StoreOptions::small()).unwrap();
    let mut sm = store.state_machine().await.unwrap();
    assert_eq!(sm.read_view().digest().await.unwrap(), digest_before);
    let page = sm.read_view().scan(reg(), None, 20).await.unwrap();
    assert_eq!(page.entries.len(), 20);
    let rest = sm.read_view().scan(reg(), page.next_after.clone(), 1000).await.unwrap();
    assert_eq!(rest.entries.len(), 30);

    let other_dir = tempfile::tempdir().unwrap();
    let mut other_sm = moved_by_snapshot(&mut sm, other_dir.path()).await;
    assert_eq!(other_sm.read_view().digest().await.unwrap(), digest_before);
    // Dedup state travels with the snapshot.
    let r = other_sm.apply_batch(vec![entry(51, put("rec-1", "y", None, "q1"))]).await.unwrap();
    assert!(matches!(r[0], CommandResult::Duplicate(_)));
}

/// A built snapshot is the state as it was then, whatever is applied after
/// it, and it is still the current snapshot after a restart.
#[tokio::test]
async fn a_snapshot_is_the_state_it_was_built_from() {
    let dir = tempfile::tempdir().unwrap();
    let built;
    let digest_then;
    {
        let store = Store::open(dir.path(), &StoreOptions::small()).unwrap();
        let mut sm = store.state_machine().await.unwrap();
        sm.apply_batch(vec![entry(1, put("a", "1", None, "q1")), entry(2, put("b", "1", None, "q2"))]).await.unwrap();
        digest_then = sm.read_view().digest().await.unwrap();
        built = sm.get_snapshot_builder().await.build_snapshot().await.unwrap().meta;
        assert_eq!(built.last_log_id.map(|l| l.index), Some(2));
        sm.apply_batch(vec![entry(3, put("a", "2", None, "q3")), entry(4, delete("b", "q4"))]).await.unwrap();
    }
    let store = Store::open(dir.path(), &StoreOptions::small()).unwrap();
    let mut sm = store.state_machine().await.unwrap();
    let current = sm.get_current_snapshot().await.unwrap().expect("the snapshot survives a restart");
    assert_eq!(current.meta, built);
    let other_dir = tempfile::tempdir().unwrap();
    let other = Store::open(other_dir.path(), &StoreOptions::small()).unwrap();
    let mut other_sm = other.state_machine().await.unwrap();
    install(&other, &mut other_sm, current).await;
    assert_eq!(other_sm.read_view().digest().await.unwrap(), digest_then, "what was applied after it stays out");
    assert_ne!(sm.read_view().digest().await.unwrap(), digest_then);
}

fn audit(record: &str, identity: &str, op: AuditOp) -> AuditEvent {
    AuditEvent {
        time_ms: 7,
        identity: identity.into(),
        registry: reg(),
        record: record.as_bytes().to_vec(),
        op,
        revision: 1,
        outcome: AuditOutcome::Ok,
        node: 1,
    }
}

#[tokio::test]
async fn grants_and_audit_trail_apply_publish_and_travel_in_snapshots() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), &StoreOptions::small()).unwrap();
    let mut sm = store.state_machine().await.unwrap();
    let view = sm.read_view();
    let mut access = view.access();
    let scope = Scope::Registry(reg());
    let results = sm
        .apply_batch(vec![
            entry(
                1,
                Command::Grant { identity: "svc".into(), scope: scope.clone(), permissions: vec![Permission::Read] },
            ),
            entry(
                2,
                Command::Grant { identity: "svc".into(), scope: scope.clone(), permissions: vec![Permission::Write] },
            ),
            entry(
                3,
                Command::Revoke { identity: "svc".into(), scope: scope.clone(), permissions: vec![Permission::Read] },
            ),
            entry(
                4,
                Command::Revoke { identity: "svc".into(), scope: scope.clone(), permissions: vec![Permission::Read] },
            ),
            entry(
                5,
                Command::Grant { identity: "gone".into(), scope: Scope::All, permissions: vec![Permission::Read] },
            ),
            entry(
                6,
                Command::Revoke { identity: "gone".into(), scope: Scope::All, permissions: vec![Permission::Read] },
            ),
            entry(
                7,
                Command::Audit {
                    events: vec![
                        audit("a", "svc", AuditOp::Get),
                        audit("b", "svc", AuditOp::Get),
                        audit("a", "x", AuditOp::Put),
                    ],
                },
            ),
            entry(8, Command::Audit { events: vec![audit("a", "y", AuditOp::Scan)] }),
        ])
        .await
        .unwrap();
    assert_eq!(results[0], CommandResult::Written { revision: rev(1) });
    assert_eq!(results[3], CommandResult::NotFound, "revoking what is not held changes nothing");
    assert!(access.has_changed().unwrap(), "policy changes are published");
    let policy = access.borrow_and_update().clone();
    assert!(policy.allows("svc", Some(&reg()), Permission::Write));
    assert!(!policy.allows("svc", Some(&reg()), Permission::Read));
    assert_eq!(policy.grants.len(), 1, "an emptied grant is removed: {policy:?}");

    let trail = view.audit_trail(reg(), b"a".to_vec(), None, 2).await.unwrap();
    let who: Vec<_> = trail.events.iter().map(|e| e.identity.as_str()).collect();
    assert_eq!(who, ["svc", "x"], "oldest first, only record a");
    let rest = view.audit_trail(reg(), b"a".to_vec(), trail.next_after.clone(), 10).await.unwrap();
    assert_eq!(rest.events.len(), 1);
    assert_eq!(rest.events[0].identity, "y");
    assert!(rest.next_after.is_none());

    let digest = view.digest().await.unwrap();
    let other_dir = tempfile::tempdir().unwrap();
    let other_sm = moved_by_snapshot(&mut sm, other_dir.path()).await;
    let other_view = other_sm.read_view();
    assert_eq!(other_view.digest().await.unwrap(), digest);
    assert_eq!(*other_view.access().borrow(), policy);
    assert_eq!(other_view.audit_trail(reg(), b"a".to_vec(), None, 10).await.unwrap().events.len(), 3);

    // And they survive a reopen.
    drop((sm, view, store));
    let store = Store::open(dir.path(), &StoreOptions::small()).unwrap();
    let sm = store.state_machine().await.unwrap();
    assert_eq!(*sm.read_view().access().borrow(), policy);
    assert_eq!(sm.read_view().digest().await.unwrap(), digest);
}

#[tokio::test]
async fn a_batch_applies_its_writes_in_order_each_at_its_own_revision() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), &StoreOptions::small()).unwrap();
    let mut sm = store.state_machine().await.unwrap();
    let commands = vec![
        put("a", "v1", Some(0), "b1"),
        // Sees the write just before it in the same batch.
        put("a", "v2", Some(revision_of(3, 0)), "b2"),
        put("a", "stale", Some(revision_of(3, 0)), "b3"),
        // A retry inside the batch answers the first result.
        put("a", "v1-again", None, "b1"),
        delete("a", "b5"),
        delete("never-written", "b6"),
        put("b", "w", None, "b7"),
    ];
    let writes = commands.into_iter().map(|c| BatchedWrite::try_from(c).expect("a client write")).collect();
    assert!(BatchedWrite::try_from(Command::RetireKey { key_id: 9 }).is_err(), "only client writes ride in a batch");
    let batch = Command::Batch { writes };
    let results = sm.apply_batch(vec![entry(2, put("z", "before", None, "z1")), entry(3, batch)]).await.unwrap();
    assert_eq!(results[0], CommandResult::Written { revision: revision_of(2, 0) });
    let CommandResult::Batch(results) = &results[1] else { panic!("a batch answers a batch: {:?}", results[1]) };
    assert_eq!(
        results,
        &vec![
            CommandResult::Written { revision: revision_of(3, 0) },
            CommandResult::Written { revision: revision_of(3, 1) },
            CommandResult::Conflict { current: revision_of(3, 1) },
            CommandResult::Duplicate(Box::new(CommandResult::Written { revision: revision_of(3, 0) })),
            CommandResult::Written { revision: revision_of(3, 4) },
            CommandResult::NotFound,
            CommandResult::Written { revision: revision_of(3, 6) },
        ]
    );
    assert!(revision_of(2, 0) < revision_of(3, 0) && revision_of(3, 6) <= applied_revision(3));

    let view = sm.read_view();
    let page = view.history(reg(), b"a".to_vec(), 0, 10).await.unwrap();
    let revisions: Vec<_> = page.versions.iter().map(|v| (v.revision, v.is_tombstone())).collect();
    assert_eq!(revisions, vec![(revision_of(3, 0), false), (revision_of(3, 1), false), (revision_of(3, 4), true)]);
    let (b, applied) = view.get(reg(), b"b".to_vec(), None).await.unwrap();
    assert_eq!(b.map(|v| v.revision), Some(revision_of(3, 6)));
    assert_eq!(applied, applied_revision(3));
    let (a_at, _) = view.get(reg(), b"a".to_vec(), Some(revision_of(3, 2))).await.unwrap();
    assert_eq!(a_at.and_then(|v| v.value), Some(b"v2".to_vec()), "reads at a revision inside a batch");
    // Each write of the batch left its own audit event.
    let trail = view.audit_trail(reg(), b"a".to_vec(), None, 100).await.unwrap();
    let seen: Vec<_> = trail.events.iter().map(|e| (e.op, e.outcome, e.revision)).collect();
    assert_eq!(
        seen,
        vec![
            (AuditOp::Put, AuditOutcome::Ok, revision_of(3, 0)),
            (AuditOp::Put, AuditOutcome::Ok, revision_of(3, 1)),
            (AuditOp::Put, AuditOutcome::Conflict, revision_of(3, 1)),
            (AuditOp::Delete, AuditOutcome::Ok, revision_of(3, 4)),
        ]
    );
}

#[tokio::test]
async fn the_oldest_request_ids_are_forgotten_beyond_the_limit_whatever_the_batching() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), &StoreOptions::small()).unwrap().remember_requests(5);
    let mut sm = store.state_machine().await.unwrap();
    let writes = (0..4).map(|i| BatchedWrite::try_from(put(&format!("r{i}"), "x", None, &format!("q{i}"))).unwrap());
    let batch = Command::Batch { writes: writes.collect() };
    sm.apply_batch(vec![entry(1, batch), entry(2, put("r4", "x", None, "q4")), entry(3, put("r5", "x", None, "q5"))])
        .await
        .unwrap();
    sm.apply_batch(vec![entry(4, put("r6", "x", None, "q6"))]).await.unwrap();
    // Seven ids were remembered, five are kept: q0 and q1 are forgotten, so
    // a retry of q0 writes again (and, remembered anew, pushes q2 out); q3
    // is still known.
    let results = sm
        .apply_batch(vec![entry(5, put("r0", "again", None, "q0")), entry(6, put("r3", "again", None, "q3"))])
        .await
        .unwrap();
    assert_eq!(results[0], CommandResult::Written { revision: rev(5) });
    assert!(matches!(results[1], CommandResult::Duplicate(_)), "{:?}", results[1]);
    let r = sm.apply_batch(vec![entry(7, put("r2", "again", None, "q2"))]).await.unwrap();
    assert_eq!(r[0], CommandResult::Written { revision: rev(7) }, "q2 was forgotten when q0 came back");
}

/// openraft hands replicas the same entries in different apply calls; what
/// is remembered, and so what a retry does, must not depend on that.
#[tokio::test]
async fn forgetting_request_ids_does_not_depend_on_how_entries_are_grouped() {
    // A retry of the oldest id right after the id that pushes it out.
    let entries = || -> Vec<Entry> {
        let mut entries: Vec<Entry> =
            (1..=3).map(|i| entry(i, put(&format!("r{i}"), "x", None, &format!("q{i}")))).collect();
        entries.push(entry(4, put("r4", "x", None, "q4")));
        entries.push(entry(5, put("r1", "retry", None, "q1")));
        entries
    };
    let together_dir = tempfile::tempdir().unwrap();
    let mut together = remembering(together_dir.path(), 3).await;
    let together_results = together.apply_batch(entries()).await.unwrap();
    let apart_dir = tempfile::tempdir().unwrap();
    let mut apart = remembering(apart_dir.path(), 3).await;
    let mut apart_results = Vec::new();
    for e in entries() {
        apart_results.extend(apart.apply_batch(vec![e]).await.unwrap());
    }
    assert_eq!(together_results, apart_results);
    assert_eq!(together_results[4], CommandResult::Written { revision: rev(5) }, "q1 was forgotten at entry 4");
    assert_eq!(together.read_view().digest().await.unwrap(), apart.read_view().digest().await.unwrap());
}

/// `entry`, proposed by leader `node`.
fn entry_by(node: u64, index: u64, command: Command) -> Entry {
    Entry {
        log_id: LogId::new(CommittedLeaderId { term: 1, node_id: node }, index),
        payload: EntryPayload::Normal(command),
    }
}

#[tokio::test]
async fn a_trail_merges_writes_from_history_with_stored_events_in_order_on_every_page() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), &StoreOptions::small()).unwrap();
    let mut sm = store.state_machine().await.unwrap();
    let batch =
        [put("a", "v2", None, "q2"), put("b", "w", None, "q3"), put("a", "v3", Some(rev(1)), "q4"), delete("a", "q5")]
            .into_iter()
            .map(|c| BatchedWrite::try_from(c).expect("a client write"))
            .collect();
    sm.apply_batch(vec![
        entry_by(1, 1, put("a", "v1", Some(0), "q1")),
        entry_by(1, 2, Command::Audit { events: vec![audit("a", "svc", AuditOp::Get)] }),
        entry_by(2, 3, Command::Batch { writes: batch }),
        entry_by(
            2,
            4,
            Command::Audit {
                events: vec![
                    audit("a", "svc", AuditOp::Get),
                    audit("b", "svc", AuditOp::Get),
                    audit("a", "y", AuditOp::Scan),
                ],
            },
        ),
        entry_by(3, 5, delete("a", "q6")),
        entry_by(3, 6, put("a", "v4", None, "q7")),
    ])
    .await
    .unwrap();

    let view = sm.read_view();
    let whole = view.audit_trail(reg(), b"a".to_vec(), None, 100).await.unwrap();
    assert!(whole.next_after.is_none());
    let seen: Vec<_> =
        whole.events.iter().map(|e| (e.op, e.outcome, e.revision, e.identity.as_str(), e.node, e.time_ms)).collect();
    assert_eq!(
        seen,
        vec![
            // Written: from history, with the proposing leader.
            (AuditOp::Put, AuditOutcome::Ok, rev(1), "clerk", 1, 1),
            (AuditOp::Get, AuditOutcome::Ok, 1, "svc", 1, 7),
            (AuditOp::Put, AuditOutcome::Ok, revision_of(3, 0), "clerk", 2, 1),
            // Refused: stored in `audit`, between the batch's own writes.
            (AuditOp::Put, AuditOutcome::Conflict, revision_of(3, 0), "clerk", 2, 1),
            (AuditOp::Delete, AuditOutcome::Ok, revision_of(3, 3), "clerk", 2, 1),
            (AuditOp::Get, AuditOutcome::Ok, 1, "svc", 1, 7),
            (AuditOp::Scan, AuditOutcome::Ok, 1, "y", 1, 7),
            (AuditOp::Delete, AuditOutcome::NotFound, 0, "clerk", 3, 1),
            (AuditOp::Put, AuditOutcome::Ok, rev(6), "clerk", 3, 1),
        ]
    );
    assert!(whole.events.iter().all(|e| e.record == b"a" && e.registry == reg()));

    // Every page size walks the same trail, without gaps or repeats.
    for limit in 1..=10 {
        let (mut walked, mut after) = (Vec::new(), None);
        loop {
            let page = view.audit_trail(reg(), b"a".to_vec(), after, limit).await.unwrap();
            assert!(page.events.len() <= limit as usize);
            walked.extend(page.events);
            match page.next_after {
                Some(token) => after = Some(token),
                None => break,
            }
        }
        assert_eq!(walked, whole.events, "pages of {limit}");
    }
    let bad = view.audit_trail(reg(), b"a".to_vec(), Some(vec![1, 2, 3]), 10).await;
    assert!(bad.is_err(), "a malformed page token is refused");
}

#[tokio::test]
async fn whole_family_reads_see_audit_events_and_request_ids_still_in_the_memtable() {
    // `audit` keeps each record's memtable events in a list of their own
    // (`requests` each id's): reading a whole family (digest, snapshot,
    // clearing it for an install) must still see every one of them.
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), &StoreOptions::small()).unwrap();
    let mut sm = store.state_machine().await.unwrap();
    let events = |records: &[&str]| Command::Audit {
        events: records.iter().map(|record| audit(record, "svc", AuditOp::Get)).collect(),
    };
    sm.apply_batch(vec![entry(1, events(&["a", "b"]))]).await.unwrap();
    let view = sm.read_view();
    let (_, before) = view.digest().await.unwrap();
    sm.apply_batch(vec![entry(2, events(&["c"])), entry(3, put("w", "v", None, "q-source"))]).await.unwrap();
    let (_, after) = view.digest().await.unwrap();
    assert_ne!(before, after, "the digest covers events in the memtable");

    // A store with events of its own takes this one's snapshot: its own
    // events are gone, this one's are all there.
    let other_dir = tempfile::tempdir().unwrap();
    let other = Store::open(other_dir.path(), &StoreOptions::small()).unwrap();
    let mut other_sm = other.state_machine().await.unwrap();
    other_sm.apply_batch(vec![entry(1, events(&["z", "a"])), entry(2, put("z", "v", None, "q-other"))]).await.unwrap();
    let snapshot = sm.get_snapshot_builder().await.build_snapshot().await.unwrap();
    install(&other, &mut other_sm, snapshot).await;
    let other_view = other_sm.read_view();
    assert_eq!(other_view.digest().await.unwrap().1, after);
    assert!(other_view.audit_trail(reg(), b"z".to_vec(), None, 10).await.unwrap().events.is_empty());
    for record in ["a", "b", "c"] {
        let trail = other_view.audit_trail(reg(), record.as_bytes().to_vec(), None, 10).await.unwrap();
        assert_eq!(trail.events.len(), 1, "record {record}");
    }
    // Request ids (also hashed in the memtable) travel and are replaced
    // alike.
    let retried = other_sm
        .apply_batch(vec![entry(4, put("z", "v", None, "q-other")), entry(5, put("w", "v", None, "q-source"))])
        .await
        .unwrap();
    assert_eq!(retried[0], CommandResult::Written { revision: rev(4) }, "the install forgot q-other");
    assert!(matches!(retried[1], CommandResult::Duplicate(_)), "q-source came with the snapshot: {:?}", retried[1]);
}
