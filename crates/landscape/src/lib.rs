//! Landscape
