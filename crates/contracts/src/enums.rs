//! Audit enums with their exact stored (lower-case) string forms, strict
//! parsing, terminality and the allowed-transition tables.
//!
//! Every function that classifies a variant is an exhaustive `match` without a
//! wildcard arm, so adding a variant fails the build at each place that has to
//! decide what the new variant means.

use std::fmt;
use std::str::FromStr;

use crate::errors::ContractError;

macro_rules! audit_enum {
    (
        $(#[$meta:meta])*
        $name:ident { $( $(#[$vmeta:meta])* $variant:ident => $text:literal ),+ $(,)? }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum $name {
            $( $(#[$vmeta])* $variant ),+
        }

        impl $name {
            /// Every variant, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The exact string stored in the Landscape.
            pub const fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text),+
                }
            }
        }

        impl FromStr for $name {
            type Err = ContractError;

            /// Strict parsing: anything but an exact stored form is an error.
            fn from_str(text: &str) -> Result<Self, Self::Err> {
                match text {
                    $($text => Ok($name::$variant),)+
                    other => Err(ContractError::UnknownEnumValue {
                        kind: stringify!($name),
                        value: other.to_owned(),
                    }),
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.serialize_str(self.as_str())
            }
        }

        impl<'de> serde::Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
                text.parse().map_err(serde::de::Error::custom)
            }
        }
    };
}

audit_enum! {
    /// Lifecycle of a run.
    RunStatus {
        Running => "running",
        Completed => "completed",
        Failed => "failed",
        Interrupted => "interrupted",
    }
}

audit_enum! {
    /// What kind of DAG node a plugin instance is.
    NodeType {
        Source => "source",
        Transform => "transform",
        Gate => "gate",
        Aggregation => "aggregation",
        Coalesce => "coalesce",
        Sink => "sink",
    }
}

audit_enum! {
    /// How reproducible a node's work is; mandatory for every node.
    Determinism {
        Deterministic => "deterministic",
        Seeded => "seeded",
        IoRead => "io_read",
        IoWrite => "io_write",
        ExternalCall => "external_call",
        NonDeterministic => "non_deterministic",
    }
}

audit_enum! {
    /// Status of one visit of a token to a node.
    NodeStateStatus {
        Open => "open",
        /// Work submitted, result not yet available (async batch).
        Pending => "pending",
        Completed => "completed",
        Failed => "failed",
    }
}

audit_enum! {
    /// Lifecycle of an aggregation batch.
    BatchStatus {
        Draft => "draft",
        Executing => "executing",
        Completed => "completed",
        Failed => "failed",
    }
}

audit_enum! {
    /// What made an aggregation flush.
    TriggerType {
        Count => "count",
        Timeout => "timeout",
        Condition => "condition",
        EndOfSource => "end_of_source",
    }
}

audit_enum! {
    /// In-memory routing decision kind (not persisted).
    RoutingKind {
        Continue => "continue",
        Route => "route",
        ForkToPaths => "fork_to_paths",
    }
}

audit_enum! {
    /// How a token travels along an edge.
    RoutingMode {
        Move => "move",
        Copy => "copy",
        /// Failure path: quarantine, transform error, failsink.
        Divert => "divert",
    }
}

audit_enum! {
    /// The outcome recorded for a token. Only `Buffered` is non-terminal.
    RowOutcome {
        Completed => "completed",
        Routed => "routed",
        Forked => "forked",
        Failed => "failed",
        Quarantined => "quarantined",
        Diverted => "diverted",
        ConsumedInBatch => "consumed_in_batch",
        Coalesced => "coalesced",
        Expanded => "expanded",
        Buffered => "buffered",
    }
}

audit_enum! {
    /// Kind of an external call.
    CallType {
        Llm => "llm",
        Http => "http",
        HttpRedirect => "http_redirect",
        Sql => "sql",
        Vector => "vector",
        Filesystem => "filesystem",
        Process => "process",
    }
}

audit_enum! {
    /// Whether an external call succeeded.
    CallStatus {
        Success => "success",
        Error => "error",
    }
}

audit_enum! {
    /// How a verified call's live response compared with the recorded one.
    Verification {
        Match => "match",
        Mismatch => "mismatch",
        /// The source run has no call with this request.
        MissingRecording => "missing_recording",
        /// The recorded response was purged: only its hash was compared.
        MissingPayload => "missing_payload",
    }
}

audit_enum! {
    /// Status of a run's audit export (separate from the run status).
    ExportStatus {
        Pending => "pending",
        Completed => "completed",
        Failed => "failed",
    }
}

audit_enum! {
    /// How far a run can be reproduced from its audit trail.
    ReproducibilityGrade {
        FullReproducible => "full_reproducible",
        ReplayReproducible => "replay_reproducible",
        AttributableOnly => "attributable_only",
    }
}

audit_enum! {
    /// Aggregation output mode.
    OutputMode {
        /// N rows in, the same N tokens continue.
        Passthrough => "passthrough",
        /// New tokens, members end consumed_in_batch.
        Transform => "transform",
    }
}

audit_enum! {
    /// How a run treats external calls (not persisted).
    RunMode {
        Live => "live",
        Replay => "replay",
        Verify => "verify",
    }
}

audit_enum! {
    /// Kind of a source/sink I/O operation.
    OperationType {
        SourceLoad => "source_load",
        SinkWrite => "sink_write",
    }
}

audit_enum! {
    /// Lifecycle of an operation.
    OperationStatus {
        Open => "open",
        Completed => "completed",
        Failed => "failed",
        Pending => "pending",
    }
}

audit_enum! {
    /// Where a secret was resolved from.
    SecretSource {
        Keyvault => "keyvault",
        Env => "env",
        User => "user",
    }
}

impl RunStatus {
    pub const fn is_terminal(self) -> bool {
        match self {
            RunStatus::Running => false,
            RunStatus::Completed | RunStatus::Failed | RunStatus::Interrupted => true,
        }
    }

    /// Runs go `running → completed | failed | interrupted`; a failed or
    /// interrupted run may go back to `running` when it is resumed. A completed
    /// run never changes.
    pub const fn can_transition_to(self, next: RunStatus) -> bool {
        use RunStatus::{Completed, Failed, Interrupted, Running};
        match self {
            Running => match next {
                Running => false,
                Completed | Failed | Interrupted => true,
            },
            Failed | Interrupted => match next {
                Running => true,
                Completed | Failed | Interrupted => false,
            },
            Completed => match next {
                Running | Completed | Failed | Interrupted => false,
            },
        }
    }
}

impl NodeStateStatus {
    pub const fn is_terminal(self) -> bool {
        match self {
            NodeStateStatus::Open | NodeStateStatus::Pending => false,
            NodeStateStatus::Completed | NodeStateStatus::Failed => true,
        }
    }

    /// `open → pending | completed | failed`, `pending → completed | failed`.
    pub const fn can_transition_to(self, next: NodeStateStatus) -> bool {
        use NodeStateStatus::{Completed, Failed, Open, Pending};
        match self {
            Open => match next {
                Open => false,
                Pending | Completed | Failed => true,
            },
            Pending => match next {
                Open | Pending => false,
                Completed | Failed => true,
            },
            Completed | Failed => match next {
                Open | Pending | Completed | Failed => false,
            },
        }
    }
}

impl BatchStatus {
    pub const fn is_terminal(self) -> bool {
        match self {
            BatchStatus::Draft | BatchStatus::Executing => false,
            BatchStatus::Completed | BatchStatus::Failed => true,
        }
    }

    /// `draft → executing → completed | failed`, and `draft → failed`.
    pub const fn can_transition_to(self, next: BatchStatus) -> bool {
        use BatchStatus::{Completed, Draft, Executing, Failed};
        match self {
            Draft => match next {
                Executing | Failed => true,
                Draft | Completed => false,
            },
            Executing => match next {
                Completed | Failed => true,
                Draft | Executing => false,
            },
            Completed | Failed => match next {
                Draft | Executing | Completed | Failed => false,
            },
        }
    }
}

impl OperationStatus {
    pub const fn is_terminal(self) -> bool {
        match self {
            OperationStatus::Open => false,
            OperationStatus::Completed | OperationStatus::Failed | OperationStatus::Pending => true,
        }
    }

    /// Operations only leave `open`, and only once.
    pub const fn can_transition_to(self, next: OperationStatus) -> bool {
        use OperationStatus::{Completed, Failed, Open, Pending};
        match self {
            Open => match next {
                Open => false,
                Completed | Failed | Pending => true,
            },
            Completed | Failed | Pending => match next {
                Open | Completed | Failed | Pending => false,
            },
        }
    }
}

impl ExportStatus {
    pub const fn is_terminal(self) -> bool {
        match self {
            ExportStatus::Pending => false,
            ExportStatus::Completed | ExportStatus::Failed => true,
        }
    }
}

impl RowOutcome {
    /// Only `buffered` is non-terminal: every token ends with exactly one
    /// terminal outcome.
    pub const fn is_terminal(self) -> bool {
        match self {
            RowOutcome::Buffered => false,
            RowOutcome::Completed
            | RowOutcome::Routed
            | RowOutcome::Forked
            | RowOutcome::Failed
            | RowOutcome::Quarantined
            | RowOutcome::Diverted
            | RowOutcome::ConsumedInBatch
            | RowOutcome::Coalesced
            | RowOutcome::Expanded => true,
        }
    }

    /// Outcomes that assert a delivery to a sink; they are recorded only after
    /// the sink write is durable.
    pub const fn asserts_delivery(self) -> bool {
        match self {
            RowOutcome::Completed | RowOutcome::Routed | RowOutcome::Diverted => true,
            RowOutcome::Forked
            | RowOutcome::Failed
            | RowOutcome::Quarantined
            | RowOutcome::ConsumedInBatch
            | RowOutcome::Coalesced
            | RowOutcome::Expanded
            | RowOutcome::Buffered => false,
        }
    }
}

impl Determinism {
    /// Whether a node with this determinism makes a run only replay-reproducible.
    pub const fn limits_reproducibility(self) -> bool {
        match self {
            Determinism::Deterministic | Determinism::Seeded => false,
            Determinism::IoRead | Determinism::IoWrite | Determinism::ExternalCall | Determinism::NonDeterministic => true,
        }
    }
}

#[cfg(test)]
mod tests;
