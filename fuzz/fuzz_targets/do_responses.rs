//! DigitalOcean responses: the tolerant parsers never panic, whatever the bytes.
#![no_main]

use deploywatch::sources::digitalocean::types;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok((apps, _, _)) = types::parse_apps_page(data) {
        for a in apps {
            let _ = a.name();
            let _ = a.region_slug();
            for d in [&a.active_deployment, &a.in_progress_deployment].into_iter().flatten() {
                let _ = d.failed_step();
                let _ = d.ended_at();
                let _ = d.commit();
            }
        }
    }
    if let Ok((deps, _)) = types::parse_deployments_page(data) {
        for d in deps {
            let _ = d.failed_step();
            let _ = deploywatch::domain::classify::classify(d.failed_step().as_ref(), None);
        }
    }
    let _ = serde_json::from_slice::<types::LogsResponse>(data).map(|l| l.urls().len());
    let _ = serde_json::from_slice::<types::RollbackValidation>(data);
    if let Ok(s) = std::str::from_utf8(data) {
        let _ = types::parse_time(s);
    }
});
