//! The shared test harness, re-exported by `helpers` so every module's `use crate::helpers::*`
//! sees it: event-driven waits (`until`), typed calls on `TestApp`, a simulator builder, and one
//! way to spawn the deploywatch binary.

pub mod api;
pub mod poll;
pub mod process;
pub mod sim;

pub use api::Claim;
pub use poll::{seen, until};
pub use process::{Deploywatch, Spawned};
pub use sim::{SimBuilder, SimHandle};
