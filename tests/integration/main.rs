//! The integration suite: one binary, real PostgreSQL and MariaDB, real HTTP on loopback, the
//! DigitalOcean simulator, real git repositories, real Prometheus and Alertmanager.

// Test and benchmark code fails by panicking; that is how a failure is reported here.
#![allow(clippy::unwrap_used, clippy::expect_used)]
// The modules of this one test binary share their helpers through `pub`.
#![allow(unreachable_pub)]

mod access;
mod architecture;
mod demo;
mod deploy_queue;
mod deploy_spec;
mod digitalocean;
mod do_readings;
mod episodes;
mod exposition;
mod fixer;
mod git;
mod group_commit;
mod harness;
mod helpers;
mod hooks;
mod limits;
mod migrations;
mod openapi;
mod probes;
mod process;
mod replicas;
mod rollback;
mod runtime;
mod stack;
mod startup_order;
mod trust;
mod verification;
