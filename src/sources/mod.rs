//! Sources: the things deploywatch watches. Each keeps a snapshot that `/metrics`, `status` and the
//! webhook's enrichment read without waiting on the network.
//!
//! Architecture Invariant: sources never write tasks. They publish lifecycle events; the fixer turns
//! those into announcements and e2e-test tasks.

pub mod digitalocean;
pub mod git;
