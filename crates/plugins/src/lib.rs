//! Built-in plugins: sources, transforms, batch transforms and sinks.
//!
//! Architecture invariant: plugins depend on `contracts` only and never see a
//! database handle; what they want recorded they return to the engine.
#![forbid(unsafe_code)]
