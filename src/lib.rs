//! deploywatch: watches DigitalOcean App Platform deployments, the apps' health endpoints and git
//! refs; exports Prometheus metrics and OpenTelemetry traces; turns Alertmanager alerts into fix,
//! rollback and announcement tasks that agents claim. See `docs/ARCHITECTURE.md` for the map.

pub mod app;
pub mod checks;
pub mod cli;
pub mod config;
pub mod domain;
pub mod http;
pub mod probes;
pub mod server;
pub mod sources;
pub mod store;
pub mod tasks;
pub mod telemetry;
pub mod terminal;
pub mod workers;
