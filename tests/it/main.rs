//! End-to-end tests of the `elspeth` binary.

mod cli;
mod validate;
