//! The integration tests of `engine`, in one binary: one link instead of one per file.

#[path = "../common/mod.rs"]
mod common;

mod confidence;
mod eval;
mod examples;
mod experiments;
mod policy;
mod recorder;
mod replay;
mod retention;
mod review_webhooks;
mod routing;
