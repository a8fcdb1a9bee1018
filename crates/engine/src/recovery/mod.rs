//! Recovery: the checkpoint written at every commit point (`checkpoint`) and
//! `resume`, which continues an interrupted or crashed run from its last
//! checkpoint so that its outputs end up as an uninterrupted run's would,
//! each row once.

pub(crate) mod checkpoint;
pub(crate) mod resume;
