//! The data path: the pure pipeline and, at the edge, device I/O.
pub mod drop;
pub mod pipeline;
