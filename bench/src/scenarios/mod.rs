//! One module per figure of BENCHMARKS.md.

pub mod backlog;
pub mod isolation;
pub mod latency;
pub mod rate;
