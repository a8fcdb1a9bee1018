//! Engine: settings model, DAG builder and validator, expression language,
//! and the run: orchestrator, processor, executors, recovery.
//!
//! Module map (each opens with what it owns): `decisions` (pure trigger,
//! merge, retry and verify-diff decisions, importing no run module) ←
//! `runtime` (the shared run state and error type) ← `executors`
//! (transform, gate, aggregation, coalesce, sink, and the pool) ←
//! `processor` (the token work queue) ← `registration` ← `recovery`
//! (checkpoints, resume) ← `orchestrator` (the run loop).
//! `xtask tidy` enforces these edges and that engine modules import no circle.
//!
//! Architecture invariant: the engine writes audit rows only through the
//! `landscape` recorder API; it never issues SQL itself.
#![forbid(unsafe_code)]
pub mod dag;
pub(crate) mod decisions;
pub(crate) mod executors;
pub mod expression;
pub mod orchestrator;
pub mod ownership;
pub mod pipeline;
pub(crate) mod processor;
pub(crate) mod recovery;
pub(crate) mod registration;
pub mod runtime;
pub mod settings;

pub use decisions::diff::DiffOptions;
pub use orchestrator::{resume_pipeline, run_pipeline};
pub use runtime::{
    Clock, CrashPoint, EngineError, ManualClock, Progress, RunOptions, RunSummary, SystemClock, TestHooks, VerifyReport,
};
