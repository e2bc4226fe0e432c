//! Every metric deploywatch exports, declared in one place (`registry.rs`), and the only code that
//! writes them: one file per area, each a set of intent-named methods (`record_probe`,
//! `git_refs`, `webhook_request`, …) that take typed readings. Other modules never touch a metric
//! family; the fields are private to this folder, so the compiler keeps it that way.
//!
//! Architecture Invariant: no label carries an unbounded value. Deployment ids, commit SHAs and URLs
//! appear only in `_info` series, one per app or ref, replaced (not accumulated) when they change.

mod checks;
mod deployments;
mod family;
mod git;
mod probes;
mod process;
mod registry;
mod tasks;
mod verification;

pub use deployments::Exporter;
pub use git::RefKey;
pub use registry::{Metrics, PREFIX};
pub use verification::ComponentReading;
