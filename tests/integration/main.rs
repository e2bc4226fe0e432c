//! The integration suite: one binary, real PostgreSQL and MariaDB, real HTTP on loopback, the
//! DigitalOcean simulator, real git repositories, real Prometheus and Alertmanager.

mod access;
mod demo;
mod deploy_spec;
mod digitalocean;
mod do_readings;
mod exposition;
mod fixer;
mod git;
mod harness;
mod helpers;
mod limits;
mod migrations;
mod openapi;
mod probes;
mod process;
mod replicas;
mod rollback;
mod sim_boundary;
mod stack;
mod startup_order;
mod trust;
