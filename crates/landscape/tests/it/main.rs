//! Integration tests of the Landscape, on SQLite and on a real PostgreSQL server.

mod analysis;
mod export;
mod fixtures;
mod integrity;
mod invariants;
mod lineage;
mod recorder;
mod schema;
