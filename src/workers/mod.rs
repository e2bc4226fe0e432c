//! Background work beside the sources: lifecycle events into tasks, the lease sweeper and task
//! gauges, the notifier outbox, guarded automatic rollbacks, and the leases that make a loop run
//! on one replica only.

pub mod deploys;
pub mod lease;
pub mod lifecycle;
pub mod outbox;
pub mod rollback;
pub mod sweeper;
pub mod verification;
