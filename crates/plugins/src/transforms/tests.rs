//! Transform tests.
