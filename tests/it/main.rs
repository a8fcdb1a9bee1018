//! End-to-end tests of the `elspeth` binary.

mod cli;
mod run;
mod validate;
