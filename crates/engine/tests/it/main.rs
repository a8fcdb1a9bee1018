//! The engine in process, with test plugins: panicking plugins, a batch
//! transform that answers pending, and an in-memory sink; the audit trail is
//! inspected with SQL on an in-memory Landscape.

mod plugins;
mod runs;
