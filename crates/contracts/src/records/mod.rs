//! Audit record types: one struct (or enum) per Landscape table.
//!
//! Fields are public so the exporter and the loaders destructure them
//! completely: a new column is a compile error in both places. Where a status
//! decides which columns are set, the record is an enum whose variants carry
//! exactly the fields that status requires.

mod batch;
mod call;
mod checkpoint;
mod error_tables;
mod graph;
mod node_state;
mod outcome;
mod run;
mod token;

pub use batch::{Batch, BatchMember, BatchOutput, BatchOutputType, BatchState, BatchTrigger};
pub use call::{Call, CallOrigin, CallParent, Operation, OperationState, PayloadRef};
pub use checkpoint::{Artifact, Checkpoint, SecretResolution};
pub use error_tables::{TransformError, ValidationError};
pub use graph::{Edge, Node};
pub use node_state::{NodeState, NodeStateCommon};
pub use outcome::{OutcomeDetail, TokenOutcome};
pub use run::{Run, RunExport, RunOwner, RunState};
pub use token::{RoutingEvent, Row, Token, TokenLineage, TokenParent};

#[cfg(test)]
mod tests;
