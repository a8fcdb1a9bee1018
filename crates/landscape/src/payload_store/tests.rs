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
