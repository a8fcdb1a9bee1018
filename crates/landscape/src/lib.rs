//! Landscape: the audit database that is the legal record of every run.
//!
//! This crate owns the schema (embedded migrations for SQLite and PostgreSQL,
//! the diesel `schema.rs`), the [`Recorder`] that writes audit records with
//! guarded lifecycles, the strict (Tier 1) loaders that read them back, and the
//! content-addressed payload store.
//!
//! Architecture invariant: only this crate knows SQL. Every single-row write
//! checks that it affected exactly one row; every terminal transition is a
//! conditional update that refuses to leave a terminal state.
#![forbid(unsafe_code)]

pub mod analysis;
pub mod connection;
pub mod error;
pub mod export;
pub mod introspect;
pub mod lineage;
mod loaders;
mod models;
pub mod payload_store;
pub mod recorder;
pub mod schema;

pub use connection::{open, open_existing, DatabaseUrl, DbConnection};
pub use error::{LandscapeError, Result};
pub use payload_store::PayloadStore;
pub use recorder::Recorder;
