//! The rules of shopfloor as pure functions: workflow and config parsing and validation,
//! prompt templates, output contracts and version hashing. No I/O: callers hand in text.

pub mod access;
pub mod audit;
pub mod calendar;
mod canonical;
pub mod dataset;
mod diagnostic;
pub mod drift;
pub mod experiment;
#[doc(hidden)]
pub mod fuzzing;
pub mod lifecycle;
pub mod limits;
pub mod output;
pub mod pii;
pub mod policy_doc;
pub mod review;
pub mod scorers;
pub mod sequential;
pub mod spec;
pub mod stats;
pub mod template;
mod text_enum;
pub mod version;
pub mod webhook;

pub use canonical::canonical_json;
pub use diagnostic::{Diagnostic, LineIndex};
