//! The DigitalOcean App Platform source: polls apps and their deployments within the token's
//! request budget, keeps a snapshot, counts every deployment's outcome once, emits one trace per
//! deployment and publishes lifecycle events.

pub mod client;
pub mod endpoints;
pub mod errors;
pub mod poller;
pub mod runtime;
pub mod schedule;
pub mod traces;
pub mod types;
pub mod view;
