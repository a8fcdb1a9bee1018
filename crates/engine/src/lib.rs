//! Engine: settings model, DAG builder and validator, expression language,
//! row processor, executors and orchestrator.
//!
//! Architecture invariant: the engine writes audit rows only through the
//! `landscape` recorder API; it never issues SQL itself.
#![forbid(unsafe_code)]
pub mod dag;
pub mod expression;
pub mod ownership;
pub mod pipeline;
pub mod run;
pub mod settings;
