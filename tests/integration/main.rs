//! The integration suite: one binary, real PostgreSQL and MariaDB, real HTTP on loopback, the
//! DigitalOcean simulator, real git repositories, real Prometheus and Alertmanager.

mod digitalocean;
mod exposition;
mod fixer;
mod git;
mod helpers;
mod migrations;
mod probes;
mod process;
mod rollback;
mod stack;
