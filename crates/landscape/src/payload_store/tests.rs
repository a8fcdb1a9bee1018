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
