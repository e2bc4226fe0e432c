//! The integration suite: one binary, real PostgreSQL and MariaDB, real HTTP on loopback, the
//! DigitalOcean simulator, real git repositories, real Prometheus and Alertmanager.

mod access;
mod demo;
mod digitalocean;
mod do_readings;
mod fixer;
mod git;
mod helpers;
mod limits;
mod migrations;
mod probes;
mod process;
mod rollback;
mod stack;
mod startup_order;
