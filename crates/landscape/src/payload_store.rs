//! Content-addressed payload store.
#[derive(Debug, thiserror::Error)]
pub enum PayloadStoreError {}
