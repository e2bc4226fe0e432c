//! Alertmanager payloads through parsing and task planning: never a panic, and every planned
//! task has a dedup key and a title.
#![no_main]

use deploywatch::tasks::rules::{PlanContext, plan};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok((_, alerts)) = deploywatch::http::webhook::parse(data) {
        let cx = PlanContext { rules: &[], app: None, dashboard_url: Some("https://grafana/d/x"), check_details: None, environment: None, verification: None };
        for a in &alerts {
            let p = plan(a, &cx);
            for t in &p.create {
                assert!(!t.dedup_key.is_empty() && !t.title.is_empty());
            }
        }
    }
});
