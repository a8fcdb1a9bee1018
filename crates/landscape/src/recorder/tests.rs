//! Unit tests of the recorder internals.
