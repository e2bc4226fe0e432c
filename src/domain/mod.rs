//! The pure core of deploywatch: apps and deployments as deploywatch sees them, phases and outcomes,
//! failure classification, probe and git readings. Types and pure functions only: nothing here
//! imports tokio, sqlx, reqwest, hyper or prometheus (a test reads these sources to keep it so).
//! Children import each other by their own paths, never through this file's re-exports.

pub mod classify;
pub mod deployment;
pub mod dora;
pub mod git;
pub mod label;
pub mod phase;
pub mod probe;
pub mod stats;
pub mod verification;
pub mod window;

pub use classify::FailedStep;
pub use deployment::{
    AppView, DeploymentView, FailureView, LifecycleEvent, LifecycleKind, Snapshot, StepView,
};
pub use label::{LabelValue, prefix, validate_identifier};
pub use phase::{Outcome, Phase};
