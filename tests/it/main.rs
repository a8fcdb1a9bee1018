//! End-to-end tests of the `elspeth` binary.

mod aggregation;
mod cli;
mod run;
mod validate;
