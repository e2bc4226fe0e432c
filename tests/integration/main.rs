//! The integration suite: one binary, real PostgreSQL and MariaDB, real HTTP on loopback, the
//! DigitalOcean simulator, real git repositories, real Prometheus and Alertmanager.

mod demo;
mod deploy_spec;
mod digitalocean;
mod fixer;
mod git;
mod helpers;
mod migrations;
mod openapi;
mod probes;
mod process;
mod rollback;
mod stack;
