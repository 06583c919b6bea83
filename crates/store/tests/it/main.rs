//! The integration tests of `store`, in one binary: one link instead of one per file.

#[path = "../common/mod.rs"]
mod common;

mod access;
mod drift;
mod evals;
mod experiments;
mod open;
mod retention;
mod reviews;
mod rollups;
mod store;
