//! deploywatch: watches DigitalOcean App Platform deployments, the apps' health endpoints and git
//! refs; exports Prometheus metrics and OpenTelemetry traces; turns Alertmanager alerts into fix,
//! rollback and announcement tasks that agents claim. See `docs/ARCHITECTURE.md` for the map.

pub mod access;
pub mod app;
pub mod checks;
pub mod cli;
pub mod config;
pub mod demo;
pub mod domain;
pub mod exposition;
pub mod fixer;
pub mod http;
pub mod lease;
pub mod limits;
pub mod metrics;
pub mod page;
pub mod probes;
pub mod server;
pub mod sources;
pub mod status;
pub mod store;
pub mod tasks;
pub mod telemetry;
pub mod terminal;
pub mod watch;
pub mod webhook;
