//! Payload store: content addressing, integrity on read, deferred writes, purge.

use super::*;

#[test]
fn stored_bytes_come_back_under_their_hash() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = PayloadStore::new(dir.path());
    let key = store.store(b"{\"a\":1}").expect("store");
    assert_eq!(key, sha256_hex(b"{\"a\":1}"));
    assert_eq!(store.retrieve(&key).expect("retrieve"), b"{\"a\":1}");
    assert_eq!(store.store(b"{\"a\":1}").expect("idempotent"), key);
}

#[test]
fn a_tampered_blob_is_an_integrity_error() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = PayloadStore::new(dir.path());
    let key = store.store(b"original").expect("store");
    store.tamper(&key, b"tampered").expect("tamper");
    assert!(matches!(store.retrieve(&key), Err(PayloadStoreError::Integrity { .. })));
    assert!(matches!(store.store(b"original"), Err(PayloadStoreError::Integrity { .. })));
}

#[test]
fn deferred_blobs_are_durable_after_sync_and_visible_to_a_new_store() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = PayloadStore::new(dir.path());
    let key = store.store_deferred(b"later").expect("deferred");
    store.sync().expect("sync");
    drop(store);
    let reopened = PayloadStore::new(dir.path());
    assert_eq!(reopened.retrieve(&key).expect("retrieve"), b"later");
}

#[test]
fn deleted_blobs_are_not_found_and_keys_are_validated() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = PayloadStore::new(dir.path());
    let key = store.store(b"x").expect("store");
    assert!(store.delete(&key).expect("delete"));
    assert!(!store.delete(&key).expect("second delete"));
    assert!(matches!(store.retrieve(&key), Err(PayloadStoreError::NotFound(_))));
    assert!(matches!(store.retrieve("../etc/passwd"), Err(PayloadStoreError::InvalidKey(_))));
}

#[test]
fn deferred_blobs_fill_several_batches_and_are_readable_before_an_explicit_sync() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = PayloadStore::new(dir.path());
    let blobs: Vec<Vec<u8>> = (0..1000).map(|i| format!("{{\"row\":{i}}}").into_bytes()).collect();
    let keys: Vec<String> = blobs.iter().map(|b| store.store_deferred(b).expect("deferred")).collect();
    // A read commits what the writer thread holds, so it sees every blob.
    for (key, bytes) in keys.iter().zip(&blobs) {
        assert_eq!(key, &sha256_hex(bytes));
        assert_eq!(&store.retrieve(key).expect("retrieve"), bytes);
    }
}

#[test]
fn deferred_blobs_not_synced_are_gone_with_the_store() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = PayloadStore::new(dir.path());
    let kept = store.store_deferred(b"kept").expect("deferred");
    store.sync().expect("sync");
    let lost = store.store_deferred(b"lost").expect("deferred");
    drop(store);
    let reopened = PayloadStore::new(dir.path());
    assert!(reopened.exists(&kept).expect("exists"));
    assert!(!reopened.exists(&lost).expect("exists"));
}

#[test]
fn a_store_that_cannot_be_written_fails_the_sync_with_its_path() {
    let dir = tempfile::tempdir().expect("temp dir");
    // The store's file is a directory: the writer thread cannot open it.
    std::fs::create_dir_all(dir.path().join("payloads.sqlite")).expect("dir");
    let store = PayloadStore::new(dir.path());
    store.store_deferred(b"blob").expect("queued");
    let error = store.sync().expect_err("the write failed");
    assert!(matches!(&error, PayloadStoreError::Storage { path, .. } if path == dir.path()), "{error}");
    // Nothing is pending any more: the next sync has nothing to report.
    store.sync().expect("nothing left to commit");
}

/// A store that seals its tail every `seal_at` blobs and merges beyond `max_segments`.
fn small(base: &Path, seal_at: usize, max_segments: usize) -> PayloadStore {
    PayloadStore { limits: Limits { seal_at_blobs: seal_at, max_segments }, ..PayloadStore::new(base) }
}

/// Blobs in the tail, the number of sealed segments, blobs in `payloads`.
fn layout(base: &Path) -> (i64, usize, i64) {
    #[derive(diesel::QueryableByName)]
    struct Count {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        n: i64,
    }
    let mut connection = connect(base).expect("connect");
    let mut count = |sql: &str| -> i64 {
        let found: Vec<Count> = diesel::sql_query(sql).load(&mut connection).expect("count");
        found[0].n
    };
    let tail = count("SELECT count(*) AS n FROM payload_tail");
    let keyed = count("SELECT count(*) AS n FROM payloads");
    let segments = count("SELECT count(*) AS n FROM sqlite_master WHERE type = 'table' AND name GLOB 'payload_segment_*'");
    (tail, usize::try_from(segments).expect("count"), keyed)
}

fn row(i: usize) -> Vec<u8> {
    format!("{{\"row\":{i}}}").into_bytes()
}

#[test]
fn deferred_blobs_are_sealed_into_segments_and_read_from_each() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = small(dir.path(), 10, 100);
    let mut keys = Vec::new();
    for chunk in 0..10 {
        let size = if chunk < 9 { 10 } else { 5 };
        keys.extend((keys.len()..keys.len() + size).map(|i| store.store_deferred(&row(i)).expect("deferred")));
        // Each commit of 10 blobs is followed by a seal, before the next
        // commit's reply.
        store.sync().expect("sync");
    }
    assert_eq!(layout(dir.path()), (5, 9, 0));
    store.seal().expect("seal");
    assert_eq!(layout(dir.path()), (0, 10, 0));
    for (i, key) in keys.iter().enumerate() {
        assert_eq!(store.retrieve(key).expect("retrieve"), row(i));
    }
    let reopened = PayloadStore::new(dir.path());
    assert_eq!(reopened.retrieve(&keys[0]).expect("retrieve"), row(0));
}

/// Within one transaction: the writer commits whenever it catches up with
/// its queue, so only blobs sent in one batch are sure to share one.
#[test]
fn a_blob_deferred_many_times_in_one_transaction_is_appended_once() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = PayloadStore::new(dir.path());
    for _ in 0..super::writer::BATCH_BLOBS - 1 {
        store.store_deferred(b"{\"reason\":\"above threshold\"}").expect("deferred");
    }
    store.sync().expect("sync");
    assert_eq!(layout(dir.path()), (1, 0, 0));
}

#[test]
fn segments_beyond_the_limit_merge_into_the_keyed_table() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = small(dir.path(), 10, 3);
    let immediate = store.store(&row(7)).expect("store");
    let keys: Vec<String> = (0..60).map(|i| store.store_deferred(&row(i)).expect("deferred")).collect();
    store.seal().expect("seal");
    let (tail, segments, keyed) = layout(dir.path());
    assert_eq!(tail, 0);
    assert!(segments <= 3, "{segments} segments");
    // Row 7 was stored twice; the merge keeps one copy.
    assert!((1..=60).contains(&keyed), "{keyed} keyed");
    assert_eq!(store.retrieve(&immediate).expect("retrieve"), row(7));
    for (i, key) in keys.iter().enumerate() {
        assert_eq!(store.retrieve(key).expect("retrieve"), row(i));
    }
}

#[test]
fn delete_and_tamper_reach_every_copy_of_a_key() {
    let dir = tempfile::tempdir().expect("temp dir");
    let first = PayloadStore::new(dir.path());
    let key = first.store(b"secret").expect("store");
    first.store_deferred(b"secret").expect("deferred");
    first.seal().expect("seal");
    let second = PayloadStore::new(dir.path());
    second.store_deferred(b"secret").expect("deferred");
    second.sync().expect("sync");
    // One copy in `payloads`, one in a segment, one in the tail.
    assert_eq!(layout(dir.path()), (1, 1, 1));
    second.tamper(&key, b"forged").expect("tamper");
    assert!(matches!(first.retrieve(&key), Err(PayloadStoreError::Integrity { .. })));
    assert!(first.delete(&key).expect("delete"));
    assert!(matches!(second.retrieve(&key), Err(PayloadStoreError::NotFound(_))));
    let (tail, _, keyed) = layout(dir.path());
    assert_eq!((tail, keyed), (0, 0));
}

#[test]
fn a_tail_left_unsealed_is_readable_and_sealed_by_the_next_store() {
    let dir = tempfile::tempdir().expect("temp dir");
    let crashed = PayloadStore::new(dir.path());
    let keys: Vec<String> = (0..20).map(|i| crashed.store_deferred(&row(i)).expect("deferred")).collect();
    crashed.sync().expect("sync");
    // The process ends before its run completes: nothing seals the tail.
    drop(crashed);
    assert_eq!(layout(dir.path()), (20, 0, 0));
    let next = PayloadStore::new(dir.path());
    assert_eq!(next.retrieve(&keys[19]).expect("read from the tail"), row(19));
    next.seal().expect("seal");
    assert_eq!(layout(dir.path()), (0, 1, 0));
    assert_eq!(next.retrieve(&keys[3]).expect("read from the segment"), row(3));
}

#[test]
fn a_seal_by_another_store_does_not_hide_the_writers_blobs() {
    let dir = tempfile::tempdir().expect("temp dir");
    let writing = PayloadStore::new(dir.path());
    let sealing = PayloadStore::new(dir.path());
    let before: Vec<String> = (0..10).map(|i| writing.store_deferred(&row(i)).expect("deferred")).collect();
    writing.sync().expect("sync");
    sealing.seal().expect("seal");
    let after: Vec<String> = (10..20).map(|i| writing.store_deferred(&row(i)).expect("deferred")).collect();
    // Row 3 again, in a new transaction: a second copy, in the tail.
    writing.store_deferred(&row(3)).expect("deferred");
    writing.sync().expect("sync");
    assert_eq!(layout(dir.path()), (11, 1, 0));
    for (i, key) in before.iter().chain(&after).enumerate() {
        assert_eq!(sealing.retrieve(key).expect("retrieve"), row(i));
        assert_eq!(writing.retrieve(key).expect("retrieve"), row(i));
    }
}

proptest::proptest! {
    /// Whatever the order of stores, deferred stores, commits, seals and
    /// deletes, by one or two stores on the same file, a read finds exactly
    /// the blobs stored and not deleted since.
    #[test]
    fn reads_agree_with_what_was_stored_and_deleted(
        ops in proptest::collection::vec((0u8..6, 0usize..12, proptest::bool::ANY), 1..80),
    ) {
        let dir = tempfile::tempdir().expect("temp dir");
        let stores = [small(dir.path(), 4, 3), small(dir.path(), 5, 2)];
        let mut present = std::collections::BTreeSet::new();
        for (op, blob, which) in ops {
            // The other store's units committed (as another process's would
            // before anything could refer to their blobs).
            stores[usize::from(!which)].sync().expect("sync");
            let store = &stores[usize::from(which)];
            match op {
                0 => { store.store(&row(blob)).expect("store"); present.insert(blob); }
                1 | 2 => { store.store_deferred(&row(blob)).expect("deferred"); present.insert(blob); }
                3 => store.sync().expect("sync"),
                4 => store.seal().expect("seal"),
                _ => {
                    let deleted = store.delete(&sha256_hex(&row(blob))).expect("delete");
                    proptest::prop_assert_eq!(deleted, present.remove(&blob));
                }
            }
        }
        stores[1].sync().expect("sync");
        for blob in 0..12 {
            proptest::prop_assert_eq!(stores[0].exists(&sha256_hex(&row(blob))).expect("exists"), present.contains(&blob));
        }
    }
}
