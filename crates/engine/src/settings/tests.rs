//! Settings tests (filled below).
