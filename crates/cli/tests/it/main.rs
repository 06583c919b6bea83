//! The integration tests of `cli`, in one binary: one link instead of one per file.

#[path = "../common/mod.rs"]
mod common;

mod architecture;
mod cli;
mod dashboard;
mod eval;
mod governance;
mod misuse;
mod outcomes;
mod policy;
mod serve;
mod templates;
