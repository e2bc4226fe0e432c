//! App Platform types, modelled on the public OpenAPI spec (`specification/resources/apps/`) plus the
//! fields godo knows that the spec lacks (`cause_details`, `timing`, `previous_deployment_id`).
//!
//! Parsing is tolerant: every field is optional or defaulted, unknown fields are ignored, an unknown
//! phase is `UNKNOWN`, and the zero time `0001-01-01T00:00:00Z` (with or without `Z`) means unset.

mod app;
mod deployment;
mod runtime;
mod time;
mod tolerant;

pub use app::*;
pub use deployment::*;
pub use runtime::*;
pub use time::{de_time, parse_time};
pub use tolerant::{parse_apps_page, parse_deployments_page, tolerant_app};
